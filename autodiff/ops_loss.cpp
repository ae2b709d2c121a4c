// Losses (mean, sum or per element), gather on [N, C] and one_hot. Forward and backward stand side by side.
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

// ---------------------------------------------------------------- with options
// cross_entropy and nll_loss with PyTorch's options, as one kernel: per row i a constant target row
// q_i (q_ij = (1 - e) w[y_i] [j == y_i] + (e / C) w[j], zero for an ignored row), so that
// loss_i = -sum_j q_ij lp_ij with lp = log_softmax(z) (cross_entropy) or the input (nll_loss), and
// d loss_i / d z_ij = (sum_j q_ij) softmax(z_i)_j - q_ij, resp. d loss_i / d lp_ij = -q_ij.
namespace {

struct ClassTargets {
    Tensor q;      // [N, C], the target rows
    Tensor qsum;   // [N, 1], their sums
    double denom;  // the divisor of the mean: sum of w[y_i] over the non-ignored rows
};

ClassTargets class_targets(const char* op, const Var& a, std::span<const std::int32_t> labels,
                           const CrossEntropyOptions& opt) {
    check_defined(op, a);
    if (a.rank() != 2) throw ShapeError(fmt::format("{}: input must be [N, C], got {}", op, describe(a.value())));
    const std::int64_t n = a.dim(0), c = a.dim(1);
    if (static_cast<std::int64_t>(labels.size()) != n)
        throw ShapeError(fmt::format("{}: got {} labels for input {}", op, labels.size(), describe(a.value())));
    if (!(opt.label_smoothing >= 0.0 && opt.label_smoothing <= 1.0))
        throw UsageError(fmt::format("{}: label_smoothing must be in [0, 1], got {}", op, opt.label_smoothing));
    if (opt.weight.defined() && (opt.weight.rank() != 1 || opt.weight.dim(0) != c))
        throw ShapeError(fmt::format("{}: weight {} must be [C] = [{}] for input {}", op, describe(opt.weight), c,
                                     describe(a.value())));
    std::vector<double> w(static_cast<std::size_t>(c), 1.0);
    if (opt.weight.defined())
        for (std::int64_t j = 0; j < c; ++j) w[static_cast<std::size_t>(j)] = opt.weight.flat(j);
    const double e = opt.label_smoothing;
    ClassTargets t{Tensor::arena_zeros(a.shape(), a.dtype()), Tensor::arena_zeros(Shape{n, 1}, a.dtype()), 0.0};
    double wsum = 0.0;
    for (double v : w) wsum += v;
    for (std::int64_t i = 0; i < n; ++i) {
        const std::int32_t y = labels[static_cast<std::size_t>(i)];
        if (y == opt.ignore_index) continue;
        if (y < 0 || y >= c)
            throw ShapeError(fmt::format("{}: label {} at row {} out of range for input {} (ignore_index {})", op, y,
                                         i, describe(a.value()), opt.ignore_index));
        const double wy = w[static_cast<std::size_t>(y)];
        t.denom += wy;
        for (std::int64_t j = 0; j < c; ++j)
            t.q.set_flat(i * c + j, (j == y ? (1.0 - e) * wy : 0.0) + e / static_cast<double>(c) * w[static_cast<std::size_t>(j)]);
        t.qsum.set_flat(i, (1.0 - e) * wy + e / static_cast<double>(c) * wsum);
    }
    return t;
}

// from_logits: cross_entropy (softmax inside), else nll_loss (log-probabilities given).
Var class_loss(const char* op, const Var& a, std::span<const std::int32_t> labels, const CrossEntropyOptions& opt,
               bool from_logits) {
    if (!from_logits && opt.label_smoothing != 0.0)
        throw UsageError(fmt::format("{}: label_smoothing is a cross_entropy option", op));
    ClassTargets t = class_targets(op, a, labels, opt);
    const std::int64_t n = a.dim(0), c = a.dim(1);
    const DType dt = a.dtype();
    Tensor prob = from_logits ? Tensor::arena_empty(a.shape(), dt) : Tensor();
    std::vector<double> row_loss(static_cast<std::size_t>(n), 0.0);
    dispatch(dt, [&](auto z) {
        using T = decltype(z);
        const T* px = a.value().data<T>();
        const T* pq = t.q.template data<T>();
        for (std::int64_t i = 0; i < n; ++i) {
            const T* row = px + i * c;
            double lse = 0.0;
            if (from_logits) {
                const double m = static_cast<double>(*std::max_element(row, row + c));
                double s = 0.0;
                for (std::int64_t j = 0; j < c; ++j) s += std::exp(static_cast<double>(row[j]) - m);
                lse = m + std::log(s);
                T* p = prob.template data<T>() + i * c;
                for (std::int64_t j = 0; j < c; ++j) p[j] = static_cast<T>(std::exp(static_cast<double>(row[j]) - lse));
            }
            double l = 0.0;
            for (std::int64_t j = 0; j < c; ++j)
                if (pq[i * c + j] != T(0)) l -= static_cast<double>(pq[i * c + j]) * (static_cast<double>(row[j]) - lse);
            row_loss[static_cast<std::size_t>(i)] = l;
        }
    });
    const Reduction red = opt.reduction;
    Tensor out;
    double denom = 1.0;
    if (red == Reduction::none) {
        out = Tensor::arena_empty(Shape{n}, dt);
        for (std::int64_t i = 0; i < n; ++i) out.set_flat(i, row_loss[static_cast<std::size_t>(i)]);
    } else {
        double total = 0.0;
        for (double l : row_loss) total += l;
        if (red == Reduction::mean) denom = t.denom;  // 0 when every row is ignored: NaN, as PyTorch
        out = scalar_tensor(total / denom, dt);
    }
    return record(op, out, {a}, [na = node_of(a), t, prob, red, denom, n, c](const Tensor& g) {
        Tensor ga = Tensor::arena_empty(t.q.shape(), g.dtype());
        dispatch(g.dtype(), [&](auto z) {
            using T = decltype(z);
            const T* pq = t.q.template data<T>();
            const T* ps = t.qsum.template data<T>();
            const T* pg = g.data<T>();
            T* out = ga.data<T>();
            for (std::int64_t i = 0; i < n; ++i) {
                const T s = red == Reduction::none ? pg[i] : pg[0] / static_cast<T>(denom);
                for (std::int64_t j = 0; j < c; ++j) {
                    const std::int64_t k = i * c + j;
                    out[k] = prob.defined() ? (ps[i] * prob.template data<T>()[k] - pq[k]) * s : -pq[k] * s;
                }
            }
        });
        accumulate_fresh(na, ga);
    }, [t, red, denom, n, from_logits](HigherCtx& hc) {
        Var s = red == Reduction::none ? reshape(hc.gout, Shape{n, 1}) : mul(hc.gout, 1.0 / denom);
        Var d = from_logits ? sub(mul(softmax(hc.in(0), -1), Var(t.qsum)), Var(t.q)) : neg(Var(t.q));
        hc.dx[0] = mul(d, s);
    });
}

}  // namespace

