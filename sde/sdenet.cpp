#include "sde/sdenet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <tuple>

#include "autodiff/tensor_ops.hpp"
#include "nn/init.hpp"

namespace sdeuq::sde {

namespace {

int groups_for(int max_groups, std::int64_t channels) {
    return static_cast<int>(std::min<std::int64_t>(max_groups, channels));
}

// The reference's init_params (SDE-Net, models/sdenet_mnist.py): conv weights kaiming_normal_(mode=fan_out)
// (default nonlinearity leaky_relu with a = 0, i.e. gain sqrt(2)), Linear weights N(0, std^2), every bias 0.
// GroupNorm keeps its default (gamma 1, beta 0).
void reference_init(nn::Module& m, Generator& gen, double linear_std) {
    for (auto& [name, p] : m.named_parameters()) {
        Tensor& v = p->value();
        const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
        // GroupNorm's 1-D gamma/beta keep their defaults (1, 0): only weights of rank 4 (conv) and 2
        // (linear) are redrawn.
        if (is_bias) {  // (GroupNorm beta is 0 already)
            nn::init::zeros_(v);
        } else if (v.rank() == 4) {
            nn::init::kaiming_normal_(v, gen, 0.0, nn::init::FanMode::fan_out, nn::init::Nonlinearity::relu);
        } else if (v.rank() == 2) {
            nn::init::normal_(v, gen, 0.0, linear_std);
        }
    }
}

// A fresh child stream drawn from the construction generator.
Generator child_generator(Generator& gen) {
    const std::uint64_t hi = gen(), lo = gen();
    return Generator(gen.seed(), (hi << 32) | lo);
}

// Freezes parameters for a scope and restores each one's own trainable flag at its end.
class FreezeScope {
public:
    explicit FreezeScope(std::vector<Parameter*> ps) : ps_(std::move(ps)) {
        for (auto* p : ps_) {
            was_.push_back(p->trainable());
            p->set_trainable(false);
        }
    }
    ~FreezeScope() {
        for (std::size_t i = 0; i < ps_.size(); ++i) ps_[i]->set_trainable(was_[i]);
    }
    FreezeScope(const FreezeScope&) = delete;
    FreezeScope& operator=(const FreezeScope&) = delete;

private:
    std::vector<Parameter*> ps_;
    std::vector<bool> was_;
};

// The task loss reaches the diffusion's weights too (g(h0) is not detached), but the reference zeroes that
// gradient before the diffusion step: unless a gradient-norm clip reads it, the diffusion's weights are
// constants of the task-loss pass (no weight-gradient GEMMs; the gradient reaching h0 through g is the same).
void freeze_diffusion(std::optional<FreezeScope>& f, SdeNetBase& model, double clip) {
    if (clip <= 0.0) f.emplace(model.diffusion_parameters());
}

void check_sigma(const char* who, double s) {
    if (!std::isfinite(s) || s < 0.0)
        throw std::invalid_argument(fmt::format("{}: sigma must be finite and >= 0 (got {})", who, s));
}

}  // namespace

// ---------------------------------------------------------------- ConcatConv2d

ConcatConv2d::ConcatConv2d(std::int64_t in, std::int64_t out, int kernel, Generator& gen,
                           nn::Conv2dOptions opt)
    : in_(in), dtype_(opt.dtype) {
    conv_ = register_module("conv", std::make_shared<nn::Conv2d>(in + 1, out, kernel, gen, opt));
}

std::string ConcatConv2d::describe() const {
    return fmt::format("ConcatConv2d(in={}+t, {})", in_, conv_->describe());
}

Var ConcatConv2d::forward(double t, const Var& x) {
    if (x.rank() != 4 || x.dim(1) != in_ || x.dtype() != dtype_)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [N, {}, H, W], {})", describe(),
                                     sdeuq::describe(x.value()), in_, dtype_name(dtype_)));
    // Channel 0 holds t (the reference's torch.cat([tt, x], 1)).
    Tensor tt = Tensor::arena_empty({x.dim(0), 1, x.dim(2), x.dim(3)}, x.dtype());
    tt.fill(t);
    const Var parts[2] = {Var(tt), x};
    return conv_->forward(concat(parts, 1));
}

// ---------------------------------------------------------------- SdeNetBase

