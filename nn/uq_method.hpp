// The common interface of every classifier with uncertainty that experiments/uq_benchmark compares, and
// the registry through which a method joins the benchmark's table.
//
// A method is a class implementing UqMethod (fit on normalised training images, then class probabilities
// and named uncertainty scores for any images, and its parameter count), registered under a name with
//
//     SDEUQ_REGISTER_UQ_METHOD(my_method, "My method", "one line on what it is", "entropy", MyMethod)
//
// in a .cpp file compiled into experiments/uq_benchmark (add the file to `uq_method_sources` in
// experiments/meson.build). The benchmark then trains it on MNIST and on Fashion-MNIST with every seed,
// computes the same metrics for it as for every other method and puts it in reports/uq_benchmark.md's
// tables and figure. The method sees only the training set; all evaluation (test and OOD sets) goes
// through predict(), so every method is scored by the same code on the same data.
//
// Contract:
// - fit() trains from scratch, deterministically for a given UqSettings::seed (the same bits with 1 or 2
//   kernel threads: use the project's Generators, never std::random_device or the clock). Long training
//   should checkpoint once per epoch under checkpoint_dir and resume from there (train_classifier below
//   does both), and call on_epoch() after each epoch for the progress bar.
// - predict() returns probs [n x num_classes] (rows sum to 1) and scores: each a vector of n values,
//   larger = more uncertain. The benchmark itself adds "max_prob" (1 - max_c p_c) and "entropy"
//   (-sum_c p_c log p_c) for every method; a method adds its own (e.g. "mutual_information",
//   "gp_variance", "diffusion") and names in UqMethodInfo::ood_score the one its OOD columns use.
// - parameter_count() counts every learned number the predictions use (all members of an ensemble).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"
#include "nn/data.hpp"
#include "nn/module.hpp"

namespace sdeuq::nn {

// What the benchmark tells a method. The shared fields are the benchmark's protocol (the same for every
// method in a run); `options` holds method-specific settings given as --option METHOD.KEY=VALUE.
struct UqSettings {
    std::uint64_t seed = 0;     // this method's seed for this data set and run seed
    bool quick = true;          // quick mode (small nets, subsets) or full
    std::int64_t num_classes = 10;
    std::vector<std::size_t> input_shape = {1, 28, 28};
    int epochs = 3;
    std::size_t batch = 128;
    double lr = 2e-3;            // Adam
    std::int64_t width = 32;     // conv channels
    int blocks = 1;              // residual blocks
    int groups = 8;              // GroupNorm groups
    double dropout = 0.1;        // MC dropout's rate
    int mc_samples = 10;         // forward passes of sampling methods at test time
    int ensemble = 5;            // members of ensembles
    std::map<std::string, std::string> options;
    std::string checkpoint_dir;  // "" = no checkpoints
    bool resume = true;
    std::function<void()> on_epoch;  // called after every epoch (progress)

    // options[key] converted, or `fallback` when absent; throws std::invalid_argument naming the key and
    // the value when it does not convert.
    double option(const std::string& key, double fallback) const;
    std::int64_t option_int(const std::string& key, std::int64_t fallback) const;
    std::string option_str(const std::string& key, const std::string& fallback) const;
};

struct ConvNetConfig;  // nn/models.hpp
// The conv net of the benchmark's protocol: input channels, width, blocks, classes and GroupNorm groups from
// `s`; the rest (dropout, SNGP) at ConvNetConfig's defaults for the method to set.
ConvNetConfig conv_net_config(const UqSettings& s);

struct UqPrediction {
    std::vector<double> probs;                              // [n x num_classes]
    std::map<std::string, std::vector<double>> scores;      // each [n], larger = more uncertain
};

class UqMethod {
public:
    virtual ~UqMethod() = default;
    virtual void fit(const data::Dataset& train) = 0;
    virtual UqPrediction predict(const data::Dataset& images) = 0;
    virtual std::int64_t parameter_count() = 0;
};

struct UqMethodInfo {
    std::string name;         // identifier: results keys, --methods, --option prefixes
    std::string title;        // for tables
    std::string description;  // one line for the report
    std::string ood_score;    // the score the OOD and misclassification columns use
    std::function<std::unique_ptr<UqMethod>(const UqSettings&)> make;
};

// Registers a method (throws std::logic_error on a duplicate name). Returns true, for static initialisers.
bool register_uq_method(UqMethodInfo info);
// Every registered method, sorted by name (registration order depends on link order).
std::vector<UqMethodInfo> uq_methods();
// The method registered under `name`; throws std::invalid_argument listing the registered names.
const UqMethodInfo& uq_method(const std::string& name);

#define SDEUQ_REGISTER_UQ_METHOD(id, title, description, ood_score, Class)                               \
    namespace {                                                                                           \
    [[maybe_unused]] const bool sdeuq_uq_registered_##id = ::sdeuq::nn::register_uq_method(             \
        {#id, title, description, ood_score,                                                              \
         [](const ::sdeuq::nn::UqSettings& s) -> std::unique_ptr<::sdeuq::nn::UqMethod> {                \
             return std::make_unique<Class>(s);                                                           \
         }});                                                                                             \
    }

// ---------------------------------------------------------------- helpers for image classifiers

// Trains `model` with Adam (settings.lr) on cross_entropy(logits(x), y) for settings.epochs epochs of
// shuffled minibatches (data::BatchIterator seeded by `seed`). `epoch_start(e)` runs before each epoch
// (e.g. to restart an SNGP precision matrix). With settings.checkpoint_dir set, the model, optimizer and
// generators are saved after every epoch to checkpoint_dir/<tag>.ckpt with `config_key`; with
// settings.resume a checkpoint with the same config_key is resumed from (another one is ignored).
void train_classifier(Module& model, const std::function<Var(const Var&)>& logits, const data::Dataset& train,
                      const UqSettings& settings, std::uint64_t seed, const std::string& tag,
                      const std::string& config_key, const std::function<void(int)>& epoch_start = {});

// softmax(logits(x)) for every image of ds, in chunks of 500 without gradient, [n x classes] as double.
std::vector<double> predict_probs(const data::Dataset& ds, std::int64_t classes,
                                  const std::function<Var(const Var&)>& logits);

// Mutual information between the prediction and the model (BALD; Houlsby et al. 2011): the entropy of
// the mean of `samples` probability sets [n x classes] minus the mean of their entropies, per input.
std::vector<double> mutual_information(const std::vector<std::vector<double>>& samples,
                                       std::int64_t classes);

}  // namespace sdeuq::nn
