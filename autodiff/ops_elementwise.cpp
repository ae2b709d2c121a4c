// Elementwise ops. The derivative rules all stand in this one file (as tinygrad keeps them in one
// table); gradients of broadcast inputs are un-broadcast once, by sum_to().
#include <cmath>
#include <fmt/format.h>

#include "autodiff/ops.hpp"
#include "autodiff/tensor_ops.hpp"

namespace sdeuq {

namespace {

// Functors valid on scalars and on xsimd batches.
struct Add { template <class V> V operator()(V a, V b) const { return a + b; } };
struct Sub { template <class V> V operator()(V a, V b) const { return a - b; } };
struct Mul { template <class V> V operator()(V a, V b) const { return a * b; } };
struct Div { template <class V> V operator()(V a, V b) const { return a / b; } };
struct Pow { template <class V> V operator()(V a, V b) const { return kernels::pow_v(a, b); } };
struct Max { template <class V> V operator()(V a, V b) const { return kernels::select(a >= b, a, b); } };
struct Min { template <class V> V operator()(V a, V b) const { return kernels::select(a <= b, a, b); } };
// 1 where a >= b (for maximum's gradient), else 0.
struct Ge { template <class V> V operator()(V a, V b) const { return kernels::select(a >= b, V(1), V(0)); } };
struct Le { template <class V> V operator()(V a, V b) const { return kernels::select(a <= b, V(1), V(0)); } };

void check_var(const char* op, const Var& a) {
    if (!a.value().defined()) throw UsageError(fmt::format("{}: undefined input", op));
}

Tensor scalar_like(const Tensor& a, double s) {
    Tensor t = Tensor::arena_empty(Shape{}, a.dtype());
    t.set_flat(0, s);
    return t;
}

// maximum (is_max) / minimum: the gradient goes to a where a >= b (a <= b), else to b; the mask is
// piecewise constant, so it enters the differentiable backward as a constant.
void select_higher(HigherCtx& c, bool is_max) {
    Var a = c.in(0), b = c.in(1);
    Tensor m = is_max ? t_binary("maximum", a.value(), b.value(), Ge{}) : t_binary("minimum", a.value(), b.value(), Le{});
    if (c.needs(0)) c.dx[0] = sum_to(mul(c.gout, Var(m)), a.shape());
    if (c.needs(1)) c.dx[1] = sum_to(mul(c.gout, rsub(1.0, Var(m))), b.shape());
}

}  // namespace

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
    if (!a.defined() || !b.defined()) throw UsageError(fmt::format("{}: undefined input", op));
    if (a.dtype() != b.dtype())
        throw ShapeError(fmt::format("{}: dtype mismatch {} vs {}", op, describe(a), describe(b)));
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
    if (a == b) return a;
    const int r = std::max(a.rank(), b.rank());
    Shape out;
    for (int i = 0; i < r; ++i) {
        std::int64_t da = i < r - a.rank() ? 1 : a[i - (r - a.rank())];
        std::int64_t db = i < r - b.rank() ? 1 : b[i - (r - b.rank())];
        if (da != db && da != 1 && db != 1)
            throw ShapeError(fmt::format("{}: shapes {} and {} do not broadcast (dim {}: {} vs {})", op, a.str(),
                                         b.str(), i, da, db));
        out.push_back(da == 1 ? db : da);
    }
    return out;
}

namespace detail {
void broadcast_strides(const Shape& s, const Shape& out, std::int64_t* strides) {
    const int r = out.rank(), off = r - s.rank();
    std::int64_t st = 1;
    for (int i = r - 1; i >= 0; --i) {
        if (i < off || s[i - off] == 1) {
            strides[i] = 0;
        } else {
            strides[i] = st;
            st *= s[i - off];
        }
    }
}
}  // namespace detail

Tensor sum_to(const Tensor& t, const Shape& target) {
    if (t.shape() == target) return t;
    if (target.numel() == t.numel()) return t.reshaped(target);
    Shape bs = broadcast_shapes("sum_to", target, t.shape());
    if (bs != t.shape()) throw ShapeError(fmt::format("sum_to: {} does not broadcast to {}", target.str(), t.shape().str()));
    Tensor y = Tensor::arena_zeros(target, t.dtype());
    dispatch(t.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* pg = t.data<T>();
        T* py = y.data<T>();
        const Shape& out = t.shape();
        const int r = out.rank();
        const std::int64_t n = out.numel();
        if (n == 0) return;
        std::int64_t st[Shape::max_rank], idx[Shape::max_rank] = {};
        detail::broadcast_strides(target, out, st);
        const std::int64_t inner = out[r - 1], is = st[r - 1];
        std::int64_t oy = 0;
        for (std::int64_t o = 0; o < n; o += inner) {
            if (is == 1) {
                for (std::int64_t i = 0; i < inner; ++i) py[oy + i] += pg[o + i];
            } else {
                py[oy] += kernels::sum_serial(pg + o, inner);
            }
            for (int d = r - 2; d >= 0; --d) {
                oy += st[d];
                if (++idx[d] < out[d]) break;
                oy -= st[d] * out[d];
                idx[d] = 0;
            }
        }
    });
    return y;
}

