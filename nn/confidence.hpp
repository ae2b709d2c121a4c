// Learned confidence (DeVries & Taylor, "Learning confidence for out-of-distribution detection in neural
// networks", 2018; reference code uoguelph-mlrg/confidence_estimation) and ODIN (Liang, Li & Srikant,
// "Enhancing the reliability of out-of-distribution image detection in neural networks", ICLR 2018) as its
// peer.
//
//  * ConfidenceClassifier wraps any FeatureClassifier (nn/models.hpp) and adds the confidence branch
//    c = sigmoid(Linear(features -> 1)) in parallel with the classifier's last layer (paper section 3.1).
//  * confidence_loss: hints (section 3.1.2): b ~ Bernoulli(hint_prob) per sample, c_b = c b + (1 - b) (the
//    sample gets c = 1 where b = 0); p' = c_b p + (1 - c_b) y (eq. 2); L_t = NLL(log p') (eq. 3), L_c =
//    mean(-log c) over all samples with the un-hinted c (eq. 4, as the reference computes it); L = L_t +
//    lambda L_c (eq. 5). p and c are clamped to [clamp, 1 - clamp] first, as the reference.
//  * Budget (section 3.1.1): after the loss is formed, lambda /= 1.01 if beta > L_c, else lambda /= 0.99.
//  * Input preprocessing (section 3.3): x' = x - eps sign(grad_x mean(-log c)), with -log c computed as
//    softplus(-z) so that its gradient does not underflow to 0 for confident inputs.
//  * ODIN: x' = x - eps sign(grad_x CE(logits / T, argmax)), score = max softmax(logits(x') / T).
//  * FlatConvNet: a small, fast backbone for the experiments (two strided convolutions, then a dense
//    hidden layer on the flattened map, whose output is the penultimate feature vector the branch reads).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "nn/layers.hpp"
#include "nn/models.hpp"

namespace sdeuq::nn {

// Conv(in -> w, 5x5, stride 2, pad 2), ReLU, Conv(w -> 2w, 5x5, stride 2, pad 2), ReLU, flatten,
// Linear(2w H/4 W/4 -> hidden), ReLU = features; classify = Linear(hidden -> classes). Unlike MnistConvNet
// (global average pooling after GroupNorm) the flattened map keeps where a stroke is, which a narrow net
// needs to learn MNIST in one short epoch (quick mode); PyTorch's default init everywhere.
struct FlatConvNetConfig {
    std::int64_t in_channels = 1;
    std::int64_t height = 28;
    std::int64_t width_px = 28;
    std::int64_t width = 8;  // channels of the first convolution
    std::int64_t hidden = 128;
    std::int64_t num_classes = 10;
    DType dtype = DType::f32;
};

class FlatConvNet : public FeatureClassifier {
public:
    FlatConvNet(const FlatConvNetConfig& cfg, Generator& gen);
    std::string describe() const override;
    Var forward(const Var& x) override { return classify(features(x)); }
    Var features(const Var& x) override;  // [N, hidden]
    Var classify(const Var& features) override;
    std::int64_t feature_dim() const override { return cfg_.hidden; }

private:
    FlatConvNetConfig cfg_;
    std::shared_ptr<Sequential> body_;
    std::shared_ptr<Linear> out_;
};

struct ConfidenceOutput {
    Var logits;            // [N, classes]
    Var confidence_logit;  // [N, 1], c = sigmoid(confidence_logit)
};

class ConfidenceClassifier : public Module {
public:
    // The branch is Linear(base->feature_dim() -> 1) with torch's default init, in `dtype`.
    ConfidenceClassifier(std::shared_ptr<FeatureClassifier> base, Generator& gen, DType dtype = DType::f32);
    std::string describe() const override;
    Var forward(const Var& x) override;  // the logits
    ConfidenceOutput forward_both(const Var& x);
    FeatureClassifier& base() { return *base_; }
    Linear& branch() { return *branch_; }

private:
    std::shared_ptr<FeatureClassifier> base_;
    std::shared_ptr<Linear> branch_;
};

struct ConfidenceLossOptions {
    double clamp = 1e-12;  // p and c clamped to [clamp, 1 - clamp]
};

struct ConfidenceLoss {
    Var total;       // task + lambda * confidence
    Var task;        // NLL(log p')
    Var confidence;  // mean(-log c)
};

// `hints[i]` is b_i: 1 keeps the sample's c, 0 gives it c = 1 (no hint). Throws std::invalid_argument naming
// the sizes when logits, confidence logits, labels and hints disagree.
ConfidenceLoss confidence_loss(const Var& logits, const Var& confidence_logit,
                               std::span<const std::int32_t> labels, std::span<const std::uint8_t> hints,
                               double lambda, const ConfidenceLossOptions& opt = {});

// Per-sample hints b ~ Bernoulli(prob) (1 = keep), drawn from gen's uniform().
std::vector<std::uint8_t> draw_hints(std::size_t n, double prob, Generator& gen);

// The budget update of the reference: lambda / 1.01 if beta > confidence_loss, else lambda / 0.99.
struct BudgetOptions {
    double lambda0 = 0.1;
    double beta = 0.3;
    double decrease = 1.01;  // lambda /= decrease when under budget
    double increase = 0.99;  // lambda /= increase when over budget
};
double update_budget(double lambda, double confidence_loss, const BudgetOptions& opt = {});

// The forward and backward pass of one training step: confidence_loss with the current lambda, the budget
// update of lambda (after the loss is formed, before the backward pass, as the reference's train.py), then
// backward(total). The caller zeroes the gradients before and steps the optimizer after. Returns L_c.
double confidence_backward(ConfidenceClassifier& model, const Var& x, std::span<const std::int32_t> labels,
                           std::span<const std::uint8_t> hints, double& lambda,
                           const BudgetOptions& budget = {},
                           const ConfidenceLossOptions& opt = {});

// x' = x - eps sign(grad_x mean(-log c)) for a batch x [N, ...] (section 3.3). sign(0) = 0. The model's
// parameter gradients are left untouched (a nested tape). Returns a new tensor of x's shape and dtype.
Tensor confidence_perturb(ConfidenceClassifier& model, const Tensor& x, double eps);

// c = sigmoid(confidence logit) per sample, without gradients (the sigmoid in double of the logit).
std::vector<double> confidence_scores(ConfidenceClassifier& model, const Tensor& x);
// The confidence logit z per sample (c = sigmoid(z)), without gradients: the same ranking as c, but without
// the ties of c near 1 (float32 rounds sigmoid(z) to 1 for z > ~17, and the 100,000-point threshold grid of
// FPR@95 cannot resolve c above 1 - 1e-5), so the OOD scores of the experiment use it.
std::vector<double> confidence_logits(ConfidenceClassifier& model, const Tensor& x);

// ODIN: x' = x - eps sign(grad_x CE(logits(x) / T, argmax logits(x))); returns x'. `logits_fn` is any
// classifier's forward.
Tensor odin_perturb(Module& model, const Tensor& x, double temperature, double eps);
// max softmax(logits(x) / T) per sample, without gradients (T = 1: the plain max-softmax baseline).
std::vector<double> max_softmax_scores(Module& model, const Tensor& x, double temperature = 1.0);

}  // namespace sdeuq::nn
