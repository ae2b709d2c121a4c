// Tests of sde/solvers.hpp and sde/integrate.hpp: strong convergence orders measured on SDEs with exact
// solutions (sde/test_sdes.hpp), weak moments of GBM, adaptive steps, gradients of the backprop
// estimator against finite differences, and input errors.
//
// Strong order: for dt = 2^-4 .. 2^-9 on the same Brownian paths (one solve with the paths as the batch),
// err(dt) = mean over paths and components of |Y_T - exact(T, W_T)|, and the slope of log err against
// log dt (least squares) must be within 0.1 of the expected order. Expected orders per case:
//   SDE (noise, calculus)                    solver            expected  why
//   GBM (diagonal, Ito)                      euler             0.5       general EM
//   GBM (diagonal, Ito)                      milstein          1.0       commutative noise
//   GBM (diagonal, Stratonovich)             milstein          1.0
//   GBM (diagonal, Stratonovich)             heun              1.0       commutative noise
//   GBM (diagonal, Stratonovich)             midpoint          1.0       commutative noise
//   GBM (diagonal, Stratonovich)             reversible_heun   1.0       commutative noise
//   GBM (scalar, Ito)                        euler             0.5
//   GBM (scalar, Ito)                        milstein          1.0
//   GBM (scalar, Stratonovich)               heun              1.0
//   GBM (scalar, Stratonovich)               reversible_heun   1.0
//   exp additive (linear drift, exact)       srk               2.0       SRA1; 1.5 needs f'' != 0
//   exp additive                             euler             1.0       additive noise
//   exp additive                             heun, midpoint    2.0       H-errors cancel (see the case)
//   exp additive                             reversible_heun   2.0
//   sine additive (nonlinear drift)          srk               >= 1.5    SRA1 (~1.7: pre-asymptotic)
//   sine additive                            euler, heun       1.0       additive noise
//   sine additive                            midpoint          1.0
//   sine additive                            reversible_heun   1.0       Kidger et al. 2021
//   double well additive (stiffer drift)     srk               1.5       Roessler SRA1
//   double well additive                     euler, heun       1.0
//   commuting linear (general, Ito)          euler             0.5
//   commuting linear (general, Strat.)       heun              1.0       general but commutative noise
// Errors on the sine and double well SDEs are against srk with dt = 2^-14 on the same path. Measured
// slopes: docs/solvers.md (SDEUQ_VERBOSE=1 prints them).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <string>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/random.hpp"
#include "sde/integrate.hpp"
#include "sde/test_sdes.hpp"
#include "tests/sde_convergence_util.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;
using sdeuq::sde::testing::CommutingLinear;
using sdeuq::sde::testing::DoubleWellAdditive;
using sdeuq::sde::testing::ExpAdditive;
using sdeuq::sde::testing::GeometricBrownianMotion;
using sdeuq::sde::testing::KPAdditive;
using sdeuq::sde::testing::SineAdditive;
using namespace sdeuq::sde::test_util;

