#include "nn/layers.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "nn/spectral_norm.hpp"

namespace sdeuq::nn {

void initialize(Init how, Tensor& weight, Tensor* bias, Generator& gen) {
    switch (how) {
        case Init::torch_default: init::torch_default_(weight, bias, gen); return;
        case Init::keras_default: init::xavier_uniform_(weight, gen); break;
        case Init::kaiming_normal_relu:
            init::kaiming_normal_(weight, gen, 0.0, init::FanMode::fan_in, init::Nonlinearity::relu);
            break;
        case Init::xavier_normal: init::xavier_normal_(weight, gen); break;
        case Init::zeros: init::zeros_(weight); break;
    }
    if (bias && bias->defined()) init::zeros_(*bias);
}

namespace {
// A fresh stream for a child generator, drawn from the construction generator (so two blocks built from
// the same generator get different dropout streams).
Generator child_generator(Generator& gen) {
    const std::uint64_t hi = gen(), lo = gen();
    return Generator(gen.seed(), (hi << 32) | lo);
}
}  // namespace

// ---------------------------------------------------------------- Linear

Linear::Linear(std::int64_t in, std::int64_t out, Generator& gen, LinearOptions opt)
    : in_(in), out_(out), dtype_(opt.dtype) {
    if (in <= 0 || out <= 0)
        throw ShapeError(fmt::format("Linear(in={}, out={}): sizes must be positive", in, out));
    Tensor w = Tensor::zeros({out, in}, opt.dtype);
    Tensor b = opt.bias ? Tensor::zeros({out}, opt.dtype) : Tensor();
    initialize(opt.init, w, opt.bias ? &b : nullptr, gen);
    weight_ = &register_parameter("weight", w, opt.trainable);
    if (opt.bias) bias_ = &register_parameter("bias", b, opt.trainable);
}

std::string Linear::describe() const {
    return fmt::format("Linear(in={}, out={}{})", in_, out_, bias_ ? "" : ", bias=false");
}

Var Linear::forward_with_weight(const Var& x, const Var& w) { return forward_fused(x, w, LinearAct::none); }

Var Linear::forward_activated(const Var& x, LinearAct act) { return forward_fused(x, weight_->var(), act); }

Var Linear::forward_fused(const Var& x, const Var& w, LinearAct act) {
    if (x.rank() < 1 || x.dim(-1) != in_ || x.dtype() != dtype_)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [..., {}], {})", describe(),
                                     sdeuq::describe(x.value()), in_, dtype_name(dtype_)));
    if (!bias_) return linear(x, w, nullptr, act);
    Var b = bias_->var();
    return linear(x, w, &b, act);
}

// ---------------------------------------------------------------- Conv2d

Conv2d::Conv2d(std::int64_t in_channels, std::int64_t out_channels, int kernel, Generator& gen,
               Conv2dOptions opt)
    : in_(in_channels), out_(out_channels), kernel_(kernel), opt_(opt) {
    if (in_ <= 0 || out_ <= 0 || kernel <= 0 || opt.stride <= 0 || opt.padding < 0)
        throw ShapeError(fmt::format("{}: invalid sizes", describe()));
    Tensor w = Tensor::zeros({out_, in_, kernel, kernel}, opt.dtype);
    Tensor b = opt.bias ? Tensor::zeros({out_}, opt.dtype) : Tensor();
    initialize(opt.init, w, opt.bias ? &b : nullptr, gen);
    weight_ = &register_parameter("weight", w);
    if (opt.bias) bias_ = &register_parameter("bias", b);
}

std::string Conv2d::describe() const {
    return fmt::format("Conv2d(in={}, out={}, kernel={}, stride={}, padding={}{})", in_, out_, kernel_,
                       opt_.stride, opt_.padding, opt_.bias ? "" : ", bias=false");
}

Var Conv2d::forward_with_weight(const Var& x, const Var& w) {
    if (x.rank() != 4 || x.dim(1) != in_ || x.dtype() != opt_.dtype ||
        x.dim(2) + 2 * opt_.padding < kernel_ || x.dim(3) + 2 * opt_.padding < kernel_)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [N, {}, H >= {}, W >= {}], {})",
                                     describe(), sdeuq::describe(x.value()), in_, kernel_ - 2 * opt_.padding,
                                     kernel_ - 2 * opt_.padding, dtype_name(opt_.dtype)));
    if (!bias_) return conv2d(x, w, nullptr, opt_.stride, opt_.padding);
    Var b = bias_->var();
    return conv2d(x, w, &b, opt_.stride, opt_.padding);
}

