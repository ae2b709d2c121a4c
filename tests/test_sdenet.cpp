// SDE-Net: the reference model's size and shapes, float64 gradient checks of its blocks (concat-time conv,
// drift, diffusion, the whole Euler-Maruyama network with fixed noise, the regression variant), the
// two-optimizer step (each optimizer changes only its own parameters), checkpoint resume, and bad input.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "autodiff/gradcheck.hpp"
#include "autodiff/tensor_ops.hpp"
#include "sde/sdenet.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;

namespace {

Tensor rnd(const Shape& s, std::uint64_t stream, DType dt = DType::f64, double lo = -1.0, double hi = 1.0) {
    Generator g(977, stream);
    return rand_uniform(s, g, dt, lo, hi).clone();  // heap: survives reset_tape()
}

void expect_grad(const std::string& name, std::vector<Parameter*> params, const Tensor& x,
                 const std::function<Var(const Var&)>& f, double rtol = 1e-5, double atol = 1e-7) {
    GradcheckOptions opt;
    opt.params = std::move(params);
    opt.rtol = rtol;
    opt.atol = atol;
    auto r = check_gradients(
        name, [&](std::span<const Var> in) { return f(in[0]); }, {x}, opt);
    INFO(r.message);
    CHECK(r.ok);
}

SdeNetConfig small_config(DType dt) {
    SdeNetConfig c;
    c.width = 4;
    c.max_groups = 2;
    c.num_classes = 3;
    c.steps = 3;
    c.t_end = 3.0;
    c.sigma = 0.7;
    c.dtype = dt;
    // Larger linear weights than the reference's N(0, 1e-3^2) so that every gradient is well above the
    // finite-difference noise.
    c.linear_init_std = 0.5;
    return c;
}

std::vector<std::vector<double>> snapshot(const std::vector<Parameter*>& ps) {
    std::vector<std::vector<double>> s;
    for (auto* p : ps) s.push_back(p->value().to_vector());
    return s;
}

bool same(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
    return a == b;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("SDE-Net MNIST model has the reference's 283,723 parameters and shapes", "[sde][sdenet]") {
    Generator g(1, 0);
    SdeNet net(SdeNetConfig{}, g);
    CHECK(net.num_parameters() == 283723);
    CHECK(net.classifier_parameters().size() + net.diffusion_parameters().size() == net.parameters().size());
    NoGradScope ng;
    Var x(rnd({2, 1, 28, 28}, 1, DType::f32, 0.0, 1.0));
    CHECK(net.downsample(x).shape() == Shape{2, 64, 6, 6});
    CHECK(net.forward(x).shape() == Shape{2, 10});
    Var d = net.diffusion(x);
    REQUIRE(d.shape() == Shape{2, 1});
    for (double v : d.value().to_vector()) CHECK((v > 0.0 && v < 1.0));
    // Reference init: Linear weights N(0, 1e-3^2) give logits ~0 and a diffusion of ~0.5 at the start.
    for (double v : d.value().to_vector()) CHECK(v == Approx(0.5).margin(1e-2));
    reset_tape();
}

TEST_CASE("SDE-Net reference init: Kaiming-normal fan-out convs, N(0, 1e-3) linears, zero biases",
          "[sde][sdenet]") {
    Generator g(3, 0);
    SdeNet net(SdeNetConfig{}, g);
    for (auto& [name, p] : net.named_parameters()) {
        auto v = p->value().to_vector();
        double m = 0, s = 0;
        for (double x : v) m += x;
        m /= double(v.size());
        for (double x : v) s += (x - m) * (x - m);
        s = std::sqrt(s / double(v.size()));
        INFO(name);
        if (name.ends_with("bias")) {
            CHECK(s == 0.0);
            CHECK(m == 0.0);
        } else if (p->value().rank() == 4) {
            const double fan_out = double(p->value().dim(0) * p->value().dim(2) * p->value().dim(3));
            CHECK(s == Approx(std::sqrt(2.0 / fan_out)).epsilon(0.1));
        } else if (p->value().rank() == 2 && v.size() >= 640) {
            CHECK(s == Approx(1e-3).epsilon(0.15));
        } else if (p->value().rank() == 1) {
            CHECK(m == 1.0);  // GroupNorm gamma
        }
    }
}

TEST_CASE("ConcatConv2d puts t in channel 0 and passes the float64 gradient check",
          "[sde][sdenet][gradcheck]") {
    Generator g(5, 0);
    ConcatConv2d cc(2, 3, 3, g,
                    nn::Conv2dOptions{.stride = 1, .padding = 1, .bias = true, .dtype = DType::f64});
    // Channel 0 is t: with weights zero except input channel 0 (t), the output is t * sum of that kernel
    // over the in-image taps (+ bias).
    {
        NoGradScope ng;
        Tensor& w = cc.conv().weight().value();
        w.fill(0.0);
        for (int o = 0; o < 3; ++o) w.set_flat(o * 3 * 9 + 4, 1.0);  // centre tap of input channel 0
        cc.conv().bias()->value().fill(0.0);
        Var y = cc.forward(0.625, Var(rnd({1, 2, 4, 4}, 2)));
        for (double v : y.value().to_vector()) CHECK(v == 0.625);
        reset_tape();
    }
    Generator g2(6, 0);
    ConcatConv2d cc2(2, 3, 3, g2,
                     nn::Conv2dOptions{.stride = 1, .padding = 1, .bias = true, .dtype = DType::f64});
    expect_grad("concat_conv", cc2.parameters(), rnd({2, 2, 4, 4}, 3),
                [&](const Var& x) { return cc2.forward(0.8, x); });
}

TEST_CASE("SDE-Net drift and diffusion pass the float64 gradient check", "[sde][sdenet][gradcheck]") {
    Generator g(7, 0);
    SdeNetDrift drift(4, 2, g, DType::f64);
    SdeNetDiffusion diffusion(4, 2, g, DType::f64);
    const Tensor x = rnd({2, 4, 3, 3}, 4);
    expect_grad("drift", drift.parameters(), x, [&](const Var& v) { return drift.forward(1.5, v); });
    expect_grad("diffusion", diffusion.parameters(), x,
                [&](const Var& v) { return diffusion.forward(0.0, v); });
}

TEST_CASE("the whole SDE-Net (fixed Brownian increments) passes the float64 gradient check",
          "[sde][sdenet][gradcheck]") {
    Generator g(11, 0);
    SdeNet net(small_config(DType::f64), g);
    const Generator noise0 = net.noise_generator();
    const Tensor x = rnd({2, 1, 12, 12}, 5, DType::f64, 0.0, 1.0);
    expect_grad(
        "sdenet", net.parameters(), x,
        [&](const Var& v) {
            Generator noise = noise0;  // the same eps at every evaluation
            return net.forward(v, 0.7, noise);
        },
        1e-4, 1e-6);
}

TEST_CASE("SDE-Net regression variant: shapes, positive std, float64 gradient check",
          "[sde][sdenet][gradcheck]") {
    Generator g(13, 0);
    SdeNetRegressionConfig c;
    c.in_dim = 3;
    c.hidden = 5;
    c.diffusion_hidden = 6;
    c.dtype = DType::f64;
    c.linear_init_std = 0.5;
    SdeNetRegression net(c, g);
    CHECK(net.num_parameters() == (3 * 5 + 5) + (5 * 5 + 5) + (5 * 6 + 6) + (6 + 1) + (5 * 2 + 2));
    const Tensor x = rnd({4, 3}, 6);
    {
        NoGradScope ng;
        auto o = net.predict(Var(x));
        CHECK(o.mean.shape() == Shape{4});
        for (double s : o.std.value().to_vector()) CHECK(s >= 1e-3);
        CHECK(net.forward(Var(x)).shape() == Shape{4, 2});
        reset_tape();
    }
    const Generator noise0 = net.noise_generator();
    const Tensor y = rnd({4}, 7);
    expect_grad(
        "sdenet_regression", net.parameters(), x,
        [&](const Var& v) {
            Generator noise = noise0;
            auto o = net.predict(v, 0.5, noise);
            return sdenet_regression_loss(o, Var(y));
        },
        1e-4, 1e-7);
    // The loss is the reference's mean(log s^2 + (y - m)^2 / s^2).
    NoGradScope ng;
    Generator noise = noise0;
    auto o = net.predict(Var(x), 0.5, noise);
    double ref = 0;
    auto m = o.mean.value().to_vector(), s = o.std.value().to_vector(), yy = y.to_vector();
    for (int i = 0; i < 4; ++i)
        ref += std::log(s[i] * s[i]) + (yy[i] - m[i]) * (yy[i] - m[i]) / (s[i] * s[i]);
    CHECK(sdenet_regression_loss(o, Var(y)).item() == Approx(ref / 4).epsilon(1e-12));
    reset_tape();
}

TEST_CASE("SDE-Net two-optimizer step: each optimizer changes only its own parameters", "[sde][sdenet]") {
    Generator g(17, 0);
    SdeNetConfig c = small_config(DType::f32);
    c.linear_init_std = 1e-3;
    SdeNet net(c, g);
    SdeNetTrainer tr(net, SdeNetTrainConfig{}, 42);
    tr.set_epoch(0);
    CHECK(tr.classifier_optimizer().lr() == 0.1);
    CHECK(tr.diffusion_optimizer().lr() == 0.01);
    const Tensor x = rnd({6, 1, 12, 12}, 8, DType::f32, 0.0, 1.0);
    const std::vector<std::int32_t> y = {0, 1, 2, 0, 1, 2};
    const auto f = net.classifier_parameters(), d = net.diffusion_parameters();
    for (int it = 0; it < 2; ++it) {  // the second round has momentum buffers in both optimizers
        auto f0 = snapshot(f), d0 = snapshot(d);
        const double ce = tr.step_classifier(x, y);
        CHECK(std::isfinite(ce));
        CHECK(!same(snapshot(f), f0));
        CHECK(same(snapshot(d), d0));
        auto f1 = snapshot(f);
        auto [bi, bo] = tr.step_diffusion(x);
        CHECK(std::isfinite(bi));
        CHECK(std::isfinite(bo));
        CHECK(same(snapshot(f), f1));
        CHECK(!same(snapshot(d), d0));
    }
    // Milestones are the reference's "after epoch m" (0-based): lr x0.1 from epoch 11 (classifier) and 16
    // (diffusion) on.
    tr.set_epoch(10);
    CHECK(tr.classifier_optimizer().lr() == Approx(0.1));
    tr.set_epoch(11);
    CHECK(tr.classifier_optimizer().lr() == Approx(0.01));
    tr.set_epoch(15);
    CHECK(tr.diffusion_optimizer().lr() == Approx(0.01));
    tr.set_epoch(16);
    CHECK(tr.diffusion_optimizer().lr() == Approx(0.001));
    tr.set_epoch(39);
    CHECK(tr.classifier_optimizer().lr() == Approx(1e-4));
    CHECK(tr.diffusion_optimizer().lr() == Approx(1e-4));
}

TEST_CASE("SDE-Net diffusion training separates pseudo-OOD noise from the data", "[sde][sdenet]") {
    Generator g(19, 0);
    SdeNet net(small_config(DType::f32), g);
    SdeNetTrainConfig tc;
    tc.lr_diffusion = 0.1;
    SdeNetTrainer tr(net, tc, 1);
    const Tensor x = rnd({16, 1, 12, 12}, 9, DType::f32, 0.0, 1.0);
    double first = 0, last = 0;
    for (int it = 0; it < 150; ++it) {
        auto [bi, bo] = tr.step_diffusion(x);
        if (it == 0) first = bi + bo;
        last = bi + bo;
    }
    INFO(first << " -> " << last);
    CHECK(last < 0.5 * first);
    Generator ng(5, 5);
    Tensor noisy = t_add(x, randn(x.shape(), ng, DType::f32, 0.0, 2.0)).clone();
    auto s_in = diffusion_score(net, x), s_out = diffusion_score(net, noisy);
    double mi = 0, mo = 0;
    for (double v : s_in) mi += v / double(s_in.size());
    for (double v : s_out) mo += v / double(s_out.size());
    CHECK(mo > mi + 0.3);
}

TEST_CASE("SDE-Net checkpoint restores model, both optimizers and generators exactly", "[sde][sdenet]") {
    const std::string path = (std::filesystem::temp_directory_path() / "sdeuq_test_sdenet.ckpt").string();
    const Tensor x = rnd({4, 1, 12, 12}, 10, DType::f32, 0.0, 1.0);
    const std::vector<std::int32_t> y = {0, 1, 2, 1};
    Generator g(23, 0);
    SdeNet a(small_config(DType::f32), g);
    SdeNetTrainer ta(a, SdeNetTrainConfig{}, 3);
    ta.set_epoch(0);
    ta.step(x, y);
    save_sdenet_checkpoint(path, a, ta, R"({"epoch": 1})");
    ta.step(x, y);
    ta.step(x, y);
    Generator g2(99, 0);
    SdeNet b(small_config(DType::f32), g2);
    SdeNetTrainer tb(b, SdeNetTrainConfig{}, 77);
    CHECK(load_sdenet_checkpoint(path, b, tb) == R"({"epoch": 1})");
    CHECK(tb.diffusion_optimizer().step_count() == 1);
    tb.step(x, y);
    tb.step(x, y);
    CHECK(same(snapshot(a.parameters()), snapshot(b.parameters())));
    // A regression model's checkpoint does not load into the classifier (names and shapes are checked).
    Generator g3(1, 1);
    SdeNetRegression r(SdeNetRegressionConfig{}, g3);
    SdeNetTrainer trr(r, SdeNetTrainConfig{}, 1);
    CHECK_THROWS_AS(load_sdenet_checkpoint(path, r, trr), nn::CheckpointError);
    std::filesystem::remove(path);
}

TEST_CASE("SDE-Net rejects bad input with clear errors", "[sde][sdenet]") {
    Generator g(29, 0);
    SdeNet net(small_config(DType::f32), g);
    auto msg = error_of([&] { net.forward(Var(Tensor::zeros({2, 3, 12, 12}))); });
    CHECK(msg.find("SdeNet") != std::string::npos);
    CHECK(msg.find("[2, 3, 12, 12]") != std::string::npos);
    CHECK_THROWS_AS(net.set_sigma(-1.0), std::invalid_argument);
    CHECK_THROWS_AS(predict_probs(net, Tensor::zeros({2, 1, 12, 12}), 0), std::invalid_argument);
    SdeNetConfig bad = small_config(DType::f32);
    bad.width = 6;
    bad.max_groups = 4;
    CHECK_THROWS_AS(SdeNet(bad, g), std::invalid_argument);
    reset_tape();
}

TEST_CASE("SdeNet refuses GroupNorm configurations with one channel per group", "[sde][sdenet]") {
    Generator g(30, 0);
    SdeNetConfig c = small_config(DType::f32);
    // min(32, 16) = 16 groups of 16 channels: the configuration the MNIST studies used at width 16 and 32.
    c.width = 16;
    c.max_groups = 32;
    auto msg = error_of([&] { SdeNet net(c, g); });
    CHECK(msg.find("one channel per group") != std::string::npos);
    CHECK(msg.find("width=16") != std::string::npos);
    c.max_groups = 16;
    CHECK_THROWS_AS(SdeNet(c, g), std::invalid_argument);
    // Two or more channels per group are accepted, as the reference's 32 groups of 64 channels.
    c.max_groups = 8;
    CHECK_NOTHROW(SdeNet(c, g));
    c.width = 64;
    c.max_groups = 32;
    CHECK_NOTHROW(SdeNet(c, g));
    reset_tape();
}

TEST_CASE("SdeNetTrainer::train_epoch runs the batches of one epoch and lowers the loss", "[sde][sdenet]") {
    data::Dataset ds;
    ds.n = 24;
    ds.shape = {1, 12, 12};
    ds.num_classes = 3;
    Generator dg(31, 0);
    const Tensor img = rnd({24, 1, 12, 12}, 11, DType::f32, 0.0, 1.0);
    ds.images.resize(24 * 144);
    for (std::size_t i = 0; i < ds.images.size(); ++i)
        ds.images[i] = static_cast<float>(img.flat(std::int64_t(i)));
    for (int i = 0; i < 24; ++i) {
        ds.labels.push_back(i % 3);
        for (int k = 0; k < 12; ++k)
            ds.images[std::size_t(i) * 144 + std::size_t(i % 3) * 48 + std::size_t(k)] = 3.0f;
    }
    Generator g(37, 0);
    SdeNetConfig c = small_config(DType::f32);
    c.linear_init_std = 1e-3;
    SdeNet net(c, g);
    SdeNetTrainConfig tc;
    tc.sigma_train = 0.5;
    SdeNetTrainer tr(net, tc, 5);
    auto first = tr.train_epoch(ds, 0, 5, 9);
    CHECK(first.batches == 4);  // 24 / 5, last partial batch dropped
    SdeNetEpochStats last;
    for (int e = 1; e < 15; ++e) last = tr.train_epoch(ds, e, 5, 9);
    INFO(first.mean.task_loss << " -> " << last.mean.task_loss);
    CHECK(last.mean.task_loss < first.mean.task_loss);
    CHECK(tr.train_epoch(ds, 15, 5, 9, true, 2).batches == 2);
}

TEST_CASE("SDE-Net MNIST training step timing (informational)", "[.][sdenet][timing]") {
    Generator g(1, 0);
    SdeNet net(SdeNetConfig{}, g);
    SdeNetTrainer tr(net, SdeNetTrainConfig{}, 1);
    const Tensor x = rnd({128, 1, 28, 28}, 12, DType::f32, 0.0, 1.0);
    std::vector<std::int32_t> y(128);
    for (int i = 0; i < 128; ++i) y[std::size_t(i)] = i % 10;
    for (int i = 0; i < 4; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        tr.step(x, y);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("step %d: %.3f s (epoch of 468 batches: %.0f s)\n", i, s, s * 468);
    }
}

TEST_CASE("predict_regression: pass moments equal a hand loop over the same noise", "[sde][sdenet]") {
    Generator g(41, 0);
    SdeNetRegressionConfig c;
    c.in_dim = 3;
    c.hidden = 6;
    c.diffusion_hidden = 5;
    c.sigma = 0.8;
    SdeNetRegression net(c, g);
    const Tensor x = rnd({5, 3}, 13, DType::f32);
    const Generator noise0 = net.noise_generator();
    auto r = predict_regression(net, x, 4);
    Generator noise = noise0;
    std::vector<std::vector<double>> ms, ss;
    {
        NoGradScope ng;
        for (int k = 0; k < 4; ++k) {
            auto o = net.predict(Var(x), 0.8, noise);
            ms.push_back(o.mean.value().to_vector());
            ss.push_back(o.std.value().to_vector());
        }
        reset_tape();
    }
    for (std::size_t i = 0; i < 5; ++i) {
        double m = 0, s2 = 0, sm = 0, v = 0;
        for (int k = 0; k < 4; ++k) {
            m += ms[k][i] / 4;
            s2 += ss[k][i] * ss[k][i] / 4;
            sm += ss[k][i] / 4;
        }
        for (int k = 0; k < 4; ++k) v += (ms[k][i] - m) * (ms[k][i] - m) / 4;
        CHECK(r.mean[i] == Approx(m).epsilon(1e-12));
        CHECK(r.mean_std[i] == Approx(std::sqrt(v)).epsilon(1e-9));
        CHECK(r.aleatoric_std[i] == Approx(sm).epsilon(1e-12));
        CHECK(r.variance[i] == Approx(s2 + v).epsilon(1e-9));
        CHECK(r.mean_std[i] > 0.0);
    }
}

TEST_CASE("predict_probs (h0 and g once per batch) equals the mean of separate forward passes, bit for bit",
          "[sde][sdenet]") {
    Generator g(31, 0);
    SdeNet net(small_config(DType::f32), g);
    const Tensor x = rnd({5, 1, 12, 12}, 11, DType::f32, 0.0, 1.0);
    const Generator noise0 = net.noise_generator();
    const auto probs = predict_probs(net, x, 3, 2);  // batches of 2: the last one partial
    std::vector<double> hand(probs.size(), 0.0);
    {
        NoGradScope ng;
        net.noise_generator() = noise0;
        for (std::int64_t lo = 0; lo < 5; lo += 2) {
            const std::int64_t hi = std::min<std::int64_t>(5, lo + 2);
            Var xb(slice(Var(x), 0, lo, hi).value().clone());
            for (int r = 0; r < 3; ++r) {
                const auto p = softmax(net.forward(xb), -1).value().to(DType::f64).to_vector();
                for (std::size_t i = 0; i < p.size(); ++i) hand[std::size_t(lo) * 3 + i] += p[i] / 3;
            }
        }
        reset_tape();
    }
    CHECK(probs == hand);
    Generator a = noise0;
    CHECK(net.noise_generator()() != a());  // the passes drew Brownian increments
}

TEST_CASE("the classifier step's frozen diffusion gives the classifier the same update, bit for bit",
          "[sde][sdenet]") {
    // clip_classifier = 0: the diffusion's weights are constants of the cross-entropy pass. A clip too large
    // to act keeps them trainable (the clip reads their gradient): the classifier's update must not differ.
    const Tensor x = rnd({6, 1, 12, 12}, 12, DType::f32, 0.0, 1.0);
    const std::vector<std::int32_t> y = {0, 1, 2, 2, 1, 0};
    std::vector<std::vector<std::vector<double>>> after;
    for (double clip : {0.0, 1e30}) {
        Generator g(37, 0);
        SdeNet net(small_config(DType::f32), g);
        SdeNetTrainConfig tc;
        tc.clip_classifier = clip;
        SdeNetTrainer tr(net, tc, 5);
        tr.set_epoch(0);
        for (int it = 0; it < 3; ++it) tr.step(x, y);
        after.push_back(snapshot(net.parameters()));
        for (auto* p : net.diffusion_parameters()) CHECK(p->trainable());  // restored after each step
    }
    CHECK(same(after[0], after[1]));
}
