// SDE-Net (Kong, Sun & Zhang, "SDE-Net: equipping deep neural networks with uncertainty estimates",
// ICML 2020; github.com/Lingkai-Kong/SDE-Net): a network whose hidden state follows the SDE
//     dx = f(t, x) dt + sigma g(x0) dW                                   (paper, eq. 4)
// integrated by Euler-Maruyama over `steps` steps of dt = t_end / steps,
//     x_{k+1} = x_k + f(t_k, x_k) dt + sigma g(x0) sqrt(dt) eps_k,  t_k = k dt,  eps_k ~ N(0, I)  (eq. 5)
// where the drift f is a small conv net and the diffusion g a net with a sigmoid output, one scalar per
// sample, evaluated once on the initial state x0 (as the reference code does). The drift and head are
// trained by cross-entropy on a noisy pass; the diffusion is trained separately to output 0 on training data
// and 1 on pseudo out-of-distribution inputs x + 2 N(0, I) (paper, eq. 7, with BCE as in the reference).
//
// Layers follow the reference's MNIST model exactly (REFERENCES.md, "SDE-Net"): 283,723 parameters at the
// default configuration. Every number is a config field.
//
// Public API for experiments (studies, benchmarks):
//   SdeNet net(SdeNetConfig{}, gen);                 // construct (reference init)
//   SdeNetTrainer tr(net, SdeNetTrainConfig{}, seed);
//   tr.train_epoch(dataset, epoch, 128, shuffle_seed);  // or per batch: tr.set_epoch(e); tr.step(x, y);
//   net.set_sigma(500); predict_probs(net, x, 10);   // averaged softmax over passes [N, C] (f64)
//   diffusion_score(net, x);                         // g(h0(x)) per sample [N] (f64), high = OOD
//   save_sdenet_checkpoint / load_sdenet_checkpoint  // model, both optimizers, generators
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "nn/checkpoint.hpp"
#include "nn/data.hpp"
#include "nn/layers.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"

