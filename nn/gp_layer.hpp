// Random-feature Gaussian-process output layer with a Laplace covariance (SNGP, Liu et al. 2020, Section 3.2,
// eqs. 8-9 and Algorithm 1), after TF's official/nlp/modeling/layers/gaussian_process.py
// (RandomFeatureGaussianProcess + LaplaceRandomFeatureCovariance).
//
//   h      = LayerNorm(x)                      (optional, TF normalize_input)
//   phi(h) = s * cos(h W^T + b),  W [M, in] ~ N(0, 1/kernel_scale),  b ~ U(0, 2 pi),  s = sqrt(2 / M)
//            (Rahimi & Recht 2007 random Fourier features of the RBF kernel exp(-|x - x'|^2 / (2
//            kernel_scale)))
//   logits = phi beta^T (+ bias),  beta [classes, M] trainable, bias a non-trainable zero by default
//   P      = ridge I + sum_batches phi^T phi           (momentum <= 0: exact sum over the epoch), or
//   P      = m P + (1 - m) phi^T phi / B                (momentum m in (0, 1): moving average)
//   Cov    = ridge * phi* P^{-1} phi*^T                 (predictive covariance of test features phi*)
//   mean-field logits = logits / sqrt(1 + lambda * diag(Cov)), lambda = pi / 8 (Lu et al. 2020).
//
// Conventions and where we deviate from the TF reference:
// - The random weight is stored in the `linear` op's layout [M, in] (TF: kernel [in, M]). TF samples it with
//   stddev 1 and multiplies the input by 1/sqrt(kernel_scale), but only when normalize_input is off (its
//   `elif`); we draw W with stddev 1/sqrt(kernel_scale), the same features, and apply the length scale also
//   after the layer norm (TF silently ignores kernel_scale there).
// - The ridge convention is TF's: P starts at ridge * I and the covariance is multiplied by ridge, i.e. the
//   posterior of a Bayesian linear model with prior beta ~ N(0, I) and noise variance `ridge`
//   (ridge * (ridge I + Phi^T Phi)^{-1} = (I + Phi^T Phi / ridge)^{-1}), not the textbook ridge
//   regression covariance (ridge I + Phi^T Phi)^{-1}. The paper's eq. 9 has ridge = 1 where both agree.
//   (Older revisions of the TF file used ridge 1e-6 and no factor `ridge` on the covariance.)
// - Only the Gaussian likelihood's precision update is implemented (TF's default gp_cov_likelihood).
// - TF puts an L2 regulariser (1e-6) on the output weights; here that is the optimizer's weight decay.
// - P is accumulated in float64 whatever the layer's dtype, and inverted through a Cholesky factorisation
//   (TF: tf.linalg.inv), cached until P changes.
// - TF returns an identity matrix as the covariance in training mode; predict() here always uses the
//   current P (the caller decides when to evaluate: normally in eval mode after an epoch).
#pragma once

#include <numbers>

#include "nn/layers.hpp"

namespace sdeuq::nn {

struct GpOptions {
    std::int64_t num_inducing = 1024;    // M, TF num_inducing
    double kernel_scale = 1.0;           // TF gp_kernel_scale (the RBF kernel's squared length scale)
    double ridge = 1.0;                  // TF gp_cov_ridge_penalty
    double momentum = -1.0;              // TF gp_cov_momentum; <= 0 exact epoch sum (the SNGP tutorial)
    bool normalize_input = false;        // TF normalize_input
    bool scale_random_features = true;   // multiply by sqrt(2 / M), TF scale_random_features
    bool output_bias_trainable = false;  // TF gp_output_bias_trainable
    double mean_field_factor = std::numbers::pi / 8.0;
    DType dtype = DType::f32;
};

struct GpPrediction {
    Var logits;         // [B, classes]
    Tensor variance;    // [B] float64, diag of the predictive covariance
    Tensor covariance;  // [B, B] float64 (only when requested)
};

class RandomFeatureGP : public Module {
public:
    RandomFeatureGP(std::int64_t in, std::int64_t classes, Generator& gen, GpOptions opt = {});
    std::string describe() const override;
    // Logits; in training mode also adds the minibatch's features to the precision matrix (no gradient).
    Var forward(const Var& x) override;
    // forward() plus the predictive variance (and covariance if full_covariance).
    GpPrediction predict(const Var& x, bool full_covariance = false);
    // Random features phi(x) [B, M] (differentiable in x and the layer norm's parameters).
    Var features(const Var& x);
    // Restart the precision at ridge * I (call at the start of every epoch with momentum <= 0).
    void reset_precision();
    // Adds phi^T phi of a minibatch of features to P (what training-mode forward does).
    void update_precision(const Tensor& phi);
    // ridge * phi P^{-1} phi^T (float64 [B, B]) and its diagonal [B].
    Tensor predictive_covariance(const Tensor& phi);
    Tensor predictive_variance(const Tensor& phi);
    const Tensor& precision() const { return *precision_; }
    Linear& output_layer() { return *output_; }
    const GpOptions& options() const { return opt_; }

private:
    // L^{-1} phi^T [M, B] with L = cholesky(P), refactorising when P changed since the last call.
    Tensor whitened(const Tensor& phi);
    std::int64_t in_, classes_;
    GpOptions opt_;
    std::shared_ptr<LayerNorm> norm_;
    Tensor* rf_weight_;
    Tensor* rf_bias_;
    Tensor* precision_;
    std::shared_ptr<Linear> output_;
    Parameter* output_bias_ = nullptr;
    Tensor* output_bias_buffer_ = nullptr;
    Tensor chol_, chol_source_;
};

// logits / sqrt(1 + factor * variance) row-wise (Lu et al. 2020, "Uncertainty estimation with infinitesimal
// jackknife", eq. 13: the mean-field approximation of E[softmax]); factor < 0 returns logits unchanged.
// Differentiable in logits; the variance [B] is a constant.
Var mean_field_logits(const Var& logits, const Tensor& variance, double factor = std::numbers::pi / 8.0);

}  // namespace sdeuq::nn