SdeNetBase::SdeNetBase(const char* who, double sigma, int steps, double t_end, DType dtype)
    : who_(who), sigma_(sigma), steps_(steps), t_end_(t_end), dtype_(dtype) {
    if (steps < 1 || !(t_end > 0.0))
        throw std::invalid_argument(
            fmt::format("{}: steps must be >= 1 and t_end > 0 (got steps={}, t_end={})", who, steps, t_end));
    check_sigma(who, sigma);
}

void SdeNetBase::init_noise(Generator& gen) {
    noise_ = child_generator(gen);
    register_generator("noise", &noise_);
}

void SdeNetBase::set_sigma(double s) {
    check_sigma(fmt::format("{}::set_sigma", who_).c_str(), s);
    sigma_ = s;
}

Var SdeNetBase::euler_maruyama(Var h, const Var& g0, double sigma, Generator& noise,
                               const std::function<Var(double, const Var&)>& drift) const {
    check_sigma(who_, sigma);
    const double dt = t_end_ / steps_;
    const Var g = g0 * (sigma * std::sqrt(dt));  // sigma g(x0) sqrt(dt), the same for every step
    for (int k = 0; k < steps_; ++k) {
        Var eps(randn(h.shape(), noise, h.dtype()));
        h = h + drift(k * dt, h) * dt + g * eps;
    }
    return h;
}

// ---------------------------------------------------------------- drift and diffusion

SdeNetDrift::SdeNetDrift(std::int64_t width, int groups, Generator& gen, DType dtype) : width_(width) {
    nn::Conv2dOptions co{.stride = 1, .padding = 1, .bias = true, .dtype = dtype};
    gn1_ = register_module("gn1", std::make_shared<nn::GroupNorm>(groups, width, 1e-5, true, dtype));
    cc1_ = register_module("cc1", std::make_shared<ConcatConv2d>(width, width, 3, gen, co));
    gn2_ = register_module("gn2", std::make_shared<nn::GroupNorm>(groups, width, 1e-5, true, dtype));
    cc2_ = register_module("cc2", std::make_shared<ConcatConv2d>(width, width, 3, gen, co));
    gn3_ = register_module("gn3", std::make_shared<nn::GroupNorm>(groups, width, 1e-5, true, dtype));
}

std::string SdeNetDrift::describe() const {
    return fmt::format("SdeNetDrift(width={})", width_);
}

Var SdeNetDrift::forward(double t, const Var& x) {
    Var h = cc1_->forward(t, gn1_->forward_relu(x));
    h = cc2_->forward(t, gn2_->forward_relu(h));
    return gn3_->forward(h);
}

SdeNetDiffusion::SdeNetDiffusion(std::int64_t width, int groups, Generator& gen, DType dtype)
    : width_(width) {
    nn::Conv2dOptions co{.stride = 1, .padding = 1, .bias = true, .dtype = dtype};
    gn1_ = register_module("gn1", std::make_shared<nn::GroupNorm>(groups, width, 1e-5, true, dtype));
    cc1_ = register_module("cc1", std::make_shared<ConcatConv2d>(width, width, 3, gen, co));
    gn2_ = register_module("gn2", std::make_shared<nn::GroupNorm>(groups, width, 1e-5, true, dtype));
    cc2_ = register_module("cc2", std::make_shared<ConcatConv2d>(width, width, 3, gen, co));
    gn3_ = register_module("gn3", std::make_shared<nn::GroupNorm>(groups, width, 1e-5, true, dtype));
    nn::LinearOptions lo;
    lo.dtype = dtype;
    fc_ = register_module("fc", std::make_shared<nn::Linear>(width, 1, gen, lo));
}

std::string SdeNetDiffusion::describe() const {
    return fmt::format("SdeNetDiffusion(width={})", width_);
}

Var SdeNetDiffusion::forward_logit(double t, const Var& x) {
    Var h = cc1_->forward(t, gn1_->forward_relu(x));
    h = cc2_->forward(t, gn2_->forward_relu(h));
    return fc_->forward(global_avg_pool(gn3_->forward_relu(h)));
}

// ---------------------------------------------------------------- SdeNet (MNIST)

