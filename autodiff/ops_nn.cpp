// Convolution, pooling, normalisation and dropout. Forward and backward stand side by side.
//
// conv2d is im2col + GEMM over groups of samples (one GEMM per group keeps its n dimension large for small
// images). Normalisations are fused kernels with the hand-derived backward, sharing one kernel: group_norm
// and layer_norm both normalise contiguous blocks of the input and apply a per-channel affine map. The
// loops live in autodiff/kernels/ (conv.hpp: im2col/col2im, norm.hpp, dropout.hpp, gemm.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <type_traits>
#include <vector>

#include "autodiff/conv_checks.hpp"
#include "autodiff/kernels/conv.hpp"
#include "autodiff/kernels/dropout.hpp"
#include "autodiff/kernels/gemm.hpp"
#include "autodiff/kernels/norm.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/ops_higher.hpp"
#include "autodiff/parallel.hpp"
#include "autodiff/random.hpp"
#include "autodiff/tensor_ops.hpp"

namespace sdeuq {

namespace {

void check_defined(const char* op, const Var& a) {
    if (!a.value().defined()) throw UsageError(fmt::format("{}: undefined input", op));
}

void check_rank4(const char* op, const char* what, const Var& a) {
    check_defined(op, a);
    if (a.rank() != 4)
        throw ShapeError(
            fmt::format("{}: {} must be rank 4 [N, C, H, W], got {}", op, what, describe(a.value())));
}

// ---- conv2d geometry
struct ConvGeom : kernels::ConvShape {
    std::int64_t n, o;
    // The batch is cut into a fixed number of parts, whatever the thread count: the threads share out whole
    // parts (each runs its im2col, GEMMs and col2im alone, so the small per-image GEMMs need not be split),
    // and the weight gradient is the sum of the parts' partial gradients in part order, so 1 and 2 threads
    // give the same bits.
    static constexpr std::int64_t max_parts = 4;
    std::int64_t parts() const { return std::max<std::int64_t>(1, std::min(n, max_parts)); }
    std::int64_t part_begin(std::int64_t i) const { return n * i / parts(); }
    // Samples whose columns (CK x P values) fit in ~512 KiB, half the L2 of this machine's cores: the unit
    // in which the column matrix is written and read back by one GEMM (the forward and input-gradient
    // GEMMs sum each element over k alone, so their results do not depend on it), at most a part. sh: the
    // shape whose columns are meant (this convolution's, or one of its input-gradient phases).
    std::int64_t sub_chunk(const kernels::ConvShape& sh, std::size_t elem) const {
        const std::int64_t bytes =
            sh.ck() * std::max<std::int64_t>(1, sh.hw_out()) * static_cast<std::int64_t>(elem);
        const std::int64_t fit = (std::int64_t(512) << 10) / std::max<std::int64_t>(1, bytes);
        return std::clamp<std::int64_t>(fit, 1, std::max<std::int64_t>(1, (n + parts() - 1) / parts()));
    }
    std::int64_t sub_chunk(std::size_t elem) const { return sub_chunk(*this, elem); }
};

}  // namespace

// ---------------------------------------------------------------- conv2d
// y[n, o, q] = b[o] + sum_k W[o, k] col_n[k, q] with k = (c, i, j): per group of samples one GEMM
// Y[O, ns*P] = W[O, CK] @ COL[CK, ns*P], COL packed for the GEMM as it is gathered. Backward:
// gW^T += COL @ G^T group by group (the columns recomputed), gx by stride phase (a stride-1 implicit
// GEMM per phase, kernels::grad_phases; dCOL = W^T @ G then col2im where a phase cannot run), gb[o] =
// sum_{n, q} g[n, o, q]. The batch runs in a fixed number of parts (ConvGeom::parts) shared out among
// the threads.
Var conv2d(const Var& x, const Var& w, const Var* bias, int stride, int padding) {
    const char* op = "conv2d";
    check_rank4(op, "input", x);
    check_rank4(op, "weight", w);
    check_same_dtype(op, x.value(), w.value());
    if (stride < 1 || padding < 0)
        throw ShapeError(fmt::format("{}: stride must be >= 1 and padding >= 0, got stride {} padding {}", op,
                                     stride, padding));
    ConvGeom g;
    g.n = x.dim(0);
    g.c = x.dim(1);
    g.h = x.dim(2);
    g.w = x.dim(3);
    g.o = w.dim(0);
    g.kh = w.dim(2);
    g.kw = w.dim(3);
    g.stride = stride;
    g.pad_h = g.pad_w = padding;
    if (w.dim(1) != g.c)
        throw ShapeError(fmt::format("{}: channel mismatch: input {} has {} channels, weight {} expects {}",
                                     op, describe(x.value()), g.c, describe(w.value()), w.dim(1)));
    if (g.kh < 1 || g.kw < 1 || g.kh > g.h + 2 * g.pad_h || g.kw > g.w + 2 * g.pad_w)
        throw ShapeError(fmt::format("{}: kernel {}x{} of weight {} does not fit the padded input {} "
                                     "(padding {})",
                                     op, g.kh, g.kw, describe(w.value()), describe(x.value()), padding));
    detail::check_conv_bias(op, x, w, bias, g.o);
    g.ho = (g.h + 2 * g.pad_h - g.kh) / g.stride + 1;
    g.wo = (g.w + 2 * g.pad_w - g.kw) / g.stride + 1;
    const DType dt = x.dtype();
    Tensor y = Tensor::arena_empty(Shape{g.n, g.o, g.ho, g.wo}, dt);
    const std::int64_t p = g.hw_out(), ck = g.ck(), np = g.parts();
    const std::int64_t sub = g.sub_chunk(dtype_size(dt)), cols = sub * p;
    if (y.numel() > 0) {
        // Per part: its packed columns (CK x sub*P, the column count rounded up to whole GEMM panels) and
        // GEMM result (O x sub*P), from the arena before the threads start.
        const std::int64_t cols_packed = (cols + 15) / 16 * 16;
        Tensor col = Tensor::arena_empty(Shape{np * ck * cols_packed}, dt);
        Tensor tmp = Tensor::arena_empty(Shape{np * g.o * cols}, dt);
        dispatch(dt, [&](auto z) {
            using T = decltype(z);
            const T* px = x.value().data<T>();
            const T* pw = w.value().data<T>();
            const T* pb = bias ? bias->value().data<T>() : nullptr;
            T* py = y.data<T>();
            const std::int64_t xs = g.c * g.h * g.w;
            parallel_for(0, np, 1, 2, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t part = lo; part < hi; ++part) {
                    T* c = col.data<T>() + part * ck * cols_packed;
                    T* t = tmp.data<T>() + part * g.o * cols;
                    const std::int64_t end = g.part_begin(part + 1);
                    for (std::int64_t s0 = g.part_begin(part); s0 < end; s0 += sub) {
                        // Y[O, ns*P] = W[O, CK] @ COL[CK, ns*P], the columns written straight into the
                        // GEMM's packed panels (implicit GEMM: no separate im2col and packing passes).
                        const std::int64_t ns = std::min(sub, end - s0), ld = ns * p;
                        kernels::im2col_packed(g, px + s0 * xs, ns, kernels::gemm_nr<T>, c);
                        kernels::gemm_packed_b<T>(g.o, ld, ck, pw, ck, c, t, ld);
                        kernels::rows_to_samples(t, ld, ns, g.o, p, pb, py + s0 * g.o * p);
                    }
                }
            });
        });
    }
    Var bv = bias ? *bias : Var();
    return record(op, y, {x, w, bv},
                  [nx = node_of(x), nw = node_of(w), nb_ = bias ? node_of(*bias) : nullptr, xv = x.value(),
                   wv = w.value(), g](const Tensor& gy) {
        const std::int64_t p = g.hw_out(), ck = g.ck(), np = g.parts();
        const DType dt = xv.dtype();
        const std::int64_t sub = g.sub_chunk(dtype_size(dt)), cols = sub * p;
        Tensor gx = nx ? Tensor::arena_empty(xv.shape(), dt) : Tensor();
        Tensor gw = nw ? Tensor::arena_zeros(wv.shape(), dt) : Tensor();
        Tensor gb = nb_ ? Tensor::arena_zeros(Shape{g.o}, dt) : Tensor();
        dispatch(dt, [&](auto z) {
            using T = decltype(z);
            if (gy.numel() == 0) {
                if (gx.defined()) std::fill(gx.data<T>(), gx.data<T>() + gx.numel(), T(0));
                return;
            }
            const T* pg = gy.data<T>();
            if (gb.defined()) {
                T* q = gb.data<T>();
                for (std::int64_t n = 0; n < g.n; ++n)
                    for (std::int64_t o = 0; o < g.o; ++o) {
                        const T* r = pg + (n * g.o + o) * p;
                        T acc = T(0);
                        for (std::int64_t k = 0; k < p; ++k) acc += r[k];
                        q[o] += acc;
                    }
            }
            if (!nx && !nw) return;
            const T* px = xv.data<T>();
            const T* pw = wv.data<T>();
            const std::int64_t xs = g.c * g.h * g.w;
            // The input gradient by stride phase (kernels::grad_phases): per phase a stride-1 convolution of
            // gy run as the forward runs (implicit GEMM over K = O ka kb) and a scatter of its rows into gx,
            // every gx element written once, by one GEMM: no dCOL matrix, no col2im. A phase that would
            // need negative padding (padding beyond the kernel) falls back to dCOL = W^T G and col2im.
            std::vector<kernels::GradPhase> phases = nx ? kernels::grad_phases(g, g.o)
                                                        : std::vector<kernels::GradPhase>();
            bool dx_phases = nx != nullptr;
            for (const auto& ph : phases)
                dx_phases = dx_phases && (!ph.taps || (ph.g.pad_h >= 0 && ph.g.pad_w >= 0));
            std::vector<Tensor> wphase(phases.size());
            std::vector<std::int64_t> subd(phases.size(), 0);
            std::int64_t dcol_size = 0, dtmp_size = 0;
            bool untapped = false;
            for (std::size_t i = 0; i < phases.size() && dx_phases; ++i) {
                const auto& ph = phases[i];
                untapped = untapped || !ph.taps;
                if (!ph.taps) continue;
                wphase[i] = Tensor::arena_empty(Shape{g.c * ph.g.ck()}, dt);
                kernels::phase_weights(g, g.o, ph, pw, wphase[i].data<T>());
                subd[i] = g.sub_chunk(ph.g, sizeof(T));
                const std::int64_t colsd = (subd[i] * ph.g.hw_out() + 15) / 16 * 16;
                dcol_size = std::max(dcol_size, ph.g.ck() * colsd);
                dtmp_size = std::max(dtmp_size, g.c * colsd);
            }
            Tensor dcol = dx_phases ? Tensor::arena_empty(Shape{np * dcol_size}, dt) : Tensor();
            Tensor dtmp = dx_phases ? Tensor::arena_empty(Shape{np * dtmp_size}, dt) : Tensor();
            if (dx_phases && untapped) std::fill(gx.data<T>(), gx.data<T>() + gx.numel(), T(0));
            // Per part: the columns (recomputed: cheaper than keeping the batch's, which fit no cache), G
            // in GEMM layout, and the part's gW^T.
            const bool dcol_path = nx && !dx_phases;
            Tensor col = nw || dcol_path ? Tensor::arena_empty(Shape{np * ck * cols}, dt) : Tensor();
            Tensor gt = nw || dcol_path ? Tensor::arena_empty(Shape{np * g.o * cols}, dt) : Tensor();
            Tensor gwt = nw ? Tensor::arena_empty(Shape{np * ck * g.o}, dt) : Tensor();
            parallel_for(0, np, 1, 2, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t part = lo; part < hi; ++part) {
                    const std::int64_t begin = g.part_begin(part), end = g.part_begin(part + 1);
                    for (std::int64_t s0 = begin; s0 < end && (nw || dcol_path); s0 += sub) {
                        T* c = col.data<T>() + part * ck * cols;
                        T* t = gt.data<T>() + part * g.o * cols;
                        const std::int64_t ns = std::min(sub, end - s0), ld = ns * p;
                        kernels::samples_to_rows(pg + s0 * g.o * p, ns, g.o, p, t, ld);
                        if (nw) {
                            // gW^T[CK, O] += COL[CK, ns*P] @ G^T: the columns are read in place (A), only
                            // the small G is packed.
                            for (std::int64_t s = 0; s < ns; ++s)
                                kernels::im2col(g, px + (s0 + s) * xs, c + s * p, ld);
                            kernels::gemm_acc<T>(false, true, ck, g.o, ld, c, ld, t, ld, s0 > begin,
                                        gwt.data<T>() + part * ck * g.o, g.o);
                        }
                        if (dcol_path) {
                            // dCOL = W^T @ G, then col2im while dCOL is in L2.
                            kernels::gemm_acc<T>(true, false, ck, ld, g.o, pw, ck, t, ld, false, c, ld);
                            for (std::int64_t s = 0; s < ns; ++s)
                                kernels::col2im(g, c + s * p, ld, gx.data<T>() + (s0 + s) * xs);
                        }
                    }
                    for (std::size_t i = 0; i < phases.size() && dx_phases; ++i) {
                        const auto& ph = phases[i];
                        if (!ph.taps) continue;
                        const std::int64_t pp = ph.g.hw_out(), kp = ph.g.ck();
                        for (std::int64_t s0 = begin; s0 < end; s0 += subd[i]) {
                            T* c = dcol.data<T>() + part * dcol_size;
                            T* t = dtmp.data<T>() + part * dtmp_size;
                            const std::int64_t ns = std::min(subd[i], end - s0), ld = ns * pp;
                            kernels::im2col_packed(ph.g, pg + s0 * g.o * p, ns, kernels::gemm_nr<T>, c);
                            kernels::gemm_packed_b<T>(g.c, ld, kp, wphase[i].data<T>(), kp, c, t, ld);
                            kernels::phase_scatter(ph, t, ld, ns, g.c, g.h, g.w, g.stride,
                                                   gx.data<T>() + s0 * xs);
                        }
                    }
                }
            });
            // gW[O, CK] = the parts' gW^T summed in part order.
            if (nw)
                for (std::int64_t part = 0; part < np; ++part)
                    kernels::transpose_add(ck, g.o, gwt.data<T>() + part * ck * g.o, g.o, gw.data<T>(), ck);
        });
        if (nx) accumulate_fresh(nx, gx);
        if (nw) accumulate_fresh(nw, gw);
        if (nb_) accumulate_fresh(nb_, gb);
    }, [stride, padding](HigherCtx& c) { detail::conv2d_higher(c, stride, padding); });
}

