// GEMM: C = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
//
// op(A) is m x k, op(B) is k x n, C is m x n; lda, ldb, ldc are row strides (elements). Packed panels
// and a register-blocked FMA micro-kernel written with xsimd; parallel over the kernel threads with a
// partition of C that does not change the order of any sum, so results are bitwise identical with 1
// and 2 threads. beta == 0 overwrites C without reading it (NaN in C is not propagated).
#pragma once

#include <algorithm>
#include <cstdint>

namespace sdeuq::kernels {

// Depth of one k block. A product of depth k <= gemm_kc is summed in one pass and added to C once, so
// C = op(A) op(B) + C (beta 1) gives the same bits as computing the product alone and adding it to C.
constexpr std::int64_t gemm_kc = 384;

//
// bias (optional, n values): C = (alpha * op(A) op(B) + beta * C) + bias[j] on every row, the bias added
// once after the full k-sum, in the same order on every tile (so it gives the same bits as a GEMM
// followed by a separate broadcast add of the bias).
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc,
          const T* bias = nullptr);

// C = op(A) op(B) (+ C when accumulate), tolerating empty dimensions (k == 0 gives C = 0 or C unchanged):
// the form the convolutions' GEMMs take (autodiff/ops_nn.cpp, autodiff/ops_conv_general.cpp).
template <class T>
void gemm_acc(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
              const T* b, std::int64_t ldb, bool accumulate, T* c, std::int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate)
            for (std::int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
        return;
    }
    gemm<T>(ta, tb, m, n, k, T(1), a, lda, b, ldb, accumulate ? T(1) : T(0), c, ldc);
}

// Width of the micro-kernel's column panels (NR): 16 floats or 8 doubles, two AVX2 vectors.
template <class T>
inline constexpr std::int64_t gemm_nr = sizeof(T) == 4 ? 16 : 8;

// C = A @ B (m x n, row stride ldc, overwritten) for untransposed A (m x k, row stride lda) and B already
// packed by the caller: panel t (columns [t*NR, t*NR + NR)) at bp + t*k*NR, NR values per k (k-major),
// zero past column n. Single-threaded. Every element of C is the same sequence of operations as in
// gemm() (same KC blocks, same micro-kernel), so the two give the same bits.
template <class T>
void gemm_packed_b(std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda, const T* bp,
                   T* c, std::int64_t ldc);

// The plain triple loop (reference for tests), with the same optional bias.
template <class T>
void gemm_reference(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
                    std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc,
                    const T* bias = nullptr);

}  // namespace sdeuq::kernels
