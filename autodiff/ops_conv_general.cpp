// conv2d with per-dimension stride and padding, dilation and groups, and avg_pool2d with per-dimension
// kernel, stride and padding (PyTorch's F.conv2d and F.avg_pool2d). Options that the plain ops cover
// (square stride and padding, no dilation, one group; an unpadded square pool) run those ops, so their
// results keep their bits; every other configuration runs here (docs/conv_general.md):
// - depthwise (groups == C > 1): direct loops (autodiff/kernels/conv_general.hpp), samples over threads;
// - otherwise, per sample and group: im2col with dilation, one GEMM Y_g[O/G, P] = W_g[O/G, CK_g] COL_g,
//   and in the backward gW_g += G_g COL_g^T and dCOL_g = W_g^T G_g followed by col2im.
// The Var-level backwards (grad with create_graph) are the adjoint ops of autodiff/ops_higher.hpp.
#include <algorithm>
#include <fmt/format.h>

#include "autodiff/conv_checks.hpp"
#include "autodiff/kernels/conv_general.hpp"
#include "autodiff/kernels/gemm.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/ops_higher.hpp"
#include "autodiff/parallel.hpp"
#include "autodiff/tensor_ops.hpp"

namespace sdeuq {

namespace {

std::string describe(const Conv2dFuncOptions& o) {
    return fmt::format("stride ({}, {}) padding ({}, {}) dilation ({}, {}) groups {}", o.stride_h, o.stride_w,
                       o.pad_h, o.pad_w, o.dilation_h, o.dilation_w, o.groups);
}

std::string describe(const AvgPool2dFuncOptions& o) {
    return fmt::format("kernel ({}, {}) stride ({}, {}) padding ({}, {}) count_include_pad {}", o.kernel_h,
                       o.kernel_w, o.stride_h, o.stride_w, o.pad_h, o.pad_w, o.count_include_pad);
}

void check_input(const char* op, const char* what, const Var& a, const std::string& opts) {
    if (!a.value().defined()) throw UsageError(fmt::format("{}: undefined {} ({})", op, what, opts));
    if (a.rank() != 4)
        throw UsageError(fmt::format("{}: {} must be rank 4, got {} ({})", op, what, describe(a.value()), opts));
}

// Validates x, w, bias and the options; the geometry of the convolution.
kernels::ConvGeneralShape conv_geometry(const Var& x, const Var& w, const Var* bias, const Conv2dFuncOptions& o) {
    const char* op = "conv2d";
    const std::string opts = describe(o);
    check_input(op, "input [N, C, H, W]", x, opts);
    check_input(op, "weight [O, C/groups, kh, kw]", w, opts);
    check_same_dtype(op, x.value(), w.value());
    if (o.stride_h < 1 || o.stride_w < 1 || o.dilation_h < 1 || o.dilation_w < 1 || o.pad_h < 0 || o.pad_w < 0 ||
        o.groups < 1)
        throw UsageError(fmt::format("{}: stride, dilation and groups must be >= 1 and padding >= 0, got {}", op,
                                     opts));
    kernels::ConvGeneralShape g{};
    g.c = x.dim(1);
    g.h = x.dim(2);
    g.w = x.dim(3);
    g.o = w.dim(0);
    g.kh = w.dim(2);
    g.kw = w.dim(3);
    g.sh = o.stride_h;
    g.sw = o.stride_w;
    g.ph = o.pad_h;
    g.pw = o.pad_w;
    g.dh = o.dilation_h;
    g.dw = o.dilation_w;
    g.groups = o.groups;
    if (g.c % g.groups != 0 || g.o % g.groups != 0)
        throw UsageError(fmt::format("{}: input channels {} and output channels {} must be divisible by groups "
                                     "{} (input {}, weight {}, {})",
                                     op, g.c, g.o, g.groups, describe(x.value()), describe(w.value()), opts));
    if (w.dim(1) != g.c / g.groups)
        throw UsageError(fmt::format("{}: weight {} must be [O, C/groups = {}, kh, kw] for input {} ({})", op,
                                     describe(w.value()), g.c / g.groups, describe(x.value()), opts));
    const std::int64_t eh = g.dh * (g.kh - 1) + 1, ew = g.dw * (g.kw - 1) + 1;  // dilated kernel extent
    if (g.kh < 1 || g.kw < 1 || eh > g.h + 2 * g.ph || ew > g.w + 2 * g.pw)
        throw UsageError(fmt::format("{}: kernel {}x{} (dilated {}x{}) of weight {} is larger than the padded "
                                     "input {} ({})",
                                     op, g.kh, g.kw, eh, ew, describe(w.value()), describe(x.value()), opts));
    detail::check_conv_bias(op, x, w, bias, g.o, " (" + opts + ")");
    g.ho = (g.h + 2 * g.ph - eh) / g.sh + 1;
    g.wo = (g.w + 2 * g.pw - ew) / g.sw + 1;
    return g;
}

bool is_plain(const Conv2dFuncOptions& o) {
    return o.stride_h == o.stride_w && o.pad_h == o.pad_w && o.dilation_h == 1 && o.dilation_w == 1 && o.groups == 1;
}

bool is_depthwise(const kernels::ConvGeneralShape& g) { return g.groups == g.c && g.groups > 1; }

// The general forward into y [N, O, ho, wo].
template <class T>
void conv_forward(const kernels::ConvGeneralShape& g, std::int64_t n, const T* x, const T* w, const T* bias, T* y) {
    const std::int64_t p = g.hw_out(), xs = g.c * g.h * g.w, ys = g.o * p;
    if (is_depthwise(g)) {
        // Samples are independent: the threads share them out (the same bits for any partition).
        parallel_for(0, n, 1, 2, [&](std::int64_t lo, std::int64_t hi) {
            kernels::depthwise_forward(g, hi - lo, x + lo * xs, w, bias, y + lo * ys);
        });
        return;
    }
    const std::int64_t cg = g.cg(), og = g.og(), ck = g.ckg();
    Tensor col = Tensor::arena_empty(Shape{ck * p}, dtype_of<T>());
    T* pc = col.data<T>();
    for (std::int64_t s = 0; s < n; ++s)
        for (std::int64_t gr = 0; gr < g.groups; ++gr) {
            kernels::im2col_dilated(g, x + s * xs + gr * cg * g.h * g.w, pc, p);
            T* out = y + s * ys + gr * og * p;
            kernels::gemm_acc<T>(false, false, og, p, ck, w + gr * og * ck, ck, pc, p, false, out, p);
            if (bias)
                for (std::int64_t oc = 0; oc < og; ++oc)
                    for (std::int64_t q = 0; q < p; ++q) out[oc * p + q] += bias[gr * og + oc];
        }
}

// gx (overwritten, may be null), gw (overwritten, may be null) from gy.
template <class T>
void conv_backward(const kernels::ConvGeneralShape& g, std::int64_t n, const T* x, const T* w, const T* gy, T* gx,
                   T* gw) {
    const std::int64_t p = g.hw_out(), xs = g.c * g.h * g.w, ys = g.o * p;
    if (is_depthwise(g)) {
        if (gx)
            parallel_for(0, n, 1, 2, [&](std::int64_t lo, std::int64_t hi) {
                kernels::depthwise_input_grad(g, hi - lo, gy + lo * ys, w, gx + lo * xs);
            });
        if (gw) kernels::depthwise_weight_grad(g, n, x, gy, gw);
        return;
    }
    const std::int64_t cg = g.cg(), og = g.og(), ck = g.ckg();
    Tensor col = Tensor::arena_empty(Shape{ck * p}, dtype_of<T>());
    T* pc = col.data<T>();
    if (gx) std::fill(gx, gx + n * xs, T(0));
    if (gw) std::fill(gw, gw + g.o * ck, T(0));
    for (std::int64_t s = 0; s < n; ++s)
        for (std::int64_t gr = 0; gr < g.groups; ++gr) {
            const T* go = gy + s * ys + gr * og * p;
            const T* wg = w + gr * og * ck;
            if (gw) {
                // gW_g[og, CK] += G_g[og, P] COL_g[CK, P]^T, samples in order.
                kernels::im2col_dilated(g, x + s * xs + gr * cg * g.h * g.w, pc, p);
                kernels::gemm_acc<T>(false, true, og, ck, p, go, p, pc, p, true, gw + gr * og * ck, ck);
            }
            if (gx) {
                // dCOL_g = W_g^T G_g, then col2im into the group's input channels.
                kernels::gemm_acc<T>(true, false, ck, p, og, wg, ck, go, p, false, pc, p);
                kernels::col2im_dilated(g, pc, p, gx + s * xs + gr * cg * g.h * g.w);
            }
        }
}

Var conv2d_general(const Var& x, const Var& w, const Var* bias, const kernels::ConvGeneralShape& g,
                   const Conv2dFuncOptions& opt) {
    const std::int64_t n = x.dim(0);
    const DType dt = x.dtype();
    Tensor y = Tensor::arena_empty(Shape{n, g.o, g.ho, g.wo}, dt);
    if (y.numel() > 0)
        dispatch(dt, [&](auto z) {
            using T = decltype(z);
            conv_forward<T>(g, n, x.value().data<T>(), w.value().data<T>(),
                            bias ? bias->value().data<T>() : nullptr, y.data<T>());
        });
    Var bv = bias ? *bias : Var();
    return record("conv2d", y, {x, w, bv},
                  [nx = node_of(x), nw = node_of(w), nb = bias ? node_of(*bias) : nullptr, xv = x.value(),
                   wv = w.value(), g, n](const Tensor& gy) {
        const DType dt = xv.dtype();
        Tensor gx = nx ? Tensor::arena_zeros(xv.shape(), dt) : Tensor();
        Tensor gw = nw ? Tensor::arena_zeros(wv.shape(), dt) : Tensor();
        Tensor gb = nb ? Tensor::arena_zeros(Shape{g.o}, dt) : Tensor();
        if (gy.numel() > 0)
            dispatch(dt, [&](auto z) {
                using T = decltype(z);
                const T* pg = gy.data<T>();
                if (nb) {
                    T* q = gb.data<T>();
                    const std::int64_t p = g.hw_out();
                    for (std::int64_t s = 0; s < n; ++s)
                        for (std::int64_t o = 0; o < g.o; ++o) {
                            T acc = T(0);
                            for (std::int64_t k = 0; k < p; ++k) acc += pg[(s * g.o + o) * p + k];
                            q[o] += acc;
                        }
                }
                if (nx || nw)
                    conv_backward<T>(g, n, xv.data<T>(), wv.data<T>(), pg, nx ? gx.data<T>() : nullptr,
                                     nw ? gw.data<T>() : nullptr);
            });
        if (nx) accumulate_fresh(nx, gx);
        if (nw) accumulate_fresh(nw, gw);
        if (nb) accumulate_fresh(nb, gb);
    }, [opt](HigherCtx& c) { detail::conv2d_general_higher(c, opt); });
}

// ---- avg_pool2d
kernels::PoolShape pool_geometry(const Var& x, const AvgPool2dFuncOptions& o) {
    const char* op = "avg_pool2d";
    const std::string opts = describe(o);
    check_input(op, "input [N, C, H, W]", x, opts);
    const int sh = o.stride_h == 0 ? o.kernel_h : o.stride_h, sw = o.stride_w == 0 ? o.kernel_w : o.stride_w;
    if (o.kernel_h < 1 || o.kernel_w < 1 || sh < 1 || sw < 1 || o.pad_h < 0 || o.pad_w < 0)
        throw UsageError(fmt::format("{}: kernel must be >= 1, stride >= 1 (0: the kernel) and padding >= 0, got "
                                     "{}",
                                     op, opts));
    if (2 * o.pad_h > o.kernel_h || 2 * o.pad_w > o.kernel_w)
        throw UsageError(fmt::format("{}: padding must be at most half the kernel, got {}", op, opts));
    kernels::PoolShape p{};
    p.planes = x.dim(0) * x.dim(1);
    p.h = x.dim(2);
    p.w = x.dim(3);
    p.kh = o.kernel_h;
    p.kw = o.kernel_w;
    p.sh = sh;
    p.sw = sw;
    p.ph = o.pad_h;
    p.pw = o.pad_w;
    p.count_include_pad = o.count_include_pad;
    if (p.kh > p.h + 2 * p.ph || p.kw > p.w + 2 * p.pw)
        throw UsageError(fmt::format("{}: kernel larger than the padded input {} ({})", op, describe(x.value()),
                                     opts));
    p.ho = (p.h + 2 * p.ph - p.kh) / p.sh + 1;
    p.wo = (p.w + 2 * p.pw - p.kw) / p.sw + 1;
    return p;
}

}  // namespace

Var conv2d(const Var& x, const Var& w, const Var* bias, const Conv2dFuncOptions& opt) {
    const kernels::ConvGeneralShape g = conv_geometry(x, w, bias, opt);
    if (is_plain(opt)) return conv2d(x, w, bias, opt.stride_h, opt.pad_h);
    return conv2d_general(x, w, bias, g, opt);
}

Var conv2d(const Var& x, const Var& w, const Var& bias, const Conv2dFuncOptions& opt) {
    return conv2d(x, w, &bias, opt);
}

Var conv2d(const Var& x, const Var& w, const Conv2dFuncOptions& opt) { return conv2d(x, w, nullptr, opt); }

Var avg_pool2d(const Var& x, const AvgPool2dFuncOptions& opt) {
    const kernels::PoolShape p = pool_geometry(x, opt);
    if (p.ph == 0 && p.pw == 0 && p.kh == p.kw && p.sh == p.sw)
        return avg_pool2d(x, static_cast<int>(p.kh), static_cast<int>(p.sh));
    Tensor y = Tensor::arena_empty(Shape{x.dim(0), x.dim(1), p.ho, p.wo}, x.dtype());
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        kernels::avg_pool_forward(p, x.value().data<T>(), y.data<T>());
    });
    return record("avg_pool2d", y, {x}, [nx = node_of(x), shape = x.shape(), p](const Tensor& gy) {
        Tensor gx = Tensor::arena_empty(shape, gy.dtype());
        dispatch(gy.dtype(), [&](auto z) {
            using T = decltype(z);
            kernels::avg_pool_backward(p, gy.data<T>(), gx.data<T>());
        });
        accumulate_fresh(nx, gx);
    }, [opt](HigherCtx& c) { detail::avg_pool2d_general_higher(c, opt); });
}

