// sdeint: solve an SDE on a Brownian path and return the states at the requested times, with the
// gradient computed by a chosen estimator.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "sde/brownian.hpp"
#include "sde/solvers.hpp"

namespace sdeuq::sde {

struct SolveOptions {
    SolverChoice solver;  // unset: the estimator's default (euler; reversible_heun for reversible_heun)
    double dt = 1e-2;  // fixed step (and the first step when adaptive)
    bool adaptive = false;
    double rtol = 1e-3, atol = 1e-4, safety = 0.9;
    double dt_min = 1e-6, dt_max = std::numeric_limits<double>::infinity();
    std::int64_t max_steps = 10'000'000;
    // "backprop" (the tape through the solver), "adjoint" (stochastic adjoint, Li et al. 2020),
    // "reversible_heun" (algebraically reversible adjoint, Kidger et al. 2021), or any registered name.
    std::string estimator = "backprop";
    // Solver of the adjoint's backward solve (unset: the forward solver if it is midpoint or heun, else
    // midpoint; also reversible_heun, milstein for diagonal and scalar noise, euler for additive noise
    // only; srk is a UsageError; docs/estimators.md, "What runs backwards").
    SolverChoice adjoint_solver;
    // The adjoint's backward solve with adaptive steps (between the output times, with these tolerances
    // and the forward's dt, dt_min, dt_max, safety, max_steps) instead of retracing the forward's steps.
    // With a running cost (sdeint_logqp), whose sum is differentiated at the forward's step points, the
    // backward steps land on each of those (and subdivide a forward step where the tolerance asks).
    bool adjoint_adaptive = false;
    double adjoint_rtol = 1e-3, adjoint_atol = 1e-4;
};

// Statistics of the last solve (reset at its start).
struct SolveStats {
    std::int64_t steps = 0, rejected = 0;
    std::int64_t solver_steps = 0;    // calls of Solver::step (3 per attempted adaptive step: h, h/2, h/2)
    std::int64_t forced_accepts = 0;  // adaptive: steps accepted at dt_min with error > 1 (a warning sign)
};

// A running cost accumulated along a solve at the left point of every step (an Ito sum):
//     C(t_0) = 0,   C(t_{n+1}) = C(t_n) + c(t_n, h_n, y_n, dW_n),   c [batch],
// on the steps of the solve (y_n the solver's state, dW_n its Brownian increment). The KL path integral of
// sdeint_logqp (sde/logqp.hpp) is one. Every estimator differentiates it: backprop through the tape, the
// adjoint and reversible Heun by one nested VJP of c per grid point of their backward pass, with the
// cost's cotangent (docs/estimators.md, "Running costs"). increment() may depend on the SDE's
// parameters() (those get gradients) and on y; the dependence on dW must not be differentiated.
class RunningCost {
public:
    virtual ~RunningCost() = default;
    virtual Var increment(double t, double dt, const Var& y, const Var& dw) = 0;
};

// A solve's outputs: the states [T, batch, d] and the running cost [T, batch] (row 0 zero; undefined
// without a cost).
struct Solution {
    Var ys;
    Var cost;
};

// Solves from ts[0] through every ts[i] (increasing), y0 [batch, d]; returns [ts.size(), batch, d].
// The Brownian path must cover [ts.front(), ts.back()] with size() == batch * m (row-major [batch, m]).
Var sdeint(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
           const SolveOptions& opt = {}, SolveStats* stats = nullptr);

// A gradient estimator: produces the solution as a Var whose gradient with respect to y0 and the SDE's
// parameters() it computes its own way. To add one, derive, implement solve(), and register a factory
// under a name (see docs/estimators.md for a worked example); no solver changes.
class GradientEstimator {
public:
    virtual ~GradientEstimator() = default;
    virtual std::string name() const = 0;
    virtual Var solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
                      const SolveOptions& opt, SolveStats* stats) = 0;
    // The solve with a running cost; both outputs come from one recorded node, so gradients reach the
    // parameters through either. The default throws a UsageError naming the estimator.
    virtual Solution solve_with_cost(SDE& sde, const Var& y0, std::span<const double> ts,
                                     const BrownianPath& bm, const SolveOptions& opt, RunningCost& cost,
                                     SolveStats* stats);
};
void register_estimator(const std::string& name, std::function<std::unique_ptr<GradientEstimator>()> factory);
std::unique_ptr<GradientEstimator> make_estimator(const std::string& name);
std::vector<std::string> estimator_names();

