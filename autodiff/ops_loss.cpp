// Losses (all reduce by the mean), gather and one_hot. Forward and backward stand side by side.
//
// Each loss is one fused kernel: the forward pass keeps what the backward needs (softmax probabilities,
// residuals), so the backward is a single elementwise pass. Sums are accumulated in double for both
// dtypes. Labels are copied into the arena when recorded, so the caller's buffer need not outlive the op.
#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <numbers>

#include "autodiff/ops.hpp"
#include "autodiff/tensor_ops.hpp"

namespace sdeuq {

namespace {

void check_defined(const char* op, const Var& a) {
    if (!a.value().defined()) throw UsageError(fmt::format("{}: undefined input", op));
}

// logits-like input must be [N, C] with N == labels.size() and every label in [0, C).
void check_labels(const char* op, const char* what, const Var& a, std::span<const std::int32_t> labels,
                  const char* noun = "label") {
    check_defined(op, a);
    if (a.rank() != 2)
        throw ShapeError(fmt::format("{}: {} must be [N, C], got {}", op, what, describe(a.value())));
    if (static_cast<std::int64_t>(labels.size()) != a.dim(0))
        throw ShapeError(fmt::format("{}: got {} {} entries for {} {} (expected {})", op, labels.size(), noun,
                                     what, describe(a.value()), a.dim(0)));
    const std::int64_t c = a.dim(1);
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (labels[i] < 0 || labels[i] >= c)
            throw ShapeError(fmt::format("{}: {} {} at row {} out of range for {} {}", op, noun, labels[i], i,
                                         what, describe(a.value())));
}

// Labels live in the arena next to the closure that reads them.
const std::int32_t* arena_labels(std::span<const std::int32_t> labels) {
    auto* p = static_cast<std::int32_t*>(
        current_tape().arena().allocate(sizeof(std::int32_t) * std::max<std::size_t>(1, labels.size())));
    std::copy(labels.begin(), labels.end(), p);
    return p;
}

Tensor scalar_tensor(double v, DType dt) {
    Tensor t = Tensor::arena_empty(Shape{}, dt);
    t.set_flat(0, v);
    return t;
}

// t expanded (copied) to shape s; t itself when it already has that shape.
Tensor expand(const Tensor& t, const Shape& s) {
    if (t.shape() == s) return t;
    Tensor z = Tensor::arena_zeros(s, t.dtype());
    return t_binary("expand", t, z, [](auto a, auto) { return a; });
}

// [n, c] with 1 at (i, lab[i]): a constant of the differentiable backwards.
Tensor labels_one_hot(const std::int32_t* lab, std::int64_t n, std::int64_t c, DType dt) {
    Tensor t = Tensor::arena_zeros(Shape{n, c}, dt);
    for (std::int64_t i = 0; i < n; ++i) t.set_flat(i * c + lab[i], 1.0);
    return t;
}

}  // namespace

// ---------------------------------------------------------------- cross_entropy
// loss = -1/N sum_i log softmax(z_i)[y_i] = 1/N sum_i (lse(z_i) - z_i[y_i]), lse with the max shifted out.
// d loss / d z_ij = (softmax(z_i)_j - [j == y_i]) / N.
Var cross_entropy(const Var& logits, std::span<const std::int32_t> labels) {
    check_labels("cross_entropy", "logits", logits, labels);
    const std::int64_t n = logits.dim(0), c = logits.dim(1);
    if (n == 0) throw ShapeError(fmt::format("cross_entropy: empty batch {}", describe(logits.value())));
    const DType dt = logits.dtype();
    Tensor prob = Tensor::arena_empty(logits.shape(), dt);
    double total = 0.0;
    dispatch(dt, [&](auto z) {
        using T = decltype(z);
        const T* px = logits.value().data<T>();
        T* pp = prob.data<T>();
        for (std::int64_t i = 0; i < n; ++i) {
            const T* row = px + i * c;
            T* p = pp + i * c;
            T m = *std::max_element(row, row + c);
            double s = 0.0;
            for (std::int64_t j = 0; j < c; ++j) {
                p[j] = std::exp(row[j] - m);
                s += static_cast<double>(p[j]);
            }
            const T inv = static_cast<T>(1.0 / s);
            for (std::int64_t j = 0; j < c; ++j) p[j] *= inv;
            total += static_cast<double>(m) + std::log(s) - static_cast<double>(row[labels[i]]);
        }
    });
    Tensor out = scalar_tensor(total / static_cast<double>(n), dt);
    const std::int32_t* lab = node_of(logits) ? arena_labels(labels) : nullptr;
    return record("cross_entropy", out, {logits}, [nx = node_of(logits), prob, lab, n, c](const Tensor& g) {
        Tensor gx = Tensor::arena_empty(prob.shape(), prob.dtype());
        dispatch(prob.dtype(), [&](auto z) {
            using T = decltype(z);
            const T s = g.data<T>()[0] / static_cast<T>(n);
            const T* pp = prob.data<T>();
            T* pg = gx.data<T>();
            for (std::int64_t k = 0; k < n * c; ++k) pg[k] = pp[k] * s;
            for (std::int64_t i = 0; i < n; ++i) pg[i * c + lab[i]] -= s;
        });
        accumulate_fresh(nx, gx);
    }, [lab, n, c](HigherCtx& hc) {
        Var z = hc.in(0);
        Tensor oh = labels_one_hot(lab, n, c, z.dtype());
        hc.dx[0] = mul(sub(softmax(z, -1), Var(oh)), mul(hc.gout, 1.0 / static_cast<double>(n)));
    });
}

// ---------------------------------------------------------------- nll_loss
// loss = -1/N sum_i lp[i, y_i]; gradient -1/N at (i, y_i), zero elsewhere.
Var nll_loss(const Var& log_probs, std::span<const std::int32_t> labels) {
    check_labels("nll_loss", "log_probs", log_probs, labels);
    const std::int64_t n = log_probs.dim(0), c = log_probs.dim(1);
    if (n == 0) throw ShapeError(fmt::format("nll_loss: empty batch {}", describe(log_probs.value())));
    double total = 0.0;
    dispatch(log_probs.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* p = log_probs.value().data<T>();
        for (std::int64_t i = 0; i < n; ++i) total -= static_cast<double>(p[i * c + labels[i]]);
    });
    Tensor out = scalar_tensor(total / static_cast<double>(n), log_probs.dtype());
    const std::int32_t* lab = node_of(log_probs) ? arena_labels(labels) : nullptr;
    return record("nll_loss", out, {log_probs},
                  [nx = node_of(log_probs), shape = log_probs.shape(), lab, n, c](const Tensor& g) {
        Tensor gx = Tensor::arena_zeros(shape, g.dtype());
        dispatch(g.dtype(), [&](auto z) {
            using T = decltype(z);
            const T s = -g.data<T>()[0] / static_cast<T>(n);
            T* pg = gx.data<T>();
            for (std::int64_t i = 0; i < n; ++i) pg[i * c + lab[i]] = s;
        });
        accumulate_fresh(nx, gx);
    }, [lab, n, c](HigherCtx& hc) {
        Tensor oh = labels_one_hot(lab, n, c, hc.gout.dtype());
        hc.dx[0] = mul(Var(oh), mul(hc.gout, -1.0 / static_cast<double>(n)));
    });
}

