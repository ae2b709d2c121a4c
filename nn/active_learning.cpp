#include "nn/active_learning.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <numeric>
#include <stdexcept>

#include "nn/metrics.hpp"

namespace sdeuq::nn {

namespace {

// The learner's generators: its own stream family, one generator per round (round 0 = the start set).
data::Rng round_rng(std::uint64_t seed, int round) {
    return data::Rng(data::splitmix64(seed ^ 0x6163'7469'7665'4c00ULL), data::Stream::user,
                     static_cast<std::uint64_t>(round));
}

// The first k elements of a uniform random permutation of v (partial Fisher-Yates), in draw order.
std::vector<std::size_t> sample_without_replacement(std::vector<std::size_t> v, std::size_t k, data::Rng& rng) {
    k = std::min(k, v.size());
    for (std::size_t i = 0; i < k; ++i) {
        const std::size_t j = i + static_cast<std::size_t>(rng.uniform_index(v.size() - i));
        std::swap(v[i], v[j]);
    }
    v.resize(k);
    return v;
}

}  // namespace

std::vector<std::size_t> RandomAcquisition::select(std::span<const std::size_t> candidates, std::size_t k,
                                                   data::Rng& rng) {
    return sample_without_replacement({candidates.begin(), candidates.end()}, k, rng);
}

ScoreAcquisition::ScoreAcquisition(std::string name, ScoreFn score_fn)
    : name_(std::move(name)), score_fn_(std::move(score_fn)) {
    if (!score_fn_) throw std::invalid_argument(fmt::format("ScoreAcquisition({}): no score function", name_));
}

std::vector<std::size_t> ScoreAcquisition::select(std::span<const std::size_t> candidates, std::size_t k,
                                                  data::Rng&) {
    const std::vector<double> s = score_fn_(candidates);
    if (s.size() != candidates.size())
        throw std::invalid_argument(fmt::format("acquisition '{}': the score function returned {} scores for {} "
                                                "candidates",
                                                name_, s.size(), candidates.size()));
    for (std::size_t i = 0; i < s.size(); ++i)
        if (!std::isfinite(s[i]))
            throw std::invalid_argument(fmt::format("acquisition '{}': score {} of candidate {} (index {}) is not "
                                                    "finite",
                                                    name_, s[i], i, candidates[i]));
    k = std::min(k, candidates.size());
    std::vector<std::size_t> order(candidates.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    // Highest score first; equal scores by position, so the choice depends on the scores only.
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                      [&](std::size_t a, std::size_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
    std::vector<std::size_t> out(k);
    for (std::size_t i = 0; i < k; ++i) out[i] = candidates[order[i]];
    return out;
}

std::unique_ptr<Acquisition> entropy_acquisition(ProbsFn probs_fn, std::size_t num_classes) {
    if (!probs_fn) throw std::invalid_argument("entropy_acquisition: no probability function");
    return std::make_unique<ScoreAcquisition>(
        "entropy", [probs_fn = std::move(probs_fn), num_classes](std::span<const std::size_t> c) {
            const std::vector<double> p = probs_fn(c);
            if (p.size() != c.size() * num_classes)
                throw std::invalid_argument(fmt::format("entropy acquisition: the probability function returned "
                                                        "{} values for {} candidates x {} classes",
                                                        p.size(), c.size(), num_classes));
            return metrics::predictive_entropy(std::span<const double>(p), num_classes);
        });
}

std::unique_ptr<Acquisition> epistemic_acquisition(ScoreFn score_fn, std::string name) {
    return std::make_unique<ScoreAcquisition>(std::move(name), std::move(score_fn));
}

ActiveLearner::ActiveLearner(std::span<const std::int32_t> labels, std::size_t num_classes,
                             ActiveLearningOptions opt, std::uint64_t seed, std::span<const std::size_t> universe)
    : opt_(opt), seed_(seed), num_classes_(num_classes) {
    if (num_classes == 0) throw std::invalid_argument("ActiveLearner: num_classes must be >= 1");
    if (opt.acquire == 0) throw std::invalid_argument("ActiveLearner: acquire (images per round) must be >= 1");
    if (universe.empty()) {
        universe_.resize(labels.size());
        std::iota(universe_.begin(), universe_.end(), std::size_t{0});
    } else {
        universe_.assign(universe.begin(), universe.end());
        std::sort(universe_.begin(), universe_.end());
        if (std::adjacent_find(universe_.begin(), universe_.end()) != universe_.end())
            throw std::invalid_argument("ActiveLearner: the pool universe holds an index twice");
        if (universe_.back() >= labels.size())
            throw std::invalid_argument(fmt::format("ActiveLearner: universe index {} is outside the {} labels",
                                                    universe_.back(), labels.size()));
    }
    std::vector<std::vector<std::size_t>> by_class(num_classes);
    for (std::size_t i : universe_) {
        const std::int32_t y = labels[i];
        if (y < 0 || static_cast<std::size_t>(y) >= num_classes)
            throw std::invalid_argument(fmt::format("ActiveLearner: label {} of index {} is outside [0, {})", y, i,
                                                    num_classes));
        by_class[static_cast<std::size_t>(y)].push_back(i);
    }
    data::Rng rng = round_rng(seed_, 0);
    for (std::size_t c = 0; c < num_classes; ++c) {
        if (by_class[c].size() < opt.initial_per_class)
            throw std::invalid_argument(fmt::format("ActiveLearner: class {} has {} images in the pool, fewer than "
                                                    "the {} of the start set",
                                                    c, by_class[c].size(), opt.initial_per_class));
        for (std::size_t i : sample_without_replacement(by_class[c], opt.initial_per_class, rng))
            labelled_.push_back(i);
    }
    restore(std::vector<std::size_t>(labelled_), 0);
}

void ActiveLearner::restore(std::span<const std::size_t> labelled, int rounds) {
    if (rounds < 0) throw std::invalid_argument("ActiveLearner::restore: rounds must be >= 0");
    const std::size_t start = opt_.initial_per_class * num_classes_;
    if (labelled.size() < start || labelled.size() > start + static_cast<std::size_t>(rounds) * opt_.acquire)
        throw std::invalid_argument(fmt::format("ActiveLearner::restore: {} labelled images cannot follow {} "
                                                "rounds of {} from a start set of {}",
                                                labelled.size(), rounds, opt_.acquire, start));
    std::vector<std::size_t> sorted(labelled.begin(), labelled.end());
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
        throw std::invalid_argument("ActiveLearner::restore: an image is labelled twice");
    for (std::size_t i : sorted)
        if (!std::binary_search(universe_.begin(), universe_.end(), i))
            throw std::invalid_argument(fmt::format("ActiveLearner::restore: index {} is not in the pool universe", i));
    labelled_.assign(labelled.begin(), labelled.end());
    pool_.clear();
    std::set_difference(universe_.begin(), universe_.end(), sorted.begin(), sorted.end(), std::back_inserter(pool_));
    rounds_ = rounds;
}

std::vector<std::size_t> ActiveLearner::acquire(Acquisition& acq) {
    data::Rng rng = round_rng(seed_, rounds_ + 1);
    std::vector<std::size_t> cand;
    if (opt_.candidates == 0 || opt_.candidates >= pool_.size()) {
        cand = pool_;
    } else {
        cand = sample_without_replacement(pool_, opt_.candidates, rng);
        std::sort(cand.begin(), cand.end());
    }
    const std::size_t k = std::min(opt_.acquire, cand.size());
    std::vector<std::size_t> picked = acq.select(cand, k, rng);
    // The acquisition function is user code: check that it picked k distinct candidates.
    std::vector<std::size_t> sorted = picked;
    std::sort(sorted.begin(), sorted.end());
    if (picked.size() != k || std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end() ||
        !std::includes(cand.begin(), cand.end(), sorted.begin(), sorted.end()))
        throw std::logic_error(fmt::format("acquisition '{}' returned {} indices, expected {} distinct candidates",
                                           acq.name(), picked.size(), k));
    std::vector<std::size_t> rest;
    rest.reserve(pool_.size() - k);
    std::set_difference(pool_.begin(), pool_.end(), sorted.begin(), sorted.end(), std::back_inserter(rest));
    pool_ = std::move(rest);
    labelled_.insert(labelled_.end(), picked.begin(), picked.end());
    ++rounds_;
    return picked;
}

}  // namespace sdeuq::nn
