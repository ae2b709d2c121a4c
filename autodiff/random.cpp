#include "autodiff/random.hpp"

#include <cstring>

#include <Random123/philox.h>
#include <boost/random/normal_distribution.hpp>
#include <vector>

#include "autodiff/parallel.hpp"
#include "autodiff/philox.hpp"

namespace sdeuq {

namespace {
std::uint64_t splitmix64(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
}  // namespace

Generator::Generator(std::uint64_t seed, std::uint64_t stream) : seed_(seed), stream_(stream) {}

Generator Generator::fork(std::uint64_t child) const { return Generator(seed_, splitmix64(stream_ ^ splitmix64(child + 1))); }

void Generator::refill() {
    r123::Philox4x32 rng;
    r123::Philox4x32::ctr_type c = {{static_cast<std::uint32_t>(block_), static_cast<std::uint32_t>(block_ >> 32),
                                     static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)}};
    r123::Philox4x32::key_type k = {{static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)}};
    auto r = rng(c, k);
    for (int i = 0; i < 4; ++i) buf_[static_cast<std::size_t>(i)] = r[static_cast<std::size_t>(i)];
    ++block_;
    pos_ = 0;
}

double Generator::uniform() {
    std::uint64_t hi = (*this)() >> 5, lo = (*this)() >> 6;  // 27 + 26 = 53 bits
    return (static_cast<double>(hi) * 67108864.0 + static_cast<double>(lo)) * (1.0 / 9007199254740992.0);
}

void Generator::blocks_u32(std::uint64_t first, std::int64_t count, std::uint32_t* out) const {
    std::int64_t b = 0;
#if SDEUQ_PHILOX_AVX2
    constexpr int G = 2;  // 8 blocks (32 words) per call, the same words as the scalar loop below
    if (count >= 4 * G) {
        const philox::Keys4 keys(seed_);
        for (; b + 4 * G <= count; b += 4 * G) philox::philox4x32_10_blocks<G>(keys, stream_, first + b, out + 4 * b);
    }
#endif
    r123::Philox4x32 rng;
    r123::Philox4x32::key_type k = {{static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)}};
    r123::Philox4x32::ctr_type c = {{0, 0, static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)}};
    for (; b < count; ++b) {
        c[0] = static_cast<std::uint32_t>(first + b);
        c[1] = static_cast<std::uint32_t>((first + b) >> 32);
        auto r = rng(c, k);
        for (int i = 0; i < 4; ++i) out[4 * b + i] = r[static_cast<std::size_t>(i)];
    }
}

void Generator::fill_u32(std::uint32_t* out, std::int64_t n) {
    for_u32_chunks(n, [out](std::int64_t i0, const std::uint32_t* words, std::int64_t count) {
        std::memcpy(out + i0, words, static_cast<std::size_t>(count) * sizeof(std::uint32_t));
    });
}

std::uint64_t Generator::u32_threshold(double p) {
    if (!(p > 0)) return 0;
    if (p >= 1) return std::uint64_t(1) << 32;
    return static_cast<std::uint64_t>(p * 4294967296.0);
}

double Generator::normal() {
    boost::random::normal_distribution<double> d(0.0, 1.0);
    return d(*this);
}

Tensor randn(const Shape& s, Generator& gen, DType dt, double mean, double stddev) {
    Tensor t = Tensor::empty(s, dt);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, mean + stddev * gen.normal());
    return t;
}

Tensor rand_uniform(const Shape& s, Generator& gen, DType dt, double lo, double hi) {
    Tensor t = Tensor::empty(s, dt);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, lo + (hi - lo) * gen.uniform());
    return t;
}

Tensor bernoulli(const Shape& s, double keep, Generator& gen, DType dt) {
    Tensor t = Tensor::empty(s, dt);
    std::vector<std::uint32_t> u(static_cast<std::size_t>(t.numel()));
    gen.fill_u32(u.data(), t.numel());
    const std::uint64_t th = Generator::u32_threshold(keep);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, u[static_cast<std::size_t>(i)] < th ? 1.0 : 0.0);
    return t;
}

}  // namespace sdeuq
