// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11), on
// 4 counters at once with AVX2, one counter per 64-bit lane. Gives the same words as Random123's
// r123::Philox4x32 (the scalar reference, used by Generator and for the tails of the bulk paths).
//
// Round r (r = 0..9) with key (k0 + r W0, k1 + r W1):
//   (hi0, lo0) = M0 c0,  (hi1, lo1) = M1 c2,  c <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0).
#pragma once

#include <cstdint>

#if defined(SDEUQ_SIMD) && SDEUQ_SIMD && defined(__AVX2__) && defined(__FMA__)
#define SDEUQ_PHILOX_AVX2 1
#include <immintrin.h>
#else
#define SDEUQ_PHILOX_AVX2 0
#endif

namespace sdeuq::philox {

#if SDEUQ_PHILOX_AVX2
// The ten round keys in every lane.
struct Keys4 {
    __m256i k0[10], k1[10];
    explicit Keys4(std::uint64_t key) {
        auto a = static_cast<std::uint32_t>(key), b = static_cast<std::uint32_t>(key >> 32);
        for (int r = 0; r < 10; ++r, a += 0x9E3779B9u, b += 0xBB67AE85u) {
            k0[r] = _mm256_set1_epi64x(a);
            k1[r] = _mm256_set1_epi64x(b);
        }
    }
};

// G independent sets of 4 counters, interleaved so that the multiply latency of one set hides behind the
// others: c[g] = {c0, c1, c2, c3} of set g (the 32-bit word in the low half of each 64-bit lane),
// replaced by the Philox output words (zero-extended). _mm256_mul_epu32 reads only the low halves, so the
// high halves may hold garbage between rounds; they are masked at the end.
template <int G>
inline void philox4x32_10_x4(__m256i (&c)[G][4], const Keys4& k) {
    const __m256i m0 = _mm256_set1_epi64x(0xD2511F53), m1 = _mm256_set1_epi64x(0xCD9E8D57);
#pragma GCC unroll 10
    for (int r = 0; r < 10; ++r) {
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g) {
            const __m256i p0 = _mm256_mul_epu32(c[g][0], m0);  // hi0:lo0
            const __m256i p1 = _mm256_mul_epu32(c[g][2], m1);  // hi1:lo1
            c[g][0] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c[g][1]), k.k0[r]);
            c[g][2] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c[g][3]), k.k1[r]);
            c[g][1] = p1;
            c[g][3] = p0;
        }
    }
    const __m256i low = _mm256_set1_epi64x(0xffffffffll);
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) c[g][i] = _mm256_and_si256(c[g][i], low);
    }
}

// Counters of 4 G consecutive blocks from blk (lane b of group g: block blk + 4 g + b) of the stream
// (s_lo, s_hi); returns the block after them.
template <int G>
inline __m256i philox_counters(__m256i (&c)[G][4], __m256i blk, __m256i s_lo, __m256i s_hi,
                               __m256i four) {
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
        c[g][0] = blk;  // lo32(block): _mm256_mul_epu32 ignores the high half
        c[g][1] = _mm256_srli_epi64(blk, 32);
        c[g][2] = s_lo;
        c[g][3] = s_hi;
        blk = _mm256_add_epi64(blk, four);
    }
    return blk;
}

// The 4 G output blocks block .. block + 4 G - 1 of `stream` (counter {lo32(block), hi32(block),
// lo32(stream), hi32(stream)}), in block order, 4 words each: out[0 .. 16 G).
template <int G>
inline void philox4x32_10_blocks(const Keys4& keys, std::uint64_t stream, std::uint64_t block,
                                 std::uint32_t* out) {
    const __m256i s_lo = _mm256_set1_epi64x(static_cast<long long>(stream & 0xffffffffu));
    const __m256i s_hi = _mm256_set1_epi64x(static_cast<long long>(stream >> 32));
    __m256i blk = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(block)), _mm256_setr_epi64x(0, 1, 2, 3));
    const __m256i four = _mm256_set1_epi64x(4);
    __m256i c[G][4];
    blk = philox_counters<G>(c, blk, s_lo, s_hi, four);
    philox4x32_10_x4<G>(c, keys);
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
        // Lane b of w01 = words 0, 1 of block b; of w23 = words 2, 3.
        const __m256i w01 = _mm256_or_si256(c[g][0], _mm256_slli_epi64(c[g][1], 32));
        const __m256i w23 = _mm256_or_si256(c[g][2], _mm256_slli_epi64(c[g][3], 32));
        const __m256i lo = _mm256_unpacklo_epi64(w01, w23);  // blocks 0, 2
        const __m256i hi = _mm256_unpackhi_epi64(w01, w23);  // blocks 1, 3
        auto* o = reinterpret_cast<__m256i*>(out + 16 * g);
        _mm256_storeu_si256(o, _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(lo, hi, 0x31));
    }
}
#endif

}  // namespace sdeuq::philox
