// Elementwise kernels: plain loops over raw pointers, vectorised with xsimd.
//
// A functor is a generic lambda or struct callable both on T and on xsimd::batch<T>; the same functor
// therefore serves the vector body and, through a zero-padded batch, the tail, so every element is
// computed by the same instructions wherever it falls. Large maps are split over the kernel threads at
// multiples of 64 elements: results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "autodiff/parallel.hpp"

#if SDEUQ_SIMD
#include <xsimd/xsimd.hpp>
#endif

namespace sdeuq::kernels {

constexpr std::int64_t parallel_min = 1 << 15;

#if SDEUQ_SIMD
template <class T> using vec = xsimd::batch<T>;
template <class T> constexpr std::int64_t vec_size = static_cast<std::int64_t>(xsimd::batch<T>::size);
// Select and comparisons that read the same on scalars and batches.
template <class T> inline vec<T> select(const xsimd::batch_bool<T>& c, const vec<T>& a, const vec<T>& b) {
    return xsimd::select(c, a, b);
}
#else
template <class T> using vec = T;
template <class T> constexpr std::int64_t vec_size = 1;
#endif
template <class T, class = std::enable_if_t<std::is_floating_point_v<T>>>
inline T select(bool c, T a, T b) { return c ? a : b; }

template <class T, class F> void map1_serial(const T* x, T* y, std::int64_t n, F f) {
#if SDEUQ_SIMD
    constexpr std::int64_t w = vec_size<T>;
    std::int64_t i = 0;
    for (; i + w <= n; i += w) f(vec<T>::load_unaligned(x + i)).store_unaligned(y + i);
    if (i < n) {
        alignas(64) T in[w] = {}, out[w];
        std::memcpy(in, x + i, sizeof(T) * static_cast<std::size_t>(n - i));
        f(vec<T>::load_aligned(in)).store_aligned(out);
        std::memcpy(y + i, out, sizeof(T) * static_cast<std::size_t>(n - i));
    }
#else
    for (std::int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
#endif
}

template <class T, class F> void map2_serial(const T* a, const T* b, T* y, std::int64_t n, F f) {
#if SDEUQ_SIMD
    constexpr std::int64_t w = vec_size<T>;
    std::int64_t i = 0;
    for (; i + w <= n; i += w) f(vec<T>::load_unaligned(a + i), vec<T>::load_unaligned(b + i)).store_unaligned(y + i);
    if (i < n) {
        alignas(64) T ia[w] = {}, ib[w] = {}, out[w];
        std::memcpy(ia, a + i, sizeof(T) * static_cast<std::size_t>(n - i));
        std::memcpy(ib, b + i, sizeof(T) * static_cast<std::size_t>(n - i));
        f(vec<T>::load_aligned(ia), vec<T>::load_aligned(ib)).store_aligned(out);
        std::memcpy(y + i, out, sizeof(T) * static_cast<std::size_t>(n - i));
    }
#else
    for (std::int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
#endif
}

template <class T, class F> void map3_serial(const T* a, const T* b, const T* c, T* y, std::int64_t n, F f) {
#if SDEUQ_SIMD
    constexpr std::int64_t w = vec_size<T>;
    std::int64_t i = 0;
    for (; i + w <= n; i += w)
        f(vec<T>::load_unaligned(a + i), vec<T>::load_unaligned(b + i), vec<T>::load_unaligned(c + i))
            .store_unaligned(y + i);
    if (i < n) {
        alignas(64) T ia[w] = {}, ib[w] = {}, ic[w] = {}, out[w];
        std::memcpy(ia, a + i, sizeof(T) * static_cast<std::size_t>(n - i));
        std::memcpy(ib, b + i, sizeof(T) * static_cast<std::size_t>(n - i));
        std::memcpy(ic, c + i, sizeof(T) * static_cast<std::size_t>(n - i));
        f(vec<T>::load_aligned(ia), vec<T>::load_aligned(ib), vec<T>::load_aligned(ic)).store_aligned(out);
        std::memcpy(y + i, out, sizeof(T) * static_cast<std::size_t>(n - i));
    }
#else
    for (std::int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i], c[i]);
#endif
}

// b is one value broadcast over a (b_first: f(b, a[i])).
template <class T, class F> void map2_scalar_serial(const T* a, T b, T* y, std::int64_t n, bool b_first, F f) {
#if SDEUQ_SIMD
    constexpr std::int64_t w = vec_size<T>;
    const vec<T> vb(b);
    auto g = [&](const vec<T>& va) { return b_first ? f(vb, va) : f(va, vb); };
    std::int64_t i = 0;
    for (; i + w <= n; i += w) g(vec<T>::load_unaligned(a + i)).store_unaligned(y + i);
    if (i < n) {
        alignas(64) T ia[w] = {}, out[w];
        std::memcpy(ia, a + i, sizeof(T) * static_cast<std::size_t>(n - i));
        g(vec<T>::load_aligned(ia)).store_aligned(out);
        std::memcpy(y + i, out, sizeof(T) * static_cast<std::size_t>(n - i));
    }
#else
    for (std::int64_t i = 0; i < n; ++i) y[i] = b_first ? f(b, a[i]) : f(a[i], b);
#endif
}

template <class T, class F> void map1(const T* x, T* y, std::int64_t n, F f) {
    parallel_for(0, n, 64, parallel_min, [&](std::int64_t lo, std::int64_t hi) { map1_serial(x + lo, y + lo, hi - lo, f); });
}
template <class T, class F> void map2(const T* a, const T* b, T* y, std::int64_t n, F f) {
    parallel_for(0, n, 64, parallel_min,
                 [&](std::int64_t lo, std::int64_t hi) { map2_serial(a + lo, b + lo, y + lo, hi - lo, f); });
}
template <class T, class F> void map3(const T* a, const T* b, const T* c, T* y, std::int64_t n, F f) {
    parallel_for(0, n, 64, parallel_min, [&](std::int64_t lo, std::int64_t hi) {
        map3_serial(a + lo, b + lo, c + lo, y + lo, hi - lo, f);
    });
}

// Sum of n contiguous values in a fixed order (w lanes, then lanes left to right).
template <class T> T sum_serial(const T* x, std::int64_t n) {
#if SDEUQ_SIMD
    constexpr std::int64_t w = vec_size<T>;
    vec<T> acc0(T(0)), acc1(T(0));
    std::int64_t i = 0;
    for (; i + 2 * w <= n; i += 2 * w) {
        acc0 += vec<T>::load_unaligned(x + i);
        acc1 += vec<T>::load_unaligned(x + i + w);
    }
    acc0 += acc1;
    alignas(64) T lanes[w];
    acc0.store_aligned(lanes);
    T s = 0;
    for (std::int64_t l = 0; l < w; ++l) s += lanes[l];
    for (; i < n; ++i) s += x[i];
    return s;
#else
    T s = 0;
    for (std::int64_t i = 0; i < n; ++i) s += x[i];
    return s;
#endif
}

template <class T> void add_inplace(T* y, const T* x, std::int64_t n) {
    map2(y, x, y, n, [](auto a, auto b) { return a + b; });
}

}  // namespace sdeuq::kernels
