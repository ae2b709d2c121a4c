// Dropout's inner loop on raw pointers: mask and output from 32-bit random words.
#pragma once

#include <cstdint>
#include <type_traits>

#if SDEUQ_SIMD && defined(__AVX2__)
#include <immintrin.h>
#endif

namespace sdeuq::kernels {

// For n elements and their random words u: the mask pd[i] = scale where u[i] < th (as unsigned numbers),
// else 0, and py = act(x) * mask with act the identity or relu; with relu the mask stored is
// (x > 0) ? mask : 0, so one multiply gives the gradient of relu and dropout together.
template <class T, bool relu_on>
inline void dropout_range(const std::uint32_t* u, const T* px, T* pd, T* py, std::int64_t n, std::uint32_t th,
                          T scale) {
    std::int64_t i = 0;
#if SDEUQ_SIMD && defined(__AVX2__)
    if constexpr (std::is_same_v<T, float>) {
        // u < th as unsigned numbers: flip the sign bits and compare signed.
        const __m256i flip = _mm256_set1_epi32(static_cast<int>(0x80000000u));
        const __m256i thv = _mm256_set1_epi32(static_cast<int>(th ^ 0x80000000u));
        const __m256 sv = _mm256_set1_ps(scale), zero = _mm256_setzero_ps();
        for (; i + 8 <= n; i += 8) {
            const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + i));
            const __m256i uv = _mm256_xor_si256(raw, flip);
            const __m256 mv = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(thv, uv)), sv);
            __m256 xv = _mm256_loadu_ps(px + i);
            if constexpr (relu_on) {
                const __m256 pos = _mm256_cmp_ps(xv, zero, _CMP_GT_OQ);
                xv = _mm256_and_ps(pos, xv);
                _mm256_storeu_ps(pd + i, _mm256_and_ps(pos, mv));
            } else {
                _mm256_storeu_ps(pd + i, mv);
            }
            _mm256_storeu_ps(py + i, _mm256_mul_ps(xv, mv));
        }
    }
#endif
    for (; i < n; ++i) {
        const T m = u[i] < th ? scale : T(0);
        if constexpr (relu_on) {
            const bool pos = px[i] > T(0);
            pd[i] = pos ? m : T(0);
            py[i] = (pos ? px[i] : T(0)) * m;
        } else {
            pd[i] = m;
            py[i] = px[i] * m;
        }
    }
}

}  // namespace sdeuq::kernels
