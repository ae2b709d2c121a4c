// Tests of sde/brownian.hpp: distribution (Kolmogorov-Smirnov, moments, independence), consistency
// under refinement, order independence, per-coordinate determinism, Levy area, errors, cost counters; the
// structural and distribution tests run for both normal generators (GENERATE over Options::float_normals).
// And of sde/random_normal.hpp's double and float generators: bulk == scalar bit for bit, accuracy
// against the exact Box-Muller transform of the same uniforms, distribution.
#include <catch2/catch.hpp>

#include <Random123/philox.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sde/brownian.hpp"
#include "sde/random_normal.hpp"

using sdeuq::sde::BrownianOptions;
using sdeuq::sde::BrownianPath;

namespace {

using Vec = std::vector<double>;

// Kolmogorov-Smirnov statistic of the sample against N(0, 1): sup_x |F_n(x) - Phi(x)|.
double ks_normal(Vec x) {
    std::sort(x.begin(), x.end());
    const double n = static_cast<double>(x.size());
    double d = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double f = 0.5 * std::erfc(-x[i] / std::sqrt(2.0));
        d = std::max({d, f - static_cast<double>(i) / n, static_cast<double>(i + 1) / n - f});
    }
    return d;
}

// 1% critical value of the KS statistic for large n (Smirnov's asymptotic 1.628 / sqrt(n)).
double ks_critical(std::size_t n) { return 1.63 / std::sqrt(static_cast<double>(n)); }

double mean(const Vec& x) { return std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size()); }

double cov(const Vec& x, const Vec& y) {
    const double mx = mean(x), my = mean(y);
    double s = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) s += (x[i] - mx) * (y[i] - my);
    return s / static_cast<double>(x.size() - 1);
}

double corr(const Vec& x, const Vec& y) { return cov(x, y) / std::sqrt(cov(x, x) * cov(y, y)); }

Vec scaled(Vec x, double f) {
    for (double& v : x) v *= f;
    return x;
}

Vec inc(const BrownianPath& bm, double s, double t) {
    Vec d(static_cast<std::size_t>(bm.size()));
    bm.increment(s, t, d);
    return d;
}

bool bitwise_equal(const Vec& a, const Vec& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

// A bulk normal generator bulk(key, stream, first, out, n) against its single-value twin single(key,
// stream, j), bit for bit: random keys, streams, starts and lengths, whole and in random chunks (mostly
// short: every tail case). The first `offset_trials` trials start at 0, 1, 2, ... (every offset within a
// block); every `short_every`-th trial (0: none) is shorter than 40, possibly empty. Then `wrap_n` values
// from `wrap_first`, where the counter's low word wraps inside a vector group.
struct BulkCheck {
    std::uint64_t seed;
    int trials, offset_trials, short_every;
    std::size_t short_chunk, long_chunk;
    std::uint64_t wrap_first;
    std::size_t wrap_n;
};
template <class T, class Single, class Bulk>
void check_bulk_equals_single(const BulkCheck& c, Single single_fn, Bulk bulk_fn) {
    using V = std::vector<T>;
    const auto same = [](const V& x, const V& y) {
        return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(T)) == 0;
    };
    std::mt19937_64 rng(c.seed);
    for (int trial = 0; trial < c.trials; ++trial) {
        const std::uint64_t key = rng(), stream = rng() >> (rng() % 64);
        std::uint64_t first = rng() >> (rng() % 64);
        if (trial < c.offset_trials) first = static_cast<std::uint64_t>(trial);
        if (first > ~std::uint64_t{0} - 4096) first -= 4096;  // first + n must not wrap
        const std::size_t n = c.short_every && trial % c.short_every == 0 ? rng() % 40 : 1 + rng() % 3000;
        V single(n);
        for (std::size_t j = 0; j < n; ++j) single[j] = single_fn(key, stream, first + j);
        V whole(n);
        bulk_fn(key, stream, first, whole.data(), n);
        INFO("trial " << trial << " first " << first << " n " << n);
        REQUIRE(same(whole, single));
        V chunked(n, T(0));
        for (std::size_t j = 0; j < n;) {
            const std::size_t cap = rng() % 2 ? rng() % c.short_chunk : rng() % c.long_chunk;
            const std::size_t len = std::min<std::size_t>(n - j, cap);
            bulk_fn(key, stream, first + j, chunked.data() + j, len);
            j += len;
        }
        REQUIRE(same(chunked, single));
    }
    V bulk(c.wrap_n);
    bulk_fn(3, 5, c.wrap_first, bulk.data(), bulk.size());
    for (std::size_t j = 0; j < bulk.size(); ++j) {
        const T v = single_fn(3, 5, c.wrap_first + j);
        REQUIRE(std::memcmp(&v, &bulk[j], sizeof v) == 0);
    }
}

BrownianOptions opts(double dt_hint, bool levy = false, bool float_normals = false) {
    BrownianOptions o;
    o.dt_hint = dt_hint;
    o.levy_area = levy;
    o.float_normals = float_normals;
    return o;
}

// The structural and distribution tests run for both generators (a different sample, the same law).
#define FOR_BOTH_GENERATORS                                    \
    const bool f32 = GENERATE(false, true);                    \
    INFO("float_normals " << f32)

constexpr std::int64_t kSamples = 20000;
constexpr double kCorrTol = 0.035;  // ~5 standard deviations (1 / sqrt(20000) = 0.0071) of a null correlation

}  // namespace

