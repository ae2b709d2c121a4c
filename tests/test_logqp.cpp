// The KL path integral of sde/logqp.hpp on two Ornstein-Uhlenbeck processes, whose KL has a closed form:
// the three estimators' values and gradients have the expectations of the closed form, and the STL
// gradient vanishes on every path at the optimum.
#include <catch2/catch.hpp>
#include <cmath>
#include <fmt/format.h>

#include "sde/adjoint.hpp"
#include "sde/integrate.hpp"
#include "sde/logqp.hpp"
#include "tests/sde_convergence_util.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;
using namespace sdeuq::sde::test_util;

namespace {

// Posterior dY = (-theta1 Y + m) dt + sigma dW, prior dY = -theta2 Y dt + sigma dW (d = 1). theta1 and
// m are parameters of shape [batch, 1], one copy per path, so that their gradients are per path.
class OUPair : public PosteriorPriorSDE {
public:
    OUPair(std::int64_t batch, double theta1, double m, double theta2, double sigma,
           Calculus calc = Calculus::ito, double nonlinear = 0.0)
        : theta1_("theta1", Tensor::full({batch, 1}, theta1, DType::f64)),
          m_("m", Tensor::full({batch, 1}, m, DType::f64)),
          theta2_(Tensor::full({batch, 1}, theta2, DType::f64)),
          sigma_(Tensor::full({batch, 1}, sigma, DType::f64)),
          calc_(calc),
          nonlinear_(nonlinear) {
        add_parameter(theta1_);
        add_parameter(m_);
    }
    Calculus calculus() const override { return calc_; }
    // nonlinear != 0 (no closed form; for the adjoint's convergence order): f gains nonlinear * m sin(y)
    // and g becomes sigma (1 + nonlinear cos(y) / 2), a state-dependent diagonal noise.
    Var f(double, const Var& y) override {
        Var lin = -(theta1_.var() * y) + m_.var();
        return nonlinear_ == 0.0 ? lin : lin + m_.var() * sin(y) * nonlinear_;
    }
    Var h(double, const Var& y) override { return -(Var(theta2_) * y); }
    Var g(double, const Var& y) override {
        return nonlinear_ == 0.0 ? Var(sigma_) : Var(sigma_) * (cos(y) * (0.5 * nonlinear_) + 1.0);
    }
    Parameter theta1_, m_;

private:
    Tensor theta2_, sigma_;
    Calculus calc_;
    double nonlinear_;
};

// KL(Q || P) on [0, T] = 1/(2 sigma^2) int_0^T E_Q[(c Y_t + m)^2] dt, c = theta2 - theta1, with the
// posterior moments E Y_t = mu_t = m/theta1 + (y0 - m/theta1) e^{-theta1 t},
// Var Y_t = sigma^2 / (2 theta1) (1 - e^{-2 theta1 t}); composite Simpson in t.
double ou_kl(double theta1, double m, double theta2, double sigma, double y0, double T) {
    const double c = theta2 - theta1;
    auto integrand = [&](double t) {
        const double mu = m / theta1 + (y0 - m / theta1) * std::exp(-theta1 * t);
        const double var = sigma * sigma / (2 * theta1) * (1 - std::exp(-2 * theta1 * t));
        return (c * c * (var + mu * mu) + 2 * c * m * mu + m * m) / (2 * sigma * sigma);
    };
    const int n = 4000;
    const double h = T / n;
    double s = integrand(0) + integrand(T);
    for (int i = 1; i < n; ++i) s += (i % 2 ? 4 : 2) * integrand(i * h);
    return s * h / 3;
}

struct Stats {
    double mean = 0, se = 0, var = 0;
};
Stats stats_of(const std::vector<double>& x) {
    Stats s;
    for (double v : x) s.mean += v;
    s.mean /= static_cast<double>(x.size());
    for (double v : x) s.var += (v - s.mean) * (v - s.mean);
    s.var /= static_cast<double>(x.size() - 1);
    s.se = std::sqrt(s.var / static_cast<double>(x.size()));
    return s;
}

const double kY0 = 0.5, kT = 1.0;

// Per-path logqp at T.
std::vector<double> logqp_values(OUPair& sde, std::int64_t batch, double dt, KLEstimator est,
                                 const std::string& estimator = "backprop",
                                 const std::string& solver = "euler") {
    BrownianPath bm(0.0, kT, batch, 3, BrownianOptions{dt, 0.0, false});
    SolveOptions opt;
    opt.solver = solver;
    opt.dt = dt;
    opt.estimator = estimator;
    std::vector<double> ts{0.0, kT};
    NoGradScope ng;
    LogqpResult r = sdeint_logqp(sde, Var(Tensor::full({batch, 1}, kY0, DType::f64)), ts, bm, opt, est);
    std::vector<double> out;
    for (std::int64_t b = 0; b < batch; ++b) out.push_back(r.logqp.value().at({1, b}));
    reset_tape();
    return out;
}

// Per-path gradients of logqp(T) with respect to theta1 and m.
struct PathGrads {
    std::vector<double> theta1, m;
};
PathGrads logqp_grads(OUPair& sde, std::int64_t batch, double dt, KLEstimator est,
                      const std::string& estimator = "backprop", const std::string& solver = "euler") {
    BrownianPath bm(0.0, kT, batch, 4, BrownianOptions{dt, 0.0, false});
    SolveOptions opt;
    opt.solver = solver;
    opt.dt = dt;
    opt.estimator = estimator;
    std::vector<double> ts{0.0, kT};
    sde.theta1_.zero_grad();
    sde.m_.zero_grad();
    LogqpResult r = sdeint_logqp(sde, Var(Tensor::full({batch, 1}, kY0, DType::f64)), ts, bm, opt, est);
    backward(sum(slice(r.logqp, 0, 1, 2)));
    PathGrads g{sde.theta1_.grad().to_vector(), sde.m_.grad().to_vector()};
    reset_tape();
    return g;
}

}  // namespace