SdeNet::SdeNet(const SdeNetConfig& cfg, Generator& gen)
    : SdeNetBase("SdeNet", cfg.sigma, cfg.steps, cfg.t_end, cfg.dtype), cfg_(cfg) {
    if (cfg.width <= 0 || cfg.in_channels <= 0 || cfg.num_classes <= 0 || cfg.max_groups <= 0 ||
        cfg.width % groups_for(cfg.max_groups, cfg.width) != 0)
        throw std::invalid_argument(fmt::format(
            "SdeNet: need positive sizes and min(max_groups, width) dividing width (width={}, max_groups={}, "
            "in_channels={}, classes={})",
            cfg.width, cfg.max_groups, cfg.in_channels, cfg.num_classes));
    // One channel per group makes every GroupNorm an instance norm: each channel of each sample is brought
    // to the same mean and scale, so the head's and the diffusion's GN -> ReLU -> global average pool see
    // only the spatial shape of each channel, never its level. min(32, C) groups give that for every
    // C <= 32 (the reference only uses C = 64, two channels per group), which silently crippled small
    // configurations; refuse it.
    if (cfg.width / groups_for(cfg.max_groups, cfg.width) < 2)
        throw std::invalid_argument(fmt::format(
            "SdeNet: GroupNorm(min(max_groups, width), width) with width={}, max_groups={} has one channel per "
            "group (an instance norm, which removes each channel's level before the pooled head); use "
            "max_groups <= width / 2",
            cfg.width, cfg.max_groups));
    const std::int64_t w = cfg.width;
    const int groups = groups_for(cfg.max_groups, w);
    auto conv = [&](std::int64_t in, int k, int stride, int pad) {
        nn::Conv2dOptions co{.stride = stride, .padding = pad, .bias = true, .dtype = cfg.dtype};
        return std::make_shared<nn::Conv2d>(in, w, k, gen, co);
    };
    auto gn = [&] { return std::make_shared<nn::GroupNorm>(groups, w, 1e-5, true, cfg.dtype); };
    down_ = register_module("down", std::make_shared<nn::Sequential>());
    down_->push_back(conv(cfg.in_channels, 3, 1, 0));
    down_->push_back(gn());
    down_->push_back(std::make_shared<nn::Activation>(nn::Act::relu));
    down_->push_back(conv(w, 4, 2, 1));
    down_->push_back(gn());
    down_->push_back(std::make_shared<nn::Activation>(nn::Act::relu));
    down_->push_back(conv(w, 4, 2, 1));
    drift_ = register_module("drift", std::make_shared<SdeNetDrift>(w, groups, gen, cfg.dtype));
    diffusion_ = register_module("diffusion", std::make_shared<SdeNetDiffusion>(w, groups, gen, cfg.dtype));
    head_ = register_module("head", std::make_shared<nn::Sequential>());
    head_->push_back(gn());
    head_->push_back(std::make_shared<nn::Activation>(nn::Act::relu));
    head_->push_back(std::make_shared<nn::GlobalAvgPool>());
    nn::LinearOptions lo;
    lo.dtype = cfg.dtype;
    head_->push_back(std::make_shared<nn::Linear>(w, cfg.num_classes, gen, lo));
    if (cfg.reference_init) reference_init(*this, gen, cfg.linear_init_std);
    init_noise(gen);
}

std::string SdeNet::describe() const {
    return fmt::format("SdeNet(in={}, width={}, classes={}, steps={}, t_end={}, sigma={})", cfg_.in_channels,
                       cfg_.width, cfg_.num_classes, cfg_.steps, cfg_.t_end, sigma());
}

Var SdeNet::downsample(const Var& x) {
    if (x.rank() != 4 || x.dim(1) != cfg_.in_channels || x.dtype() != cfg_.dtype)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [N, {}, H, W], {})", describe(),
                                     sdeuq::describe(x.value()), cfg_.in_channels, dtype_name(cfg_.dtype)));
    return down_->forward(x);
}

SdeNet::Start SdeNet::start(const Var& x) {
    Start s;
    s.h0 = downsample(x);
    // g(h0): [N, 1] -> [N, 1, 1, 1], broadcast over channels and positions.
    s.g = reshape(diffusion_->forward(0.0, s.h0), Shape{s.h0.dim(0), 1, 1, 1});
    return s;
}

Var SdeNet::forward_from(const Start& s, double sigma, Generator& noise) {
    return head_->forward(euler_maruyama(s.h0, s.g, sigma, noise,
                                         [this](double t, const Var& v) { return drift_->forward(t, v); }));
}

Var SdeNet::forward(const Var& x, double sigma, Generator& noise) {
    return forward_from(start(x), sigma, noise);
}

Var SdeNet::diffusion_logit(const Var& x) {
    // The downsampling is recorded although its output is detached: under NoGradScope its large
    // activations would be heap tensors (autodiff/tensor.cpp), whose page faults made this step 3x slower
    // (0.53 vs 0.18 CPU s per step of 128 at width 64, measured) than the arena's reused memory.
    return diffusion_->forward_logit(0.0, detach(downsample(x)));
}

