#include "nn/spectral_norm.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <vector>

namespace sdeuq::nn {

namespace {
// x / max(|x|, eps), in double.
void normalize(std::vector<double>& x, double eps) {
    double s = 0.0;
    for (double a : x) s += a * a;
    const double n = std::max(std::sqrt(s), eps);
    for (double& a : x) a /= n;
}
}  // namespace

SpectralNorm::SpectralNorm(std::shared_ptr<WeightedLayer> layer, Generator& gen, SpectralNormOptions opt)
    : layer_(std::move(layer)), opt_(opt) {
    if (!layer_) throw UsageError("SpectralNorm: wrapped layer is null");
    if (!(opt.norm_multiplier > 0.0))
        throw UsageError(fmt::format("SpectralNorm({}): norm_multiplier must be positive, got {}",
                                     layer_->describe(), opt.norm_multiplier));
    const Tensor& w = layer_->weight().value();
    rows_ = w.dim(0);
    cols_ = w.numel() / rows_;
    register_module("layer", layer_);
    u_ = &register_buffer("u", randn({rows_}, gen, w.dtype()));
    v_ = &register_buffer("v", randn({cols_}, gen, w.dtype()));
    std::vector<double> u = u_->to_vector(), v = v_->to_vector();
    normalize(u, opt_.eps);
    normalize(v, opt_.eps);
    for (std::int64_t i = 0; i < rows_; ++i) u_->set_flat(i, u[i]);
    for (std::int64_t j = 0; j < cols_; ++j) v_->set_flat(j, v[j]);
    for (int k = 0; k < opt_.initial_iterations; ++k) power_iteration();
}

std::string SpectralNorm::describe() const {
    return fmt::format("SpectralNorm({}, c={})", layer_->describe(), opt_.norm_multiplier);
}

void SpectralNorm::power_iteration() {
    // Miyato et al. 2018, Algorithm 1: v <- W^T u / |W^T u|, u <- W v / |W v|, in double whatever W's dtype.
    const Tensor& w = layer_->weight().value();
    std::vector<double> wd = w.to_vector(), u = u_->to_vector(), v(static_cast<std::size_t>(cols_), 0.0);
    for (std::int64_t i = 0; i < rows_; ++i)
        for (std::int64_t j = 0; j < cols_; ++j) v[j] += wd[i * cols_ + j] * u[i];
    normalize(v, opt_.eps);
    for (std::int64_t i = 0; i < rows_; ++i) {
        double s = 0.0;
        for (std::int64_t j = 0; j < cols_; ++j) s += wd[i * cols_ + j] * v[j];
        u[i] = s;
    }
    normalize(u, opt_.eps);
    for (std::int64_t i = 0; i < rows_; ++i) u_->set_flat(i, u[i]);
    for (std::int64_t j = 0; j < cols_; ++j) v_->set_flat(j, v[j]);
}

double SpectralNorm::sigma_hat() const {
    const Tensor& w = layer_->weight().value();
    double s = 0.0;
    for (std::int64_t i = 0; i < rows_; ++i) {
        double wv = 0.0;
        for (std::int64_t j = 0; j < cols_; ++j) wv += w.flat(i * cols_ + j) * v_->flat(j);
        s += u_->flat(i) * wv;
    }
    return s;
}

Var SpectralNorm::effective_weight(const Var& w) const {
    if (w.shape() != layer_->weight().value().shape())
        throw ShapeError(fmt::format("{}: weight {} does not match {}", describe(),
                                     sdeuq::describe(w.value()), sdeuq::describe(layer_->weight().value())));
    // sigma_hat = u^T W v as ops, so that d sigma_hat / dW = u v^T enters the gradient (u, v constants).
    Var wm = reshape(w, {rows_, cols_});
    Var wv = matmul(wm, Var(v_->reshaped({cols_, 1})));
    Var sigma = sum(mul(wv, Var(u_->reshaped({rows_, 1}))));
    // W_eff = W min(1, c / sigma_hat): the branch is chosen on the value (TF's tf.cond on c / sigma < 1;
    // written as sigma > c so that a non-positive estimate leaves W unchanged).
    if (sigma.item() > opt_.norm_multiplier) return mul(w, rdiv(opt_.norm_multiplier, sigma));
    return w;
}

Tensor SpectralNorm::effective_weight() const {
    NoGradScope ng;
    return effective_weight(Var(layer_->weight().value())).value().clone();
}

Var SpectralNorm::forward_with_weight(const Var& x, const Var& w) {
    if (is_training())
        for (int k = 0; k < opt_.power_iterations; ++k) power_iteration();
    return layer_->forward_with_weight(x, effective_weight(w));
}

}  // namespace sdeuq::nn
