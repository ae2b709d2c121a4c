// Counter-based standard normal numbers: Philox4x32-10 + Box-Muller, header only.
//
// Every normal number is a pure function of (key, stream, index): no generator state, so numbers can be
// drawn in any order, by any thread, and any subset of them reproduces exactly. This is what makes the
// Brownian path (sde/brownian.hpp) independent of the order and the batch size of its queries.
//
//   normal(key, stream, j) = component (j % 2) of BoxMuller(Philox4x32-10(counter, key)),
//   counter = {lo32(j / 2), hi32(j / 2), lo32(stream), hi32(stream)},  key = {lo32(key), hi32(key)}.
//
// Philox4x32-10: Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11
// (Random123's implementation). One Philox call gives 128 bits r0..r3 = two 53-bit uniforms
//   u1 = (k1 + 1) 2^-53 in (0, 1],  k1 = ((r0 << 32) | r1) >> 11,
//   u2 = k2 2^-53 in [0, 1),        k2 = ((r2 << 32) | r3) >> 11,
// turned into two independent N(0, 1) by Box-Muller (Box & Muller 1958):
//   z0 = sqrt(-2 ln u1) cos(2 pi u2),  z1 = sqrt(-2 ln u1) sin(2 pi u2).
// u1 > 0 so the log is finite; the largest |z| is sqrt(2 * 53 ln 2) ~= 8.57. The algorithm is fixed here
// (std::normal_distribution differs between standard libraries).
//
// Speed and reproducibility. The bulk function philox_normals runs Philox on 2 x 4 counters at once
// (AVX2, one counter per 64-bit lane) and evaluates log, sin and cos with our own branch-free polynomial
// kernels (fdlibm's, see box_muller below) instead of libm: ~3.5 ns per normal instead of ~23 ns. The
// kernels are one template instantiated for `double` and for 4-lane vectors, and use only operations
// IEEE 754 rounds correctly (+ - * / sqrt fma and integer bit operations), so the scalar philox_normal
// and the vector bulk path give the same bits, with or without SDEUQ_SIMD, with any compiler or libm,
// provided the compiler does not fuse a * b + c on its own (-ffp-contract=off, as the build sets).
// Accuracy: ln is fdlibm's (< 1 ulp); the angle is reduced exactly in turns (4 u2 = q + r, r in
// [-1/2, 1/2], no rounding since u2 is a multiple of 2^-53), so sin and cos have a small *relative*
// error even next to their zeros; each normal is within a few ulp (relative error < 1e-15) of the exact
// Box-Muller transform of the same uniforms (tests/test_brownian.cpp checks 1e-12).
#pragma once

#include <Random123/philox.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "autodiff/philox.hpp"

#if defined(SDEUQ_SIMD) && SDEUQ_SIMD && defined(__AVX2__) && defined(__FMA__)
#define SDEUQ_RANDOM_NORMAL_AVX2 1
#include <immintrin.h>
#else
#define SDEUQ_RANDOM_NORMAL_AVX2 0
#endif

