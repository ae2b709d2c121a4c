// Weight initializers, all drawn from a Generator so that a model is reproducible from (seed, stream).
//
// Conventions follow torch.nn.init: for a weight of shape [out, in, k...] the receptive field is
// prod(k...), fan_in = in * receptive and fan_out = out * receptive; Kaiming (He et al. 2015, eq. 10)
// uses std = gain / sqrt(fan), Xavier (Glorot & Bengio 2010, eq. 16) std = gain * sqrt(2 / (fan_in +
// fan_out)); the uniform variants use bound = sqrt(3) * std. Values are drawn in float64 and rounded.
#pragma once

#include <cmath>
#include <stdexcept>
#include <utility>

#include "autodiff/random.hpp"
#include "autodiff/tensor.hpp"

namespace sdeuq::nn::init {

enum class FanMode { fan_in, fan_out };
enum class Nonlinearity { linear, relu, leaky_relu, tanh, sigmoid };

// torch.nn.init.calculate_gain: relu sqrt(2), tanh 5/3, leaky_relu sqrt(2 / (1 + a^2)), linear/sigmoid 1.
inline double calculate_gain(Nonlinearity nl, double a = 0.01) {
    switch (nl) {
        case Nonlinearity::relu: return std::sqrt(2.0);
        case Nonlinearity::leaky_relu: return std::sqrt(2.0 / (1.0 + a * a));
        case Nonlinearity::tanh: return 5.0 / 3.0;
        default: return 1.0;
    }
}

// (fan_in, fan_out) of a weight [out, in, k...]; a 1-D tensor has fan_in = fan_out = its length.
inline std::pair<double, double> fans(const Shape& s) {
    if (s.rank() < 1) throw ShapeError("init::fans: a scalar has no fan-in/fan-out");
    if (s.rank() == 1) return {double(s[0]), double(s[0])};
    double receptive = 1.0;
    for (int i = 2; i < s.rank(); ++i) receptive *= double(s[i]);
    return {double(s[1]) * receptive, double(s[0]) * receptive};
}

inline void uniform_(Tensor& t, Generator& gen, double lo, double hi) {
    t.copy_from(rand_uniform(t.shape(), gen, DType::f64, lo, hi));
}
inline void normal_(Tensor& t, Generator& gen, double mean = 0.0, double stddev = 1.0) {
    t.copy_from(randn(t.shape(), gen, DType::f64, mean, stddev));
}
inline void constant_(Tensor& t, double v) {
    t.fill(v);
}
inline void zeros_(Tensor& t) {
    t.fill(0.0);
}
inline void ones_(Tensor& t) {
    t.fill(1.0);
}

// a: the negative slope of leaky_relu (PyTorch's Linear default uses a = sqrt(5)).
inline void kaiming_uniform_(Tensor& t, Generator& gen, double a = 0.0, FanMode mode = FanMode::fan_in,
                             Nonlinearity nl = Nonlinearity::leaky_relu) {
    auto [fi, fo] = fans(t.shape());
    const double stddev = calculate_gain(nl, a) / std::sqrt(mode == FanMode::fan_in ? fi : fo);
    const double bound = std::sqrt(3.0) * stddev;
    uniform_(t, gen, -bound, bound);
}
inline void kaiming_normal_(Tensor& t, Generator& gen, double a = 0.0, FanMode mode = FanMode::fan_in,
                            Nonlinearity nl = Nonlinearity::leaky_relu) {
    auto [fi, fo] = fans(t.shape());
    normal_(t, gen, 0.0, calculate_gain(nl, a) / std::sqrt(mode == FanMode::fan_in ? fi : fo));
}
inline void xavier_uniform_(Tensor& t, Generator& gen, double gain = 1.0) {
    auto [fi, fo] = fans(t.shape());
    const double bound = gain * std::sqrt(6.0 / (fi + fo));
    uniform_(t, gen, -bound, bound);
}
inline void xavier_normal_(Tensor& t, Generator& gen, double gain = 1.0) {
    auto [fi, fo] = fans(t.shape());
    normal_(t, gen, 0.0, gain * std::sqrt(2.0 / (fi + fo)));
}

// PyTorch's default for Linear and Conv2d: kaiming_uniform(a = sqrt(5)) on the weight, which is
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
inline void torch_default_(Tensor& weight, Tensor* bias, Generator& gen) {
    kaiming_uniform_(weight, gen, std::sqrt(5.0));
    if (bias && bias->defined()) {
        const double bound = 1.0 / std::sqrt(fans(weight.shape()).first);
        uniform_(*bias, gen, -bound, bound);
    }
}

}  // namespace sdeuq::nn::init
