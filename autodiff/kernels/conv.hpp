// Convolution data movement: im2col and its adjoint col2im, on raw pointers.
//
// col[(ci*kh + i)*kw + j, q] = x[ci, oh*s - p + i, ow*s - p + j] (0 outside), q = oh*wo + ow, one sample
// at a time, col's row stride ldc (several samples side by side). Both go through a zero-padded,
// phase-split copy of the sample, xp[ci][ih + p][(iw + p) % s][(iw + p) / s]: every row of col is then one
// contiguous copy of wo values (no bounds tests, no strided reads, whatever the stride and padding).
#pragma once

#include <cstdint>

namespace sdeuq::kernels {

struct ConvShape {
    std::int64_t c, h, w;  // input channels and extent of one sample
    std::int64_t kh, kw;   // kernel
    std::int64_t ho, wo;   // output extent
    std::int64_t stride, pad;
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

// wt[c, o, i, j] = w[o, c, kh-1-i, kw-1-j] for w [o, c, kh, kw]: the weight of the convolution that is
// the input gradient of a stride-1 convolution.
template <class T>
void flip_transpose(std::int64_t o, std::int64_t c, std::int64_t kh, std::int64_t kw, const T* w, T* wt);

// dst[j, i] += src[i, j] for an m x n src (row strides lds, ldd), in cache blocks.
template <class T>
void transpose_add(std::int64_t m, std::int64_t n, const T* src, std::int64_t lds, T* dst, std::int64_t ldd);

}  // namespace sdeuq::kernels
