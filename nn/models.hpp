// Models: the SNGP tutorial's residual MLP (deterministic or SNGP) and a small MNIST convolutional net.
#pragma once

#include "nn/gp_layer.hpp"
#include "nn/layers.hpp"

namespace sdeuq::nn {

// A classifier whose logits are a final layer applied to penultimate features: logits(x) =
// classify(features(x)). Wrappers that add a branch on the features (nn/confidence.hpp) use it.
class FeatureClassifier : public Module {
public:
    virtual Var features(const Var& x) = 0;           // [N, feature_dim()]
    virtual Var classify(const Var& features) = 0;    // logits [N, classes]
    virtual std::int64_t feature_dim() const = 0;
};

// TensorFlow's "Uncertainty-aware Deep Learning with SNGP" tutorial, DeepResNet / DeepResNetSNGP:
//   h = Dense(input_dim -> hidden)(x)            frozen (Keras trainable=False), no activation
//   6 x  h = h + dropout(relu(Dense(h)))         (Dense with activation relu, then dropout 0.1, then skip)
//   logits = Dense(hidden -> classes)(h)         deterministic, or
//   logits, cov = RandomFeatureGP(h)             SNGP: Dense layers wrapped in SpectralNorm(c = 0.9), GP head
//                                                with num_inducing 1024, normalize_input False,
//                                                scale_random_features True, gp_cov_momentum -1 (exact epoch
//                                                sum, reset at every epoch start), TF's default kernel scale
//                                                1 and ridge penalty 1.
// Dense layers use Keras' default init (glorot_uniform weight, zero bias), as in the tutorial.
struct ResNetConfig {
    std::int64_t input_dim = 2;
    std::int64_t hidden = 128;
    int num_layers = 6;
    std::int64_t num_classes = 2;
    double dropout = 0.1;
    bool sngp = false;
    double spec_norm_bound = 0.9;
    GpOptions gp = {};
    DType dtype = DType::f32;
};

class ResNetClassifier : public FeatureClassifier {
public:
    ResNetClassifier(const ResNetConfig& cfg, Generator& gen);
    std::string describe() const override;
    // Logits (in training mode an SNGP head also accumulates its precision matrix).
    Var forward(const Var& x) override;
    // The hidden representation before the output layer.
    Var embed(const Var& x);
    Var features(const Var& x) override { return embed(x); }
    Var classify(const Var& h) override;
    std::int64_t feature_dim() const override { return cfg_.hidden; }
    // Logits and, for SNGP, the predictive variance (and covariance); a deterministic model leaves them
    // undefined.
    GpPrediction predict(const Var& x, bool full_covariance = false);
    // Start of an epoch: restart the GP precision (no-op for the deterministic model).
    void reset_precision();
    RandomFeatureGP* gp() { return gp_.get(); }
    const ResNetConfig& config() const { return cfg_; }

private:
    ResNetConfig cfg_;
    std::shared_ptr<Linear> input_;
    std::vector<std::shared_ptr<DenseResidual>> blocks_;
    std::shared_ptr<Linear> output_;
    std::shared_ptr<RandomFeatureGP> gp_;
};

// MNIST classifier after SDE-Net's MNIST model (Kong et al. 2020, github.com/Lingkai-Kong/SDE-Net): the
// downsampling block
//   Conv(in -> w, 3x3, stride 1), GN, ReLU, Conv(w -> w, 4x4, stride 2, pad 1), GN, ReLU,
//   Conv(w -> w, 4x4, stride 2, pad 1)                 (28x28 -> 26 -> 13 -> 6)
// then num_blocks pre-activation residual conv blocks (where SDE-Net puts its SDE), and the head
//   GN, ReLU, global average pool, [dropout], Linear(w -> classes).
// GroupNorm uses min(32, w) groups as SDE-Net's norm(). dropout > 0 adds dropout inside each residual block
// and before the final Linear (for MC dropout: set_mc_dropout(model, true)).
//
// sngp: SNGP for images (Liu et al. 2020, Section 3 and Algorithm 1): every convolution (downsampling and
// residual) is wrapped in SpectralNorm with bound spec_norm_bound (the kernel as the matrix
// [out, in*kh*kw], nn/spectral_norm.hpp), and the final Linear is replaced by a RandomFeatureGP head on the
// pooled features; predict() then returns the GP's logits and predictive variance.
struct ConvNetConfig {
    std::int64_t in_channels = 1;
    std::int64_t width = 64;
    int num_blocks = 2;
    std::int64_t num_classes = 10;
    double dropout = 0.0;
    int groups = 32;
    DType dtype = DType::f32;
    bool sngp = false;
    double spec_norm_bound = 6.0;
    GpOptions gp = {};
};

class MnistConvNet : public FeatureClassifier {
public:
    MnistConvNet(const ConvNetConfig& cfg, Generator& gen);
    std::string describe() const override;
    Var forward(const Var& x) override;
    // [N, width, H', W'] after the downsampling block.
    Var downsample(const Var& x);
    // Residual blocks then head: logits (in training mode an SNGP head also accumulates its precision).
    Var head(const Var& h);
    // Logits and, for SNGP, the GP's predictive variance (a deterministic net leaves it undefined).
    GpPrediction predict(const Var& x);
    // Start of an epoch: restart the GP precision (no-op without SNGP).
    void reset_precision();
    RandomFeatureGP* gp() { return gp_.get(); }
    // The globally pooled features before the final Linear (after its dropout, if any).
    Var features(const Var& x) override;
    Var classify(const Var& features) override;
    std::int64_t feature_dim() const override { return cfg_.width; }
    const ConvNetConfig& config() const { return cfg_; }

private:
    ConvNetConfig cfg_;
    std::shared_ptr<Sequential> down_, blocks_, head_;
    std::shared_ptr<RandomFeatureGP> gp_;
};

}  // namespace sdeuq::nn