// ---------------------------------------------------------------- mse_loss
// loss = 1/M sum (p - t)^2 over the M elements of the broadcast shape; d/dp = 2 (p - t) / M = -d/dt.
Var mse_loss(const Var& pred, const Var& target) {
    check_defined("mse_loss", pred);
    check_defined("mse_loss", target);
    Tensor d = t_binary("mse_loss", pred.value(), target.value(), [](auto a, auto b) { return a - b; });
    const std::int64_t m = d.numel();
    if (m == 0) throw ShapeError(fmt::format("mse_loss: empty input {}", describe(d)));
    double total = 0.0;
    dispatch(d.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* pd = d.data<T>();
        for (std::int64_t i = 0; i < m; ++i) total += static_cast<double>(pd[i]) * static_cast<double>(pd[i]);
    });
    Tensor out = scalar_tensor(total / static_cast<double>(m), d.dtype());
    return record("mse_loss", out, {pred, target},
                  [np = node_of(pred), nt = node_of(target), d, m](const Tensor& g) {
        const double s = 2.0 * g.flat(0) / static_cast<double>(m);
        Tensor gd = t_scale(d, s);
        if (np) accumulate_fresh(np, sum_to(gd, np->value.shape()));
        if (nt) accumulate_fresh(nt, sum_to(t_neg(gd), nt->value.shape()));
    }, [m](HigherCtx& c) {
        Var p = c.in(0), t = c.in(1);
        Var gd = mul(sub(p, t), mul(c.gout, 2.0 / static_cast<double>(m)));
        if (c.needs(0)) c.dx[0] = sum_to(gd, p.shape());
        if (c.needs(1)) c.dx[1] = sum_to(neg(gd), t.shape());
    });
}