// J_x^T gy of the pool, an op of its own: linear in gy, so its adjoint is the pool itself.
Var avg_pool2d_adjoint(const Var& gy, const Shape& x_shape, const AvgPool2dFuncOptions& opt) {
    const char* op = "avg_pool2d_adjoint";
    if (x_shape.rank() != 4)
        throw UsageError(fmt::format("{}: x_shape must be rank 4, got rank {}", op, x_shape.rank()));
    const kernels::PoolShape p = pool_geometry(Var(Tensor::zeros(x_shape, gy.dtype())), opt);
    if (gy.rank() != 4 || gy.dim(0) * gy.dim(1) != p.planes || gy.dim(2) != p.ho || gy.dim(3) != p.wo)
        throw UsageError(fmt::format("{}: gy {} is not the pool's output for input shape [{}, {}, {}, {}] ({})", op,
                                     describe(gy.value()), x_shape[0], x_shape[1], x_shape[2], x_shape[3],
                                     describe(opt)));
    Tensor y = Tensor::arena_empty(x_shape, gy.dtype());
    dispatch(gy.dtype(), [&](auto z) {
        using T = decltype(z);
        kernels::avg_pool_backward(p, gy.value().data<T>(), y.data<T>());
    });
    return record(op, y, {gy}, [ng = node_of(gy), opt](const Tensor& v) {
        NoGradScope off;
        accumulate_fresh(ng, avg_pool2d(Var(v), opt).value());
    }, [opt](HigherCtx& c) { c.dx[0] = avg_pool2d(c.gout, opt); });
}

}  // namespace sdeuq