namespace {

// Errors at dt = 2^-k, k = 4..9, against `reference` (Y_1 on the same path), and the fitted slope: within 0.1
// of `expected`, or above expected - 0.1 when `at_least`.
SlopeFit strong_order(SDE& sde, const std::string& solver, const Tensor& y0, const BrownianPath& bm,
                      const Tensor& reference, const std::string& label, double expected,
                      bool at_least = false) {
    std::vector<double> dts, errs;
    for (int k = 4; k <= 9; ++k) {
        SolveOptions opt;
        opt.dt = std::ldexp(1.0, -k);
        Tensor y = solve_to_end(sde, solver, y0, bm, opt);
        dts.push_back(opt.dt);
        errs.push_back(mean_abs_diff(y, reference));
    }
    SlopeFit f = fit_log_slope(dts, errs);
    if (std::getenv("SDEUQ_VERBOSE"))
        std::printf(
            "strong order  %-34s %-16s slope %.3f +- %.3f (expected %.1f)  err(2^-4) %.3g  err(2^-9) %.3g\n",
            label.c_str(), solver.c_str(), f.slope, f.se, expected, errs.front(), errs.back());
    INFO(fmt::format("{} / {}: errors {} at dts {}; slope {:.3f} +- {:.3f}, expected {}", label, solver,
                     fmt::join(errs, ", "), fmt::join(dts, ", "), f.slope, f.se, expected));
    if (at_least)
        CHECK(f.slope > expected - 0.1);
    else
        CHECK(std::abs(f.slope - expected) < 0.1);
    return f;
}

template <class S>
SlopeFit strong_order(S& sde, const std::string& solver, const Tensor& y0, const BrownianPath& bm,
                      const std::string& label, double expected) {
    return strong_order(sde, solver, y0, bm, sde.exact(1.0, y0, w_at_1(bm, y0.dim(0))), label, expected);
}

constexpr std::int64_t kPaths = 500;

// A tiny neural SDE in float64 (diagonal noise, d = 2): f = W2 tanh(W1 y + b1) + b2,
// g = 0.2 + 0.3 tanh(Wg y + bg) (kept positive and away from 0), or additive g = B / (1 + t).
class TinyNeuralSDE final : public SDE {
public:
    TinyNeuralSDE(Calculus c, Noise n) : calculus_(c), noise_(n) {
        Generator gen(42, 0);
        w1_ = Parameter("w1", randn(Shape{4, 2}, gen, DType::f64, 0.0, 0.5));
        b1_ = Parameter("b1", randn(Shape{4}, gen, DType::f64, 0.0, 0.5));
        w2_ = Parameter("w2", randn(Shape{2, 4}, gen, DType::f64, 0.0, 0.5));
        b2_ = Parameter("b2", randn(Shape{2}, gen, DType::f64, 0.0, 0.5));
        wg_ = Parameter("wg", randn(Shape{2, 2}, gen, DType::f64, 0.0, 0.5));
        bg_ = Parameter("bg", randn(Shape{2}, gen, DType::f64, 0.0, 0.5));
        bb_ = Parameter("B", randn(Shape{2, 3}, gen, DType::f64, 0.0, 0.5));
        for (Parameter* p : {&w1_, &b1_, &w2_, &b2_}) add_parameter(*p);
        if (noise_ == Noise::additive) {
            add_parameter(bb_);
        } else {
            add_parameter(wg_);
            add_parameter(bg_);
        }
    }
    Noise noise() const override { return noise_; }
    Calculus calculus() const override { return calculus_; }
    std::int64_t brownian_dim(std::int64_t d) const override { return noise_ == Noise::additive ? 3 : d; }
    Var f(double, const Var& y) override {
        Var b1 = b1_.var(), b2 = b2_.var();
        return linear(tanh(linear(y, w1_.var(), &b1)), w2_.var(), &b2);
    }
    Var g(double t, const Var& y) override {
        if (noise_ == Noise::additive) return bb_.var() * (1.0 / (1.0 + t));
        Var bg = bg_.var();
        return tanh(linear(y, wg_.var(), &bg)) * 0.3 + 0.2;
    }

private:
    Calculus calculus_;
    Noise noise_;
    Parameter w1_, b1_, w2_, b2_, wg_, bg_, bb_;
};

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(no exception)";
}

}  // namespace

TEST_CASE("strong order on GBM with diagonal noise matches theory", "[sde][solvers][convergence]") {
    BrownianPath bm(0.0, 1.0, kPaths * 2, 11);
    Tensor y0 = y0_tensor(kPaths, {1.0, 0.8});
    GeometricBrownianMotion ito({0.4, -0.3}, {0.6, 0.9}, Calculus::ito);
    GeometricBrownianMotion strat({0.4, -0.3}, {0.6, 0.9}, Calculus::stratonovich);
    strong_order(ito, "euler", y0, bm, "GBM diagonal Ito", 0.5);
    strong_order(ito, "milstein", y0, bm, "GBM diagonal Ito", 1.0);
    strong_order(strat, "milstein", y0, bm, "GBM diagonal Stratonovich", 1.0);
    strong_order(strat, "heun", y0, bm, "GBM diagonal Stratonovich", 1.0);
    strong_order(strat, "midpoint", y0, bm, "GBM diagonal Stratonovich", 1.0);
    strong_order(strat, "reversible_heun", y0, bm, "GBM diagonal Stratonovich", 1.0);
}

