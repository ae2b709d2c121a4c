// Pool-based active learning (Settles 2009, Section 2.3; the MNIST protocol of Gal, Islam & Ghahramani 2017,
// "Deep Bayesian active learning with image data", Section 5.1): a labelled set that starts small and
// balanced, an unlabelled pool, and rounds in which an acquisition function picks the next images to label.
//
// The loop knows nothing of models: an acquisition function is a small interface that, given the pool
// candidates of this round, returns the ones to label. Random acquisition draws uniformly; score-based
// acquisition (predictive entropy, a model's epistemic score such as SDE-Net's diffusion) takes the k
// highest scores from a function the experiment provides, ties broken by the lower pool position, so the
// choice is a pure function of the scores.
//
// Every random choice (the initial set, random acquisition, the candidate subsample of a large pool) comes
// from a data::Rng derived from (seed, round), so a run is determined by its seed, and the learner's whole
// state is its labelled list and round count: restore() resumes a run from them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "nn/data.hpp"

namespace sdeuq::nn {

class Acquisition {
public:
    virtual ~Acquisition() = default;
    virtual std::string name() const = 0;
    // Picks k distinct elements of `candidates` (dataset indices), k <= candidates.size().
    virtual std::vector<std::size_t> select(std::span<const std::size_t> candidates, std::size_t k,
                                            data::Rng& rng) = 0;
};

// Uniformly at random without replacement (partial Fisher-Yates).
class RandomAcquisition : public Acquisition {
public:
    std::string name() const override { return "random"; }
    std::vector<std::size_t> select(std::span<const std::size_t> candidates, std::size_t k,
                                    data::Rng& rng) override;
};

// The k candidates of highest score; score_fn returns one finite score per candidate (higher = more
// worth labelling).
using ScoreFn = std::function<std::vector<double>(std::span<const std::size_t> candidates)>;
class ScoreAcquisition : public Acquisition {
public:
    ScoreAcquisition(std::string name, ScoreFn score_fn);
    std::string name() const override { return name_; }
    std::vector<std::size_t> select(std::span<const std::size_t> candidates, std::size_t k,
                                    data::Rng& rng) override;

private:
    std::string name_;
    ScoreFn score_fn_;
};

// Max predictive entropy (Shannon 1948; Gal et al. 2017, eq. 1): probs_fn returns the model's class
// probabilities [candidates x num_classes], row-major; the score is H(p) = -sum_c p_c log p_c.
using ProbsFn = std::function<std::vector<double>(std::span<const std::size_t> candidates)>;
std::unique_ptr<Acquisition> entropy_acquisition(ProbsFn probs_fn, std::size_t num_classes);
// A model-provided epistemic score (e.g. SDE-Net's diffusion g(h0(x)), Kong et al. 2020, Section 4.2).
std::unique_ptr<Acquisition> epistemic_acquisition(ScoreFn score_fn, std::string name = "epistemic");

struct ActiveLearningOptions {
    std::size_t initial_per_class = 2;  // the balanced start set: this many images of every class
    std::size_t acquire = 10;           // images labelled per round
    // Candidates scored per round: a uniform subsample of the pool of this size (0 = the whole pool), the
    // usual way to bound the scoring cost on a large pool (Gal et al. 2017 score a random 2,000).
    std::size_t candidates = 0;
};

// The labelled set and the pool over a data set's labels (indices 0 .. labels.size() - 1, or the given
// subset of them as the pool universe).
class ActiveLearner {
public:
    ActiveLearner(std::span<const std::int32_t> labels, std::size_t num_classes, ActiveLearningOptions opt,
                  std::uint64_t seed, std::span<const std::size_t> universe = {});
    // Labelled dataset indices, in acquisition order (the start set first).
    const std::vector<std::size_t>& labelled() const { return labelled_; }
    // Unlabelled dataset indices, in increasing order.
    const std::vector<std::size_t>& pool() const { return pool_; }
    // One round: picks min(acquire, pool size) images with `acq` among this round's candidates and moves
    // them from the pool to the labelled set; returns them in the order picked.
    std::vector<std::size_t> acquire(Acquisition& acq);
    int rounds_done() const { return rounds_; }
    const ActiveLearningOptions& options() const { return opt_; }
    // Resumes a run: the labelled list (as labelled() returned it) after `rounds` rounds. Throws
    // std::invalid_argument if an index is outside the universe or repeated, or the size does not match.
    void restore(std::span<const std::size_t> labelled, int rounds);

private:
    ActiveLearningOptions opt_;
    std::uint64_t seed_;
    std::size_t num_classes_;
    std::vector<std::size_t> universe_;
    std::vector<std::size_t> labelled_, pool_;
    int rounds_ = 0;
};

}  // namespace sdeuq::nn
