// KL divergence between path measures (the "logqp" term of latent SDEs and SDE-BNNs).
//
// A posterior SDE dY = f(t, Y) dt + g(t, Y) dW and a prior dY = h(t, Y) dt + g(t, Y) dW with the same
// diagonal diffusion g and the same Y_0. With u = (f - h) / g (elementwise), Girsanov's theorem gives
// the log density ratio along a posterior path (Li et al. 2020, "Scalable Gradients for SDEs", §5 Eq. 17;
// Xu et al. 2022, "Infinitely Deep Bayesian Neural Networks with SDEs", AISTATS, §3 Eq. 6):
//     log dQ/dP (Y) = int_t0^t 1/2 |u(s, Y_s)|^2 ds + int_t0^t u(s, Y_s) . dW_s        (Ito integral)
// and KL(Q || P) = E_Q[log dQ/dP] = E int 1/2 |u|^2 ds (the martingale term has mean zero). The two
// drifts differ by the same Ito-Stratonovich correction when g is shared, so u is the same in either
// calculus. Three Monte Carlo estimators of the path integral per sample, all with expectation KL:
//   plain:  sum_n 1/2 |u_n|^2 dt_n
//   full:   sum_n 1/2 |u_n|^2 dt_n + u_n . dW_n
//   stl:    sum_n 1/2 |u_n|^2 dt_n + u~_n . dW_n,   u~ = (f - h) / g evaluated with every parameter of
//           parameters() held constant (PosteriorPriorSDE::u_detached): its value is u_n, and its gradient
//           flows only through the state Y_n (the path's dependence on the parameters), not through the
//           parameters' direct appearance in f, h, g. The drift term 1/2 |u_n|^2 keeps all dependences.
// u_n = u(t_n, Y_n) at the start of the step (the Ito left point). Why stl: d/dtheta of the full estimator
// is the pathwise gradient plus int (du/dtheta) . dW, the score of the path density, whose mean is zero;
// dropping it is "sticking the landing" (Roeder, Wu, Duvenaud 2017) for path measures (Xu et al. 2022 §3).
// At the optimum Q = P (f = h for all y), u ~ 0 identically in y, so the stl gradient is exactly zero on
// every path, while the full estimator's is the score, of nonzero variance.
#pragma once

#include <span>
#include <vector>

#include "sde/integrate.hpp"

namespace sdeuq::sde {

enum class KLEstimator { plain, full, stl };
const char* kl_estimator_name(KLEstimator e);

// The posterior SDE (f, g, parameters()) with its prior drift h. Diagonal noise.
class PosteriorPriorSDE : public SDE {
public:
    Noise noise() const final { return Noise::diagonal; }
    // Prior drift, [batch, d].
    virtual Var h(double t, const Var& y) = 0;
    // u = (f - h) / g.
    virtual Var u(double t, const Var& y);
    // u with the parameters detached (constants) but y differentiable. The default evaluates u() inside a
    // ParametersDetached scope over parameters(): override if f, g or h use parameters not listed there.
    virtual Var u_detached(double t, const Var& y);
};

// RAII: the listed parameters are non-trainable (Parameter::var() gives constants) for the scope.
class ParametersDetached {
public:
    explicit ParametersDetached(std::vector<Parameter*> params);
    ~ParametersDetached();
    ParametersDetached(const ParametersDetached&) = delete;
    ParametersDetached& operator=(const ParametersDetached&) = delete;

private:
    std::vector<Parameter*> changed_;
};

struct LogqpResult {
    Var ys;     // [T, batch, d]
    Var logqp;  // [T, batch]: the path integral from ts[0] to ts[i] per sample (row 0 is zero)
};

// Solves the posterior SDE on bm (fixed steps of opt.dt with opt.solver, on integrate()'s grid) together
// with the log density ratio. With opt.estimator == "backprop" (any KLEstimator), the loop records onto
// the current tape (or, with gradients off, runs each step in a nested scope). With another estimator
// ("adjoint", ...) only KLEstimator::plain is possible: the logqp becomes an extra state coordinate
// with drift 1/2 |u|^2 and no diffusion (LogqpAugmentedSDE below), solved by sdeint; the drift term is then
// integrated by the solver's own quadrature rather than at left points.
LogqpResult sdeint_logqp(PosteriorPriorSDE& sde, const Var& y0, std::span<const double> ts,
                         const BrownianPath& bm, const SolveOptions& opt, KLEstimator estimator,
                         SolveStats* stats = nullptr);

// The augmented SDE of the plain estimator: state [batch, d + 1] = (y, logqp), drift (f, 1/2 |u|^2),
// diffusion (g, 0). Its Brownian motion is the posterior's (m = d, the noise "diagonal" in the first d
// coordinates): it works with the estimators that use only g_prod() (backprop with any solver but
// reversible Heun and Milstein, the stochastic adjoint).
class LogqpAugmentedSDE : public SDE {
public:
    explicit LogqpAugmentedSDE(PosteriorPriorSDE& sde) : sde_(&sde) {}
    Noise noise() const override { return Noise::diagonal; }
    Calculus calculus() const override { return sde_->calculus(); }
    std::int64_t brownian_dim(std::int64_t d_aug) const override { return d_aug - 1; }
    Var f(double t, const Var& y) override;
    Var g(double t, const Var& y) override;
    Var g_prod(double t, const Var& y, const Var& dw) override;
    std::vector<Parameter*> parameters() override { return sde_->parameters(); }

private:
    PosteriorPriorSDE* sde_;
};

}  // namespace sdeuq::sde
