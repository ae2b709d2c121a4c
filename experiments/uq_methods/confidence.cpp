// Learned confidence and its peer ODIN in uq_benchmark, on the benchmark's conv net (MnistConvNet, the same
// configuration as the baselines in baselines.cpp), each registered with nn/uq_method.hpp:
//   learned_confidence  the net with the confidence branch c = sigmoid(Linear(features -> 1)), trained with
//                       hints and the budget (DeVries & Taylor 2018, nn/confidence.hpp); OOD score
//                       "confidence" = 1 - c; also "confidence_preprocessed" = 1 - c(x') with
//                       x' = x - eps sign(grad_x mean(-log c)) (their section 3.3)
//   odin                a plain net trained exactly as `deterministic` (with this method's own seed); OOD
//                       score "odin" = 1 - max softmax(logits(x') / T), x' the ODIN step (Liang et al. 2018)
// The benchmark shows a method only its training images, so epsilon cannot be tuned on OOD data here: it
// is an option (--option learned_confidence.eps=E, --option odin.eps=E; default 0.001, the reference's
// default, in the benchmark's standardised units); experiments/confidence_ood tunes it on held-out images.
// Options: learned_confidence.hint_prob (0.5), .lambda0 (0.1), .beta (0.3), .eps;
// odin.temperature (1000), odin.eps.
#include <fmt/format.h>

#include <filesystem>

#include "nn/checkpoint.hpp"
#include "nn/confidence.hpp"
#include "nn/data.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"
#include "nn/uq_method.hpp"

using namespace sdeuq;
using namespace sdeuq::nn;

namespace {

std::string config_key(const UqSettings& s, const std::string& method) {
    std::string opts;
    for (const auto& [k, v] : s.options) opts += k + "=" + v + ";";
    return fmt::format("{}|seed={}|epochs={}|batch={}|lr={}|width={}|blocks={}|groups={}|{}", method, s.seed,
                       s.epochs, s.batch, s.lr, s.width, s.blocks, s.groups, opts);
}

// Images lo..hi of ds as one tensor [hi - lo, C, H, W].
Tensor chunk(const data::Dataset& ds, std::size_t lo, std::size_t hi) {
    std::vector<std::size_t> idx(hi - lo);
    for (std::size_t i = lo; i < hi; ++i) idx[i - lo] = i;
    std::vector<std::int32_t> yb;
    return data::batch_tensor(ds, idx, yb);
}

constexpr std::size_t predict_chunk = 500;

class LearnedConfidence : public UqMethod {
public:
    explicit LearnedConfidence(const UqSettings& s) : s_(s) {
        hint_prob_ = s.option("hint_prob", 0.5);
        budget_.lambda0 = s.option("lambda0", 0.1);
        budget_.beta = s.option("beta", 0.3);
        eps_ = s.option("eps", 0.001);
        if (!(hint_prob_ >= 0 && hint_prob_ <= 1) || !(budget_.lambda0 > 0) || !(budget_.beta > 0) ||
            !(eps_ >= 0))
            throw std::invalid_argument(fmt::format(
                "learned_confidence: hint_prob {} must be in [0, 1], lambda0 {} and beta {} > 0, eps {} >= 0",
                hint_prob_, budget_.lambda0, budget_.beta, eps_));
    }

    void fit(const data::Dataset& train) override {
        namespace fs = std::filesystem;
        using nlohmann::json;
        Generator gen(s_.seed, 1);
        auto net = std::make_shared<MnistConvNet>(conv_net_config(s_), gen);
        model_ = std::make_unique<ConfidenceClassifier>(net, gen);
        Adam opt(model_->trainable_parameters(), {.lr = s_.lr});
        auto gens = model_->named_generators();
        const std::string key = config_key(s_, "learned_confidence");
        const std::string path = s_.checkpoint_dir.empty()
                                     ? ""
                                     : (fs::path(s_.checkpoint_dir) / "learned_confidence.ckpt").string();
        double lambda = budget_.lambda0;
        int start = 0;
        if (!path.empty() && s_.resume && fs::exists(path)) {
            auto meta = json::parse(read_checkpoint_file(path).metadata);
            if (meta.value("config", "") == key) {
                load_checkpoint(path, *model_, &opt, gens);
                start = meta.value("epochs_done", 0);
                lambda = meta.value("lambda", lambda);  // the budget's state is part of the run
                for (int e = 0; e < start; ++e)
                    if (s_.on_epoch) s_.on_epoch();
            }
        }
        data::BatchIterator it(train.n, s_.batch, s_.seed);
        const Generator hint_root(s_.seed, 12);
        std::vector<std::int32_t> yb;
        model_->train();
        for (int e = start; e < s_.epochs; ++e) {
            it.start_epoch(static_cast<std::uint64_t>(e));
            std::uint64_t nb = 0;
            for (auto idx = it.next(); !idx.empty(); idx = it.next(), ++nb) {
                Tensor x = data::batch_tensor(train, idx, yb);
                // Hints from a generator forked per (epoch, batch): a resumed run draws the same ones.
                Generator hg = hint_root.fork(static_cast<std::uint64_t>(e) * 1000003 + nb);
                const auto hints = draw_hints(idx.size(), hint_prob_, hg);
                opt.zero_grad();
                confidence_backward(*model_, Var(x), yb, hints, lambda, budget_);
                opt.step();
                reset_tape();
            }
            if (!path.empty()) {
                fs::create_directories(s_.checkpoint_dir);
                json meta = {{"config", key}, {"epochs_done", e + 1}, {"lambda", lambda}};
                save_checkpoint(path, *model_, &opt, meta.dump(), gens);
            }
            if (s_.on_epoch) s_.on_epoch();
        }
        model_->eval();
    }

