// The exact-derivative Milstein scheme ("milstein_exact", sde/solvers.cpp): (g . grad) g from the engine's
// derivatives (sde/ito_correction.hpp). Its strong order measured on GBM (closed form; diagonal and scalar
// noise, Ito and Stratonovich) and on a nonlinear SDE with a coupled scalar-noise diffusion (where the
// term is a Jacobian-vector product; fine reference solve), beside the derivative-free "milstein";
// backprop through it against the gradient checker (the term's own derivatives are on the tape); the
// recorded and unrecorded solves agree.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <string>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/random.hpp"
#include "sde/integrate.hpp"
#include "sde/test_sdes.hpp"
#include "tests/sde_convergence_util.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;
using sdeuq::sde::testing::GeometricBrownianMotion;
using namespace sdeuq::sde::test_util;

namespace {

SolveOptions dt_options(double dt) {
    SolveOptions opt;
    opt.dt = dt;
    return opt;
}

// Errors at dt = 2^-4 .. 2^-9 against `reference` and their slope (printed with SDEUQ_VERBOSE=1).
double order(SDE& sde, const char* solver, const Tensor& y0, const BrownianPath& bm, const Tensor& reference,
             const std::string& label, std::vector<double>* errs_out = nullptr) {
    std::vector<double> dts, errs;
    for (int k = 4; k <= 9; ++k) {
        dts.push_back(std::ldexp(1.0, -k));
        errs.push_back(mean_abs_diff(solve_to_end(sde, solver, y0, bm, dt_options(dts.back())), reference));
    }
    const SlopeFit fit = fit_log_slope(dts, errs);
    const double p = fit.slope, se = fit.se;
    if (std::getenv("SDEUQ_VERBOSE"))
        std::printf("strong order  %-34s %-16s slope %.3f +- %.3f  err(2^-4) %.3g  err(2^-9) %.3g\n",
                    label.c_str(), solver, p, se, errs.front(), errs.back());
    INFO(fmt::format("{} / {}: errors {} at dt = 2^-4 .. 2^-9, slope {:.3f}", label, solver, fmt::join(errs, ", "),
                     p));
    CHECK(std::abs(p - 1.0) < 0.1);
    if (errs_out) *errs_out = errs;
    return p;
}

constexpr std::int64_t kPaths = 500;

// A nonlinear SDE, d = 2: f = -y + 0.5 sin(y), and
//   diagonal noise: g_i = 0.3 + 0.2 tanh(c_i y_i + b_i)
//   scalar noise:   g   = 0.3 + 0.2 tanh(W y + b)  (coupled: (g . grad) g = (dg/dy) g is a JVP, not the
//                                                  VJP g^T dg/dy)
class NonlinearSDE final : public SDE {
public:
    NonlinearSDE(Calculus c, Noise n) : calculus_(c), noise_(n) {
        Generator gen(17, 0);
        w_ = Parameter("w", randn(Shape{2, 2}, gen, DType::f64, 0.0, 0.8));
        c_ = Parameter("c", randn(Shape{2}, gen, DType::f64, 1.0, 0.3));
        b_ = Parameter("b", randn(Shape{2}, gen, DType::f64, 0.0, 0.3));
        if (noise_ != Noise::diagonal) add_parameter(w_);
        if (noise_ == Noise::diagonal) add_parameter(c_);
        add_parameter(b_);
    }
    Noise noise() const override { return noise_; }
    Calculus calculus() const override { return calculus_; }
    Var f(double, const Var& y) override { return sin(y) * 0.5 - y; }
    Var g(double, const Var& y) override {
        if (noise_ == Noise::diagonal) return tanh(y * c_.var() + b_.var()) * 0.2 + 0.3;
        Var b = b_.var();
        return tanh(linear(y, w_.var(), &b)) * 0.2 + 0.3;
    }

private:
    Calculus calculus_;
    Noise noise_;
    Parameter w_, c_, b_;
};

}  // namespace

TEST_CASE("milstein_exact: strong order 1 on GBM (diagonal and scalar noise, Ito and Stratonovich)",
          "[sde][solvers][convergence][milstein_exact]") {
    for (Noise noise : {Noise::diagonal, Noise::scalar}) {
        BrownianPath bm(0.0, 1.0, kPaths * (noise == Noise::diagonal ? 2 : 1), noise == Noise::diagonal ? 11 : 12);
        Tensor y0 = y0_tensor(kPaths, {1.0, 0.8});
        for (Calculus c : {Calculus::ito, Calculus::stratonovich}) {
            GeometricBrownianMotion gbm({0.4, -0.3}, {0.6, 0.9}, c, noise);
            const Tensor exact = gbm.exact(1.0, y0, w_at_1(bm, kPaths));
            const std::string label = fmt::format("GBM {} {}", noise_name(noise), calculus_name(c));
            std::vector<double> e_exact, e_free;
            const double p = order(gbm, "milstein_exact", y0, bm, exact, label, &e_exact);
            const double p_free = order(gbm, "milstein", y0, bm, exact, label, &e_free);
            WARN(fmt::format("{}: milstein_exact errors {:.3e} (slope {:.3f}); derivative-free milstein {:.3e} "
                             "(slope {:.3f})",
                             label, fmt::join(e_exact, " "), p, fmt::join(e_free, " "), p_free));
        }
    }
}

