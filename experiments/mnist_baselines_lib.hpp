// The baselines of mnist_baselines (deterministic conv net, MC dropout, deep ensemble members) as functions,
// shared by the experiments that compare against them on the same data (mnist_baselines, sdenet_mnist):
// settings, training with per-epoch checkpoints (resumed only from the same configuration) and class
// probabilities.
#pragma once

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "experiments/common.hpp"
#include "nn/checkpoint.hpp"
#include "nn/data.hpp"
#include "nn/metrics.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"

namespace sdeuq::baselines {

struct Settings {
    int epochs = 3;
    std::size_t batch = 128;
    double lr = 2e-3;
    std::int64_t width = 32;
    // GroupNorm groups. SDE-Net uses min(32, width) groups with width 64 (2 channels per group); with one
    // channel per group (width 32, 32 groups) the head's GN -> ReLU -> global pool throws most of the
    // signal away and training crawls (checked against the same network in PyTorch), so quick mode keeps
    // 4 channels per group.
    int groups = 8;
    int blocks = 1;
    double dropout = 0.1;
    int mc_samples = 10;
    int ensemble = 5;
    std::size_t train_subset = 10000;  // 0 = all
    std::size_t eval_subset = 2000;    // 0 = all
};

struct TrainResult {
    std::unique_ptr<nn::MnistConvNet> model;
    std::vector<double> epoch_seconds;
};

inline TrainResult train(const data::Dataset& train_set, double dropout, std::uint64_t seed,
                         const Settings& s, const std::string& ckpt_path, const nlohmann::json& identity,
                         bool resume, experiment::Progress& bar, std::int64_t& done) {
    Generator gen(seed, 1);
    nn::ConvNetConfig cfg;
    cfg.width = s.width;
    cfg.num_blocks = s.blocks;
    cfg.dropout = dropout;
    cfg.groups = s.groups;
    TrainResult r;
    r.model = std::make_unique<nn::MnistConvNet>(cfg, gen);
    nn::Adam opt(r.model->trainable_parameters(), {.lr = s.lr});
    auto gens = r.model->named_generators();
    int start = 0;
    // Resumed only when it belongs to this run (nn/checkpoint.hpp: a foreign checkpoint is refused).
    if (auto meta = nn::checkpoint_to_resume(ckpt_path, identity, resume)) {
        nn::load_checkpoint(ckpt_path, *r.model, &opt, gens);
        start = meta->value("epochs_done", 0);
        r.epoch_seconds = meta->value("epoch_seconds", std::vector<double>{});
        done += start;
        std::fprintf(stderr, "resuming %s after epoch %d\n", ckpt_path.c_str(), start);
    }
    data::BatchIterator it(train_set.n, s.batch, seed);
    std::vector<std::int32_t> yb;
    r.model->train();
    for (int e = start; e < s.epochs; ++e) {
        const double t0 = experiment::wall_seconds();
        it.start_epoch(static_cast<std::uint64_t>(e));
        std::int64_t b = 0;
        for (auto idx = it.next(); !idx.empty(); idx = it.next(), ++b) {
            Tensor x = data::batch_tensor(train_set, idx, yb);
            opt.zero_grad();
            Var loss = cross_entropy(r.model->forward(Var(x)), yb);
            experiment::check_loss(loss.item(), ckpt_path, e, b);
            backward(loss);
            opt.step();
            reset_tape();
        }
        r.epoch_seconds.push_back(experiment::wall_seconds() - t0);
        nlohmann::json meta = {
            {"identity", identity}, {"epochs_done", e + 1}, {"epoch_seconds", r.epoch_seconds}};
        nn::save_checkpoint(ckpt_path, *r.model, &opt, meta.dump(), gens);
        bar.update(++done);
    }
    return r;
}

// Class probabilities [n x 10] under the model (mc > 0: MC dropout with that many masks).
inline std::vector<double> predict(nn::MnistConvNet& model, const data::Dataset& ds, int mc) {
    std::vector<double> probs(ds.n * 10, 0.0);
    NoGradScope ng;
    model.eval();
    if (mc > 0) nn::set_mc_dropout(model, true);
    const int reps = mc > 0 ? mc : 1;
    std::vector<std::size_t> idx;
    std::vector<std::int32_t> yb;
    for (std::size_t lo = 0; lo < ds.n; lo += 500) {
        const std::size_t hi = std::min(ds.n, lo + 500);
        idx.resize(hi - lo);
        for (std::size_t i = lo; i < hi; ++i) idx[i - lo] = i;
        Var x(data::batch_tensor(ds, idx, yb));
        for (int r = 0; r < reps; ++r) {
            Var p = softmax(model.forward(x), -1);
            const float* pp = p.value().data<float>();
            for (std::size_t i = 0; i < (hi - lo) * 10; ++i)
                probs[lo * 10 + i] += static_cast<double>(pp[i]) / reps;
        }
        reset_tape();
    }
    if (mc > 0) nn::set_mc_dropout(model, false);
    return probs;
}

// The classification and OOD metrics of one method: class probabilities p_in [n x 10] on the in-distribution
// test set `in` and p_out on the OOD set, OOD score the max softmax probability (in-distribution positive).
inline nlohmann::json evaluate(const std::vector<double>& p_in, const data::Dataset& in,
                               const std::vector<double>& p_out) {
    auto conf_in = metrics::max_prob(std::span<const double>(p_in), 10);
    auto conf_out = metrics::max_prob(std::span<const double>(p_out), 10);
    auto om = metrics::ood_metrics(conf_in, conf_out);
    return nlohmann::json{{"accuracy", metrics::accuracy(std::span<const double>(p_in), in.labels, 10)},
                          {"nll", metrics::nll(std::span<const double>(p_in), in.labels, 10)},
                          {"brier", metrics::brier(std::span<const double>(p_in), in.labels, 10)},
                          {"ece_15", metrics::ece(std::span<const double>(p_in), in.labels, 10, 15)},
                          {"ece_10", metrics::ece(std::span<const double>(p_in), in.labels, 10, 10)},
                          {"ood_auroc", om.auroc},
                          {"ood_aupr_in", om.aupr_in},
                          {"ood_aupr_out", om.aupr_out},
                          {"ood_tnr_at_95_tpr", om.tnr_at_95_tpr},
                          {"ood_detection_accuracy", om.detection_accuracy}};
}

}  // namespace sdeuq::baselines