std::vector<Parameter*> SdeNet::classifier_parameters() {
    std::vector<Parameter*> p = down_->parameters();
    for (auto* q : drift_->parameters()) p.push_back(q);
    for (auto* q : head_->parameters()) p.push_back(q);
    return p;
}

std::vector<Parameter*> SdeNet::diffusion_parameters() {
    return diffusion_->parameters();
}

// ---------------------------------------------------------------- regression variant

SdeNetRegression::SdeNetRegression(const SdeNetRegressionConfig& cfg, Generator& gen)
    : SdeNetBase("SdeNetRegression", cfg.sigma, cfg.steps, cfg.t_end, cfg.dtype), cfg_(cfg) {
    if (cfg.in_dim <= 0 || cfg.hidden <= 0 || cfg.diffusion_hidden <= 0)
        throw std::invalid_argument(
            fmt::format("SdeNetRegression: sizes must be positive (in_dim={}, hidden={}, diffusion_hidden={})",
                        cfg.in_dim, cfg.hidden, cfg.diffusion_hidden));
    nn::LinearOptions lo;
    lo.dtype = cfg.dtype;
    down_ = register_module("down", std::make_shared<nn::Linear>(cfg.in_dim, cfg.hidden, gen, lo));
    drift_ = register_module("drift", std::make_shared<nn::Linear>(cfg.hidden, cfg.hidden, gen, lo));
    diff1_ = register_module("diffusion1",
                             std::make_shared<nn::Linear>(cfg.hidden, cfg.diffusion_hidden, gen, lo));
    diff2_ = register_module("diffusion2", std::make_shared<nn::Linear>(cfg.diffusion_hidden, 1, gen, lo));
    head_ = register_module("head", std::make_shared<nn::Linear>(cfg.hidden, 2, gen, lo));
    if (cfg.reference_init) reference_init(*this, gen, cfg.linear_init_std);
    init_noise(gen);
}

std::string SdeNetRegression::describe() const {
    return fmt::format("SdeNetRegression(in={}, hidden={}, steps={}, sigma={})", cfg_.in_dim, cfg_.hidden,
                       cfg_.steps, sigma());
}

Var SdeNetRegression::downsample(const Var& x) {
    if (x.rank() != 2 || x.dim(1) != cfg_.in_dim || x.dtype() != cfg_.dtype)
        throw ShapeError(fmt::format("{}: input {} does not match (expected [N, {}], {})", describe(),
                                     sdeuq::describe(x.value()), cfg_.in_dim, dtype_name(cfg_.dtype)));
    return down_->forward(x);
}

RegressionOutput SdeNetRegression::predict(const Var& x, double sigma, Generator& noise) {
    Var h = downsample(x);
    Var g = diff2_->forward_activated(diff1_->forward_activated(h, LinearAct::relu), LinearAct::sigmoid);
    // The drift ReLU(Linear(h)) does not use t (the reference's YearMSD model).
    h = euler_maruyama(h, g, sigma, noise,
                       [this](double, const Var& v) { return drift_->forward_activated(v, LinearAct::relu); });
    Var out = head_->forward(relu(h));
    const std::int64_t n = out.dim(0);
    RegressionOutput r;
    r.mean = reshape(slice(out, 1, 0, 1), Shape{n});
    r.std = softplus(reshape(slice(out, 1, 1, 2), Shape{n})) + cfg_.min_std;
    return r;
}

Var SdeNetRegression::forward(const Var& x) {
    RegressionOutput r = predict(x);
    const std::int64_t n = r.mean.dim(0);
    const Var parts[2] = {reshape(r.mean, Shape{n, 1}), reshape(r.std, Shape{n, 1})};
    return concat(parts, 1);
}

Var SdeNetRegression::diffusion_logit(const Var& x) {
    Var h = detach(downsample(x));
    return diff2_->forward(diff1_->forward_activated(h, LinearAct::relu));
}

std::vector<Parameter*> SdeNetRegression::classifier_parameters() {
    std::vector<Parameter*> p = down_->parameters();
    for (auto* q : drift_->parameters()) p.push_back(q);
    for (auto* q : head_->parameters()) p.push_back(q);
    return p;
}

