// The KL path integral of sde/logqp.hpp on two Ornstein-Uhlenbeck processes, whose KL has a closed form:
// the three estimators' values and gradients have the expectations of the closed form, and the STL
// gradient vanishes on every path at the optimum.
#include <catch2/catch.hpp>
#include <cmath>
#include <fmt/format.h>

#include "sde/adjoint.hpp"
#include "sde/logqp.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;

namespace {

// Posterior dY = (-theta1 Y + m) dt + sigma dW, prior dY = -theta2 Y dt + sigma dW (d = 1). theta1 and
// m are parameters of shape [batch, 1], one copy per path, so that their gradients are per path.
class OUPair : public PosteriorPriorSDE {
public:
    OUPair(std::int64_t batch, double theta1, double m, double theta2, double sigma,
           Calculus calc = Calculus::ito)
        : theta1_("theta1", Tensor::full({batch, 1}, theta1, DType::f64)),
          m_("m", Tensor::full({batch, 1}, m, DType::f64)),
          theta2_(Tensor::full({batch, 1}, theta2, DType::f64)),
          sigma_(Tensor::full({batch, 1}, sigma, DType::f64)),
          calc_(calc) {}
    Calculus calculus() const override { return calc_; }
    Var f(double, const Var& y) override { return -(theta1_.var() * y) + m_.var(); }
    Var h(double, const Var& y) override { return -(Var(theta2_) * y); }
    Var g(double, const Var&) override { return Var(sigma_); }
    std::vector<Parameter*> parameters() override { return {&theta1_, &m_}; }
    Parameter theta1_, m_;

private:
    Tensor theta2_, sigma_;
    Calculus calc_;
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
PathGrads logqp_grads(OUPair& sde, std::int64_t batch, double dt, KLEstimator est) {
    BrownianPath bm(0.0, kT, batch, 4, BrownianOptions{dt, 0.0, false});
    SolveOptions opt;
    opt.solver = "euler";
    opt.dt = dt;
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

TEST_CASE("logqp plain through the stochastic adjoint: augmented state, gradients as backprop", "[logqp]") {
    register_adjoint_estimators();
    const double th1 = 1.0, m = 0.8, th2 = 0.3, sigma = 0.7;
    const std::int64_t batch = 8;
    OUPair sde(batch, th1, m, th2, sigma, Calculus::stratonovich);
    LogqpAugmentedSDE aug(sde);
    BrownianPath bm(0.0, kT, batch, 5, BrownianOptions{1e-3, 0.0, false});
    std::vector<double> ts{0.0, 0.5, kT};
    std::vector<double> grads[2];
    double values[2];
    int k = 0;
    for (const char* est : {"backprop", "adjoint"}) {
        SolveOptions opt;
        opt.solver = "midpoint";
        opt.dt = 1e-3;
        opt.estimator = est;
        sde.theta1_.zero_grad();
        sde.m_.zero_grad();
        LogqpResult r;
        if (std::string(est) == "backprop") {  // the same augmented system, through backprop
            std::vector<double> z0;
            for (std::int64_t b = 0; b < batch; ++b) z0.insert(z0.end(), {kY0, 0.0});
            Var z = sdeint(aug, Var(Tensor::from_vector(z0, {batch, 2}, DType::f64)), ts, bm, opt);
            r = {slice(z, 2, 0, 1), reshape(slice(z, 2, 1, 2), Shape{3, batch})};
        } else {
            r = sdeint_logqp(sde, Var(Tensor::full({batch, 1}, kY0, DType::f64)), ts, bm, opt,
                             KLEstimator::plain);
        }
        Var loss = sum(r.logqp) + sum(r.ys * r.ys);
        values[k] = loss.item();
        backward(loss);
        grads[k] = sde.theta1_.grad().to_vector();
        auto gm = sde.m_.grad().to_vector();
        grads[k].insert(grads[k].end(), gm.begin(), gm.end());
        reset_tape();
        ++k;
    }
    CHECK(values[1] == Approx(values[0]).epsilon(1e-12));
    double num = 0, den = 0;
    for (std::size_t i = 0; i < grads[0].size(); ++i) {
        num += (grads[1][i] - grads[0][i]) * (grads[1][i] - grads[0][i]);
        den += grads[0][i] * grads[0][i];
    }
    CHECK(std::sqrt(num / den) < 1e-2);
    // Its KL estimate agrees with the closed form too.
    OUPair big(2000, th1, m, th2, sigma, Calculus::stratonovich);
    Stats s = stats_of(logqp_values(big, 2000, 1e-2, KLEstimator::plain, "adjoint", "midpoint"));
    const double kl = ou_kl(th1, m, th2, sigma, kY0, kT);
    CHECK(std::abs(s.mean - kl) < 4 * s.se + 0.01 * kl);
}

TEST_CASE("logqp rejects KL estimators that need backprop when another gradient estimator is asked for",
          "[logqp]") {
    register_adjoint_estimators();
    OUPair sde(2, 1.0, 0.0, 1.0, 1.0, Calculus::stratonovich);
    BrownianPath bm(0.0, 1.0, 2, 1);
    SolveOptions opt;
    opt.solver = "midpoint";
    opt.estimator = "adjoint";
    std::vector<double> ts{0.0, 1.0};
    CHECK_THROWS_WITH(
        sdeint_logqp(sde, Var(Tensor::zeros({2, 1}, DType::f64)), ts, bm, opt, KLEstimator::stl),
        Catch::Contains("stl") && Catch::Contains("backprop"));
}
