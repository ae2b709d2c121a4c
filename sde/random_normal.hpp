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
//
// Float32 variant (philox_normal_f32, philox_normals_f32; BrownianOptions::float_normals), for float32
// solves, whose Brownian samples torchsde also draws in the state's dtype. Another sequence, as pure:
//   normal_f32(key, stream, j) = component (j % 2) of BoxMuller_f32(w1, w2) of Philox4x32-10(counter, key),
//   counter = {lo32(j / 4), hi32(j / 4), lo32(stream), hi32(stream)},  (w1, w2) = (r0, r1) for j % 4 < 2,
//   else (r2, r3): one Philox call gives normals 4 b .. 4 b + 3. 24-bit uniforms, exact in float:
//   u1 = ((w1 >> 8) + 1) 2^-24 in (0, 1],  u2 = (w2 >> 8) 2^-24 in [0, 1),
// and Box-Muller in float: ln is fdlibm's logf (< 1 ulp); the angle is reduced exactly in quarter turns
// with integers (4 u2 = q + r, r in [-1/2, 1/2)) and sin(pi/2 r), cos(pi/2 r) are minimax polynomials in r
// of our own fit (box_muller_f32). The largest |z| is sqrt(-2 ln 2^-24) ~= 5.77 (P(|Z| > 5.77) = 8e-9
// for a true normal); the law is otherwise N(0, 1) to the resolution of the 2^-24 grid of the uniforms.
// Accuracy: each normal is within a few float ulp of the exact Box-Muller transform of the same uniforms
// computed in double: measured worst 2.5 ulp (relative 2.0e-7) over 2^25 random pairs, the radius alone
// < 1 ulp over all 2^24 values of u1 (tests/test_brownian.cpp checks 1e-6 relative and 3 ulp).
// Same kernel scheme as the double one: one template for float and for 8-lane vectors, correctly rounded
// operations only (+ - * / sqrt fma, exact int -> float conversions of |x| <= 2^24, bit operations), so
// scalar and AVX2 give the same bits. Speed: 8 pairs per vector and 4 normals per Philox call, measured
// 1.8-2.1 ns per normal against 4.1-5.1 ns for philox_normals on the same machine (bench_brownian, 4096
// per call).
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

// The float kernel (box_muller_f32): F = float, U = uint32_t, or 8-lane vectors.
inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
inline float sqrt(float x) { return std::sqrt(x); }
inline float select_sign(std::uint32_t m, float a, float b) { return (m >> 31) ? b : a; }
// The int32 with the bits of x as a float (cvtdq2ps): exact for |x| <= 2^24, all it is used for.
inline float int_to_float(std::uint32_t x) { return static_cast<float>(static_cast<std::int32_t>(x)); }

#if SDEUQ_RANDOM_NORMAL_AVX2
using f64x4 = double __attribute__((vector_size(32)));
using u64x4 = std::uint64_t __attribute__((vector_size(32)));
inline f64x4 fma(f64x4 a, f64x4 b, f64x4 c) { return _mm256_fmadd_pd(a, b, c); }
inline f64x4 sqrt(f64x4 x) { return _mm256_sqrt_pd(x); }
inline f64x4 select_sign(u64x4 m, f64x4 a, f64x4 b) { return _mm256_blendv_pd(a, b, (__m256d)m); }

using f32x8 = float __attribute__((vector_size(32)));
using u32x8 = std::uint32_t __attribute__((vector_size(32)));
inline f32x8 fma(f32x8 a, f32x8 b, f32x8 c) { return _mm256_fmadd_ps(a, b, c); }
inline f32x8 sqrt(f32x8 x) { return _mm256_sqrt_ps(x); }
inline f32x8 select_sign(u32x8 m, f32x8 a, f32x8 b) { return _mm256_blendv_ps(a, b, (__m256)m); }
inline f32x8 int_to_float(u32x8 x) { return _mm256_cvtepi32_ps((__m256i)x); }
#endif

