#include "nn/gp_layer.hpp"

#include <cmath>
#include <cstring>
#include <fmt/format.h>

#include "nn/linalg.hpp"

namespace sdeuq::nn {

RandomFeatureGP::RandomFeatureGP(std::int64_t in, std::int64_t classes, Generator& gen, GpOptions opt)
    : in_(in), classes_(classes), opt_(opt) {
    if (in <= 0 || classes <= 0 || opt.num_inducing <= 0 || !(opt.kernel_scale > 0.0) || !(opt.ridge > 0.0) ||
        opt.momentum >= 1.0)
        throw UsageError(fmt::format(
            "{}: invalid options (sizes > 0, kernel_scale > 0, ridge > 0, momentum < 1)", describe()));
    const std::int64_t m = opt.num_inducing;
    if (opt.normalize_input)
        norm_ = register_module("input_norm", std::make_shared<LayerNorm>(in, 1e-5, true, opt.dtype));
    rf_weight_ = &register_buffer("random_weight",
                                  randn({m, in}, gen, opt.dtype, 0.0, 1.0 / std::sqrt(opt.kernel_scale)));
    rf_bias_ =
        &register_buffer("random_bias", rand_uniform({m}, gen, opt.dtype, 0.0, 2.0 * std::numbers::pi));
    precision_ = &register_buffer("precision", Tensor::zeros({m, m}, DType::f64));
    LinearOptions lo;
    lo.bias = false;
    lo.dtype = opt.dtype;
    lo.init = Init::keras_default;  // TF's gp_output_weights: a Keras Dense, glorot_uniform
    output_ = register_module("output", std::make_shared<Linear>(m, classes, gen, lo));
    if (opt.output_bias_trainable)
        output_bias_ = &register_parameter("output_bias", Tensor::zeros({classes}, opt.dtype));
    else
        output_bias_buffer_ = &register_buffer("output_bias", Tensor::zeros({classes}, opt.dtype));
    reset_precision();
}

std::string RandomFeatureGP::describe() const {
    return fmt::format("RandomFeatureGP(in={}, classes={}, features={})", in_, classes_, opt_.num_inducing);
}

void RandomFeatureGP::reset_precision() {
    const std::int64_t m = opt_.num_inducing;
    precision_->fill(0.0);
    double* p = precision_->data<double>();
    for (std::int64_t i = 0; i < m; ++i) p[i * m + i] = opt_.ridge;
}

Var RandomFeatureGP::features(const Var& x) {
    if (x.rank() != 2 || x.dim(1) != in_ || x.dtype() != opt_.dtype)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [B, {}], {})", describe(),
                                     sdeuq::describe(x.value()), in_, dtype_name(opt_.dtype)));
    Var h = norm_ ? norm_->forward(x) : x;
    Var b(*rf_bias_);
    Var phi = cos(linear(h, Var(*rf_weight_), &b));
    if (opt_.scale_random_features) phi = phi * std::sqrt(2.0 / double(opt_.num_inducing));
    return phi;
}

void RandomFeatureGP::update_precision(const Tensor& phi) {
    const std::int64_t m = opt_.num_inducing;
    if (phi.rank() != 2 || phi.dim(1) != m)
        throw ShapeError(fmt::format("{}: features {} are not [B, {}]", describe(), sdeuq::describe(phi), m));
    Tensor f = phi.to(DType::f64);
    Tensor gram;
    {
        NoGradScope ng;
        gram = matmul(Var(f), Var(f), true, false).value();  // phi^T phi [M, M], arena
    }
    double* p = precision_->data<double>();
    const double* g = gram.data<double>();
    const std::int64_t n = m * m;
    if (!(opt_.momentum > 0.0)) {  // TF: anything but a positive momentum is the exact sum
        for (std::int64_t i = 0; i < n; ++i) p[i] += g[i];
    } else {
        // TF LaplaceRandomFeatureCovariance: a moving average of the batch-mean Gram matrix.
        const double mo = opt_.momentum, w = (1.0 - mo) / double(phi.dim(0));
        for (std::int64_t i = 0; i < n; ++i) p[i] = mo * p[i] + w * g[i];
    }
}

