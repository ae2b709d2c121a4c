// Layers: Linear, Conv2d, GroupNorm, LayerNorm, Dropout, activations, pooling and residual blocks.
//
// Every layer checks its input and throws ShapeError naming the layer and both shapes, e.g.
// "Linear(in=4, out=3): input f32[2, 5] does not match (expected [..., 4], f32)".
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "nn/init.hpp"
#include "nn/module.hpp"

namespace sdeuq::nn {

// How a weight layer is initialised. torch_default is PyTorch's (kaiming_uniform with a = sqrt(5), i.e.
// U(+-1/sqrt(fan_in)) for weight and bias); keras_default is Keras' Dense/Conv default (glorot_uniform
// weight, zero bias), used by the models that reproduce TensorFlow tutorials.
enum class Init { torch_default, keras_default, kaiming_normal_relu, xavier_normal, zeros };
void initialize(Init how, Tensor& weight, Tensor* bias, Generator& gen);

// A layer computing y = f(x; W) with one main weight: what SpectralNorm wraps.
class WeightedLayer : public Module {
public:
    virtual Parameter& weight() = 0;
    virtual Parameter* bias() = 0;
    // The same layer with W replaced by w (same shape as weight()).
    virtual Var forward_with_weight(const Var& x, const Var& w) = 0;
    Var forward(const Var& x) override { return forward_with_weight(x, weight().var()); }
};

struct LinearOptions {
    bool bias = true;
    DType dtype = DType::f32;
    Init init = Init::torch_default;
    bool trainable = true;
};

// y = x W^T + b, W [out, in] (the layout of the `linear` op, as PyTorch), x [..., in].
class Linear : public WeightedLayer {
public:
    Linear(std::int64_t in, std::int64_t out, Generator& gen, LinearOptions opt = {});
    std::string describe() const override;
    Parameter& weight() override { return *weight_; }
    Parameter* bias() override { return bias_; }
    Var forward_with_weight(const Var& x, const Var& w) override;
    // act(forward(x)) as one fused op (linear(..., LinearAct)); Sequential uses it for a Linear followed by
    // a tanh, sigmoid or relu Activation. The same bits as the two layers.
    Var forward_activated(const Var& x, LinearAct act);
    std::int64_t in_features() const { return in_; }
    std::int64_t out_features() const { return out_; }

private:
    Var forward_fused(const Var& x, const Var& w, LinearAct act);
    std::int64_t in_, out_;
    DType dtype_;
    Parameter* weight_ = nullptr;
    Parameter* bias_ = nullptr;
};

struct Conv2dOptions {
    int stride = 1;
    int padding = 0;
    bool bias = true;
    DType dtype = DType::f32;
    Init init = Init::torch_default;
};

// x [N, C, H, W] -> [N, O, H', W'], weight [O, C, k, k], zero padding.
class Conv2d : public WeightedLayer {
public:
    Conv2d(std::int64_t in_channels, std::int64_t out_channels, int kernel, Generator& gen,
           Conv2dOptions opt = {});
    std::string describe() const override;
    Parameter& weight() override { return *weight_; }
    Parameter* bias() override { return bias_; }
    Var forward_with_weight(const Var& x, const Var& w) override;

private:
    std::int64_t in_, out_;
    int kernel_;
    Conv2dOptions opt_;
    Parameter* weight_ = nullptr;
    Parameter* bias_ = nullptr;
};

// Wu & He 2018: per sample, statistics over each group of C/groups channels (and all spatial positions);
// affine gamma (ones), beta (zeros) per channel.
class GroupNorm : public Module {
public:
    GroupNorm(int groups, std::int64_t channels, double eps = 1e-5, bool affine = true,
              DType dtype = DType::f32);
    std::string describe() const override;
    Var forward(const Var& x) override;
    // relu(forward(x)) as one fused op (group_norm_relu): the same values.
    Var forward_relu(const Var& x);

private:
    Var run(const Var& x, bool relu);
    int groups_;
    std::int64_t channels_;
    double eps_;
    DType dtype_;
    Parameter* gamma_ = nullptr;
    Parameter* beta_ = nullptr;
};

// Ba et al. 2016: normalises the last dimension (of size dim).
class LayerNorm : public Module {
public:
    LayerNorm(std::int64_t dim, double eps = 1e-5, bool affine = true, DType dtype = DType::f32);
    std::string describe() const override;
    Var forward(const Var& x) override;

private:
    std::int64_t dim_;
    double eps_;
    DType dtype_;
    Parameter* gamma_ = nullptr;
    Parameter* beta_ = nullptr;
};

// Inverted dropout (Srivastava et al. 2014): identity in eval mode unless MC-dropout is switched on
// (Gal & Ghahramani 2016 keep it active at test time). The mask comes from a Generator that the module
// owns (registered, so checkpoints restore it) or, with the second constructor, one shared with the
// caller (not registered: the caller saves it).
class Dropout : public Module {
public:
    Dropout(double p, Generator gen);
    Dropout(double p, Generator* shared);
    std::string describe() const override;
    Var forward(const Var& x) override;
    // forward(relu(x)) as one fused op (relu_dropout): the same draws and values.
    Var forward_relu(const Var& x);
    Generator& generator() { return *gen_; }
    double p() const { return p_; }
    void set_mc(bool on) { mc_ = on; }
    bool mc() const { return mc_; }

private:
    double p_;
    Generator owned_;
    Generator* gen_;
    bool mc_ = false;
};

// Switches MC dropout on or off in every Dropout of the tree.
void set_mc_dropout(Module& m, bool on);

enum class Act { identity, relu, tanh, sigmoid, silu, softplus };
const char* act_name(Act a);
Var activate(Act a, const Var& x);

class Activation : public Module {
public:
    explicit Activation(Act a) : act_(a) {}
    std::string describe() const override { return act_name(act_); }
    Var forward(const Var& x) override { return activate(act_, x); }
    Act act() const { return act_; }

private:
    Act act_;
};

// [N, d1, d2, ...] -> [N, d1 * d2 * ...]
class Flatten : public Module {
public:
    std::string describe() const override { return "Flatten"; }
    Var forward(const Var& x) override;
};

// [N, C, H, W] -> [N, C]
class GlobalAvgPool : public Module {
public:
    std::string describe() const override { return "GlobalAvgPool"; }
    Var forward(const Var& x) override;
};

struct ResidualOptions {
    Act act = Act::relu;
    double dropout = 0.0;
    bool spectral_norm = false;
    double norm_multiplier = 0.9;  // SNGP's bound c on the spectral norm (Liu et al. 2020, eq. 7)
    int power_iterations = 1;
    DType dtype = DType::f32;
    Init init = Init::torch_default;
    int groups = 32;  // ConvResidualBlock: GroupNorm groups (min with channels)
};

// x + dropout(act(W x + b)): the SNGP tutorial's residual Dense layer (a Dense with a relu activation,
// dropout, and the skip connection). With spectral_norm, W is wrapped by SpectralNorm, which together with
// the identity skip makes the block bi-Lipschitz (Liu et al. 2020, Section 3.1).
class DenseResidual : public Module {
public:
    DenseResidual(std::int64_t dim, Generator& gen, ResidualOptions opt = {});
    std::string describe() const override;
    Var forward(const Var& x) override;
    WeightedLayer& dense() { return *dense_; }
    Dropout* dropout() { return dropout_.get(); }

private:
    std::int64_t dim_;
    ResidualOptions opt_;
    std::shared_ptr<WeightedLayer> dense_;
    std::shared_ptr<Dropout> dropout_;
};

// Pre-activation residual block (He et al. 2016, "Identity mappings", Fig. 4e) with GroupNorm:
// x + conv2(act(gn2(dropout(conv1(act(gn1(x))))))), 3x3 convolutions with padding 1, C -> C.
class ConvResidualBlock : public Module {
public:
    ConvResidualBlock(std::int64_t channels, Generator& gen, ResidualOptions opt = {});
    std::string describe() const override;
    Var forward(const Var& x) override;

private:
    std::int64_t channels_;
    ResidualOptions opt_;
    std::shared_ptr<GroupNorm> gn1_, gn2_;
    std::shared_ptr<WeightedLayer> conv1_, conv2_;
    std::shared_ptr<Dropout> dropout_;
};

}  // namespace sdeuq::nn