// ---------------------------------------------------------------- pooling
// y[n, c, oh, ow] = mean of the k x k window at (oh*s, ow*s); no padding. Backward spreads g / k^2.
Var avg_pool2d(const Var& x, int kernel, int stride) {
    const char* op = "avg_pool2d";
    check_rank4(op, "input", x);
    if (kernel < 1 || stride < 1)
        throw ShapeError(
            fmt::format("{}: kernel and stride must be >= 1, got kernel {} stride {}", op, kernel, stride));
    const std::int64_t nc = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3), k = kernel, s = stride;
    if (k > h || k > w)
        throw ShapeError(fmt::format("{}: kernel {} larger than input {}", op, kernel, describe(x.value())));
    const std::int64_t ho = (h - k) / s + 1, wo = (w - k) / s + 1;
    Tensor y = Tensor::arena_empty(Shape{x.dim(0), x.dim(1), ho, wo}, x.dtype());
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* px = x.value().data<T>();
        T* py = y.data<T>();
        const T inv = T(1) / static_cast<T>(k * k);
        for (std::int64_t pl = 0; pl < nc; ++pl) {
            const T* src = px + pl * h * w;
            T* dst = py + pl * ho * wo;
            for (std::int64_t oh = 0; oh < ho; ++oh)
                for (std::int64_t ow = 0; ow < wo; ++ow) {
                    T acc = T(0);
                    for (std::int64_t i = 0; i < k; ++i)
                        for (std::int64_t j = 0; j < k; ++j) acc += src[(oh * s + i) * w + ow * s + j];
                    dst[oh * wo + ow] = acc * inv;
                }
        }
    });
    return record(op, y, {x}, [nx = node_of(x), shape = x.shape(), nc, h, w, k, s, ho, wo](const Tensor& g) {
        Tensor gx = Tensor::arena_zeros(shape, g.dtype());
        dispatch(g.dtype(), [&](auto z) {
            using T = decltype(z);
            const T* pg = g.data<T>();
            T* q = gx.data<T>();
            const T inv = T(1) / static_cast<T>(k * k);
            for (std::int64_t pl = 0; pl < nc; ++pl) {
                const T* src = pg + pl * ho * wo;
                T* dst = q + pl * h * w;
                for (std::int64_t oh = 0; oh < ho; ++oh)
                    for (std::int64_t ow = 0; ow < wo; ++ow) {
                        const T v = src[oh * wo + ow] * inv;
                        for (std::int64_t i = 0; i < k; ++i)
                            for (std::int64_t j = 0; j < k; ++j) dst[(oh * s + i) * w + ow * s + j] += v;
                    }
            }
        });
        accumulate_fresh(nx, gx);
    }, [kernel, stride](HigherCtx& c) { detail::avg_pool2d_higher(c, kernel, stride); });
}