namespace sdeuq::sde {

// A convolution whose input gets a constant channel holding t prepended (channel 0, as the reference's
// ConcatConv2d: torch.cat([tt, x], 1)): in + 1 -> out channels.
class ConcatConv2d : public nn::Module {
public:
    ConcatConv2d(std::int64_t in, std::int64_t out, int kernel, Generator& gen, nn::Conv2dOptions opt = {});
    std::string describe() const override;
    Var forward(double t, const Var& x);
    Var forward(const Var& x) override { return forward(0.0, x); }
    nn::Conv2d& conv() { return *conv_; }

private:
    std::int64_t in_;
    DType dtype_;
    std::shared_ptr<nn::Conv2d> conv_;
};

// What the two SDE-Nets (SdeNet for images, SdeNetRegression) share: the diffusion scale sigma, the
// registered generator "noise" of the Brownian increments, the Euler-Maruyama loop (eq. 5), the split of
// the parameters between the two optimizers, and the diffusion's logit on the detached initial state, which
// SdeNetTrainer trains and diffusion_score reads.
class SdeNetBase : public nn::Module {
public:
    double sigma() const { return sigma_; }
    void set_sigma(double s);
    Generator& noise_generator() { return noise_; }
    // h0: the downsampling of x (checks x's shape and dtype).
    virtual Var downsample(const Var& x) = 0;
    // The diffusion's logit [N, 1] on detach(downsample(x)) (the diffusion-training pass).
    virtual Var diffusion_logit(const Var& x) = 0;
    // sigmoid of diffusion_logit: [N, 1] in (0, 1), high = out of distribution.
    Var diffusion(const Var& x) { return sigmoid(diffusion_logit(x)); }
    // What the two optimizers update: downsampling, drift and head; and the diffusion net.
    virtual std::vector<Parameter*> classifier_parameters() = 0;
    virtual std::vector<Parameter*> diffusion_parameters() = 0;
    // The dtype the model computes in (inputs of other dtypes are converted by the evaluation helpers).
    DType dtype() const { return dtype_; }

protected:
    // `who` names the model in error messages.
    SdeNetBase(const char* who, double sigma, int steps, double t_end, DType dtype);
    // Draws the noise generator as a child stream of `gen` and registers it; called once, last, by the
    // derived constructor (after the parameter init, which draws from `gen` first).
    void init_noise(Generator& gen);
    // x_{k+1} = x_k + f(t_k, x_k) dt + sigma g(x0) sqrt(dt) eps_k over `steps` steps from h (eq. 5), eps_k
    // drawn from `noise`; g0 = g(x0), shaped to broadcast against h.
    Var euler_maruyama(Var h, const Var& g0, double sigma, Generator& noise,
                       const std::function<Var(double, const Var&)>& drift) const;
    const char* who_;

private:
    double sigma_;
    int steps_;
    double t_end_;
    DType dtype_;
    Generator noise_;
};

struct SdeNetConfig {
    std::int64_t in_channels = 1;
    std::int64_t width = 64;  // channels of the SDE state
    std::int64_t num_classes = 10;
    int max_groups = 32;         // GroupNorm(min(max_groups, C), C); at least 2 channels per group
    int steps = 6;               // Euler-Maruyama steps ("layer_depth")
    double t_end = 6.0;          // integration time; dt = t_end / steps
    double sigma = 500.0;        // diffusion scale of forward(x) (the reference evaluates at 500)
    bool reference_init = true;  // convs Kaiming normal fan_out, Linear N(0, 1e-3^2), biases 0
    double linear_init_std = 1e-3;
    DType dtype = DType::f32;
};

// Drift f(t, x): GN, ReLU, ConcatConv, GN, ReLU, ConcatConv, GN (C -> C, 3x3, padding 1).
class SdeNetDrift : public nn::Module {
public:
    SdeNetDrift(std::int64_t width, int groups, Generator& gen, DType dtype);
    std::string describe() const override;
    Var forward(double t, const Var& x);
    Var forward(const Var& x) override { return forward(0.0, x); }

private:
    std::int64_t width_;
    std::shared_ptr<nn::GroupNorm> gn1_, gn2_, gn3_;
    std::shared_ptr<ConcatConv2d> cc1_, cc2_;
};

// Diffusion g(t, x): GN, ReLU, ConcatConv, GN, ReLU, ConcatConv, GN, ReLU, global average pool,
// Linear(C, 1), sigmoid. forward_logit() stops before the sigmoid ([N, 1]).
class SdeNetDiffusion : public nn::Module {
public:
    SdeNetDiffusion(std::int64_t width, int groups, Generator& gen, DType dtype);
    std::string describe() const override;
    Var forward_logit(double t, const Var& x);
    Var forward(double t, const Var& x) { return sigmoid(forward_logit(t, x)); }
    Var forward(const Var& x) override { return forward(0.0, x); }

private:
    std::int64_t width_;
    std::shared_ptr<nn::GroupNorm> gn1_, gn2_, gn3_;
    std::shared_ptr<ConcatConv2d> cc1_, cc2_;
    std::shared_ptr<nn::Linear> fc_;
};

// The MNIST SDE-Net: downsampling (conv 3x3 s1 p0, GN, ReLU, conv 4x4 s2 p1, GN, ReLU, conv 4x4 s2 p1;
// 28x28 -> 6x6, not normalised at the end), the SDE, and the head GN, ReLU, global average pool,
// Linear(C, classes). Children: "down", "drift", "diffusion", "head"; one registered generator "noise"
// draws the Brownian increments (so a checkpoint restores it).
class SdeNet : public SdeNetBase {
public:
    SdeNet(const SdeNetConfig& cfg, Generator& gen);
    std::string describe() const override;
    // Logits [N, classes] of one stochastic pass at sigma() with the model's noise generator.
    Var forward(const Var& x) override { return forward(x, sigma(), noise_generator()); }
    // Logits of one pass at the given sigma drawing eps from `noise`. The diffusion is not detached (as in
    // the reference: the cross-entropy reaches the downsampling through sigma g(h0) eps too).
    // forward(x, sigma, noise) = forward_from(start(x), sigma, noise).
    Var forward(const Var& x, double sigma, Generator& noise);
    // The deterministic part of a pass: h0 = downsample(x) and g(h0) as [N, 1, 1, 1].
    struct Start {
        Var h0, g;
    };
    Start start(const Var& x);
    // The stochastic part: Euler-Maruyama from s.h0 with sigma s.g sqrt(dt) eps (eps from `noise`), then
    // the head. Several passes on one input share one start (predict_probs: h0 and g once, not per pass).
    Var forward_from(const Start& s, double sigma, Generator& noise);
    // [N, C, H', W'] after the downsampling block.
    Var downsample(const Var& x) override;
    Var diffusion_logit(const Var& x) override;
    std::vector<Parameter*> classifier_parameters() override;
    std::vector<Parameter*> diffusion_parameters() override;
    const SdeNetConfig& config() const { return cfg_; }
    SdeNetDrift& drift() { return *drift_; }
    SdeNetDiffusion& diffusion_net() { return *diffusion_; }

private:
    SdeNetConfig cfg_;
    std::shared_ptr<nn::Sequential> down_, head_;
    std::shared_ptr<SdeNetDrift> drift_;
    std::shared_ptr<SdeNetDiffusion> diffusion_;
};

// ---- regression variant (the reference's YearMSD model) ----
//   h0 = Linear(d, hidden)(x); SDE over `steps` steps of dt = t_end / steps with drift ReLU(Linear(hidden,
//   hidden)) (t unused) and diffusion Linear(hidden, dh), ReLU, Linear(dh, 1), sigmoid on h0; then ReLU,
//   Linear(hidden, 2): mean = out[:, 0], std = softplus(out[:, 1]) + 1e-3.
struct SdeNetRegressionConfig {
    std::int64_t in_dim = 13;
    std::int64_t hidden = 50;
    std::int64_t diffusion_hidden = 100;
    int steps = 4;
    double t_end = 4.0;
    double sigma = 0.5;
    double min_std = 1e-3;
    // false (default): PyTorch's default Linear init, as the reference's regression model (it calls no
    // init); true: Linear weights N(0, linear_init_std^2), biases 0 (the MNIST model's init).
    bool reference_init = false;
    double linear_init_std = 1e-3;
    DType dtype = DType::f32;
};

struct RegressionOutput {
    Var mean;  // [N]
    Var std;   // [N]
};

class SdeNetRegression : public SdeNetBase {
public:
    SdeNetRegression(const SdeNetRegressionConfig& cfg, Generator& gen);
    std::string describe() const override;
    RegressionOutput predict(const Var& x) { return predict(x, sigma(), noise_generator()); }
    RegressionOutput predict(const Var& x, double sigma, Generator& noise);
    // [N, 2]: mean and std as columns.
    Var forward(const Var& x) override;
    Var downsample(const Var& x) override;
    Var diffusion_logit(const Var& x) override;
    std::vector<Parameter*> classifier_parameters() override;
    std::vector<Parameter*> diffusion_parameters() override;
    const SdeNetRegressionConfig& config() const { return cfg_; }

private:
    SdeNetRegressionConfig cfg_;
    std::shared_ptr<nn::Linear> down_, drift_, diff1_, diff2_, head_;
};

// The reference's regression loss mean(log s^2 + (y - m)^2 / s^2) = 2 * Gaussian NLL - log(2 pi).
Var sdenet_regression_loss(const RegressionOutput& out, const Var& y);

// ---- the two-optimizer training ----

struct SdeNetTrainConfig {
    double lr = 0.1;  // classifier (downsampling, drift, head)
    // 0-based epochs AFTER which lr *= gamma, as the reference (`if epoch in decreasing_lr` at the end of
    // epoch `epoch`): with {10, 20, 30}, epochs 0-10 run at lr, 11-20 at lr/10, 21-30 at lr/100, 31- at
    // lr/1000.
    std::vector<std::int64_t> milestones = {10, 20, 30};
    double lr_diffusion = 0.01;
    std::vector<std::int64_t> milestones_diffusion = {15, 30};
    double gamma = 0.1;
    double momentum = 0.9;
    double weight_decay = 5e-4;  // on every parameter (as the reference)
    double sigma_train = 20.0;   // sigma of the cross-entropy pass
    double ood_noise_std = 2.0;  // pseudo-OOD x + ood_noise_std N(0, I)
    // > 0: before the classifier step, clip the gradient norm of all the model's parameters (the
    // diffusion's included, as the reference's clip_grad_norm_(net.parameters(), 100) in its regression).
    double clip_classifier = 0.0;
};

struct SdeNetStepStats {
    double task_loss = 0;  // cross-entropy (classification) or the reference loss (regression)
    double bce_in = 0;     // BCE(g(h0(x)), 0)
    double bce_out = 0;    // BCE(g(h0(x + noise)), 1)
};

struct SdeNetEpochStats {
    SdeNetStepStats mean;  // batch means of the step statistics
    std::int64_t batches = 0;
};

// Holds the two SGD optimizers, their milestone schedules and the pseudo-OOD generator. Works for both
// SdeNet (labels) and SdeNetRegression (targets).
class SdeNetTrainer {
public:
    SdeNetTrainer(SdeNet& model, const SdeNetTrainConfig& cfg, std::uint64_t seed);
    SdeNetTrainer(SdeNetRegression& model, const SdeNetTrainConfig& cfg, std::uint64_t seed);
    // Sets both learning rates for 0-based epoch e (see SdeNetTrainConfig::milestones).
    void set_epoch(std::int64_t e);
    // The sigma of the task-loss pass (the reference's regression trains at 0.1, then 0.5 from epoch 30).
    void set_sigma_train(double s);
    // One batch: step_classifier then step_diffusion.
    SdeNetStepStats step(const Tensor& x, std::span<const std::int32_t> labels);
    SdeNetStepStats step(const Tensor& x, const Tensor& y);  // regression, y [N]
    // One epoch of the classification model on an image data set (images [n x C x H x W] as
    // Dataset.shape): set_epoch(epoch), then step() over the batches of data::BatchIterator(ds.n, batch,
    // shuffle_seed, shuffle, drop_last) for this epoch (the reference drops the last partial batch).
    // max_batches > 0 stops early (tests, smoke runs).
    SdeNetEpochStats train_epoch(const data::Dataset& ds, std::int64_t epoch, std::size_t batch,
                                 std::uint64_t shuffle_seed, bool drop_last = true,
                                 std::size_t max_batches = 0);
    // (1) task loss of a stochastic pass at sigma_train, step the classifier optimizer. Returns the loss.
    double step_classifier(const Tensor& x, std::span<const std::int32_t> labels);
    double step_classifier(const Tensor& x, const Tensor& y);
    // (2) BCE of the diffusion on detached features, in-batch target 0, x + ood_noise_std N(0, I) target 1,
    // step the diffusion optimizer. Returns {bce_in, bce_out}.
    std::pair<double, double> step_diffusion(const Tensor& x);

