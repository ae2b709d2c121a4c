// matmul and linear: forward and backward both run on the packed GEMM kernel.
#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/kernels/gemm.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/parallel.hpp"
#include "autodiff/tensor_ops.hpp"

namespace sdeuq {

namespace {

struct MatmulDims {
    std::int64_t batch = 1, m = 0, n = 0, k = 0;
    bool a_batched = false, b_batched = false;
    Shape out;
};

MatmulDims matmul_dims(const Tensor& a, const Tensor& b, bool ta, bool tb) {
    const Shape &sa = a.shape(), &sb = b.shape();
    auto fail = [&](const char* why) {
        throw ShapeError(fmt::format("matmul: {} (a {}{}, b {}{})", why, describe(a), ta ? "^T" : "", describe(b),
                                     tb ? "^T" : ""));
    };
    if (sa.rank() < 2 || sb.rank() < 2) fail("operands must have rank >= 2");
    check_same_dtype("matmul", a, b);
    MatmulDims d;
    d.m = ta ? sa[-1] : sa[-2];
    const std::int64_t ka = ta ? sa[-2] : sa[-1];
    const std::int64_t kb = tb ? sb[-1] : sb[-2];
    d.n = tb ? sb[-2] : sb[-1];
    if (ka != kb) fail("inner dimensions differ");
    d.k = ka;
    d.a_batched = sa.rank() > 2;
    d.b_batched = sb.rank() > 2;
    if (d.a_batched && d.b_batched) {
        if (sa.rank() != sb.rank()) fail("batch dimensions differ");
        for (int i = 0; i < sa.rank() - 2; ++i)
            if (sa[i] != sb[i]) fail("batch dimensions differ");
    }
    const Shape& bs = d.a_batched ? sa : sb;
    for (int i = 0; i < bs.rank() - 2; ++i) {
        d.out.push_back(bs[i]);
        d.batch *= bs[i];
    }
    d.out.push_back(d.m);
    d.out.push_back(d.n);
    return d;
}

// C_p = op(A_p) op(B_p) (+ C_p when accumulate) over the batch; a 2-D operand is shared. A shared C
// (c_batched false) sums over the batch in batch order.
template <class T>
void batched_gemm(bool ta, bool tb, std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
                  bool a_b, const T* b, bool b_b, T* c, bool c_b, bool accumulate) {
    const std::int64_t lda = ta ? m : k, ldb = tb ? k : n;
    // A batched, not transposed, B shared, C batched: the batch folds into the rows of one GEMM.
    if (batch > 1 && a_b && !ta && !b_b && c_b) {
        kernels::gemm<T>(false, tb, batch * m, n, k, T(1), a, lda, b, ldb, accumulate ? T(1) : T(0), c, n);
        return;
    }
    // Gradient of a shared B: sum_p A_p^T G_p is one GEMM over the stacked rows.
    if (batch > 1 && ta && !tb && a_b && b_b && !c_b) {
        kernels::gemm<T>(true, false, m, n, batch * k, T(1), a, m, b, n, accumulate ? T(1) : T(0), c, n);
        return;
    }
    for (std::int64_t p = 0; p < batch; ++p) {
        const T* ap = a + (a_b ? p * m * k : 0);
        const T* bp = b + (b_b ? p * k * n : 0);
        T* cp = c + (c_b ? p * m * n : 0);
        const bool acc = accumulate || (!c_b && p > 0);
        kernels::gemm<T>(ta, tb, m, n, k, T(1), ap, lda, bp, ldb, acc ? T(1) : T(0), cp, n);
    }
}

// Gradients of y = op(A) op(B) (the part of matmul's and linear's backward that the two share).
template <class T>
void matmul_backward(Node* na, Node* nb, const Tensor& av, const Tensor& bv, const MatmulDims& d, bool ta, bool tb,
                     const Tensor& g) {
    const T* pg = g.data<T>();
    // A gradient is written straight into the node's own adjoint (beta 1) when the node already
    // holds one (a parameter's) and the product is summed in one pass (same bits as adding it).
    auto target = [](Node* n, bool single_pass, std::int64_t depth) {
        return n->grad.defined() && !n->grad_shared && single_pass && depth <= kernels::gemm_kc;
    };
    if (na) {
        // d op(A) = G op(B)^T; with ta, dA = op(B) G^T.
        const bool into = d.k > 0 && d.m > 0 && target(na, d.a_batched || d.batch == 1, d.n);
        Tensor ga = into ? na->grad : Tensor::arena_empty(av.shape(), av.dtype());
        const bool acc = into && !take_zero(na);  // a zeroed parameter gradient is overwritten (beta 0)
        if (d.k > 0 && d.m > 0) {
            if (!ta)
                batched_gemm<T>(false, !tb, d.batch, d.m, d.k, d.n, pg, true, bv.data<T>(), d.b_batched,
                                ga.data<T>(), d.a_batched, acc);
            else
                batched_gemm<T>(tb, true, d.batch, d.k, d.m, d.n, bv.data<T>(), d.b_batched, pg, true,
                                ga.data<T>(), d.a_batched, acc);
        } else {
            ga.fill(0.0);
        }
        if (!into) accumulate_fresh(na, ga);
    }
    if (nb) {
        // d op(B) = op(A)^T G; with tb, dB = G^T op(A). A shared B sums over the batch: in one GEMM
        // of depth batch * m when A is batched and not transposed (see batched_gemm).
        const bool fold = !d.b_batched && d.batch > 1;
        const bool into =
            d.k > 0 && d.n > 0 && target(nb, !fold || (d.a_batched && !ta), fold ? d.batch * d.m : d.m);
        Tensor gb = into ? nb->grad : Tensor::arena_empty(bv.shape(), bv.dtype());
        const bool acc = into && !take_zero(nb);
        if (d.k > 0 && d.n > 0) {
            if (!tb)
                batched_gemm<T>(!ta, false, d.batch, d.k, d.n, d.m, av.data<T>(), d.a_batched, pg, true,
                                gb.data<T>(), d.b_batched, acc);
            else
                batched_gemm<T>(true, ta, d.batch, d.n, d.k, d.m, pg, true, av.data<T>(), d.a_batched,
                                gb.data<T>(), d.b_batched, acc);
        } else {
            gb.fill(0.0);
        }
        if (!into) accumulate_fresh(nb, gb);
    }
}

}  // namespace

Var matmul(const Var& a, const Var& b, bool ta, bool tb) {
    const MatmulDims d = matmul_dims(a.value(), b.value(), ta, tb);
    Tensor y = Tensor::arena_empty(d.out, a.dtype());
    dispatch(a.dtype(), [&](auto z) {
        using T = decltype(z);
        if (d.k == 0) {
            y.fill(0.0);
            return;
        }
        batched_gemm<T>(ta, tb, d.batch, d.m, d.n, d.k, a.value().data<T>(), d.a_batched, b.value().data<T>(),
                        d.b_batched, y.data<T>(), true, false);
    });
    return record("matmul", y, {a, b},
                  [na = node_of(a), nb = node_of(b), av = a.value(), bv = b.value(), d, ta, tb](const Tensor& g) {
                      dispatch(g.dtype(), [&](auto z) {
                          using T = decltype(z);
                          matmul_backward<T>(na, nb, av, bv, d, ta, tb, g);
                      });
                  },
                  [ta, tb](HigherCtx& c) {
                      // y = op(A) op(B): d op(A) = G op(B)^T, d op(B) = op(A)^T G; a shared 2-D operand
                      // sums over the batch (sum_to).
                      Var a = c.in(0), b = c.in(1), g = c.gout;
                      if (c.needs(0))
                          c.dx[0] = sum_to(ta ? matmul(b, g, tb, true) : matmul(g, b, false, !tb), a.shape());
                      if (c.needs(1))
                          c.dx[1] = sum_to(tb ? matmul(g, a, true, ta) : matmul(a, g, !ta, false), b.shape());
                  });
}

namespace {

// The activation of a fused linear, in place on y (the lambdas of ops_elementwise.cpp's tanh, sigmoid and
// relu, so the same bits), and its backward g * act'(y) from the output.
template <class T>
void apply_act(LinearAct act, T* y, std::int64_t n) {
    switch (act) {
        case LinearAct::tanh: kernels::map1(y, y, n, [](auto x) { return kernels::tanh_v(x); }); break;
        case LinearAct::sigmoid:
            kernels::map1(y, y, n, [](auto x) {
                using std::exp;
                using V = decltype(x);
                return V(1) / (V(1) + exp(-x));
            });
            break;
        case LinearAct::relu:
            kernels::map1(y, y, n, [](auto x) {
                using V = decltype(x);
                return kernels::select(x > V(0), x, V(0));
            });
            break;
        case LinearAct::none: break;
    }
}

template <class T>
Tensor act_backward(LinearAct act, const Tensor& g, const Tensor& y) {
    if (act == LinearAct::none) return g;
    Tensor out = Tensor::arena_empty(y.shape(), y.dtype());
    const T *pg = g.data<T>(), *py = y.data<T>();
    T* po = out.data<T>();
    const std::int64_t n = y.numel();
    switch (act) {
        case LinearAct::tanh:
            kernels::map2(pg, py, po, n, [](auto gg, auto v) { return gg * (decltype(v)(1) - v * v); });
            break;
        case LinearAct::sigmoid:
            kernels::map2(pg, py, po, n, [](auto gg, auto v) { return gg * (v * (decltype(v)(1) - v)); });
            break;
        case LinearAct::relu:
            kernels::map2(pg, py, po, n, [](auto gg, auto v) {
                using V = decltype(v);
                return gg * kernels::select(v > V(0), V(1), V(0));
            });
            break;
        case LinearAct::none: break;
    }
    return out;
}

const char* linear_op_name(LinearAct act) {
    switch (act) {
        case LinearAct::tanh: return "linear_tanh";
        case LinearAct::sigmoid: return "linear_sigmoid";
        case LinearAct::relu: return "linear_relu";
        case LinearAct::none: break;
    }
    return "linear";
}

}  // namespace

Var linear(const Var& x, const Var& w, const Var* bias) { return linear(x, w, bias, LinearAct::none); }

Var linear(const Var& x, const Var& w, const Var* bias, LinearAct act) {
    const char* op = linear_op_name(act);
    if (w.rank() != 2 || x.rank() < 1 || x.dim(-1) != w.dim(1))
        throw ShapeError(fmt::format("{}: input {} does not match weight {} (expected [..., {}] and [out, in])",
                                     op, describe(x.value()), describe(w.value()), w.rank() == 2 ? w.dim(1) : -1));
    if (bias && (bias->rank() != 1 || bias->dim(0) != w.dim(0)))
        throw ShapeError(fmt::format("{}: bias {} does not match weight {}", op, describe(bias->value()),
                                     describe(w.value())));
    Var x2 = x.rank() == 1 ? reshape(x, Shape{1, x.dim(0)}) : x;
    Var y;
    if (!bias && act == LinearAct::none) {
        y = matmul(x2, w, false, true);
    } else {
        // One GEMM with the bias added in its epilogue (same bits as matmul followed by add): x W^T + b,
        // then the activation in place.
        if (bias) check_same_dtype(op, x2.value(), bias->value());
        const MatmulDims d = matmul_dims(x2.value(), w.value(), false, true);
        Tensor out = Tensor::arena_empty(d.out, x2.dtype());
        const std::int64_t rows = d.batch * d.m;
        dispatch(x2.dtype(), [&](auto z) {
            using T = decltype(z);
            kernels::gemm<T>(false, true, rows, d.n, d.k, T(1), x2.value().data<T>(), d.k, w.value().data<T>(), d.k,
                             T(0), out.data<T>(), d.n, bias ? bias->value().data<T>() : nullptr);
            apply_act<T>(act, out.data<T>(), out.numel());
        });
        const Var b = bias ? *bias : Var();
        y = record(op, out, {x2, w, b},
                   [nx = node_of(x2), nw = node_of(w), nbias = bias ? node_of(*bias) : nullptr,
                    xv = x2.value(), wv = w.value(), yv = out, d, rows, act](const Tensor& g_out) {
                       dispatch(g_out.dtype(), [&](auto z) {
                           using T = decltype(z);
                           const Tensor g = act_backward<T>(act, g_out, yv);  // dL/d(x W^T + b)
                           matmul_backward<T>(nx, nw, xv, wv, d, false, true, g);
                           if (nbias) {
                               // Column sum of the output gradient, rows in order from zero (as sum_to):
                               // each column's sum has one order whichever thread owns the column.
                               Tensor gb = Tensor::arena_empty(Shape{d.n}, g.dtype());
                               T* pb = gb.data<T>();
                               const T* pg = g.data<T>();
                               const std::int64_t n = d.n;
                               const std::int64_t min_cols = rows * n >= 16384 ? 0 : n + 1;  // small: inline
                               parallel_for(0, n, 16, min_cols, [&](std::int64_t lo, std::int64_t hi) {
                                   std::fill(pb + lo, pb + hi, T(0));
                                   for (std::int64_t i = 0; i < rows; ++i) {
                                       const T* gi = pg + i * n;
                                       for (std::int64_t j = lo; j < hi; ++j) pb[j] += gi[j];
                                   }
                               });
                               accumulate_fresh(nbias, gb);
                           }
                       });
                   },
                   [act](HigherCtx& c) {
                       Var y = c.out(), g = c.gout;
                       switch (act) {  // dL/d(x W^T + b) from the output, as the backward
                           case LinearAct::tanh: g = mul(g, rsub(1.0, square(y))); break;
                           case LinearAct::sigmoid: g = mul(g, mul(y, rsub(1.0, y))); break;
                           case LinearAct::relu:
                               g = mul(g, Var(t_unary(y.value(), [](auto v) {
                                       using V = decltype(v);
                                       return kernels::select(v > V(0), V(1), V(0));
                                   })));
                               break;
                           case LinearAct::none: break;
                       }
                       Var x = c.in(0), w = c.in(1);
                       const std::int64_t rows = x.numel() / x.dim(-1);
                       Var g2 = reshape(g, Shape{rows, w.dim(0)});
                       if (c.needs(0)) c.dx[0] = matmul(g, w);
                       if (c.needs(1)) c.dx[1] = matmul(g2, reshape(x, Shape{rows, x.dim(-1)}), true, false);
                       if (c.needs(2)) c.dx[2] = sum(g2, {0});
                   });
    }
    return x.rank() == 1 ? reshape(y, Shape{w.dim(0)}) : y;
}

}  // namespace sdeuq