TEST_CASE("logqp of two OU processes: plain, full and stl Monte Carlo means match the closed-form KL",
          "[logqp]") {
    const double th1 = 1.0, m = 0.8, th2 = 0.3, sigma = 0.7;
    const double kl = ou_kl(th1, m, th2, sigma, kY0, kT);
    const std::int64_t batch = 4000;
    OUPair sde(batch, th1, m, th2, sigma);
    for (KLEstimator est : {KLEstimator::plain, KLEstimator::full, KLEstimator::stl}) {
        Stats s = stats_of(logqp_values(sde, batch, 1e-3, est));
        INFO(kl_estimator_name(est) << ": MC " << s.mean << " +- " << s.se << ", closed form " << kl);
        CHECK(std::abs(s.mean - kl) < 4 * s.se + 2e-3 * kl);
    }
    // The full and stl estimators have the same value on every path.
    OUPair small(64, th1, m, th2, sigma);
    auto full = logqp_values(small, 64, 1e-2, KLEstimator::full);
    auto stl = logqp_values(small, 64, 1e-2, KLEstimator::stl);
    for (std::size_t i = 0; i < full.size(); ++i) CHECK(stl[i] == Approx(full[i]).epsilon(1e-14));
}

TEST_CASE("logqp gradients: full and stl have the expectation of plain, which is the closed form's",
          "[logqp]") {
    const double th1 = 1.0, m = 0.8, th2 = 0.3, sigma = 0.7;
    const std::int64_t batch = 2000;
    const double dt = 1e-2;
    OUPair sde(batch, th1, m, th2, sigma);
    PathGrads plain = logqp_grads(sde, batch, dt, KLEstimator::plain);
    PathGrads full = logqp_grads(sde, batch, dt, KLEstimator::full);
    PathGrads stl = logqp_grads(sde, batch, dt, KLEstimator::stl);
    // Closed-form gradients by central differences of the closed form.
    const double e = 1e-5;
    const double d_th1 =
        (ou_kl(th1 + e, m, th2, sigma, kY0, kT) - ou_kl(th1 - e, m, th2, sigma, kY0, kT)) / (2 * e);
    const double d_m =
        (ou_kl(th1, m + e, th2, sigma, kY0, kT) - ou_kl(th1, m - e, th2, sigma, kY0, kT)) / (2 * e);
    auto diff = [](const std::vector<double>& a, const std::vector<double>& b) {
        std::vector<double> d(a.size());
        for (std::size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
        return d;
    };
    for (auto [name, pl, fu, st, exact] :
         {std::tuple{"theta1", &plain.theta1, &full.theta1, &stl.theta1, d_th1},
          std::tuple{"m", &plain.m, &full.m, &stl.m, d_m}}) {
        Stats sp = stats_of(*pl), sf = stats_of(*fu), ss = stats_of(*st);
        Stats dfp = stats_of(diff(*fu, *pl)), dsp = stats_of(diff(*st, *pl));
        WARN(fmt::format(
            "d KL / d {}: closed form {:.4f}; plain {:.4f} +- {:.4f}, full {:.4f} +- {:.4f}, stl {:.4f} "
            "+- {:.4f}",
            name, exact, sp.mean, sp.se, sf.mean, sf.se, ss.mean, ss.se));
        CHECK(std::abs(sp.mean - exact) < 4 * sp.se + 0.02 * std::abs(exact));
        CHECK(std::abs(dfp.mean) < 4 * dfp.se);
        CHECK(std::abs(dsp.mean) < 4 * dsp.se);
    }
}

TEST_CASE(
    "logqp at the optimum (posterior = prior): the stl gradient is zero on every path, the full one "
    "is not",
    "[logqp]") {
    const std::int64_t batch = 500;
    OUPair at(batch, 0.5, 0.0, 0.5, 0.7);
    PathGrads stl = logqp_grads(at, batch, 1e-2, KLEstimator::stl);
    PathGrads full = logqp_grads(at, batch, 1e-2, KLEstimator::full);
    double max_stl = 0;
    for (double v : stl.theta1) max_stl = std::max(max_stl, std::abs(v));
    for (double v : stl.m) max_stl = std::max(max_stl, std::abs(v));
    CHECK(max_stl == 0.0);
    CHECK(stats_of(full.theta1).var > 1e-3);
    CHECK(stats_of(full.m).var > 1e-3);
    // Near the optimum the stl gradient still has a much smaller variance.
    OUPair near(batch, 0.55, 0.05, 0.5, 0.7);
    PathGrads stl_n = logqp_grads(near, batch, 1e-2, KLEstimator::stl);
    PathGrads full_n = logqp_grads(near, batch, 1e-2, KLEstimator::full);
    const double vs = stats_of(stl_n.theta1).var, vf = stats_of(full_n.theta1).var;
    WARN(fmt::format("near the optimum, Var of d logqp / d theta1: stl {:.3e}, full {:.3e}", vs, vf));
    CHECK(vs < 0.1 * vf);
    CHECK(stats_of(stl_n.m).var < 0.1 * stats_of(full_n.m).var);
}

namespace {

// The gradient estimators with the solver each is compared under (reversible_heun: its own solver).
struct EstimatorCase {
    const char* estimator;
    const char* solver;
};
const EstimatorCase kEstimators[] = {
    {"backprop", "heun"}, {"backprop", "midpoint"}, {"adjoint", "midpoint"},
    {"reversible_heun", "reversible_heun"}};
const KLEstimator kKLs[] = {KLEstimator::plain, KLEstimator::full, KLEstimator::stl};

// A loss over both outputs at several times, and its gradient with respect to (theta1, m, y0) per path.
struct LossGrads {
    double loss = 0;
    std::vector<double> g;  // theta1 (batch), m (batch), y0 (batch)
};
// adjoint_tol > 0: the adjoint's backward solve with adaptive steps at rtol = atol = adjoint_tol.
LossGrads loss_grads(OUPair& sde, std::int64_t batch, double dt, KLEstimator kl, const std::string& estimator,
                     const std::string& solver, std::uint64_t seed = 5, double adjoint_tol = 0.0,
                     SolveStats* stats = nullptr, const char* adjoint_solver = "") {
    BrownianPath bm(0.0, kT, batch, seed, BrownianOptions{dt, 0.0, false});
    SolveOptions opt;
    opt.solver = solver;
    opt.dt = dt;
    opt.estimator = estimator;
    opt.adjoint_solver = adjoint_solver;
    if (adjoint_tol > 0) {
        opt.adjoint_adaptive = true;
        opt.adjoint_rtol = opt.adjoint_atol = adjoint_tol;
    }
    std::vector<double> ts{0.0, 0.5, kT};
    sde.theta1_.zero_grad();
    sde.m_.zero_grad();
    std::vector<double> y0v;
    for (std::int64_t b = 0; b < batch; ++b) y0v.push_back(kY0 + 0.1 * static_cast<double>(b % 3));
    Var y0 = leaf(Tensor::from_vector(y0v, {batch, 1}, DType::f64));
    LogqpResult r = sdeint_logqp(sde, y0, ts, bm, opt, kl, stats);
    Var loss = sum(r.logqp * r.logqp) * 0.1 + sum(r.logqp) + sum(r.ys * r.ys);
    LossGrads out;
    out.loss = loss.item();
    backward(loss);
    out.g = sde.theta1_.grad().to_vector();
    for (double v : sde.m_.grad().to_vector()) out.g.push_back(v);
    for (double v : y0.grad().to_vector()) out.g.push_back(v);
    reset_tape();
    return out;
}

// The adjoint's relative gradient error against backprop (both through midpoint, the same path) at
// dt = 0.1 .. 0.0125 for every KL estimator: the values equal, the error's slope in dt between 0.8 and 1.6
// (adaptive: above 0.8), the finest error below 2e-2. adaptive: the backward solve at
// rtol = atol = 0.05 dt, so that both error sources shrink together.
void check_adjoint_error_order(bool adaptive) {
    register_adjoint_estimators();
    const std::int64_t batch = 8;
    OUPair sde(batch, 1.0, 0.8, 0.3, 0.7, Calculus::stratonovich, 0.6);
    for (KLEstimator kl : kKLs) {
        std::vector<double> dts, errs;
        std::string line;
        for (double dt : {0.1, 0.05, 0.025, 0.0125}) {
            const double tol = adaptive ? 0.05 * dt : 0.0;
            SolveStats st;
            LossGrads bp = loss_grads(sde, batch, dt, kl, "backprop", "midpoint");
            LossGrads adj = loss_grads(sde, batch, dt, kl, "adjoint", "midpoint", 5, tol, &st);
            CHECK(adj.loss == bp.loss);
            dts.push_back(dt);
            errs.push_back(rel_error(adj.g, bp.g));
            line += adaptive ? fmt::format(" dt {} (tol {:.2e}): {:.3e};", dt, tol, errs.back())
                             : fmt::format(" dt {}: {:.3e};", dt, errs.back());
        }
        const double slope = fit_log_slope(dts, errs).slope;
        WARN(fmt::format("{}adjoint vs backprop (midpoint), {} KL, relative gradient error:{} slope {:.2f}",
                         adaptive ? "adaptive " : "", kl_estimator_name(kl), line, slope));
        CHECK(slope > 0.8);
        if (!adaptive) CHECK(slope < 1.6);
        CHECK(errs.back() < 2e-2);
    }
}

}  // namespace

TEST_CASE("logqp through reversible Heun: values and gradients of backprop through the same solver, to "
          "round-off, for every KL estimator",
          "[logqp]") {
    register_adjoint_estimators();
    const std::int64_t batch = 6;
    OUPair sde(batch, 1.0, 0.8, 0.3, 0.7, Calculus::stratonovich, 0.6);
    for (KLEstimator kl : kKLs) {
        LossGrads bp = loss_grads(sde, batch, 0.02, kl, "backprop", "reversible_heun");
        LossGrads rh = loss_grads(sde, batch, 0.02, kl, "reversible_heun", "reversible_heun");
        const double e = rel_error(rh.g, bp.g);
        WARN(fmt::format("reversible_heun vs backprop, {} KL: loss {} vs {}, gradient relative error {:.2e}",
                         kl_estimator_name(kl), rh.loss, bp.loss, e));
        CHECK(rh.loss == bp.loss);
        CHECK(e < 1e-11);
    }
}

TEST_CASE("logqp through the stochastic adjoint: the values of backprop, the gradient error falls at order "
          "~1 in dt (4 step sizes), for every KL estimator",
          "[logqp]") {
    check_adjoint_error_order(false);
}

TEST_CASE("logqp gradients of every estimator x KL estimator: mean over paths = d KL / d theta of the closed "
          "form (central differences)",
          "[logqp]") {
    register_adjoint_estimators();
    const double th1 = 1.0, m = 0.8, th2 = 0.3, sigma = 0.7, dt = 1e-2;
    const std::int64_t batch = 2000;
    OUPair sde(batch, th1, m, th2, sigma, Calculus::stratonovich);
    const double e = 1e-5;
    const double d_th1 =
        (ou_kl(th1 + e, m, th2, sigma, kY0, kT) - ou_kl(th1 - e, m, th2, sigma, kY0, kT)) / (2 * e);
    const double d_m =
        (ou_kl(th1, m + e, th2, sigma, kY0, kT) - ou_kl(th1, m - e, th2, sigma, kY0, kT)) / (2 * e);
    for (const EstimatorCase& ec : kEstimators) {
        for (KLEstimator kl : kKLs) {
            PathGrads g = logqp_grads(sde, batch, dt, kl, ec.estimator, ec.solver);
            Stats st = stats_of(g.theta1), sm = stats_of(g.m);
            WARN(fmt::format("{} ({}), {} KL: d/d theta1 {:.4f} +- {:.4f} (closed form {:.4f}), d/d m "
                             "{:.4f} +- {:.4f} (closed form {:.4f})",
                             ec.estimator, ec.solver, kl_estimator_name(kl), st.mean, st.se, d_th1, sm.mean,
                             sm.se, d_m));
            CHECK(std::abs(st.mean - d_th1) < 4 * st.se + 0.02 * std::abs(d_th1));
            CHECK(std::abs(sm.mean - d_m) < 4 * sm.se + 0.02 * std::abs(d_m));
        }
    }
}

TEST_CASE("logqp at and near the optimum, every estimator: the stl gradient is exactly zero at posterior = "
          "prior, and its variance is below full's nearby",
          "[logqp]") {
    register_adjoint_estimators();
    const std::int64_t batch = 400;
    for (const EstimatorCase& ec : kEstimators) {
        OUPair at(batch, 0.5, 0.0, 0.5, 0.7, Calculus::stratonovich);
        PathGrads stl = logqp_grads(at, batch, 1e-2, KLEstimator::stl, ec.estimator, ec.solver);
        PathGrads full = logqp_grads(at, batch, 1e-2, KLEstimator::full, ec.estimator, ec.solver);
        double max_stl = 0;
        for (double v : stl.theta1) max_stl = std::max(max_stl, std::abs(v));
        for (double v : stl.m) max_stl = std::max(max_stl, std::abs(v));
        CHECK(max_stl == 0.0);
        const double vf0 = stats_of(full.theta1).var;
        CHECK(vf0 > 1e-3);
        OUPair near(batch, 0.55, 0.05, 0.5, 0.7, Calculus::stratonovich);
        PathGrads stl_n = logqp_grads(near, batch, 1e-2, KLEstimator::stl, ec.estimator, ec.solver);
        PathGrads full_n = logqp_grads(near, batch, 1e-2, KLEstimator::full, ec.estimator, ec.solver);
        const double vs = stats_of(stl_n.theta1).var, vf = stats_of(full_n.theta1).var;
        const double vsm = stats_of(stl_n.m).var, vfm = stats_of(full_n.m).var;
        WARN(fmt::format("{} ({}): at the optimum max |stl grad| {}, Var full d/d theta1 {:.3e}; near it Var "
                         "d/d theta1 stl {:.3e} full {:.3e}, Var d/d m stl {:.3e} full {:.3e}",
                         ec.estimator, ec.solver, max_stl, vf0, vs, vf, vsm, vfm));
        CHECK(vs < 0.1 * vf);
        CHECK(vsm < 0.1 * vfm);
    }
}

TEST_CASE("logqp with an estimator that has no running-cost support is a UsageError naming it", "[logqp]") {
    struct NoCost : GradientEstimator {
        std::string name() const override { return "no_cost_test"; }
        Var solve(SDE&, const Var& y0, std::span<const double>, const BrownianPath&, const SolveOptions&,
                  SolveStats*) override {
            return y0;
        }
    };
    register_estimator("no_cost_test", [] { return std::make_unique<NoCost>(); });
    OUPair sde(2, 1.0, 0.0, 1.0, 1.0, Calculus::stratonovich);
    BrownianPath bm(0.0, 1.0, 2, 1);
    SolveOptions opt;
    opt.estimator = "no_cost_test";
    std::vector<double> ts{0.0, 1.0};
    CHECK_THROWS_WITH(
        sdeint_logqp(sde, Var(Tensor::zeros({2, 1}, DType::f64)), ts, bm, opt, KLEstimator::stl),
        Catch::Contains("no_cost_test") && Catch::Contains("running cost"));
}

TEST_CASE("logqp through the adjoint with adaptive backward steps: the values of backprop, the gradient "
          "error falls with dt and tolerance, every KL estimator",
          "[logqp]") {
    check_adjoint_error_order(true);
}

TEST_CASE("logqp, adjoint with reversible_heun or milstein backwards: backprop's values, error falls",
          "[logqp]") {
    register_adjoint_estimators();
    const std::int64_t batch = 8;
    OUPair sde(batch, 1.0, 0.8, 0.3, 0.7, Calculus::stratonovich, 0.6);
    for (const char* back : {"reversible_heun", "milstein"}) {
        for (KLEstimator kl : kKLs) {
            std::vector<double> errs;
            for (double dt : {0.05, 0.0125}) {
                LossGrads bp = loss_grads(sde, batch, dt, kl, "backprop", "midpoint");
                LossGrads adj = loss_grads(sde, batch, dt, kl, "adjoint", "midpoint", 5, 0.0, nullptr, back);
                CHECK(adj.loss == bp.loss);
                errs.push_back(rel_error(adj.g, bp.g));
            }
            WARN(fmt::format("adjoint_solver {}, {} KL: relative gradient error vs backprop {:.3e} "
                             "(dt 0.05), {:.3e} (dt 0.0125)",
                             back, kl_estimator_name(kl), errs[0], errs[1]));
            CHECK(errs[1] < errs[0] / 2);
            CHECK(errs[1] < 2e-2);
        }
    }
}

TEST_CASE("logqp through the adjoint with adaptive steps: the values of adaptive backprop, gradients close",
          "[logqp]") {
    const std::int64_t batch = 8;
    OUPair sde(batch, 1.0, 0.8, 0.3, 0.7, Calculus::stratonovich, 0.6);
    BrownianPath bm(0.0, kT, batch, 9, BrownianOptions{0.0, 0.0, false});
    std::vector<double> ts{0.0, 0.5, kT};
    std::vector<double> y0v(static_cast<std::size_t>(batch), kY0);
    std::vector<double> grads[2];
    double values[2];
    SolveStats stats[2];
    int k = 0;
    for (const char* est : {"backprop", "adjoint"}) {
        SolveOptions opt;
        opt.solver = "midpoint";
        opt.estimator = est;
        opt.adaptive = true;
        opt.dt = 0.05;
        opt.rtol = opt.atol = 1e-4;
        sde.theta1_.zero_grad();
        sde.m_.zero_grad();
        Var y0 = Var(Tensor::from_vector(y0v, {batch, 1}, DType::f64));
        LogqpResult r = sdeint_logqp(sde, y0, ts, bm, opt, KLEstimator::stl, &stats[k]);
        Var loss = sum(r.logqp) + sum(r.ys * r.ys);
        values[k] = loss.item();
        backward(loss);
        grads[k] = sde.theta1_.grad().to_vector();
        for (double v : sde.m_.grad().to_vector()) grads[k].push_back(v);
        reset_tape();
        ++k;
    }
    const double e = rel_error(grads[1], grads[0]);
    WARN(fmt::format("adaptive stl KL: {} accepted steps ({} rejected); adjoint vs backprop gradient "
                     "relative "
                     "error {:.2e}",
                     stats[1].steps, stats[1].rejected, e));
    CHECK(stats[1].steps == stats[0].steps);
    CHECK(values[1] == values[0]);
    CHECK(e < 2e-2);
}
