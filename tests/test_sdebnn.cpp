// SDE-BNN (sde/sdebnn.hpp): KL at initialisation, float64 gradient checks per gradient estimator, and one
// test per bug of the reference code (xwinxu/bayeSDE, see /work/shared/REFERENCES.md) showing that we do
// not share it.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "autodiff/random.hpp"
#include "nn/metrics.hpp"
#include "sde/adjoint.hpp"
#include "sde/sdebnn.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;

namespace {

// A small vector block (2 -> 3 -> 2, tanh), r_phi 2-layer, and a linear head 2 -> 2, in float64.
struct Fixture {
    Generator gen{11, 0};
    SDEBNNBlock block;
    nn::Linear head;
    Tensor x;
    std::vector<std::int32_t> labels;
    std::int64_t paths;

    explicit Fixture(SDEBNNOptions o, std::int64_t paths_ = 2, bool zero_hyper = false)
        : block(concat_linear_drift({2, 3, 2}, nn::Act::tanh), o, gen),
          head(2, 2, gen, nn::LinearOptions{.dtype = DType::f64}),
          x(rand_uniform({3, 2}, gen, DType::f64, -1.0, 1.0)),
          paths(paths_) {
        if (!zero_hyper) {  // move r_phi off zero, so that the KL and its gradients are not trivial
            auto& last = *static_cast<HyperNet&>(block.hypernet()).layers().back();
            last.weight().value().copy_from(
                rand_uniform(last.weight().value().shape(), gen, DType::f64, -0.3, 0.3));
            last.bias()->value().copy_from(
                rand_uniform(last.bias()->value().shape(), gen, DType::f64, -0.3, 0.3));
        }
        for (std::int64_t r = 0; r < paths; ++r) labels.insert(labels.end(), {0, 1, 1});
    }
    std::vector<Parameter*> params() {
        auto p = block.parameters();
        for (Parameter* q : head.parameters()) p.push_back(q);
        return p;
    }
    // Mean cross-entropy over paths x inputs + 0.1 mean KL, on the Brownian path of `seed`.
    Var loss(std::uint64_t seed = 5) {
        BlockResult r = block.forward(Var(x), paths, seed);
        return cross_entropy(head.forward(r.h), labels) + mean(r.kl) * 0.1;
    }
};

std::vector<double> analytic_grad(Fixture& fx) {
    for (Parameter* p : fx.params()) p->zero_grad();
    backward(fx.loss());
    std::vector<double> g;
    for (Parameter* p : fx.params()) {
        auto v = p->grad().to_vector();
        g.insert(g.end(), v.begin(), v.end());
    }
    reset_tape();
    return g;
}

// Central differences of the loss value (step 1e-6) over every parameter element.
std::vector<double> numeric_grad(Fixture& fx) {
    std::vector<double> g;
    NoGradScope ng;
    for (Parameter* p : fx.params()) {
        auto* v = static_cast<double*>(p->value().raw());
        for (std::int64_t i = 0; i < p->value().numel(); ++i) {
            const double v0 = v[i], eps = 1e-6;
            v[i] = v0 + eps;
            const double lp = fx.loss().item();
            reset_tape();
            v[i] = v0 - eps;
            const double lm = fx.loss().item();
            reset_tape();
            v[i] = v0;
            g.push_back((lp - lm) / (2 * eps));
        }
    }
    return g;
}

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num / den);
}

SDEBNNOptions small_options(const char* solver, const char* estimator, KLEstimator kl, int steps = 8) {
    SDEBNNOptions o;
    o.sigma = 0.5;
    o.steps = steps;
    o.solver = solver;
    o.estimator = estimator;
    o.kl = kl;
    o.hyper_hidden = {4};
    o.hyper_act = nn::Act::tanh;
    o.dtype = DType::f64;
    return o;
}

}  // namespace

