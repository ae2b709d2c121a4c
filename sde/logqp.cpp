// The KL path integral (logqp) of a posterior SDE against its prior; see sde/logqp.hpp for the formulas.
#include "sde/logqp.hpp"

#include <fmt/format.h>


namespace sdeuq::sde {

const char* kl_estimator_name(KLEstimator e) {
    switch (e) {
        case KLEstimator::plain:
            return "plain";
        case KLEstimator::full:
            return "full";
        case KLEstimator::stl:
            return "stl";
    }
    return "?";
}

ParametersDetached::ParametersDetached(std::vector<Parameter*> params) {
    for (Parameter* p : params) {
        if (p && p->trainable()) {
            p->set_trainable(false);
            changed_.push_back(p);
        }
    }
}

ParametersDetached::~ParametersDetached() {
    for (Parameter* p : changed_) p->set_trainable(true);
}

Var PosteriorPriorSDE::u(double t, const Var& y) { return (f(t, y) - h(t, y)) / g(t, y); }

Var PosteriorPriorSDE::u_detached(double t, const Var& y) {
    ParametersDetached scope(parameters());
    return u(t, y);
}

// ---- the KL path integral as a running cost ----

KLRunningCost::KLRunningCost(PosteriorPriorSDE& sde, KLEstimator estimator)
    : sde_(&sde), estimator_(estimator) {}

Var KLRunningCost::increment(double t, double dt, const Var& y, const Var& dw) {
    Var u = sde_->u(t, y);
    Var inc = sum(u * u, {1}) * (0.5 * dt);                                                   // 1/2 |u|^2 dt
    if (estimator_ == KLEstimator::full) inc = inc + sum(u * dw, {1});                        // + u . dW
    if (estimator_ == KLEstimator::stl) inc = inc + sum(sde_->u_detached(t, y) * dw, {1});    // + u~ . dW
    return inc;
}

LogqpResult sdeint_logqp(PosteriorPriorSDE& sde, const Var& y0, std::span<const double> ts,
                         const BrownianPath& bm, const SolveOptions& opt, KLEstimator estimator,
                         SolveStats* stats) {
    // The cost must live as long as the estimator's node (its backward calls it): in the arena, freed
    // with the tape.
    auto* cost = current_tape().arena().make<KLRunningCost>(sde, estimator);
    Solution s = make_estimator(opt.estimator)->solve_with_cost(sde, y0, ts, bm, opt, *cost, stats);
    return {s.ys, s.cost};
}

}  // namespace sdeuq::sde
