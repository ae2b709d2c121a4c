// The stochastic adjoint estimator (Li, Wong, Chen, Duvenaud 2020). See sde/adjoint.hpp for the equations.
//
// Forward: integrate(..., record = false), the shared driver, which runs each step in its own NestedTape
// and keeps the carry in heap buffers, so nothing grows with the number of steps; only the outputs at ts
// (as the recorded node's value) and the accepted step times (8 bytes a step; for adaptive solves too)
// are kept.
//
// Backward: the augmented state X = (y, a, a_theta) is integrated from ts.back() to ts[0] over the
// forward grid in reverse, with dt' = t_n - t_{n+1} < 0 and dW' = W(t_n) - W(t_{n+1}) (the reversed
// increment, bit for bit the negated forward one). One evaluation of the augmented increment at
// (t, y, a) is ONE nested VJP:
//     phi  = f(t, y) dt' + g(t, y) o dW'                       (the y increment)
//     (v_y, v_theta) = a^T d phi / d(y, theta)                 (backward of phi with cotangent a)
//     X increment = (phi, -v_y, -v_theta)
// which is f dt + g o dW for y and -a df/dy dt - a d(g o dW)/dy for a (Li et al. 2020, Eq. (14)). The
// midpoint and Heun steps of the augmented system are written out below (both evaluate the increment
// with the full step's dt', dW' at every stage, so the drift and diffusion products combine in one VJP):
//     midpoint: X_m = X + Phi(t, X) / 2,  X' = X + Phi(t + dt'/2, X_m)
//     heun:     X~ = X + Phi(t, X),       X' = X + (Phi(t, X) + Phi(t + dt', X~)) / 2
//     euler:    X' = X + Phi(t, X)        (additive noise only: it is an Ito scheme)
// Each evaluation runs in a NestedTape that is released before the next one; the state lives in heap
// buffers allocated once per backward pass.
#include "sde/estimators/estimators.hpp"

#include "autodiff/ops_fused.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fmt/format.h>

namespace sdeuq::sde {


namespace {

using detail::axpy;
using detail::StepGrid;
using detail::time_slice;

// The recorded node's backward: the augmented adjoint system, solved backwards.
struct AdjointBackward {
    SDE* sde;
    RunningCost* cost;  // null without a running cost
    const BrownianPath* bm;  // the caller's: a copy would duplicate its O(log steps) cache of tree nodes
    StepGrid grid;
    std::string method;  // "midpoint", "heun" or "euler"
    std::vector<Parameter*> params;
    Node* y0_node;
    std::vector<Node*> param_nodes;
    Tensor outputs;  // the states [T, batch, d] in the node's value (which lives as long as the node)

    // Heap buffers of one augmented evaluation.
    struct Eval {
        Tensor phi, v_y;
        std::vector<Tensor> v_theta;
    };

    // Phi at (t, y, a): phi = f dt + g o dW and the VJP of phi with cotangent a, in one nested scope.
    void evaluate(double t, double dt, const Tensor& y, const Tensor& a, const Tensor& dw, Eval& e) const {
        NestedTape scope;
        Var yl = leaf(y);
        std::vector<Var> pv;
        pv.reserve(params.size());
        for (Parameter* p : params) pv.push_back(p->var());
        Var fv = sde->f(t, yl), gw = sde->g_prod(t, yl, Var(dw));
        // f dt + g.dW as one node (lincomb, autodiff/ops_fused.hpp: the same bits as the plain ops) when
        // the shapes agree; the plain ops otherwise (and the check below names the mismatch).
        Var phi;
        if (fv.shape() == y.shape() && gw.shape() == y.shape() && fv.dtype() == gw.dtype()) {
            const Var terms[2] = {fv, gw};
            const double coeffs[2] = {dt, 1.0};
            phi = lincomb(terms, coeffs);
        } else {
            phi = fv * dt + gw;
        }
        if (phi.shape() != y.shape())
            throw ShapeError(fmt::format("adjoint estimator: f dt + g dW is {}, the state {}",
                                         describe(phi.value()), describe(y)));
        detail::check_listed_parameters("adjoint estimator", params);
        e.phi.copy_from(phi.value());
        if (!node_of(phi)) {
            e.v_y.fill(0.0);
            for (auto& v : e.v_theta) v.fill(0.0);
            return;
        }
        backward(phi, a);
        e.v_y.copy_from(yl.grad());
        for (std::size_t k = 0; k < pv.size(); ++k) e.v_theta[k].copy_from(pv[k].grad());
    }