// The forward loop, shared by every estimator: steps from ts[0] to each ts[i] with fixed or adaptive
// steps, calling solver.step.
//   Fixed steps: the grid ts[0] + k dt (the Brownian path's cells when its dt_hint is dt), with a step
//     clipped to end exactly at each ts[i] that falls between grid points.
//   Adaptive steps: step doubling on the same Brownian path (one step of h against two of h/2; the two
//     half steps are kept); error = max_i |y_half - y_full|_i / (atol + rtol max(|y|_i, |y_half|_i)),
//     accepted if <= 1 or h <= dt_min (counted in SolveStats::forced_accepts); next
//     h = h clamp(safety err^(-1 / (p + 1/2)), 0.2, 5) within [dt_min, dt_max], p = solver.strong_order
//     (the local mean-square error of a strong order p scheme is O(h^(p + 1/2))).
// `record` true: every op goes on the current tape (backprop through the solver). `record` false: no tape
// (NoGradScope), each step in its own NestedTape, the state copied out to heap buffers, so memory does not
// grow with the number of steps (adjoint forward passes); the outputs are copied into the current arena.
// ts must be strictly increasing, inside [bm.t0(), bm.t1()] (strictly decreasing, a reverse-time solve
// with negative steps and the reversed increments W(t_{n+1}) - W(t_n), only under an IntegrateControl).
// With a running cost, it is accumulated along the accepted steps (the kept half steps when adaptive).
struct ForwardResult {
    std::vector<Tensor> states;      // at each ts[i] (arena tensors of the current tape), ts[0]: y0
    Var stacked;                     // [T, batch, d] (recorded when record is true)
    std::vector<double> step_times;  // accepted step start times, then the final time
    std::vector<Tensor> cost_states;  // with a cost: [batch] at each ts[i]
    Var cost_stacked;                 // with a cost: [T, batch]
    std::vector<Tensor> final_solver_state;  // the solver's carried state at the end (heap copies)
    Tensor final_state;                      // unrecorded solves: the state at ts.back() (current arena)
};

// Hooks into integrate()'s loop for solves that are not plain forward solves (the stochastic adjoint's
// backward solve of its AdjointSDE, sde/estimators/adjoint.cpp). Unrecorded solves only.
class IntegrateControl {
public:
    virtual ~IntegrateControl() = default;
    // Fixed steps: the step times to take (ts.front() first, ts.back() last, monotone, every ts[i] among
    // them) instead of the grid ts[0] + k dt. Empty: that grid. Adaptive steps: times (monotone in the
    // solve's direction) that the steps must land on exactly, besides ts, as mandatory stops: the
    // controller picks the steps between them (and may subdivide), clipping a step at the next stop.
    virtual std::span<const double> step_times() const { return {}; }
    // Called when the solve reaches a time: at ts[0], and at the end of every accepted step. `steps`
    // counts the accepted steps so far; `output` is i when t is ts[i], else -1. y is the carried state
    // (a heap tensor the hook may change in place: the adjoint's jumps at the output times). Returns
    // true if it changed y: a solver that carries a state of its own (reversible Heun's z) restarts
    // there from the new y (Solver::init), as at ts[0].
    virtual bool at_time(std::size_t steps, double t, std::ptrdiff_t output, Tensor& y) = 0;
    // false: no states are collected (ForwardResult::final_state only).
    virtual bool collect() const { return true; }
    // false: the steps run with the caller's gradient mode (each still in its own NestedTape), for an SDE
    // whose coefficients differentiate on nested tapes (the AdjointSDE's VJPs).
    virtual bool no_grad() const { return true; }
};

ForwardResult integrate(SDE& sde, Solver& solver, const Var& y0, std::span<const double> ts,
                        const BrownianPath& bm, const SolveOptions& opt, bool record, SolveStats* stats,
                        RunningCost* cost = nullptr, IntegrateControl* control = nullptr);

}  // namespace sdeuq::sde