// A constant in every lane (D{} + c = c: the zero adds nothing).
template <class D>
inline D splat(double c) {
    return D{} + c;
}
template <class F>
inline F splat_f(float c) {
    return F{} + c;
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

// ln x for x in [2^-24, 1] in float: fdlibm's e_logf.c (FreeBSD; musl's logf before 1.1.20), < 1 ulp, the
// shape of log_unit: x = 2^k m, m in [sqrt(2)/2, sqrt(2)), f = m - 1 (exact), s = f / (2 + f),
// ln(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), R(z) = Lg1 z + .. + Lg4 z^4 (|s| <= 0.1716: the polynomial's
// own relative error is 2.5e-11). ln2_hi has 16 significant bits, so k ln2_hi is exact for |k| <= 24.
template <class F, class U>
inline F log_unit_f32(F x) {
    constexpr float ln2_hi = 0x1.62e3p-1f, ln2_lo = 0x1.2fefa2p-17f;
    constexpr float lg1 = 0xaaaaaa.0p-24f, lg2 = 0xccce13.0p-25f;
    constexpr float lg3 = 0x91e9ee.0p-25f, lg4 = 0xf89e26.0p-26f;
    constexpr std::uint32_t sqrt_half_bits = 0x3f3504f3u;  // float(sqrt(2) / 2)
    // Adding 1 - sqrt(2)/2 to the bits carries into the exponent exactly when the mantissa is
    // >= sqrt(2)/2 of the next binade: ix >> 23 = k + 127, in [103, 127] for x in [2^-24, 1].
    const U ix = std::bit_cast<U>(x) + (0x3f800000u - sqrt_half_bits);
    const F dk = int_to_float(ix >> 23) - 127.0f;
    const F m = std::bit_cast<F>((ix & 0x007fffffu) + sqrt_half_bits);
    const F f = m - 1.0f;  // exact (Sterbenz)
    const F hfsq = 0.5f * f * f;
    const F s = f / (2.0f + f);
    const F z = s * s;
    const F w = z * z;
    const F t1 = w * fma(w, splat_f<F>(lg4), splat_f<F>(lg2));
    const F t2 = z * fma(w, splat_f<F>(lg3), splat_f<F>(lg1));
    const F r = t2 + t1;
    return s * (hfsq + r) + dk * ln2_lo - hfsq + f + dk * ln2_hi;
}

// Two float normals from two Philox words w1, w2 (u1 from w1, u2 from w2), the float analogue of box_muller.
template <class F, class U>
inline void box_muller_f32(U w1, U w2, F& z0, F& z1) {
    // sin(pi/2 r) = r (S0 + S1 z + S2 z^2 + S3 z^3), cos(pi/2 r) = 1 + z (C1 + C2 z + C3 z^2 + C4 z^3),
    // z = r^2, |r| <= 1/2: polynomials in quarter turns r (no rounding of an angle r pi/2), minimax for
    // the relative error (Remez, 40 digits, mpmath), each coefficient rounded to float in turn and the
    // rest refitted. Errors of the float-coefficient polynomials: 3.5e-9 (sin), 4.4e-10 (cos) relative,
    // below the 6e-8 of one rounding. S0 = s0_hi + s0_lo: float(S0) alone would be 3e-8 off.
    constexpr float s0_hi = 0x1.921fb6p+0f, s0_lo = -0x1.a32bd2p-25f, s1 = -0x1.4abbbap-1f;
    constexpr float s2 = 0x1.465eeap-4f, s3 = -0x1.2da11cp-8f;
    constexpr float c1 = -0x1.3bd3ccp+0f, c2 = 0x1.03c1b0p-2f, c3 = -0x1.55b2b6p-6f, c4 = 0x1.d4f79cp-11f;

    // u1 = (k1 + 1) 2^-24 in (0, 1], k1 = w1 >> 8: exact (k1 + 1 <= 2^24).
    const F u1 = int_to_float((w1 >> 8) + 1u) * 0x1p-24f;
    const F radius = normal_detail::sqrt(-2.0f * log_unit_f32<F, U>(u1));

    // Angle 2 pi u2 = (pi / 2)(q + r): 4 u2 = k2 2^-22 with k2 = w2 >> 8, q = floor(4 u2 + 1/2) =
    // (k2 + 2^21) >> 22 in 0..4, r = (k2 - q 2^22) 2^-22 in [-1/2, 1/2): integers, so exact.
    const U k2 = w2 >> 8;
    const U q = (k2 + (1u << 21)) >> 22;
    const F r = int_to_float(k2 - (q << 22)) * 0x1p-22f;
    const F z = r * r;
    // The leading term r S0 is exact inside the fma: the sum is rounded once.
    const F sp = fma(z, fma(z, splat_f<F>(s3), splat_f<F>(s2)), splat_f<F>(s1));
    const F sin_x = fma(r, splat_f<F>(s0_hi), fma(r, splat_f<F>(s0_lo), (r * z) * sp));
    const F cp = fma(z, fma(z, fma(z, splat_f<F>(c4), splat_f<F>(c3)), splat_f<F>(c2)), splat_f<F>(c1));
    const F cos_x = fma(z, cp, splat_f<F>(1.0f));

    // Quadrant q as in box_muller (q = 4 is 0 mod 4): swap for odd q, negate cos for q mod 4 in {1, 2}
    // (bit 1 of q + 1), sin for {2, 3} (bit 1 of q).
    constexpr std::uint32_t sign = 0x80000000u;
    const U odd = q << 31;
    const U cos_sign = ((q + 1u) << 30) & sign, sin_sign = (q << 30) & sign;
    const F cos_q = std::bit_cast<F>(std::bit_cast<U>(select_sign(odd, cos_x, sin_x)) ^ cos_sign);
    const F sin_q = std::bit_cast<F>(std::bit_cast<U>(select_sign(odd, sin_x, cos_x)) ^ sin_sign);
    z0 = radius * cos_q;
    z1 = radius * sin_q;
}

// Philox4x32-10 (Random123) of counter {lo32(block), hi32(block), lo32(stream), hi32(stream)} under key
// {lo32(key), hi32(key)}: the four words of one block, for both Box-Muller variants.
inline r123::Philox4x32::ctr_type philox_block(std::uint64_t key, std::uint64_t stream, std::uint64_t block) {
    using Philox = r123::Philox4x32;  // 10 rounds
    Philox::ctr_type c = {{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                           static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)}};
    Philox::key_type k = {{static_cast<std::uint32_t>(key), static_cast<std::uint32_t>(key >> 32)}};
    return Philox()(c, k);
}