    nn::SGD& classifier_optimizer() { return *opt_f_; }
    nn::SGD& diffusion_optimizer() { return *opt_g_; }
    Generator& ood_generator() { return ood_gen_; }
    const SdeNetTrainConfig& config() const { return cfg_; }

private:
    SdeNetTrainer(SdeNetBase& model, const SdeNetTrainConfig& cfg, std::uint64_t seed);
    // zero_grad, backward(loss), the optional clip, the classifier step; returns the loss.
    double finish_classifier_step(const Var& loss);
    SdeNetBase* model_;
    SdeNet* cls_ = nullptr;
    SdeNetRegression* reg_ = nullptr;
    SdeNetTrainConfig cfg_;
    std::unique_ptr<nn::SGD> opt_f_, opt_g_;
    Generator ood_gen_;
};

// Checkpoint of model + both optimizers + the trainer's OOD generator + extra generators, one atomic file.
// The classifier optimizer is stored as the standard "optim/..." entries (nn/checkpoint.hpp), the
// diffusion optimizer as "optim_diffusion/...". Load validates everything before restoring anything.
void save_sdenet_checkpoint(const std::string& path, nn::Module& model, SdeNetTrainer& trainer,
                            const std::string& metadata_json = "{}", const nn::NamedGenerators& extra = {});
std::string load_sdenet_checkpoint(const std::string& path, nn::Module& model, SdeNetTrainer& trainer,
                                   const nn::NamedGenerators& extra = {});

// ---- evaluation helpers (no tape; batches of `batch` rows; x [N, ...] f32 or the model's dtype) ----

// Softmax averaged over `passes` stochastic passes at the model's sigma(): [N, classes] row-major f64.
std::vector<double> predict_probs(SdeNet& model, const Tensor& x, int passes, std::int64_t batch = 500);
// g(h0(x)) per sample [N] (f64): the epistemic score; high = out of distribution.
std::vector<double> diffusion_score(SdeNetBase& model, const Tensor& x, std::int64_t batch = 500);
// Regression: per sample the mean over passes of the predicted mean, the std over passes of the predicted
// mean (population std: the reference's OOD score), the mean predicted std (aleatoric), and the variance of
// the Gaussian matching the mixture of the passes' Gaussians, mean of s^2 + mean_std^2.
struct RegressionPrediction {
    std::vector<double> mean, mean_std, aleatoric_std, variance;
};
RegressionPrediction predict_regression(SdeNetRegression& model, const Tensor& x, int passes,
                                        std::int64_t batch = 500);

}  // namespace sdeuq::sde
