// The active-learning loop (nn/active_learning): the balanced start set, sizes per round, no image acquired
// twice, determinism per seed, score-based picks, resuming, and bad input.
#include <algorithm>
#include <catch2/catch.hpp>
#include <set>

#include "nn/active_learning.hpp"

using namespace sdeuq;
using namespace sdeuq::nn;

namespace {

std::vector<std::int32_t> make_labels(std::size_t n, int classes) {
    std::vector<std::int32_t> y(n);
    data::Rng rng(5, data::Stream::user, 77);
    for (auto& v : y) v = static_cast<std::int32_t>(rng.uniform_index(static_cast<std::uint64_t>(classes)));
    return y;
}

// Runs `rounds` rounds and returns the labelled list.
std::vector<std::size_t> run(std::span<const std::int32_t> y, Acquisition& acq, std::uint64_t seed, int rounds,
                             ActiveLearningOptions opt = {}) {
    ActiveLearner l(y, 10, opt, seed);
    for (int r = 0; r < rounds; ++r) l.acquire(acq);
    return l.labelled();
}

}  // namespace

TEST_CASE("active learning starts balanced and grows by the acquisition size, never twice the same image",
          "[nn][active_learning]") {
    const auto y = make_labels(500, 10);
    RandomAcquisition rnd;
    auto score = epistemic_acquisition([](std::span<const std::size_t> c) {
        std::vector<double> s;
        for (std::size_t i : c) s.push_back(static_cast<double>((i * 37) % 101));
        return s;
    });
    for (Acquisition* acq : {static_cast<Acquisition*>(&rnd), score.get()}) {
        INFO(acq->name());
        ActiveLearner l(y, 10, {.initial_per_class = 2, .acquire = 10}, 1);
        REQUIRE(l.labelled().size() == 20);
        std::vector<int> per_class(10, 0);
        for (std::size_t i : l.labelled()) ++per_class[static_cast<std::size_t>(y[i])];
        CHECK(std::all_of(per_class.begin(), per_class.end(), [](int c) { return c == 2; }));
        CHECK(l.pool().size() == 480);
        for (int r = 1; r <= 7; ++r) {
            const auto picked = l.acquire(*acq);
            CHECK(picked.size() == 10);
            CHECK(l.labelled().size() == 20 + 10 * static_cast<std::size_t>(r));
            CHECK(l.pool().size() == 480 - 10 * static_cast<std::size_t>(r));
            CHECK(l.rounds_done() == r);
        }
        std::set<std::size_t> lab(l.labelled().begin(), l.labelled().end());
        CHECK(lab.size() == l.labelled().size());  // no image acquired twice
        for (std::size_t i : l.pool()) CHECK(lab.count(i) == 0);
        CHECK(lab.size() + l.pool().size() == 500);
        CHECK(std::is_sorted(l.pool().begin(), l.pool().end()));
    }
}

TEST_CASE("active learning is deterministic per seed and differs across seeds", "[nn][active_learning]") {
    const auto y = make_labels(400, 10);
    RandomAcquisition rnd;
    ActiveLearningOptions opt{.initial_per_class = 2, .acquire = 10, .candidates = 50};
    CHECK(run(y, rnd, 3, 5, opt) == run(y, rnd, 3, 5, opt));
    CHECK(run(y, rnd, 3, 5, opt) != run(y, rnd, 4, 5, opt));
    // The start set alone already depends on the seed.
    CHECK(ActiveLearner(y, 10, {}, 3).labelled() != ActiveLearner(y, 10, {}, 4).labelled());
}

TEST_CASE("score acquisition takes the highest scores among the candidates, ties by position",
          "[nn][active_learning]") {
    const auto y = make_labels(200, 10);
    ActiveLearner l(y, 10, {.initial_per_class = 1, .acquire = 5}, 2);
    const std::vector<std::size_t> before = l.pool();
    // Score = index, except a tie at the top between the two smallest pool indices.
    auto acq = epistemic_acquisition([&](std::span<const std::size_t> c) {
        std::vector<double> s;
        for (std::size_t i : c) s.push_back(i == before[0] || i == before[1] ? 1e9 : static_cast<double>(i));
        return s;
    });
    const auto picked = l.acquire(*acq);
    const std::size_t m = before.size();
    CHECK(picked == std::vector<std::size_t>{before[0], before[1], before[m - 1], before[m - 2], before[m - 3]});
    // Entropy acquisition picks the most uncertain rows of the probabilities it is given.
    auto ent = entropy_acquisition(
        [](std::span<const std::size_t> c) {
            std::vector<double> p;
            for (std::size_t i : c)
                for (int k = 0; k < 10; ++k) p.push_back(i % 17 == 0 ? 0.1 : (k == 0 ? 1.0 : 0.0));
            return p;
        },
        10);
    ActiveLearner l2(y, 10, {.initial_per_class = 1, .acquire = 3}, 2);
    for (std::size_t i : l2.acquire(*ent)) CHECK(i % 17 == 0);
}

TEST_CASE("candidate subsampling scores only that many pool images per round", "[nn][active_learning]") {
    const auto y = make_labels(300, 10);
    std::size_t seen = 0;
    auto acq = epistemic_acquisition([&](std::span<const std::size_t> c) {
        seen = c.size();
        return std::vector<double>(c.size(), 0.0);
    });
    ActiveLearner l(y, 10, {.initial_per_class = 2, .acquire = 10, .candidates = 40}, 9);
    l.acquire(*acq);
    CHECK(seen == 40);
}

TEST_CASE("a restored learner continues exactly as the uninterrupted one", "[nn][active_learning]") {
    const auto y = make_labels(300, 10);
    RandomAcquisition rnd;
    ActiveLearningOptions opt{.initial_per_class = 2, .acquire = 10, .candidates = 60};
    ActiveLearner a(y, 10, opt, 11);
    for (int r = 0; r < 3; ++r) a.acquire(rnd);
    ActiveLearner b(y, 10, opt, 11);
    b.restore(a.labelled(), a.rounds_done());
    CHECK(b.pool() == a.pool());
    a.acquire(rnd);
    b.acquire(rnd);
    CHECK(a.labelled() == b.labelled());
}

TEST_CASE("active learning rejects bad input with a message naming it", "[nn][active_learning]") {
    const auto y = make_labels(200, 10);
    CHECK_THROWS_WITH(ActiveLearner(y, 10, {.initial_per_class = 100}, 1), Catch::Contains("fewer than"));
    ActiveLearner l(y, 10, {.initial_per_class = 1, .acquire = 2}, 1);
    std::vector<std::size_t> twice = l.labelled();
    twice.back() = twice.front();
    CHECK_THROWS_WITH(l.restore(twice, 0), Catch::Contains("twice"));
    // An acquisition that returns a non-candidate is caught.
    struct Bad : Acquisition {
        std::string name() const override { return "bad"; }
        std::vector<std::size_t> select(std::span<const std::size_t>, std::size_t k, data::Rng&) override {
            return std::vector<std::size_t>(k, 0);
        }
    } bad;
    CHECK_THROWS_WITH(l.acquire(bad), Catch::Contains("bad"));
    auto nan = epistemic_acquisition([](std::span<const std::size_t> c) {
        return std::vector<double>(c.size(), std::nan(""));
    });
    CHECK_THROWS_WITH(l.acquire(*nan), Catch::Contains("not finite"));
}