// ---------------------------------------------------------------- gaussian_nll
// loss = 1/M sum 0.5 (log(2 pi v) + r^2 / v), r = x - mu, over the broadcast shape of (mean, var, target).
// var must be > 0 everywhere (a heteroscedastic head typically produces softplus(.) + eps): a
// non-positive variance throws ShapeError naming the first offending element instead of returning NaN.
// d/dmu = -r / v, d/dx = r / v, d/dv = 0.5 (1/v - r^2 / v^2); all times g / M.
Var gaussian_nll(const Var& mean, const Var& var, const Var& target) {
    return gaussian_nll(mean, var, target, GaussianNllOptions{});
}

// With opt.clamp_var, PyTorch's floor (torch.nn.functional.gaussian_nll_loss: var.clone(), then
// var.clamp_(min=eps) under no_grad): negative variances throw, the loss and all three gradients use
// v = max(var, eps), and the gradient reaches var unchanged by the clamp (the clamp is outside the
// graph), so d/dvar = 0.5 (1/v - r^2 / v^2) also where var < eps.
Var gaussian_nll(const Var& mean, const Var& var, const Var& target, GaussianNllOptions opt) {
    const char* op = "gaussian_nll";
    if (opt.clamp_var && !(opt.eps > 0.0))
        throw UsageError(fmt::format("{}: eps must be > 0, got {}", op, opt.eps));
    check_defined(op, mean);
    check_defined(op, var);
    check_defined(op, target);
    check_same_dtype(op, mean.value(), var.value());
    check_same_dtype(op, mean.value(), target.value());
    Shape os;
    try {
        os = broadcast_shapes(op, broadcast_shapes(op, mean.shape(), var.shape()), target.shape());
    } catch (const ShapeError&) {
        throw ShapeError(fmt::format("{}: mean {}, var {} and target {} do not broadcast", op,
                                     describe(mean.value()), describe(var.value()),
                                     describe(target.value())));
    }
    const std::int64_t m = os.numel();
    if (m == 0) throw ShapeError(fmt::format("{}: empty input (broadcast shape {})", op, os.str()));
    const DType dt = mean.dtype();
    dispatch(dt, [&](auto z) {
        using T = decltype(z);
        const T* pv = var.value().data<T>();
        for (std::int64_t i = 0; i < var.numel(); ++i)
            if (opt.clamp_var ? !(pv[i] >= T(0)) : !(pv[i] > T(0)))
                throw ShapeError(fmt::format("{}: var must be {}, got {} at flat index {} of {}", op,
                                             opt.clamp_var ? ">= 0 (clamp_var)" : "> 0",
                                             static_cast<double>(pv[i]), i, describe(var.value())));
    });
    Tensor mu = expand(mean.value(), os), v = expand(var.value(), os), x = expand(target.value(), os);
    if (opt.clamp_var) {  // a fresh tensor: expand may return var's own storage
        v = dispatch(dt, [&](auto z) {
            using T = decltype(z);
            const T e = static_cast<T>(opt.eps);
            return t_unary(v, [e](auto a) { return kernels::select(a < decltype(a)(e), decltype(a)(e), a); });
        });
    }
    double total = 0.0;
    dispatch(dt, [&](auto z) {
        using T = decltype(z);
        const T* pm = mu.data<T>();
        const T* pv = v.data<T>();
        const T* px = x.data<T>();
        const double log_2pi = std::log(2.0 * std::numbers::pi);
        for (std::int64_t i = 0; i < m; ++i) {
            const double r = static_cast<double>(px[i]) - static_cast<double>(pm[i]);
            const double vi = static_cast<double>(pv[i]);
            total += 0.5 * (log_2pi + std::log(vi) + r * r / vi);
        }
    });
    Tensor out = scalar_tensor(total / static_cast<double>(m), dt);
    Node* nm = node_of(mean);
    Node* nv = node_of(var);
    Node* nx = node_of(target);
    return record(op, out, {mean, var, target}, [nm, nv, nx, mu, v, x, m](const Tensor& g) {
        const Shape& os = mu.shape();
        Tensor gm, gv, gx;
        if (nm || nx) gm = Tensor::arena_empty(os, mu.dtype());
        if (nv) gv = Tensor::arena_empty(os, mu.dtype());
        dispatch(mu.dtype(), [&](auto z) {
            using T = decltype(z);
            const T s = g.data<T>()[0] / static_cast<T>(m);
            const T* pm = mu.data<T>();
            const T* pv = v.data<T>();
            const T* px = x.data<T>();
            T* qm = gm.defined() ? gm.data<T>() : nullptr;
            T* qv = gv.defined() ? gv.data<T>() : nullptr;
            for (std::int64_t i = 0; i < m; ++i) {
                const T r = px[i] - pm[i];
                const T iv = T(1) / pv[i];
                if (qm) qm[i] = -r * iv * s;
                if (qv) qv[i] = T(0.5) * (iv - r * r * iv * iv) * s;
            }
        });
        if (nm) accumulate_fresh(nm, sum_to(gm, nm->value.shape()));
        if (nv) accumulate_fresh(nv, sum_to(gv, nv->value.shape()));
        if (nx) accumulate_fresh(nx, sum_to(t_neg(gm), nx->value.shape()));
    }, [v, m, clamp = opt.clamp_var](HigherCtx& c) {
        Var mu = c.in(0), var = c.in(1), x = c.in(2);
        // With the clamp, v = var + (max(var, eps) - var): the clamped value, and the gradient reaches var
        // unchanged (PyTorch clamps outside the graph).
        Var vv = var;
        if (clamp) vv = add(var, Var(t_sub(v, expand(var.value(), v.shape()))));
        Var s = mul(c.gout, 1.0 / static_cast<double>(m));
        Var r = sub(x, mu);
        Var iv = rdiv(1.0, vv);
        Var rv = mul(r, iv);
        if (c.needs(0)) c.dx[0] = sum_to(neg(mul(rv, s)), mu.shape());
        if (c.needs(2)) c.dx[2] = sum_to(mul(rv, s), x.shape());
        if (c.needs(1)) c.dx[1] = sum_to(mul(mul(sub(iv, square(rv)), 0.5), s), var.shape());
    });
}

