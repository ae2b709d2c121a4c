// Seeded random streams: every random tensor is reproducible from (seed, stream id).
//
// Generator is Random123's Philox4x32-10 counter-based generator keyed by the 64-bit seed, with the
// 64-bit stream id in the upper half of the counter, so streams are independent and can be created in
// any order. It is a standard uniform random bit generator, so Boost.Random distributions (whose
// algorithms, unlike std::'s, are fixed across platforms) draw from it.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>

#include "autodiff/parallel.hpp"
#include "autodiff/tensor.hpp"

namespace sdeuq {

class Generator {
public:
    using result_type = std::uint32_t;
    Generator(std::uint64_t seed = 0, std::uint64_t stream = 0);
    static constexpr result_type min() { return 0; }
    static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }
    result_type operator()() {
        if (pos_ == 4) refill();
        return buf_[pos_++];
    }
    std::uint64_t seed() const { return seed_; }
    std::uint64_t stream() const { return stream_; }
    // A derived, independent generator (same seed, stream hashed with `child`).
    Generator fork(std::uint64_t child) const;

    double uniform();         // [0, 1), 53 random bits
    // The next n 32-bit outputs, as n calls of operator() would give them (block-wise, without the
    // per-value call overhead).
    void fill_u32(std::uint32_t* out, std::int64_t n);
    // The next n words (as fill_u32 stores them), handed out in chunks: fn(i0, words, count) receives
    // outputs i0 .. i0 + count - 1. Whole blocks are generated in L1-sized chunks, split over the kernel
    // threads (so fn may run concurrently on disjoint ranges and must only touch its own positions).
    template <class F>
    void for_u32_chunks(std::int64_t n, F&& fn);
    // The 4 * count words of blocks first .. first + count - 1 (block b gives outputs 4 b .. 4 b + 3 of the
    // stream); a pure function of the arguments, whatever the generator's position.
    void blocks_u32(std::uint64_t first, std::int64_t count, std::uint32_t* out) const;
    // Threshold t such that (u32 < t) has probability p (to 2^-32).
    static std::uint64_t u32_threshold(double p);
    double normal();          // N(0, 1), Boost.Random's ziggurat

private:
    void refill();
    std::uint64_t seed_, stream_, block_ = 0;
    std::array<result_type, 4> buf_{};
    int pos_ = 4;
};

template <class F>
void Generator::for_u32_chunks(std::int64_t n, F&& fn) {
    std::int64_t i = 0;
    std::uint32_t edge[4];
    int ne = 0;
    while (i < n && pos_ < 4) edge[ne++] = buf_[static_cast<std::size_t>(pos_++)], ++i;
    if (ne > 0) fn(std::int64_t(0), static_cast<const std::uint32_t*>(edge), std::int64_t(ne));
    const std::int64_t blocks = (n - i) / 4, base = i;
    const std::uint64_t first = block_;
    constexpr std::int64_t chunk = 256;  // blocks per chunk: 4 KiB of words
    parallel_for(0, blocks, 8, 2048, [&](std::int64_t lo, std::int64_t hi) {
        alignas(64) std::uint32_t words[4 * chunk];
        for (std::int64_t b = lo; b < hi; b += chunk) {
            const std::int64_t count = std::min(chunk, hi - b);
            blocks_u32(first + static_cast<std::uint64_t>(b), count, words);
            fn(base + 4 * b, static_cast<const std::uint32_t*>(words), 4 * count);
        }
    });
    block_ += static_cast<std::uint64_t>(blocks);
    i += 4 * blocks;
    const std::int64_t tail = i;
    ne = 0;
    while (i < n) edge[ne++] = (*this)(), ++i;
    if (ne > 0) fn(tail, static_cast<const std::uint32_t*>(edge), std::int64_t(ne));
}

// Heap tensors filled from gen.
Tensor randn(const Shape& s, Generator& gen, DType dt = DType::f32, double mean = 0.0, double stddev = 1.0);
Tensor rand_uniform(const Shape& s, Generator& gen, DType dt = DType::f32, double lo = 0.0, double hi = 1.0);
// 1 with probability keep, else 0.
Tensor bernoulli(const Shape& s, double keep, Generator& gen, DType dt = DType::f32);

}  // namespace sdeuq