namespace sdeuq::sde {

struct NormalPair {
    double z0, z1;
};

// The uniform conventions of the header comment, for 64 bits b = (r0 << 32) | r1 (box_muller computes the
// same values from the 32-bit words directly).
// 53 random bits -> (0, 1]: (k + 1) 2^-53 for k in [0, 2^53).
inline double philox_u01_open_closed(std::uint64_t bits) {
    return static_cast<double>((bits >> 11) + 1) * 0x1p-53;
}

// 53 random bits -> [0, 1): k 2^-53.
inline double philox_u01_closed_open(std::uint64_t bits) {
    return static_cast<double>(bits >> 11) * 0x1p-53;
}

namespace normal_detail {

// The Box-Muller kernel is written once for D = double, U = uint64_t (scalar) and for D, U = 4-lane GCC
// vector types (AVX2); only these helpers differ between the two.
inline double fma(double a, double b, double c) { return std::fma(a, b, c); }
inline double sqrt(double x) { return std::sqrt(x); }
// b where bit 63 of m is set, else a (vblendvpd).
inline double select_sign(std::uint64_t m, double a, double b) { return (m >> 63) ? b : a; }

#if SDEUQ_RANDOM_NORMAL_AVX2
using f64x4 = double __attribute__((vector_size(32)));
using u64x4 = std::uint64_t __attribute__((vector_size(32)));
inline f64x4 fma(f64x4 a, f64x4 b, f64x4 c) { return _mm256_fmadd_pd(a, b, c); }
inline f64x4 sqrt(f64x4 x) { return _mm256_sqrt_pd(x); }
inline f64x4 select_sign(u64x4 m, f64x4 a, f64x4 b) { return _mm256_blendv_pd(a, b, (__m256d)m); }
#endif

// A constant in every lane (D{} + c = c: the zero adds nothing).
template <class D>
inline D splat(double c) {
    return D{} + c;
}

constexpr std::uint64_t kLow32 = 0xffffffffu;
constexpr std::uint64_t kTwo52Bits = 0x4330000000000000u;  // bits of 2^52
constexpr std::uint64_t kSignBit = std::uint64_t{1} << 63;

// Exact double of an integer x < 2^52: 2^52 + x has x as its mantissa bits.
template <class D, class U>
inline D small_uint_to_double(U x) {
    return std::bit_cast<D>(x | kTwo52Bits) - 0x1p52;
}

// ln x for x in [2^-53, 1] (fdlibm/musl e_log.c, < 1 ulp): x = 2^k m, m in [sqrt(2)/2, sqrt(2)),
// f = m - 1, s = f / (2 + f), ln(1 + f) = 2 atanh(s) = f - f^2/2 + s (f^2/2 + R(s^2)).
template <class D, class U>
inline D log_unit(D x) {
    constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    constexpr double lg1 = 6.666666666666735130e-01, lg2 = 3.999999999940941908e-01;
    constexpr double lg3 = 2.857142874366239149e-01, lg4 = 2.222219843214978396e-01;
    constexpr double lg5 = 1.818357216161805012e-01, lg6 = 1.531383769920937332e-01;
    constexpr double lg7 = 1.479819860511658591e-01;
    constexpr std::uint64_t sqrt_half_bits = 0x3fe6a09e667f3bcdu;
    // AVX2 has no 64-bit arithmetic shift, so bias the exponent difference by 64 to keep it >= 0
    // (x >= 2^-53 gives k >= -53): kb = k + 64.
    constexpr std::uint64_t bias = std::uint64_t{64} << 52;
    const U bits = std::bit_cast<U>(x);
    const U kb = (bits - sqrt_half_bits + bias) >> 52;
    const D m = std::bit_cast<D>(bits - (kb << 52) + bias);
    const D dk = small_uint_to_double<D>(kb) - 64.0;
    const D f = m - 1.0;  // exact (Sterbenz)
    const D hfsq = 0.5 * f * f;
    const D s = f / (2.0 + f);
    const D z = s * s;
    const D w = z * z;
    const D t1 = w * fma(w, fma(w, splat<D>(lg6), splat<D>(lg4)), splat<D>(lg2));
    const D t2 = z * fma(w, fma(w, fma(w, splat<D>(lg7), splat<D>(lg5)), splat<D>(lg3)), splat<D>(lg1));
    const D r = t2 + t1;
    return s * (hfsq + r) + dk * ln2_lo - hfsq + f + dk * ln2_hi;
}

// Two normals from the four Philox words (each < 2^32, zero-extended to 64 bits).
template <class D, class U>
inline void box_muller(U r0, U r1, U r2, U r3, D& z0, D& z1) {
    // fdlibm k_sin.c / k_cos.c, valid for |x| <= pi/4 (< 1 ulp).
    constexpr double s1 = -1.66666666666666324348e-01, s2 = 8.33333333332248946124e-03;
    constexpr double s3 = -1.98412698298579493134e-04, s4 = 2.75573137070700676789e-06;
    constexpr double s5 = -2.50507602534068634195e-08, s6 = 1.58969099521155010221e-10;
    constexpr double c1 = 4.16666666666666019037e-02, c2 = -1.38888888888741095749e-03;
    constexpr double c3 = 2.48015872894767294178e-05, c4 = -2.75573143513906633035e-07;
    constexpr double c5 = 2.08757232129817482790e-09, c6 = -1.13596475577881948265e-11;
    constexpr double pi_2 = 1.57079632679489661923;
    constexpr double round_magic = 0x1.8p52;  // x + 1.5 2^52 rounds x to an integer, |x| < 2^51

    // u1 = (k1 + 1) 2^-53 with k1 = r0 2^21 + (r1 >> 11), exactly: subtracting 2^52 - 1 instead of 2^52
    // adds the 1, and the fma's exact sum is a double.
    const D u1 = fma(small_uint_to_double<D>(r0), splat<D>(0x1p-32),
                     (std::bit_cast<D>((r1 >> 11) | kTwo52Bits) - (0x1p52 - 1.0)) * 0x1p-53);
    const D radius = normal_detail::sqrt(-2.0 * log_unit<D, U>(u1));

    // Angle 2 pi u2 = (pi / 2)(q + r): t = 4 u2 = k2 2^-51 is exact, q = round(t), r = t - q in
    // [-1/2, 1/2] exact, so no rounding happens before the polynomial.
    const D t = fma(small_uint_to_double<D>(r2), splat<D>(0x1p-30),
                    small_uint_to_double<D>(r3 >> 11) * 0x1p-51);
    const D tq = t + round_magic;
    const U q = std::bit_cast<U>(tq);  // low mantissa bits = q (mod 4 is all we need)
    const D x = (t - (tq - round_magic)) * pi_2;
    const D zz = x * x;
    const D sr = fma(zz, fma(zz, fma(zz, splat<D>(s6), splat<D>(s5)), splat<D>(s4)), splat<D>(s3));
    const D sin_x = x + (zz * x) * fma(zz, fma(zz, sr, splat<D>(s2)), splat<D>(s1));
    const D cr4 = fma(zz, fma(zz, splat<D>(c6), splat<D>(c5)), splat<D>(c4));
    const D cr = fma(zz, fma(zz, cr4, splat<D>(c3)), splat<D>(c2));
    const D hz = 0.5 * zz;
    const D w = 1.0 - hz;
    const D cos_x = w + (((1.0 - w) - hz) + (zz * zz) * fma(zz, cr, splat<D>(c1)));

    // Quadrant q: (cos, sin)(q pi/2 + x) = (c, s), (-s, c), (-c, -s), (s, -c) for q mod 4 = 0, 1, 2, 3:
    // swap for odd q; negate cos for q mod 4 in {1, 2} (bit 1 of q + 1), sin for {2, 3} (bit 1 of q).
    const U odd = q << 63;
    const U cos_sign = ((q + 1u) << 62) & kSignBit, sin_sign = (q << 62) & kSignBit;
    const D cos_q = std::bit_cast<D>(std::bit_cast<U>(select_sign(odd, cos_x, sin_x)) ^ cos_sign);
    const D sin_q = std::bit_cast<D>(std::bit_cast<U>(select_sign(odd, sin_x, cos_x)) ^ sin_sign);
    z0 = radius * cos_q;
    z1 = radius * sin_q;
}

#if SDEUQ_RANDOM_NORMAL_AVX2
// Philox4x32-10 on 4 counters per vector: the core is shared with Generator's bulk path.
using PhiloxKeys4 = philox::Keys4;
using philox::philox4x32_10_x4;

// Pairs block .. block + 4 G ngroups - 1, interleaved z0, z1 into out[0 .. 8 G ngroups).
template <int G>
inline void philox_normal_pairs_avx2(std::uint64_t key, std::uint64_t stream, std::uint64_t block,
                                     double* out, std::size_t ngroups) {
    const PhiloxKeys4 keys(key);
    const __m256i s_lo = _mm256_set1_epi64x(static_cast<long long>(stream & kLow32));
    const __m256i s_hi = _mm256_set1_epi64x(static_cast<long long>(stream >> 32));
    __m256i blk = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(block)),
                                   _mm256_setr_epi64x(0, 1, 2, 3));
    const __m256i four = _mm256_set1_epi64x(4);
    for (std::size_t i = 0; i < ngroups; ++i) {
        __m256i c[G][4];
        blk = philox::philox_counters<G>(c, blk, s_lo, s_hi, four);
        philox4x32_10_x4<G>(c, keys);
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g, out += 8) {
            f64x4 z0, z1;
            box_muller<f64x4, u64x4>(u64x4(c[g][0]), u64x4(c[g][1]), u64x4(c[g][2]), u64x4(c[g][3]), z0, z1);
            const __m256d lo = _mm256_unpacklo_pd(z0, z1), hi = _mm256_unpackhi_pd(z0, z1);  // a0 b0 a2 b2
            _mm256_storeu_pd(out, _mm256_permute2f128_pd(lo, hi, 0x20));
            _mm256_storeu_pd(out + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
        }
    }
}
#endif

}  // namespace normal_detail

