// Adversarial attacks (nn/attacks): FGSM at epsilon 0 is the identity, PGD increases the loss step by step
// on a fixed model, every perturbation stays in the epsilon ball and the pixel box, the input gradient
// passes the float64 gradient checker, and a stochastic model's gradient is the mean over its passes.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "nn/attacks.hpp"
#include "nn/models.hpp"

using namespace sdeuq;
using namespace sdeuq::nn;

namespace {

// A smooth classifier (tanh MLP) on [N, 1, 4, 4] images, float64 or float32.
struct TinyMlp {
    Sequential net;
    TinyMlp(DType dt, std::uint64_t seed) {
        Generator g(seed, 1);
        net.push_back(std::make_shared<Flatten>());
        net.push_back(std::make_shared<Linear>(16, 12, g, LinearOptions{.dtype = dt}));
        net.push_back(std::make_shared<Activation>(Act::tanh));
        net.push_back(std::make_shared<Linear>(12, 5, g, LinearOptions{.dtype = dt}));
    }
    Classifier classifier() {
        return {[this](const Var& x) { return net.forward(x); }, ClassifierOutput::logits, 1, "tiny_mlp"};
    }
};

Tensor images(std::int64_t n, DType dt, std::uint64_t seed, std::int64_t side = 4) {
    Generator g(seed, 2);
    Tensor x = rand_uniform({n, 1, side, side}, g, dt, 0.0, 1.0);
    // Pixels at the box's edges, where clipping matters.
    x.set_flat(0, 0.0);
    x.set_flat(1, 1.0);
    return x;
}

std::vector<std::int32_t> labels_for(std::int64_t n, int classes) {
    std::vector<std::int32_t> y;
    for (std::int64_t i = 0; i < n; ++i) y.push_back(static_cast<std::int32_t>((i * 3) % classes));
    return y;
}

double loss_at(const Classifier& c, const Tensor& x, std::span<const std::int32_t> y) {
    NestedTape t;
    NoGradScope ng;
    return attack_loss(c, Var(x), y).item();
}

void check_in_ball_and_box(const Tensor& x, const Tensor& adv, double eps) {
    REQUIRE(adv.shape() == x.shape());
    REQUIRE(adv.dtype() == x.dtype());
    double max_dev = 0.0, lo = 1.0, hi = 0.0;
    for (std::int64_t i = 0; i < x.numel(); ++i) {
        max_dev = std::max(max_dev, std::abs(adv.flat(i) - x.flat(i)));
        lo = std::min(lo, adv.flat(i));
        hi = std::max(hi, adv.flat(i));
    }
    INFO("epsilon " << eps << ", max |x_adv - x| " << max_dev);
    // The projection is computed in double and rounded once to the pixel dtype: half an ulp of a value in
    // [0, 1] (< 6e-8 for float32, < 1.2e-16 for float64) on top of the ulp of x +- epsilon in double.
    CHECK(max_dev <= eps + (x.dtype() == DType::f32 ? 6e-8 : 3e-16));
    CHECK(lo >= 0.0);
    CHECK(hi <= 1.0);
}

}  // namespace

TEST_CASE("FGSM at epsilon 0 returns the input bit for bit", "[nn][attacks]") {
    Generator g(11, 0);
    ConvNetConfig cfg;
    cfg.width = 4;
    cfg.groups = 2;
    cfg.num_blocks = 1;
    cfg.dropout = 0.2;
    MnistConvNet model(cfg, g);
    model.eval();
    set_mc_dropout(model, true);  // stochastic: even then nothing may change
    const Tensor x = images(3, DType::f32, 5, 12);
    const auto y = labels_for(3, 10);
    Classifier c{[&](const Var& v) { return model.forward(v); }, ClassifierOutput::logits, 4, "mc_dropout"};
    const Tensor adv = fgsm(c, x, y, 0.0);
    REQUIRE(adv.shape() == x.shape());
    CHECK(std::memcmp(adv.raw(), x.raw(), x.nbytes()) == 0);
    // ... while a positive epsilon does move it (the test above cannot pass by a no-op attack).
    const Tensor moved = fgsm(c, x, y, 0.05);
    CHECK(std::memcmp(moved.raw(), x.raw(), x.nbytes()) != 0);
}

