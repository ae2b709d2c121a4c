// SDE-BNN blocks; see sde/sdebnn.hpp for the model and the formulas.
#include "sde/sdebnn.hpp"

#include <fmt/format.h>

#include <cmath>
#include <utility>

#include "autodiff/random.hpp"
#include "nn/models.hpp"

namespace sdeuq::sde {

Var concat_time(const Var& x, double t) {
    Shape s = x.shape();
    s[s.rank() - 1] = 1;
    std::vector<Var> parts{x, Var(Tensor::full(s, t, x.dtype()))};
    return concat(parts, x.rank() - 1);
}

namespace {

// U(+-1/sqrt(fan_in)) values appended to `out` (PyTorch's default for Linear and Conv2d weights and biases).
void append_uniform(std::vector<double>& out, std::int64_t n, std::int64_t fan_in, Generator& gen) {
    const double a = 1.0 / std::sqrt(static_cast<double>(fan_in));
    auto v = rand_uniform({n}, gen, DType::f64, -a, a).to_vector();
    out.insert(out.end(), v.begin(), v.end());
}

std::string join(const std::vector<std::int64_t>& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) s += '-';
        s += std::to_string(v[i]);
    }
    return s;
}

class ConcatLinearDrift : public WeightDrift {
public:
    ConcatLinearDrift(std::vector<std::int64_t> dims, nn::Act act) : dims_(std::move(dims)), act_(act) {
        if (dims_.size() < 2 || dims_.front() != dims_.back())
            throw UsageError(
                fmt::format("concat_linear_drift: dims {} must have at least two entries and end "
                            "where they start (dh/dt has the shape of h)",
                            join(dims_)));
        feature_ = Shape{dims_.front()};
        for (std::size_t l = 0; l + 1 < dims_.size(); ++l) p_ += dims_[l + 1] * (dims_[l] + 1) + dims_[l + 1];
    }
    std::string describe() const override {
        return fmt::format("ConcatLinear({}, {})", join(dims_), nn::act_name(act_));
    }
    std::int64_t num_weights() const override { return p_; }
    const Shape& feature_shape() const override { return feature_; }
    Var forward(double t, const Var& h, const Var& w) const override {
        const std::int64_t rows = h.dim(0), n = h.dim(1);
        Var x = h;
        std::int64_t off = 0;
        for (std::size_t l = 0; l + 1 < dims_.size(); ++l) {
            const std::int64_t in = dims_[l] + 1, out = dims_[l + 1];
            Var xt = concat_time(x, t);
            Var wl = slice(w, 1, off, off + out * in);
            Var bl = slice(w, 1, off + out * in, off + out * in + out);
            off += out * in + out;
            if (rows == 1) {  // one path: a plain GEMM over the n inputs
                Var b1 = reshape(bl, Shape{out});
                x = reshape(linear(reshape(xt, Shape{n, in}), reshape(wl, Shape{out, in}), &b1),
                            Shape{1, n, out});
            } else {  // a batched GEMM, one weight matrix per path
                x = matmul(xt, reshape(wl, Shape{rows, out, in}), false, true) +
                    reshape(bl, Shape{rows, 1, out});
            }
            if (l + 2 < dims_.size()) x = nn::activate(act_, x);
        }
        return x;
    }
    Tensor init_weights(Generator& gen, DType dtype) const override {
        std::vector<double> v;
        for (std::size_t l = 0; l + 1 < dims_.size(); ++l) {
            const std::int64_t in = dims_[l] + 1, out = dims_[l + 1];
            append_uniform(v, out * in, in, gen);
            append_uniform(v, out, in, gen);
        }
        return Tensor::from_vector(v, Shape{p_}, dtype);
    }

private:
    std::vector<std::int64_t> dims_;
    nn::Act act_;
    Shape feature_;
    std::int64_t p_ = 0;
};

