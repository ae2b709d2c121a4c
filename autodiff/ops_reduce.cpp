// Reductions over axes: sum, mean, max, min, logsumexp, softmax, log_softmax.
//
// A reduction over one axis views the input as [outer, r, inner] and reduces the middle index. Each
// output element is summed by one thread in index order, so results do not depend on the thread count.
#include <cmath>
#include <fmt/format.h>
#include <limits>

#include "autodiff/ops.hpp"
#include "autodiff/tensor_ops.hpp"

namespace sdeuq {

namespace {

struct Split {
    std::int64_t outer = 1, r = 1, inner = 1;
};
Split split(const Shape& s, int axis) {
    Split p;
    for (int i = 0; i < axis; ++i) p.outer *= s[i];
    p.r = s[axis];
    for (int i = axis + 1; i < s.rank(); ++i) p.inner *= s[i];
    return p;
}

Shape reduced_shape(const Shape& s, int axis, bool keepdims) {
    Shape out;
    for (int i = 0; i < s.rank(); ++i) {
        if (i != axis) out.push_back(s[i]);
        else if (keepdims) out.push_back(1);
    }
    return out;
}

// Sum over one axis; keepdims shape.
Tensor sum_axis(const Tensor& x, int axis) {
    Split p = split(x.shape(), axis);
    Tensor y = Tensor::arena_zeros(reduced_shape(x.shape(), axis, true), x.dtype());
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* px = x.data<T>();
        T* py = y.data<T>();
        parallel_for(0, p.outer, 1, std::max<std::int64_t>(1, kernels::parallel_min / std::max<std::int64_t>(1, p.r * p.inner)),
                     [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t o = lo; o < hi; ++o) {
                if (p.inner == 1) {
                    py[o] = kernels::sum_serial(px + o * p.r, p.r);
                    continue;
                }
                T* row = py + o * p.inner;
                for (std::int64_t j = 0; j < p.r; ++j) {
                    const T* src = px + (o * p.r + j) * p.inner;
                    kernels::map2_serial(row, src, row, p.inner, [](auto a, auto b) { return a + b; });
                }
            }
        });
    });
    return y;
}

// Broadcast g (keepdims shape) back to `s`.
Tensor expand(const Tensor& g, const Shape& s) {
    return t_binary("expand", Tensor::arena_empty(s, g.dtype()), g, [](auto, auto v) { return v; });
}

std::vector<int> norm_axes(const char* op, std::vector<int> axes, int rank) {
    for (auto& a : axes) a = detail::norm_axis(op, a, rank);
    std::sort(axes.begin(), axes.end());
    if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) throw ShapeError(fmt::format("{}: repeated axis", op));
    return axes;
}

}  // namespace

Var sum(const Var& a, std::vector<int> axes, bool keepdims) {
    axes = norm_axes("sum", axes, a.rank());
    Tensor y = a.value();
    for (auto it = axes.rbegin(); it != axes.rend(); ++it) y = sum_axis(y, *it);
    Shape keep = y.shape();
    if (!keepdims) {
        Shape out;
        for (int i = 0; i < a.rank(); ++i)
            if (!std::binary_search(axes.begin(), axes.end(), i)) out.push_back(a.shape()[i]);
        y = y.reshaped(out);
    }
    if (axes.empty()) y = y.clone_arena();
    return record("sum", y, {a}, [na = node_of(a), keep](const Tensor& g) {
        accumulate_fresh(na, expand(g.reshaped(keep), na->value.shape()));
    }, [keep](HigherCtx& c) { c.dx[0] = broadcast_to(reshape(c.gout, keep), c.in(0).shape()); });
}

Var sum_to(const Var& a, const Shape& target) {
    if (a.shape() == target) return a;
    if (a.numel() == target.numel()) return reshape(a, target);
    Shape bs = broadcast_shapes("sum_to", target, a.shape());
    if (bs != a.shape())
        throw ShapeError(fmt::format("sum_to: {} does not broadcast to {}", target.str(), a.shape().str()));
    const int lead = a.rank() - target.rank();
    std::vector<int> axes;
    for (int i = 0; i < a.rank(); ++i)
        if (i < lead || (target[i - lead] == 1 && a.dim(i) != 1)) axes.push_back(i);
    return reshape(sum(a, axes, true), target);
}

