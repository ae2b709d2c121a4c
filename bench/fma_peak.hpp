// The single-core FMA peak the SIMD kernels are judged against (shared by bench_gemm and bench_conv_step).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SDEUQ_BENCH_X86 1
#endif

namespace sdeuq::bench {

#ifdef SDEUQ_BENCH_X86
// Twelve independent FMA chains on ymm registers: Zen 4 has two 4-cycle FMA pipes, so eight chains
// would just cover latency x throughput; twelve leave margin. The target attribute lets the scalar build
// (no -mavx2) still measure the peak the SIMD kernels are judged against.
__attribute__((target("avx2,fma"), noinline)) inline float fma_peak_loop(std::int64_t iters) {
    const __m256 mul = _mm256_set1_ps(0.9999999f);
    const __m256 add = _mm256_set1_ps(1e-7f);
    __m256 r0 = _mm256_set1_ps(1.0f), r1 = _mm256_set1_ps(1.1f), r2 = _mm256_set1_ps(1.2f);
    __m256 r3 = _mm256_set1_ps(1.3f), r4 = _mm256_set1_ps(1.4f), r5 = _mm256_set1_ps(1.5f);
    __m256 r6 = _mm256_set1_ps(1.6f), r7 = _mm256_set1_ps(1.7f), r8 = _mm256_set1_ps(1.8f);
    __m256 r9 = _mm256_set1_ps(1.9f), r10 = _mm256_set1_ps(2.0f), r11 = _mm256_set1_ps(2.1f);
    for (std::int64_t i = 0; i < iters; ++i) {
        r0 = _mm256_fmadd_ps(r0, mul, add);
        r1 = _mm256_fmadd_ps(r1, mul, add);
        r2 = _mm256_fmadd_ps(r2, mul, add);
        r3 = _mm256_fmadd_ps(r3, mul, add);
        r4 = _mm256_fmadd_ps(r4, mul, add);
        r5 = _mm256_fmadd_ps(r5, mul, add);
        r6 = _mm256_fmadd_ps(r6, mul, add);
        r7 = _mm256_fmadd_ps(r7, mul, add);
        r8 = _mm256_fmadd_ps(r8, mul, add);
        r9 = _mm256_fmadd_ps(r9, mul, add);
        r10 = _mm256_fmadd_ps(r10, mul, add);
        r11 = _mm256_fmadd_ps(r11, mul, add);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r0, r1), _mm256_add_ps(r2, r3)),
                             _mm256_add_ps(_mm256_add_ps(r4, r5), _mm256_add_ps(r6, r7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(r8, r9), _mm256_add_ps(r10, r11)));
    alignas(32) float out[8];
    _mm256_store_ps(out, s);
    return out[0] + out[7];
}

// Single-precision GFLOP/s of one core (2 flops per lane per FMA), best of several runs.
inline double measure_peak_gflops() {
    if (!__builtin_cpu_supports("fma") || !__builtin_cpu_supports("avx2")) return 0.0;
    const std::int64_t iters = 20'000'000;
    volatile float sink = fma_peak_loop(iters / 10);  // warm up clocks
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        sink = sink + fma_peak_loop(iters);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return static_cast<double>(iters) * 12 * 8 * 2 / best * 1e-9;
}
#else
inline double measure_peak_gflops() {
    return 0.0;
}
#endif

}  // namespace sdeuq::bench
