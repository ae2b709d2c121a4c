// The reversible Heun estimator: the algebraically exact adjoint of Kidger, Foster, Li, Lyons 2021,
// "Efficient and Accurate Gradients for Neural SDEs", NeurIPS (Algorithm 2).
//
// Forward (the "reversible_heun" solver of sde/solvers.cpp, Algorithm 1), on grid times t_n, h_n =
// t_{n+1} - t_n, dW_n = W(t_n, t_{n+1}), with P(g, dW) the noise-type product g . dW:
//     z_{n+1} = 2 y_n - z_n + f_n h_n + P(g_n, dW_n)                  f_n = f(t_n, z_n), g_n = g(t_n, z_n)
//     y_{n+1} = y_n + (f_n + f_{n+1}) h_n / 2 + (P(g_n, dW_n) + P(g_{n+1}, dW_n)) / 2,     z_0 = y_0.
// Only (y_N, z_N) and the outputs at ts are kept. The inverse step (Algorithm 2), with the same dW_n:
//     z_n = 2 y_{n+1} - z_{n+1} - f_{n+1} h_n - P(g_{n+1}, dW_n)
//     y_n = y_{n+1} - (f_n + f_{n+1}) h_n / 2 - (P(g_n, dW_n) + P(g_{n+1}, dW_n)) / 2.
//
// Backward: the chain rule through the forward steps in reverse, one nested VJP per grid point. The
// cotangents carried are A_y, A_z (of y_n, z_n), A_f (of f_n) and C_n, the cotangent of the product
// P(g_n, dW_n) (so that g itself, [batch, d, m] for general noise, is never stored). At grid point j:
//     S_j = <f(t_j, z_j), A_f + h_{j-1} A_y / 2> + <P(g(t_j, z_j), dW_j), C_j>
//           + <P(g(t_j, z_j), dW_{j-1}), A_y / 2>
// is differentiated on a nested tape with respect to z_j and the parameters (c_z, c_theta); its forward
// values give f_j and the two products, with which y_j and then z_{j-1} are reconstructed. Then with
// A_z^ = A_z + c_z, back through step j-1 (the z_j and y_j equations above):
//     C_{j-1} = A_y / 2 + A_z^,  A_f = h_{j-1} C_{j-1},  A_y <- A_y + 2 A_z^,  A_z <- -A_z^
// and dL/dy_0 = A_y + A_z^ at j = 0 (z_0 = y_0). This is Algorithm 2 with the vjp of step n's f, g
// evaluation merged into the one that reconstructs (f_n, g_n): N + 1 VJPs of (f, g) for N steps, one
// fewer function evaluation per step than recomputing each step whole. The result is backprop through
// the solver's graph up to round-off (the reconstruction error of the inverse steps).
#include <fmt/format.h>

#include "autodiff/ops_fused.hpp"
#include "sde/estimators/estimators.hpp"

namespace sdeuq::sde {

namespace {

using detail::axpy;
using detail::StepGrid;
using detail::time_slice;

// y <- alpha y + beta x
void axpby(Tensor& y, double alpha, double beta, const Tensor& x) {
    const std::int64_t n = y.numel();
    dispatch(y.dtype(), [&](auto zz) {
        using T = decltype(zz);
        T* py = y.data<T>();  // may alias px (a_z <- -a_z)
        const T* px = x.data<T>();
        const T a = static_cast<T>(alpha), b = static_cast<T>(beta);
        for (std::int64_t i = 0; i < n; ++i) py[i] = a * py[i] + b * px[i];
    });
}

struct ReversibleHeunBackward {
    SDE* sde;
    RunningCost* cost;  // null without a running cost
    const BrownianPath* bm;
    StepGrid grid;
    std::vector<Parameter*> params;
    Node* y0_node;
    std::vector<Node*> param_nodes;
    Tensor y_end, z_end;  // heap: (y_N, z_N)

