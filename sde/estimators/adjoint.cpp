// The stochastic adjoint estimator (Li, Wong, Chen, Duvenaud 2020). See sde/estimators/estimators.hpp for the
// equations.
//
// Forward: integrate(..., record = false), the shared driver, which runs each step in its own NestedTape
// and keeps the carry in heap buffers, so nothing grows with the number of steps; only the outputs at ts
// (as the recorded node's value) and the accepted step times (8 bytes a step; for adaptive solves too)
// are kept.
//
// Backward: the AdjointSDE (sde/adjoint_sde.hpp) over X = (y, a, a_theta), solved by the same driver,
// integrate(), from ts.back() to ts[0] (decreasing times: steps dt' < 0, increments W(t_n) - W(t_{n+1}),
// bit for bit the negated forward ones) with the chosen solver (midpoint, heun, reversible_heun,
// milstein; euler for additive noise). Fixed steps retrace the forward's accepted steps; with
// adjoint_adaptive the backward solve picks its own steps between the output times (with a running cost:
// between the forward's step points, which it must land on to add the cost's VJP there). An
// IntegrateControl hook makes the adjoint's jumps where the solve reaches a time: at an output t_i, y
// restarts from the stored forward value (as torchsde does) and dL/dY(t_i) (and dL/dC(t_i)) enter the
// cotangents; at a forward step point t_n the running cost's VJP adds a_c dc/dy into a and a_c dc/dtheta
// into a_theta (docs/estimators.md, "Running costs"); either jump restarts a solver's own carried state
// (reversible Heun's z).
#include "sde/estimators/estimators.hpp"

#include "sde/adjoint_sde.hpp"
#include "sde/ito_correction.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <fmt/format.h>

namespace sdeuq::sde {


namespace {

using detail::axpy;
using detail::time_slice;

// The hooks of the backward solve (see the header comment), and the cotangents it reads.
struct BackwardControl final : IntegrateControl {
    AdjointSDE* adj;
    RunningCost* cost;
    const BrownianPath* bm;
    const std::vector<Parameter*>* params;
    // The forward's step times, last first: the steps of a fixed-step backward solve, and the stops an
    // adaptive one must land on when there is a running cost (empty: adaptive without a cost).
    std::vector<double> reversed_times;
    std::size_t grid_point = 0;          // reversed_times[grid_point]: the last forward step point reached
    std::int64_t T = 0;                  // number of outputs
    Tensor outputs, grad_out;            // [T, batch, d]
    Tensor grad_packed;                  // the node's gradient (costs after the states)
    Tensor a_c, dw_fwd;                  // the cost's cotangent [batch] and a forward increment
    std::vector<double> buf;

    std::span<const double> step_times() const override { return reversed_times; }
    bool collect() const override { return false; }
    bool no_grad() const override { return false; }  // the AdjointSDE differentiates on nested tapes

    bool at_time(std::size_t, double t, std::ptrdiff_t output, Tensor& x) override {
        // Output `output` of the reversed ts is the forward's output T - 1 - output.
        const std::int64_t i = output >= 0 ? T - 1 - output : -1;
        Tensor y = adj->y_part(x), a = adj->a_part(x);
        if (i >= 0) y.copy_from(time_slice(outputs, i));
        // At a forward step point t_n (every point of a fixed-step backward solve; the stops of an adaptive
        // one, between which it may take several steps), the running cost's step n, c(t_n, h_n, y_n, dW_n),
        // with a_c holding the costs' cotangents after t_n (t_{n+1} the previous point reached).
        const bool at_grid_point =
            grid_point + 1 < reversed_times.size() && t == reversed_times[grid_point + 1];
        if (at_grid_point) ++grid_point;
        if (cost && at_grid_point) {
            const double tn = reversed_times[grid_point], tn1 = reversed_times[grid_point - 1];
            detail::brownian_into(*bm, tn, tn1, buf, dw_fwd);
            std::vector<Tensor> a_theta = adj->a_theta_parts(x);
            detail::running_cost_vjp(*cost, *params, tn, tn1 - tn, y, dw_fwd, a_c, a, a_theta);
        }
        if (i >= 0) {
            axpy(a, 1.0, time_slice(grad_out, i));
            if (cost) {
                const std::int64_t B = outputs.dim(1);
                auto* base = static_cast<std::byte*>(grad_packed.raw());
                const std::size_t off =
                    static_cast<std::size_t>(outputs.numel() + i * B) * dtype_size(outputs.dtype());
                axpy(a_c, 1.0, Tensor::view(base + off, Shape{B}, outputs.dtype()));
            }
        }
        return i >= 0 || (cost && at_grid_point);  // X jumped: reversible Heun's z restarts from it
    }
};

// The recorded node's backward: the AdjointSDE solved backwards by integrate().
struct AdjointBackward {
    SDE* sde;
    RunningCost* cost;       // null without a running cost
    const BrownianPath* bm;  // the caller's: a copy would duplicate its O(log steps) cache of tree nodes
    std::vector<double> step_times;  // the forward's accepted step times, then its final time
    std::vector<double> ts;
    SolverKind method;
    SolveOptions opt;
    std::vector<Parameter*> params;
    Node* y0_node;
    std::vector<Node*> param_nodes;
    Tensor outputs;  // the states [T, batch, d] in the node's value (which lives as long as the node)

