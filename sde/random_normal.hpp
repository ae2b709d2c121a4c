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
// (Random123's implementation). One Philox call gives 128 bits = two 53-bit uniforms u1 in (0, 1] and
// u2 in [0, 1), turned into two independent N(0, 1) by Box-Muller (Box & Muller 1958):
//   z0 = sqrt(-2 ln u1) cos(2 pi u2),  z1 = sqrt(-2 ln u1) sin(2 pi u2).
// u1 > 0 so the log is finite; the largest |z| is sqrt(2 * 53 ln 2) ~= 8.57. The algorithm is fixed here
// (std::normal_distribution differs between standard libraries); results are bitwise reproducible for a
// given libm (log, sin, cos are not required by IEEE to be correctly rounded, so another libm may differ
// in the last bit).
#pragma once

#include <Random123/philox.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>

namespace sdeuq::sde {

struct NormalPair {
    double z0, z1;
};

// 53 random bits -> (0, 1]: (k + 1) 2^-53 for k in [0, 2^53).
inline double philox_u01_open_closed(std::uint64_t bits) {
    return static_cast<double>((bits >> 11) + 1) * 0x1p-53;
}

// 53 random bits -> [0, 1): k 2^-53.
inline double philox_u01_closed_open(std::uint64_t bits) {
    return static_cast<double>(bits >> 11) * 0x1p-53;
}

// The pair of normals number `block` of `stream` under `key` (normals 2 block and 2 block + 1).
inline NormalPair philox_normal_pair(std::uint64_t key, std::uint64_t stream, std::uint64_t block) {
    using Philox = r123::Philox4x32;  // 10 rounds
    Philox gen;
    Philox::ctr_type c = {{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                           static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)}};
    Philox::key_type k = {{static_cast<std::uint32_t>(key), static_cast<std::uint32_t>(key >> 32)}};
    const Philox::ctr_type r = gen(c, k);
    const std::uint64_t b1 = (static_cast<std::uint64_t>(r[0]) << 32) | r[1];
    const std::uint64_t b2 = (static_cast<std::uint64_t>(r[2]) << 32) | r[3];
    const double radius = std::sqrt(-2.0 * std::log(philox_u01_open_closed(b1)));
    const double theta = 2.0 * std::numbers::pi * philox_u01_closed_open(b2);
    return {radius * std::cos(theta), radius * std::sin(theta)};
}

// Normal number `index` of `stream` under `key`.
inline double philox_normal(std::uint64_t key, std::uint64_t stream, std::uint64_t index) {
    const NormalPair p = philox_normal_pair(key, stream, index / 2);
    return (index % 2 == 0) ? p.z0 : p.z1;
}

// out[j] = philox_normal(key, stream, first + j) for j < n, two normals per Philox call.
inline void philox_normals(std::uint64_t key, std::uint64_t stream, std::uint64_t first, double* out,
                           std::size_t n) {
    std::size_t j = 0;
    if (n == 0) return;
    if (first % 2 == 1) {  // odd start: the second half of a pair
        out[j++] = philox_normal_pair(key, stream, first / 2).z1;
    }
    std::uint64_t block = (first + j) / 2;
    for (; j + 1 < n; j += 2, ++block) {
        const NormalPair p = philox_normal_pair(key, stream, block);
        out[j] = p.z0;
        out[j + 1] = p.z1;
    }
    if (j < n) out[j] = philox_normal_pair(key, stream, block).z0;
}

}  // namespace sdeuq::sde