    void operator()(const Tensor& grad_packed) {
        const Shape s = y_end.shape();
        const DType dt_y = y_end.dtype();
        const std::int64_t T = static_cast<std::int64_t>(grid.output_index.size());
        // The node's gradient: the states' [T, batch, d], then (with a cost) the costs' [T, batch].
        const Tensor grad_out = Tensor::view(grad_packed.raw(), Shape{T, s[0], s[1]}, dt_y);
        auto grad_cost = [&](std::int64_t i) {
            auto* base = static_cast<std::byte*>(grad_packed.raw());
            const std::size_t off = static_cast<std::size_t>(T * s.numel() + i * s[0]) * dtype_size(dt_y);
            return Tensor::view(base + off, Shape{s[0]}, dt_y);
        };
        Tensor a_c = cost ? Tensor::zeros({s[0]}, dt_y) : Tensor();  // the cost's cotangent
        std::int64_t out_c = T - 1;
        auto add_cost_output = [&](std::size_t n) {
            if (cost && out_c >= 0 && grid.output_index[static_cast<std::size_t>(out_c)] == n) {
                axpy(a_c, 1.0, grad_cost(out_c));
                --out_c;
            }
        };
        const Noise noise = sde->noise();
        const std::int64_t m = sde->brownian_dim(s[1]);
        auto zeros = [&]() { return Tensor::zeros(s, dt_y); };
        Tensor y = y_end.clone(), z = z_end.clone();
        Tensor a_y = zeros(), a_z = zeros(), a_f = zeros(), c = zeros();
        Tensor af_hat = zeros(), half_ay = zeros(), cz = zeros();
        Tensor f_cur = zeros(), f_next = zeros(), pa_cur = zeros(), pb_cur = zeros(), pb_next = zeros();
        Tensor dw_j = Tensor::zeros({s[0], m}, dt_y), dw_jm1 = Tensor::zeros({s[0], m}, dt_y);
        std::vector<Tensor> a_theta;
        for (Parameter* p : params) a_theta.push_back(Tensor::zeros(p->value().shape(), p->value().dtype()));
        std::vector<double> buf;

        const auto& t = grid.times;
        const std::size_t N = t.size() - 1;
        std::int64_t out_i = static_cast<std::int64_t>(grid.output_index.size()) - 1;
        auto add_output = [&](std::size_t n) {
            if (out_i >= 0 && grid.output_index[static_cast<std::size_t>(out_i)] == n) {
                axpy(a_y, 1.0, time_slice(grad_out, out_i));
                --out_i;
            }
        };
        add_output(N);
        for (std::size_t j = N;; --j) {
            const double h_j = j < N ? t[j + 1] - t[j] : 0.0;
            const double h_jm1 = j > 0 ? t[j] - t[j - 1] : 0.0;
            if (j > 0) detail::brownian_into(*bm, t[j - 1], t[j], buf, dw_jm1);
            bool y_done = false;
            {
                // The one nested VJP of grid point j (see the header comment for S_j).
                NestedTape scope;
                Var zl = leaf(z);
                std::vector<Var> pv;
                pv.reserve(params.size());
                for (Parameter* p : params) pv.push_back(p->var());
                Var fz = sde->f(t[j], zl);
                Var gz = sde->g(t[j], zl);
                if (cost && j < N) {
                    // The running cost's step j is a function of y_j, whose cotangent A_y must be complete
                    // before S_j: reconstruct y_j first (from f_j and P(g_j, dW_j) just computed) and
                    // add the cost's VJP at y_j, c(t_j, h_j, y_j, dW_j), with cotangent a_c.
                    f_cur.copy_from(fz.value());
                    {
                        NoGradScope ng;
                        pa_cur.copy_from(diffusion_product(noise, gz, Var(dw_j)).value());
                    }
                    axpy(y, -0.5 * h_j, f_cur);
                    axpy(y, -0.5 * h_j, f_next);
                    axpy(y, -0.5, pa_cur);
                    axpy(y, -0.5, pb_next);
                    y_done = true;
                    detail::running_cost_vjp(*cost, params, t[j], h_j, y, dw_j, a_c, a_y, a_theta);
                }
                add_cost_output(j);
                af_hat.copy_from(a_f);
                half_ay.fill(0.0);
                if (j > 0) {
                    axpy(af_hat, 0.5 * h_jm1, a_y);
                    axpy(half_ay, 0.5, a_y);
                }
                Var total;
                if (noise == Noise::diagonal && gz.shape() == s && gz.dtype() == dt_y) {
                    // P(g, dW) = g o dW: the products and the cotangent of g, dW_j o C + dW_{j-1} o A_y / 2,
                    // in one pass, and S_j as one node (sum_products2, autodiff/ops_fused.hpp) instead of
                    // five products, two sums and a reduction. Same values and gradients, bit for bit.
                    Tensor cg = Tensor::arena_empty(s, dt_y);
                    dispatch(dt_y, [&](auto zz) {
                        using T = decltype(zz);
                        const std::int64_t n = cg.numel();
                        // Distinct buffers: __restrict lets the loops vectorise without alias checks.
                        const T* __restrict g = gz.value().data<T>();
                        T* __restrict out = cg.data<T>();
                        const T *__restrict wj = dw_j.data<T>(), *__restrict wm = dw_jm1.data<T>();
                        const T *__restrict cc = c.data<T>(), *__restrict ha = half_ay.data<T>();
                        T *__restrict pa = pa_cur.data<T>(), *__restrict pb = pb_cur.data<T>();
                        if (j < N && j > 0) {
                            for (std::int64_t i = 0; i < n; ++i) {
                                pa[i] = g[i] * wj[i];
                                pb[i] = g[i] * wm[i];
                                out[i] = ha[i] * wm[i] + cc[i] * wj[i];
                            }
                        } else if (j < N) {
                            for (std::int64_t i = 0; i < n; ++i) {
                                pa[i] = g[i] * wj[i];
                                out[i] = cc[i] * wj[i];
                            }
                        } else if (j > 0) {
                            for (std::int64_t i = 0; i < n; ++i) {
                                pb[i] = g[i] * wm[i];
                                out[i] = ha[i] * wm[i];
                            }
                        } else {
                            for (std::int64_t i = 0; i < n; ++i) out[i] = T(0);
                        }
                    });
                    total = sum_products2(fz, af_hat, gz, cg);
                } else {
                    Var sj = fz * Var(af_hat);
                    if (j < N) {
                        Var pa = diffusion_product(noise, gz, Var(dw_j));
                        pa_cur.copy_from(pa.value());
                        sj = sj + pa * Var(c);
                    }
                    if (j > 0) {
                        Var pb = diffusion_product(noise, gz, Var(dw_jm1));
                        pb_cur.copy_from(pb.value());
                        sj = sj + pb * Var(half_ay);
                    }
                    total = sum(sj);
                }
                f_cur.copy_from(fz.value());
                detail::check_listed_parameters("reversible_heun estimator", params);
                if (node_of(total)) {
                    backward(total);
                    cz.copy_from(zl.grad());
                    for (std::size_t k = 0; k < pv.size(); ++k) axpy(a_theta[k], 1.0, pv[k].grad());
                } else {
                    cz.fill(0.0);
                }
            }
            if (j < N && !y_done) {  // y_j from y_{j+1}
                axpy(y, -0.5 * h_j, f_cur);
                axpy(y, -0.5 * h_j, f_next);
                axpy(y, -0.5, pa_cur);
                axpy(y, -0.5, pb_next);
            }
            axpy(a_z, 1.0, cz);  // A_z^
            if (j == 0) {
                axpy(a_y, 1.0, a_z);
                break;
            }
            // Back through step j-1.
            c.copy_from(a_z);
            axpy(c, 0.5, a_y);
            a_f.copy_from(c);
            axpby(a_f, h_jm1, 0.0, c);
            axpy(a_y, 2.0, a_z);
            axpby(a_z, -1.0, 0.0, a_z);
            // z_{j-1} = 2 y_j - z_j - f_j h_{j-1} - P(g_j, dW_{j-1})
            axpby(z, -1.0, 2.0, y);
            axpy(z, -h_jm1, f_cur);
            axpy(z, -1.0, pb_cur);
            add_output(j - 1);
            std::swap(f_cur, f_next);
            std::swap(pb_cur, pb_next);
            std::swap(dw_j, dw_jm1);
        }
        if (y0_node) accumulate(y0_node, a_y);
        for (std::size_t k = 0; k < params.size(); ++k)
            if (param_nodes[k]) accumulate(param_nodes[k], a_theta[k]);
    }
};

}  // namespace

namespace {

Solution reversible_heun_solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
                               const SolveOptions& opt, RunningCost* cost, SolveStats* stats) {
    if (opt.adaptive)
        throw UsageError("reversible_heun estimator: adaptive steps are not supported (fixed dt only)");
    if (!opt.solver.empty() && !(opt.solver == SolverKind::reversible_heun))
        throw UsageError(
            fmt::format("reversible_heun estimator: it solves with the reversible Heun method; solver "
                        "'{}' was asked for (set SolveOptions::solver = \"reversible_heun\")",
                        opt.solver.name()));
    auto solver = make_solver("reversible_heun");
    if (!solver->supports(sde.noise(), sde.calculus()))
        throw UsageError(
            fmt::format("reversible_heun estimator: {} SDEs with {} noise are not supported (the "
                        "reversible Heun method converges to the Stratonovich solution)",
                        calculus_name(sde.calculus()), noise_name(sde.noise())));

    // Forward: the shared driver without a tape, on the fixed grid the backward pass inverts step by step.
    ForwardResult r;
    {
        NoGradScope no_grad;
        r = integrate(sde, *solver, Var(y0.value()), ts, bm, opt, false, stats, cost);
    }
    StepGrid grid = detail::fixed_step_grid(ts, opt.dt);

    const auto T = static_cast<std::int64_t>(ts.size());
    Tensor out = detail::pack_outputs(r.states, cost ? &r.cost_states : nullptr, y0);
    std::vector<Parameter*> params = detail::trainable_parameters(sde);
    std::vector<Var> inputs = detail::recorded_inputs(y0, params);
    if (inputs.empty()) {
        check_anomaly("sde_reversible_heun", out);
        return detail::unpack_outputs(Var(out), T, y0.dim(0), y0.dim(1), cost != nullptr);
    }
    // The solver's state is {z, f(z), g(z)} (sde/solvers.cpp); only z is needed to run backwards.
    if (r.final_solver_state.size() != 3)
        throw UsageError("internal: reversible_heun solver state is not {z, f(z), g(z)}");
    auto* closure = current_tape().arena().make<ReversibleHeunBackward>(ReversibleHeunBackward{
        &sde, cost, &bm, std::move(grid), params, node_of(y0), {}, r.states.back().clone(),
        r.final_solver_state[0]});
    for (std::size_t k = 0; k < params.size(); ++k) closure->param_nodes.push_back(node_of(inputs[k + 1]));
    BackwardFn fn = [](void* cl, const Tensor& g) { (*static_cast<ReversibleHeunBackward*>(cl))(g); };
    return detail::unpack_outputs(record_n("sde_reversible_heun", out, inputs, fn, closure), T, y0.dim(0),
                                  y0.dim(1), cost != nullptr);
}

}  // namespace

Var ReversibleHeunEstimator::solve(SDE& sde, const Var& y0, std::span<const double> ts,
                                   const BrownianPath& bm, const SolveOptions& opt, SolveStats* stats) {
    return reversible_heun_solve(sde, y0, ts, bm, opt, nullptr, stats).ys;
}

Solution ReversibleHeunEstimator::solve_with_cost(SDE& sde, const Var& y0, std::span<const double> ts,
                                                  const BrownianPath& bm, const SolveOptions& opt,
                                                  RunningCost& cost, SolveStats* stats) {
    return reversible_heun_solve(sde, y0, ts, bm, opt, &cost, stats);
}

}  // namespace sdeuq::sde