TEST_CASE("FGSM moves every pixel by epsilon along the gradient's sign, clipped to [0, 1]", "[nn][attacks]") {
    TinyMlp m(DType::f64, 3);
    auto c = m.classifier();
    const Tensor x = images(6, DType::f64, 7);
    const auto y = labels_for(6, 5);
    const double eps = 0.1;
    const Tensor g = input_gradient(c, x, y).grad;
    const Tensor adv = fgsm(c, x, y, eps);
    for (std::int64_t i = 0; i < x.numel(); ++i) {
        const double s = g.flat(i) > 0 ? 1.0 : (g.flat(i) < 0 ? -1.0 : 0.0);
        CHECK(adv.flat(i) == std::clamp(x.flat(i) + eps * s, 0.0, 1.0));
    }
    check_in_ball_and_box(x, adv, eps);
    CHECK(loss_at(c, adv, y) > loss_at(c, x, y));
}

TEST_CASE("PGD increases the loss monotonically on a fixed deterministic model", "[nn][attacks]") {
    TinyMlp m(DType::f64, 4);
    auto c = m.classifier();
    const Tensor x = images(8, DType::f64, 8);
    const auto y = labels_for(8, 5);
    for (double eps : {0.05, 0.3}) {
        PgdOptions o;
        o.epsilon = eps;
        o.steps = 12;
        o.step_size = eps / 8;  // small steps: the first-order gain alpha |g|_1 dominates
        o.seed = 1;
        const PgdResult r = pgd(c, x, y, o);
        REQUIRE(r.loss_trace.size() == 13);
        for (std::size_t t = 1; t < r.loss_trace.size(); ++t) {
            INFO("epsilon " << eps << ", step " << t << ": " << r.loss_trace[t - 1] << " -> " << r.loss_trace[t]);
            CHECK(r.loss_trace[t] >= r.loss_trace[t - 1]);
        }
        CHECK(r.loss_trace.back() > r.loss_trace.front());
        CHECK(r.loss_trace.back() == Approx(loss_at(c, r.x_adv, y)).epsilon(1e-12));
        CHECK(r.loss_trace.back() > loss_at(c, x, y));
        check_in_ball_and_box(x, r.x_adv, eps);
    }
}

TEST_CASE("PGD and FGSM perturbations stay within epsilon and [0, 1] (float32 conv net)", "[nn][attacks]") {
    Generator g(12, 0);
    ConvNetConfig cfg;
    cfg.width = 4;
    cfg.groups = 2;
    cfg.num_blocks = 0;
    MnistConvNet model(cfg, g);
    model.eval();
    Classifier c{[&](const Var& v) { return model.forward(v); }, ClassifierOutput::logits, 1, "conv"};
    const Tensor x = images(4, DType::f32, 9, 12);
    const auto y = labels_for(4, 10);
    for (double eps : {0.05, 0.1, 0.3}) {
        check_in_ball_and_box(x, fgsm(c, x, y, eps), eps);
        PgdOptions o;
        o.epsilon = eps;
        o.steps = 10;
        o.seed = 2;
        const PgdResult r = pgd(c, x, y, o);
        check_in_ball_and_box(x, r.x_adv, eps);
        // The default step 2.5 eps / steps reaches the ball's boundary: some pixel sits at distance eps.
        double max_dev = 0.0;
        for (std::int64_t i = 0; i < x.numel(); ++i) max_dev = std::max(max_dev, std::abs(r.x_adv.flat(i) - x.flat(i)));
        CHECK(max_dev >= eps - 1e-6);
    }
}