std::vector<Parameter*> SdeNetRegression::diffusion_parameters() {
    std::vector<Parameter*> p = diff1_->parameters();
    for (auto* q : diff2_->parameters()) p.push_back(q);
    return p;
}

Var sdenet_regression_loss(const RegressionOutput& out, const Var& y) {
    Var var = square(out.std);
    return mean(log(var) + square(y - out.mean) / var);
}

// ---------------------------------------------------------------- trainer

SdeNetTrainer::SdeNetTrainer(SdeNetBase& model, const SdeNetTrainConfig& cfg, std::uint64_t seed)
    : model_(&model), cfg_(cfg), ood_gen_(seed, 0x5DE0) {
    // torch.optim.SGD(lr, momentum=0.9, weight_decay=5e-4): no dampening, no Nesterov (the reference).
    opt_f_ = std::make_unique<nn::SGD>(
        model.classifier_parameters(),
        nn::SGDOptions{.lr = cfg_.lr, .momentum = cfg_.momentum, .weight_decay = cfg_.weight_decay});
    opt_g_ = std::make_unique<nn::SGD>(model.diffusion_parameters(), nn::SGDOptions{.lr = cfg_.lr_diffusion,
                                                                                    .momentum = cfg_.momentum,
                                                                                    .weight_decay =
                                                                                        cfg_.weight_decay});
}

SdeNetTrainer::SdeNetTrainer(SdeNet& model, const SdeNetTrainConfig& cfg, std::uint64_t seed)
    : SdeNetTrainer(static_cast<SdeNetBase&>(model), cfg, seed) {
    cls_ = &model;
}

SdeNetTrainer::SdeNetTrainer(SdeNetRegression& model, const SdeNetTrainConfig& cfg, std::uint64_t seed)
    : SdeNetTrainer(static_cast<SdeNetBase&>(model), cfg, seed) {
    reg_ = &model;
}

void SdeNetTrainer::set_epoch(std::int64_t e) {
    // "after epoch m" = from epoch m + 1 on: MultiStepLR counts milestones <= its step.
    auto shifted = [](std::vector<std::int64_t> ms) {
        for (auto& m : ms) m += 1;
        return ms;
    };
    nn::MultiStepLR(cfg_.lr, shifted(cfg_.milestones), cfg_.gamma).apply(*opt_f_, e);
    nn::MultiStepLR(cfg_.lr_diffusion, shifted(cfg_.milestones_diffusion), cfg_.gamma).apply(*opt_g_, e);
}

void SdeNetTrainer::set_sigma_train(double s) {
    check_sigma("SdeNetTrainer::set_sigma_train", s);
    cfg_.sigma_train = s;
}

double SdeNetTrainer::step_classifier(const Tensor& x, std::span<const std::int32_t> labels) {
    if (!cls_)
        throw std::logic_error("SdeNetTrainer::step_classifier(labels): the model is a regression SDE-Net");
    cls_->train();
    opt_f_->zero_grad();
    std::optional<FreezeScope> frozen;
    freeze_diffusion(frozen, *model_, cfg_.clip_classifier);
    return finish_classifier_step(
        cross_entropy(cls_->forward(Var(x), cfg_.sigma_train, cls_->noise_generator()), labels));
}

double SdeNetTrainer::step_classifier(const Tensor& x, const Tensor& y) {
    if (!reg_) throw std::logic_error("SdeNetTrainer::step_classifier(targets): the model is a classifier");
    reg_->train();
    opt_f_->zero_grad();
    std::optional<FreezeScope> frozen;
    freeze_diffusion(frozen, *model_, cfg_.clip_classifier);
    return finish_classifier_step(
        sdenet_regression_loss(reg_->predict(Var(x), cfg_.sigma_train, reg_->noise_generator()), Var(y)));
}

double SdeNetTrainer::finish_classifier_step(const Var& loss) {
    const double l = loss.item();
    backward(loss);
    if (cfg_.clip_classifier > 0.0) nn::clip_grad_norm(model_->parameters(), cfg_.clip_classifier);
    opt_f_->step();
    reset_tape();
    return l;
}