// ---------------------------------------------------------------- normalisation

GroupNorm::GroupNorm(int groups, std::int64_t channels, double eps, bool affine, DType dtype)
    : groups_(groups), channels_(channels), eps_(eps), dtype_(dtype) {
    if (groups <= 0 || channels <= 0 || channels % groups != 0)
        throw ShapeError(fmt::format("{}: channels must be a positive multiple of groups", describe()));
    if (affine) {
        gamma_ = &register_parameter("weight", Tensor::full({channels}, 1.0, dtype));
        beta_ = &register_parameter("bias", Tensor::zeros({channels}, dtype));
    }
}

std::string GroupNorm::describe() const {
    return fmt::format("GroupNorm(groups={}, channels={})", groups_, channels_);
}

Var GroupNorm::forward(const Var& x) { return run(x, false); }

Var GroupNorm::forward_relu(const Var& x) { return run(x, true); }

Var GroupNorm::run(const Var& x, bool relu) {
    if (x.rank() < 2 || x.dim(1) != channels_ || x.dtype() != dtype_)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [N, {}, ...], {})", describe(),
                                     sdeuq::describe(x.value()), channels_, dtype_name(dtype_)));
    Var g, b;
    if (gamma_) {
        g = gamma_->var();
        b = beta_->var();
    }
    const Var* pg = gamma_ ? &g : nullptr;
    const Var* pb = gamma_ ? &b : nullptr;
    return relu ? group_norm_relu(x, groups_, pg, pb, eps_) : group_norm(x, groups_, pg, pb, eps_);
}

LayerNorm::LayerNorm(std::int64_t dim, double eps, bool affine, DType dtype)
    : dim_(dim), eps_(eps), dtype_(dtype) {
    if (dim <= 0) throw ShapeError(fmt::format("{}: dim must be positive", describe()));
    if (affine) {
        gamma_ = &register_parameter("weight", Tensor::full({dim}, 1.0, dtype));
        beta_ = &register_parameter("bias", Tensor::zeros({dim}, dtype));
    }
}

std::string LayerNorm::describe() const {
    return fmt::format("LayerNorm(dim={})", dim_);
}

Var LayerNorm::forward(const Var& x) {
    if (x.rank() < 1 || x.dim(-1) != dim_ || x.dtype() != dtype_)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [..., {}], {})", describe(),
                                     sdeuq::describe(x.value()), dim_, dtype_name(dtype_)));
    if (!gamma_) return layer_norm(x, nullptr, nullptr, eps_);
    Var g = gamma_->var(), b = beta_->var();
    return layer_norm(x, &g, &b, eps_);
}

// ---------------------------------------------------------------- dropout

Dropout::Dropout(double p, Generator gen) : p_(p), owned_(gen), gen_(&owned_) {
    if (!(p >= 0.0 && p < 1.0)) throw ShapeError(fmt::format("Dropout(p={}): p must be in [0, 1)", p));
    register_generator("generator", &owned_);
}

Dropout::Dropout(double p, Generator* shared) : p_(p), gen_(shared) {
    if (!(p >= 0.0 && p < 1.0)) throw ShapeError(fmt::format("Dropout(p={}): p must be in [0, 1)", p));
    if (!shared) throw UsageError("Dropout: shared generator is null");
}

std::string Dropout::describe() const {
    return fmt::format("Dropout(p={}{})", p_, mc_ ? ", mc" : "");
}

Var Dropout::forward(const Var& x) {
    if ((!is_training() && !mc_) || p_ == 0.0) return x;
    return dropout(x, p_, *gen_);
}

Var Dropout::forward_relu(const Var& x) {
    if ((!is_training() && !mc_) || p_ == 0.0) return relu(x);
    return relu_dropout(x, p_, *gen_);
}

void set_mc_dropout(Module& m, bool on) {
    for (auto& [_, sub] : m.named_modules())
        if (auto* d = dynamic_cast<Dropout*>(sub)) d->set_mc(on);
}

// ---------------------------------------------------------------- activations, reshaping

const char* act_name(Act a) {
    switch (a) {
        case Act::identity: return "Identity";
        case Act::relu: return "ReLU";
        case Act::tanh: return "Tanh";
        case Act::sigmoid: return "Sigmoid";
        case Act::silu: return "SiLU";
        case Act::softplus: return "Softplus";
    }
    return "?";
}

Var activate(Act a, const Var& x) {
    switch (a) {
        case Act::identity: return x;
        case Act::relu: return relu(x);
        case Act::tanh: return tanh(x);
        case Act::sigmoid: return sigmoid(x);
        case Act::silu: return silu(x);
        case Act::softplus: return softplus(x);
    }
    return x;
}