// g * f'(x, y) of a unary op, one pass over the three same-shaped tensors.
template <class F> Tensor t_unary_backward(const Tensor& g, const Tensor& x, const Tensor& y, F f) {
    Tensor out = Tensor::arena_empty(x.shape(), x.dtype());
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        kernels::map3(g.data<T>(), x.data<T>(), y.data<T>(), out.data<T>(), x.numel(), f);
    });
    return out;
}

Tensor t_add(const Tensor& a, const Tensor& b) { return t_binary("add", a, b, Add{}); }
Tensor t_sub(const Tensor& a, const Tensor& b) { return t_binary("sub", a, b, Sub{}); }
Tensor t_mul(const Tensor& a, const Tensor& b) { return t_binary("mul", a, b, Mul{}); }
Tensor t_div(const Tensor& a, const Tensor& b) { return t_binary("div", a, b, Div{}); }
Tensor t_scale(const Tensor& a, double s) {
    return dispatch(a.dtype(), [&](auto z) {
        using T = decltype(z);
        const T c = static_cast<T>(s);
        return t_unary(a, [c](auto x) { return x * decltype(x)(c); });
    });
}
Tensor t_neg(const Tensor& a) { return t_unary(a, [](auto x) { return -x; }); }
double t_sum_all(const Tensor& a) {
    return dispatch(a.dtype(), [&](auto z) {
        using T = decltype(z);
        return static_cast<double>(kernels::sum_serial(a.data<T>(), a.numel()));
    });
}

// ---------------------------------------------------------------- binary
Var add(const Var& a, const Var& b) {
    Tensor y = t_binary("add", a.value(), b.value(), Add{});
    return record("add", y, {a, b}, [na = node_of(a), nb = node_of(b)](const Tensor& g) {
        if (na) accumulate(na, sum_to(g, na->value.shape()));
        if (nb) accumulate(nb, sum_to(g, nb->value.shape()));
    }, [](HigherCtx& c) {
        if (c.needs(0)) c.dx[0] = sum_to(c.gout, c.in(0).shape());
        if (c.needs(1)) c.dx[1] = sum_to(c.gout, c.in(1).shape());
    });
}

Var sub(const Var& a, const Var& b) {
    Tensor y = t_binary("sub", a.value(), b.value(), Sub{});
    return record("sub", y, {a, b}, [na = node_of(a), nb = node_of(b)](const Tensor& g) {
        if (na) accumulate(na, sum_to(g, na->value.shape()));
        if (nb) accumulate_fresh(nb, sum_to(t_neg(g), nb->value.shape()));
    }, [](HigherCtx& c) {
        if (c.needs(0)) c.dx[0] = sum_to(c.gout, c.in(0).shape());
        if (c.needs(1)) c.dx[1] = sum_to(neg(c.gout), c.in(1).shape());
    });
}

Var mul(const Var& a, const Var& b) {
    Tensor y = t_binary("mul", a.value(), b.value(), Mul{});
    return record("mul", y, {a, b}, [na = node_of(a), nb = node_of(b), av = a.value(), bv = b.value()](const Tensor& g) {
        if (na) accumulate_fresh(na, sum_to(t_mul(g, bv), av.shape()));
        if (nb) accumulate_fresh(nb, sum_to(t_mul(g, av), bv.shape()));
    }, [](HigherCtx& c) {
        if (c.needs(0)) c.dx[0] = sum_to(mul(c.gout, c.in(1)), c.in(0).shape());
        if (c.needs(1)) c.dx[1] = sum_to(mul(c.gout, c.in(0)), c.in(1).shape());
    });
}