class ConcatConvDrift : public WeightDrift {
public:
    ConcatConvDrift(std::int64_t c, std::int64_t height, std::int64_t width, std::vector<std::int64_t> hidden,
                    nn::Act act)
        : act_(act) {
        if (c < 1 || height < 1 || width < 1)
            throw UsageError(
                fmt::format("concat_conv_drift: channels, height and width must be >= 1 (got {}, {}, {})", c,
                            height, width));
        channels_.push_back(c);
        channels_.insert(channels_.end(), hidden.begin(), hidden.end());
        channels_.push_back(c);
        feature_ = Shape{c, height, width};
        for (std::size_t l = 0; l + 1 < channels_.size(); ++l)
            p_ += channels_[l + 1] * (channels_[l] + 1) * 9 + channels_[l + 1];
    }
    std::string describe() const override {
        return fmt::format("ConcatConv3x3({}, {})", join(channels_), nn::act_name(act_));
    }
    std::int64_t num_weights() const override { return p_; }
    const Shape& feature_shape() const override { return feature_; }
    Var forward(double t, const Var& h, const Var& w) const override {
        const std::int64_t rows = h.dim(0), n = h.dim(1), hh = feature_[1], ww = feature_[2];
        std::vector<Var> outs;
        for (std::int64_t r = 0; r < rows; ++r) {  // a convolution has one kernel: one call per path
            Var x = reshape(rows == 1 ? h : slice(h, 0, r, r + 1), Shape{n, channels_[0], hh, ww});
            Var wr = rows == 1 ? w : slice(w, 0, r, r + 1);
            std::int64_t off = 0;
            for (std::size_t l = 0; l + 1 < channels_.size(); ++l) {
                const std::int64_t in = channels_[l] + 1, out = channels_[l + 1], k = out * in * 9;
                std::vector<Var> parts{x, Var(Tensor::full({n, 1, hh, ww}, t, x.dtype()))};
                Var kern = reshape(slice(wr, 1, off, off + k), Shape{out, in, 3, 3});
                Var bias = reshape(slice(wr, 1, off + k, off + k + out), Shape{out});
                off += k + out;
                x = conv2d(concat(parts, 1), kern, &bias, 1, 1);
                if (l + 2 < channels_.size()) x = nn::activate(act_, x);
            }
            outs.push_back(x);
        }
        if (rows == 1) return reshape(outs[0], Shape{1, n, channels_[0], hh, ww});
        return stack(outs, 0);
    }
    Tensor init_weights(Generator& gen, DType dtype) const override {
        std::vector<double> v;
        for (std::size_t l = 0; l + 1 < channels_.size(); ++l) {
            const std::int64_t in = channels_[l] + 1, out = channels_[l + 1];
            append_uniform(v, out * in * 9, in * 9, gen);
            append_uniform(v, out, in * 9, gen);
        }
        return Tensor::from_vector(v, Shape{p_}, dtype);
    }

private:
    std::vector<std::int64_t> channels_;
    nn::Act act_;
    Shape feature_;
    std::int64_t p_ = 0;
};

}  // namespace

std::unique_ptr<WeightDrift> concat_linear_drift(std::vector<std::int64_t> dims, nn::Act act) {
    return std::make_unique<ConcatLinearDrift>(std::move(dims), act);
}

std::unique_ptr<WeightDrift> concat_conv_drift(std::int64_t channels, std::int64_t height, std::int64_t width,
                                               std::vector<std::int64_t> hidden, nn::Act act) {
    return std::make_unique<ConcatConvDrift>(channels, height, width, std::move(hidden), act);
}

// ---- the hypernetwork ----

HyperNet::HyperNet(std::int64_t p, const std::vector<std::int64_t>& hidden, nn::Act act, DType dtype,
                   Generator& gen)
    : act_(act) {
    std::vector<std::int64_t> dims{p};
    dims.insert(dims.end(), hidden.begin(), hidden.end());
    dims.push_back(p);
    for (std::size_t l = 0; l + 1 < dims.size(); ++l) {
        const bool last = l + 2 == dims.size();
        nn::LinearOptions o{.dtype = dtype, .init = last ? nn::Init::zeros : nn::Init::torch_default};
        layers_.push_back(register_module(std::to_string(l),
                                          std::make_shared<nn::Linear>(dims[l] + 1, dims[l + 1], gen, o)));
    }
}

std::string HyperNet::describe() const {
    std::vector<std::int64_t> dims{layers_.front()->in_features() - 1};
    for (auto& l : layers_) dims.push_back(l->out_features());
    return fmt::format("HyperNet({}, {}, last layer zero-initialised)", join(dims), nn::act_name(act_));
}

Var HyperNet::forward_t(double t, const Var& w) {
    Var x = w;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
        x = layers_[l]->forward(concat_time(x, t));
        if (l + 1 < layers_.size()) x = nn::activate(act_, x);
    }
    return x;
}

// ---- the posterior-prior SDE of one solve ----

