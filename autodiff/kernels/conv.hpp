// Convolution data movement: im2col and its adjoint col2im, on raw pointers.
//
// col[(ci*kh + i)*kw + j, q] = x[ci, oh*s - ph + i, ow*s - pw + j] (0 outside), q = oh*wo + ow, one
// sample at a time, col's row stride ldc (several samples side by side); ph, pw are the top and left
// padding (the bottom and right padding are whatever ho, wo make them). Both go through a zero-padded,
// phase-split copy of the sample, xp[ci][ih + ph][(iw + pw) % s][(iw + pw) / s]: every row of col is then
// one contiguous copy of wo values (no bounds tests, no strided reads, whatever the stride and padding).
#pragma once

#include <cstdint>
#include <vector>

namespace sdeuq::kernels {

struct ConvShape {
    std::int64_t c, h, w;  // input channels and extent of one sample
    std::int64_t kh, kw;   // kernel
    std::int64_t ho, wo;   // output extent
    std::int64_t stride, pad_h, pad_w;  // pad_h rows above, pad_w columns left of the input
    std::int64_t ck() const { return c * kh * kw; }
    std::int64_t hw_out() const { return ho * wo; }
};

// Writes the CK x P block of one sample x (c*h*w values) into col (row stride ldc).
template <class T>
void im2col(const ConvShape& g, const T* x, T* col, std::int64_t ldc);

// The columns of ns consecutive samples (x: ns*c*h*w values), column s*P + q for sample s and output
// position q, written straight into the packed layout of gemm_packed_b (gemm.hpp): panel t of nr columns
// at bp + t*CK*nr, nr values per row of the columns, zero past ns*P. The im2col and the GEMM's packing
// pass in one.
template <class T>
void im2col_packed(const ConvShape& g, const T* x, std::int64_t ns, std::int64_t nr, T* bp);

// gx (c*h*w values, overwritten) = the adjoint of im2col applied to col: every entry of col is added to
// the input element it was read from, in the order (ci, i, j, oh, ow), starting from zero.
template <class T>
void col2im(const ConvShape& g, const T* col, std::int64_t ldc, T* gx);

// The GEMM layout of a group of samples and back. rows[o, s*P + q] = y[s, o, q] for ns samples of o
// channels and p positions (rows has row stride ld >= ns*p).
template <class T>
void samples_to_rows(const T* y, std::int64_t ns, std::int64_t o, std::int64_t p, T* rows, std::int64_t ld);

// y[s, o, q] = rows[o, s*P + q] (+ bias[o] when bias is not null).
template <class T>
void rows_to_samples(const T* rows, std::int64_t ld, std::int64_t ns, std::int64_t o, std::int64_t p,
                     const T* bias, T* y);

// The input gradient of a convolution split by stride phase. An input row ih with (ih + ph) % s == a and
// column iw with (iw + pw) % s == b receives gradient only through the kernel taps i = a + s di,
// j = b + s dj, so the phase's part of gx, x_ab[c, u, v] = gx[c, ih0 + u s, iw0 + v s], is a stride-1
// convolution of gy (o channels, ho x wo) with the ka x kb kernel
//   W_ab[c, o, di', dj'] = W[o, c, a + s (ka-1-di'), b + s (kb-1-dj')],  ka = ceil((kh - a) / s),
// padded ka-1-u0 rows above and kb-1-v0 columns left (u0, v0: the first phase row and column inside the
// input). Each phase is then one dense implicit GEMM over K = o ka kb and a scatter of its rows; for
// stride 1 the one phase is the familiar gx = conv(gy, flipped W^T, padding k-1-p).
struct GradPhase {
    std::int64_t a, b;      // the phase: kernel taps i = a (mod s), j = b (mod s)
    std::int64_t ih0, iw0;  // gx position of x_ab[., 0, 0]
    ConvShape g;            // the stride-1 convolution gy -> x_ab (g.ho x g.wo = the phase's positions)
    // false: no kernel tap reaches the phase (kh or kw < s), or it has no input positions; its gx is 0
    bool taps;
};

// The s^2 phases of the forward convolution f with o output channels.
std::vector<GradPhase> grad_phases(const ConvShape& f, std::int64_t o);

// wt [c, o, ka, kb] = W_ab (above) for w [o, c, kh, kw].
template <class T>
void phase_weights(const ConvShape& f, std::int64_t o, const GradPhase& ph, const T* w, T* wt);

// gx[s, ci, ih0 + u st, iw0 + v st] = rows[ci, s*P + u*nv + v] for ns samples, P = nu*nv (the phase's
// g.ho x g.wo), gx holding ns samples of c x h x w, st the forward stride.
template <class T>
void phase_scatter(const GradPhase& ph, const T* rows, std::int64_t ld, std::int64_t ns, std::int64_t c,
                   std::int64_t h, std::int64_t w, std::int64_t st, T* gx);

// dst[j, i] += src[i, j] for an m x n src (row strides lds, ldd), in cache blocks.
template <class T>
void transpose_add(std::int64_t m, std::int64_t n, const T* src, std::int64_t lds, T* dst, std::int64_t ldd);

}  // namespace sdeuq::kernels
