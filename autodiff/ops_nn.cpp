// Convolution, pooling, normalisation and dropout. Forward and backward stand side by side.
//
// conv2d is im2col + GEMM over chunks of samples (one GEMM per chunk keeps its n dimension large for small
// images). Normalisations are fused kernels with the hand-derived backward, sharing one kernel: group_norm
// and layer_norm both normalise contiguous blocks of the input and apply a per-channel affine map. The
// loops live in autodiff/kernels/ (conv.hpp: im2col/col2im, norm.hpp, dropout.hpp, gemm.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <type_traits>

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

// C = op(A) op(B) (+ C when accumulate), tolerating empty dimensions (k == 0 gives C = 0 or C unchanged).
template <class T>
void gemm_acc(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
              const T* b, std::int64_t ldb, bool accumulate, T* c, std::int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate)
            for (std::int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
        return;
    }
    kernels::gemm<T>(ta, tb, m, n, k, T(1), a, lda, b, ldb, accumulate ? T(1) : T(0), c, ldc);
}

// ---- conv2d geometry
struct ConvGeom : kernels::ConvShape {
    std::int64_t n, o;
    // Samples per GEMM: enough columns (>= 4096) for an efficient GEMM, at most ~8M column-buffer elements.
    std::int64_t chunk() const {
        const std::int64_t p = std::max<std::int64_t>(1, hw_out());
        std::int64_t nb = std::max<std::int64_t>(1, (4096 + p - 1) / p);
        const std::int64_t cap = (std::int64_t(1) << 23) / std::max<std::int64_t>(1, ck() * p);
        nb = std::min(nb, std::max<std::int64_t>(1, cap));
        return std::min(nb, std::max<std::int64_t>(1, n));
    }
    // Samples whose columns (CK x P values) fit in ~512 KiB, half the L2 of this machine's cores: the
    // unit in which the column matrix is written and read back (GEMM results do not depend on it: each
    // element's sum runs over k alone).
    std::int64_t sub_chunk(std::size_t elem) const {
        const std::int64_t bytes =
            ck() * std::max<std::int64_t>(1, hw_out()) * static_cast<std::int64_t>(elem);
        return std::max<std::int64_t>(1, (std::int64_t(512) << 10) / std::max<std::int64_t>(1, bytes));
    }
};

// im2col of samples [n0, n0 + nb): sample s owns columns [s*P, (s+1)*P) of col (row stride ld).
template <class T>
void im2col_chunk(const ConvGeom& g, const T* x, std::int64_t n0, std::int64_t nb, T* col, std::int64_t ld) {
    const std::int64_t p = g.hw_out(), xs = g.c * g.h * g.w;
    parallel_for(0, nb, 1, 2, [&](std::int64_t lo, std::int64_t hi) {
        for (std::int64_t s = lo; s < hi; ++s) kernels::im2col(g, x + (n0 + s) * xs, col + s * p, ld);
    });
}

}  // namespace

