// SDE-BNN (Xu et al. 2022; sde/sdebnn.hpp SDEBNNClassifier) as a uq_benchmark method: the benchmark's conv
// downsampler and head (MnistConvNet's, at the benchmark's width and groups) around `blocks` SDE-BNN blocks
// of concat-time 3x3 convolutions width -> width -> width (softplus) whose weights follow
// dw = (-w + r_phi(t, w)) dt + sigma dB against the OU prior dw = -w dt + sigma dB.
//
// Training: one weight path per minibatch (the reference), loss = mean cross-entropy + kl_coef * KL /
// N_train (kl_coef 1e-3, the reference's tempered ELBO), Adam at the benchmark's rate and batch, KL by STL,
// gradients by backprop through Euler-Maruyama; checkpointed after every epoch. Prediction: class
// probabilities averaged over mc_samples weight paths (the benchmark's sample count); OOD score the
// predictive entropy; also the mutual information between the prediction and the weight path (BALD).
//
// Options (--option sdebnn.KEY=VALUE): steps (solver steps per block; quick 4, full 19 as the reference),
// sigma (quick 0.05, full 0.2 the reference's; see experiments/sdebnn_classification.cpp for why quick
// differs), kl_coef (1e-3), hidden (drift hidden channels; default the width), kl (plain, full, stl).
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "nn/checkpoint.hpp"
#include "nn/data.hpp"
#include "nn/optim.hpp"
#include "nn/uq_method.hpp"
#include "sde/sdebnn.hpp"

using namespace sdeuq;
using namespace sdeuq::nn;

namespace {

class SdeBnn : public UqMethod {
public:
    explicit SdeBnn(const UqSettings& s) : s_(s) {
        cfg_.in_channels = static_cast<std::int64_t>(s.input_shape.at(0));
        cfg_.width = s.width;
        cfg_.hidden = s.option_int("hidden", s.width);
        cfg_.num_classes = s.num_classes;
        cfg_.groups = s.groups;
        cfg_.blocks = s.blocks;
        cfg_.block.steps = static_cast<int>(s.option_int("steps", s.quick ? 4 : 19));
        cfg_.block.sigma = s.option("sigma", s.quick ? 0.05 : 0.2);
        cfg_.block.hyper_hidden = {2, 64, 2};  // the reference's hypernet
        cfg_.block.hyper_act = Act::softplus;
        const std::string kl = s.option_str("kl", "stl");
        if (kl != "plain" && kl != "full" && kl != "stl")
            throw std::invalid_argument(fmt::format("sdebnn: kl must be plain, full or stl (got '{}')", kl));
        cfg_.block.kl = kl == "plain" ? sde::KLEstimator::plain
                                      : (kl == "full" ? sde::KLEstimator::full : sde::KLEstimator::stl);
        kl_name_ = kl;
        kl_coef_ = s.option("kl_coef", 1e-3);
        if (cfg_.block.steps < 1 || cfg_.hidden < 1 || !(cfg_.block.sigma > 0) || !(kl_coef_ >= 0) ||
            cfg_.blocks < 1)
            throw std::invalid_argument(
                fmt::format("sdebnn: steps, hidden and blocks must be >= 1, sigma > 0, kl_coef >= 0 (got "
                            "steps {}, hidden {}, blocks {}, sigma {}, kl_coef {})",
                            cfg_.block.steps, cfg_.hidden, cfg_.blocks, cfg_.block.sigma, kl_coef_));
    }