// ---------------------------------------------------------------- bce_with_logits
// loss = 1/M sum max(z, 0) - z y + log1p(exp(-|z|)) (= softplus(z) - z y, without overflow);
// d/dz = sigmoid(z) - y, d/dy = -z; times g / M.
Var bce_with_logits(const Var& logits, const Var& targets) {
    const char* op = "bce_with_logits";
    check_defined(op, logits);
    check_defined(op, targets);
    check_same_dtype(op, logits.value(), targets.value());
    Shape os = broadcast_shapes(op, logits.shape(), targets.shape());
    const std::int64_t m = os.numel();
    if (m == 0) throw ShapeError(fmt::format("{}: empty input (broadcast shape {})", op, os.str()));
    Tensor zt = expand(logits.value(), os), yt = expand(targets.value(), os);
    double total = 0.0;
    dispatch(zt.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* pz = zt.data<T>();
        const T* py = yt.data<T>();
        for (std::int64_t i = 0; i < m; ++i) {
            const double z = static_cast<double>(pz[i]), y = static_cast<double>(py[i]);
            total += std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::abs(z)));
        }
    });
    Tensor out = scalar_tensor(total / static_cast<double>(m), zt.dtype());
    return record(op, out, {logits, targets},
                  [nz = node_of(logits), ny = node_of(targets), zt, yt, m](const Tensor& g) {
        const Shape& os = zt.shape();
        Tensor gz = nz ? Tensor::arena_empty(os, zt.dtype()) : Tensor();
        Tensor gy = ny ? Tensor::arena_empty(os, zt.dtype()) : Tensor();
        dispatch(zt.dtype(), [&](auto tag) {
            using T = decltype(tag);
            const T s = g.data<T>()[0] / static_cast<T>(m);
            const T* pz = zt.data<T>();
            const T* py = yt.data<T>();
            if (nz) {
                T* q = gz.data<T>();
                for (std::int64_t i = 0; i < m; ++i) {
                    const T z = pz[i];
                    // stable sigmoid: exp of a non-positive argument only
                    const T sg =
                        z >= T(0) ? T(1) / (T(1) + std::exp(-z)) : std::exp(z) / (T(1) + std::exp(z));
                    q[i] = (sg - py[i]) * s;
                }
            }
            if (ny) {
                T* q = gy.data<T>();
                for (std::int64_t i = 0; i < m; ++i) q[i] = -pz[i] * s;
            }
        });
        if (nz) accumulate_fresh(nz, sum_to(gz, nz->value.shape()));
        if (ny) accumulate_fresh(ny, sum_to(gy, ny->value.shape()));
    }, [m](HigherCtx& c) {
        Var z = c.in(0), y = c.in(1);
        Var s = mul(c.gout, 1.0 / static_cast<double>(m));
        if (c.needs(0)) c.dx[0] = sum_to(mul(sub(sigmoid(z), y), s), z.shape());
        if (c.needs(1)) c.dx[1] = sum_to(neg(mul(z, s)), y.shape());
    });
}