Var sum(const Var& a) {
    Tensor y = Tensor::arena_empty(Shape{}, a.dtype());
    y.set_flat(0, t_sum_all(a.value()));
    return record("sum", y, {a}, [na = node_of(a)](const Tensor& g) {
        Tensor gx = Tensor::arena_empty(na->value.shape(), g.dtype());
        gx.fill(g.item());
        accumulate_fresh(na, gx);
    }, [](HigherCtx& c) { c.dx[0] = broadcast_to(c.gout, c.in(0).shape()); });
}

Var mean(const Var& a) {
    if (a.numel() == 0) throw ShapeError(fmt::format("mean: empty input {}", describe(a.value())));
    return mul(sum(a), 1.0 / static_cast<double>(a.numel()));
}

Var mean(const Var& a, std::vector<int> axes, bool keepdims) {
    auto ax = norm_axes("mean", axes, a.rank());
    std::int64_t count = 1;
    for (int i : ax) count *= a.shape()[i];
    if (count == 0) throw ShapeError(fmt::format("mean: empty reduction of {}", describe(a.value())));
    return mul(sum(a, ax, keepdims), 1.0 / static_cast<double>(count));
}

namespace {

// max (IsMax) or min over one axis. Ties go to the first extremum along the axis, and NaN counts as the
// extremum (the first NaN wins), as PyTorch's max(dim)/min(dim) return it.
template <bool IsMax> Var extremum(const char* op, const Var& a, int axis, bool keepdims) {
    int ax = detail::norm_axis(op, axis, a.rank());
    Split p = split(a.shape(), ax);
    if (p.r == 0) throw ShapeError(fmt::format("{}: empty axis {} of {}", op, axis, describe(a.value())));
    Tensor y = Tensor::arena_empty(reduced_shape(a.shape(), ax, keepdims), a.dtype());
    auto* arg = static_cast<std::int64_t*>(current_tape().arena().allocate(sizeof(std::int64_t) * static_cast<std::size_t>(p.outer * p.inner)));
    dispatch(a.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* px = a.value().data<T>();
        T* py = y.data<T>();
        for (std::int64_t o = 0; o < p.outer; ++o)
            for (std::int64_t i = 0; i < p.inner; ++i) {
                std::int64_t best = 0;
                T bv = px[o * p.r * p.inner + i];
                for (std::int64_t j = 1; j < p.r; ++j) {
                    T v = px[(o * p.r + j) * p.inner + i];
                    const bool better = IsMax ? v > bv : v < bv;
                    if (better || (std::isnan(v) && !std::isnan(bv))) {
                        bv = v;
                        best = j;
                    }
                }
                py[o * p.inner + i] = bv;
                arg[o * p.inner + i] = best;
            }
    });
    return record(op, y, {a}, [na = node_of(a), p, arg](const Tensor& g) {
        Tensor gx = Tensor::arena_zeros(na->value.shape(), g.dtype());
        dispatch(g.dtype(), [&](auto z) {
            using T = decltype(z);
            const T* pg = g.data<T>();
            T* px = gx.data<T>();
            for (std::int64_t o = 0; o < p.outer; ++o)
                for (std::int64_t i = 0; i < p.inner; ++i)
                    px[(o * p.r + arg[o * p.inner + i]) * p.inner + i] = pg[o * p.inner + i];
        });
        accumulate_fresh(na, gx);
    }, [p, arg, keep = reduced_shape(a.shape(), ax, true)](HigherCtx& c) {
        // The one-hot mask of the extrema (a constant: piecewise), times the broadcast adjoint.
        Var x = c.in(0);
        Tensor m = Tensor::arena_zeros(x.shape(), x.dtype());
        for (std::int64_t o = 0; o < p.outer; ++o)
            for (std::int64_t i = 0; i < p.inner; ++i) m.set_flat((o * p.r + arg[o * p.inner + i]) * p.inner + i, 1.0);
        c.dx[0] = mul(broadcast_to(reshape(c.gout, keep), x.shape()), Var(m));
    });
}

