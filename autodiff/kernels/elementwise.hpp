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
#include <limits>
#include <type_traits>

#include "autodiff/parallel.hpp"

#if SDEUQ_SIMD
#include <xsimd/xsimd.hpp>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
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

// ---- tanh
// tanh for float32 batches (AVX2+FMA: 8 lanes, AVX-512: 16 lanes): a branch-free kernel with explicit FMAs,
// 1.5x as fast as xsimd's (which branches on the range and, for AVX-512, has no FMA). Accuracy, checked
// against double-precision tanh rounded to float over all 2^32 inputs: <= 2 ulp (all but ~150 inputs within
// 1 ulp); NaN propagates, +-Inf give +-1, -0 gives -0. Other types (float64, scalar builds) keep xsimd's or
// libm's tanh. The kernel:
//   |x| < 0.625: x + x z P(z), z = x^2, with the minimax P of Cephes' tanhf (as xsimd);
//   otherwise 1 - 2 / (exp(2a) + 1), a = min(|x|, 9.5) (tanh(9.5) rounds to 1), exp(2a) = 2^n exp(2s),
//     n = round(2a / ln 2) by the 1.5 2^23 rounding constant, s = a - n ln2 / 2 (Cody-Waite, two
//     constants), exp(2s) by its Taylor polynomial of degree 6 (|2s| <= ln2 / 2; the formula damps the
//     relative error of exp(2a) by 2 e / (e + 1)^2 / tanh <= 0.4), 2^n from the exponent bits;
//   the sign of x put back with an xor.
#if SDEUQ_SIMD && defined(__AVX2__) && defined(__FMA__)
namespace tanh_detail {
template <int Lanes> struct Ops;  // by lane count (__m256 as a template argument loses its attributes)
template <> struct Ops<8> {
    using V = __m256;
    static V set(float c) { return _mm256_set1_ps(c); }
    static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static V div(V a, V b) { return _mm256_div_ps(a, b); }
    static V min(V a, V b) { return _mm256_min_ps(a, b); }  // b when either is NaN
    static V abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
    static V bxor(V a, V b) { return _mm256_xor_ps(a, b); }
    static V select_lt(V a, V b, V x, V y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
    // t = x k + 1.5 2^23 (rounded to an integer n + 1.5 2^23, |n| < 2^22): p 2^n for n in [-126, 127].
    static V scale_t(V p, V t) {
        const __m256i e = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4b400000 - 127)), 23);
        return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    }
};
#if defined(__AVX512F__)
template <> struct Ops<16> {
    using V = __m512;
    static V set(float c) { return _mm512_set1_ps(c); }
    static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
    static V add(V a, V b) { return _mm512_add_ps(a, b); }
    static V div(V a, V b) { return _mm512_div_ps(a, b); }
    static V min(V a, V b) { return _mm512_min_ps(a, b); }
    static V abs(V a) { return _mm512_abs_ps(a); }
    static V bxor(V a, V b) {
        return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
    }
    static V select_lt(V a, V b, V x, V y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x); }
    static V scale_t(V p, V t) {
        const __m512i e = _mm512_slli_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4b400000 - 127)), 23);
        return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    }
};
#endif

template <int Lanes> inline typename Ops<Lanes>::V tanh_f32(typename Ops<Lanes>::V x) {
    using O = Ops<Lanes>;
    using V = typename O::V;
    const V ax = O::abs(x);
    const V sign = O::bxor(x, ax);
    const V a = O::min(O::set(9.5f), ax);  // NaN stays NaN
    const V z = O::mul(a, a);
    V q = O::fmadd(z, O::set(-5.70498872745e-3f), O::set(2.06390887954e-2f));
    q = O::fmadd(q, z, O::set(-5.37397155531e-2f));
    q = O::fmadd(q, z, O::set(1.33314422036e-1f));
    q = O::fmadd(q, z, O::set(-3.33332819422e-1f));
    const V small = O::fmadd(O::mul(q, z), a, a);
    const V t = O::fmadd(a, O::set(2.88539008177792681f), O::set(12582912.0f));  // 2a / ln2 + 1.5 2^23
    const V n = O::add(t, O::set(-12582912.0f));
    V s = O::fmadd(n, O::set(-0.693359375f * 0.5f), a);
    s = O::fmadd(n, O::set(2.12194440e-4f * 0.5f), s);
    V p = O::fmadd(s, O::set(64.0f / 720.0f), O::set(32.0f / 120.0f));
    p = O::fmadd(p, s, O::set(16.0f / 24.0f));
    p = O::fmadd(p, s, O::set(8.0f / 6.0f));
    p = O::fmadd(p, s, O::set(2.0f));
    p = O::fmadd(p, s, O::set(2.0f));
    p = O::fmadd(p, s, O::set(1.0f));
    const V e = O::scale_t(p, t);  // exp(2a)
    const V big = O::fmadd(O::set(-2.0f), O::div(O::set(1.0f), O::add(e, O::set(1.0f))), O::set(1.0f));
    return O::bxor(O::select_lt(a, O::set(0.625f), small, big), sign);
}
}  // namespace tanh_detail
#endif

template <class V> inline V tanh_v(const V& x) {
#if SDEUQ_SIMD && defined(__AVX2__) && defined(__FMA__)
    if constexpr (std::is_same_v<V, xsimd::batch<float>>) {
        using R = typename V::register_type;
        return V(tanh_detail::tanh_f32<static_cast<int>(V::size)>(R(x)));
    } else
#endif
    {
        using std::tanh;
        return tanh(x);
    }
}

