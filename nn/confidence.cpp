#include "nn/confidence.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <type_traits>

namespace sdeuq::nn {

FlatConvNet::FlatConvNet(const FlatConvNetConfig& cfg, Generator& gen) : cfg_(cfg) {
    if (cfg.in_channels < 1 || cfg.height < 1 || cfg.width_px < 1 || cfg.width < 1 || cfg.hidden < 1 ||
        cfg.num_classes < 2)
        throw std::invalid_argument(fmt::format(
            "FlatConvNet: in_channels {}, image {}x{}, width {}, hidden {} must be >= 1 and classes {} >= 2",
            cfg.in_channels, cfg.height, cfg.width_px, cfg.width, cfg.hidden, cfg.num_classes));
    Conv2dOptions co;
    co.stride = 2;
    co.padding = 2;
    co.dtype = cfg.dtype;
    LinearOptions lo;
    lo.dtype = cfg.dtype;
    // A 5x5 convolution with stride 2 and padding 2 maps n pixels to floor((n - 1) / 2) + 1.
    auto down = [](std::int64_t n) { return (n - 1) / 2 + 1; };
    const std::int64_t flat = 2 * cfg.width * down(down(cfg.height)) * down(down(cfg.width_px));
    body_ = register_module("body", std::make_shared<Sequential>());
    body_->push_back(std::make_shared<Conv2d>(cfg.in_channels, cfg.width, 5, gen, co));
    body_->push_back(std::make_shared<Activation>(Act::relu));
    body_->push_back(std::make_shared<Conv2d>(cfg.width, 2 * cfg.width, 5, gen, co));
    body_->push_back(std::make_shared<Activation>(Act::relu));
    body_->push_back(std::make_shared<Flatten>());
    body_->push_back(std::make_shared<Linear>(flat, cfg.hidden, gen, lo));
    body_->push_back(std::make_shared<Activation>(Act::relu));
    out_ = register_module("out", std::make_shared<Linear>(cfg.hidden, cfg.num_classes, gen, lo));
}

std::string FlatConvNet::describe() const {
    return fmt::format("FlatConvNet(in={}, {}x{}, width={}, hidden={}, classes={})", cfg_.in_channels,
                       cfg_.height, cfg_.width_px, cfg_.width, cfg_.hidden, cfg_.num_classes);
}

Var FlatConvNet::features(const Var& x) {
    if (x.rank() != 4 || x.dim(1) != cfg_.in_channels || x.dim(2) != cfg_.height || x.dim(3) != cfg_.width_px)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [N, {}, {}, {}])", describe(),
                                     sdeuq::describe(x.value()), cfg_.in_channels, cfg_.height,
                                     cfg_.width_px));
    return body_->forward(x);
}

Var FlatConvNet::classify(const Var& features) { return out_->forward(features); }

ConfidenceClassifier::ConfidenceClassifier(std::shared_ptr<FeatureClassifier> base, Generator& gen,
                                           DType dtype)
    : base_(register_module("base", std::move(base))) {
    LinearOptions lo;
    lo.dtype = dtype;
    branch_ = register_module("confidence", std::make_shared<Linear>(base_->feature_dim(), 1, gen, lo));
}

std::string ConfidenceClassifier::describe() const {
    return fmt::format("ConfidenceClassifier({})", base_->describe());
}

ConfidenceOutput ConfidenceClassifier::forward_both(const Var& x) {
    Var f = base_->features(x);
    return {base_->classify(f), branch_->forward(f)};
}

Var ConfidenceClassifier::forward(const Var& x) {
    return base_->classify(base_->features(x));
}

ConfidenceLoss confidence_loss(const Var& logits, const Var& confidence_logit,
                               std::span<const std::int32_t> labels, std::span<const std::uint8_t> hints,
                               double lambda, const ConfidenceLossOptions& opt) {
    if (logits.rank() != 2 || confidence_logit.rank() != 2 || confidence_logit.dim(1) != 1 ||
        confidence_logit.dim(0) != logits.dim(0) ||
        static_cast<std::size_t>(logits.dim(0)) != labels.size() || hints.size() != labels.size())
        throw std::invalid_argument(fmt::format(
            "confidence_loss: logits {} and confidence logits {} must be [N, C] and [N, 1], with {} labels "
            "and "
            "{} hints",
            describe(logits.value()), describe(confidence_logit.value()), labels.size(), hints.size()));
    const std::int64_t n = logits.dim(0), k = logits.dim(1);
    const DType dt = logits.value().dtype();
    const double lo = opt.clamp, hi = 1.0 - opt.clamp;
    Var p = clamp(softmax(logits, -1), lo, hi);
    Var c = clamp(sigmoid(confidence_logit), lo, hi);
    std::vector<double> b(hints.begin(), hints.end()), not_b(hints.size());
    for (std::size_t i = 0; i < b.size(); ++i) not_b[i] = 1.0 - b[i];
    // Hints: c_b = c b + (1 - b); p' = c_b p + (1 - c_b) y (DeVries & Taylor eq. 2).
    Var cb = c * Var(Tensor::from_vector(b, {n, 1}, dt)) + Var(Tensor::from_vector(not_b, {n, 1}, dt));
    Var y(one_hot(labels, k, dt));
    Var p_new = cb * p + (1.0 - cb) * y;
    ConfidenceLoss out;
    out.task = nll_loss(log(p_new), labels);
    out.confidence = mean(-log(c));
    out.total = out.task + lambda * out.confidence;
    return out;
}