// ---------------------------------------------------------------- conv2d
// y[n, o, q] = b[o] + sum_k W[o, k] col_n[k, q] with k = (c, i, j): per chunk of samples one GEMM
// Y[O, nb*P] = W[O, CK] @ COL[CK, nb*P]. Backward: gW += G @ COL^T chunk by chunk, dCOL = W^T @ G then
// col2im, gb[o] = sum_{n, q} g[n, o, q]. When the weight needs a gradient, the forward keeps the column
// matrix of the whole batch (one CK x N*P tensor) for the backward instead of recomputing it, and the
// backward overwrites it with dCOL once gW is done; otherwise the forward reuses one chunk's buffer.
// The chunking of every GEMM (hence the order of every sum) is the same either way.
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
    g.pad = padding;
    if (w.dim(1) != g.c)
        throw ShapeError(fmt::format("{}: channel mismatch: input {} has {} channels, weight {} expects {}",
                                     op, describe(x.value()), g.c, describe(w.value()), w.dim(1)));
    if (g.kh < 1 || g.kw < 1 || g.kh > g.h + 2 * g.pad || g.kw > g.w + 2 * g.pad)
        throw ShapeError(fmt::format("{}: kernel {}x{} of weight {} does not fit the padded input {} "
                                     "(padding {})",
                                     op, g.kh, g.kw, describe(w.value()), describe(x.value()), padding));
    if (bias) {
        check_defined(op, *bias);
        check_same_dtype(op, x.value(), bias->value());
        if (bias->rank() != 1 || bias->dim(0) != g.o)
            throw ShapeError(fmt::format("{}: bias {} does not match weight {} (expected [{}])", op,
                                         describe(bias->value()), describe(w.value()), g.o));
    }
    g.ho = (g.h + 2 * g.pad - g.kh) / g.stride + 1;
    g.wo = (g.w + 2 * g.pad - g.kw) / g.stride + 1;
    const DType dt = x.dtype();
    Tensor y = Tensor::arena_empty(Shape{g.n, g.o, g.ho, g.wo}, dt);
    const std::int64_t p = g.hw_out(), ck = g.ck(), nbmax = g.chunk();
    const std::int64_t sub = g.sub_chunk(dtype_size(x.dtype()));
    const bool keep_col = grad_enabled() && node_of(w) != nullptr && y.numel() > 0;
    const std::int64_t ldcol = keep_col ? g.n * p : nbmax * p;
    Tensor col = y.numel() > 0 ? Tensor::arena_empty(Shape{ck * ldcol}, dt) : Tensor();
    dispatch(dt, [&](auto z) {
        using T = decltype(z);
        if (y.numel() == 0) return;
        const T* px = x.value().data<T>();
        const T* pw = w.value().data<T>();
        const T* pb = bias ? bias->value().data<T>() : nullptr;
        T* py = y.data<T>();
        Tensor tmp = Tensor::arena_empty(Shape{g.o * nbmax * p}, dt);
        for (std::int64_t n0 = 0; n0 < g.n; n0 += nbmax) {
            const std::int64_t nb = std::min(nbmax, g.n - n0), ld = nb * p;
            T* c = col.data<T>() + (keep_col ? n0 * p : 0);
            // im2col and the GEMM a few samples at a time, so the GEMM reads the columns from L2.
            for (std::int64_t s0 = 0; s0 < nb; s0 += sub) {
                const std::int64_t ns = std::min(sub, nb - s0);
                im2col_chunk(g, px, n0 + s0, ns, c + s0 * p, ldcol);
                gemm_acc<T>(false, false, g.o, ns * p, ck, pw, ck, c + s0 * p, ldcol, false,
                            tmp.data<T>() + s0 * p, ld);
            }
            // tmp[o, s*P + q] -> y[n0 + s, o, q] (+ bias)
            const T* t = tmp.data<T>();
            for (std::int64_t s = 0; s < nb; ++s)
                for (std::int64_t o = 0; o < g.o; ++o) {
                    const T b = pb ? pb[o] : T(0);
                    const T* src = t + o * ld + s * p;
                    T* dst = py + ((n0 + s) * g.o + o) * p;
                    for (std::int64_t q = 0; q < p; ++q) dst[q] = src[q] + b;
                }
        }
    });
    Var bv = bias ? *bias : Var();
    if (!keep_col) col = Tensor();
    return record(op, y, {x, w, bv},
                  [nx = node_of(x), nw = node_of(w), nb_ = bias ? node_of(*bias) : nullptr, xv = x.value(),
                   wv = w.value(), g, nbmax, col](const Tensor& gy) {
        const std::int64_t p = g.hw_out(), ck = g.ck();
        const DType dt = xv.dtype();
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
            const T* pw = wv.data<T>();
            const bool have_col = col.defined();
            const std::int64_t ldcol = have_col ? g.n * p : nbmax * p;
            Tensor dcol = have_col ? col : Tensor::arena_empty(Shape{ck * ldcol}, dt);
            // G[o, s*P + q] = gy[n0 + s, o, q], chunk by chunk (row stride nb*P, as the forward's GEMM)
            Tensor gt = Tensor::arena_empty(Shape{g.o * nbmax * p}, dt);
            for (std::int64_t n0 = 0; n0 < g.n; n0 += nbmax) {
                const std::int64_t nb = std::min(nbmax, g.n - n0), ld = nb * p;
                T* t = gt.data<T>();
                for (std::int64_t s = 0; s < nb; ++s)
                    for (std::int64_t o = 0; o < g.o; ++o)
                        std::memcpy(t + o * ld + s * p, pg + ((n0 + s) * g.o + o) * p, sizeof(T) * p);
                T* c = dcol.data<T>() + (have_col ? n0 * p : 0);
                if (nw) gemm_acc<T>(false, true, g.o, ck, ld, t, ld, c, ldcol, true, gw.data<T>(), ck);
                if (nx) {
                    // dCOL and col2im a few samples at a time, so col2im reads dCOL from L2.
                    T* q = gx.data<T>();
                    const std::int64_t xs = g.c * g.h * g.w, sub = g.sub_chunk(sizeof(T));
                    for (std::int64_t s0 = 0; s0 < nb; s0 += sub) {
                        const std::int64_t ns = std::min(sub, nb - s0);
                        gemm_acc<T>(true, false, ck, ns * p, g.o, pw, ck, t + s0 * p, ld, false, c + s0 * p,
                                    ldcol);
                        parallel_for(s0, s0 + ns, 1, 2, [&](std::int64_t lo, std::int64_t hi) {
                            for (std::int64_t s = lo; s < hi; ++s)
                                kernels::col2im(g, c + s * p, ldcol, q + (n0 + s) * xs);
                        });
                    }
                }
            }
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
    Tensor xhat;  // x's dtype and shape
    Tensor rstd;  // f64 [blocks]
};

// The kernels are autodiff/kernels/norm.hpp; the ops keep xhat and 1/std for the backward.
NormSaved norm_forward(const kernels::NormShape& ng, const Tensor& x, const Var* gamma, const Var* beta,
                       double eps, Tensor& y) {
    NormSaved sv{Tensor::arena_empty(x.shape(), x.dtype()),
                 Tensor::arena_empty(Shape{ng.blocks}, DType::f64)};
    y = Tensor::arena_empty(x.shape(), x.dtype());
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        kernels::norm_forward<T>(ng, x.data<T>(), gamma ? gamma->value().data<T>() : nullptr,
                                 beta ? beta->value().data<T>() : nullptr, eps, y.data<T>(),
                                 sv.xhat.data<T>(), sv.rstd.data<double>());
    });
    return sv;
}