TEST_CASE("strong order on GBM with scalar noise matches theory", "[sde][solvers][convergence]") {
    BrownianPath bm(0.0, 1.0, kPaths, 12);
    Tensor y0 = y0_tensor(kPaths, {1.0, 0.8});
    GeometricBrownianMotion ito({0.4, -0.3}, {0.6, 0.9}, Calculus::ito, Noise::scalar);
    GeometricBrownianMotion strat({0.4, -0.3}, {0.6, 0.9}, Calculus::stratonovich, Noise::scalar);
    strong_order(ito, "euler", y0, bm, "GBM scalar Ito", 0.5);
    strong_order(ito, "milstein", y0, bm, "GBM scalar Ito", 1.0);
    strong_order(strat, "heun", y0, bm, "GBM scalar Stratonovich", 1.0);
    strong_order(strat, "reversible_heun", y0, bm, "GBM scalar Stratonovich", 1.0);
}

TEST_CASE("strong order with additive noise and a linear drift whose solution is a function of W_T",
          "[sde][solvers][convergence]") {
    BrownianOptions bo;
    bo.levy_area = true;
    BrownianPath bm(0.0, 1.0, kPaths * 3, 13, bo);
    Tensor y0 = y0_tensor(kPaths, {1.0, -0.5});
    ExpAdditive sde({0.7, 1.3}, 3, {0.8, 0.3, -0.2, 0.1, 0.5, 0.7});
    // The exact solution depends on W_T only, so the space-time Levy area H of each step must drop out:
    // a Stratonovich scheme's H-errors of its drift (-theta b h H) and its noise (b' h H = -theta b h H
    // with the sign reversed) cancel, and what is left is the deterministic O(h^3) local error: order 2.
    // Euler evaluates both at the start and keeps an O(h dW) error: order 1. SRA1: 2 (f'' = 0).
    const char* label = "exp additive (d=2, m=3)";
    strong_order(sde, "srk", y0, bm, label, 2.0);
    strong_order(sde, "euler", y0, bm, label, 1.0);
    strong_order(sde, "heun", y0, bm, label, 2.0);
    strong_order(sde, "midpoint", y0, bm, label, 2.0);
    strong_order(sde, "reversible_heun", y0, bm, label, 2.0);
}

TEST_CASE("strong order with additive noise and a nonlinear drift: srk 1.5, the others 1.0",
          "[sde][solvers][convergence]") {
    BrownianOptions bo;
    bo.levy_area = true;
    BrownianPath bm(0.0, 1.0, kPaths * 2, 15, bo);
    // No closed form: the reference is srk with dt = 2^-14 on the same path (its error, ~2^-21 C, is
    // < 1% of the finest error below).
    auto reference = [&](SDE& sde, const Tensor& y0) {
        SolveOptions ref_opt;
        ref_opt.dt = std::ldexp(1.0, -14);
        return solve_to_end(sde, "srk", y0, bm, ref_opt);
    };
    {
        Tensor y0 = y0_tensor(kPaths, {0.5, -1.2});
        SineAdditive sde(2, 2, {0.6, 0.3, -0.2, 0.8});
        Tensor ref = reference(sde, y0);
        const char* label = "sine additive (d=2, m=2)";
        // The f'' g^2 term that limits SRA1 to 1.5 is small for sin: at these steps the h^2 terms still
        // dominate (slope ~1.7), so only "at least 1.5" is checked here; the double well shows 1.5.
        strong_order(sde, "srk", y0, bm, ref, label, 1.5, true);
        strong_order(sde, "euler", y0, bm, ref, label, 1.0);
        strong_order(sde, "heun", y0, bm, ref, label, 1.0);
        strong_order(sde, "midpoint", y0, bm, ref, label, 1.0);
        strong_order(sde, "reversible_heun", y0, bm, ref, label, 1.0);
    }
    {
        Tensor y0 = y0_tensor(kPaths, {0.5, -1.2});
        DoubleWellAdditive sde(2, 2, {0.6, 0.3, -0.2, 0.8});
        Tensor ref = reference(sde, y0);
        const char* label = "double well additive (d=2, m=2)";
        strong_order(sde, "srk", y0, bm, ref, label, 1.5);
        strong_order(sde, "euler", y0, bm, ref, label, 1.0);
        strong_order(sde, "heun", y0, bm, ref, label, 1.0);
        // reversible_heun is left out here: f' down to -11 excites its parasitic mode (dt = 2^-4 diverges,
        // slope ~1.4 over 2^-8..2^-13); see docs/solvers.md and the sde_convergence experiment.
    }
}