TEST_CASE("random_normal: index addressing and moments", "[brownian]") {
    using namespace sdeuq::sde;
    Vec a(1001), b(1000);
    philox_normals(7, 3, 0, a.data(), a.size());
    philox_normals(7, 3, 1, b.data(), b.size());  // odd start: same numbers shifted by one
    for (std::size_t i = 0; i < b.size(); ++i) REQUIRE(b[i] == a[i + 1]);
    for (std::size_t i = 0; i < a.size(); i += 97) REQUIRE(philox_normal(7, 3, i) == a[i]);
    Vec z(200000);
    philox_normals(11, 0, 0, z.data(), z.size());
    CHECK(std::abs(mean(z)) < 0.015);
    CHECK(std::abs(cov(z, z) - 1.0) < 0.015);
    CHECK(ks_normal(z) < ks_critical(z.size()));
}

TEST_CASE("random_normal: bulk path == single-value path bit for bit, for any chunking", "[brownian]") {
    // The bulk path runs the vector kernel on groups of 16 and the scalar kernel on the rest; normal j
    // must depend on (key, stream, j) only, whatever chunk it falls in.
    using namespace sdeuq::sde;
    check_bulk_equals_single<double>({2024, 40, 0, 0, 20, 200, (std::uint64_t{1} << 33) - 21, 64},
                                     philox_normal, philox_normals);
    // Unchanged uniforms: normal 0 of stream 0 under key 0, same as the libm version to ~1e-15.
    const double z0 = philox_normal(0, 0, 0), z1 = philox_normal(0, 0, 1);
    {
        r123::Philox4x32 gen;
        const r123::Philox4x32::ctr_type r = gen({{0, 0, 0, 0}}, {{0, 0}});
        const double u1 = philox_u01_open_closed((std::uint64_t{r[0]} << 32) | r[1]);
        const double u2 = philox_u01_closed_open((std::uint64_t{r[2]} << 32) | r[3]);
        const double rad = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * 3.14159265358979323846 * u2;
        CHECK(std::abs(z0 - rad * std::cos(th)) <= 1e-13 * std::abs(rad));
        CHECK(std::abs(z1 - rad * std::sin(th)) <= 1e-13 * std::abs(rad));
    }
}

namespace {

// Box-Muller of the uniforms of the four Philox words, in long double (64-bit mantissa) from libm's
// logl/sinl/cosl: the reference for the double kernel. The angle is reduced in quarter turns exactly
// (4 u2 = q + r), which is the same number as cos(2 pi u2) but keeps relative accuracy next to zeros.
sdeuq::sde::NormalPair box_muller_reference(std::uint32_t r0, std::uint32_t r1, std::uint32_t r2,
                                            std::uint32_t r3) {
    const std::uint64_t k1 = ((std::uint64_t{r0} << 32) | r1) >> 11;
    const std::uint64_t k2 = ((std::uint64_t{r2} << 32) | r3) >> 11;
    const long double u1 = static_cast<long double>(k1 + 1) * 0x1p-53L;
    const long double t = static_cast<long double>(k2) * 0x1p-51L;  // 4 u2, exact
    const long double q = std::nearbyint(t), x = (t - q) * 1.570796326794896619231321691639751442L;
    const long double c = std::cos(x), s = std::sin(x);
    long double cq = c, sq = s;
    switch (static_cast<int>(q) & 3) {
        case 1: cq = -s; sq = c; break;
        case 2: cq = -c; sq = -s; break;
        case 3: cq = s; sq = -c; break;
        default: break;
    }
    const long double radius = std::sqrt(-2.0L * std::log(u1));
    return {static_cast<double>(radius * cq), static_cast<double>(radius * sq)};  // rounded once
}

}  // namespace

TEST_CASE("random_normal: within 1e-12 relative of the exact Box-Muller transform", "[brownian]") {
    using namespace sdeuq::sde;
    double worst = 0.0;
    const auto check = [&](std::uint32_t r0, std::uint32_t r1, std::uint32_t r2, std::uint32_t r3) {
        const NormalPair e = box_muller_reference(r0, r1, r2, r3);
        NormalPair z{};
        normal_detail::box_muller<double, std::uint64_t>(r0, r1, r2, r3, z.z0, z.z1);
        for (const auto& [got, want] : {std::pair{z.z0, e.z0}, std::pair{z.z1, e.z1}}) {
            // Relative to the value; an exact zero of the reference (u1 = 1, or the angle a multiple of
            // pi/2) must be reproduced exactly. The rounding of the reference to double counts 2^-53.
            const double err = std::abs(got - want);
            INFO("words " << r0 << " " << r1 << " " << r2 << " " << r3 << ": " << got << " vs " << want);
            if (want == 0.0) {
                REQUIRE(got == 0.0);
            } else {
                REQUIRE(err <= 1e-12 * std::abs(want));
                worst = std::max(worst, err / std::abs(want));
            }
        }
    };
    // Philox outputs, as the generator produces them.
    r123::Philox4x32 gen;
    for (std::uint32_t i = 0; i < 200000; ++i) {
        const r123::Philox4x32::ctr_type r = gen({{i, 0, 17, 0}}, {{12345, 678}});
        check(r[0], r[1], r[2], r[3]);
    }
    // Edges: u1 = 1 (radius 0), u1 = 2^-53 (largest radius), u1 next to 1 (tiny ln u1); angles on and
    // next to multiples of pi/4, where cos or sin vanish or the quadrant changes, and u2 next to 1.
    const std::uint32_t m = 0xffffffffu;
    const std::uint32_t u1_words[][2] = {{m, m},           {0, 0},           {m, m - (1u << 11)},
                                         {m, m - (1u << 20)}, {1u << 31, 0}, {0x12345678u, 0x9abcdef0u}};
    const std::uint32_t u2_words[][2] = {
        {0, 0},          {0, 1u << 11},        {1u << 30, 0},       {(1u << 30) - 1, m},  // 0, 1/4
        {1u << 30, 1u << 11}, {1u << 29, 0},   {1u << 31, 0},       {(1u << 31) - 1, m},  // 1/8, 1/2
        {3u << 30, 0},   {(3u << 30) + 1, 0},  {m, m},              {7u << 29, 0}};       // 3/4, -> 1, 7/8
    for (const auto& a : u1_words) {
        for (const auto& b : u2_words) check(a[0], a[1], b[0], b[1]);
    }
    INFO("worst relative error " << worst);
    CHECK(worst < 1e-14);  // the kernels are good to a few ulp; 1e-12 is the contract
}