class SDEBNNBlock::BlockSDE : public PosteriorPriorSDE {
public:
    BlockSDE(SDEBNNBlock& block, std::int64_t rows, std::int64_t n)
        : block_(&block), rows_(rows), n_(n), nf_(n * block.feature_size()), p_(block.num_weights()) {
        add_parameters([b = block_] { return b->hyper_->parameters(true); });
        const SDEBNNOptions& o = block.options();
        calculus_ = o.solver == "euler" ? Calculus::ito : Calculus::stratonovich;
        g_ = Tensor::zeros({rows_, nf_ + p_}, o.dtype);
        for (std::int64_t r = 0; r < rows_; ++r) {
            Tensor row = Tensor::full({p_}, o.sigma, o.dtype);
            // g_[r, nf:] = sigma: write through a view of the row's tail.
            Tensor tail =
                Tensor::view(static_cast<char*>(g_.raw()) +
                                 static_cast<std::size_t>(r * (nf_ + p_) + nf_) * dtype_size(o.dtype),
                             Shape{p_}, o.dtype);
            tail.copy_from(row);
        }
    }
    // g does not depend on the state: Ito and Stratonovich coincide (see the header).
    Calculus calculus() const override { return calculus_; }
    Var f(double t, const Var& y) override {
        std::vector<Var> parts{hidden_drift(t, y), block_->hypernet_forward(t, weights(y)) - weights(y)};
        return concat(parts, 1);
    }
    // The prior: the same hidden dynamics, the OU drift -w on the weights.
    Var h(double t, const Var& y) override {
        std::vector<Var> parts{hidden_drift(t, y), -weights(y)};
        return concat(parts, 1);
    }
    Var g(double, const Var&) override { return Var(g_); }
    Var g_prod(double, const Var&, const Var& dw) override {
        std::vector<Var> parts{zeros(dw.dtype()), slice(dw, 1, nf_, nf_ + p_) * block_->opt_.sigma};
        return concat(parts, 1);
    }
    // u = (f - h) / g: r_phi / sigma on the weights and 0 on the hidden state (its drifts agree and its
    // diffusion is 0, so the default's 0 / 0 is replaced by its limit).
    Var u(double t, const Var& y) override {
        std::vector<Var> parts{zeros(y.dtype()),
                               block_->hypernet_forward(t, weights(y)) / block_->opt_.sigma};
        return concat(parts, 1);
    }
    // (dh, -w + r, 1/2 |r / sigma|^2) from one evaluation of r_phi: the drift of the KL-augmented state.
    Var f_with_kl(double t, const Var& y) {
        Var r = block_->hypernet_forward(t, weights(y));
        const double s2 = block_->opt_.sigma * block_->opt_.sigma;
        std::vector<Var> parts{hidden_drift(t, y), r - weights(y), sum(r * r, {1}, true) * (0.5 / s2)};
        return concat(parts, 1);
    }
    std::int64_t width() const { return nf_ + p_; }

private:
    Var weights(const Var& y) const { return slice(y, 1, nf_, nf_ + p_); }
    Var hidden_drift(double t, const Var& y) const {
        const Shape& fs = block_->drift_->feature_shape();
        std::vector<std::int64_t> dims{rows_, n_};
        dims.insert(dims.end(), fs.begin(), fs.end());
        Var hs = reshape(slice(y, 1, 0, nf_), Shape(dims));
        return reshape(block_->drift_->forward(t, hs, weights(y)), Shape{rows_, nf_});
    }
    Var zeros(DType dt) const { return Var(Tensor::arena_zeros({rows_, nf_}, dt)); }

    SDEBNNBlock* block_;
    std::int64_t rows_, n_, nf_, p_;
    Calculus calculus_;
    Tensor g_;
};