std::vector<std::int32_t> labels_from_tensor(const char* op, const Tensor& labels) {
    if (!labels.defined()) throw UsageError(fmt::format("{}: undefined labels", op));
    if (labels.rank() != 1)
        throw ShapeError(fmt::format("{}: labels must be a rank-1 tensor [N] of class indices, got {} "
                                     "(probability targets are not supported)",
                                     op, describe(labels)));
    std::vector<std::int32_t> out(static_cast<std::size_t>(labels.numel()));
    for (std::int64_t i = 0; i < labels.numel(); ++i) {
        const double v = labels.flat(i);
        if (!(v == std::floor(v) && std::abs(v) < 2147483648.0))
            throw ShapeError(fmt::format("{}: label {} at row {} of {} is not an int32 integer", op, v, i,
                                         describe(labels)));
        out[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(v);
    }
    return out;
}

Var cross_entropy(const Var& logits, std::span<const std::int32_t> labels, const CrossEntropyOptions& opt) {
    return class_loss("cross_entropy", logits, labels, opt, true);
}
Var cross_entropy(const Var& logits, const Tensor& labels, const CrossEntropyOptions& opt) {
    return cross_entropy(logits, labels_from_tensor("cross_entropy", labels), opt);
}
Var nll_loss(const Var& log_probs, std::span<const std::int32_t> labels, const NllLossOptions& opt) {
    return class_loss("nll_loss", log_probs, labels, opt, false);
}
Var nll_loss(const Var& log_probs, const Tensor& labels, const NllLossOptions& opt) {
    return nll_loss(log_probs, labels_from_tensor("nll_loss", labels), opt);
}

// ---------------------------------------------------------------- mse_loss
// loss = 1/M sum (p - t)^2 over the M elements of the broadcast shape; d/dp = 2 (p - t) / M = -d/dt.
Var mse_loss(const Var& pred, const Var& target) { return mse_loss(pred, target, Reduction::mean); }

// sum: the same kernel without the division by M; none: (p - t)^2 as ops (differentiable to any order).
Var mse_loss(const Var& pred, const Var& target, Reduction reduction) {
    check_defined("mse_loss", pred);
    check_defined("mse_loss", target);
    if (reduction == Reduction::none) {
        check_same_dtype("mse_loss", pred.value(), target.value());
        return square(sub(pred, target));
    }
    Tensor d = t_binary("mse_loss", pred.value(), target.value(), [](auto a, auto b) { return a - b; });
    const std::int64_t m = d.numel();
    if (m == 0) throw ShapeError(fmt::format("mse_loss: empty input {}", describe(d)));
    double total = 0.0;
    dispatch(d.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* pd = d.data<T>();
        for (std::int64_t i = 0; i < m; ++i) total += static_cast<double>(pd[i]) * static_cast<double>(pd[i]);
    });
    const double denom = reduction == Reduction::mean ? static_cast<double>(m) : 1.0;
    Tensor out = scalar_tensor(total / denom, d.dtype());
    return record("mse_loss", out, {pred, target},
                  [np = node_of(pred), nt = node_of(target), d, m = denom](const Tensor& g) {
        const double s = 2.0 * g.flat(0) / m;
        Tensor gd = t_scale(d, s);
        if (np) accumulate_fresh(np, sum_to(gd, np->value.shape()));
        if (nt) accumulate_fresh(nt, sum_to(t_neg(gd), nt->value.shape()));
    }, [m = denom](HigherCtx& c) {
        Var p = c.in(0), t = c.in(1);
        Var gd = mul(sub(p, t), mul(c.gout, 2.0 / m));
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
    if (m == 0 && opt.reduction == Reduction::mean)
        throw ShapeError(fmt::format("{}: empty input (broadcast shape {})", op, os.str()));
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
    if (opt.reduction == Reduction::none) {
        // Per element, as ops: 0.5 (log(2 pi) + log v + r^2 / v), with v = var + (max(var, eps) - var)
        // under the clamp (the clamp outside the graph, as PyTorch).
        Var vv = var;
        if (opt.clamp_var) vv = add(var, Var(t_sub(v, expand(var.value(), os))));
        Var lv = vv.shape() == os ? log(vv) : log(broadcast_to(vv, os));
        return mul(add(add(lv, std::log(2.0 * std::numbers::pi)), div(square(sub(target, mean)), vv)), 0.5);
    }
    const double denom = opt.reduction == Reduction::mean ? static_cast<double>(m) : 1.0;
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
    Tensor out = scalar_tensor(total / denom, dt);
    Node* nm = node_of(mean);
    Node* nv = node_of(var);
    Node* nx = node_of(target);
    return record(op, out, {mean, var, target}, [nm, nv, nx, mu, v, x, m, denom](const Tensor& g) {
        const Shape& os = mu.shape();
        Tensor gm, gv, gx;
        if (nm || nx) gm = Tensor::arena_empty(os, mu.dtype());
        if (nv) gv = Tensor::arena_empty(os, mu.dtype());
        dispatch(mu.dtype(), [&](auto z) {
            using T = decltype(z);
            const T s = g.data<T>()[0] / static_cast<T>(denom);
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
    }, [v, denom, clamp = opt.clamp_var](HigherCtx& c) {
        Var mu = c.in(0), var = c.in(1), x = c.in(2);
        // With the clamp, v = var + (max(var, eps) - var): the clamped value, and the gradient reaches var
        // unchanged (PyTorch clamps outside the graph).
        Var vv = var;
        if (clamp) vv = add(var, Var(t_sub(v, expand(var.value(), v.shape()))));
        Var s = mul(c.gout, 1.0 / denom);
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
    return bce_with_logits(logits, targets, Reduction::mean);
}

// sum: the same kernel without the division by M; none: softplus(z) - z y as ops (the same stable form).
Var bce_with_logits(const Var& logits, const Var& targets, Reduction reduction) {
    const char* op = "bce_with_logits";
    check_defined(op, logits);
    check_defined(op, targets);
    check_same_dtype(op, logits.value(), targets.value());
    Shape os = broadcast_shapes(op, logits.shape(), targets.shape());
    if (reduction == Reduction::none) return sub(softplus(logits), mul(logits, targets));
    const std::int64_t m = os.numel();
    if (m == 0 && reduction == Reduction::mean)
        throw ShapeError(fmt::format("{}: empty input (broadcast shape {})", op, os.str()));
    const double denom = reduction == Reduction::mean ? static_cast<double>(m) : 1.0;
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
    Tensor out = scalar_tensor(total / denom, zt.dtype());
    return record(op, out, {logits, targets},
                  [nz = node_of(logits), ny = node_of(targets), zt, yt, m, denom](const Tensor& g) {
        const Shape& os = zt.shape();
        Tensor gz = nz ? Tensor::arena_empty(os, zt.dtype()) : Tensor();
        Tensor gy = ny ? Tensor::arena_empty(os, zt.dtype()) : Tensor();
        dispatch(zt.dtype(), [&](auto tag) {
            using T = decltype(tag);
            const T s = g.data<T>()[0] / static_cast<T>(denom);
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
    }, [denom](HigherCtx& c) {
        Var z = c.in(0), y = c.in(1);
        Var s = mul(c.gout, 1.0 / denom);
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