void norm_backward(const kernels::NormShape& ng, const NormSaved& sv, const Tensor& gamma_v, Node* nx,
                   Node* ngam, Node* nbet, const Shape& cshape, const Tensor& g) {
    const DType dt = g.dtype();
    Tensor gx = nx ? Tensor::arena_empty(sv.xhat.shape(), dt) : Tensor();
    Tensor gg = ngam ? Tensor::arena_zeros(cshape, dt) : Tensor();
    Tensor gbt = nbet ? Tensor::arena_zeros(cshape, dt) : Tensor();
    dispatch(dt, [&](auto z) {
        using T = decltype(z);
        kernels::norm_backward<T>(ng, g.data<T>(), sv.xhat.data<T>(), sv.rstd.data<double>(),
                                  gamma_v.defined() ? gamma_v.data<T>() : nullptr, nullptr,
                                  nx ? gx.data<T>() : nullptr, ngam ? gg.data<T>() : nullptr,
                                  nbet ? gbt.data<T>() : nullptr);
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
            double eps) {
    Tensor y;
    NormSaved sv = norm_forward(ng, x.value(), gamma, beta, eps, y);
    Var gv = gamma ? *gamma : Var();
    Var bv = beta ? *beta : Var();
    Node* ngam = gamma ? node_of(*gamma) : nullptr;
    Node* nbet = beta ? node_of(*beta) : nullptr;
    Tensor gam = gamma ? gamma->value() : Tensor();
    return record(op, y, {x, gv, bv}, [ng, sv, nx = node_of(x), ngam, nbet, gam](const Tensor& g) {
        norm_backward(ng, sv, gam, nx, ngam, nbet, Shape{ng.channels}, g);
    }, [groups = ng.groups, layer = op[0] == 'l', eps](HigherCtx& c) {
        detail::norm_higher(c, layer ? 0 : static_cast<int>(groups), eps);
    });
}

}  // namespace

// x [N, C, ...]: statistics per sample over each group of C/groups channels and all trailing positions.
Var group_norm(const Var& x, int groups, const Var* gamma, const Var* beta, double eps) {
    const char* op = "group_norm";
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
    return norm_op(op, ng, x, gamma, beta, eps);
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