Var Flatten::forward(const Var& x) {
    if (x.rank() < 1)
        throw ShapeError(fmt::format("Flatten: input {} has no batch dimension", sdeuq::describe(x.value())));
    return reshape_infer(x, {x.dim(0), -1});
}

Var GlobalAvgPool::forward(const Var& x) {
    if (x.rank() != 4)
        throw ShapeError(
            fmt::format("GlobalAvgPool: input {} is not [N, C, H, W]", sdeuq::describe(x.value())));
    return global_avg_pool(x);
}

// ---------------------------------------------------------------- residual blocks

namespace {
std::shared_ptr<WeightedLayer> maybe_spectral(std::shared_ptr<WeightedLayer> layer, Generator& gen,
                                              const ResidualOptions& opt) {
    if (!opt.spectral_norm) return layer;
    SpectralNormOptions so;
    so.norm_multiplier = opt.norm_multiplier;
    so.power_iterations = opt.power_iterations;
    return std::make_shared<SpectralNorm>(std::move(layer), gen, so);
}
}  // namespace

DenseResidual::DenseResidual(std::int64_t dim, Generator& gen, ResidualOptions opt) : dim_(dim), opt_(opt) {
    LinearOptions lo;
    lo.dtype = opt.dtype;
    lo.init = opt.init;
    dense_ = register_module("dense", maybe_spectral(std::make_shared<Linear>(dim, dim, gen, lo), gen, opt));
    if (opt.dropout > 0.0)
        dropout_ = register_module("dropout", std::make_shared<Dropout>(opt.dropout, child_generator(gen)));
}

std::string DenseResidual::describe() const {
    return fmt::format("DenseResidual(dim={}, act={}, dropout={}{})", dim_, act_name(opt_.act), opt_.dropout,
                       opt_.spectral_norm ? fmt::format(", sn={}", opt_.norm_multiplier) : "");
}

Var DenseResidual::forward(const Var& x) {
    if (x.rank() < 1 || x.dim(-1) != dim_)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [..., {}])", describe(),
                                     sdeuq::describe(x.value()), dim_));
    const Var z = dense_->forward(x);
    if (dropout_ && opt_.act == Act::relu) return x + dropout_->forward_relu(z);
    Var h = activate(opt_.act, z);
    if (dropout_) h = dropout_->forward(h);
    return x + h;
}

ConvResidualBlock::ConvResidualBlock(std::int64_t channels, Generator& gen, ResidualOptions opt)
    : channels_(channels), opt_(opt) {
    const int groups = static_cast<int>(std::min<std::int64_t>(opt.groups, channels));
    Conv2dOptions co;
    co.padding = 1;
    co.dtype = opt.dtype;
    co.init = opt.init;
    gn1_ = register_module("norm1", std::make_shared<GroupNorm>(groups, channels, 1e-5, true, opt.dtype));
    conv1_ = register_module(
        "conv1", maybe_spectral(std::make_shared<Conv2d>(channels, channels, 3, gen, co), gen, opt));
    if (opt.dropout > 0.0)
        dropout_ = register_module("dropout", std::make_shared<Dropout>(opt.dropout, child_generator(gen)));
    gn2_ = register_module("norm2", std::make_shared<GroupNorm>(groups, channels, 1e-5, true, opt.dtype));
    conv2_ = register_module(
        "conv2", maybe_spectral(std::make_shared<Conv2d>(channels, channels, 3, gen, co), gen, opt));
}

std::string ConvResidualBlock::describe() const {
    return fmt::format("ConvResidualBlock(channels={}, dropout={}{})", channels_, opt_.dropout,
                       opt_.spectral_norm ? fmt::format(", sn={}", opt_.norm_multiplier) : "");
}

Var ConvResidualBlock::forward(const Var& x) {
    if (x.rank() != 4 || x.dim(1) != channels_)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [N, {}, H, W])", describe(),
                                     sdeuq::describe(x.value()), channels_));
    // act(GroupNorm(.)): one fused op for relu.
    auto norm_act = [&](GroupNorm& gn, const Var& v) {
        return opt_.act == Act::relu ? gn.forward_relu(v) : activate(opt_.act, gn.forward(v));
    };
    Var h = conv1_->forward(norm_act(*gn1_, x));
    if (dropout_) h = dropout_->forward(h);
    h = conv2_->forward(norm_act(*gn2_, h));
    return x + h;
}

}  // namespace sdeuq::nn