Var RandomFeatureGP::forward(const Var& x) {
    Var phi = features(x);
    if (is_training()) update_precision(phi.value());
    Var logits = output_->forward(phi);
    if (output_bias_) return logits + output_bias_->var();
    return logits + Var(*output_bias_buffer_);
}

Tensor RandomFeatureGP::whitened(const Tensor& phi) {
    const std::int64_t m = opt_.num_inducing;
    if (phi.rank() != 2 || phi.dim(1) != m)
        throw ShapeError(fmt::format("{}: features {} are not [B, {}]", describe(), sdeuq::describe(phi), m));
    // Refactorise only when P changed (training steps, reset, or a checkpoint load overwrote it).
    if (!chol_.defined() || std::memcmp(chol_source_.raw(), precision_->raw(), precision_->nbytes()) != 0) {
        chol_ = linalg::cholesky(*precision_, describe() + " precision");
        chol_source_ = precision_->clone();
    }
    // Z = L^{-1} phi^T: then phi P^{-1} phi^T = Z^T Z.
    const std::int64_t b = phi.dim(0);
    Tensor f = phi.to(DType::f64);
    Tensor ft = Tensor::empty({m, b}, DType::f64);
    const double* pf = f.data<double>();
    double* pt = ft.data<double>();
    for (std::int64_t i = 0; i < b; ++i)
        for (std::int64_t j = 0; j < m; ++j) pt[j * b + i] = pf[i * m + j];
    return linalg::solve_lower(chol_, ft);
}

Tensor RandomFeatureGP::predictive_covariance(const Tensor& phi) {
    Tensor z = whitened(phi);
    Tensor cov = linalg::matmul64(z, z, true);
    double* c = cov.data<double>();
    for (std::int64_t i = 0; i < cov.numel(); ++i) c[i] *= opt_.ridge;
    return cov;
}

Tensor RandomFeatureGP::predictive_variance(const Tensor& phi) {
    Tensor z = whitened(phi);
    const std::int64_t m = z.dim(0), b = z.dim(1);
    Tensor var = Tensor::zeros({b}, DType::f64);
    const double* pz = z.data<double>();
    double* pv = var.data<double>();
    for (std::int64_t j = 0; j < m; ++j)
        for (std::int64_t i = 0; i < b; ++i) pv[i] += pz[j * b + i] * pz[j * b + i];
    for (std::int64_t i = 0; i < b; ++i) pv[i] *= opt_.ridge;
    return var;
}

GpPrediction RandomFeatureGP::predict(const Var& x, bool full_covariance) {
    Var phi = features(x);
    if (is_training()) update_precision(phi.value());
    GpPrediction out;
    out.logits = output_->forward(phi);
    out.logits = output_bias_ ? out.logits + output_bias_->var() : out.logits + Var(*output_bias_buffer_);
    if (full_covariance) {
        out.covariance = predictive_covariance(phi.value());
        const std::int64_t b = out.covariance.dim(0);
        out.variance = Tensor::empty({b}, DType::f64);
        for (std::int64_t i = 0; i < b; ++i)
            out.variance.data<double>()[i] = out.covariance.data<double>()[i * b + i];
    } else {
        out.variance = predictive_variance(phi.value());
    }
    return out;
}

Var mean_field_logits(const Var& logits, const Tensor& variance, double factor) {
    if (factor < 0.0) return logits;
    if (logits.rank() != 2 || variance.rank() != 1 || variance.dim(0) != logits.dim(0))
        throw ShapeError(
            fmt::format("mean_field_logits: logits {} and variance {} do not match (expected [B, C], [B])",
                        describe(logits.value()), describe(variance)));
    const std::int64_t b = variance.dim(0);
    Tensor scale = Tensor::empty({b, 1}, logits.dtype());
    for (std::int64_t i = 0; i < b; ++i) scale.set_flat(i, 1.0 / std::sqrt(1.0 + factor * variance.flat(i)));
    return logits * Var(scale);
}

}  // namespace sdeuq::nn