// y[n, c] = mean over (h, w) of x[n, c, h, w]; backward broadcasts g / (H W).
Var global_avg_pool(const Var& x) {
    const char* op = "global_avg_pool";
    check_rank4(op, "input", x);
    const std::int64_t nc = x.dim(0) * x.dim(1), hw = x.dim(2) * x.dim(3);
    if (hw == 0) throw ShapeError(fmt::format("{}: empty spatial extent in {}", op, describe(x.value())));
    Tensor y = Tensor::arena_empty(Shape{x.dim(0), x.dim(1)}, x.dtype());
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* px = x.value().data<T>();
        T* py = y.data<T>();
        for (std::int64_t pl = 0; pl < nc; ++pl) {
            T acc = T(0);
            for (std::int64_t i = 0; i < hw; ++i) acc += px[pl * hw + i];
            py[pl] = acc / static_cast<T>(hw);
        }
    });
    return record(op, y, {x}, [nx = node_of(x), shape = x.shape(), nc, hw](const Tensor& g) {
        Tensor gx = Tensor::arena_empty(shape, g.dtype());
        dispatch(g.dtype(), [&](auto z) {
            using T = decltype(z);
            const T* pg = g.data<T>();
            T* q = gx.data<T>();
            for (std::int64_t pl = 0; pl < nc; ++pl)
                std::fill(q + pl * hw, q + (pl + 1) * hw, pg[pl] / static_cast<T>(hw));
        });
        accumulate_fresh(nx, gx);
    }, [](HigherCtx& c) { detail::global_avg_pool_higher(c); });
}

