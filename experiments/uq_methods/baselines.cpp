// The baselines of uq_benchmark, on the conv net of nn/models.hpp (MnistConvNet: SDE-Net's MNIST
// downsampling block, residual conv blocks, linear head), each registered with nn/uq_method.hpp:
//   deterministic  one net, softmax; OOD score: 1 - max probability
//   mc_dropout     the net with dropout, mc_samples masks averaged at test time (Gal & Ghahramani 2016);
//                  OOD score: predictive entropy; also mutual information (BALD)
//   deep_ensemble  `ensemble` independently seeded nets averaged (Lakshminarayanan et al. 2017); OOD score:
//                  predictive entropy; also mutual information
//   sngp           every convolution spectrally normalised + random-feature GP head, mean-field logits
//                  (Liu et al. 2020); OOD score: 1 - max probability; also the GP's predictive variance
#include <fmt/format.h>

#include "nn/data.hpp"
#include "nn/models.hpp"
#include "nn/uq_method.hpp"

using namespace sdeuq;
using namespace sdeuq::nn;

namespace {

ConvNetConfig conv_config(const UqSettings& s, double dropout) {
    ConvNetConfig c = conv_net_config(s);
    c.dropout = dropout;
    return c;
}

// What a checkpoint must agree with to be resumed from.
std::string config_key(const UqSettings& s, const std::string& method) {
    return fmt::format("{}|seed={}|epochs={}|batch={}|lr={}|width={}|blocks={}|groups={}|dropout={}|ens={}",
                       method, s.seed, s.epochs, s.batch, s.lr, s.width, s.blocks, s.groups, s.dropout,
                       s.ensemble);
}

class Deterministic : public UqMethod {
public:
    explicit Deterministic(const UqSettings& s) : s_(s) {}
    void fit(const data::Dataset& train) override {
        Generator gen(s_.seed, 1);
        net_ = std::make_unique<MnistConvNet>(conv_config(s_, 0.0), gen);
        train_classifier(
            *net_, [this](const Var& x) { return net_->forward(x); }, train, s_, s_.seed, "deterministic",
            config_key(s_, "deterministic"));
    }
    UqPrediction predict(const data::Dataset& images) override {
        net_->eval();
        return {predict_probs(images, s_.num_classes, [this](const Var& x) { return net_->forward(x); }), {}};
    }
    std::int64_t parameter_count() override { return net_->num_parameters(); }

private:
    UqSettings s_;
    std::unique_ptr<MnistConvNet> net_;
};

class McDropout : public UqMethod {
public:
    explicit McDropout(const UqSettings& s) : s_(s) {}
    void fit(const data::Dataset& train) override {
        Generator gen(s_.seed, 1);
        net_ = std::make_unique<MnistConvNet>(conv_config(s_, s_.dropout), gen);
        train_classifier(
            *net_, [this](const Var& x) { return net_->forward(x); }, train, s_, s_.seed, "mc_dropout",
            config_key(s_, "mc_dropout"));
    }
    UqPrediction predict(const data::Dataset& images) override {
        net_->eval();
        set_mc_dropout(*net_, true);
        std::vector<std::vector<double>> samples;
        for (int k = 0; k < s_.mc_samples; ++k)
            samples.push_back(
                predict_probs(images, s_.num_classes, [this](const Var& x) { return net_->forward(x); }));
        set_mc_dropout(*net_, false);
        UqPrediction p;
        p.probs.assign(samples[0].size(), 0.0);
        for (auto& sm : samples)
            for (std::size_t i = 0; i < sm.size(); ++i)
                p.probs[i] += sm[i] / static_cast<double>(samples.size());
        p.scores["mutual_information"] = mutual_information(samples, s_.num_classes);
        return p;
    }
    std::int64_t parameter_count() override { return net_->num_parameters(); }

private:
    UqSettings s_;
    std::unique_ptr<MnistConvNet> net_;
};

class DeepEnsemble : public UqMethod {
public:
    explicit DeepEnsemble(const UqSettings& s) : s_(s) {}
    void fit(const data::Dataset& train) override {
        members_.clear();
        for (int k = 0; k < s_.ensemble; ++k) {
            // Member seeds forked from the method's seed (data::splitmix64), so that members differ in
            // initialisation and minibatch order.
            const std::uint64_t seed =
                data::splitmix64(s_.seed ^ data::splitmix64(static_cast<std::uint64_t>(k) + 1));
            Generator gen(seed, 1);
            members_.push_back(std::make_unique<MnistConvNet>(conv_config(s_, 0.0), gen));
            MnistConvNet* m = members_.back().get();
            train_classifier(
                *m, [m](const Var& x) { return m->forward(x); }, train, s_, seed, fmt::format("member{}", k),
                config_key(s_, fmt::format("deep_ensemble{}", k)));
        }
    }
    UqPrediction predict(const data::Dataset& images) override {
        std::vector<std::vector<double>> samples;
        for (auto& m : members_) {
            m->eval();
            MnistConvNet* mp = m.get();
            samples.push_back(
                predict_probs(images, s_.num_classes, [mp](const Var& x) { return mp->forward(x); }));
        }
        UqPrediction p;
        p.probs.assign(samples[0].size(), 0.0);
        for (auto& sm : samples)
            for (std::size_t i = 0; i < sm.size(); ++i)
                p.probs[i] += sm[i] / static_cast<double>(samples.size());
        p.scores["mutual_information"] = mutual_information(samples, s_.num_classes);
        return p;
    }
    std::int64_t parameter_count() override {
        std::int64_t n = 0;
        for (auto& m : members_) n += m->num_parameters();
        return n;
    }

private:
    UqSettings s_;
    std::vector<std::unique_ptr<MnistConvNet>> members_;
};

// SNGP for images. Defaults (options sngp.KEY=VALUE): spectral-norm bound c = 6 (sngp.spec_norm_bound),
// the GP input layer-normalised (sngp.normalize_input 1) with kernel scale 2 (sngp.kernel_scale), 1024
// random features (sngp.num_inducing), ridge 1, the precision an exact sum over each epoch (momentum -1,
// restarted at every epoch start as in the SNGP tutorial), mean-field factor pi/8 (sngp.mean_field_factor;
// Liu et al. 2020, Section 3.2).
class Sngp : public UqMethod {
public:
    explicit Sngp(const UqSettings& s) : s_(s) {
        cfg_ = conv_config(s_, 0.0);
        cfg_.sngp = true;
        cfg_.spec_norm_bound = s.option("spec_norm_bound", 6.0);
        cfg_.gp.kernel_scale = s.option("kernel_scale", 2.0);
        cfg_.gp.normalize_input = s.option_int("normalize_input", 1) != 0;
        cfg_.gp.num_inducing = s.option_int("num_inducing", 1024);
        cfg_.gp.ridge = s.option("ridge", 1.0);
        mean_field_ = s.option("mean_field_factor", std::numbers::pi / 8.0);
        if (!(cfg_.spec_norm_bound > 0) || cfg_.gp.num_inducing < 1 || !(cfg_.gp.kernel_scale > 0))
            throw std::invalid_argument(
                "sngp: spec_norm_bound and kernel_scale must be > 0, num_inducing >= 1");
    }
    void fit(const data::Dataset& train) override {
        Generator gen(s_.seed, 1);
        net_ = std::make_unique<MnistConvNet>(cfg_, gen);
        const std::string key =
            config_key(s_, "sngp") + fmt::format("|c={}|ks={}|ni={}|m={}", cfg_.spec_norm_bound,
                                                 cfg_.gp.kernel_scale, cfg_.gp.normalize_input,
                                                 cfg_.gp.num_inducing);
        train_classifier(
            *net_, [this](const Var& x) { return net_->forward(x); }, train, s_, s_.seed, "sngp", key,
            [this](int) { net_->reset_precision(); });
    }
    UqPrediction predict(const data::Dataset& images) override {
        net_->eval();
        const auto c = static_cast<std::size_t>(s_.num_classes);
        UqPrediction p;
        p.probs.assign(images.n * c, 0.0);
        auto& var = p.scores["gp_variance"];
        var.assign(images.n, 0.0);
        NoGradScope ng;
        std::vector<std::size_t> idx;
        std::vector<std::int32_t> yb;
        for (std::size_t lo = 0; lo < images.n; lo += 500) {
            const std::size_t hi = std::min(images.n, lo + 500);
            idx.resize(hi - lo);
            for (std::size_t i = lo; i < hi; ++i) idx[i - lo] = i;
            GpPrediction g = net_->predict(Var(data::batch_tensor(images, idx, yb)));
            Var pr = softmax(mean_field_logits(g.logits, g.variance, mean_field_), -1);
            for (std::size_t i = 0; i < (hi - lo) * c; ++i)
                p.probs[lo * c + i] = pr.value().flat(static_cast<std::int64_t>(i));
            for (std::size_t i = 0; i < hi - lo; ++i)
                var[lo + i] = g.variance.flat(static_cast<std::int64_t>(i));
            reset_tape();
        }
        return p;
    }
    std::int64_t parameter_count() override { return net_->num_parameters(); }

private:
    UqSettings s_;
    ConvNetConfig cfg_;
    double mean_field_ = 0;
    std::unique_ptr<MnistConvNet> net_;
};

}  // namespace

SDEUQ_REGISTER_UQ_METHOD(deterministic, "Deterministic", "conv net, softmax", "max_prob", Deterministic)
SDEUQ_REGISTER_UQ_METHOD(mc_dropout, "MC dropout", "conv net with dropout, masks averaged at test time",
                         "entropy", McDropout)
SDEUQ_REGISTER_UQ_METHOD(deep_ensemble, "Deep ensemble", "independently seeded conv nets averaged", "entropy",
                         DeepEnsemble)
SDEUQ_REGISTER_UQ_METHOD(sngp, "SNGP", "spectral-normalised conv net + random-feature GP head (mean field)",
                         "max_prob", Sngp)