// The pair of normals number `block` of `stream` under `key` (normals 2 block and 2 block + 1).
inline NormalPair philox_normal_pair(std::uint64_t key, std::uint64_t stream, std::uint64_t block) {
    using Philox = r123::Philox4x32;  // 10 rounds
    Philox gen;
    Philox::ctr_type c = {{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                           static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)}};
    Philox::key_type k = {{static_cast<std::uint32_t>(key), static_cast<std::uint32_t>(key >> 32)}};
    const Philox::ctr_type r = gen(c, k);
    NormalPair p;
    normal_detail::box_muller<double, std::uint64_t>(r[0], r[1], r[2], r[3], p.z0, p.z1);
    return p;
}

// Normal number `index` of `stream` under `key`.
inline double philox_normal(std::uint64_t key, std::uint64_t stream, std::uint64_t index) {
    const NormalPair p = philox_normal_pair(key, stream, index / 2);
    return (index % 2 == 0) ? p.z0 : p.z1;
}

// out[j] = philox_normal(key, stream, first + j) for j < n, bit for bit; two normals per Philox call,
// 16 at a time with AVX2 (the < 16 left over and an odd first one go through the scalar kernel).
inline void philox_normals(std::uint64_t key, std::uint64_t stream, std::uint64_t first, double* out,
                           std::size_t n) {
    std::size_t j = 0;
    if (n == 0) return;
    if (first % 2 == 1) {  // odd start: the second half of a pair
        out[j++] = philox_normal_pair(key, stream, first / 2).z1;
    }
    std::uint64_t block = (first + j) / 2;
#if SDEUQ_RANDOM_NORMAL_AVX2
    constexpr int G = 2;  // 2 x 4 counters in flight: measured 3.4 ns vs 4.0 ns per normal with 1
    const std::size_t groups = (n - j) / (8 * G);
    normal_detail::philox_normal_pairs_avx2<G>(key, stream, block, out + j, groups);
    j += 8 * G * groups;
    block += 4 * G * groups;
#endif
    for (; j + 1 < n; j += 2, ++block) {
        const NormalPair p = philox_normal_pair(key, stream, block);
        out[j] = p.z0;
        out[j + 1] = p.z1;
    }
    if (j < n) out[j] = philox_normal_pair(key, stream, block).z0;
}

}  // namespace sdeuq::sde