    void fit(const data::Dataset& train) override {
        namespace fs = std::filesystem;
        Generator gen(s_.seed, 1);
        model_ = std::make_unique<sde::SDEBNNClassifier>(cfg_, gen);
        Adam opt(model_->trainable_parameters(), {.lr = s_.lr});
        const std::string key =
            fmt::format("sdebnn|seed={}|epochs={}|batch={}|lr={}|width={}|hidden={}|blocks={}|groups={}|"
                        "steps={}|sigma={}|kl={}|kl_coef={}",
                        s_.seed, s_.epochs, s_.batch, s_.lr, cfg_.width, cfg_.hidden, cfg_.blocks,
                        cfg_.groups, cfg_.block.steps, cfg_.block.sigma, kl_name_, kl_coef_);
        const std::string path =
            s_.checkpoint_dir.empty() ? "" : (fs::path(s_.checkpoint_dir) / "sdebnn.ckpt").string();
        int start = 0;
        if (!path.empty() && s_.resume && fs::exists(path)) {
            // Only a checkpoint written by the same configuration is resumed from.
            auto meta = nlohmann::json::parse(read_checkpoint_file(path).metadata);
            if (meta.value("config", "") == key) {
                load_checkpoint(path, *model_, &opt);
                start = meta.value("epochs_done", 0);
                for (int e = 0; e < start; ++e)
                    if (s_.on_epoch) s_.on_epoch();
                std::fprintf(stderr, "resuming %s after epoch %d\n", path.c_str(), start);
            }
        }
        data::BatchIterator it(train.n, s_.batch, s_.seed);
        const Generator noise(s_.seed, 2);
        std::vector<std::int32_t> yb;
        const double n_train = static_cast<double>(train.n);
        for (int e = start; e < s_.epochs; ++e) {
            it.start_epoch(static_cast<std::uint64_t>(e));
            std::uint64_t step = 0;
            for (auto idx = it.next(); !idx.empty(); idx = it.next(), ++step) {
                Tensor x = data::batch_tensor(train, idx, yb);
                opt.zero_grad();
                // Each minibatch's Brownian paths from its own stream: the same draws on resume.
                const std::uint64_t stream = static_cast<std::uint64_t>(e) << 32 | step;
                sde::ClassifierOutput o = model_->forward(Var(x), 1, seed_of(noise.fork(stream)));
                backward(cross_entropy(o.logits, yb) + sum(o.kl) * (kl_coef_ / n_train));
                opt.step();
                reset_tape();
            }
            if (!path.empty()) {
                fs::create_directories(s_.checkpoint_dir);
                nlohmann::json meta = {{"config", key}, {"epochs_done", e + 1}};
                save_checkpoint(path, *model_, &opt, meta.dump());
            }
            if (s_.on_epoch) s_.on_epoch();
        }
    }

    UqPrediction predict(const data::Dataset& images) override {
        const auto c = static_cast<std::size_t>(s_.num_classes);
        const int paths = s_.mc_samples;
        std::vector<std::vector<double>> samples(static_cast<std::size_t>(paths),
                                                 std::vector<double>(images.n * c, 0.0));
        NoGradScope ng;
        const Generator noise(s_.seed, 3);
        std::vector<std::size_t> idx;
        std::vector<std::int32_t> yb;
        for (std::size_t lo = 0; lo < images.n; lo += 250) {
            const std::size_t hi = std::min(images.n, lo + 250), nb = hi - lo;
            idx.resize(nb);
            for (std::size_t i = lo; i < hi; ++i) idx[i - lo] = i;
            // Each chunk's paths from a stream named by its first image: independent of the chunk order.
            Var p = softmax(model_->forward(Var(data::batch_tensor(images, idx, yb)), paths,
                                            seed_of(noise.fork(lo)))
                                .logits,
                            -1);  // [paths * nb, classes]: row r * nb + i
            const Tensor& v = p.value();
            for (int r = 0; r < paths; ++r)
                for (std::size_t i = 0; i < nb * c; ++i)
                    samples[static_cast<std::size_t>(r)][lo * c + i] =
                        v.flat(static_cast<std::int64_t>(static_cast<std::size_t>(r) * nb * c + i));
            reset_tape();
        }
        UqPrediction out;
        out.probs.assign(images.n * c, 0.0);
        for (auto& sm : samples)
            for (std::size_t i = 0; i < sm.size(); ++i) out.probs[i] += sm[i] / static_cast<double>(paths);
        out.scores["mutual_information"] = mutual_information(samples, s_.num_classes);
        return out;
    }

    std::int64_t parameter_count() override { return model_->num_parameters(); }

private:
    static std::uint64_t seed_of(Generator g) { return (static_cast<std::uint64_t>(g()) << 32) | g(); }

    UqSettings s_;
    sde::SDEBNNClassifierConfig cfg_;
    std::string kl_name_;
    double kl_coef_ = 1e-3;
    std::unique_ptr<sde::SDEBNNClassifier> model_;
};

}  // namespace

SDEUQ_REGISTER_UQ_METHOD(sdebnn, "SDE-BNN",
                         "conv net with SDE-BNN blocks (weights an SDE), weight paths averaged at test time",
                         "entropy", SdeBnn)
