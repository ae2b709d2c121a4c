// The shared forward loop (fixed and adaptive steps) and Brownian increments as tensors. The estimators
// and their registry are in sde/estimators/.
#include "sde/integrate.hpp"

#include "sde/estimators/estimators.hpp"  // detail::fixed_step_grid

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <mutex>
#include <optional>
#include <utility>


namespace sdeuq::sde {

namespace {

// What a step carries: the state and the solver's own state.
struct Carry {
    Var y;
    SolverState state;
    Var cost;  // [batch], with a running cost
};

// W(t) - W(s) (and H(s, t)) for the [batch, m] layout, into fresh arena tensors of dtype.
void increment_between(const BrownianPath& bm, double s, double t, std::int64_t batch, std::int64_t m,
                       DType dtype, Tensor& dw, Tensor* levy_h) {
    const std::int64_t n = batch * m;
    if (bm.size() != n)
        throw ShapeError(
            fmt::format("integrate: the Brownian path has {} coordinates, but [batch, m] = [{}, {}] "
                        "needs {}",
                        bm.size(), batch, m, n));
    if (!levy_h && dtype == DType::f32) {  // straight into float (the same bits as through doubles)
        dw = Tensor::arena_empty(Shape{batch, m}, dtype);
        bm.increment(s, t, std::span<float>(dw.data<float>(), static_cast<std::size_t>(n)));
        return;
    }
    // Scratch in doubles (the path's precision), converted once into the state dtype.
    thread_local std::vector<double> wbuf, hbuf;
    wbuf.resize(static_cast<std::size_t>(n));
    if (levy_h) {
        hbuf.resize(static_cast<std::size_t>(n));
        bm.increment_levy(s, t, wbuf, hbuf);
    } else {
        bm.increment(s, t, wbuf);
    }
    auto fill = [&](const std::vector<double>& src, Tensor& dst) {
        dst = Tensor::arena_empty(Shape{batch, m}, dtype);
        dispatch(dtype, [&](auto z) {
            using T = decltype(z);
            T* p = dst.data<T>();
            for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(src[static_cast<std::size_t>(i)]);
        });
    };
    fill(wbuf, dw);
    if (levy_h) fill(hbuf, *levy_h);
}

// Heap buffers of unrecorded solves kept per thread between solves (a few): allocating and freeing a
// solve's carry buffers every time made glibc hand the top of the heap back to the kernel and fault the
// pages in again at the next solve (measured: ~2% of the adjoint's time in the kernel, an adjoint
// backward solve holding states of 2 batch d + parameters elements).
struct BufferPool {
    static constexpr std::size_t kMax = 6;
    std::vector<Tensor> free;
};
thread_local BufferPool t_pool;

Tensor acquire(const Shape& s, DType dt) {
    for (auto it = t_pool.free.begin(); it != t_pool.free.end(); ++it)
        if (it->shape() == s && it->dtype() == dt) {
            Tensor t = std::move(*it);
            t_pool.free.erase(it);
            return t;
        }
    return Tensor::empty(s, dt);
}

void release(Tensor& t) {
    if (t.defined() && t_pool.free.size() < BufferPool::kMax) t_pool.free.push_back(std::move(t));
    t = Tensor();
}

// Heap copy of a tensor into a reusable buffer (reallocated only when the shape or dtype changes).
Tensor copy_to(const Tensor& src, Tensor& buf) {
    if (!src.defined()) return Tensor();
    if (!buf.defined() || buf.shape() != src.shape() || buf.dtype() != src.dtype()) {
        release(buf);
        buf = acquire(src.shape(), src.dtype());
    }
    buf.copy_from(src);
    return buf;
}

// Ping-pong heap storage of a Carry for unrecorded solves: the step's temporaries live in a NestedTape
// that is freed at the end of the step; only the new carry survives, here.
struct HeapCarry {
    Tensor y, cost;
    std::vector<Tensor> vars;
    HeapCarry() = default;
    HeapCarry(const HeapCarry&) = delete;
    HeapCarry& operator=(const HeapCarry&) = delete;
    ~HeapCarry() {
        release(y);
        release(cost);
        for (Tensor& v : vars) release(v);
    }
    Carry store(const Carry& c) {
        Carry out;
        out.y = Var(copy_to(c.y.value(), y));
        if (c.cost.value().defined()) out.cost = Var(copy_to(c.cost.value(), cost));
        vars.resize(c.state.vars.size());
        out.state.vars.reserve(vars.size());
        for (std::size_t i = 0; i < vars.size(); ++i)
            out.state.vars.emplace_back(copy_to(c.state.vars[i].value(), vars[i]));
        return out;
    }
};

void validate(SDE& sde, const Solver& solver, const Var& y0, std::span<const double> ts,
              const BrownianPath& bm, const SolveOptions& opt, bool allow_reverse) {
    const Noise noise = sde.noise();
    const Calculus calc = sde.calculus();
    if (!solver.supports(noise, calc))
        throw UsageError(
            fmt::format("integrate: solver '{}' does not support {} noise with {} calculus (see "
                        "docs/solvers.md for the solver table)",
                        solver.name(), noise_name(noise), calculus_name(calc)));
    if (y0.rank() != 2)
        throw ShapeError(fmt::format("integrate (solver '{}'): y0 must be [batch, d], got {}", solver.name(),
                                     describe(y0.value())));
    const std::int64_t batch = y0.dim(0), d = y0.dim(1);
    const std::int64_t m = sde.brownian_dim(d);
    if (bm.size() != batch * m)
        throw ShapeError(
            fmt::format("integrate (solver '{}', {} noise): the Brownian path has {} coordinates, but "
                        "y0 {} with m = {} Brownian dimensions needs batch * m = {}",
                        solver.name(), noise_name(noise), bm.size(), describe(y0.value()), m, batch * m));
    if (ts.empty()) throw UsageError(fmt::format("integrate (solver '{}'): ts is empty", solver.name()));
    const double tol = 1e-12 * (bm.t1() - bm.t0());
    const bool reverse = allow_reverse && ts.size() > 1 && ts[1] < ts[0];
    for (std::size_t i = 0; i < ts.size(); ++i) {
        if (!std::isfinite(ts[i]) || ts[i] < bm.t0() - tol || ts[i] > bm.t1() + tol)
            throw UsageError(
                fmt::format("integrate (solver '{}'): ts[{}] = {} is outside the Brownian path's "
                            "[{}, {}]",
                            solver.name(), i, ts[i], bm.t0(), bm.t1()));
        if (i > 0 && !(reverse ? ts[i] < ts[i - 1] : ts[i] > ts[i - 1]))
            throw UsageError(
                fmt::format("integrate (solver '{}'): ts must be strictly {}, but ts[{}] = {} "
                            "after ts[{}] = {}",
                            solver.name(), reverse ? "decreasing" : "increasing", i, ts[i], i - 1,
                            ts[i - 1]));
    }
    if (!(opt.dt > 0) || !std::isfinite(opt.dt))
        throw UsageError(fmt::format("integrate (solver '{}'): dt must be positive and finite, got {}",
                                     solver.name(), opt.dt));
    if (opt.adaptive) {
        if (!(opt.dt_min > 0) || !(opt.dt_max >= opt.dt_min) || !(opt.rtol >= 0) || !(opt.atol >= 0) ||
            !(opt.rtol > 0 || opt.atol > 0) || !(opt.safety > 0) || opt.max_steps < 1)
            throw UsageError(fmt::format(
                "integrate (solver '{}', adaptive): need 0 < dt_min <= dt_max, rtol, atol "
                ">= 0 not both 0, safety > 0, max_steps >= 1; got dt_min {}, dt_max {}, "
                "rtol {}, atol {}, safety {}, max_steps {}",
                solver.name(), opt.dt_min, opt.dt_max, opt.rtol, opt.atol, opt.safety, opt.max_steps));
        if (!(solver.strong_order(noise) > 0))
            throw UsageError(
                fmt::format("integrate: solver '{}' has no strong order for {} noise; cannot adapt",
                            solver.name(), noise_name(noise)));
    }
    if (solver.needs_levy_area() && !bm.options().levy_area)
        throw UsageError(
            fmt::format("integrate: solver '{}' needs the space-time Levy area; build the "
                        "BrownianPath with BrownianOptions::levy_area = true",
                        solver.name()));
}

// max_i |a_i - b_i| / (atol + rtol max(|y_i|, |b_i|)): the step-doubling error of an adaptive step.
double scaled_error(const Tensor& y, const Tensor& a, const Tensor& b, double atol, double rtol) {
    return dispatch(y.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* py = y.data<T>();
        const T* pa = a.data<T>();
        const T* pb = b.data<T>();
        double err = 0.0;
        for (std::int64_t i = 0; i < y.numel(); ++i) {
            const double scale = atol + rtol * std::max(std::abs(double(py[i])), std::abs(double(pb[i])));
            const double e = std::abs(double(pa[i]) - double(pb[i])) / scale;
            if (!(e <= err)) err = e;  // NaN propagates (and is rejected)
        }
        return err;
    });
}

}  // namespace