TEST_CASE("heun is exact on the KP additive SDE (and euler is not)", "[sde][solvers]") {
    BrownianOptions bo;
    bo.levy_area = true;
    BrownianPath bm(0.0, 1.0, 64 * 3, 16, bo);
    Tensor y0 = y0_tensor(64, {1.0, -0.5});
    KPAdditive sde(2, 3, {0.8, 0.3, -0.2, 0.1, 0.5, 0.7});
    Tensor exact = sde.exact(1.0, y0, w_at_1(bm, 64));
    SolveOptions opt;
    opt.dt = 1.0 / 16;
    // The trapezoidal step maps y to ((1 + t) y + B dW) / (1 + t + h): the exact transition.
    CHECK(mean_abs_diff(solve_to_end(sde, "heun", y0, bm, opt), exact) < 1e-14);
    CHECK(mean_abs_diff(solve_to_end(sde, "euler", y0, bm, opt), exact) > 1e-4);
}

TEST_CASE("strong order with general (commuting) noise: euler 0.5, heun 1.0", "[sde][solvers][convergence]") {
    BrownianPath bm(0.0, 1.0, kPaths * 2, 14);
    Tensor y0 = y0_tensor(kPaths, {1.0, 0.5});
    CommutingLinear ito({0.2, 0.1}, {0.5, 0.2}, {0.3, -0.25}, Calculus::ito);
    CommutingLinear strat({0.2, 0.1}, {0.5, 0.2}, {0.3, -0.25}, Calculus::stratonovich);
    strong_order(ito, "euler", y0, bm, "commuting linear general Ito", 0.5);
    strong_order(strat, "heun", y0, bm, "commuting linear general Strat", 1.0);
}

TEST_CASE("GBM mean and variance at T match the closed form (weak check)", "[sde][solvers][weak]") {
    const std::int64_t n = 4000;
    BrownianPath bm(0.0, 1.0, n, 21);
    Tensor y0 = y0_tensor(n, {1.0});
    GeometricBrownianMotion ito({0.5}, {0.4}, Calculus::ito);
    GeometricBrownianMotion strat({0.5}, {0.4}, Calculus::stratonovich);
    struct Case {
        SDE* sde;
        const char* solver;
    };
    for (Case c : {Case{&ito, "euler"}, Case{&ito, "milstein"}, Case{&strat, "heun"},
                   Case{&strat, "reversible_heun"}}) {
        SolveOptions opt;
        opt.dt = 1.0 / 64;
        Tensor y = solve_to_end(*c.sde, c.solver, y0, bm, opt);
        double m1 = 0, m2 = 0;
        for (std::int64_t i = 0; i < n; ++i) m1 += y.flat(i) / n;
        for (std::int64_t i = 0; i < n; ++i) m2 += (y.flat(i) - m1) * (y.flat(i) - m1) / (n - 1);
        double m4 = 0;
        for (std::int64_t i = 0; i < n; ++i) m4 += std::pow(y.flat(i) - m1, 4) / n;
        const double mean_exact = ito.mean(1.0, 1.0, 0), var_exact = ito.variance(1.0, 1.0, 0);
        const double se_mean = std::sqrt(m2 / n), se_var = std::sqrt((m4 - m2 * m2) / n);
        INFO(fmt::format(
            "{}: mean {:.5f} (exact {:.5f}, se {:.5f}), variance {:.5f} (exact {:.5f}, se {:.5f})", c.solver,
            m1, mean_exact, se_mean, m2, var_exact, se_var));
        CHECK(std::abs(m1 - mean_exact) < 4 * se_mean);
        CHECK(std::abs(m2 - var_exact) < 4 * se_var);
    }
}

