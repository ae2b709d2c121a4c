// What the SDE-Net studies on MNIST (sdenet_mnist, sdenet_adversarial, sdenet_active_learning, and
// uq_benchmark's SDE-Net) share: image batches, the baseline conv net of mnist_baselines and SDE-Net trained
// on a set of images with per-epoch checkpoints, and per-pass class probabilities.
//
// Both kinds of model take pixels in [0, 1] (what the attacks perturb and clip): the baseline standardises
// with the MNIST constants inside its forward pass (as mnist_baselines standardises its data), SDE-Net
// takes raw pixels (as the reference: x / 255, no normalisation).
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "experiments/common.hpp"
#include "nn/checkpoint.hpp"
#include "nn/data.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"
#include "sde/sdenet.hpp"

namespace sdeuq::study {

// Images idx of ds as [n, 1, 28, 28] float32 pixels (heap); the labels come from labels() below.
inline Tensor images(const data::Dataset& ds, std::span<const std::size_t> idx) {
    std::vector<std::int32_t> unused;
    return data::batch_tensor(ds, idx, unused);
}

inline std::vector<std::int32_t> labels(const data::Dataset& ds, std::span<const std::size_t> idx) {
    std::vector<std::int32_t> y;
    y.reserve(idx.size());
    for (std::size_t i : idx) y.push_back(ds.labels[i]);
    return y;
}

inline std::vector<std::size_t> first_n(std::size_t n) {
    std::vector<std::size_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = i;
    return v;
}

// Every image of ds as one [n, C, H, W] float32 tensor.
inline Tensor all_images(const data::Dataset& ds) {
    return images(ds, first_n(ds.n));
}

// Image tensor [n, C, H, W] (f32) and labels as a data set (copied), for SdeNetTrainer::train_epoch.
inline data::Dataset as_dataset(const Tensor& x, std::span<const std::int32_t> y, std::size_t num_classes = 10) {
    data::Dataset ds;
    ds.n = static_cast<std::size_t>(x.dim(0));
    for (int i = 1; i < x.rank(); ++i) ds.shape.push_back(static_cast<std::size_t>(x.dim(i)));
    ds.num_classes = num_classes;
    const Tensor xf = x.dtype() == DType::f32 ? x : x.to(DType::f32);
    ds.images.assign(xf.data<float>(), xf.data<float>() + xf.numel());
    ds.labels.assign(y.begin(), y.end());
    return ds;
}

// Rows [lo, hi) of x (heap copy).
inline Tensor rows(const Tensor& x, std::int64_t lo, std::int64_t hi) {
    Shape s = x.shape();
    s[0] = hi - lo;
    Tensor out = Tensor::empty(s, x.dtype());
    const std::size_t row = x.nbytes() / static_cast<std::size_t>(x.dim(0));
    std::memcpy(out.raw(), static_cast<const char*>(x.raw()) + static_cast<std::size_t>(lo) * row,
                static_cast<std::size_t>(hi - lo) * row);
    return out;
}

// ---------------------------------------------------------------- the baseline conv net

struct ConvSettings {
    int epochs = 3;
    std::size_t batch = 128;
    double lr = 2e-3;  // Adam, as mnist_baselines
    std::int64_t width = 32;
    int groups = 8;
    int blocks = 1;
    nlohmann::json json() const {
        return {{"epochs", epochs}, {"batch", batch}, {"lr", lr}, {"optimizer", "adam"}, {"width", width},
                {"groups", groups}, {"residual_blocks", blocks}};
    }
};

// The MnistConvNet of mnist_baselines behind a standardisation with the MNIST constants, so that it takes
// pixels in [0, 1].
struct PixelConvNet {
    std::unique_ptr<nn::MnistConvNet> net;
    Var forward(const Var& x) const {
        const double m = data::mnist_stats.mean, s = data::mnist_stats.std;
        return net->forward((x - m) * (1.0 / s));
    }
};

inline std::unique_ptr<nn::MnistConvNet> make_convnet(const ConvSettings& s, double dropout, std::uint64_t seed) {
    Generator gen(seed, 1);
    nn::ConvNetConfig cfg;
    cfg.width = s.width;
    cfg.num_blocks = s.blocks;
    cfg.dropout = dropout;
    cfg.groups = s.groups;
    return std::make_unique<nn::MnistConvNet>(cfg, gen);
}

// Trains on x [n, 1, 28, 28] pixels, y; checkpoint after every epoch at ckpt (unless empty), used on
// resume only when written with the same config_key. Appends each epoch's seconds to epoch_seconds.
inline PixelConvNet train_convnet(const Tensor& x, std::span<const std::int32_t> y, double dropout,
                                  std::uint64_t seed, const ConvSettings& s, const std::string& ckpt,
                                  const std::string& config_key, bool resume, std::vector<double>* epoch_seconds) {
    PixelConvNet m{make_convnet(s, dropout, seed)};
    nn::Adam opt(m.net->trainable_parameters(), {.lr = s.lr});
    auto gens = m.net->named_generators();
    int start = 0;
    std::vector<double> secs;
    if (!ckpt.empty() && resume && std::filesystem::exists(ckpt)) {
        auto meta = nlohmann::json::parse(nn::read_checkpoint_file(ckpt).metadata);
        if (meta.value("config", "") == config_key) {
            nn::load_checkpoint(ckpt, *m.net, &opt, gens);
            start = meta.value("epochs_done", 0);
            secs = meta.value("epoch_seconds", std::vector<double>{});
        }
    }
    const std::size_t n = static_cast<std::size_t>(x.dim(0));
    data::BatchIterator it(n, std::min(s.batch, n), seed);
    m.net->train();
    for (int e = start; e < s.epochs; ++e) {
        const double t0 = experiment::wall_seconds();
        it.start_epoch(static_cast<std::uint64_t>(e));
        for (auto idx = it.next(); !idx.empty(); idx = it.next()) {
            Tensor xb = Tensor::empty({static_cast<std::int64_t>(idx.size()), 1, 28, 28}, DType::f32);
            std::vector<std::int32_t> yb;
            const std::size_t ss = 28 * 28;
            for (std::size_t i = 0; i < idx.size(); ++i) {
                std::memcpy(xb.data<float>() + i * ss, x.data<float>() + idx[i] * ss, ss * sizeof(float));
                yb.push_back(y[idx[i]]);
            }
            opt.zero_grad();
            backward(cross_entropy(m.forward(Var(xb)), yb));
            opt.step();
            reset_tape();
        }
        secs.push_back(experiment::wall_seconds() - t0);
        if (!ckpt.empty()) {
            nlohmann::json meta = {{"config", config_key}, {"epochs_done", e + 1}, {"epoch_seconds", secs}};
            nn::save_checkpoint(ckpt, *m.net, &opt, meta.dump(), gens);
        }
    }
    m.net->eval();
    if (epoch_seconds) epoch_seconds->insert(epoch_seconds->end(), secs.begin(), secs.end());
    return m;
}

// ---------------------------------------------------------------- SDE-Net

struct SdeNetSettings {
    int epochs = 3;
    std::size_t batch = 128;
    std::int64_t width = 32;
    // GroupNorm(min(max_groups, width), width): 8 groups keep at least 2 channels per group at every width
    // >= 16 (sde::SdeNet refuses one channel per group); the reference's width 64 uses 32.
    int max_groups = 8;
    double sigma_train = 20.0;
    double sigma_eval = 500.0;
    double lr = 0.1;             // classifier (downsampling, drift, head), the reference's
    double lr_diffusion = 0.01;  // the reference's
    // The reference's milestones (0-based epochs 10, 20, 30 of 40 for the classifier, 15 and 30 for the
    // diffusion) scaled to `epochs` (rounded), so that a shorter run keeps the shape of the schedule.
    bool scale_milestones = true;
    nlohmann::json json() const {
        return {{"epochs", epochs}, {"batch", batch}, {"width", width}, {"max_groups", max_groups},
                {"sigma_train", sigma_train},
                {"sigma_eval", sigma_eval}, {"milestones", scale_milestones ? "reference scaled to epochs" : "none"},
                {"lr", lr}, {"lr_diffusion", lr_diffusion},
                {"optimizer", "SGD, momentum 0.9, weight decay 5e-4 (reference)"}};
    }
    sde::SdeNetTrainConfig train_config() const {
        sde::SdeNetTrainConfig tc;
        tc.sigma_train = sigma_train;
        tc.lr = lr;
        tc.lr_diffusion = lr_diffusion;
        auto scale = [&](std::vector<std::int64_t> ms) {
            for (auto& m : ms) m = static_cast<std::int64_t>(std::lround(static_cast<double>(m) * epochs / 40.0));
            return ms;
        };
        if (scale_milestones) {
            tc.milestones = scale(tc.milestones);
            tc.milestones_diffusion = scale(tc.milestones_diffusion);
        } else {
            tc.milestones = {};
            tc.milestones_diffusion = {};
        }
        return tc;
    }
};

// What train_sdenet_epochs did: seconds and mean losses per epoch (the resumed epochs' from the checkpoint).
struct SdeNetTraining {
    std::vector<double> epoch_seconds;
    nlohmann::json losses = nlohmann::json::array();
    int resumed_epochs = 0;  // epochs restored from the checkpoint
};

// Trains an SDE-Net classifier for epochs [0, epochs) by trainer.train_epoch on `train` (batches of
// min(batch, n), shuffled by `shuffle_seed`; drop_last as the reference unless the set is smaller than a
// batch). With a checkpoint path: a checkpoint whose metadata "config" equals `config_key` is resumed from
// (if `resume`), and after every epoch the model, both optimizers, the generators, the epoch seconds and the
// losses are saved to it. on_epoch(e, stats) runs after each trained epoch (progress bars).
inline SdeNetTraining train_sdenet_epochs(
    sde::SdeNet& net, sde::SdeNetTrainer& trainer, const data::Dataset& train, int epochs, std::size_t batch,
    std::uint64_t shuffle_seed, bool drop_last, const std::string& ckpt, const std::string& config_key,
    bool resume, const std::function<void(int, const sde::SdeNetEpochStats&)>& on_epoch = {}) {
    SdeNetTraining r;
    if (!ckpt.empty() && resume && std::filesystem::exists(ckpt)) {
        const auto meta = nlohmann::json::parse(nn::read_checkpoint_file(ckpt).metadata, nullptr, false);
        if (!meta.is_discarded() && meta.value("config", "") == config_key) {
            sde::load_sdenet_checkpoint(ckpt, net, trainer);
            r.resumed_epochs = meta.value("epochs_done", 0);
            r.epoch_seconds = meta.value("epoch_seconds", std::vector<double>{});
            r.losses = meta.value("losses", nlohmann::json::array());
            std::fprintf(stderr, "resuming %s after epoch %d\n", ckpt.c_str(), r.resumed_epochs);
        }
    }
    const std::size_t b = std::min(batch, train.n);
    for (int e = r.resumed_epochs; e < epochs; ++e) {
        const double t0 = experiment::wall_seconds();
        const auto st = trainer.train_epoch(train, e, b, shuffle_seed, drop_last);
        r.epoch_seconds.push_back(experiment::wall_seconds() - t0);
        r.losses.push_back({{"epoch", e},
                            {"cross_entropy", st.mean.task_loss},
                            {"bce_in", st.mean.bce_in},
                            {"bce_out", st.mean.bce_out},
                            {"batches", st.batches}});
        if (!ckpt.empty()) {
            const nlohmann::json meta = {{"config", config_key},
                                         {"epochs_done", e + 1},
                                         {"epoch_seconds", r.epoch_seconds},
                                         {"losses", r.losses}};
            sde::save_sdenet_checkpoint(ckpt, net, trainer, meta.dump());
        }
        if (on_epoch) on_epoch(e, st);
    }
    return r;
}

// The flag check of an SDE-Net's GroupNorm: an error message naming the flags, or "" if the width and
// group count make a valid sde::SdeNet (min(max_groups, width) divides width, >= 2 channels per group).
inline std::string sdenet_groups_error(std::int64_t width, int max_groups, const std::string& width_flag,
                                       const std::string& groups_flag) {
    const std::int64_t g = std::min<std::int64_t>(max_groups, width);
    if (g < 1 || width % g != 0)
        return fmt::format("min({} {}, {} {}) = {} must divide {}", groups_flag, max_groups, width_flag, width, g,
                           width_flag);
    if (width / g < 2)
        return fmt::format("{} {} with {} {} gives one channel per GroupNorm group (an instance norm); use {} <= {}",
                           groups_flag, max_groups, width_flag, width, groups_flag, width / 2);
    return "";
}

inline std::unique_ptr<sde::SdeNet> make_sdenet(const SdeNetSettings& s, std::uint64_t seed) {
    Generator gen(seed, 1);
    sde::SdeNetConfig cfg;
    cfg.width = s.width;
    cfg.max_groups = s.max_groups;
    cfg.sigma = s.sigma_eval;
    return std::make_unique<sde::SdeNet>(cfg, gen);
}

// Trains SDE-Net with its two optimizers (SdeNetTrainer) on x, y; checkpoints as train_convnet. The model
// is returned at sigma_eval.
inline std::unique_ptr<sde::SdeNet> train_sdenet(const Tensor& x, std::span<const std::int32_t> y,
                                                 std::uint64_t seed, const SdeNetSettings& s,
                                                 const std::string& ckpt, const std::string& config_key,
                                                 bool resume, std::vector<double>* epoch_seconds) {
    auto model = make_sdenet(s, seed);
    sde::SdeNetTrainer tr(*model, s.train_config(), seed);
    // The reference drops the last partial batch; with a small labelled set that would drop everything, and
    // the active-learning rounds would lose a different part of their few images every epoch: kept here.
    const auto r = train_sdenet_epochs(*model, tr, as_dataset(x, y), s.epochs, s.batch, seed,
                                       /*drop_last=*/false, ckpt, config_key, resume);
    model->set_sigma(s.sigma_eval);
    model->eval();
    if (epoch_seconds) epoch_seconds->insert(epoch_seconds->end(), r.epoch_seconds.begin(), r.epoch_seconds.end());
    return model;
}

// ---------------------------------------------------------------- predictions

// Class probabilities of `passes` forward passes of f on x: out[k] is pass k's [n x C] (row-major f64).
// Runs in batches of 500 on nested tapes without gradients.
template <class F>
std::vector<std::vector<double>> pass_probs(F&& f, const Tensor& x, int passes, std::int64_t classes = 10) {
    const std::int64_t n = x.dim(0);
    std::vector<std::vector<double>> out(static_cast<std::size_t>(passes),
                                         std::vector<double>(static_cast<std::size_t>(n * classes)));
    for (std::int64_t lo = 0; lo < n; lo += 500) {
        const std::int64_t hi = std::min(n, lo + 500);
        NestedTape scope;
        NoGradScope ng;
        Var xb(rows(x, lo, hi));
        for (int k = 0; k < passes; ++k) {
            const Tensor p = softmax(f(xb), -1).value().to(DType::f64);
            std::copy_n(p.data<double>(), (hi - lo) * classes, out[static_cast<std::size_t>(k)].begin() + lo * classes);
        }
    }
    return out;
}

inline std::vector<double> mean_probs(const std::vector<std::vector<double>>& per_pass) {
    std::vector<double> m(per_pass.at(0).size(), 0.0);
    for (auto& p : per_pass)
        for (std::size_t i = 0; i < m.size(); ++i) m[i] += p[i] / static_cast<double>(per_pass.size());
    return m;
}

}  // namespace sdeuq::study