// The plain estimator as an ordinary state coordinate: z = (h, w, kl) [R, nF + P + 1], drift (dh, -w + r,
// 1/2 |u|^2), diffusion (0, sigma, 0), diagonal noise with one Brownian coordinate per state coordinate (the
// last one unused). Unlike sdeint_logqp's augmented SDE (whose Brownian motion is one column narrower than
// its state), it suits every solver and gradient estimator, reversible Heun included; the blocks use it for
// the plain KL through the adjoints.
class KLStateSDE : public SDE {
public:
    explicit KLStateSDE(SDEBNNBlock::BlockSDE& b) : b_(&b) {
        add_parameters([s = b_] { return s->parameters(); });
    }
    Noise noise() const override { return Noise::diagonal; }
    Calculus calculus() const override { return b_->calculus(); }
    Var f(double t, const Var& z) override { return b_->f_with_kl(t, state(z)); }
    Var g(double t, const Var& z) override {
        std::vector<Var> parts{b_->g(t, state(z)), zero_column(z)};
        return concat(parts, 1);
    }
    Var g_prod(double t, const Var& z, const Var& dw) override {
        std::vector<Var> parts{b_->g_prod(t, state(z), slice(dw, 1, 0, b_->width())), zero_column(z)};
        return concat(parts, 1);
    }

private:
    Var state(const Var& z) const { return slice(z, 1, 0, b_->width()); }
    static Var zero_column(const Var& z) { return Var(Tensor::arena_zeros({z.dim(0), 1}, z.dtype())); }
    SDEBNNBlock::BlockSDE* b_;
};

// ---- the block ----

SolveOptions block_solve_options(const SDEBNNOptions& o) {
    SolveOptions s;
    s.solver = o.solver;
    s.estimator = o.estimator;
    s.dt = o.t1 / o.steps;
    return s;
}

SDEBNNBlock::SDEBNNBlock(std::unique_ptr<WeightDrift> drift, const SDEBNNOptions& opt, Generator& gen)
    : drift_(std::move(drift)), opt_(opt) {
    if (!(opt_.sigma > 0) || !std::isfinite(opt_.sigma))
        throw UsageError(fmt::format("SDEBNNBlock: sigma must be finite and > 0 (got {})", opt_.sigma));
    if (!(opt_.t1 > 0) || opt_.steps < 1)
        throw UsageError(fmt::format("SDEBNNBlock: t1 must be > 0 and steps >= 1 (got t1 = {}, steps = {})",
                                     opt_.t1, opt_.steps));
    w0_ = &register_parameter("w0", drift_->init_weights(gen, opt_.dtype));
    hyper_ = register_module("hypernet", std::make_shared<HyperNet>(drift_->num_weights(), opt_.hyper_hidden,
                                                                    opt_.hyper_act, opt_.dtype, gen));
}

SDEBNNBlock::~SDEBNNBlock() = default;

std::string SDEBNNBlock::describe() const {
    return fmt::format("SDEBNNBlock(drift {}, {} weights, {}, sigma {}, t1 {}, {} steps, {}, {}, KL {})",
                       drift_->describe(), drift_->num_weights(), hyper_->describe(), opt_.sigma, opt_.t1,
                       opt_.steps, opt_.solver, opt_.estimator, kl_estimator_name(opt_.kl));
}

std::int64_t SDEBNNBlock::feature_size() const {
    return drift_->feature_shape().numel();
}

Var SDEBNNBlock::hypernet_forward(double t, const Var& w) {
    return static_cast<HyperNet&>(*hyper_).forward_t(t, w);
}

