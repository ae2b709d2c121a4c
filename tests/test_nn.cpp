// Modules and layers: naming, modes, initialisers, shape errors, and every layer and model through the
// gradient checker in float64.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <fmt/format.h>

#include "autodiff/gradcheck.hpp"
#include "nn/models.hpp"
#include "nn/uq_method.hpp"
#include "nn/spectral_norm.hpp"

using namespace sdeuq;
using namespace sdeuq::nn;

namespace {

Tensor rnd(const Shape& s, std::uint64_t stream, double lo = -1.0, double hi = 1.0) {
    Generator g(4321, stream);
    return rand_uniform(s, g, DType::f64, lo, hi);
}

void expect_module_grad(const std::string& name, Module& m, const Tensor& x,
                        std::function<Var(const Var&)> f = {}, double rtol = 1e-6) {
    GradcheckOptions opt;
    opt.params = m.trainable_parameters();
    opt.rtol = rtol;
    auto r = check_gradients(
        name, [&](std::span<const Var> in) { return f ? f(in[0]) : m.forward(in[0]); }, {x}, opt);
    INFO(r.message);
    CHECK(r.ok);
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

// Relu kinks: keep pre-activations away from 0 is not possible for a whole network, so the network
// gradient checks use smooth activations or inputs whose relu arguments are checked below to stay
// clear of 0 by more than the finite-difference step.

}  // namespace

TEST_CASE("modules name parameters hierarchically in registration order", "[nn][module]") {
    Generator g(1, 0);
    Sequential seq;
    seq.push_back(std::make_shared<Linear>(4, 3, g));
    seq.push_back(std::make_shared<Activation>(Act::relu));
    seq.push_back(std::make_shared<DenseResidual>(3, g, ResidualOptions{.dropout = 0.5}));
    auto names = seq.named_parameters();
    REQUIRE(names.size() == 4);
    CHECK(names[0].first == "0.weight");
    CHECK(names[1].first == "0.bias");
    CHECK(names[2].first == "2.dense.weight");
    CHECK(names[3].first == "2.dense.bias");
    CHECK(seq.num_parameters() == 4 * 3 + 3 + 9 + 3);
    auto gens = seq.named_generators();
    REQUIRE(gens.size() == 1);
    CHECK(gens[0].first == "2.dropout.generator");

    ResNetConfig cfg;
    cfg.hidden = 8;
    cfg.num_layers = 2;
    cfg.sngp = true;
    cfg.gp.num_inducing = 16;
    ResNetClassifier net(cfg, g);
    std::vector<std::string> pn, bn;
    for (auto& [n, _] : net.named_parameters()) pn.push_back(n);
    for (auto& [n, _] : net.named_buffers()) bn.push_back(n);
    CHECK(pn == std::vector<std::string>{"input.weight", "input.bias", "block0.dense.layer.weight",
                                         "block0.dense.layer.bias", "block1.dense.layer.weight",
                                         "block1.dense.layer.bias", "gp.output.weight"});
    CHECK(bn == std::vector<std::string>{"block0.dense.u", "block0.dense.v", "block1.dense.u",
                                         "block1.dense.v", "gp.random_weight", "gp.random_bias",
                                         "gp.precision", "gp.output_bias"});
    // The frozen input layer is not trainable.
    CHECK(net.trainable_parameters().size() == 5);
}

TEST_CASE("train and eval propagate to children; zero_grad clears every gradient", "[nn][module]") {
    Generator g(2, 0);
    Sequential seq;
    auto lin = seq.emplace<Linear>(3, 3, g);
    auto drop = seq.emplace<Dropout>(0.5, Generator(5, 1));
    CHECK(drop->is_training());
    seq.eval();
    CHECK(!lin->is_training());
    CHECK(!drop->is_training());
    seq.train();
    CHECK(drop->is_training());
    // A child registered into an eval-mode parent takes the parent's mode.
    seq.eval();
    auto late = seq.emplace<Dropout>(0.5, Generator(5, 2));
    CHECK(!late->is_training());

    seq.train();
    Tensor x = rnd({2, 3}, 1).to(DType::f32);
    backward(sum(seq.forward(Var(x))));
    reset_tape();
    double gsum = 0.0;
    for (double v : lin->weight().grad().to_vector()) gsum += std::abs(v);
    CHECK(gsum > 0.0);
    seq.zero_grad();
    CHECK(lin->weight().grad().to_vector() == std::vector<double>(9, 0.0));
}

TEST_CASE("initialisers have the documented moments and are reproducible from (seed, stream)", "[nn][init]") {
    auto stats = [](const Tensor& t) {
        double m = 0, s = 0;
        for (double v : t.to_vector()) m += v;
        m /= double(t.numel());
        for (double v : t.to_vector()) s += (v - m) * (v - m);
        return std::pair{m, std::sqrt(s / double(t.numel()))};
    };
    const std::int64_t out = 200, in = 300;
    Tensor w = Tensor::zeros({out, in}, DType::f64);
    Generator g(11, 3);
    init::kaiming_normal_(w, g, 0.0, init::FanMode::fan_in, init::Nonlinearity::relu);
    CHECK(stats(w).second == Approx(std::sqrt(2.0 / in)).epsilon(0.02));
    init::kaiming_uniform_(w, g, 0.0, init::FanMode::fan_out, init::Nonlinearity::relu);
    CHECK(stats(w).second == Approx(std::sqrt(2.0 / out)).epsilon(0.02));
    init::xavier_uniform_(w, g);
    CHECK(stats(w).second == Approx(std::sqrt(2.0 / (in + out))).epsilon(0.02));
    init::xavier_normal_(w, g, 2.0);
    CHECK(stats(w).second == Approx(2.0 * std::sqrt(2.0 / (in + out))).epsilon(0.02));
    init::normal_(w, g, 1.0, 0.5);
    CHECK(stats(w).first == Approx(1.0).epsilon(0.01));
    CHECK(stats(w).second == Approx(0.5).epsilon(0.02));
    init::zeros_(w);
    CHECK(stats(w).second == 0.0);
    // Conv fans include the receptive field.
    auto [fi, fo] = init::fans(Shape{8, 4, 3, 3});
    CHECK(fi == 36.0);
    CHECK(fo == 72.0);

    // PyTorch's default Linear init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    Generator g1(7, 0), g2(7, 0);
    Linear a(300, 200, g1, {.dtype = DType::f64}), b(300, 200, g2, {.dtype = DType::f64});
    const double bound = 1.0 / std::sqrt(300.0);
    double maxw = 0.0;
    for (double v : a.weight().value().to_vector()) maxw = std::max(maxw, std::abs(v));
    CHECK(maxw <= bound);
    CHECK(maxw > 0.99 * bound);
    CHECK(stats(a.weight().value()).second == Approx(bound / std::sqrt(3.0)).epsilon(0.02));
    for (double v : a.bias()->value().to_vector()) CHECK(std::abs(v) <= bound);
    CHECK(a.weight().value().to_vector() == b.weight().value().to_vector());
    CHECK(a.bias()->value().to_vector() == b.bias()->value().to_vector());
}

TEST_CASE("Dropout is deterministic per seed, identity in eval, active in MC mode", "[nn][dropout]") {
    Tensor x = Tensor::full({4, 50}, 1.0, DType::f64);
    Dropout d1(0.3, Generator(9, 4)), d2(0.3, Generator(9, 4)), d3(0.3, Generator(9, 5));
    auto y1 = d1.forward(Var(x)).value().to_vector();
    auto y2 = d2.forward(Var(x)).value().to_vector();
    auto y3 = d3.forward(Var(x)).value().to_vector();
    CHECK(y1 == y2);
    CHECK(y1 != y3);
    int zeros = 0;
    for (double v : y1) {
        CHECK((v == 0.0 || v == Approx(1.0 / 0.7)));
        zeros += v == 0.0;
    }
    CHECK(zeros > 20);
    CHECK(zeros < 100);
    d1.eval();
    CHECK(d1.forward(Var(x)).value().to_vector() == x.to_vector());
    d1.set_mc(true);
    CHECK(d1.forward(Var(x)).value().to_vector() != x.to_vector());
    // A shared generator is advanced by the module.
    Generator shared(3, 3);
    Dropout ds(0.5, &shared);
    ds.forward(Var(x));
    Generator fresh(3, 3);
    CHECK(shared.uniform() != fresh.uniform());
    CHECK(ds.named_generators().empty());
    reset_tape();
}

TEST_CASE("layers report bad inputs naming the layer and the shapes", "[nn][errors]") {
    Generator g(1, 1);
    Linear lin(4, 3, g);
    CHECK(error_of([&] {
              lin.forward(Var(Tensor::zeros({2, 5})));
          }) == "Linear(in=4, out=3): input f32[2, 5] does not match (expected [..., 4], f32)");
    CHECK(error_of([&] {
              lin.forward(Var(Tensor::zeros({2, 4}, DType::f64)));
          }).find("f64[2, 4]") != std::string::npos);
    Conv2d conv(3, 8, 3, g, {.stride = 2, .padding = 1});
    std::string e = error_of([&] { conv.forward(Var(Tensor::zeros({2, 4, 8, 8}))); });
    CHECK(e.find("Conv2d(in=3, out=8, kernel=3, stride=2, padding=1)") == 0);
    CHECK(e.find("f32[2, 4, 8, 8]") != std::string::npos);
    GroupNorm gn(4, 8);
    CHECK(error_of([&] {
              gn.forward(Var(Tensor::zeros({2, 6, 3})));
          }).find("GroupNorm(groups=4, channels=8): input f32[2, 6, 3]") == 0);
    CHECK(error_of([&] { GroupNorm bad(3, 8); }).find("GroupNorm(groups=3, channels=8)") == 0);
    LayerNorm ln(5);
    CHECK(error_of([&] {
              ln.forward(Var(Tensor::zeros({2, 4})));
          }).find("LayerNorm(dim=5): input f32[2, 4]") == 0);
    DenseResidual res(6, g);
    CHECK(error_of([&] { res.forward(Var(Tensor::zeros({2, 5}))); }).find("DenseResidual(dim=6") == 0);
    CHECK(error_of([] { Dropout d(1.0, Generator(0, 0)); }).find("Dropout(p=1)") == 0);
    CHECK(error_of([&] { lin.forward(Var(Tensor::zeros({2, 4}))); }).empty());
    reset_tape();
}

TEST_CASE("Linear, Conv2d, GroupNorm, LayerNorm and activations pass the gradient check", "[nn][grad]") {
    Generator g(21, 0);
    SECTION("Linear with and without bias, batched input") {
        Linear a(4, 3, g, {.dtype = DType::f64});
        expect_module_grad("Linear", a, rnd({2, 5, 4}, 1));
        Linear b(4, 3, g, {.bias = false, .dtype = DType::f64});
        expect_module_grad("Linear(bias=false)", b, rnd({3, 4}, 2));
    }
    SECTION("Conv2d stride 2 padding 1") {
        Conv2d c(2, 3, 3, g, {.stride = 2, .padding = 1, .dtype = DType::f64});
        expect_module_grad("Conv2d", c, rnd({1, 2, 5, 5}, 3));
    }
    SECTION("GroupNorm and LayerNorm with perturbed affine parameters") {
        GroupNorm gn(2, 4, 1e-5, true, DType::f64);
        for (auto* p : gn.parameters()) p->value().copy_from(rnd(p->value().shape(), 40, 0.5, 1.5));
        expect_module_grad("GroupNorm", gn, rnd({2, 4, 3, 3}, 4));
        LayerNorm ln(5, 1e-5, true, DType::f64);
        for (auto* p : ln.parameters()) p->value().copy_from(rnd(p->value().shape(), 41, 0.5, 1.5));
        expect_module_grad("LayerNorm", ln, rnd({3, 5}, 5));
    }
    SECTION("activations, Flatten, GlobalAvgPool") {
        for (Act a : {Act::tanh, Act::sigmoid, Act::silu, Act::softplus, Act::identity}) {
            Activation m(a);
            expect_module_grad(act_name(a), m, rnd({3, 4}, 6));
        }
        Activation r(Act::relu);
        expect_module_grad("ReLU", r, rnd({3, 4}, 7, 0.1, 1.0));
        Flatten f;
        expect_module_grad("Flatten", f, rnd({2, 3, 2}, 8));
        GlobalAvgPool gp;
        expect_module_grad("GlobalAvgPool", gp, rnd({2, 3, 2, 2}, 9));
    }
}

TEST_CASE("DenseResidual with relu and dropout (fused relu_dropout) equals the unfused composition", "[nn][dropout]") {
    Generator g(23, 0);
    DenseResidual blk(16, g, {.act = Act::relu, .dropout = 0.2, .dtype = DType::f32});
    Tensor x = rnd({9, 16}, 13).to(DType::f32);
    const Generator saved = blk.dropout()->generator();
    reset_tape();
    const std::vector<double> fused = blk.forward(Var(x)).value().to_vector();
    Generator replay = saved;
    const Var z = blk.dense().forward(Var(x));
    const std::vector<double> plain = (Var(x) + dropout(relu(z), 0.2, replay)).value().to_vector();
    CHECK(fused == plain);
    CHECK(blk.dropout()->generator()() == replay());  // both consumed the same draws
    reset_tape();
}

TEST_CASE("residual blocks pass the gradient check (dropout with a fixed mask)", "[nn][grad]") {
    Generator g(22, 0);
    SECTION("DenseResidual, tanh, dropout mask re-drawn from the same generator state at every call") {
        DenseResidual blk(5, g, {.act = Act::tanh, .dropout = 0.3, .dtype = DType::f64});
        const Generator saved = blk.dropout()->generator();
        expect_module_grad("DenseResidual", blk, rnd({3, 5}, 10), [&](const Var& x) {
            blk.dropout()->generator() = saved;  // the same mask in every evaluation
            return blk.forward(x);
        });
    }
    SECTION("DenseResidual, relu, spectral norm (eval mode: fixed u, v)") {
        DenseResidual blk(4, g, {.spectral_norm = true, .norm_multiplier = 0.5, .dtype = DType::f64});
        blk.eval();
        Tensor x = rnd({3, 4}, 11);
        // The relu arguments stay clear of the kink by far more than the finite-difference step.
        {
            NoGradScope ng;
            auto& sn = dynamic_cast<SpectralNorm&>(blk.dense());
            Tensor pre = sn.forward(Var(x)).value();
            double mn = 1.0;
            for (double v : pre.to_vector()) mn = std::min(mn, std::abs(v));
            REQUIRE(mn > 1e-4);
        }
        expect_module_grad("DenseResidual(sn)", blk, x);
    }
    SECTION("ConvResidualBlock (silu, GroupNorm 2 groups)") {
        ConvResidualBlock blk(4, g, {.act = Act::silu, .dtype = DType::f64, .groups = 2});
        expect_module_grad("ConvResidualBlock", blk, rnd({1, 4, 3, 3}, 12), {}, 1e-5);
    }
}

TEST_CASE("the models pass the gradient check in float64", "[nn][grad][models]") {
    Generator g(23, 0);
    SECTION("deterministic ResNet (dropout 0)") {
        ResNetConfig cfg{.input_dim = 2, .hidden = 6, .num_layers = 2, .num_classes = 3, .dropout = 0.0};
        cfg.dtype = DType::f64;
        ResNetClassifier net(cfg, g);
        expect_module_grad("ResNetClassifier", net, rnd({4, 2}, 13));
    }
    SECTION("SNGP ResNet in eval mode, with its dropout mask fixed") {
        ResNetConfig cfg{
            .input_dim = 2, .hidden = 6, .num_layers = 2, .num_classes = 3, .dropout = 0.2, .sngp = true};
        cfg.gp.num_inducing = 8;
        cfg.dtype = DType::f64;
        ResNetClassifier net(cfg, g);
        net.eval();
        set_mc_dropout(net, true);
        std::vector<Generator> saved;
        for (auto& [_, gen] : net.named_generators()) saved.push_back(*gen);
        expect_module_grad("ResNetClassifier(sngp)", net, rnd({4, 2}, 14), [&](const Var& x) {
            auto gens = net.named_generators();
            for (std::size_t i = 0; i < gens.size(); ++i) *gens[i].second = saved[i];
            return net.forward(x);
        });
    }
    SECTION("MNIST conv net, 1 residual block, width 4, 10x10 input") {
        ConvNetConfig cfg{.in_channels = 1, .width = 4, .num_blocks = 1, .num_classes = 3, .groups = 2};
        cfg.dtype = DType::f64;
        MnistConvNet net(cfg, g);
        // Relu kinks: a random perturbation rarely lands within eps of one; a relative tolerance of 1e-5
        // covers the rest of the float64 rounding through three normalisations.
        expect_module_grad("MnistConvNet", net, rnd({1, 1, 10, 10}, 15), {}, 1e-5);
    }
}

TEST_CASE("the models produce the documented shapes", "[nn][models]") {
    Generator g(24, 0);
    ConvNetConfig cfg{.width = 8, .num_blocks = 2, .dropout = 0.1, .groups = 4};
    MnistConvNet net(cfg, g);
    Tensor x = Tensor::zeros({3, 1, 28, 28});
    Var h = net.downsample(Var(x));
    CHECK(h.shape() == Shape{3, 8, 6, 6});
    CHECK(net.forward(Var(x)).shape() == Shape{3, 10});
    CHECK(error_of([&] { net.forward(Var(Tensor::zeros({3, 2, 28, 28}))); }).find("MnistConvNet") == 0);
    reset_tape();

    ResNetConfig rc;
    rc.sngp = true;
    rc.gp.num_inducing = 64;
    ResNetClassifier res(rc, g);
    CHECK(res.num_parameters(true) == 6 * (128 * 128 + 128) + 64 * 2);
    Tensor xs = rnd({5, 2}, 16).to(DType::f32);
    res.eval();
    auto pred = res.predict(Var(xs));
    CHECK(pred.logits.shape() == Shape{5, 2});
    CHECK(pred.variance.shape() == Shape{5});
    reset_tape();
}

TEST_CASE("Sequential fuses Linear + tanh/sigmoid/relu: the same bits as the layers one by one", "[nn][fused]") {
    for (DType dt : {DType::f32, DType::f64}) {
        Generator g(31, 2);
        Sequential net;
        net.emplace<Linear>(6, 8, g, LinearOptions{.dtype = dt});
        net.emplace<Activation>(Act::tanh);
        net.emplace<Linear>(8, 8, g, LinearOptions{.bias = false, .dtype = dt});
        net.emplace<Activation>(Act::sigmoid);
        net.emplace<Linear>(8, 5, g, LinearOptions{.dtype = dt});
        net.emplace<Activation>(Act::relu);
        net.emplace<Linear>(5, 3, g, LinearOptions{.dtype = dt});
        net.emplace<Activation>(Act::silu);  // not fused
        const Tensor x = randn({7, 6}, g, dt);
        auto run = [&](bool fused) {
            for (auto* p : net.parameters()) p->zero_grad();
            Var xv = leaf(x);
            Var y = xv;
            if (fused) {
                y = net.forward(xv);
            } else {
                for (std::size_t i = 0; i < net.size(); ++i) y = net[i].forward(y);
            }
            backward(sum(y * y));
            std::vector<Tensor> out = {y.value().clone(), xv.grad().clone()};
            for (auto* p : net.parameters()) out.push_back(p->grad().clone());
            reset_tape();
            return out;
        };
        const auto a = run(true), b = run(false);
        REQUIRE(a.size() == b.size());
        for (std::size_t k = 0; k < a.size(); ++k) {
            INFO("tensor " << k << " dtype " << dtype_name(dt));
            REQUIRE(std::memcmp(a[k].raw(), b[k].raw(), a[k].nbytes()) == 0);
        }
    }
    // The fused node is what the tape records.
    Generator g(1, 1);
    Sequential net;
    net.emplace<Linear>(2, 3, g);
    net.emplace<Activation>(Act::tanh);
    Var y = net.forward(leaf(Tensor::zeros({1, 2})));
    REQUIRE(y.node() != nullptr);
    CHECK(std::string(y.node()->op) == "linear_tanh");
    reset_tape();
}

TEST_CASE("mutual_information (BALD) of sampled predictions against hand-computed values", "[nn][uq]") {
    // Input 0: two confident samples that disagree: H(mean) = ln 2, mean H = 0.
    // Input 1: identical samples: 0. Input 2: (0.9, 0.1) and (0.5, 0.5): H(0.7, 0.3) - (H(0.9, 0.1) +
    // H(0.5, 0.5)) / 2 = 0.6108643020548935 - (0.3250829733914482 + 0.6931471805599453) / 2.
    const std::vector<std::vector<double>> samples = {{1.0, 0.0, 0.3, 0.7, 0.9, 0.1},
                                                      {0.0, 1.0, 0.3, 0.7, 0.5, 0.5}};
    const auto mi = sdeuq::nn::mutual_information(samples, 2);
    REQUIRE(mi.size() == 3);
    CHECK(mi[0] == Approx(std::log(2.0)).epsilon(1e-14));
    CHECK(mi[1] == Approx(0.0).margin(1e-15));
    CHECK(mi[2] == Approx(0.6108643020548935 - (0.3250829733914482 + 0.6931471805599453) / 2).epsilon(1e-12));
    CHECK_THROWS_AS(sdeuq::nn::mutual_information({}, 2), std::invalid_argument);
}
