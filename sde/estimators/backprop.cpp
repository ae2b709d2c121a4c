// "backprop": the tape through every op of every solver step (sde/estimators/estimators.hpp).
#include "sde/estimators/estimators.hpp"

namespace sdeuq::sde {

Var BackpropEstimator::solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
                             const SolveOptions& opt, SolveStats* stats) {
    auto solver = make_solver(opt.solver);
    return integrate(sde, *solver, y0, ts, bm, opt, true, stats).stacked;
}

// With gradients off, the unrecorded loop (each step in a nested scope: memory flat in the steps).
Solution BackpropEstimator::solve_with_cost(SDE& sde, const Var& y0, std::span<const double> ts,
                                            const BrownianPath& bm, const SolveOptions& opt,
                                            RunningCost& cost, SolveStats* stats) {
    auto solver = make_solver(opt.solver);
    ForwardResult r = integrate(sde, *solver, y0, ts, bm, opt, grad_enabled(), stats, &cost);
    return {r.stacked, r.cost_stacked};
}

}  // namespace sdeuq::sde