// Over several axes: the reduced axes are moved last (in increasing order) and flattened, so the first
// extremum is the first in row-major order over the reduced axes; permute and reshape carry the
// gradient (and its derivatives) back.
template <bool IsMax> Var extremum_axes(const char* op, const Var& a, std::vector<int> axes, bool keepdims) {
    if (axes.empty())
        throw UsageError(fmt::format("{}: no axes given for {} (pass every axis to reduce them all)", op,
                                     describe(a.value())));
    axes = norm_axes(op, axes, a.rank());
    if (axes.size() == 1) return extremum<IsMax>(op, a, axes[0], keepdims);
    std::vector<int> perm;
    std::vector<std::int64_t> flat, out;
    std::int64_t r = 1;
    for (int i = 0; i < a.rank(); ++i) {
        if (std::binary_search(axes.begin(), axes.end(), i)) {
            r *= a.dim(i);
            if (keepdims) out.push_back(1);
            continue;
        }
        perm.push_back(i);
        flat.push_back(a.dim(i));
        out.push_back(a.dim(i));
    }
    for (int i : axes) perm.push_back(i);
    flat.push_back(r);
    if (r == 0) throw ShapeError(fmt::format("{}: empty reduction of {}", op, describe(a.value())));
    Var y = extremum<IsMax>(op, reshape(permute(a, perm), Shape(flat)), -1, false);
    return reshape(y, Shape(out));
}

}  // namespace

Var max(const Var& a, int axis, bool keepdims) { return extremum<true>("max", a, axis, keepdims); }
Var min(const Var& a, int axis, bool keepdims) { return extremum<false>("min", a, axis, keepdims); }
Var max(const Var& a, std::vector<int> axes, bool keepdims) {
    return extremum_axes<true>("max", a, std::move(axes), keepdims);
}
Var min(const Var& a, std::vector<int> axes, bool keepdims) {
    return extremum_axes<false>("min", a, std::move(axes), keepdims);
}

namespace {

// Per row (along the axis): the special cases, or m = the (first) maximum and rest = sum over the other
// elements of exp(x - m) in double, so that lse = m + log1p(rest) (log1p: rest may be small) and
// softmax = exp(x - m) / (1 + rest) are within about an ulp. Special rows, as their limits: any NaN gives
// NaN; k elements +inf give lse = +inf, softmax 1/k on them and 0 elsewhere (log_softmax -log k and
// -inf); all -inf (or an empty axis) gives lse = -inf and NaN softmax (0/0; PyTorch gives the same).
enum class RowKind { finite, nan, pos_inf, all_neg_inf };
struct RowStats {
    RowKind kind = RowKind::finite;
    double m = 0.0, log1p_rest = 0.0, one_plus_rest = 1.0;
    std::int64_t n_pos_inf = 0;
};

template <class T> RowStats row_stats(const T* xr, std::int64_t r, std::int64_t stride) {
    RowStats st;
    T m = -std::numeric_limits<T>::infinity();
    std::int64_t arg = -1;
    for (std::int64_t j = 0; j < r; ++j) {
        const T v = xr[j * stride];
        if (std::isnan(v)) {
            st.kind = RowKind::nan;
            return st;
        }
        if (v == std::numeric_limits<T>::infinity()) ++st.n_pos_inf;
        if (arg < 0 || v > m) {
            m = v;
            arg = j;
        }
    }
    if (st.n_pos_inf > 0) {
        st.kind = RowKind::pos_inf;
        return st;
    }
    if (arg < 0 || m == -std::numeric_limits<T>::infinity()) {
        st.kind = RowKind::all_neg_inf;
        return st;
    }
    double rest = 0.0;
    for (std::int64_t j = 0; j < r; ++j)
        if (j != arg) rest += std::exp(static_cast<double>(xr[j * stride]) - static_cast<double>(m));
    st.m = static_cast<double>(m);
    st.log1p_rest = std::log1p(rest);
    st.one_plus_rest = 1.0 + rest;
    return st;
}

enum class RowOut { log_softmax, softmax };

// y = log_softmax or softmax of x along ax.
Tensor softmax_family(const Tensor& x, int ax, RowOut what) {
    Split p = split(x.shape(), ax);
    Tensor y = Tensor::arena_empty(x.shape(), x.dtype());
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* px = x.data<T>();
        T* py = y.data<T>();
        const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
        parallel_for(0, p.outer, 1, std::max<std::int64_t>(1, kernels::parallel_min / std::max<std::int64_t>(1, p.r * p.inner)),
                     [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t o = lo; o < hi; ++o)
                for (std::int64_t i = 0; i < p.inner; ++i) {
                    const T* xr = px + o * p.r * p.inner + i;
                    T* yr = py + o * p.r * p.inner + i;
                    const RowStats st = row_stats(xr, p.r, p.inner);
                    const bool lsm = what == RowOut::log_softmax;
                    for (std::int64_t j = 0; j < p.r; ++j) {
                        const T v = xr[j * p.inner];
                        T out;
                        switch (st.kind) {
                            case RowKind::nan:
                            case RowKind::all_neg_inf: out = nan; break;
                            case RowKind::pos_inf: {
                                const double k = static_cast<double>(st.n_pos_inf);
                                out = v == inf ? static_cast<T>(lsm ? -std::log(k) : 1.0 / k) : (lsm ? -inf : T(0));
                                break;
                            }
                            case RowKind::finite:
                            default: {
                                const double d = static_cast<double>(v) - st.m;
                                out = static_cast<T>(lsm ? d - st.log1p_rest : std::exp(d) / st.one_plus_rest);
                            }
                        }
                        yr[j * p.inner] = out;
                    }
                }
        });
    });
    return y;
}