TEST_CASE("random_normal_f32: index addressing, moments, KS, blocks", "[brownian]") {
    using namespace sdeuq::sde;
    std::vector<float> a(1003), b(1000);
    philox_normals_f32(7, 3, 0, a.data(), a.size());
    philox_normals_f32(7, 3, 3, b.data(), b.size());  // start inside a block: the same numbers shifted
    for (std::size_t i = 0; i < b.size(); ++i) REQUIRE(b[i] == a[i + 3]);
    for (std::size_t i = 0; i < a.size(); i += 97) REQUIRE(philox_normal_f32(7, 3, i) == a[i]);
    std::vector<float> zf(200000);
    philox_normals_f32(11, 0, 0, zf.data(), zf.size());
    const Vec z(zf.begin(), zf.end());
    CHECK(std::abs(mean(z)) < 0.015);
    CHECK(std::abs(cov(z, z) - 1.0) < 0.015);
    CHECK(ks_normal(z) < ks_critical(z.size()));
    // The largest |z| the 24-bit uniforms allow: sqrt(-2 ln 2^-24) (u1 = 2^-24).
    const double zmax = std::sqrt(48.0 * std::log(2.0));
    for (double v : z) REQUIRE(std::abs(v) <= zmax * (1.0 + 1e-6));
    // The four normals of one Philox call (two Box-Muller pairs) and the normals of neighbouring calls
    // are uncorrelated; so are z^2 of the two members of a pair (a cheap check of the radius sharing).
    Vec part[4], sq0, sq1;
    for (std::size_t i = 0; i + 3 < z.size(); i += 4) {
        for (int j = 0; j < 4; ++j) part[j].push_back(z[i + static_cast<std::size_t>(j)]);
        sq0.push_back(z[i] * z[i]);
        sq1.push_back(z[i + 1] * z[i + 1]);
    }
    for (int j = 0; j < 4; ++j) {
        for (int k = j + 1; k < 4; ++k) CHECK(std::abs(corr(part[j], part[k])) < kCorrTol);
    }
    CHECK(std::abs(corr(sq0, sq1)) < kCorrTol);
    const Vec next(part[0].begin() + 1, part[0].end()), prev(part[3].begin(), part[3].end() - 1);
    CHECK(std::abs(corr(next, prev)) < kCorrTol);
    // A different sequence from the double generator's.
    CHECK(static_cast<double>(philox_normal_f32(11, 0, 0)) != philox_normal(11, 0, 0));
}

TEST_CASE("random_normal_f32: bulk path (AVX2) == single-value path bit for bit, any offset and length",
          "[brownian]") {
    // The bulk path runs the vector kernel on groups of 32 normals (8 Philox blocks) and the scalar kernel
    // on a partial first block and the rest; normal j must depend on (key, stream, j) only.
    using namespace sdeuq::sde;
    check_bulk_equals_single<float>({2025, 60, 8, 5, 40, 300, (std::uint64_t{1} << 34) - 37, 128},
                                    philox_normal_f32, philox_normals_f32);
}

namespace {

// Box-Muller of the 24-bit uniforms of two Philox words in double (libm's log, sin, cos; the angle
// reduced exactly in quarter turns as in the kernel): the reference for the float kernel, good to ~1e-16.
std::pair<double, double> box_muller_f32_reference(std::uint32_t w1, std::uint32_t w2) {
    const double u1 = static_cast<double>((w1 >> 8) + 1) * 0x1p-24;
    const double t = static_cast<double>(w2 >> 8) * 0x1p-22;  // 4 u2, exact
    const double q = std::nearbyint(t), x = (t - q) * 1.57079632679489661923;
    const double c = std::cos(x), s = std::sin(x);
    double cq = c, sq = s;
    switch (static_cast<int>(q) & 3) {
        case 1: cq = -s; sq = c; break;
        case 2: cq = -c; sq = -s; break;
        case 3: cq = s; sq = -c; break;
        default: break;
    }
    const double radius = std::sqrt(-2.0 * std::log(u1));
    return {radius * cq, radius * sq};
}

}  // namespace