    UqPrediction predict(const data::Dataset& images) override {
        model_->eval();
        UqPrediction p;
        p.probs = predict_probs(images, s_.num_classes, [this](const Var& x) { return model_->forward(x); });
        auto& conf = p.scores["confidence"];
        auto& pre = p.scores["confidence_preprocessed"];
        for (std::size_t lo = 0; lo < images.n; lo += predict_chunk) {
            const std::size_t hi = std::min(images.n, lo + predict_chunk);
            Tensor x = chunk(images, lo, hi);
            for (double c : confidence_scores(*model_, x)) conf.push_back(1.0 - c);
            for (double c : confidence_scores(*model_, confidence_perturb(*model_, x, eps_)))
                pre.push_back(1.0 - c);
            reset_tape();
        }
        return p;
    }
    std::int64_t parameter_count() override { return model_->num_parameters(); }

private:
    UqSettings s_;
    double hint_prob_ = 0.5, eps_ = 0.001;
    BudgetOptions budget_;
    std::unique_ptr<ConfidenceClassifier> model_;
};

class Odin : public UqMethod {
public:
    explicit Odin(const UqSettings& s) : s_(s) {
        temperature_ = s.option("temperature", 1000.0);
        eps_ = s.option("eps", 0.001);
        if (!(temperature_ > 0) || !(eps_ >= 0))
            throw std::invalid_argument(
                fmt::format("odin: temperature {} must be > 0 and eps {} >= 0", temperature_, eps_));
    }
    void fit(const data::Dataset& train) override {
        // The deterministic baseline's network and training; the benchmark gives each method its own seed.
        Generator gen(s_.seed, 1);
        net_ = std::make_unique<MnistConvNet>(conv_net_config(s_), gen);
        train_classifier(
            *net_, [this](const Var& x) { return net_->forward(x); }, train, s_, s_.seed, "odin",
            config_key(s_, "odin"));
    }
    UqPrediction predict(const data::Dataset& images) override {
        net_->eval();
        UqPrediction p;
        p.probs = predict_probs(images, s_.num_classes, [this](const Var& x) { return net_->forward(x); });
        auto& odin = p.scores["odin"];
        for (std::size_t lo = 0; lo < images.n; lo += predict_chunk) {
            const std::size_t hi = std::min(images.n, lo + predict_chunk);
            Tensor x = chunk(images, lo, hi);
            const Tensor xp = odin_perturb(*net_, x, temperature_, eps_);
            for (double m : max_softmax_scores(*net_, xp, temperature_)) odin.push_back(1.0 - m);
            reset_tape();
        }
        return p;
    }
    std::int64_t parameter_count() override { return net_->num_parameters(); }

private:
    UqSettings s_;
    double temperature_ = 1000, eps_ = 0.001;
    std::unique_ptr<MnistConvNet> net_;
};

}  // namespace

SDEUQ_REGISTER_UQ_METHOD(learned_confidence, "Learned confidence",
                         "conv net + confidence branch trained with hints and budget (DeVries & Taylor 2018)",
                         "confidence", LearnedConfidence)
SDEUQ_REGISTER_UQ_METHOD(odin, "ODIN",
                         "conv net trained as deterministic; max softmax at T = 1000 of the perturbed input "
                         "(Liang et al. 2018)",
                         "odin", Odin)