    void operator()(const Tensor& grad_packed) {
        const std::int64_t T = outputs.dim(0), B = outputs.dim(1), d = outputs.dim(2);
        const DType dtype = outputs.dtype();
        // An Ito SDE's adjoint is the Stratonovich adjoint of its Stratonovich form, on the same path
        // (docs/estimators.md, "Ito SDEs through the adjoint"); the forward states are the Ito solve's.
        std::optional<StratonovichForm> strat;
        if (needs_ito_correction(*sde)) strat.emplace(*sde);
        AdjointSDE adj(strat ? static_cast<SDE&>(*strat) : *sde, params, B, d, dtype);
        BackwardControl ctl;
        ctl.adj = &adj;
        ctl.cost = cost;
        ctl.bm = bm;
        ctl.params = &params;
        ctl.T = T;
        ctl.outputs = outputs;
        ctl.grad_out = Tensor::view(grad_packed.raw(), outputs.shape(), dtype);
        ctl.grad_packed = grad_packed;
        if (!opt.adjoint_adaptive || cost) ctl.reversed_times.assign(step_times.rbegin(), step_times.rend());
        if (cost) {
            ctl.a_c = Tensor::zeros({B}, dtype);
            ctl.dw_fwd = Tensor::empty({B, sde->brownian_dim(d)}, dtype);
        }
        SolveOptions back = opt;
        back.adaptive = opt.adjoint_adaptive;
        back.rtol = opt.adjoint_rtol;
        back.atol = opt.adjoint_atol;
        const std::vector<double> rts(ts.rbegin(), ts.rend());
        // X(T) = (y_T, 0, 0); the hook at ts.back() sets y and adds dL/dY_T.
        Tensor x0 = Tensor::arena_zeros({1, adj.size()}, dtype);
        auto solver = make_solver(method);
        ForwardResult r = integrate(adj, *solver, Var(x0), rts, *bm, back, false, nullptr, nullptr, &ctl);
        // (accumulate() copies or adds the views.)
        if (y0_node) accumulate(y0_node, adj.a_part(r.final_state));
        std::vector<Tensor> a_theta = adj.a_theta_parts(r.final_state);
        for (std::size_t k = 0; k < params.size(); ++k)
            if (param_nodes[k]) accumulate(param_nodes[k], a_theta[k]);
    }
};

// The backward solver: adjoint_solver, else the forward solver if it is midpoint or heun, else midpoint.
// The AdjointSDE's diffusion exists only as the product G(X) dW (its matrix is [D, batch m]), so the
// schemes that run it use that product alone: midpoint and heun; reversible Heun (z restarting at the
// adjoint's jumps); the derivative-free Stratonovich Milstein in its product form (diagonal and scalar
// noise, the noise types it supports); euler (an Ito scheme) only for additive noise, where the adjoint's
// Ito and Stratonovich forms coincide. srk is refused: it needs a diffusion independent of the state,
// and the adjoint's a_theta diffusion -a^T d(g dW)/dtheta depends on a even when g is additive;
// milstein_exact is refused: it differentiates the diffusion matrix, which the AdjointSDE never forms.
SolverKind adjoint_method(const SDE& sde, const SolveOptions& opt) {
    auto stratonovich = [](const SolverChoice& c) {
        return c == SolverKind::midpoint || c == SolverKind::heun;
    };
    SolverChoice choice = opt.adjoint_solver;
    if (choice.empty()) choice = stratonovich(opt.solver) ? opt.solver : SolverChoice(SolverKind::midpoint);
    const SolverKind kind = choice.kind_or(SolverKind::midpoint);
    const bool additive = sde.noise() == Noise::additive;
    switch (kind) {
        case SolverKind::midpoint:
        case SolverKind::heun:
        case SolverKind::reversible_heun: return kind;
        case SolverKind::milstein:
            if (!additive) return kind;
            break;
        case SolverKind::euler:
            if (additive) return kind;
            break;
        case SolverKind::srk:
        case SolverKind::milstein_exact: break;
    }
    throw UsageError(fmt::format(
        "adjoint estimator: adjoint_solver '{}' {} (use \"midpoint\", \"heun\", \"reversible_heun\"{})",
        choice.name(),
        kind == SolverKind::srk
            ? "cannot solve the adjoint SDE, whose diffusion depends on the adjoint state even for "
              "additive noise"
        : kind == SolverKind::milstein_exact
            ? "cannot solve the adjoint SDE, whose diffusion exists only as the product G(X) dW, not as "
              "the matrix whose derivative milstein_exact needs"
            : fmt::format("is not supported for {} noise", noise_name(sde.noise())),
        additive ? ", or \"euler\"" : ", or \"milstein\""));
}

}  // namespace

namespace {

Solution adjoint_solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
                       const SolveOptions& opt, RunningCost* cost, SolveStats* stats) {
    if (sde.noise() == Noise::general)
        throw UsageError(
            "adjoint estimator: general noise is not supported (diagonal, scalar or additive noise "
            "only; use the \"backprop\" or \"reversible_heun\" estimator)");
    const SolverKind method = adjoint_method(sde, opt);
    auto solver = make_solver(opt.solver);
    if (!solver->supports(sde.noise(), sde.calculus()))
        throw UsageError(fmt::format("adjoint estimator: solver '{}' does not support {} {} SDEs",
                                     solver->name(),
                                     calculus_name(sde.calculus()), noise_name(sde.noise())));

    // Forward: the shared driver without a tape (each step in its own nested scope, so its memory does not
    // grow with the number of steps); its accepted step times are the grid the backward solve retraces.
    std::vector<double> step_times;
    std::vector<Tensor> states, costs;
    {
        NoGradScope no_grad;
        ForwardResult r = integrate(sde, *solver, Var(y0.value()), ts, bm, opt, false, stats, cost);
        states = std::move(r.states);
        costs = std::move(r.cost_states);
        step_times = std::move(r.step_times);
    }

    const auto T = static_cast<std::int64_t>(ts.size());
    Tensor out = detail::pack_outputs(states, cost ? &costs : nullptr, y0);
    std::vector<Parameter*> params = detail::trainable_parameters(sde);
    std::vector<Var> inputs = detail::recorded_inputs(y0, params);
    if (inputs.empty()) {
        check_anomaly("sde_adjoint", out);
        return detail::unpack_outputs(Var(out), T, y0.dim(0), y0.dim(1), cost != nullptr);
    }

    const Tensor states_view = Tensor::view(out.raw(), Shape{T, y0.dim(0), y0.dim(1)}, out.dtype());
    auto* closure = current_tape().arena().make<AdjointBackward>(
        AdjointBackward{&sde, cost, &bm, std::move(step_times), std::vector<double>(ts.begin(), ts.end()),
                        method, opt, params, node_of(y0), {}, states_view});
    for (std::size_t k = 0; k < params.size(); ++k) closure->param_nodes.push_back(node_of(inputs[k + 1]));
    BackwardFn fn = [](void* c, const Tensor& g) { (*static_cast<AdjointBackward*>(c))(g); };
    return detail::unpack_outputs(record_n("sde_adjoint", out, inputs, fn, closure), T, y0.dim(0), y0.dim(1),
                                  cost != nullptr);
}

}  // namespace

Var AdjointEstimator::solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
                            const SolveOptions& opt, SolveStats* stats) {
    return adjoint_solve(sde, y0, ts, bm, opt, nullptr, stats).ys;
}

Solution AdjointEstimator::solve_with_cost(SDE& sde, const Var& y0, std::span<const double> ts,
                                           const BrownianPath& bm, const SolveOptions& opt, RunningCost& cost,
                                           SolveStats* stats) {
    return adjoint_solve(sde, y0, ts, bm, opt, &cost, stats);
}

}  // namespace sdeuq::sde