TEST_CASE("adaptive steps reach the exact solution and tighten with rtol", "[sde][solvers][adaptive]") {
    const std::int64_t n = 50;
    BrownianPath bm(0.0, 1.0, n * 2, 31);
    Tensor y0 = y0_tensor(n, {1.0, 0.8});
    GeometricBrownianMotion strat({0.4, -0.3}, {0.6, 0.9}, Calculus::stratonovich);
    std::vector<double> wv(static_cast<std::size_t>(bm.size()));
    bm.value(1.0, wv);
    Tensor exact = strat.exact(1.0, y0, Tensor::from_vector(wv, Shape{n, 2}, DType::f64));
    double prev_err = 1e300;
    std::int64_t prev_steps = 0;
    for (double rtol : {1e-2, 1e-3, 1e-4}) {
        SolveOptions opt;
        opt.adaptive = true;
        opt.rtol = rtol;
        opt.atol = rtol * 1e-2;
        opt.dt = 0.1;
        SolveStats st;
        Tensor y = solve_to_end(strat, "heun", y0, bm, opt, &st);
        const double err = mean_abs_diff(y, exact);
        if (std::getenv("SDEUQ_VERBOSE"))
            std::printf("adaptive heun rtol %.0e: mean error %.3g, %lld steps, %lld rejected, %lld forced\n",
                        rtol, err, static_cast<long long>(st.steps), static_cast<long long>(st.rejected),
                        static_cast<long long>(st.forced_accepts));
        INFO(fmt::format("rtol {}: error {}, steps {}, rejected {}", rtol, err, st.steps, st.rejected));
        CHECK(err < prev_err);
        CHECK(err < 20 * rtol);
        CHECK(st.steps > prev_steps);
        CHECK(st.forced_accepts == 0);
        CHECK(st.solver_steps == 3 * (st.steps + st.rejected));
        prev_err = err;
        prev_steps = st.steps;
    }
}

TEST_CASE("adaptive steps at dt_min are accepted and counted", "[sde][solvers][adaptive]") {
    BrownianPath bm(0.0, 1.0, 4, 32);
    Tensor y0 = y0_tensor(2, {1.0, 0.8});
    GeometricBrownianMotion strat({0.4, -0.3}, {0.6, 0.9}, Calculus::stratonovich);
    SolveOptions opt;
    opt.adaptive = true;
    opt.rtol = 1e-12;
    opt.atol = 1e-14;
    opt.dt_min = 1.0 / 64;
    opt.dt = 0.25;
    SolveStats st;
    solve_to_end(strat, "heun", y0, bm, opt, &st);
    CHECK(st.steps == 64);
    CHECK(st.forced_accepts == 64);
}

TEST_CASE("fixed steps land exactly on the output times, aligned to t0 + k dt", "[sde][solvers]") {
    BrownianPath bm(0.0, 1.0, 2, 41);
    GeometricBrownianMotion ito({0.4}, {0.6}, Calculus::ito);
    Tensor y0 = y0_tensor(2, {1.0});
    auto solver = make_solver("euler");
    SolveOptions opt;
    opt.dt = 0.25;
    const double ts[4] = {0.0, 0.3, 0.5, 1.0};
    ForwardResult r = integrate(ito, *solver, Var(y0), ts, bm, opt, false, nullptr);
    const std::vector<double> expect = {0.0, 0.25, 0.3, 0.5, 0.75, 1.0};
    REQUIRE(r.step_times.size() == expect.size());
    for (std::size_t i = 0; i < expect.size(); ++i) CHECK(r.step_times[i] == Approx(expect[i]).margin(1e-15));
    CHECK(r.stacked.shape() == Shape{4, 2, 1});
    CHECK(r.states.size() == 4);
    CHECK(r.states[0].flat(0) == 1.0);
    reset_tape();
}