// ---------------------------------------------------------------- normalisation
namespace {

struct NormSaved {
    Tensor x;     // the input (xhat is recomputed from it)
    Tensor mean;  // f64 [blocks]
    Tensor rstd;  // f64 [blocks]
    Tensor y;     // the output, when relu is fused (its sign is the relu's mask)
};

// The kernels are autodiff/kernels/norm.hpp; the ops keep x, the blocks' mean and 1/std (and y with relu)
// for the backward.
NormSaved norm_forward(const kernels::NormShape& ng, const Tensor& x, const Var* gamma, const Var* beta,
                       double eps, bool relu, Tensor& y) {
    NormSaved sv{x, Tensor::arena_empty(Shape{ng.blocks}, DType::f64),
                 Tensor::arena_empty(Shape{ng.blocks}, DType::f64), Tensor()};
    y = Tensor::arena_empty(x.shape(), x.dtype());
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        kernels::norm_forward<T>(ng, x.data<T>(), gamma ? gamma->value().data<T>() : nullptr,
                                 beta ? beta->value().data<T>() : nullptr, eps, y.data<T>(),
                                 sv.mean.data<double>(), sv.rstd.data<double>(), relu);
    });
    if (relu) sv.y = y;
    return sv;
}

void norm_backward(const kernels::NormShape& ng, const NormSaved& sv, const Tensor& gamma_v, Node* nx,
                   Node* ngam, Node* nbet, const Shape& cshape, const Tensor& g) {
    const DType dt = g.dtype();
    Tensor gx = nx ? Tensor::arena_empty(sv.x.shape(), dt) : Tensor();
    Tensor gg = ngam ? Tensor::arena_zeros(cshape, dt) : Tensor();
    Tensor gbt = nbet ? Tensor::arena_zeros(cshape, dt) : Tensor();
    dispatch(dt, [&](auto z) {
        using T = decltype(z);
        kernels::norm_backward<T>(ng, g.data<T>(), sv.x.data<T>(), sv.mean.data<double>(),
                                  sv.rstd.data<double>(), gamma_v.defined() ? gamma_v.data<T>() : nullptr,
                                  sv.y.defined() ? sv.y.data<T>() : nullptr, nx ? gx.data<T>() : nullptr,
                                  ngam ? gg.data<T>() : nullptr, nbet ? gbt.data<T>() : nullptr);
    });
    if (nx) accumulate_fresh(nx, gx);
    if (ngam) accumulate_fresh(ngam, gg);
    if (nbet) accumulate_fresh(nbet, gbt);
}