ForwardResult integrate(SDE& sde, Solver& solver, const Var& y0, std::span<const double> ts,
                        const BrownianPath& bm, const SolveOptions& opt, bool record, SolveStats* stats,
                        RunningCost* cost, IntegrateControl* control) {
    if (control && record) throw UsageError("internal: integrate() with an IntegrateControl records no tape");
    validate(sde, solver, y0, ts, bm, opt, control != nullptr);
    SolveStats local;
    SolveStats& st = stats ? *stats : local;
    st = SolveStats{};

    std::optional<NoGradScope> no_grad;
    if (!record && (!control || control->no_grad())) no_grad.emplace();
    const bool collect = !control || control->collect();
    // +1 forward, -1 for a reverse-time solve (decreasing ts, negative steps).
    const double dir = ts.size() > 1 && ts[1] < ts[0] ? -1.0 : 1.0;

    const std::int64_t batch = y0.dim(0), d = y0.dim(1);
    const std::int64_t m = sde.brownian_dim(d);
    const DType dtype = y0.dtype();
    const bool levy = solver.needs_levy_area();

    // One solver step over [s, t] from c.
    auto advance = [&](const Carry& c, double s, double t) {
        Tensor dw, h;
        increment_between(bm, s, t, batch, m, dtype, dw, levy ? &h : nullptr);
        Carry out{Var(), c.state, Var()};
        Var inc;
        if (cost) {  // at the left point (y_n, before the step)
            inc = cost->increment(s, t - s, c.y, Var(dw));
            if (inc.shape() != Shape{batch} || inc.dtype() != dtype)
                throw ShapeError(fmt::format("integrate: the running cost's increment at t = {} is {}, "
                                             "need [{}] of the state's dtype",
                                             s, describe(inc.value()), batch));
        }
        out.y = solver.step(sde, s, t - s, c.y, Var(dw), levy ? Var(h) : Var(), out.state);
        if (cost) out.cost = c.cost + inc;
        ++st.solver_steps;
        if (out.y.shape() != c.y.shape())
            throw ShapeError(fmt::format(
                "integrate: solver '{}' ({} noise) turned a state {} into {} at t = {}; "
                "check the shapes of f and g",
                solver.name(), noise_name(sde.noise()), describe(c.y.value()), describe(out.y.value()), s));
        return out;
    };

    HeapCarry ping, pong;
    HeapCarry* next_buf = &ping;
    // Unrecorded: the new carry is copied out of the step's NestedTape into the free heap buffer.
    auto keep = [&](const Carry& c) {
        if (record) return c;
        Carry out = next_buf->store(c);
        next_buf = next_buf == &ping ? &pong : &ping;
        return out;
    };

    // The hook sees the carried state (a heap buffer of `keep`: unrecorded solves only). If it changed the
    // state and the solver carries one of its own, that restarts from the new state.
    auto reached = [&](std::size_t steps, double t, std::ptrdiff_t output, Carry& c) {
        if (!control) return;
        Tensor y = c.y.value();
        if (!control->at_time(steps, t, output, y) || c.state.vars.empty()) return;
        NestedTape scope;
        Carry restart{c.y, SolverState{}, c.cost};
        solver.init(sde, t, restart.y, restart.state);
        c = keep(restart);
    };

    Carry cur;
    if (record) {
        cur.y = y0;
        if (cost) cur.cost = Var(Tensor::arena_zeros({batch}, dtype));
        solver.init(sde, ts[0], cur.y, cur.state);
    } else {
        NestedTape scope;
        Carry c;
        c.y = Var(y0.value());
        if (cost) c.cost = Var(Tensor::arena_zeros({batch}, dtype));
        solver.init(sde, ts[0], c.y, c.state);
        cur = keep(c);
    }

    std::vector<Var> outs_rec, costs_rec;
    std::vector<Tensor> outs_heap, costs_heap;
    auto emit = [&]() {
        if (!collect) return;
        if (record) {
            outs_rec.push_back(cur.y);
            if (cost) costs_rec.push_back(cur.cost);
        } else {
            outs_heap.push_back(cur.y.value().clone());
            if (cost) costs_heap.push_back(cur.cost.value().clone());
        }
    };
    reached(0, ts[0], 0, cur);
    emit();

    ForwardResult res;
    const double t0 = ts[0];
    double t = t0;

    if (!opt.adaptive) {
        // The grid t0 + k dt (multiplied, not accumulated) with the outputs inserted; the adjoints replay
        // exactly these steps backward (detail::fixed_step_grid is the one definition of it).
        // (An IntegrateControl may give the step times instead: the adjoint retraces the forward's.)
        const bool given = control && !control->step_times().empty();
        const detail::StepGrid grid =
            given ? detail::grid_from_times(ts, std::vector<double>(control->step_times().begin(),
                                                                    control->step_times().end()))
                  : detail::fixed_step_grid(ts, opt.dt);
        std::size_t j = 0;
        for (std::size_t i = 1; i < ts.size(); ++i) {
            for (; j < grid.output_index[i]; ++j) {
                t = grid.times[j];
                const double t_next = j + 1 < grid.times.size() ? grid.times[j + 1] : ts.back();
                res.step_times.push_back(t);
                if (record) {
                    cur = advance(cur, t, t_next);
                } else {
                    NestedTape scope;
                    cur = keep(advance(cur, t, t_next));
                }
                ++st.steps;
                t = t_next;
                reached(j + 1, t, j + 1 == grid.output_index[i] ? static_cast<std::ptrdiff_t>(i) : -1, cur);
            }
            emit();
        }
    } else {
        const double order = solver.strong_order(sde.noise());
        const double expo = -1.0 / (order + 0.5);
        double h = std::clamp(opt.dt, opt.dt_min, opt.dt_max);
        // Times every step must land on (IntegrateControl::step_times(); the adjoint's backward solve with a
        // running cost passes the forward's step points): a step is clipped at the next one, as at ts[i].
        const std::span<const double> stops =
            control ? control->step_times() : std::span<const double>();
        std::size_t next_stop = 0;
        for (std::size_t i = 1; i < ts.size(); ++i) {
            const double T_out = ts[i];
            while (dir > 0 ? t < T_out : t > T_out) {
                while (next_stop < stops.size() && (dir > 0 ? stops[next_stop] <= t : stops[next_stop] >= t))
                    ++next_stop;
                const double T = next_stop < stops.size() &&
                                         (dir > 0 ? stops[next_stop] < T_out : stops[next_stop] > T_out)
                                     ? stops[next_stop]
                                     : T_out;
                if (st.steps + st.rejected >= opt.max_steps)
                    throw UsageError(
                        fmt::format("integrate (solver '{}', adaptive): max_steps = {} reached at t = "
                                    "{} of [{}, {}] with h = {}",
                                    solver.name(), opt.max_steps, t, t0, ts.back(), h));
                double hh = h;
                bool clipped = false;
                if (dir > 0 ? t + hh >= T - 1e-8 * hh : t - hh <= T + 1e-8 * hh) {
                    hh = dir * (T - t);
                    clipped = true;
                }
                const double t_next = clipped ? T : t + dir * hh;
                const double t_mid = t + 0.5 * dir * hh;
                double err = 0.0;
                bool accept = false;
                auto attempt = [&]() {
                    Carry full = advance(cur, t, t_next);
                    Carry half = advance(advance(cur, t, t_mid), t_mid, t_next);
                    err = scaled_error(cur.y.value(), full.y.value(), half.y.value(), opt.atol, opt.rtol);
                    accept = err <= 1.0 || hh <= opt.dt_min * (1 + 1e-12);
                    if (accept) cur = keep(half);  // the two half steps: the more accurate solution
                };
                if (record) {
                    attempt();
                } else {
                    NestedTape scope;
                    attempt();
                }
                if (accept) {
                    if (!(err <= 1.0)) ++st.forced_accepts;
                    res.step_times.push_back(t);
                    ++st.steps;
                    t = t_next;
                    reached(static_cast<std::size_t>(st.steps), t,
                            t == T_out ? static_cast<std::ptrdiff_t>(i) : -1, cur);
                } else {
                    ++st.rejected;
                }
                const double factor =
                    err == 0.0 ? 5.0 : std::clamp(opt.safety * std::pow(err, expo), 0.2, 5.0);
                double h_new = std::isfinite(factor) ? hh * factor : hh * 0.2;
                // A step shortened only to land on T (an output or a stop) says nothing against the step
                // size it came from.
                if (accept && clipped) h_new = std::max(h_new, h);
                h = std::clamp(h_new, opt.dt_min, opt.dt_max);
            }
            emit();
        }
    }
    res.step_times.push_back(t);

    if (!collect) {
        res.final_state = cur.y.value().clone_arena();
    } else if (record) {
        for (auto& v : outs_rec) res.states.push_back(v.value());
        res.stacked = stack(outs_rec, 0);
        if (cost) {
            for (auto& v : costs_rec) res.cost_states.push_back(v.value());
            res.cost_stacked = stack(costs_rec, 0);
        }
    } else {
        std::vector<Var> vs;
        for (auto& o : outs_heap) {
            res.states.push_back(o.clone_arena());
            vs.emplace_back(res.states.back());
        }
        res.stacked = stack(vs, 0);
        if (cost) {
            std::vector<Var> cs;
            for (auto& o : costs_heap) {
                res.cost_states.push_back(o.clone_arena());
                cs.emplace_back(res.cost_states.back());
            }
            res.cost_stacked = stack(cs, 0);
        }
        for (const Var& v : cur.state.vars) res.final_solver_state.push_back(v.value().clone());
        res.final_state = cur.y.value().clone_arena();
    }
    return res;
}

}  // namespace sdeuq::sde