// ---------------------------------------------------------------- gather / one_hot
// out[i] = a[i, idx[i]]; the gradient scatters g[i] back to (i, idx[i]).
Var gather(const Var& a, std::span<const std::int32_t> index) {
    check_labels("gather", "input", a, index, "index");
    const std::int64_t n = a.dim(0), c = a.dim(1);
    Tensor out = Tensor::arena_empty(Shape{n}, a.dtype());
    dispatch(a.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* pa = a.value().data<T>();
        T* po = out.data<T>();
        for (std::int64_t i = 0; i < n; ++i) po[i] = pa[i * c + index[i]];
    });
    const std::int32_t* idx = node_of(a) ? arena_labels(index) : nullptr;
    return record("gather", out, {a}, [na = node_of(a), shape = a.shape(), idx, n, c](const Tensor& g) {
        Tensor ga = Tensor::arena_zeros(shape, g.dtype());
        dispatch(g.dtype(), [&](auto z) {
            using T = decltype(z);
            const T* pg = g.data<T>();
            T* q = ga.data<T>();
            for (std::int64_t i = 0; i < n; ++i) q[i * c + idx[i]] = pg[i];
        });
        accumulate_fresh(na, ga);
    }, [idx, n, c](HigherCtx& hc) {
        Tensor oh = labels_one_hot(idx, n, c, hc.gout.dtype());
        hc.dx[0] = mul(Var(oh), reshape(hc.gout, Shape{n, 1}));
    });
}

Tensor one_hot(std::span<const std::int32_t> labels, std::int64_t classes, DType dt) {
    if (classes < 1) throw ShapeError(fmt::format("one_hot: classes must be >= 1, got {}", classes));
    const auto n = static_cast<std::int64_t>(labels.size());
    Tensor t = Tensor::zeros(Shape{n, classes}, dt);
    dispatch(dt, [&](auto z) {
        using T = decltype(z);
        T* p = t.data<T>();
        for (std::int64_t i = 0; i < n; ++i) {
            const std::int32_t y = labels[static_cast<std::size_t>(i)];
            if (y < 0 || y >= classes)
                throw ShapeError(fmt::format("one_hot: label {} at row {} out of range for {} classes", y, i,
                                             classes));
            p[i * classes + y] = T(1);
        }
    });
    return t;
}

}  // namespace sdeuq