TEST_CASE("unrecorded solves use memory independent of the number of steps", "[sde][solvers]") {
    BrownianPath bm(0.0, 1.0, 64, 42);
    GeometricBrownianMotion strat({0.4, -0.3}, {0.6, 0.9}, Calculus::stratonovich);
    Tensor y0 = y0_tensor(32, {1.0, 0.8});
    auto solver = make_solver("reversible_heun");
    const double ts[2] = {0.0, 1.0};
    std::size_t used[2];
    int j = 0;
    for (double dt : {1.0 / 16, 1.0 / 1024}) {
        reset_tape();
        SolveOptions opt;
        opt.dt = dt;
        integrate(strat, *solver, Var(y0), ts, bm, opt, false, nullptr);
        used[j++] = current_tape().arena().bytes_in_use();
    }
    CHECK(used[0] == used[1]);
    CHECK(current_tape().size() == 0);
    reset_tape();
}

TEST_CASE("backprop gradients through every solver match finite differences", "[sde][solvers][grad]") {
    struct Case {
        const char* solver;
        Calculus calculus;
        Noise noise;
    };
    const Case cases[] = {
        {"euler", Calculus::ito, Noise::diagonal},
        {"milstein", Calculus::ito, Noise::diagonal},
        {"milstein", Calculus::stratonovich, Noise::diagonal},
        {"heun", Calculus::stratonovich, Noise::diagonal},
        {"midpoint", Calculus::stratonovich, Noise::diagonal},
        {"reversible_heun", Calculus::stratonovich, Noise::diagonal},
        {"srk", Calculus::ito, Noise::additive},
        {"reversible_heun", Calculus::stratonovich, Noise::additive},
    };
    for (const Case& c : cases) {
        TinyNeuralSDE sde(c.calculus, c.noise);
        const std::int64_t batch = 3, m = sde.brownian_dim(2);
        BrownianOptions bo;
        bo.levy_area = c.noise == Noise::additive;
        BrownianPath bm(0.0, 1.0, batch * m, 51, bo);
        SolveOptions opt;
        opt.solver = c.solver;
        opt.dt = 0.1;
        const std::vector<double> ts = {0.0, 0.45, 1.0};
        Generator gen(5, 0);
        Tensor y0 = randn(Shape{batch, 2}, gen, DType::f64, 0.0, 0.5);
        GradcheckOptions go;
        go.params = sde.parameters();
        auto r = check_gradients(
            fmt::format("sdeint({}, {})", c.solver, calculus_name(c.calculus)),
            [&](std::span<const Var> x) { return sdeint(sde, x[0], ts, bm, opt); }, {y0}, go);
        INFO(r.message);
        CHECK(r.ok);
    }
    reset_tape();
}

TEST_CASE("backprop gradients accumulate into Parameter::grad on the root tape", "[sde][solvers][grad]") {
    TinyNeuralSDE sde(Calculus::stratonovich, Noise::diagonal);
    BrownianPath bm(0.0, 1.0, 4, 52);
    SolveOptions opt;
    opt.solver = "heun";
    opt.dt = 0.125;
    const double ts[2] = {0.0, 1.0};
    for (auto* p : sde.parameters()) p->zero_grad();
    Var y0 = leaf(y0_tensor(2, {0.3, -0.2}));
    Var out = sdeint(sde, y0, ts, bm, opt);
    backward(sum(out));
    double norm = 0;
    for (auto* p : sde.parameters())
        for (std::int64_t i = 0; i < p->grad().numel(); ++i) norm += std::abs(p->grad().flat(i));
    CHECK(norm > 0);
    CHECK(std::abs(y0.grad().flat(0)) > 0);
    reset_tape();
}