std::pair<double, double> SdeNetTrainer::step_diffusion(const Tensor& x) {
    model_->train();
    // Zeroing here also drops what the cross-entropy pass left in the diffusion's gradients (the reference
    // calls optimizer_G.zero_grad() at the same point).
    opt_g_->zero_grad();
    const std::int64_t n = x.dim(0);
    // BCE(sigmoid(z), y) computed as bce_with_logits(z, y): the same loss without torch BCELoss' log clamp
    // at -100 (which only matters once the sigmoid saturates to exactly 0 or 1).
    Var in = model_->diffusion_logit(Var(x));
    Var loss_in = bce_with_logits(in, Var(Tensor::zeros({n, 1}, in.dtype())));
    Tensor xo = t_add(x, randn(x.shape(), ood_gen_, x.dtype(), 0.0, cfg_.ood_noise_std));
    Var out = model_->diffusion_logit(Var(xo));
    Var loss_out = bce_with_logits(out, Var(Tensor::full({n, 1}, 1.0, out.dtype())));
    const double li = loss_in.item(), lo = loss_out.item();
    backward(loss_in + loss_out);
    opt_g_->step();
    reset_tape();
    return {li, lo};
}

SdeNetStepStats SdeNetTrainer::step(const Tensor& x, std::span<const std::int32_t> labels) {
    SdeNetStepStats s;
    s.task_loss = step_classifier(x, labels);
    std::tie(s.bce_in, s.bce_out) = step_diffusion(x);
    return s;
}

SdeNetStepStats SdeNetTrainer::step(const Tensor& x, const Tensor& y) {
    SdeNetStepStats s;
    s.task_loss = step_classifier(x, y);
    std::tie(s.bce_in, s.bce_out) = step_diffusion(x);
    return s;
}

SdeNetEpochStats SdeNetTrainer::train_epoch(const data::Dataset& ds, std::int64_t epoch, std::size_t batch,
                                            std::uint64_t shuffle_seed, bool drop_last,
                                            std::size_t max_batches) {
    if (!cls_) throw std::logic_error("SdeNetTrainer::train_epoch: needs the classification SDE-Net");
    if (ds.n == 0 || batch == 0)
        throw std::invalid_argument(
            fmt::format("SdeNetTrainer::train_epoch: empty data set ({}) or batch ({})", ds.n, batch));
    set_epoch(epoch);
    data::BatchIterator it(ds.n, batch, shuffle_seed, true, drop_last && ds.n >= batch);
    it.start_epoch(static_cast<std::uint64_t>(epoch));
    SdeNetEpochStats st;
    std::vector<std::int32_t> y;
    for (auto idx = it.next(); !idx.empty(); idx = it.next()) {
        Tensor x = data::batch_tensor(ds, idx, y);
        const SdeNetStepStats s = step(x, y);
        st.mean.task_loss += s.task_loss;
        st.mean.bce_in += s.bce_in;
        st.mean.bce_out += s.bce_out;
        ++st.batches;
        if (max_batches && static_cast<std::size_t>(st.batches) >= max_batches) break;
    }
    if (st.batches) {
        st.mean.task_loss /= double(st.batches);
        st.mean.bce_in /= double(st.batches);
        st.mean.bce_out /= double(st.batches);
    }
    return st;
}

// ---------------------------------------------------------------- checkpoints

namespace {

constexpr const char* diffusion_prefix = "optim_diffusion/";

std::uint8_t dtype_code(DType d) {
    return d == DType::f64 ? 1 : 0;
}

nn::CheckpointEntry entry_of(const std::string& name, const Tensor& t) {
    nn::CheckpointEntry e;
    e.name = name;
    e.dtype = dtype_code(t.dtype());
    e.shape = t.shape().vec();
    e.data.resize(t.nbytes());
    if (t.nbytes()) std::memcpy(e.data.data(), t.raw(), t.nbytes());
    return e;
}

nn::CheckpointEntry bytes_of(const std::string& name, const std::string& s) {
    nn::CheckpointEntry e;
    e.name = name;
    e.dtype = 2;
    e.shape = {static_cast<std::int64_t>(s.size())};
    e.data.assign(s.begin(), s.end());
    return e;
}

nn::NamedGenerators with_ood(SdeNetTrainer& trainer, const nn::NamedGenerators& extra) {
    nn::NamedGenerators g = extra;
    g.emplace_back("sdenet_trainer_ood", &trainer.ood_generator());
    return g;
}

}  // namespace

