// The KL path integral (logqp) of a posterior SDE against its prior; see sde/logqp.hpp for the formulas.
#include "sde/logqp.hpp"

#include <fmt/format.h>

#include "sde/adjoint.hpp"

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

// ---- the augmented SDE (plain estimator through any gradient estimator) ----

namespace {
Var state_part(const Var& z) { return slice(z, 1, 0, z.dim(1) - 1); }
Var zero_column(const Var& z) { return Var(Tensor::arena_zeros({z.dim(0), 1}, z.dtype())); }
}  // namespace

Var LogqpAugmentedSDE::f(double t, const Var& z) {
    Var y = state_part(z);
    Var u = sde_->u(t, y);
    std::vector<Var> parts{sde_->f(t, y), sum(u * u, {1}, true) * 0.5};
    return concat(parts, 1);
}

Var LogqpAugmentedSDE::g(double t, const Var& z) {
    std::vector<Var> parts{sde_->g(t, state_part(z)), zero_column(z)};
    return concat(parts, 1);
}

Var LogqpAugmentedSDE::g_prod(double t, const Var& z, const Var& dw) {
    std::vector<Var> parts{sde_->g_prod(t, state_part(z), dw), zero_column(z)};
    return concat(parts, 1);
}

// ---- the solve ----

namespace {

LogqpResult logqp_augmented(PosteriorPriorSDE& sde, const Var& y0, std::span<const double> ts,
                            const BrownianPath& bm, const SolveOptions& opt, KLEstimator estimator,
                            SolveStats* stats) {
    if (estimator != KLEstimator::plain)
        throw UsageError(
            fmt::format("sdeint_logqp: the {} KL estimator needs estimator \"backprop\" (got \"{}\"); "
                        "only the plain one is an ordinary augmented state",
                        kl_estimator_name(estimator), opt.estimator));
    // The wrapper must live as long as the estimator's node (its backward calls it): in the arena, freed
    // with the tape.
    auto* aug = current_tape().arena().make<LogqpAugmentedSDE>(sde);
    std::vector<Var> parts{y0, zero_column(y0)};
    Var z = sdeint(*aug, concat(parts, 1), ts, bm, opt, stats);  // [T, batch, d + 1]
    const std::int64_t d = y0.dim(1);
    return {slice(z, 2, 0, d), reshape(slice(z, 2, d, d + 1), Shape{z.dim(0), z.dim(1)})};
}

}  // namespace

LogqpResult sdeint_logqp(PosteriorPriorSDE& sde, const Var& y0, std::span<const double> ts,
                         const BrownianPath& bm, const SolveOptions& opt, KLEstimator estimator,
                         SolveStats* stats) {
    if (opt.estimator != "backprop") return logqp_augmented(sde, y0, ts, bm, opt, estimator, stats);
    if (opt.adaptive) throw UsageError("sdeint_logqp: adaptive steps are not supported (fixed dt only)");
    detail::check_solve_args("logqp", sde, y0, ts, bm);
    auto solver = make_solver(opt.solver);
    if (!solver->supports(sde.noise(), sde.calculus()) || solver->needs_levy_area())
        throw UsageError(fmt::format("sdeint_logqp: solver '{}' does not support {} SDEs with diagonal noise",
                                     opt.solver, calculus_name(sde.calculus())));
    const detail::StepGrid grid = detail::fixed_step_grid(ts, opt.dt);
    const std::int64_t batch = y0.dim(0), m = sde.brownian_dim(y0.dim(1));
    const DType dtype = y0.dtype();
    const bool record = grad_enabled();
    std::vector<double> buf;

    // One step from (y, lq) at grid index n: the logqp increment at the left point, then the solver step.
    auto advance = [&](std::size_t n, Var& y, Var& lq, SolverState& state) {
        const double t = grid.times[n], dt = grid.times[n + 1] - t;
        Tensor dw = Tensor::arena_empty({batch, m}, dtype);
        detail::brownian_into(bm, t, grid.times[n + 1], buf, dw);
        Var dwv(dw);
        Var u = sde.u(t, y);
        Var inc = sum(u * u, {1}) * (0.5 * dt);                                               // 1/2 |u|^2 dt
        if (estimator == KLEstimator::full) inc = inc + sum(u * dwv, {1});                    // + u . dW
        if (estimator == KLEstimator::stl) inc = inc + sum(sde.u_detached(t, y) * dwv, {1});  // + u~ . dW
        y = solver->step(sde, t, dt, y, dwv, Var(), state);
        lq = lq + inc;
    };

    std::vector<Var> out_y, out_lq;
    Var y = y0, lq(Tensor::arena_zeros({batch}, dtype));
    SolverState state;
    // Unrecorded: every step in a nested scope, the carry copied to heap buffers in between.
    Tensor y_heap, lq_heap;
    std::vector<Tensor> state_heap;
    auto keep = [&]() {
        y_heap = y_heap.defined() ? y_heap : Tensor::empty(y.shape(), dtype);
        y_heap.copy_from(y.value());
        y = Var(y_heap);
        lq_heap = lq_heap.defined() ? lq_heap : Tensor::empty(lq.shape(), dtype);
        lq_heap.copy_from(lq.value());
        lq = Var(lq_heap);
        state_heap.resize(state.vars.size());
        for (std::size_t k = 0; k < state.vars.size(); ++k) {
            const Tensor& v = state.vars[k].value();
            if (!state_heap[k].defined() || state_heap[k].shape() != v.shape())
                state_heap[k] = Tensor::empty(v.shape(), v.dtype());
            if (state_heap[k].raw() != v.raw()) state_heap[k].copy_from(v);
            state.vars[k] = Var(state_heap[k]);
        }
    };
    if (record) {
        solver->init(sde, grid.times[0], y, state);
    } else {
        NestedTape scope;
        solver->init(sde, grid.times[0], y, state);
        keep();
    }
    auto emit = [&]() {
        out_y.push_back(record ? y : Var(y.value().clone()));
        out_lq.push_back(record ? lq : Var(lq.value().clone()));
    };
    emit();
    std::size_t next_out = 1;
    for (std::size_t n = 0; n + 1 < grid.times.size(); ++n) {
        if (record) {
            advance(n, y, lq, state);
        } else {
            NestedTape scope;
            advance(n, y, lq, state);
            keep();
        }
        if (next_out < grid.output_index.size() && grid.output_index[next_out] == n + 1) {
            emit();
            ++next_out;
        }
    }
    if (stats) {
        *stats = SolveStats{};
        stats->steps = stats->solver_steps = static_cast<std::int64_t>(grid.times.size()) - 1;
    }
    if (!record) {  // heap copies into the current arena
        for (auto& v : out_y) v = Var(v.value().clone_arena());
        for (auto& v : out_lq) v = Var(v.value().clone_arena());
    }
    return {stack(out_y, 0), stack(out_lq, 0)};
}

}  // namespace sdeuq::sde
