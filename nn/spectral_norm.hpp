// Spectral normalisation with a bound, as used by SNGP (Liu et al. 2020, "Simple and Principled Uncertainty
// Estimation with Deterministic Deep Learning via Distance Awareness", eq. 7 and Algorithm 1).
//
// The wrapped layer's weight W, viewed as a matrix [out, K] (K = in, or in*kh*kw for a convolution, as
// PyTorch's spectral_norm does), is replaced in the forward pass by
//     W_eff = W * min(1, c / sigma_hat),   sigma_hat = u^T W v,
// where u [out], v [K] are persistent unit vectors refined by one power-iteration step per training-mode
// call (Miyato et al. 2018, Algorithm 1):  v <- normalize(W^T u),  u <- normalize(W v).
// No step is taken in eval mode, so evaluation is deterministic and does not change state.
//
// Gradients: u and v are constants (computed without gradient, as in the TF reference and in Miyato et
// al.); the gradient flows through W both directly and through sigma_hat, d sigma_hat / dW = u v^T (the
// PyTorch parametrisation). Difference from TF's official/nlp/modeling/layers/spectral_normalization.py:
// TF assign()s W_eff into the layer's kernel variable, calls the layer and assigns W back, so its gradient
// with respect to W is the layer's gradient evaluated at W_eff, with no term through sigma_hat (a
// straight-through rescaling). Also, TF starts from unnormalised random u, v; we start from 15 power
// iterations (as PyTorch's parametrisation does), so that sigma_hat is sensible before the first training
// step. A Conv2d kernel is normalised as the matrix [out, in*kh*kw] (as PyTorch; TF's
// SpectralNormalizationConv2D instead normalises the convolution operator itself).
#pragma once

#include <memory>

#include "nn/layers.hpp"

namespace sdeuq::nn {

struct SpectralNormOptions {
    double norm_multiplier = 0.9;  // c; SNGP tutorial: spec_norm_bound = 0.9
    int power_iterations = 1;      // per training-mode call
    int initial_iterations = 15;   // at construction
    double eps = 1e-12;            // normalize(x) = x / max(|x|, eps)
};

class SpectralNorm : public WeightedLayer {
public:
    SpectralNorm(std::shared_ptr<WeightedLayer> layer, Generator& gen, SpectralNormOptions opt = {});
    std::string describe() const override;
    Parameter& weight() override { return layer_->weight(); }
    Parameter* bias() override { return layer_->bias(); }
    // The layer with W_eff(w); one power-iteration step first in training mode.
    Var forward_with_weight(const Var& x, const Var& w) override;
    // W_eff(w) with the current u, v (no power-iteration step), differentiable in w.
    Var effective_weight(const Var& w) const;
    // W_eff of the current weight, a heap copy (no gradient).
    Tensor effective_weight() const;
    // One power-iteration step on the current weight (no gradient).
    void power_iteration();
    // sigma_hat = u^T W v for the current weight and vectors.
    double sigma_hat() const;
    WeightedLayer& layer() { return *layer_; }
    const Tensor& u() const { return *u_; }
    const Tensor& v() const { return *v_; }

private:
    std::shared_ptr<WeightedLayer> layer_;
    SpectralNormOptions opt_;
    std::int64_t rows_, cols_;
    Tensor* u_;
    Tensor* v_;
};

}  // namespace sdeuq::nn