void save_sdenet_checkpoint(const std::string& path, nn::Module& model, SdeNetTrainer& trainer,
                            const std::string& metadata_json, const nn::NamedGenerators& extra) {
    // The standard writer for model + classifier optimizer + generators into a scratch file, then the
    // diffusion optimizer's entries appended and the whole written atomically to `path`.
    const std::string scratch = path + ".part";
    nn::save_checkpoint(scratch, model, &trainer.classifier_optimizer(), metadata_json,
                        with_ood(trainer, extra));
    nn::CheckpointFile ck = nn::read_checkpoint_file(scratch);
    std::filesystem::remove(scratch);
    nn::SGD& g = trainer.diffusion_optimizer();
    ck.entries.push_back(bytes_of(std::string(diffusion_prefix) + "type", g.type_name()));
    ck.entries.push_back(
        entry_of(std::string(diffusion_prefix) + "step", Tensor::scalar(double(g.step_count()), DType::f64)));
    ck.entries.push_back(entry_of(std::string(diffusion_prefix) + "lr", Tensor::scalar(g.lr(), DType::f64)));
    for (auto& [n, t] : g.named_state())
        ck.entries.push_back(entry_of(std::string(diffusion_prefix) + "state/" + n, *t));
    nn::write_checkpoint_file(path, ck);
}

std::string load_sdenet_checkpoint(const std::string& path, nn::Module& model, SdeNetTrainer& trainer,
                                   const nn::NamedGenerators& extra) {
    const nn::CheckpointFile ck = nn::read_checkpoint_file(path);
    nn::SGD& g = trainer.diffusion_optimizer();
    const std::string pre = diffusion_prefix;
    auto need = [&](const std::string& name) -> const nn::CheckpointEntry& {
        const auto* e = ck.find(pre + name);
        if (!e)
            throw nn::CheckpointError(
                fmt::format("checkpoint '{}': missing entry '{}{}' (the diffusion "
                            "optimizer of an SDE-Net checkpoint)",
                            path, pre, name));
        return *e;
    };
    const auto& type = need("type");
    if (std::string(type.data.begin(), type.data.end()) != g.type_name())
        throw nn::CheckpointError(
            fmt::format("checkpoint '{}': diffusion optimizer is {} but the file holds {}", path,
                        g.type_name(), std::string(type.data.begin(), type.data.end())));
    const auto& st = need("step");
    const auto& lr = need("lr");
    if (st.dtype != 1 || !st.shape.empty() || lr.dtype != 1 || !lr.shape.empty())
        throw nn::CheckpointError(
            fmt::format("checkpoint '{}': {}step or {}lr is not an f64 scalar", path, pre, pre));
    auto state = g.named_state();
    std::vector<const nn::CheckpointEntry*> src;
    for (auto& [n, t] : state) {
        const auto& e = need("state/" + n);
        if (e.dtype != dtype_code(t->dtype()) || e.shape != t->shape().vec())
            throw nn::CheckpointError(
                fmt::format("checkpoint '{}': entry '{}state/{}' does not match the diffusion "
                            "optimizer's state {}",
                            path, pre, n, sdeuq::describe(*t)));
        src.push_back(&e);
    }
    // Everything else is validated (and restored) by the standard loader; nothing is written above.
    std::string meta =
        nn::load_checkpoint(path, model, &trainer.classifier_optimizer(), with_ood(trainer, extra));
    for (std::size_t i = 0; i < state.size(); ++i)
        if (!src[i]->data.empty())
            std::memcpy(state[i].second->raw(), src[i]->data.data(), src[i]->data.size());
    double v = 0, r = 0;
    std::memcpy(&v, st.data.data(), 8);
    std::memcpy(&r, lr.data.data(), 8);
    g.set_step_count(static_cast<std::int64_t>(v));
    g.set_lr(r);
    return meta;
}

// ---------------------------------------------------------------- evaluation helpers

namespace {

// Rows [lo, hi) of x (contiguous), as a tensor in dtype dt (a view when the dtype already matches).
Tensor rows(const Tensor& x, std::int64_t lo, std::int64_t hi, DType dt) {
    Shape s = x.shape();
    const std::int64_t row = x.numel() / std::max<std::int64_t>(1, x.dim(0));
    Shape sub;
    sub.push_back(hi - lo);
    for (int i = 1; i < s.rank(); ++i) sub.push_back(s[i]);
    char* base = static_cast<char*>(x.raw()) + lo * row * static_cast<std::int64_t>(dtype_size(x.dtype()));
    Tensor v = Tensor::view(base, sub, x.dtype());
    return x.dtype() == dt ? v : v.to(dt);
}

void check_batch(const char* who, const Tensor& x, std::int64_t batch) {
    if (!x.defined() || x.rank() < 1 || x.dim(0) < 1)
        throw ShapeError(fmt::format("{}: need a non-empty batch (got {})", who,
                                     x.defined() ? sdeuq::describe(x) : "undefined"));
    if (batch < 1) throw std::invalid_argument(fmt::format("{}: batch must be >= 1 (got {})", who, batch));
}

}  // namespace