Tensor log_softmax_tensor(const Tensor& x, int ax) { return softmax_family(x, ax, RowOut::log_softmax); }

}  // namespace

Var log_softmax(const Var& a, int axis) {
    int ax = detail::norm_axis("log_softmax", axis, a.rank());
    Tensor y = log_softmax_tensor(a.value(), ax);
    return record("log_softmax", y, {a}, [na = node_of(a), y, ax](const Tensor& g) {
        // dx = g - softmax * sum(g)
        Tensor sm = t_unary(y, [](auto v) { using std::exp; return exp(v); });
        Tensor gs = sum_axis(g, ax);
        accumulate_fresh(na, t_sub(g, t_mul(sm, gs)));
    }, [ax](HigherCtx& c) { c.dx[0] = sub(c.gout, mul(exp(c.out()), sum(c.gout, {ax}, true))); });
}

Var softmax(const Var& a, int axis) {
    int ax = detail::norm_axis("softmax", axis, a.rank());
    Tensor y = softmax_family(a.value(), ax, RowOut::softmax);
    return record("softmax", y, {a}, [na = node_of(a), y, ax](const Tensor& g) {
        // dx = y * (g - sum(g y))
        Tensor gy = t_mul(g, y);
        accumulate_fresh(na, t_mul(y, t_sub(g, sum_axis(gy, ax))));
    }, [ax](HigherCtx& c) {
        Var y = c.out();
        c.dx[0] = mul(y, sub(c.gout, sum(mul(c.gout, y), {ax}, true)));
    });
}

Var logsumexp(const Var& a, int axis, bool keepdims) {
    int ax = detail::norm_axis("logsumexp", axis, a.rank());
    Tensor ls = log_softmax_tensor(a.value(), ax);  // x - lse, for the backward
    Split p = split(a.shape(), ax);
    Tensor y = Tensor::arena_empty(reduced_shape(a.shape(), ax, true), a.dtype());
    dispatch(a.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* px = a.value().data<T>();
        T* py = y.data<T>();
        for (std::int64_t o = 0; o < p.outer; ++o)
            for (std::int64_t i = 0; i < p.inner; ++i) {
                const RowStats st = row_stats(px + o * p.r * p.inner + i, p.r, p.inner);
                T v;
                switch (st.kind) {
                    case RowKind::nan: v = std::numeric_limits<T>::quiet_NaN(); break;
                    case RowKind::pos_inf: v = std::numeric_limits<T>::infinity(); break;
                    case RowKind::all_neg_inf: v = -std::numeric_limits<T>::infinity(); break;
                    case RowKind::finite:
                    default: v = static_cast<T>(st.m + st.log1p_rest);
                }
                py[o * p.inner + i] = v;
            }
    });
    Shape keep = y.shape();
    if (!keepdims) y = y.reshaped(reduced_shape(a.shape(), ax, false));
    return record("logsumexp", y, {a}, [na = node_of(a), ls, keep](const Tensor& g) {
        Tensor sm = t_unary(ls, [](auto v) { using std::exp; return exp(v); });
        accumulate_fresh(na, t_mul(sm, g.reshaped(keep)));
    }, [ax, keep](HigherCtx& c) { c.dx[0] = mul(softmax(c.in(0), ax), reshape(c.gout, keep)); });
}

}  // namespace sdeuq