#if SDEUQ_RANDOM_NORMAL_AVX2
// Philox4x32-10 on 4 counters per vector: the core is shared with Generator's bulk path.
using PhiloxKeys4 = philox::Keys4;
using philox::philox4x32_10_x4;

// Philox4x32-10 on blocks block .. block + 4 G ngroups - 1 of `stream`, G x 4 counters at a time; emit(c)
// receives each vector of 4 blocks (words r0..r3 of block l zero-extended in 64-bit lane l of c[0..3]),
// in block order.
template <int G, class Emit>
inline void philox_blocks_avx2(std::uint64_t key, std::uint64_t stream, std::uint64_t block,
                               std::size_t ngroups, Emit&& emit) {
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
        for (int g = 0; g < G; ++g) emit(c[g]);
    }
}

// Pairs block .. block + 4 G ngroups - 1, interleaved z0, z1 into out[0 .. 8 G ngroups).
template <int G>
inline void philox_normal_pairs_avx2(std::uint64_t key, std::uint64_t stream, std::uint64_t block,
                                     double* out, std::size_t ngroups) {
    philox_blocks_avx2<G>(key, stream, block, ngroups, [&out](const __m256i* c) {
        f64x4 z0, z1;
        box_muller<f64x4, u64x4>(u64x4(c[0]), u64x4(c[1]), u64x4(c[2]), u64x4(c[3]), z0, z1);
        const __m256d lo = _mm256_unpacklo_pd(z0, z1), hi = _mm256_unpackhi_pd(z0, z1);  // a0 b0 a2 b2
        _mm256_storeu_pd(out, _mm256_permute2f128_pd(lo, hi, 0x20));
        _mm256_storeu_pd(out + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
        out += 8;
    });
}

// Float normals 4 block .. 4 (block + 4 G ngroups) - 1 into out[0 .. 16 G ngroups).
template <int G>
inline void philox_normals_f32_avx2(std::uint64_t key, std::uint64_t stream, std::uint64_t block, float* out,
                                    std::size_t ngroups) {
    philox_blocks_avx2<G>(key, stream, block, ngroups, [&out](const __m256i* c) {
        // 32-bit lanes 2 l, 2 l + 1 = pairs 0, 1 of block l: (r0, r1) and (r2, r3). The words are
        // zero-extended in their 64-bit lanes, so word 2 or 3 shifted up fills the high half.
        const __m256i w1 = _mm256_or_si256(c[0], _mm256_slli_epi64(c[2], 32));
        const __m256i w2 = _mm256_or_si256(c[1], _mm256_slli_epi64(c[3], 32));
        f32x8 z0, z1;
        box_muller_f32<f32x8, u32x8>(u32x8(w1), u32x8(w2), z0, z1);
        // Pair k (lane k) gives normals 2 k, 2 k + 1: interleave.
        const __m256 lo = _mm256_unpacklo_ps(z0, z1), hi = _mm256_unpackhi_ps(z0, z1);  // pairs 0 1 4 5
        _mm256_storeu_ps(out, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        out += 16;
    });
}
#endif

}  // namespace normal_detail

// The pair of normals number `block` of `stream` under `key` (normals 2 block and 2 block + 1).
inline NormalPair philox_normal_pair(std::uint64_t key, std::uint64_t stream, std::uint64_t block) {
    const r123::Philox4x32::ctr_type r = normal_detail::philox_block(key, stream, block);
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

struct NormalQuadF32 {
    float z[4];
};

// Float normals 4 block .. 4 block + 3 of `stream` under `key`: one Philox call, two Box-Muller pairs.
inline NormalQuadF32 philox_normal_quad_f32(std::uint64_t key, std::uint64_t stream, std::uint64_t block) {
    const r123::Philox4x32::ctr_type r = normal_detail::philox_block(key, stream, block);
    NormalQuadF32 out;
    normal_detail::box_muller_f32<float, std::uint32_t>(r[0], r[1], out.z[0], out.z[1]);
    normal_detail::box_muller_f32<float, std::uint32_t>(r[2], r[3], out.z[2], out.z[3]);
    return out;
}

// Float normal number `index` of `stream` under `key` (a different sequence from philox_normal's).
inline float philox_normal_f32(std::uint64_t key, std::uint64_t stream, std::uint64_t index) {
    return philox_normal_quad_f32(key, stream, index / 4).z[index % 4];
}

// out[j] = philox_normal_f32(key, stream, first + j) for j < n, bit for bit; four normals per Philox call,
// 32 at a time with AVX2 (a partial first block, and the < 32 left over, go through the scalar kernel).
inline void philox_normals_f32(std::uint64_t key, std::uint64_t stream, std::uint64_t first, float* out,
                               std::size_t n) {
    std::size_t j = 0;
    std::uint64_t block = first / 4;
    if (n == 0) return;
    if (first % 4 != 0) {  // start inside a block
        const NormalQuadF32 q = philox_normal_quad_f32(key, stream, block++);
        for (auto i = static_cast<unsigned>(first % 4); i < 4 && j < n; ++i) out[j++] = q.z[i];
    }
#if SDEUQ_RANDOM_NORMAL_AVX2
    constexpr int G = 2;  // 2 x 4 counters in flight; G = 1, 2, 4 measured within noise (1.7-2.2 ns)
    const std::size_t groups = (n - j) / (16 * G);
    normal_detail::philox_normals_f32_avx2<G>(key, stream, block, out + j, groups);
    j += 16 * G * groups;
    block += 4 * G * groups;
#endif
    for (; j + 3 < n; j += 4, ++block) {
        const NormalQuadF32 q = philox_normal_quad_f32(key, stream, block);
        for (int i = 0; i < 4; ++i) out[j + i] = q.z[i];
    }
    if (j < n) {
        const NormalQuadF32 q = philox_normal_quad_f32(key, stream, block);
        for (int i = 0; j < n; ++i) out[j++] = q.z[i];
    }
}

}  // namespace sdeuq::sde