TEST_CASE("random_normal_f32: within a few float ulp of the exact Box-Muller transform", "[brownian]") {
    using namespace sdeuq::sde;
    double worst = 0.0, worst_ulp = 0.0;
    const auto check = [&](std::uint32_t w1, std::uint32_t w2) {
        const auto [e0, e1] = box_muller_f32_reference(w1, w2);
        float z0 = 0.0f, z1 = 0.0f;
        normal_detail::box_muller_f32<float, std::uint32_t>(w1, w2, z0, z1);
        for (const auto& [got, want] : {std::pair{z0, e0}, std::pair{z1, e1}}) {
            // An exact zero (u1 = 1, or the angle a multiple of pi/2) must be reproduced exactly; else
            // the error relative to the value and in float ulp of the value (the reference rounded to
            // float counts 1/2 ulp).
            INFO("words " << w1 << " " << w2 << ": " << got << " vs " << want);
            if (std::abs(want) < 1e-300) {
                REQUIRE(got == 0.0f);
                continue;
            }
            const double err = std::abs(static_cast<double>(got) - want);
            const auto fw = static_cast<float>(std::abs(want));
            const double ulp = static_cast<double>(std::nextafter(fw, INFINITY) - fw);
            REQUIRE(err <= 1e-6 * std::abs(want));
            worst = std::max(worst, err / std::abs(want));
            worst_ulp = std::max(worst_ulp, err / ulp);
        }
    };
    // Philox outputs, as the generator produces them.
    r123::Philox4x32 gen;
    for (std::uint32_t i = 0; i < 100000; ++i) {
        const r123::Philox4x32::ctr_type r = gen({{i, 0, 17, 0}}, {{12345, 678}});
        check(r[0], r[1]);
        check(r[2], r[3]);
    }
    // The radius and the angle depend on one word each: sweep each word's 2^24 uniforms with a stride
    // (an exhaustive sweep, run once by hand, found 0.98 ulp for the radius), the other word fixed.
    for (std::uint32_t k = 0; k < (1u << 24); k += 61) {
        check(k << 8, 0x12345600u);
        check(0x9abcde00u, k << 8);
    }
    // Edges: u1 = 1 (radius 0), u1 = 2^-24 (the largest radius), u1 next to 1 and 1/2; angles on and next
    // to multiples of pi/4, where cos or sin vanish or the quadrant changes, and u2 next to 1.
    const std::uint32_t u1_words[] = {0xffffffffu, 0xfffffeffu, 0xfffffdffu, 0, 0xffu, 0x7fffff00u,
                                      0x80000000u, 0x7ffffeffu, 0x12345678u};
    const std::uint32_t u2_words[] = {0,           1u << 8,          1u << 29,    1u << 30,
                                      (1u << 30) - 256, (1u << 30) + 256, 1u << 31, (1u << 31) - 256,
                                      3u << 30,    (3u << 30) + 256, 7u << 29,    0xffffffffu,
                                      0xffffff00u, 0xfffffe00u};  // 0, 1/8, 1/4, 1/2, 3/4, 7/8, -> 1
    for (std::uint32_t a : u1_words) {
        for (std::uint32_t b : u2_words) check(a, b);
    }
    // The largest |z|: sqrt(-2 ln 2^-24) = 5.768 at u1 = 2^-24, angle 0.
    float z0 = 0.0f, z1 = 0.0f;
    normal_detail::box_muller_f32<float, std::uint32_t>(0, 0, z0, z1);
    CHECK(std::abs(z0 - std::sqrt(48.0 * std::log(2.0))) < 1e-6);
    CHECK(z1 == 0.0f);
    INFO("worst relative error " << worst << ", " << worst_ulp << " float ulp");
    CHECK(worst_ulp < 3.0);  // measured 2.5 ulp over 2^25 random pairs; 1e-6 relative is the contract
}

TEST_CASE("brownian: float_normals draws the tree's normals with philox_normals_f32", "[brownian]") {
    // The root and the first split, written out: W(t1) = sqrt(T) z_i (stream 0), and W(T/2) =
    // W(t1)/2 + sqrt(T/4) z'_i with z' of stream = the split tick (the middle of nc 2^D ticks); with
    // Levy area, the root's (W, H) are normals 2i, 2i + 1. The default draws philox_normal (unchanged).
    using namespace sdeuq::sde;
    for (bool f32 : {false, true}) {
        INFO("float_normals " << f32);
        const auto normal = [&](std::uint64_t stream, std::uint64_t i) {
            return f32 ? static_cast<double>(philox_normal_f32(9, stream, i)) : philox_normal(9, stream, i);
        };
        const std::int64_t n = 37;
        const BrownianPath bm(0.0, 4.0, n, 9, opts(0.0, false, f32));
        const Vec w1 = inc(bm, 0.0, 4.0), wm = inc(bm, 0.0, 2.0);
        const std::uint64_t mid = std::uint64_t{1} << (bm.cell_depth() - 1);
        for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
            REQUIRE(w1[i] == 2.0 * normal(0, i));
            REQUIRE(wm[i] == 0.5 * w1[i] + 1.0 * normal(mid, i));
        }
        const BrownianPath lv(0.0, 4.0, n, 9, opts(0.0, true, f32));
        Vec w(static_cast<std::size_t>(n)), hh(w.size());
        lv.increment_levy(0.0, 4.0, w, hh);
        for (std::size_t i = 0; i < w.size(); ++i) {
            REQUIRE(w[i] == 2.0 * normal(0, 2 * i));
            // H comes back through J(t1) = 4 (W / 2 + H): exact up to round-off.
            REQUIRE(std::abs(hh[i] - std::sqrt(4.0 / 12.0) * normal(0, 2 * i + 1)) < 1e-14);
        }
    }
    // A different sample than the default (the same law: the tests above run for both).
    const BrownianPath a(0.0, 1.0, 8, 3, opts(0.01)), b(0.0, 1.0, 8, 3, opts(0.01, false, true));
    CHECK_FALSE(bitwise_equal(inc(a, 0.2, 0.3), inc(b, 0.2, 0.3)));
}

TEST_CASE("brownian: increments are N(0, h) (Kolmogorov-Smirnov)", "[brownian]") {
    struct Case {
        double dt_hint, s, t;
    };
    const std::vector<Case> cases = {
        {0.0, 0.0, 0x1p-7},      {0.0, 0.25, 0.25 + 0x1p-7}, {0.0, 0.3, 0.31},     // dyadic tree, off-grid
        {0.01, 0.0, 0.01},       {0.01, 0.37, 0.38},         {0.01, 0.99, 1.0},    // grid cells of 0.01
        {0.01, 0.123, 0.2345},   {0.01, 0.5051, 0.5079},     {0.01, 0.0, 1.0},     // not cell-aligned; all
        {0x1p-7, 0.5, 0.5 + 0x1p-7}, {0.03, 0.96, 1.0},                            // short last cell
    };
    FOR_BOTH_GENERATORS;
    std::uint64_t seed = 100;
    for (const auto& c : cases) {
        const BrownianPath bm(0.0, 1.0, kSamples, seed++, opts(c.dt_hint, false, f32));
        const double h = c.t - c.s;
        const Vec z = scaled(inc(bm, c.s, c.t), 1.0 / std::sqrt(h));
        INFO("dt_hint " << c.dt_hint << " [" << c.s << ", " << c.t << "]");
        CHECK(ks_normal(z) < ks_critical(z.size()));
        CHECK(std::abs(mean(z)) < 5.0 / std::sqrt(double(kSamples)));
        CHECK(std::abs(cov(z, z) - 1.0) < 0.05);  // Var dW = h (5 sigma of the sample variance)
    }
}

