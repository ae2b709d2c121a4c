// Adversarial attacks under the L-infinity threat model: FGSM (Goodfellow, Shlens & Szegedy 2015, eq. 3)
// and PGD with a random start (Madry et al. 2018, Section 2.1 and eq. 2), against any classifier of the
// project given as a function from the input to its logits or to its (averaged) class probabilities.
//
// Stochastic models (MC dropout, SDE-Net) are attacked with the expected gradient over a stated number of
// forward passes (Athalye, Carlini & Wagner 2018, "Expectation over Transformation"):
//     g(x) = (1/K) sum_k d loss(f_k(x), y) / dx,   f_k the k-th stochastic pass,
// each pass recorded on its own nested tape, so memory is that of one pass and no parameter gradient is
// touched. Both attacks use only sign(g); the averaging makes the sign that of the expected gradient.
//
// All perturbations are in the input space the classifier receives (for the MNIST experiments: pixels in
// [0, 1]; a model trained on standardised inputs standardises inside its classifier function). After every
// step the iterate is projected onto the epsilon ball around the clean input and clipped to [lo, hi], in
// double, then rounded once to the input's dtype (so |x_adv - x| <= epsilon holds up to that rounding:
// half an ulp of the pixel value, < 6e-8 for float32 pixels in [0, 1], plus the ulp of x +- epsilon).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "autodiff/tape.hpp"

namespace sdeuq::nn {

enum class ClassifierOutput { logits, probabilities };

struct Classifier {
    // x [N, ...] -> [N, C]: logits, or class probabilities (an ensemble's average).
    std::function<Var(const Var&)> forward;
    ClassifierOutput output = ClassifierOutput::logits;
    // Forward passes whose input gradients are averaged (1 for a deterministic model).
    int passes = 1;
    std::string name = "classifier";
};

// The attacked loss, a mean over the batch: cross-entropy of the logits, or -log(max(p_y, 1e-12)) of the
// probabilities (the floor of metrics::nll, so a confidently wrong ensemble does not give -log 0).
Var attack_loss(const Classifier& c, const Var& x, std::span<const std::int32_t> labels);

struct InputGradient {
    Tensor grad;        // d loss / d x averaged over the passes, x's shape and dtype (heap)
    double loss = 0.0;  // the loss averaged over the passes
};
// The expected input gradient of attack_loss at x over c.passes passes (each on a nested tape).
InputGradient input_gradient(const Classifier& c, const Tensor& x, std::span<const std::int32_t> labels);

// Box the perturbed images must stay in (pixel range).
struct Box {
    double lo = 0.0;
    double hi = 1.0;
};

// x_adv = clip(x + epsilon sign(g(x)), lo, hi). epsilon = 0 returns x unchanged (bit for bit).
Tensor fgsm(const Classifier& c, const Tensor& x, std::span<const std::int32_t> labels, double epsilon,
            Box box = {});

struct PgdOptions {
    double epsilon = 0.1;
    int steps = 10;
    // Step size alpha; 0 means 2.5 epsilon / steps (Madry et al. 2018, Appendix: enough to reach the
    // boundary of the ball from any start).
    double step_size = 0.0;
    bool random_start = true;  // x_0 = clip(x + U(-epsilon, epsilon)^d), else x_0 = x
    std::uint64_t seed = 0;    // the random start's Philox stream
    Box box = {};
};

struct PgdResult {
    Tensor x_adv;
    // The loss at x_0, x_1, ..., x_steps (steps + 1 values; the last from one extra forward sweep of
    // c.passes passes without gradients).
    std::vector<double> loss_trace;
};

// x_{t+1} = Proj_{B_inf(x, eps) and box}(x_t + alpha sign(g(x_t))), t = 0 .. steps - 1.
PgdResult pgd(const Classifier& c, const Tensor& x, std::span<const std::int32_t> labels,
              const PgdOptions& opt);

}  // namespace sdeuq::nn