TEST_CASE("sdebnn: the KL is exactly 0 at initialisation (r_phi's last layer starts at zero)", "[sdebnn]") {
    for (KLEstimator kl : {KLEstimator::plain, KLEstimator::full, KLEstimator::stl}) {
        Fixture fx(small_options("euler", "backprop", kl), 3, /*zero_hyper=*/true);
        BlockResult r = fx.block.forward(Var(fx.x), 3, 9);
        for (double v : r.kl.value().to_vector()) CHECK(v == 0.0);
        reset_tape();
    }
}

TEST_CASE("sdebnn: float64 gradients w.r.t. w(0), r_phi and the head match central differences", "[sdebnn]") {
    register_adjoint_estimators();
    // backprop through Euler-Maruyama, plain and full KL: the exact gradient of the discretised loss.
    for (KLEstimator kl : {KLEstimator::plain, KLEstimator::full}) {
        Fixture fx(small_options("euler", "backprop", kl));
        const double e = rel_err(analytic_grad(fx), numeric_grad(fx));
        INFO(fmt::format("backprop euler, KL {}: relative error {:.3e}", kl_estimator_name(kl), e));
        CHECK(e < 1e-7);
    }
    // Per-sample paths (Layout::per_sample) through the batched GEMM path.
    {
        Fixture fx(small_options("midpoint", "backprop", KLEstimator::full));
        auto loss_ps = [&]() {
            BlockResult r = fx.block.forward(Var(fx.x), 0, 3, Layout::per_sample);
            return cross_entropy(fx.head.forward(r.h), std::vector<std::int32_t>{0, 1, 1}) + mean(r.kl) * 0.1;
        };
        for (Parameter* p : fx.params()) p->zero_grad();
        backward(loss_ps());
        reset_tape();
        Parameter& w0 = fx.block.w0();
        auto* v = static_cast<double*>(w0.value().raw());
        NoGradScope ng;
        for (std::int64_t i = 0; i < w0.value().numel(); i += 5) {
            const double v0 = v[i];
            v[i] = v0 + 1e-6;
            const double lp = loss_ps().item();
            v[i] = v0 - 1e-6;
            const double lm = loss_ps().item();
            v[i] = v0;
            reset_tape();
            CHECK(w0.grad().to_vector()[static_cast<std::size_t>(i)] ==
                  Approx((lp - lm) / 2e-6).epsilon(1e-6));
        }
    }
    // The stochastic adjoint (midpoint forward and backward, plain KL): the gradient of the continuous
    // solution, so it matches the discretised loss's to O(dt): measured at two step counts.
    double errs[2];
    int k = 0;
    for (int steps : {8, 32}) {
        Fixture fx(small_options("midpoint", "adjoint", KLEstimator::plain, steps));
        errs[k] = rel_err(analytic_grad(fx), numeric_grad(fx));
        INFO(fmt::format("adjoint, {} steps: relative error {:.3e}", steps, errs[k]));
        CHECK(errs[k] < 5e-2);
        ++k;
    }
    CHECK(errs[1] < errs[0]);
    // Reversible Heun (plain KL, as a state coordinate): the exact gradient of its own discretisation.
    {
        Fixture fx(small_options("reversible_heun", "reversible_heun", KLEstimator::plain));
        const double e = rel_err(analytic_grad(fx), numeric_grad(fx));
        INFO(fmt::format("reversible Heun: relative error {:.3e}", e));
        CHECK(e < 1e-7);
    }
    WARN(fmt::format(
        "sdebnn adjoint vs central differences: relative error {:.3e} (8 steps), {:.3e} (32 steps)", errs[0],
        errs[1]));
}