TEST_CASE("brownian: increments over disjoint intervals are independent", "[brownian]") {
    FOR_BOTH_GENERATORS;
    for (double dt_hint : {0.0, 0.01}) {
        const BrownianPath bm(0.0, 1.0, kSamples, 5, opts(dt_hint, false, f32));
        const double pts[] = {0.0, 0.01, 0.0137, 0.02, 0.5, 0.5 + 1e-4, 0.77, 1.0};
        std::vector<Vec> d;
        for (int i = 0; i + 1 < 8; ++i) d.push_back(inc(bm, pts[i], pts[i + 1]));
        for (std::size_t i = 0; i < d.size(); ++i) {
            const double h = pts[i + 1] - pts[i];
            CHECK(std::abs(cov(d[i], d[i]) / h - 1.0) < 0.05);
            for (std::size_t j = i + 1; j < d.size(); ++j) CHECK(std::abs(corr(d[i], d[j])) < kCorrTol);
        }
        // Coordinates are independent too: coordinates 2j and 2j + 1 share a Philox block (4j .. 4j + 3
        // with float normals).
        const Vec w = inc(bm, 0.0, 1.0);
        Vec even, odd;
        for (std::size_t i = 0; i + 1 < w.size(); i += 2) {
            even.push_back(w[i]);
            odd.push_back(w[i + 1]);
        }
        CHECK(std::abs(corr(even, odd)) < 1.5 * kCorrTol);
    }
}

TEST_CASE("brownian: W(a, c) = W(a, b) + W(b, c)", "[brownian]") {
    FOR_BOTH_GENERATORS;
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> unif(0.0, 2.0);
    for (double dt_hint : {0.0, 0.01, 0.3}) {
        for (bool levy : {false, true}) {
            const BrownianPath bm(0.0, 2.0, 64, 9, opts(dt_hint, levy, f32));
            for (int rep = 0; rep < 300; ++rep) {
                double p[3] = {unif(rng), unif(rng), unif(rng)};
                if (rep % 5 == 0) p[1] = p[0] + 1e-9 * (rep % 3);  // within one leaf
                if (rep % 7 == 0) p[2] = 0.01 * std::floor(p[2] * 100.0);  // grid point
                std::sort(p, p + 3);
                const Vec ac = inc(bm, p[0], p[2]), ab = inc(bm, p[0], p[1]), bc = inc(bm, p[1], p[2]);
                for (std::size_t i = 0; i < ac.size(); ++i) {
                    REQUIRE(std::abs(ac[i] - (ab[i] + bc[i])) < 1e-12);
                }
            }
        }
    }
}

TEST_CASE("brownian: values do not depend on the order of the queries", "[brownian]") {
    FOR_BOTH_GENERATORS;
    for (bool levy : {false, true}) {
        for (double dt_hint : {0.0, 0.01}) {
            const BrownianOptions o = opts(dt_hint, levy, f32);
            std::vector<std::pair<double, double>> q;
            for (int k = 0; k < 100; ++k) q.emplace_back(0.01 * k, 0.01 * (k + 1));  // solver grid
            std::mt19937_64 rng(3);
            std::uniform_real_distribution<double> unif(0.0, 1.0);
            for (int k = 0; k < 60; ++k) q.emplace_back(unif(rng), unif(rng));  // arbitrary (some s > t)
            const auto run = [&](const BrownianPath& bm, const std::vector<std::size_t>& order) {
                std::vector<Vec> out(q.size());
                for (std::size_t i : order) {
                    out[i] = Vec(static_cast<std::size_t>(bm.size()));
                    if (levy) {
                        Vec hh(out[i].size());
                        bm.increment_levy(q[i].first, q[i].second, out[i], hh);
                        out[i].insert(out[i].end(), hh.begin(), hh.end());
                    } else {
                        bm.increment(q[i].first, q[i].second, out[i]);
                    }
                }
                return out;
            };
            std::vector<std::size_t> fwd(q.size());
            std::iota(fwd.begin(), fwd.end(), 0);
            std::vector<std::size_t> rev(fwd.rbegin(), fwd.rend()), shuf = fwd;
            std::shuffle(shuf.begin(), shuf.end(), rng);
            const BrownianPath a(0.0, 1.0, 33, 42, o);
            const auto ref = run(a, fwd);
            const auto again = run(a, fwd);  // repeated queries on a warm cache
            const BrownianPath b(0.0, 1.0, 33, 42, o);
            const auto backward = run(b, rev);
            const BrownianPath c(0.0, 1.0, 33, 42, o);
            const auto shuffled = run(c, shuf);
            c.clear_cache();
            const auto cleared = run(c, rev);
            for (std::size_t i = 0; i < q.size(); ++i) {
                REQUIRE(bitwise_equal(ref[i], again[i]));
                REQUIRE(bitwise_equal(ref[i], backward[i]));
                REQUIRE(bitwise_equal(ref[i], shuffled[i]));
                REQUIRE(bitwise_equal(ref[i], cleared[i]));
            }
            // Reversed queries give the negative increment bit for bit (and the same H).
            const BrownianPath d(0.0, 1.0, 33, 42, o);
            for (std::size_t i = 0; i < q.size(); ++i) {
                Vec r(33), hr(33);
                if (levy) {
                    d.increment_levy(q[i].second, q[i].first, r, hr);
                } else {
                    d.increment(q[i].second, q[i].first, r);
                }
                for (std::size_t j = 0; j < 33; ++j) {
                    REQUIRE(r[j] == -ref[i][j]);
                    if (levy) REQUIRE(hr[j] == ref[i][33 + j]);
                }
            }
            // A different seed gives a different path.
            const BrownianPath e(0.0, 1.0, 33, 43, o);
            CHECK_FALSE(bitwise_equal(inc(e, 0.0, 0.5), inc(a, 0.0, 0.5)));
        }
    }
}