Var div(const Var& a, const Var& b) {
    Tensor y = t_binary("div", a.value(), b.value(), Div{});
    return record("div", y, {a, b}, [na = node_of(a), nb = node_of(b), av = a.value(), bv = b.value(), y](const Tensor& g) {
        Tensor gb = t_div(g, bv);  // g / b
        if (na) accumulate_fresh(na, sum_to(gb, av.shape()));
        if (nb) accumulate_fresh(nb, sum_to(t_neg(t_mul(gb, y)), bv.shape()));  // -g a / b^2 = -(g/b) y
    }, [](HigherCtx& c) {
        Var gb = div(c.gout, c.in(1));
        if (c.needs(0)) c.dx[0] = sum_to(gb, c.in(0).shape());
        if (c.needs(1)) c.dx[1] = sum_to(neg(mul(gb, c.out())), c.in(1).shape());
    });
}

Var pow(const Var& a, const Var& b) {
    Tensor y = t_binary("pow", a.value(), b.value(), Pow{});
    return record("pow", y, {a, b}, [na = node_of(a), nb = node_of(b), av = a.value(), bv = b.value(), y](const Tensor& g) {
        if (na) {  // g * b * a^(b-1)
            Tensor d = t_binary("pow", av, bv,
                                [](auto x, auto p) { return p * kernels::pow_v(x, p - decltype(p)(1)); });
            accumulate_fresh(na, sum_to(t_mul(g, d), av.shape()));
        }
        if (nb) {  // g * y * log(a)
            Tensor la = t_unary(av, [](auto x) { return kernels::log_v(x); });
            accumulate_fresh(nb, sum_to(t_mul(t_mul(g, y), la), bv.shape()));
        }
    }, [](HigherCtx& c) {
        Var a = c.in(0), b = c.in(1);
        if (c.needs(0)) c.dx[0] = sum_to(mul(c.gout, mul(b, pow(a, b - 1.0))), a.shape());
        if (c.needs(1)) c.dx[1] = sum_to(mul(mul(c.gout, c.out()), log(a)), b.shape());
    });
}

Var maximum(const Var& a, const Var& b) {
    Tensor y = t_binary("maximum", a.value(), b.value(), Max{});
    return record("maximum", y, {a, b}, [na = node_of(a), nb = node_of(b), av = a.value(), bv = b.value()](const Tensor& g) {
        Tensor m = t_binary("maximum", av, bv, Ge{});
        if (na) accumulate_fresh(na, sum_to(t_mul(g, m), av.shape()));
        if (nb) accumulate_fresh(nb, sum_to(t_mul(g, t_unary(m, [](auto x) { return decltype(x)(1) - x; })), bv.shape()));
    }, [](HigherCtx& c) { select_higher(c, true); });
}

Var minimum(const Var& a, const Var& b) {
    Tensor y = t_binary("minimum", a.value(), b.value(), Min{});
    return record("minimum", y, {a, b}, [na = node_of(a), nb = node_of(b), av = a.value(), bv = b.value()](const Tensor& g) {
        Tensor m = t_binary("minimum", av, bv, Le{});
        if (na) accumulate_fresh(na, sum_to(t_mul(g, m), av.shape()));
        if (nb) accumulate_fresh(nb, sum_to(t_mul(g, t_unary(m, [](auto x) { return decltype(x)(1) - x; })), bv.shape()));
    }, [](HigherCtx& c) { select_higher(c, false); });
}

Var add(const Var& a, double s) {
    check_var("add", a);
    Tensor y = t_binary("add", a.value(), scalar_like(a.value(), s), Add{});
    return record("add_scalar", y, {a}, [na = node_of(a)](const Tensor& g) { accumulate(na, g); },
                  [](HigherCtx& c) { c.dx[0] = c.gout; });
}

Var mul(const Var& a, double s) {
    check_var("mul", a);
    Tensor y = t_scale(a.value(), s);
    return record("mul_scalar", y, {a}, [na = node_of(a), s](const Tensor& g) { accumulate_fresh(na, t_scale(g, s)); },
                  [s](HigherCtx& c) { c.dx[0] = mul(c.gout, s); });
}

Var rsub(double s, const Var& a) {
    check_var("rsub", a);
    Tensor y = t_binary("rsub", scalar_like(a.value(), s), a.value(), Sub{});
    return record("rsub", y, {a}, [na = node_of(a)](const Tensor& g) { accumulate_fresh(na, t_neg(g)); },
                  [](HigherCtx& c) { c.dx[0] = neg(c.gout); });
}

Var rdiv(double s, const Var& a) {
    check_var("rdiv", a);
    Tensor y = t_binary("rdiv", scalar_like(a.value(), s), a.value(), Div{});
    return record("rdiv", y, {a}, [na = node_of(a), av = a.value(), y](const Tensor& g) {
        accumulate_fresh(na, t_neg(t_mul(g, t_div(y, av))));  // d(s/a) = -s/a^2 = -y/a
    }, [](HigherCtx& c) { c.dx[0] = neg(mul(c.gout, div(c.out(), c.in(0)))); });
}