TEST_CASE("sdebnn: STL has full's value and its gradients w.r.t. w(0) and the head; 0 for r_phi at init",
          "[sdebnn]") {
    // Reference bug: the STL term of bayeSDE evaluates u at the initial weights (so it acts as the plain
    // estimator). Ours evaluates u~ at the current w: the STL logqp VALUE equals the full estimator's on the
    // same Brownian path, step by step, and differs from plain's.
    std::vector<double> kls[3], grads[3];
    int k = 0;
    for (KLEstimator kl : {KLEstimator::full, KLEstimator::stl, KLEstimator::plain}) {
        Fixture fx(small_options("euler", "backprop", kl));
        kls[k] = fx.block.forward(Var(fx.x), 2, 21).kl.value().to_vector();
        reset_tape();
        grads[k] = analytic_grad(fx);
        ++k;
    }
    for (std::size_t i = 0; i < kls[0].size(); ++i) {
        CHECK(kls[1][i] == Approx(kls[0][i]).epsilon(1e-12));
        CHECK(std::abs(kls[2][i] - kls[0][i]) > 1e-3);
    }
    // w(0) first (22 weights), then r_phi, then the head (last 6): STL = full there.
    Fixture ref(small_options("euler", "backprop", KLEstimator::stl));
    const std::size_t p = static_cast<std::size_t>(ref.block.num_weights()), n = grads[0].size();
    for (std::size_t i = 0; i < n; ++i) {
        if (i < p || i >= n - 6) CHECK(grads[1][i] == Approx(grads[0][i]).epsilon(1e-10).margin(1e-14));
    }
    // At posterior = prior (r_phi's last layer zero) the STL gradient of the KL w.r.t. r_phi is exactly 0
    // (u = 0 for every w), the full estimator's is not (its score term int du/dphi . dW).
    double norms[2];
    k = 0;
    for (KLEstimator kl : {KLEstimator::stl, KLEstimator::full}) {
        Fixture fx(small_options("euler", "backprop", kl), 2, /*zero_hyper=*/true);
        for (Parameter* q : fx.params()) q->zero_grad();
        backward(sum(fx.block.forward(Var(fx.x), 2, 4).kl));
        double s = 0;
        for (Parameter* q : fx.block.hypernet().parameters())
            for (double v : q->grad().to_vector()) s += v * v;
        norms[k++] = std::sqrt(s);
        reset_tape();
    }
    CHECK(norms[0] == 0.0);
    CHECK(norms[1] > 1e-3);
}

TEST_CASE("sdebnn: the solve reaches t1 (the reference's fixed-grid solver stops near t = 0.53)",
          "[sdebnn]") {
    // f_x = one concat-time linear layer 1 -> 1 with weights (0, 0) and bias b0 = 1, r_phi = 0, sigma tiny:
    // the bias follows the OU prior's Euler steps b_k = (1 - dt)^k, so h(t1) - h(0) = sum_k dt (1 - dt)^k =
    // 1 - (1 - dt)^N after all N = 19 steps of dt = 1/19 (the reference's grid linspace(0, 1, 20)). A
    // solve that stopped at t = 10/19 = 0.526 would give 1 - (1 - dt)^10.
    SDEBNNOptions o = small_options("euler", "backprop", KLEstimator::plain, 19);
    o.sigma = 1e-12;
    Generator gen(1, 0);
    SDEBNNBlock block(concat_linear_drift({1, 1}, nn::Act::tanh), o, gen);
    block.w0().value().copy_from(Tensor::from_vector({0.0, 0.0, 1.0}, {3}, DType::f64));
    BlockResult r = block.forward(Var(Tensor::zeros({1, 1}, DType::f64)), 1, 3);
    const double dt = 1.0 / 19, h1 = r.h.value().item();
    CHECK(block.last_stats().steps == 19);
    CHECK(h1 == Approx(1.0 - std::pow(1.0 - dt, 19)).epsilon(1e-9));
    CHECK(std::abs(h1 - (1.0 - std::pow(1.0 - dt, 10))) > 0.2);
    reset_tape();
}