TEST_CASE("brownian: the cache is transparent with many cells (evicted levels) and in copies", "[brownian]") {
    // 1024 cells: the top tree is 10 levels deep, so sweeps evict cached levels (left children share
    // their ancestors' arrays, which must survive the eviction of their owner). Every query is checked
    // against a path that answers only that query.
    FOR_BOTH_GENERATORS;
    for (bool levy : {false, true}) {
        const BrownianOptions o = opts(1.0 / 1024, levy, f32);
        const auto query = [&](const BrownianPath& bm, double s, double t) {
            Vec out(static_cast<std::size_t>(bm.size()));
            if (levy) {
                Vec hh(out.size());
                bm.increment_levy(s, t, out, hh);
                out.insert(out.end(), hh.begin(), hh.end());
            } else {
                bm.increment(s, t, out);
            }
            return out;
        };
        const auto fresh = [&](double s, double t) { return query(BrownianPath(0.0, 1.0, 5, 9, o), s, t); };
        std::vector<std::pair<double, double>> q;
        for (int k = 0; k < 1024; k += 3) q.emplace_back(k / 1024.0, (k + 1) / 1024.0);  // forward
        for (int k = 1024; k > 600; k -= 5) q.emplace_back(k / 1024.0, (k - 1) / 1024.0);  // backward
        std::mt19937_64 rng(5);
        std::uniform_real_distribution<double> unif(0.0, 1.0);
        for (int k = 0; k < 40; ++k) q.emplace_back(unif(rng), unif(rng));  // off the grid
        std::vector<Vec> ref;
        for (auto [s, t] : q) ref.push_back(fresh(s, t));
        const BrownianPath a(0.0, 1.0, 5, 9, o);
        for (std::size_t i = 0; i < q.size(); ++i) {
            REQUIRE(bitwise_equal(query(a, q[i].first, q[i].second), ref[i]));
        }
        // Copies of a warm cache answer for themselves, also once the original is gone.
        auto b = std::make_unique<BrownianPath>(0.0, 1.0, 5, 9, o);
        const std::size_t half = q.size() / 2;
        for (std::size_t i = 0; i < half; ++i) query(*b, q[i].first, q[i].second);
        const BrownianPath c(*b);
        BrownianPath d(0.0, 2.0, 3, 1, opts(0.5, levy, f32));
        query(d, 0.0, 1.5);
        d = c;
        b.reset();
        for (std::size_t i = half; i < q.size(); ++i) {
            REQUIRE(bitwise_equal(query(c, q[i].first, q[i].second), ref[i]));
            const Vec r = query(d, q[i].second, q[i].first);  // reversed: -dW, the same H
            for (std::size_t j = 0; j < r.size(); ++j) REQUIRE(r[j] == (j < 5 ? -ref[i][j] : ref[i][j]));
        }
    }
}

TEST_CASE("brownian: coordinate i does not depend on size", "[brownian]") {
    FOR_BOTH_GENERATORS;
    for (bool levy : {false, true}) {
        const BrownianPath small(0.0, 1.0, 3, 77, opts(0.01, levy, f32));
        const BrownianPath large(0.0, 1.0, 1001, 77, opts(0.01, levy, f32));
        for (auto [s, t] : {std::pair{0.0, 1.0}, {0.2, 0.21}, {0.333, 0.3335}, {0.9, 0.1}}) {
            const Vec a = inc(small, s, t), b = inc(large, s, t);
            for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == b[i]);
        }
    }
}

TEST_CASE("brownian: value(t) = increment(t0, t), the two-slot cache is transparent", "[brownian]") {
    const BrownianPath bm(-1.0, 3.0, 5, 1, opts(0.1));
    Vec w(5);
    for (double t : {-1.0, -0.5, 0.123, 3.0, 2.9}) {
        bm.value(t, w);
        REQUIRE(bitwise_equal(w, inc(bm, -1.0, t)));
    }
    bm.value(-1.0, w);
    for (double v : w) REQUIRE(v == 0.0);
}

TEST_CASE("brownian: dt = 0.01 with dt_hint costs what dt = 2^-7 costs", "[brownian]") {
    // Work is counted in node splits (each samples size normals), so the check is exact, not a timing.
    const auto splits_per_query = [](double dt, double dt_hint, bool backward, bool accumulate) {
        const BrownianPath bm(0.0, 1.0, 4, 1, opts(dt_hint));
        const auto n = static_cast<int>(std::ceil(1.0 / dt - 1e-9));
        std::vector<double> t(static_cast<std::size_t>(n) + 1);
        double acc = 0.0;
        for (int k = 0; k <= n; ++k) {
            t[static_cast<std::size_t>(k)] = std::min(1.0, accumulate ? acc : dt * k);
            acc += dt;
        }
        Vec d(4);
        for (int i = 0; i < n; ++i) {
            const int k = backward ? n - 1 - i : i;
            if (backward) {
                bm.increment(t[static_cast<std::size_t>(k) + 1], t[static_cast<std::size_t>(k)], d);
            } else {
                bm.increment(t[static_cast<std::size_t>(k)], t[static_cast<std::size_t>(k) + 1], d);
            }
        }
        return static_cast<double>(bm.stats().splits) / n;
    };
    for (bool backward : {false, true}) {
        const double dyadic = splits_per_query(0x1p-7, 0x1p-7, backward, false);
        const double dyadic_nohint = splits_per_query(0x1p-7, 0.0, backward, false);
        const double hundredth = splits_per_query(0.01, 0.01, backward, false);
        const double accumulated = splits_per_query(0.01, 0.01, backward, true);  // t += dt, snapped
        INFO("backward " << backward << ": splits/query 2^-7 " << dyadic << ", 2^-7 no hint "
                         << dyadic_nohint << ", 0.01 " << hundredth << ", 0.01 accumulated " << accumulated);
        CHECK(dyadic <= 1.01);
        CHECK(dyadic_nohint <= 1.01);
        CHECK(hundredth <= 1.01);
        CHECK(accumulated <= 1.01);
        // Without the hint the 0.01 grid is off the dyadic tree: about log2(1 / tol) splits per query.
        CHECK(splits_per_query(0.01, 0.0, backward, false) > 10.0);
    }
}