BlockResult SDEBNNBlock::forward(const Var& h0, std::int64_t paths, std::uint64_t seed, Layout layout) {
    const Shape& fs = drift_->feature_shape();
    bool ok = h0.rank() == fs.rank() + 1 && h0.dtype() == opt_.dtype;
    for (int k = 0; ok && k < fs.rank(); ++k) ok = h0.dim(k + 1) == fs[k];
    if (!ok)
        throw UsageError(
            fmt::format("SDEBNNBlock::forward: input {}[{}] does not match the block's hidden shape "
                        "[N, {}] ({})",
                        dtype_name(h0.dtype()), h0.shape().str(), fs.str(), dtype_name(opt_.dtype)));
    const std::int64_t batch = h0.dim(0), f = feature_size(), p = num_weights();
    if (layout == Layout::per_sample) paths = batch;
    if (paths < 1 || (layout == Layout::grouped && batch % paths != 0))
        throw UsageError(
            fmt::format("SDEBNNBlock::forward: paths must be >= 1 (and divide the {} inputs when "
                        "grouped; got {})",
                        batch, paths));
    const std::int64_t n = layout == Layout::shared ? batch : batch / paths;
    Var hflat = layout == Layout::shared
                    ? broadcast_to(reshape(h0, Shape{1, batch * f}), Shape{paths, batch * f})
                    : reshape(h0, Shape{paths, n * f});
    Var w = broadcast_to(reshape(w0_->var(), Shape{1, p}), Shape{paths, p});
    std::vector<Var> parts{hflat, w};
    Var y0 = concat(parts, 1);

    const SolveOptions so = block_solve_options(opt_);
    sde_ = std::make_unique<BlockSDE>(*this, paths, n);
    bm_ = std::make_unique<BrownianPath>(0.0, opt_.t1, paths * (n * f + p), seed,
                                         BrownianOptions{so.dt, 0.0, false});
    const double ts[2] = {0.0, opt_.t1};
    std::vector<std::int64_t> dims{paths * n};
    dims.insert(dims.end(), fs.begin(), fs.end());
    if (opt_.kl == KLEstimator::plain && opt_.estimator != "backprop") {
        // The plain KL through an adjoint: the KL as a state coordinate (KLStateSDE).
        kl_sde_ = std::make_unique<KLStateSDE>(*sde_);
        bm_ = std::make_unique<BrownianPath>(0.0, opt_.t1, paths * (n * f + p + 1), seed,
                                             BrownianOptions{so.dt, 0.0, false});
        std::vector<Var> zparts{y0, Var(Tensor::arena_zeros({paths, 1}, y0.dtype()))};
        Var z = sdeint(*kl_sde_, concat(zparts, 1), ts, *bm_, so, &stats_);
        Var z1 = reshape(slice(z, 0, 1, 2), Shape{paths, n * f + p + 1});
        return {reshape(slice(z1, 1, 0, n * f), Shape(dims)),
                reshape(slice(z1, 1, n * f + p, n * f + p + 1), Shape{paths})};
    }
    LogqpResult r = sdeint_logqp(*sde_, y0, ts, *bm_, so, opt_.kl, &stats_);
    Var y1 = reshape(slice(r.ys, 0, 1, 2), Shape{paths, n * f + p});
    return {reshape(slice(y1, 1, 0, n * f), Shape(dims)), reshape(slice(r.logqp, 0, 1, 2), Shape{paths})};
}

Var SDEBNNBlock::forward(const Var& x) {
    return forward(x, 1, 0).h;
}

// ---- the classifier ----

SDEBNNClassifier::SDEBNNClassifier(const SDEBNNClassifierConfig& cfg, Generator& gen) : cfg_(cfg) {
    nn::ConvNetConfig c;
    c.in_channels = cfg.in_channels;
    c.width = cfg.width;
    c.num_blocks = 0;
    c.num_classes = cfg.num_classes;
    c.groups = cfg.groups;
    c.dtype = cfg.block.dtype;
    net_ = register_module("net", std::make_shared<nn::MnistConvNet>(c, gen));
    for (int k = 0; k < cfg.blocks; ++k)
        blocks_.push_back(register_module(
            "sdebnn" + std::to_string(k),
            std::make_shared<SDEBNNBlock>(concat_conv_drift(cfg.width, 6, 6, {cfg.hidden}, nn::Act::softplus),
                                          cfg.block, gen)));
}

std::string SDEBNNClassifier::describe() const {
    return fmt::format("SDEBNNClassifier({}, {} x {})", net_->describe(), blocks_.size(),
                       blocks_.empty() ? std::string("-") : blocks_[0]->describe());
}

ClassifierOutput SDEBNNClassifier::forward(const Var& x, std::int64_t paths, std::uint64_t seed) {
    auto& net = static_cast<nn::MnistConvNet&>(*net_);
    Var h = net.downsample(x);  // [N, width, 6, 6]
    if (h.dim(2) != 6 || h.dim(3) != 6)
        throw UsageError(
            fmt::format("SDEBNNClassifier: the downsampler gives {} (expected [N, {}, 6, 6]: 28x28 inputs)",
                        h.shape().str(), cfg_.width));
    Var kl(Tensor::zeros({paths}, h.dtype()));
    const Generator seeds(seed, 0x5DEB);
    for (std::size_t k = 0; k < blocks_.size(); ++k) {
        Generator g = seeds.fork(k);
        const std::uint64_t s = (static_cast<std::uint64_t>(g()) << 32) | g();
        // The first block fans the N inputs out to `paths` paths; later blocks continue each path's group.
        BlockResult r = blocks_[k]->forward(h, paths, s, k == 0 ? Layout::shared : Layout::grouped);
        h = r.h;
        kl = kl + r.kl;
    }
    return {net.head(h), kl};
}

std::int64_t SDEBNNClassifier::steps_taken() const {
    std::int64_t n = 0;
    for (auto& b : blocks_) n += b->last_stats().steps;
    return n;
}

}  // namespace sdeuq::sde