std::vector<double> predict_probs(SdeNet& model, const Tensor& x, int passes, std::int64_t batch) {
    check_batch("predict_probs", x, batch);
    if (passes < 1)
        throw std::invalid_argument(fmt::format("predict_probs: passes must be >= 1 (got {})", passes));
    NoGradScope ng;
    model.eval();
    const std::int64_t n = x.dim(0), c = model.config().num_classes;
    std::vector<double> probs(static_cast<std::size_t>(n * c), 0.0);
    for (std::int64_t lo = 0; lo < n; lo += batch) {
        const std::int64_t hi = std::min(n, lo + batch);
        Var xb(rows(x, lo, hi, model.config().dtype));
        // h0 and g(h0) are deterministic: computed once for all passes (only the Brownian increments,
        // drawn in the same order as by `passes` calls of forward(), differ between passes).
        const SdeNet::Start s0 = model.start(xb);
        for (int r = 0; r < passes; ++r) {
            Tensor p = softmax(model.forward_from(s0, model.sigma(), model.noise_generator()), -1)
                           .value()
                           .to(DType::f64);
            const double* pp = p.data<double>();
            for (std::int64_t i = 0; i < (hi - lo) * c; ++i)
                probs[static_cast<std::size_t>(lo * c + i)] += pp[i] / passes;
        }
        reset_tape();
    }
    return probs;
}

std::vector<double> diffusion_score(SdeNetBase& model, const Tensor& x, std::int64_t batch) {
    check_batch("diffusion_score", x, batch);
    NoGradScope ng;
    model.eval();
    const std::int64_t n = x.dim(0);
    std::vector<double> out(static_cast<std::size_t>(n));
    for (std::int64_t lo = 0; lo < n; lo += batch) {
        const std::int64_t hi = std::min(n, lo + batch);
        Tensor g = model.diffusion(Var(rows(x, lo, hi, model.dtype()))).value().to(DType::f64);
        for (std::int64_t i = 0; i < hi - lo; ++i)
            out[static_cast<std::size_t>(lo + i)] = g.data<double>()[i];
        reset_tape();
    }
    return out;
}

RegressionPrediction predict_regression(SdeNetRegression& model, const Tensor& x, int passes,
                                        std::int64_t batch) {
    check_batch("predict_regression", x, batch);
    if (passes < 1)
        throw std::invalid_argument(fmt::format("predict_regression: passes must be >= 1 (got {})", passes));
    NoGradScope ng;
    model.eval();
    const std::int64_t n = x.dim(0);
    RegressionPrediction r;
    r.mean.assign(static_cast<std::size_t>(n), 0.0);
    r.mean_std.assign(static_cast<std::size_t>(n), 0.0);
    r.aleatoric_std.assign(static_cast<std::size_t>(n), 0.0);
    r.variance.assign(static_cast<std::size_t>(n), 0.0);
    std::vector<double> m2(static_cast<std::size_t>(n), 0.0);  // Welford: sum of squared deviations
    for (std::int64_t lo = 0; lo < n; lo += batch) {
        const std::int64_t hi = std::min(n, lo + batch);
        Var xb(rows(x, lo, hi, model.config().dtype));
        for (int p = 0; p < passes; ++p) {
            RegressionOutput o = model.predict(xb);
            Tensor m = o.mean.value().to(DType::f64), s = o.std.value().to(DType::f64);
            for (std::int64_t i = 0; i < hi - lo; ++i) {
                const auto k = static_cast<std::size_t>(lo + i);
                const double v = m.data<double>()[i], d = v - r.mean[k];
                r.mean[k] += d / (p + 1);
                m2[k] += d * (v - r.mean[k]);
                r.aleatoric_std[k] += s.data<double>()[i] / passes;
                r.variance[k] += s.data<double>()[i] * s.data<double>()[i] / passes;
            }
        }
        reset_tape();
    }
    // Population std over the passes (numpy's default, as the reference's np.std over its 10 passes).
    for (std::size_t k = 0; k < r.mean.size(); ++k) {
        r.mean_std[k] = std::sqrt(m2[k] / passes);
        r.variance[k] += m2[k] / passes;
    }
    return r;
}

}  // namespace sdeuq::sde
