// The built-in gradient estimators of sdeint (sde/integrate.hpp), one file each in sde/estimators/, and
// their registry table (registry.cpp): "backprop" (backprop.cpp), "adjoint" (adjoint.cpp),
// "reversible_heun" (reversible_heun.cpp) and "recompute" (recompute.cpp, the worked example of
// docs/estimators.md). The pieces they share are in common.cpp (namespace detail below).
//
// "backprop": the tape through every op of every solver step. Exact gradients of the discretised
// solution; memory O(steps).
//
// The memory-efficient ones: the stochastic adjoint and the algebraically reversible Heun adjoint. Both
// record the whole solution [T, batch, d] (and a running cost, if any) as ONE node of the current tape
// over the inputs {y0, trainable parameter leaves}; their backward closures re-solve
// backwards in time with a nested tape per step, so memory does not grow with the number of steps.
//
// "adjoint" (Li, Wong, Chen, Duvenaud 2020, "Scalable Gradients for Stochastic Differential Equations",
// AISTATS, Eq. (14)-(15) and Algorithm 2, Stratonovich form): for dY = f(t, Y) dt + g(t, Y) o dW and a
// loss L(Y_T), the adjoint a_t = dL/dY_t and a_theta satisfy, integrated from T back to t0 on the same
// Brownian path,
//     dY       =  f dt + g o dW
//     da       = -a df/dy dt - a d(g o dW)/dy                    a(T)       = dL/dY_T
//     da_theta = -a df/dtheta dt - a d(g o dW)/dtheta            a_theta(T) = 0
// and a(t0) = dL/dY_0, a_theta(t0) = dL/dtheta. With outputs at several times, dL/dY_{t_i} is added to
// a when the backward solve reaches t_i (and Y is reset to the stored forward value there, which removes
// the drift of the reconstructed path). The system is the AdjointSDE (sde/adjoint_sde.hpp), solved
// backwards by integrate() with midpoint, heun, reversible_heun, milstein (product form; diagonal and
// scalar noise) or euler (additive noise), on the forward's steps or adaptively
// (SolveOptions::adjoint_adaptive; with a running cost landing on the forward's step points; docs/
// estimators.md, "What runs backwards"). Supported: diagonal, scalar or additive noise, Stratonovich or
// Ito; an Ito SDE with diagonal or scalar noise runs the Stratonovich adjoint of its Stratonovich form
// (drift f - 1/2 (g . grad) g, sde/ito_correction.hpp; for additive noise the two calculi coincide).
// General noise is a UsageError.
//
// "reversible_heun" (Kidger, Foster, Li, Lyons 2021, "Efficient and Accurate Gradients for Neural SDEs",
// NeurIPS, Algorithms 1 and 2): the forward solve with the reversible Heun method keeps only its final
// state (y, z, f(z), g(z)); the backward pass inverts each step algebraically with the same dW and
// back-propagates through it locally. The gradients are those of backprop through the solver up to
// round-off. Any noise type; fixed steps. It always solves with the reversible Heun method:
// opt.solver must be unset or reversible_heun; anything else (euler included) is a UsageError.
//
// Both keep pointers to the caller's SDE and Brownian path (as torchsde does): both must outlive backward().
#pragma once

#include <span>
#include <string>
#include <vector>

#include "sde/integrate.hpp"

namespace sdeuq::sde {

class BackpropEstimator : public GradientEstimator {
public:
    std::string name() const override { return "backprop"; }
    Var solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
              const SolveOptions& opt, SolveStats* stats) override;
    Solution solve_with_cost(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
                             const SolveOptions& opt, RunningCost& cost, SolveStats* stats) override;
};

class AdjointEstimator : public GradientEstimator {
public:
    std::string name() const override { return "adjoint"; }
    Var solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
              const SolveOptions& opt, SolveStats* stats) override;
    Solution solve_with_cost(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
                             const SolveOptions& opt, RunningCost& cost, SolveStats* stats) override;
};

class ReversibleHeunEstimator : public GradientEstimator {
public:
    std::string name() const override { return "reversible_heun"; }
    Var solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
              const SolveOptions& opt, SolveStats* stats) override;
    Solution solve_with_cost(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
                             const SolveOptions& opt, RunningCost& cost, SolveStats* stats) override;
};

// "recompute" (sde/estimators/recompute.cpp): checkpointing of the whole solve.
std::unique_ptr<GradientEstimator> make_recompute_estimator();

// Kept for source compatibility: the built-ins are rows of the registry table (sde/estimators/
// registry.cpp), always available; this removes user registrations that shadow "adjoint" and
// "reversible_heun".
void register_adjoint_estimators();

namespace detail {

// Step times of a fixed-step solve through ts: the grid t0 + k dt (a grid point within 1e-8 dt of an output
// is that output) with the outputs inserted, and for each ts[i] its index there. integrate() steps on it.
struct StepGrid {
    std::vector<double> times;
    std::vector<std::size_t> output_index;
};
StepGrid fixed_step_grid(std::span<const double> ts, double dt);
// The same for given accepted step times (adaptive forward solves): the outputs must be among them.
StepGrid grid_from_times(std::span<const double> ts, std::vector<double> times);

// The states at the outputs stacked into one [T, batch, d] arena tensor (the estimators' forward value).
Tensor stack_outputs(const std::vector<Tensor>& states, const Var& y0);
// The node value of an estimator: without costs stack_outputs(); with costs one flat arena tensor, the
// states [T, batch, d] then the costs [T, batch] (one node, so gradients reach it through either output).
Tensor pack_outputs(const std::vector<Tensor>& states, const std::vector<Tensor>* costs, const Var& y0);
// The node's output split back into states and costs (views on the tape: reshape of slice).
Solution unpack_outputs(const Var& packed, std::int64_t T, std::int64_t B, std::int64_t d, bool has_cost);
// One nested VJP of a running cost's increment c(t, dt, y, dw) [batch] with cotangent a_c [batch]:
// a_y += a_c^T dc/dy, a_theta[k] += a_c^T dc/dtheta_k (heap tensors).
void running_cost_vjp(RunningCost& cost, const std::vector<Parameter*>& params, double t, double dt,
                      const Tensor& y, const Tensor& dw, const Tensor& a_c, Tensor& a_y,
                      std::vector<Tensor>& a_theta);
// The Vars an estimator's node records over: y0, then a leaf per parameter. Empty when nothing needs a
// gradient (gradients off, or neither y0 nor a parameter on the current tape).
std::vector<Var> recorded_inputs(const Var& y0, const std::vector<Parameter*>& params);
// Row i of a [T, batch, d] tensor, as a view.
Tensor time_slice(const Tensor& t, std::int64_t i);
// W(t) - W(s) as a [batch, m] tensor of out's dtype, written into `out` (scratch: `buf`).
void brownian_into(const BrownianPath& bm, double s, double t, std::vector<double>& buf, Tensor& out);
// Heap arithmetic: y += alpha x (same shape and dtype).
void axpy(Tensor& y, double alpha, const Tensor& x);
// The trainable parameters of the SDE (deduplicated, in order).
std::vector<Parameter*> trainable_parameters(SDE& sde);
// The memory-efficient estimators collect gradients only for the listed parameters: a trainable
// Parameter that f, g (or a running cost) used on the current nested tape but that is not in `params`
// would silently get none. Throws a UsageError naming it (and `who`). Backprop needs no list.
void check_listed_parameters(const char* who, const std::vector<Parameter*>& params);

}  // namespace detail

}  // namespace sdeuq::sde
