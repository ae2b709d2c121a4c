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

// Solves the posterior SDE on bm together with the log density ratio, with any solver, fixed or adaptive
// steps and any gradient estimator ("backprop", "adjoint", "reversible_heun") for every KL estimator.
// The KL path integral is a running cost (sde/integrate.hpp), accumulated at the left point of every
// step of the solve, so every estimator computes the same values as backprop with the same solver and
// steps. Gradients:
//   backprop         the tape through the sum (exact for the discretisation);
//   reversible_heun  at each reconstructed y_n one nested VJP of the step's increment with the KL's
//                    cotangent: backprop's gradient up to round-off;
//   adjoint          the same VJP at the adjoint's reconstructed y_n: the adjoint of the augmented
//                    system (y, logqp), converging to backprop's gradient as dt -> 0 (derivation in
//                    docs/estimators.md, "Path-space KL through the adjoint").
// For stl, the increment's u~ . dW has the parameters detached, so the adjoint's a_theta receives only
// 1/2 d|u|^2/dtheta dt there, while a (the path's cotangent) receives the whole d/dy.
LogqpResult sdeint_logqp(PosteriorPriorSDE& sde, const Var& y0, std::span<const double> ts,
                         const BrownianPath& bm, const SolveOptions& opt, KLEstimator estimator,
                         SolveStats* stats = nullptr);

// The per-step increment of the KL path integral (the estimator's formula above, u at (t_n, y_n)).
class KLRunningCost final : public RunningCost {
public:
    KLRunningCost(PosteriorPriorSDE& sde, KLEstimator estimator);
    Var increment(double t, double dt, const Var& y, const Var& dw) override;

private:
    PosteriorPriorSDE* sde_;
    KLEstimator estimator_;
};

}  // namespace sdeuq::sde