    void operator()(const Tensor& grad_packed) {
        const Tensor y_T = time_slice(outputs, 0);
        const Shape s = y_T.shape();
        const DType dt_y = outputs.dtype();
        // The node's gradient: the states' [T, batch, d], then (with a cost) the costs' [T, batch].
        const Tensor grad_out = Tensor::view(grad_packed.raw(), outputs.shape(), dt_y);
        auto grad_cost = [&](std::int64_t i) {
            auto* base = static_cast<std::byte*>(grad_packed.raw());
            const std::size_t off = static_cast<std::size_t>(outputs.numel() + i * s[0]) * dtype_size(dt_y);
            return Tensor::view(base + off, Shape{s[0]}, dt_y);
        };
        Tensor a_c = cost ? Tensor::zeros({s[0]}, dt_y) : Tensor();  // the cost's cotangent
        auto make_eval = [&]() {
            Eval e{Tensor::empty(s, dt_y), Tensor::empty(s, dt_y), {}};
            for (Parameter* p : params)
                e.v_theta.push_back(Tensor::empty(p->value().shape(), p->value().dtype()));
            return e;
        };
        Eval e1 = make_eval(), e2 = make_eval();
        Tensor y = Tensor::empty(s, dt_y), a = Tensor::zeros(s, dt_y);
        Tensor y_s = Tensor::empty(s, dt_y), a_s = Tensor::empty(s, dt_y);  // stage states
        std::vector<Tensor> a_theta;
        for (Parameter* p : params) a_theta.push_back(Tensor::zeros(p->value().shape(), p->value().dtype()));
        const std::int64_t m = sde->brownian_dim(s[1]);
        Tensor dw = Tensor::empty({s[0], m}, dt_y);
        Tensor dw_fwd = cost ? Tensor::empty({s[0], m}, dt_y) : Tensor();
        std::vector<double> buf;

        std::int64_t out_i = static_cast<std::int64_t>(grid.output_index.size()) - 1;
        auto at_output = [&](std::size_t n) {
            // y restarts from the stored forward value at an output (as torchsde's adjoint does).
            const bool is_out = out_i >= 0 && grid.output_index[static_cast<std::size_t>(out_i)] == n;
            if (is_out) y.copy_from(time_slice(outputs, out_i));
            // The running cost's step n, c(t_n, h_n, y_n, dW_n): a += a_c dc/dy, a_theta += a_c dc/dtheta
            // (docs/estimators.md, "Running costs"). a_c holds the cost outputs after t_n.
            if (cost && n + 1 < grid.times.size()) {
                detail::brownian_into(*bm, grid.times[n], grid.times[n + 1], buf, dw_fwd);
                detail::running_cost_vjp(*cost, params, grid.times[n], grid.times[n + 1] - grid.times[n], y,
                                         dw_fwd, a_c, a, a_theta);
            }
            // dL/dY(ts[i]) (and dL/dC(ts[i])) enter the cotangents.
            if (is_out) {
                axpy(a, 1.0, time_slice(grad_out, out_i));
                if (cost) axpy(a_c, 1.0, grad_cost(out_i));
                --out_i;
            }
        };
        at_output(grid.times.size() - 1);
        for (std::size_t n = grid.times.size() - 1; n > 0; --n) {
            const double t = grid.times[n], dt = grid.times[n - 1] - t;  // dt < 0
            detail::brownian_into(*bm, t, grid.times[n - 1], buf, dw);   // W(t_{n-1}) - W(t_n)
            if (method == "euler") {
                evaluate(t, dt, y, a, dw, e1);
                axpy(y, 1.0, e1.phi);
                axpy(a, -1.0, e1.v_y);
                for (std::size_t k = 0; k < params.size(); ++k) axpy(a_theta[k], -1.0, e1.v_theta[k]);
            } else if (method == "midpoint") {
                evaluate(t, dt, y, a, dw, e1);
                y_s.copy_from(y);
                axpy(y_s, 0.5, e1.phi);
                a_s.copy_from(a);
                axpy(a_s, -0.5, e1.v_y);
                evaluate(t + 0.5 * dt, dt, y_s, a_s, dw, e2);
                axpy(y, 1.0, e2.phi);
                axpy(a, -1.0, e2.v_y);
                for (std::size_t k = 0; k < params.size(); ++k) axpy(a_theta[k], -1.0, e2.v_theta[k]);
            } else {  // heun
                evaluate(t, dt, y, a, dw, e1);
                y_s.copy_from(y);
                axpy(y_s, 1.0, e1.phi);
                a_s.copy_from(a);
                axpy(a_s, -1.0, e1.v_y);
                evaluate(grid.times[n - 1], dt, y_s, a_s, dw, e2);
                axpy(y, 0.5, e1.phi);
                axpy(y, 0.5, e2.phi);
                axpy(a, -0.5, e1.v_y);
                axpy(a, -0.5, e2.v_y);
                for (std::size_t k = 0; k < params.size(); ++k) {
                    axpy(a_theta[k], -0.5, e1.v_theta[k]);
                    axpy(a_theta[k], -0.5, e2.v_theta[k]);
                }
            }
            at_output(n - 1);
        }
        if (y0_node) accumulate(y0_node, a);
        for (std::size_t k = 0; k < params.size(); ++k)
            if (param_nodes[k]) accumulate(param_nodes[k], a_theta[k]);
    }
};

std::string adjoint_method(const SDE& sde, const SolveOptions& opt) {
    auto stratonovich = [](const SolverChoice& c) {
        return c == SolverKind::midpoint || c == SolverKind::heun;
    };
    SolverChoice choice = opt.adjoint_solver;
    if (choice.empty()) choice = stratonovich(opt.solver) ? opt.solver : SolverChoice(SolverKind::midpoint);
    const std::string name = choice.name();
    if (stratonovich(choice)) return name;
    if (name == "euler" && sde.noise() == Noise::additive) return name;
    throw UsageError(
        fmt::format("adjoint estimator: adjoint_solver '{}' is not supported for {} noise (use "
                    "\"midpoint\" or \"heun\"{})",
                    name, noise_name(sde.noise()), sde.noise() == Noise::additive ? ", or \"euler\"" : ""));
}

}  // namespace

namespace {

Solution adjoint_solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
                       const SolveOptions& opt, RunningCost* cost, SolveStats* stats) {
    if (sde.noise() == Noise::general)
        throw UsageError(
            "adjoint estimator: general noise is not supported (diagonal, scalar or additive noise "
            "only; use the \"backprop\" or \"reversible_heun\" estimator)");
    if (sde.calculus() == Calculus::ito && sde.noise() != Noise::additive)
        throw UsageError(
            fmt::format("adjoint estimator: Ito SDEs with {} noise are not supported (write the SDE "
                        "in Stratonovich form)",
                        noise_name(sde.noise())));
    const std::string method = adjoint_method(sde, opt);
    auto solver = make_solver(opt.solver);
    if (!solver->supports(sde.noise(), sde.calculus()))
        throw UsageError(fmt::format("adjoint estimator: solver '{}' does not support {} {} SDEs",
                                     solver->name(),
                                     calculus_name(sde.calculus()), noise_name(sde.noise())));

    // Forward: the shared driver without a tape (each step in its own nested scope, so its memory does not
    // grow with the number of steps); its accepted step times are the grid the backward solve retraces.
    StepGrid grid;
    std::vector<Tensor> states, costs;
    {
        NoGradScope no_grad;
        ForwardResult r = integrate(sde, *solver, Var(y0.value()), ts, bm, opt, false, stats, cost);
        states = std::move(r.states);
        costs = std::move(r.cost_states);
        grid = detail::grid_from_times(ts, std::move(r.step_times));
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
        AdjointBackward{&sde, cost, &bm, std::move(grid), method, params, node_of(y0), {}, states_view});
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
