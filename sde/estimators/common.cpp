// The pieces the built-in estimators share (sde/estimators/estimators.hpp, namespace detail): the step
// grids, the node over {y0, parameters} with the states and the running cost as one value, the cost's
// VJP, the parameter check, heap arithmetic.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fmt/format.h>

#include "sde/estimators/estimators.hpp"

namespace sdeuq::sde {

namespace detail {

Tensor stack_outputs(const std::vector<Tensor>& states, const Var& y0) {
    const std::int64_t T = static_cast<std::int64_t>(states.size());
    Tensor out = Tensor::arena_empty({T, y0.dim(0), y0.dim(1)}, y0.dtype());
    for (std::int64_t i = 0; i < T; ++i) time_slice(out, i).copy_from(states[static_cast<std::size_t>(i)]);
    return out;
}

std::vector<Var> recorded_inputs(const Var& y0, const std::vector<Parameter*>& params) {
    std::vector<Var> inputs{y0};
    for (Parameter* p : params) inputs.push_back(p->var());
    if (!grad_enabled() || !sdeuq::detail::any_on_tape(inputs, current_tape())) return {};
    return inputs;
}

StepGrid fixed_step_grid(std::span<const double> ts, double dt) {
    if (!(dt > 0.0) || !std::isfinite(dt))
        throw UsageError(fmt::format("sdeint: dt must be positive, got {}", dt));
    if (ts.size() > 1 && ts[1] < ts[0]) {  // reverse time: the grid of -ts, negated (exactly)
        std::vector<double> neg(ts.size());
        for (std::size_t i = 0; i < ts.size(); ++i) neg[i] = -ts[i];
        StepGrid g = fixed_step_grid(neg, dt);
        for (double& t : g.times) t = -t;
        return g;
    }
    // The global grid t0 + k dt (multiplied, not accumulated) with every output time inserted, a grid
    // point within 1e-8 dt of an output being that output. integrate()'s fixed-step loop steps on it.
    StepGrid g;
    const double t0 = ts[0], snap = 1e-8 * dt;
    double t = t0;
    std::int64_t k = 0;
    g.output_index.push_back(0);
    for (std::size_t i = 1; i < ts.size(); ++i) {
        const double T = ts[i];
        while (t < T) {
            const double grid = t0 + static_cast<double>(k + 1) * dt;
            double t_next;
            if (grid >= T - snap) {
                t_next = T;
                if (grid <= T + snap) ++k;
            } else {
                t_next = grid;
                ++k;
            }
            g.times.push_back(t);
            t = t_next;
        }
        g.output_index.push_back(g.times.size());
    }
    g.times.push_back(t);
    return g;
}

StepGrid grid_from_times(std::span<const double> ts, std::vector<double> times) {
    StepGrid g;
    g.times = std::move(times);
    std::size_t k = 0;
    const bool reverse = ts.size() > 1 && ts[1] < ts[0];
    for (double t : ts) {
        while (k < g.times.size() && (reverse ? g.times[k] > t : g.times[k] < t)) ++k;
        if (k == g.times.size() || g.times[k] != t)
            throw UsageError(
                fmt::format("internal: output time {} is not a step time of the forward solve", t));
        g.output_index.push_back(k);
    }
    return g;
}

void brownian_into(const BrownianPath& bm, double s, double t, std::vector<double>& buf, Tensor& out) {
    if (out.dtype() == DType::f32 && out.numel() == bm.size()) {  // one pass, the same bits
        bm.increment(s, t, std::span<float>(out.data<float>(), static_cast<std::size_t>(out.numel())));
        return;
    }
    buf.resize(static_cast<std::size_t>(bm.size()));
    bm.increment(s, t, buf);
    dispatch(out.dtype(), [&](auto z) {
        using T = decltype(z);
        T* p = out.data<T>();
        for (std::size_t i = 0; i < buf.size(); ++i) p[i] = static_cast<T>(buf[i]);
    });
}

void axpy(Tensor& y, double alpha, const Tensor& x) {
    if (y.shape() != x.shape() || y.dtype() != x.dtype())
        throw ShapeError(fmt::format("internal: axpy of {} into {}", describe(x), describe(y)));
    const std::int64_t n = y.numel();
    dispatch(y.dtype(), [&](auto z) {
        using T = decltype(z);
        T* __restrict py = y.data<T>();
        const T* __restrict px = x.data<T>();
        const T a = static_cast<T>(alpha);
        for (std::int64_t i = 0; i < n; ++i) py[i] += a * px[i];
    });
}

void check_listed_parameters(const char* who, const std::vector<Parameter*>& params) {
    for (const Node* n : current_tape().nodes()) {
        if (!n->closure || std::strcmp(n->op, "parameter") != 0) continue;
        const auto* p = static_cast<const Parameter*>(n->closure);
        if (std::find(params.begin(), params.end(), p) != params.end()) continue;
        throw UsageError(fmt::format(
            "{}: f or g uses the trainable parameter '{}' {}, which the SDE's parameters() does not "
            "list, so its gradient would be lost; list it in parameters(), or build the SDE as a ModuleSDE "
            "(sde/module_sde.hpp), whose parameters() are its modules'",
            who, p->name(), describe(p->value())));
    }
}

std::vector<Parameter*> trainable_parameters(SDE& sde) {
    std::vector<Parameter*> out;
    for (Parameter* p : sde.parameters())
        if (p && p->trainable() && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    return out;
}

Tensor pack_outputs(const std::vector<Tensor>& states, const std::vector<Tensor>* costs, const Var& y0) {
    if (!costs) return stack_outputs(states, y0);
    const std::int64_t T = static_cast<std::int64_t>(states.size()), B = y0.dim(0), d = y0.dim(1);
    Tensor out = Tensor::arena_empty({T * B * d + T * B}, y0.dtype());
    const std::size_t esize = dtype_size(y0.dtype());
    auto* base = static_cast<std::byte*>(out.raw());
    for (std::int64_t i = 0; i < T; ++i) {
        Tensor::view(base + static_cast<std::size_t>(i * B * d) * esize, {B, d}, y0.dtype())
            .copy_from(states[static_cast<std::size_t>(i)]);
        Tensor::view(base + static_cast<std::size_t>(T * B * d + i * B) * esize, {B}, y0.dtype())
            .copy_from((*costs)[static_cast<std::size_t>(i)]);
    }
    return out;
}

Solution unpack_outputs(const Var& packed, std::int64_t T, std::int64_t B, std::int64_t d, bool has_cost) {
    if (!has_cost) return {packed, Var()};
    const std::int64_t n = T * B * d;
    return {reshape(slice(packed, 0, 0, n), Shape{T, B, d}),
            reshape(slice(packed, 0, n, n + T * B), Shape{T, B})};
}

void running_cost_vjp(RunningCost& cost, const std::vector<Parameter*>& params, double t, double dt,
                      const Tensor& y, const Tensor& dw, const Tensor& a_c, Tensor& a_y,
                      std::vector<Tensor>& a_theta) {
    NestedTape scope;
    Var yl = leaf(y);
    std::vector<Var> pv;
    pv.reserve(params.size());
    for (Parameter* p : params) pv.push_back(p->var());
    Var c = cost.increment(t, dt, yl, Var(dw));
    check_listed_parameters("the running cost (KL) of the adjoint or reversible_heun estimator", params);
    if (c.shape() != Shape{y.dim(0)} || c.dtype() != y.dtype())
        throw ShapeError(
            fmt::format("running cost: the increment at t = {} is {}, need [{}] of the state's dtype", t,
                        describe(c.value()), y.dim(0)));
    if (!node_of(c)) return;
    backward(c, a_c);
    axpy(a_y, 1.0, yl.grad());
    for (std::size_t k = 0; k < pv.size(); ++k) axpy(a_theta[k], 1.0, pv[k].grad());
}

Tensor time_slice(const Tensor& t, std::int64_t i) {
    const Shape s{t.dim(1), t.dim(2)};
    auto* base =
        static_cast<std::byte*>(t.raw()) + static_cast<std::size_t>(i) * s.numel() * dtype_size(t.dtype());
    return Tensor::view(base, s, t.dtype());
}

}  // namespace detail

}  // namespace sdeuq::sde