Var pow(const Var& a, double p) {
    check_var("pow", a);
    Tensor ps = scalar_like(a.value(), p);
    Tensor y = t_binary("pow", a.value(), ps, Pow{});
    return record("pow_scalar", y, {a}, [na = node_of(a), av = a.value(), ps](const Tensor& g) {
        Tensor d = t_binary("pow", av, ps,
                            [](auto x, auto q) { return q * kernels::pow_v(x, q - decltype(q)(1)); });
        accumulate_fresh(na, t_mul(g, d));
    }, [p](HigherCtx& c) { c.dx[0] = mul(c.gout, mul(pow(c.in(0), p - 1.0), p)); });
}

// ---------------------------------------------------------------- unary
// Each entry: forward f(x), and the derivative as a function of (x, y) multiplied into g (in one pass:
// g * f'(x, y) per element).
// HDERIV: the same derivative as Var ops of the Vars x and y (the differentiable backward of grad()).
#define SDEUQ_UNARY(NAME, FWD, DERIV, HDERIV)                                                                  \
    Var NAME(const Var& a) {                                                                                   \
        check_var(#NAME, a);                                                                                   \
        Tensor y = t_unary(a.value(), [](auto x) { FWD; });                                                    \
        return record(#NAME, y, {a}, [na = node_of(a), xv = a.value(), y](const Tensor& g) {                   \
            accumulate_fresh(na, t_unary_backward(g, xv, y, [](auto gg, [[maybe_unused]] auto x,               \
                                                               [[maybe_unused]] auto y) {                      \
                auto d = [&] { DERIV; }();                                                                     \
                return gg * d;                                                                                 \
            }));                                                                                               \
        }, [](HigherCtx& c) {                                                                                  \
            auto deriv = []([[maybe_unused]] const Var& x, [[maybe_unused]] const Var& y) -> Var { HDERIV; }; \
            c.dx[0] = mul(c.gout, deriv(c.in(0), c.out()));                                                    \
        });                                                                                                    \
    }

using std::abs;
SDEUQ_UNARY(exp, return kernels::exp_v(x), return y, return y)
SDEUQ_UNARY(log, return kernels::log_v(x), return decltype(x)(1) / x, return rdiv(1.0, x))
SDEUQ_UNARY(log1p, return kernels::log1p_v(x), return decltype(x)(1) / (decltype(x)(1) + x),
            return rdiv(1.0, x + 1.0))
SDEUQ_UNARY(sqrt, using std::sqrt; return sqrt(x), return decltype(x)(0.5) / y, return rdiv(0.5, y))
SDEUQ_UNARY(square, return x * x, return decltype(x)(2) * x, return mul(x, 2.0))
SDEUQ_UNARY(abs, using std::abs; return abs(x),
            using V = decltype(x); return kernels::select(x > V(0), V(1), kernels::select(x < V(0), V(-1), V(0))),
            return Var(t_unary(x.value(), [](auto v) {
                using V = decltype(v);
                return kernels::select(v > V(0), V(1), kernels::select(v < V(0), V(-1), V(0)));
            })))
SDEUQ_UNARY(tanh, return kernels::tanh_v(x), return decltype(x)(1) - y * y, return rsub(1.0, square(y)))
SDEUQ_UNARY(sigmoid, using V = decltype(x); return V(1) / (V(1) + kernels::exp_v(-x)),
            return y * (decltype(x)(1) - y), return mul(y, rsub(1.0, y)))
SDEUQ_UNARY(relu, using V = decltype(x); return kernels::select(x > V(0), x, V(0)),
            using V = decltype(x); return kernels::select(x > V(0), V(1), V(0)),
            return Var(t_unary(x.value(), [](auto v) {
                using V = decltype(v);
                return kernels::select(v > V(0), V(1), V(0));
            })))
// softplus(x) = max(x, 0) + log1p(exp(-|x|)); derivative sigmoid(x).
SDEUQ_UNARY(softplus,
            using std::abs; using V = decltype(x);
            return kernels::select(x > V(0), x, V(0)) + kernels::log1p_v(kernels::exp_v(-abs(x))),
            using V = decltype(x); return V(1) / (V(1) + kernels::exp_v(-x)), return sigmoid(x))