void check_affine(const char* op, const char* what, const Var* p, const Var& x, std::int64_t c) {
    if (!p) return;
    check_defined(op, *p);
    check_same_dtype(op, x.value(), p->value());
    if (p->rank() != 1 || p->dim(0) != c)
        throw ShapeError(fmt::format("{}: {} {} does not match input {} (expected [{}])", op, what,
                                     describe(p->value()), describe(x.value()), c));
}

Var norm_op(const char* op, const kernels::NormShape& ng, const Var& x, const Var* gamma, const Var* beta,
            double eps, bool relu = false) {
    Tensor y;
    NormSaved sv = norm_forward(ng, x.value(), gamma, beta, eps, relu, y);
    Var gv = gamma ? *gamma : Var();
    Var bv = beta ? *beta : Var();
    Node* ngam = gamma ? node_of(*gamma) : nullptr;
    Node* nbet = beta ? node_of(*beta) : nullptr;
    Tensor gam = gamma ? gamma->value() : Tensor();
    return record(op, y, {x, gv, bv}, [ng, sv, nx = node_of(x), ngam, nbet, gam](const Tensor& g) {
        norm_backward(ng, sv, gam, nx, ngam, nbet, Shape{ng.channels}, g);
    }, [groups = ng.groups, layer = op[0] == 'l', eps, relu](HigherCtx& c) {
        detail::norm_higher(c, layer ? 0 : static_cast<int>(groups), eps, relu);
    });
}

}  // namespace