TEST_CASE("sdebnn: the posterior weight drift keeps the OU prior term -w (the reference drops it)",
          "[sdebnn]") {
    // Same block as above, over [0, 1] with 50 Euler steps: with the OU term the bias decays to
    // (1 - dt)^k and h(1) = 1 - (1 - dt)^50 ~ 1 - 1/e; without it (the reference's posterior drift
    // r_phi alone) the bias would stay 1 and h(1) = 1.
    SDEBNNOptions o = small_options("euler", "backprop", KLEstimator::plain, 50);
    o.sigma = 1e-12;
    Generator gen(1, 0);
    SDEBNNBlock block(concat_linear_drift({1, 1}, nn::Act::tanh), o, gen);
    block.w0().value().copy_from(Tensor::from_vector({0.0, 0.0, 1.0}, {3}, DType::f64));
    // A nonzero r_phi, the constant (0, 0, c) (its zero-weight last layer's bias): the two weights stay 0,
    // the bias' drift is -b + c, so b_k = c + (1 - c)(1 - dt)^k and h(1) = c + (1 - c)(1 - (1 - dt)^50).
    const double c = 0.25;
    auto& last = *static_cast<HyperNet&>(block.hypernet()).layers().back();
    last.bias()->value().copy_from(Tensor::from_vector({0.0, 0.0, c}, {3}, DType::f64));
    BlockResult r = block.forward(Var(Tensor::zeros({1, 1}, DType::f64)), 1, 3);
    const double dt = 1.0 / 50;
    CHECK(r.h.value().item() == Approx(c + (1 - c) * (1.0 - std::pow(1.0 - dt, 50))).epsilon(1e-9));
    CHECK(std::abs(r.h.value().item() - 1.0) > 0.2);
    // KL = int_0^1 1/2 |r_phi / sigma|^2 dt: the plain estimator's sum is exact for a constant r_phi.
    CHECK(r.kl.value().item() == Approx(0.5 * c * c / (o.sigma * o.sigma)).epsilon(1e-9));
    reset_tape();
}

TEST_CASE("sdebnn: ECE keeps confidence exactly 1.0 in a bin (the reference's get_calibration drops it)",
          "[sdebnn]") {
    // Two samples predicted with confidence exactly 1.0, one right and one wrong: accuracy 0.5 and confidence
    // 1 in the top bin, ECE 0.5. Dropping confidence == 1.0 gives 0.
    const std::vector<double> probs{1.0, 0.0, 1.0, 0.0, 0.7, 0.3};
    const std::vector<std::int32_t> labels{0, 1, 0};
    for (std::size_t bins : {std::size_t(10), std::size_t(15)}) {
        // (2/3)|0.5 - 1| + (1/3)|1 - 0.7|
        CHECK(metrics::ece(std::span<const double>(probs), labels, 2, bins) ==
              Approx(2.0 / 3 * 0.5 + 1.0 / 3 * 0.3).epsilon(1e-12));
    }
}

TEST_CASE("sdebnn: bad inputs are clear errors", "[sdebnn]") {
    Fixture fx(small_options("euler", "backprop", KLEstimator::plain));
    CHECK_THROWS_WITH(fx.block.forward(Var(Tensor::zeros({3, 5}, DType::f64)), 1, 0),
                      Catch::Contains("SDEBNNBlock::forward") && Catch::Contains("[3, 5]"));
    CHECK_THROWS_WITH(concat_linear_drift({2, 3}, nn::Act::tanh), Catch::Contains("end where they start"));
    SDEBNNOptions o = small_options("euler", "backprop", KLEstimator::plain);
    o.sigma = 0;
    Generator gen;
    CHECK_THROWS_WITH(SDEBNNBlock(concat_linear_drift({2, 2}, nn::Act::tanh), o, gen),
                      Catch::Contains("sigma"));
    reset_tape();
}