TEST_CASE("bad inputs raise errors that name the solver, noise, calculus and shapes",
          "[sde][solvers][errors]") {
    GeometricBrownianMotion strat({0.4, -0.3}, {0.6, 0.9}, Calculus::stratonovich);
    GeometricBrownianMotion ito({0.4, -0.3}, {0.6, 0.9}, Calculus::ito);
    KPAdditive add(2, 3, {0.8, 0.3, -0.2, 0.1, 0.5, 0.7});
    BrownianPath bm(0.0, 1.0, 8, 61);
    Tensor y0 = y0_tensor(4, {1.0, 0.8});
    const std::vector<double> ts = {0.0, 1.0};
    SolveOptions opt;

    std::string e = error_of([&] { make_solver("rk4"); });
    CHECK_THAT(e, Catch::Contains("rk4") && Catch::Contains("euler") && Catch::Contains("reversible_heun"));
    CHECK_THROWS_AS(make_solver("rk4"), UsageError);

    opt.estimator = "magic";
    e = error_of([&] { sdeint(ito, Var(y0), ts, bm, opt); });
    CHECK_THAT(e, Catch::Contains("magic") && Catch::Contains("backprop"));
    opt.estimator = "backprop";

    opt.solver = "euler";
    e = error_of([&] { sdeint(strat, Var(y0), ts, bm, opt); });
    CHECK_THAT(e, Catch::Contains("euler") && Catch::Contains("diagonal") && Catch::Contains("stratonovich"));
    CHECK_THROWS_AS(sdeint(strat, Var(y0), ts, bm, opt), UsageError);

    opt.solver = "heun";
    CHECK_THROWS_AS(sdeint(ito, Var(y0), ts, bm, opt), UsageError);
    opt.solver = "milstein";
    CHECK_THROWS_AS(sdeint(add, Var(y0), ts, BrownianPath(0.0, 1.0, 12, 1), opt), UsageError);

    opt.solver = "euler";
    e = error_of([&] { sdeint(ito, Var(Tensor::zeros(Shape{8}, DType::f64)), ts, bm, opt); });
    CHECK_THAT(e, Catch::Contains("euler") && Catch::Contains("[8]"));
    CHECK_THROWS_AS(sdeint(ito, Var(Tensor::zeros(Shape{8}, DType::f64)), ts, bm, opt), ShapeError);

    e = error_of([&] { sdeint(ito, Var(y0_tensor(3, {1.0, 0.8})), ts, bm, opt); });
    CHECK_THAT(e, Catch::Contains("8 coordinates") && Catch::Contains("[3, 2]"));
    CHECK_THROWS_AS(sdeint(ito, Var(y0_tensor(3, {1.0, 0.8})), ts, bm, opt), ShapeError);

    const std::vector<double> bad_order = {0.0, 0.5, 0.5};
    CHECK_THROWS_AS(sdeint(ito, Var(y0), bad_order, bm, opt), UsageError);
    const std::vector<double> outside = {0.0, 1.5};
    e = error_of([&] { sdeint(ito, Var(y0), outside, bm, opt); });
    CHECK_THAT(e, Catch::Contains("1.5") && Catch::Contains("outside"));
    const std::vector<double> empty;
    CHECK_THROWS_AS(sdeint(ito, Var(y0), empty, bm, opt), UsageError);
    opt.dt = -0.1;
    CHECK_THROWS_AS(sdeint(ito, Var(y0), ts, bm, opt), UsageError);
    opt.dt = 0.1;

    opt.solver = "srk";
    BrownianPath no_levy(0.0, 1.0, 12, 62);
    e = error_of([&] { sdeint(add, Var(y0), ts, no_levy, opt); });
    CHECK_THAT(e, Catch::Contains("srk") && Catch::Contains("Levy"));
    reset_tape();
}

TEST_CASE("solver table: names, support and strong orders", "[sde][solvers]") {
    for (auto& name : solver_names()) CHECK(make_solver(name)->name() == name);
    CHECK(make_solver("euler")->strong_order(Noise::diagonal) == 0.5);
    CHECK(make_solver("euler")->strong_order(Noise::additive) == 1.0);
    CHECK(make_solver("milstein")->strong_order(Noise::scalar) == 1.0);
    CHECK(make_solver("srk")->strong_order(Noise::additive) == 1.5);
    CHECK(make_solver("srk")->needs_levy_area());
    CHECK(make_solver("heun")->strong_order(Noise::general) == 0.5);
    CHECK_FALSE(make_solver("euler")->supports(Noise::diagonal, Calculus::stratonovich));
    CHECK(make_solver("euler")->supports(Noise::additive, Calculus::stratonovich));
    CHECK_FALSE(make_solver("milstein")->supports(Noise::general, Calculus::ito));
    CHECK_FALSE(make_solver("srk")->supports(Noise::diagonal, Calculus::ito));
    auto names = estimator_names();
    for (const char* builtin : {"backprop", "adjoint", "reversible_heun"})
        CHECK(std::find(names.begin(), names.end(), builtin) != names.end());
}