TEST_CASE("brownian: space-time Levy area", "[brownian]") {
    struct Case {
        double dt_hint, s, t;
    };
    const std::vector<Case> cases = {{0.0, 0.0, 1.0},  {0.0, 0.0, 0.5},    {0.0, 0.3, 0.31},
                                     {0.01, 0.2, 0.21}, {0.01, 0.123, 0.2345}, {0.01, 0.7001, 0.7003}};
    FOR_BOTH_GENERATORS;
    std::uint64_t seed = 500;
    for (const auto& c : cases) {
        const BrownianPath bm(0.0, 1.0, kSamples, seed++, opts(c.dt_hint, true, f32));
        const double h = c.t - c.s;
        Vec w(kSamples), hh(kSamples);
        bm.increment_levy(c.s, c.t, w, hh);
        INFO("dt_hint " << c.dt_hint << " [" << c.s << ", " << c.t << "]");
        CHECK(std::abs(cov(w, w) / h - 1.0) < 0.05);
        CHECK(std::abs(cov(hh, hh) / (h / 12.0) - 1.0) < 0.05);  // Var H = h / 12
        CHECK(std::abs(corr(w, hh)) < kCorrTol);                   // Cov(H, W) = 0
        CHECK(ks_normal(scaled(hh, 1.0 / std::sqrt(h / 12.0))) < ks_critical(hh.size()));
        CHECK(ks_normal(scaled(w, 1.0 / std::sqrt(h))) < ks_critical(w.size()));
        // Plain increments of a Levy path agree with increment_levy's dW.
        REQUIRE(bitwise_equal(inc(bm, c.s, c.t), w));
    }
}

TEST_CASE("brownian: Levy area halves are independent with the right moments", "[brownian]") {
    // The children of a split are sampled from the conditional law of brownian.hpp; if it were wrong the
    // halves would not be independent N(0, h_i) x N(0, h_i / 12). Equal halves (dyadic tree) and the
    // unequal split 1 : 2 of the root of a 3-cell grid.
    FOR_BOTH_GENERATORS;
    struct Case {
        double t1, dt_hint, a, b, c;
    };
    for (const auto& k : {Case{1.0, 0.0, 0.0, 0.5, 1.0}, Case{1.0, 0.0, 0.25, 0.375, 0.5},
                          Case{0.3, 0.1, 0.0, 0.1, 0.3}, Case{0.3, 0.1, 0.1, 0.2, 0.3}}) {
        const BrownianPath bm(0.0, k.t1, kSamples, 21, opts(k.dt_hint, true, f32));
        Vec w1(kSamples), h1(kSamples), w2(kSamples), h2(kSamples);
        bm.increment_levy(k.a, k.b, w1, h1);
        bm.increment_levy(k.b, k.c, w2, h2);
        const double l1 = k.b - k.a, l2 = k.c - k.b;
        INFO("[" << k.a << ", " << k.b << "] u [" << k.b << ", " << k.c << "] of [0, " << k.t1 << "]");
        CHECK(std::abs(cov(w1, w1) / l1 - 1.0) < 0.05);
        CHECK(std::abs(cov(w2, w2) / l2 - 1.0) < 0.05);
        CHECK(std::abs(cov(h1, h1) / (l1 / 12.0) - 1.0) < 0.05);
        CHECK(std::abs(cov(h2, h2) / (l2 / 12.0) - 1.0) < 0.05);
        const Vec* v[4] = {&w1, &h1, &w2, &h2};
        for (int i = 0; i < 4; ++i) {
            for (int j = i + 1; j < 4; ++j) CHECK(std::abs(corr(*v[i], *v[j])) < kCorrTol);
        }
    }
}

TEST_CASE("brownian: (W, H) are additive over a split interval", "[brownian]") {
    FOR_BOTH_GENERATORS;
    std::mt19937_64 rng(8);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    for (double dt_hint : {0.0, 0.01}) {
        const BrownianPath bm(0.0, 1.0, 16, 2, opts(dt_hint, true, f32));
        Vec wac(16), hac(16), wab(16), hab(16), wbc(16), hbc(16);
        for (int rep = 0; rep < 300; ++rep) {
            double p[3] = {unif(rng), unif(rng), unif(rng)};
            if (rep % 4 == 0) {  // grid points
                for (double& x : p) x = 0.01 * std::round(x * 100.0);
            }
            std::sort(p, p + 3);
            if (p[2] - p[0] < 1e-3 || p[1] - p[0] < 1e-4 || p[2] - p[1] < 1e-4) continue;
            const double a = p[0], b = p[1], c = p[2], l1 = b - a, l2 = c - b, l = c - a;
            bm.increment_levy(a, c, wac, hac);
            bm.increment_levy(a, b, wab, hab);
            bm.increment_levy(b, c, wbc, hbc);
            for (int i = 0; i < 16; ++i) {
                REQUIRE(std::abs(wac[i] - (wab[i] + wbc[i])) < 1e-12);
                // H over [a, c] from the halves (brownian.hpp; I = I1 + h2 W1 + I2).
                const double comb = (l1 * hab[i] + l2 * hbc[i]) / l + (l2 * wab[i] - l1 * wbc[i]) / (2.0 * l);
                REQUIRE(std::abs(hac[i] - comb) < 1e-12);
            }
        }
    }
}