// silu(x) = x sigmoid(x); derivative s (1 + x (1 - s)).
SDEUQ_UNARY(silu, using V = decltype(x); return x / (V(1) + kernels::exp_v(-x)),
            using V = decltype(x); V s = V(1) / (V(1) + kernels::exp_v(-x));
            return s * (V(1) + x * (V(1) - s)),
            Var s = sigmoid(x); return mul(s, add(mul(x, rsub(1.0, s)), 1.0)))
SDEUQ_UNARY(sin, using std::sin; return sin(x), using std::cos; return cos(x), return cos(x))
SDEUQ_UNARY(cos, using std::cos; return cos(x), using std::sin; return -sin(x), return neg(sin(x)))
#undef SDEUQ_UNARY

Var neg(const Var& a) {
    check_var("neg", a);
    Tensor y = t_neg(a.value());
    return record("neg", y, {a}, [na = node_of(a)](const Tensor& g) { accumulate_fresh(na, t_neg(g)); },
                  [](HigherCtx& c) { c.dx[0] = neg(c.gout); });
}

Var clamp(const Var& a, double lo, double hi) {
    check_var("clamp", a);
    if (!(lo <= hi)) throw UsageError(fmt::format("clamp: lo {} > hi {}", lo, hi));
    return dispatch(a.dtype(), [&](auto z) {
        using T = decltype(z);
        const T l = static_cast<T>(lo), h = static_cast<T>(hi);
        Tensor y = t_unary(a.value(), [l, h](auto x) {
            using V = decltype(x);
            return kernels::select(x < V(l), V(l), kernels::select(x > V(h), V(h), x));
        });
        return record("clamp", y, {a}, [na = node_of(a), xv = a.value(), l, h](const Tensor& g) {
            Tensor m = t_unary(xv, [l, h](auto x) {
                using V = decltype(x);
                return kernels::select(x > V(l), kernels::select(x < V(h), V(1), V(0)), V(0));
            });
            accumulate_fresh(na, t_mul(g, m));
        }, [l, h](HigherCtx& c) {
            Tensor m = t_unary(c.in(0).value(), [l, h](auto x) {
                using V = decltype(x);
                return kernels::select(x > V(l), kernels::select(x < V(h), V(1), V(0)), V(0));
            });
            c.dx[0] = mul(c.gout, Var(m));
        });
    });
}

Var where(const Tensor& cond, const Var& a, const Var& b) {
    check_same_dtype("where", a.value(), b.value());
    Tensor c = cond.dtype() == a.dtype() ? cond : cond.to(a.dtype());
    Shape out = broadcast_shapes("where", broadcast_shapes("where", c.shape(), a.shape()), b.shape());
    // y = a * m + b * (1 - m) would propagate NaN from the unselected side; select instead.
    Tensor m = t_binary("where", c, Tensor::arena_zeros(out, a.dtype()),
                        [](auto x, auto zero) { return kernels::select(x != zero, decltype(x)(1), zero); });
    Tensor ab = t_binary("where", a.value(), m, [](auto x, auto mm) { return kernels::select(mm != decltype(x)(0), x, decltype(x)(0)); });
    Tensor bb = t_binary("where", b.value(), m, [](auto x, auto mm) { return kernels::select(mm == decltype(x)(0), x, decltype(x)(0)); });
    Tensor y = t_add(ab, bb);
    return record("where", y, {a, b}, [na = node_of(a), nb = node_of(b), m, as = a.shape(), bs = b.shape()](const Tensor& g) {
        if (na) accumulate_fresh(na, sum_to(t_mul(g, m), as));
        if (nb) accumulate_fresh(nb, sum_to(t_mul(g, t_unary(m, [](auto x) { return decltype(x)(1) - x; })), bs));
    }, [m](HigherCtx& c) {
        if (c.needs(0)) c.dx[0] = sum_to(mul(c.gout, Var(m)), c.in(0).shape());
        if (c.needs(1)) c.dx[1] = sum_to(mul(c.gout, rsub(1.0, Var(m))), c.in(1).shape());
    });
}

Var masked(const Var& a, const Tensor& mask) {
    Tensor mk = mask.dtype() == a.dtype() ? mask : mask.to(a.dtype());
    Tensor y = t_mul(a.value(), mk);
    if (y.shape() != a.shape())
        throw ShapeError(fmt::format("masked: mask {} does not broadcast to input {}", describe(mask), describe(a.value())));
    return record("masked", y, {a}, [na = node_of(a), mk](const Tensor& g) { accumulate_fresh(na, t_mul(g, mk)); },
                  [mk](HigherCtx& c) { c.dx[0] = mul(c.gout, Var(mk)); });
}

}  // namespace sdeuq