// ---- log and pow with exact special values
// xsimd 8.1's generic float64 log reads the exponent bits before it rescales a subnormal input, so
// log(1e-310) came out as -746.5 instead of -713.8 (and pow(x, 0.5) inherited it). log_v rescales
// subnormals itself first (x 2^54, then subtracts 54 ln 2 in the two parts fdlibm uses, so the result is
// as close as xsimd's normal path); the rescaled input is normal, so xsimd's own (wrong) branch never
// runs. Cost: one compare, one multiply, two blends. float32 batches and scalars are unchanged (xsimd's
// float32 log rescales correctly).
template <class V> inline V log_v(const V& x) {
#if SDEUQ_SIMD
    if constexpr (std::is_same_v<V, xsimd::batch<double>>) {
        const auto tiny = xsimd::abs(x) < V(2.2250738585072014e-308) && x != V(0.0);
        const V r = xsimd::log(xsimd::select(tiny, x * V(18014398509481984.0), x));  // 2^54
        // 54 ln2 = 54 (ln2_hi + ln2_lo), ln2_hi with 32 trailing zero bits: 54 ln2_hi is exact.
        const V ln2_hi(6.93147180369123816490e-01), ln2_lo(1.90821492927058770002e-10);
        return xsimd::select(tiny, (r - V(54.0) * ln2_hi) - V(54.0) * ln2_lo, r);
    } else
#endif
    {
        using std::log;
        return log(x);
    }
}

// exp: xsimd 8.1 returns 0 below its minlog (-88.38 f32, -708.40 f64), where std::exp still has
// subnormal results down to -103.97 / -745.13, and inf above 88.38 in f32 (FLT_MAX is exp(88.72)). Lanes
// with a finite |x| beyond 88 / 708 (rare: one predictable branch) take exp(x / 2)^2 instead, which
// covers the whole range with <= 3 ulp for normal results. xsimd's exp converts its argument to an integer
// (a scalar cast on AVX2 for doubles), which is undefined behaviour for an infinite or NaN lane (UBSan
// reports it): such lanes, and the edge lanes, call it on 0 and are blended afterwards; exp(+-inf) comes
// from the clamped x / 2 (exp(+-thr)^2 is inf or 0), NaN is passed through.
template <class V> inline V exp_v(const V& x) {
    using std::exp;
#if SDEUQ_SIMD
    if constexpr (!std::is_floating_point_v<V>) {
        using T = typename V::value_type;
        const V thr(std::is_same_v<T, float> ? T(88) : T(708));
        const auto edge = xsimd::abs(x) > thr;  // the finite edges and +-inf; NaN compares false
        const auto nan = xsimd::isnan(x);
        const auto special = edge || nan;
        if (!xsimd::any(special)) return exp(x);
        const V r = exp(xsimd::select(special, V(T(0)), x));
        const V h = exp(xsimd::select(nan, V(T(0)), xsimd::clip(x * V(T(0.5)), -thr, thr)));
        return xsimd::select(nan, x, xsimd::select(edge, h * h, r));
    } else
#endif
        return exp(x);
}

// log1p: xsimd's gives +0 for -0 (std::log1p(-0) = -0).
template <class V> inline V log1p_v(const V& x) {
    using std::log1p;
#if SDEUQ_SIMD
    if constexpr (!std::is_floating_point_v<V>) return xsimd::select(x == V(0), x, log1p(x));
    else
#endif
        return log1p(x);
}

// pow(x, y) with C99 Annex F's special cases, which xsimd 8.1's generic pow (exp(y log|x|), then 0 for
// any zero base) gets wrong: pow(0, 0) = 1 (it gave 0), pow(0, -1) = inf (0), pow(-0, 3) = -0 (+0),
// pow(1, NaN) = pow(NaN, 0) = pow(-1, +-inf) = 1 (NaN), and subnormal bases (its log, above). Here
// exp(y log|x|) already gives the right zero or infinity for zero and infinite bases once log(0) = -inf
// is kept; the sign is put back for a negative base (-0 included) and an odd integer y; a negative finite
// base with a finite non-integer y is NaN; y = 0, x = 1, and x = -1 with y = +-inf give 1; y = 1 gives x
// (exp(log x) can round FLT_MAX up to inf). All blends on
// the vector path: no branch, and the common case pays a handful of compares.
template <class V> inline V pow_v(const V& x, const V& y) {
#if SDEUQ_SIMD
    if constexpr (!std::is_floating_point_v<V>) {
        using T = typename V::value_type;
        const V ax = xsimd::abs(x);
        V z = exp_v(y * log_v(ax));
        const auto neg = xsimd::copysign(V(1), x) < V(0);  // the sign bit, -0 and -inf included
        // xsimd's is_odd calls every y >= 2^(mantissa bits + 1) odd; such y are all even integers.
        const V big(std::is_same_v<T, float> ? 16777216.0f : 9007199254740992.0);
        z = xsimd::select(neg && xsimd::is_odd(y) && xsimd::abs(y) < big, -z, z);
        const auto invalid = x < V(0) && xsimd::isfinite(x) && xsimd::isfinite(y) && !xsimd::is_flint(y);
        z = xsimd::select(invalid, V(std::numeric_limits<T>::quiet_NaN()), z);
        const auto one = y == V(0) || x == V(1) || (x == V(-1) && xsimd::isinf(y));
        // y = 1 returns x itself (exp(log x) can round x = FLT_MAX up to inf).
        return xsimd::select(one, V(1), xsimd::select(y == V(1), x, z));
    } else
#endif
    {
        using std::pow;
        return pow(x, y);
    }
}

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