TEST_CASE("milstein_exact: strong order 1 on a nonlinear SDE, including a coupled scalar-noise diffusion",
          "[sde][solvers][convergence][milstein_exact]") {
    // Reference on the same paths: the derivative-free milstein (Ito) or midpoint (Stratonovich) at 2^-14, a
    // different scheme, so that a wrong derivative term (a VJP where the JVP is needed) would show as a
    // slope of 0.5 or a plateau.
    for (Noise noise : {Noise::diagonal, Noise::scalar}) {
        BrownianPath bm(0.0, 1.0, kPaths * (noise == Noise::diagonal ? 2 : 1), noise == Noise::diagonal ? 13 : 14);
        Tensor y0 = y0_tensor(kPaths, {0.5, -0.4});
        for (Calculus c : {Calculus::ito, Calculus::stratonovich}) {
            NonlinearSDE sde(c, noise);
            const Tensor ref =
                solve_to_end(sde, c == Calculus::ito ? "milstein" : "midpoint", y0, bm,
                             dt_options(std::ldexp(1.0, -14)));
            const std::string label = fmt::format("nonlinear {} {}", noise_name(noise), calculus_name(c));
            std::vector<double> errs;
            const double p = order(sde, "milstein_exact", y0, bm, ref, label, &errs);
            WARN(fmt::format("{}: milstein_exact errors {:.3e}, slope {:.3f}", label, fmt::join(errs, " "), p));
        }
    }
}

TEST_CASE("milstein_exact: backprop through the solver passes the gradient checker; recorded and "
          "unrecorded solves agree",
          "[sde][solvers][grad][milstein_exact]") {
    const std::int64_t batch = 3;
    const std::vector<double> ts{0.0, 0.5, 1.0};
    for (Noise noise : {Noise::diagonal, Noise::scalar}) {
        for (Calculus c : {Calculus::ito, Calculus::stratonovich}) {
            NonlinearSDE sde(c, noise);
            BrownianPath bm(0.0, 1.0, batch * sde.brownian_dim(2), 15);
            SolveOptions opt;
            opt.solver = "milstein_exact";
            opt.dt = 1.0 / 16;
            Tensor y0 = y0_tensor(batch, {0.5, -0.4});
            const std::string name = fmt::format("milstein_exact {} {}", noise_name(noise), calculus_name(c));
            GradcheckOptions go;
            go.params = sde.parameters();
            auto r = check_gradients(name, [&](std::span<const Var> x) { return sdeint(sde, x[0], ts, bm, opt); },
                                     {y0}, go);
            INFO(r.message);
            CHECK(r.ok);
            reset_tape();
            // The recorded solve (derivative term with create_graph) and the unrecorded one (the term's value
            // on a nested tape) compute the same values.
            Tensor recorded = sdeint(sde, leaf(y0), ts, bm, opt).value().clone();
            reset_tape();
            Tensor plain;
            {
                NoGradScope ng;
                plain = sdeint(sde, Var(y0), ts, bm, opt).value().clone();
            }
            reset_tape();
            CHECK(mean_abs_diff(recorded, plain) < 1e-15);
            // A constant y0 with parameters on the tape: the parameters' gradients are those of a leaf y0.
            std::vector<double> with_leaf, with_const;
            for (bool leaf_y0 : {true, false}) {
                for (Parameter* p : sde.parameters()) p->zero_grad();
                backward(sum(sdeint(sde, leaf_y0 ? leaf(y0) : Var(y0), ts, bm, opt)));
                auto& out = leaf_y0 ? with_leaf : with_const;
                for (Parameter* p : sde.parameters())
                    for (double v : p->grad().to_vector()) out.push_back(v);
                reset_tape();
            }
            CHECK(with_leaf == with_const);
        }
    }
}

TEST_CASE("milstein_exact is in the solver table and rejects additive and general noise",
          "[sde][solvers][milstein_exact]") {
    const SolverInfo* s = find_solver("milstein_exact");
    REQUIRE(s != nullptr);
    CHECK(s->kind == SolverKind::milstein_exact);
    CHECK(s->strong_order(Noise::diagonal) == 1.0);
    CHECK(s->strong_order(Noise::scalar) == 1.0);
    CHECK(s->supports(Noise::diagonal, Calculus::ito));
    CHECK(s->supports(Noise::scalar, Calculus::stratonovich));
    CHECK_FALSE(s->supports(Noise::additive, Calculus::ito));
    CHECK_FALSE(s->supports(Noise::general, Calculus::ito));
    testing::KPAdditive kp(1, 1, {0.5});
    BrownianPath bm(0.0, 1.0, 1, 3);
    SolveOptions opt;
    opt.solver = "milstein_exact";
    const double ts[2] = {0.0, 1.0};
    CHECK_THROWS_WITH(sdeint(kp, Var(Tensor::zeros({1, 1}, DType::f64)), ts, bm, opt),
                      Catch::Contains("milstein_exact"));
    reset_tape();
}