namespace {

// x [N, C, ...]: statistics per sample over each group of C/groups channels and all trailing positions.
Var group_norm_op(const char* op, const Var& x, int groups, const Var* gamma, const Var* beta, double eps,
                  bool relu) {
    check_defined(op, x);
    if (x.rank() < 2)
        throw ShapeError(fmt::format("{}: input must be [N, C, ...], got {}", op, describe(x.value())));
    const std::int64_t n = x.dim(0), c = x.dim(1);
    if (groups < 1 || c % groups != 0)
        throw ShapeError(fmt::format("{}: {} channels of input {} are not divisible into {} groups", op, c,
                                     describe(x.value()), groups));
    if (!(eps >= 0.0)) throw ShapeError(fmt::format("{}: eps must be >= 0, got {}", op, eps));
    check_affine(op, "gamma", gamma, x, c);
    check_affine(op, "beta", beta, x, c);
    const std::int64_t spatial = c == 0 || n == 0 ? 0 : x.numel() / (n * c);
    const std::int64_t cpg = c / groups;
    kernels::NormShape ng{n * groups, cpg * spatial, groups, cpg, std::max<std::int64_t>(1, spatial), c};
    return norm_op(op, ng, x, gamma, beta, eps, relu);
}

}  // namespace

Var group_norm(const Var& x, int groups, const Var* gamma, const Var* beta, double eps) {
    return group_norm_op("group_norm", x, groups, gamma, beta, eps, false);
}