std::vector<std::uint8_t> draw_hints(std::size_t n, double prob, Generator& gen) {
    if (!(prob >= 0.0 && prob <= 1.0))
        throw std::invalid_argument(fmt::format("draw_hints: probability {} outside [0, 1]", prob));
    std::vector<std::uint8_t> b(n);
    for (auto& v : b) v = gen.uniform() < prob ? 1 : 0;
    return b;
}

double update_budget(double lambda, double confidence_loss, const BudgetOptions& opt) {
    return opt.beta > confidence_loss ? lambda / opt.decrease : lambda / opt.increase;
}

double confidence_backward(ConfidenceClassifier& model, const Var& x, std::span<const std::int32_t> labels,
                           std::span<const std::uint8_t> hints, double& lambda, const BudgetOptions& budget,
                           const ConfidenceLossOptions& opt) {
    auto o = model.forward_both(x);
    auto loss = confidence_loss(o.logits, o.confidence_logit, labels, hints, lambda, opt);
    const double lc = loss.confidence.item();
    lambda = update_budget(lambda, lc, budget);
    backward(loss.total);
    return lc;
}

namespace {

// x - eps sign(g), into a heap tensor of x's shape and dtype.
Tensor signed_step(const Tensor& x, const Tensor& g, double eps) {
    Tensor out = x.clone();
    const std::int64_t n = x.numel();
    auto apply = [&](auto* po, const auto* pg) {
        for (std::int64_t i = 0; i < n; ++i) {
            const double gi = static_cast<double>(pg[i]);
            const double s = gi > 0 ? 1.0 : gi < 0 ? -1.0 : 0.0;
            po[i] = static_cast<std::remove_pointer_t<decltype(po)>>(po[i] - eps * s);
        }
    };
    if (x.dtype() == DType::f32)
        apply(out.data<float>(), g.data<float>());
    else
        apply(out.data<double>(), g.data<double>());
    return out;
}

}  // namespace

Tensor confidence_perturb(ConfidenceClassifier& model, const Tensor& x, double eps) {
    NestedTape nested;  // parameters' gradients are not touched on a nested tape
    Var xv = leaf(x);
    // -log sigmoid(z) = softplus(-z): the same value, but its gradient -sigmoid(-z) stays nonzero where
    // sigmoid(z) rounds to 1 in float32 (z > ~17), and there the gradient of -log(sigmoid(z)) is exactly
    // 0, so the most confident images would not be moved at all (sign(0) = 0).
    backward(mean(softplus(-model.forward_both(xv).confidence_logit)));
    return signed_step(x, xv.grad(), eps);
}

std::vector<double> confidence_logits(ConfidenceClassifier& model, const Tensor& x) {
    NestedTape nested;
    NoGradScope ng;
    Tensor z = model.forward_both(Var(x)).confidence_logit.value();
    std::vector<double> out(static_cast<std::size_t>(z.numel()));
    for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = z.dtype() == DType::f32 ? double(z.data<float>()[i]) : z.data<double>()[i];
    return out;
}

std::vector<double> confidence_scores(ConfidenceClassifier& model, const Tensor& x) {
    auto out = confidence_logits(model, x);
    for (double& v : out) v = 1.0 / (1.0 + std::exp(-v));
    return out;
}

Tensor odin_perturb(Module& model, const Tensor& x, double temperature, double eps) {
    NestedTape nested;
    Var xv = leaf(x);
    Var logits = model.forward(xv) / temperature;
    // The predicted class is the label (Liang et al. eq. 2: the gradient of -log S_yhat(x; T)).
    const Tensor& lv = logits.value();
    const std::int64_t n = lv.dim(0), k = lv.dim(1);
    std::vector<std::int32_t> pred(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
        std::int64_t best = 0;
        for (std::int64_t j = 1; j < k; ++j) {
            const double a =
                lv.dtype() == DType::f32 ? lv.data<float>()[i * k + j] : lv.data<double>()[i * k + j];
            const double bb =
                lv.dtype() == DType::f32 ? lv.data<float>()[i * k + best] : lv.data<double>()[i * k + best];
            if (a > bb) best = j;
        }
        pred[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(best);
    }
    backward(cross_entropy(logits, pred));
    return signed_step(x, xv.grad(), eps);
}

std::vector<double> max_softmax_scores(Module& model, const Tensor& x, double temperature) {
    NestedTape nested;
    NoGradScope ng;
    Var p = softmax(model.forward(Var(x)) / temperature, -1);
    const Tensor& pv = p.value();
    const std::int64_t n = pv.dim(0), k = pv.dim(1);
    std::vector<double> out(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
        double m = 0;
        for (std::int64_t j = 0; j < k; ++j)
            m = std::max(m, pv.dtype() == DType::f32 ? double(pv.data<float>()[i * k + j])
                                                     : pv.data<double>()[i * k + j]);
        out[static_cast<std::size_t>(i)] = m;
    }
    return out;
}

}  // namespace sdeuq::nn
