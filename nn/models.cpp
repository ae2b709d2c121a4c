#include "nn/models.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "nn/spectral_norm.hpp"

namespace sdeuq::nn {

// ---------------------------------------------------------------- residual MLP (SNGP tutorial)

ResNetClassifier::ResNetClassifier(const ResNetConfig& cfg, Generator& gen) : cfg_(cfg) {
    LinearOptions in_opt;
    in_opt.dtype = cfg.dtype;
    in_opt.init = Init::keras_default;
    in_opt.trainable = false;  // the tutorial's frozen input projection
    input_ = register_module("input", std::make_shared<Linear>(cfg.input_dim, cfg.hidden, gen, in_opt));
    ResidualOptions ro;
    ro.act = Act::relu;
    ro.dropout = cfg.dropout;
    ro.spectral_norm = cfg.sngp;
    ro.norm_multiplier = cfg.spec_norm_bound;
    ro.dtype = cfg.dtype;
    ro.init = Init::keras_default;
    for (int i = 0; i < cfg.num_layers; ++i)
        blocks_.push_back(
            register_module(fmt::format("block{}", i), std::make_shared<DenseResidual>(cfg.hidden, gen, ro)));
    if (cfg.sngp) {
        GpOptions go = cfg.gp;
        go.dtype = cfg.dtype;
        gp_ = register_module("gp", std::make_shared<RandomFeatureGP>(cfg.hidden, cfg.num_classes, gen, go));
    } else {
        LinearOptions lo;
        lo.dtype = cfg.dtype;
        lo.init = Init::keras_default;
        output_ = register_module("output", std::make_shared<Linear>(cfg.hidden, cfg.num_classes, gen, lo));
    }
}

std::string ResNetClassifier::describe() const {
    return fmt::format("ResNetClassifier(in={}, hidden={}, layers={}, classes={}{})", cfg_.input_dim,
                       cfg_.hidden, cfg_.num_layers, cfg_.num_classes, cfg_.sngp ? ", sngp" : "");
}

Var ResNetClassifier::embed(const Var& x) {
    if (x.rank() != 2 || x.dim(1) != cfg_.input_dim)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [B, {}])", describe(),
                                     sdeuq::describe(x.value()), cfg_.input_dim));
    Var h = input_->forward(x);
    for (auto& b : blocks_) h = b->forward(h);
    return h;
}

Var ResNetClassifier::forward(const Var& x) {
    return classify(embed(x));
}

Var ResNetClassifier::classify(const Var& h) {
    return gp_ ? gp_->forward(h) : output_->forward(h);
}

GpPrediction ResNetClassifier::predict(const Var& x, bool full_covariance) {
    Var h = embed(x);
    if (gp_) return gp_->predict(h, full_covariance);
    GpPrediction out;
    out.logits = output_->forward(h);
    return out;
}

void ResNetClassifier::reset_precision() {
    if (gp_) gp_->reset_precision();
}

// ---------------------------------------------------------------- MNIST conv net (SDE-Net's layout)

MnistConvNet::MnistConvNet(const ConvNetConfig& cfg, Generator& gen) : cfg_(cfg) {
    const std::int64_t w = cfg.width;
    const int groups = static_cast<int>(std::min<std::int64_t>(cfg.groups, w));
    auto conv = [&](std::int64_t in, int k, int stride, int pad) {
        Conv2dOptions co;
        co.stride = stride;
        co.padding = pad;
        co.dtype = cfg.dtype;
        std::shared_ptr<WeightedLayer> c = std::make_shared<Conv2d>(in, w, k, gen, co);
        if (cfg.sngp) {
            SpectralNormOptions so;
            so.norm_multiplier = cfg.spec_norm_bound;
            c = std::make_shared<SpectralNorm>(std::move(c), gen, so);
        }
        return c;
    };
    auto gn = [&] {
        return std::make_shared<GroupNorm>(groups, w, 1e-5, true, cfg.dtype);
    };
    down_ = register_module("down", std::make_shared<Sequential>());
    down_->push_back(conv(cfg.in_channels, 3, 1, 0));
    down_->push_back(gn());
    down_->push_back(std::make_shared<Activation>(Act::relu));
    down_->push_back(conv(w, 4, 2, 1));
    down_->push_back(gn());
    down_->push_back(std::make_shared<Activation>(Act::relu));
    down_->push_back(conv(w, 4, 2, 1));
    blocks_ = register_module("blocks", std::make_shared<Sequential>());
    ResidualOptions ro;
    ro.dropout = cfg.dropout;
    ro.dtype = cfg.dtype;
    ro.groups = cfg.groups;
    ro.spectral_norm = cfg.sngp;
    ro.norm_multiplier = cfg.spec_norm_bound;
    for (int i = 0; i < cfg.num_blocks; ++i)
        blocks_->push_back(std::make_shared<ConvResidualBlock>(w, gen, ro));
    head_ = register_module("head", std::make_shared<Sequential>());
    head_->push_back(gn());
    head_->push_back(std::make_shared<Activation>(Act::relu));
    head_->push_back(std::make_shared<GlobalAvgPool>());
    if (cfg.dropout > 0.0) {
        const std::uint64_t hi = gen(), lo = gen();
        head_->push_back(std::make_shared<Dropout>(cfg.dropout, Generator(gen.seed(), (hi << 32) | lo)));
    }
    if (cfg.sngp) {
        GpOptions go = cfg.gp;
        go.dtype = cfg.dtype;
        gp_ = register_module("gp", std::make_shared<RandomFeatureGP>(w, cfg.num_classes, gen, go));
    } else {
        LinearOptions lo;
        lo.dtype = cfg.dtype;
        head_->push_back(std::make_shared<Linear>(w, cfg.num_classes, gen, lo));
    }
}

std::string MnistConvNet::describe() const {
    return fmt::format("MnistConvNet(in={}, width={}, blocks={}, classes={}, dropout={}{})", cfg_.in_channels,
                       cfg_.width, cfg_.num_blocks, cfg_.num_classes, cfg_.dropout,
                       cfg_.sngp ? fmt::format(", sngp c={}", cfg_.spec_norm_bound) : "");
}

Var MnistConvNet::downsample(const Var& x) {
    if (x.rank() != 4 || x.dim(1) != cfg_.in_channels)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [N, {}, H, W])", describe(),
                                     sdeuq::describe(x.value()), cfg_.in_channels));
    return down_->forward(x);
}

Var MnistConvNet::head(const Var& h) {
    Var z = head_->forward(blocks_->forward(h));
    return gp_ ? gp_->forward(z) : z;
}

GpPrediction MnistConvNet::predict(const Var& x) {
    if (!gp_) {
        GpPrediction out;
        out.logits = forward(x);
        return out;
    }
    return gp_->predict(head_->forward(blocks_->forward(downsample(x))));
}

void MnistConvNet::reset_precision() {
    if (gp_) gp_->reset_precision();
}

Var MnistConvNet::features(const Var& x) {
    Var h = blocks_->forward(downsample(x));
    for (std::size_t i = 0; i + 1 < head_->size(); ++i) h = (*head_)[i].forward(h);
    return h;
}

Var MnistConvNet::classify(const Var& f) {
    return (*head_)[head_->size() - 1].forward(f);
}

Var MnistConvNet::forward(const Var& x) {
    return head(downsample(x));
}

}  // namespace sdeuq::nn