// relu(group_norm(x)) in one pass over the data each way (the same bits as the two ops): the forward
// writes only y, the backward reads the relu's mask from y's sign.
Var group_norm_relu(const Var& x, int groups, const Var* gamma, const Var* beta, double eps) {
    return group_norm_op("group_norm_relu", x, groups, gamma, beta, eps, true);
}

// Normalises over the last dimension D: every row of D elements is one block.
Var layer_norm(const Var& x, const Var* gamma, const Var* beta, double eps) {
    const char* op = "layer_norm";
    check_defined(op, x);
    if (x.rank() < 1)
        throw ShapeError(fmt::format("{}: input must have rank >= 1, got {}", op, describe(x.value())));
    if (!(eps >= 0.0)) throw ShapeError(fmt::format("{}: eps must be >= 0, got {}", op, eps));
    const std::int64_t d = x.dim(-1);
    check_affine(op, "gamma", gamma, x, d);
    check_affine(op, "beta", beta, x, d);
    kernels::NormShape ng{d == 0 ? 0 : x.numel() / d, d, 1, d, 1, d};
    return norm_op(op, ng, x, gamma, beta, eps);
}

// ---------------------------------------------------------------- dropout
// Inverted dropout: y = x * mask, mask = Bernoulli(1 - p) / (1 - p), drawn once (as bernoulli() draws:
// keep when a 32-bit Philox output is below (1 - p) 2^32) into the arena; the backward
// multiplies by the same mask.
namespace {

// The inverted-dropout mask m (scale = 1/keep where a fresh u32 from gen falls below keep * 2^32, else 0)
// and y = act(x) * m, where act is the identity or relu. With relu, the mask saved for the backward is
// d = (x > 0) ? m : 0, so one multiply gives the gradient of relu and dropout together. The random words
// are consumed chunk by chunk as they are generated (they never go to memory), over the kernel threads.
template <class T, bool relu_on>
void dropout_kernel(const T* px, T* pd, T* py, std::int64_t n, double keep, Generator& gen) {
    const T scale = static_cast<T>(1.0 / keep);
    // keep < 1 here, so th < 2^32 fits in 32 bits.
    const auto th = static_cast<std::uint32_t>(Generator::u32_threshold(keep));
    gen.for_u32_chunks(n, [&](std::int64_t i0, const std::uint32_t* u, std::int64_t count) {
        kernels::dropout_range<T, relu_on>(u, px + i0, pd + i0, py + i0, count, th, scale);
    });
}

template <bool relu_on>
Var dropout_op(const char* op, const Var& x, double p, Generator& gen) {
    check_defined(op, x);
    if (!(p >= 0.0 && p < 1.0)) throw ShapeError(fmt::format("{}: p must be in [0, 1), got {}", op, p));
    const double keep = 1.0 - p;
    Tensor mask = Tensor::arena_empty(x.shape(), x.dtype());
    Tensor y = Tensor::arena_empty(x.shape(), x.dtype());
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        dropout_kernel<T, relu_on>(x.value().data<T>(), mask.data<T>(), y.data<T>(), x.numel(), keep, gen);
    });
    return record(op, y, {x}, [nx = node_of(x), mask](const Tensor& g) {
        accumulate_fresh(nx, t_mul(g, mask));
    }, [mask](HigherCtx& c) { detail::dropout_higher(c, mask); });
}

}  // namespace

Var dropout(const Var& x, double p, Generator& gen) {
    check_defined("dropout", x);
    if (p == 0.0) return x;
    return dropout_op<false>("dropout", x, p, gen);
}

Var relu_dropout(const Var& x, double p, Generator& gen) {
    check_defined("relu_dropout", x);
    if (p == 0.0) return relu(x);
    return dropout_op<true>("relu_dropout", x, p, gen);
}

}  // namespace sdeuq