TEST_CASE("brownian: below the resolution the path is the conditional mean of the leaf", "[brownian]") {
    // Documented choice (brownian.hpp): inside a leaf [lo, lo + l], W(lo, lo + r l) = r W + 6 r (1 - r) H.
    for (bool levy : {false, true}) {
        // A coarse resolution, so that H over a leaf is accurate (its error is ~ eps (t1 - t0)^1.5 / h).
        BrownianOptions o = opts(0.0, levy);
        o.tol = 1e-3;
        const BrownianPath bm(0.0, 1.0, 8, 6, o);
        const double l = bm.leaf_width(), lo = 0.5 + 3.0 * l;
        REQUIRE(l <= 1e-3);
        Vec w(8), hh(8, 0.0), part(8), scratch(8);
        if (levy) {
            bm.increment_levy(lo, lo + l, w, hh);
        } else {
            bm.increment(lo, lo + l, w);
        }
        for (double r_nominal : {0.25, 0.5, 0.9}) {
            const double u = lo + r_nominal * l, r = (u - lo) / l;  // r as rounded by the time u
            bm.increment(lo, u, part);
            for (int i = 0; i < 8; ++i) {
                const double expect = r * w[i] + 6.0 * r * (1.0 - r) * hh[i];
                REQUIRE(std::abs(part[i] - expect) < 1e-12);
            }
        }
    }
}

TEST_CASE("brownian: errors", "[brownian]") {
    const auto message = [](auto&& f) {
        try {
            f();
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("no exception");
    };
    const double nan = std::nan(""), inf = INFINITY;
    CHECK_THROWS_AS(BrownianPath(1.0, 1.0, 4, 0), std::invalid_argument);
    CHECK_THROWS_AS(BrownianPath(1.0, 0.0, 4, 0), std::invalid_argument);
    CHECK_THROWS_AS(BrownianPath(0.0, inf, 4, 0), std::invalid_argument);
    CHECK_THROWS_AS(BrownianPath(nan, 1.0, 4, 0), std::invalid_argument);
    CHECK_THROWS_AS(BrownianPath(0.0, 1.0, 0, 0), std::invalid_argument);
    CHECK_THROWS_AS(BrownianPath(0.0, 1.0, 4, 0, opts(-0.1)), std::invalid_argument);
    CHECK_THROWS_AS(BrownianPath(0.0, 1.0, 4, 0, opts(1e-300)), std::invalid_argument);

    const BrownianPath bm(0.0, 1.0, 4, 0);
    Vec d(4), short_(3);
    const std::string out = message([&] { bm.increment(0.5, 1.5, d); });
    CHECK(out.find("BrownianPath::increment") != std::string::npos);
    CHECK(out.find("[0.5, 1.5]") != std::string::npos);
    CHECK(out.find("[0, 1]") != std::string::npos);
    CHECK_THROWS_AS(bm.increment(-0.1, 0.5, d), std::invalid_argument);
    CHECK_THROWS_AS(bm.increment(0.1, nan, d), std::invalid_argument);
    CHECK_THROWS_AS(bm.increment(0.1, inf, d), std::invalid_argument);
    const std::string size_msg = message([&] { bm.increment(0.1, 0.2, short_); });
    CHECK(size_msg.find("BrownianPath::increment") != std::string::npos);
    CHECK(size_msg.find("3 elements") != std::string::npos);
    const std::string levy_msg = message([&] { bm.increment_levy(0.1, 0.2, d, d); });
    CHECK(levy_msg.find("levy_area") != std::string::npos);
    CHECK_THROWS_AS(bm.value(2.0, d), std::invalid_argument);

    const BrownianPath lv(0.0, 1.0, 4, 0, opts(0.0, true));
    CHECK_THROWS_AS(lv.increment_levy(0.1, 0.2, d, short_), std::invalid_argument);
    CHECK_THROWS_AS(lv.increment_levy(0.1, 1.2, d, d), std::invalid_argument);
    lv.increment_levy(0.3, 0.3, d, d);  // s == t: zeros
    for (double v : d) CHECK(v == 0.0);
}

TEST_CASE("brownian: the float increment is the double increment rounded, bit for bit", "[brownian]") {
    const std::size_t n = 37;
    BrownianPath a(0.0, 1.0, n, 5, BrownianOptions{1.0 / 64, 0.0, false});
    BrownianPath b(0.0, 1.0, n, 5, BrownianOptions{1.0 / 64, 0.0, false});
    Vec wd(n);
    std::vector<float> wf(n);
    // Forward and backward sweeps, and a query between grid points.
    std::vector<std::pair<double, double>> qs;
    for (int k = 0; k < 64; ++k) qs.emplace_back(k / 64.0, (k + 1) / 64.0);
    for (int k = 64; k > 0; --k) qs.emplace_back(k / 64.0, (k - 1) / 64.0);
    qs.emplace_back(0.1234, 0.777);
    for (auto [s, t] : qs) {
        a.increment(s, t, std::span<double>(wd));
        b.increment(s, t, std::span<float>(wf));
        for (std::size_t i = 0; i < n; ++i) REQUIRE(wf[i] == static_cast<float>(wd[i]));
    }
    CHECK_THROWS(b.increment(0.0, 0.5, std::span<float>(wf.data(), n - 1)));
}