TEST_CASE("PGD is a function of its seed (random start)", "[nn][attacks]") {
    TinyMlp m(DType::f64, 5);
    auto c = m.classifier();
    const Tensor x = images(3, DType::f64, 10);
    const auto y = labels_for(3, 5);
    PgdOptions o;
    o.epsilon = 0.1;
    o.seed = 7;
    const Tensor a = pgd(c, x, y, o).x_adv, b = pgd(c, x, y, o).x_adv;
    CHECK(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
    o.steps = 1;
    o.step_size = 1e-9;  // almost only the random start: another seed gives another start
    const Tensor s1 = pgd(c, x, y, o).x_adv;
    o.seed = 8;
    const Tensor s2 = pgd(c, x, y, o).x_adv;
    CHECK(std::memcmp(s1.raw(), s2.raw(), s1.nbytes()) != 0);
}

TEST_CASE("the attack loss's input gradient passes the float64 gradient checker", "[nn][attacks][gradcheck]") {
    const Tensor x = images(3, DType::f64, 11);
    const auto y = labels_for(3, 5);
    TinyMlp a(DType::f64, 6), b(DType::f64, 7);
    // Logits, and an ensemble's averaged probabilities.
    const Classifier logits = a.classifier();
    const Classifier probs{[&](const Var& v) {
                               return mul(add(softmax(a.net.forward(v), -1), softmax(b.net.forward(v), -1)), 0.5);
                           },
                           ClassifierOutput::probabilities, 1, "ensemble"};
    for (const Classifier* c : {&logits, &probs}) {
        INFO(c->name);
        auto r = check_gradients(
            "attack_loss(" + c->name + ")", [&](std::span<const Var> in) { return attack_loss(*c, in[0], y); }, {x});
        INFO(r.message);
        CHECK(r.ok);
        // input_gradient (nested tapes, averaged) against central differences of the loss.
        const Tensor g = input_gradient(*c, x, y).grad;
        Tensor xp = x.clone();
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            const double h = 1e-6, x0 = x.flat(i);
            xp.set_flat(i, x0 + h);
            const double lp = loss_at(*c, xp, y);
            xp.set_flat(i, x0 - h);
            const double lm = loss_at(*c, xp, y);
            xp.set_flat(i, x0);
            const double num = (lp - lm) / (2 * h);
            INFO("input " << i);
            CHECK(std::abs(g.flat(i) - num) <= 1e-8 + 1e-6 * std::abs(num));
        }
    }
}

TEST_CASE("a stochastic model's input gradient is the mean over its passes", "[nn][attacks]") {
    TinyMlp m(DType::f64, 8);
    const Tensor x = images(2, DType::f64, 12);
    const auto y = labels_for(2, 5);
    Generator noise(99, 3);
    // Each pass adds fresh input noise: a stand-in for dropout masks or Brownian increments.
    auto fwd = [&](const Var& v) { return m.net.forward(add(v, Var(randn(v.shape(), noise, DType::f64, 0.0, 0.3)))); };
    Classifier c{fwd, ClassifierOutput::logits, 3, "noisy"};
    const Generator start = noise;
    const InputGradient g3 = input_gradient(c, x, y);
    noise = start;  // replay the same three passes one at a time
    Classifier one = c;
    one.passes = 1;
    Tensor mean = Tensor::zeros(x.shape(), DType::f64);
    double loss = 0.0;
    for (int k = 0; k < 3; ++k) {
        const InputGradient gk = input_gradient(one, x, y);
        for (std::int64_t i = 0; i < x.numel(); ++i) mean.set_flat(i, mean.flat(i) + gk.grad.flat(i) / 3);
        loss += gk.loss / 3;
    }
    for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(g3.grad.flat(i) == Approx(mean.flat(i)).epsilon(1e-12));
    CHECK(g3.loss == Approx(loss).epsilon(1e-12));
    // And the passes differ (else the test would not test averaging).
    noise = start;
    const Tensor first = input_gradient(one, x, y).grad;
    CHECK(std::abs(first.flat(0) - g3.grad.flat(0)) > 1e-9);
}

TEST_CASE("attacks reject bad input with a message naming it", "[nn][attacks]") {
    TinyMlp m(DType::f64, 9);
    auto c = m.classifier();
    const Tensor x = images(3, DType::f64, 13);
    const auto y = labels_for(2, 5);
    CHECK_THROWS_WITH(fgsm(c, x, y, 0.1), Catch::Contains("3 labels") || Catch::Contains("2 labels"));
    const auto y3 = labels_for(3, 5);
    CHECK_THROWS_WITH(fgsm(c, x, y3, -0.1), Catch::Contains("epsilon"));
    PgdOptions o;
    o.steps = 0;
    CHECK_THROWS_WITH(pgd(c, x, y3, o), Catch::Contains("steps"));
    c.passes = 0;
    CHECK_THROWS_WITH(input_gradient(c, x, y3), Catch::Contains("passes"));
}