TEST_CASE("sdebnn: a concat-time conv block's float64 gradients match central differences (2 paths, grouped)",
          "[sdebnn]") {
    SDEBNNOptions o = small_options("euler", "backprop", KLEstimator::full, 4);
    Generator gen(5, 0);
    SDEBNNBlock a(concat_conv_drift(2, 3, 3, {2}, nn::Act::softplus), o, gen);
    SDEBNNBlock b(concat_conv_drift(2, 3, 3, {2}, nn::Act::softplus), o, gen);
    for (SDEBNNBlock* blk : {&a, &b}) {
        auto& last = *static_cast<HyperNet&>(blk->hypernet()).layers().back();
        last.weight().value().copy_from(
            rand_uniform(last.weight().value().shape(), gen, DType::f64, -0.2, 0.2));
    }
    Tensor x = rand_uniform({3, 2, 3, 3}, gen, DType::f64, -1.0, 1.0);
    auto loss = [&]() {
        BlockResult r1 = a.forward(Var(x), 2, 7);                 // 3 inputs fanned out to 2 paths
        BlockResult r2 = b.forward(r1.h, 2, 8, Layout::grouped);  // each path's group continues
        return sum(r2.h * r2.h) * 0.1 + mean(r1.kl + r2.kl);
    };
    std::vector<Parameter*> ps = a.parameters();
    for (Parameter* p : b.parameters()) ps.push_back(p);
    for (Parameter* p : ps) p->zero_grad();
    backward(loss());
    reset_tape();
    NoGradScope ng;
    int checked = 0;
    for (Parameter* p : ps) {
        auto* v = static_cast<double*>(p->value().raw());
        const auto g = p->grad().to_vector();
        for (std::int64_t i = 0; i < p->value().numel(); i += 7) {
            const double v0 = v[i];
            v[i] = v0 + 1e-6;
            const double lp = loss().item();
            v[i] = v0 - 1e-6;
            const double lm = loss().item();
            v[i] = v0;
            reset_tape();
            INFO(p->name() << "[" << i << "]");
            CHECK(g[static_cast<std::size_t>(i)] == Approx((lp - lm) / 2e-6).epsilon(1e-5).margin(2e-8));
            ++checked;
        }
    }
    CHECK(checked > 20);
}

TEST_CASE(
    "sdebnn: STL and full KL through the stochastic adjoint agree with backprop through the same solver",
    "[sdebnn]") {
    register_adjoint_estimators();
    for (KLEstimator kl : {KLEstimator::stl, KLEstimator::full}) {
        Fixture bp(small_options("midpoint", "backprop", kl, 32));
        Fixture adj(small_options("midpoint", "adjoint", kl, 32));
        const double e = rel_err(analytic_grad(adj), analytic_grad(bp));
        INFO(fmt::format("adjoint vs backprop, KL {}: relative error {:.3e}", kl_estimator_name(kl), e));
        CHECK(e < 2e-2);
    }
}

TEST_CASE("sdebnn: full and STL KL through reversible Heun: backprop's gradient through the same solver",
          "[sdebnn]") {
    // The full KL has a gradient that is the derivative of its value: float64 central differences.
    {
        Fixture fx(small_options("reversible_heun", "reversible_heun", KLEstimator::full));
        const double e = rel_err(analytic_grad(fx), numeric_grad(fx));
        INFO(fmt::format("reversible Heun, full KL: relative error {:.3e}", e));
        CHECK(e < 1e-7);
    }
    // STL's gradient is not the derivative of any value: against the tape through the same reversible Heun
    // steps (the reconstructed states differ from the forward ones only by round-off).
    Fixture rh(small_options("reversible_heun", "reversible_heun", KLEstimator::stl));
    Fixture bp(small_options("reversible_heun", "backprop", KLEstimator::stl));
    const double e = rel_err(analytic_grad(rh), analytic_grad(bp));
    INFO(fmt::format("reversible Heun vs backprop, STL KL: relative error {:.3e}", e));
    CHECK(e < 1e-9);
}
