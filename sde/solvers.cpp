// The solver steps, written with the engine's ops so that the tape can differentiate through them.
//
// Notation: h = dt, dW = W(t + h) - W(t), g.dW = SDE::g_prod (the noise-type product of sde/sde.hpp).
// Strong orders are those of Kloeden & Platen (KP), "Numerical Solution of Stochastic Differential
// Equations" (1992), and of Diffrax's SDE solver table; the measured ones are in docs/solvers.md.
#include "sde/solvers.hpp"

#include <cmath>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <initializer_list>
#include <span>

#include "autodiff/ops_fused.hpp"
#include "sde/ito_correction.hpp"

namespace sdeuq::sde {

void Solver::init(SDE&, double, const Var&, SolverState&) {}

namespace {

// sum_i c_i x_i (left to right) as one tape node (lincomb, autodiff/ops_fused.hpp: the same bits as the
// plain ops) when the terms agree in shape and dtype; otherwise the plain, broadcasting ops, so that a
// mis-shaped f or g reaches the integrator's shape check (which names the solver and the SDE) rather than
// failing here.
Var combine_n(std::initializer_list<Var> xs, std::initializer_list<double> cs) {
    const Var& x0 = *xs.begin();
    bool same = true;
    for (const Var& x : xs) same = same && x.shape() == x0.shape() && x.dtype() == x0.dtype();
    if (same)
        return lincomb(std::span<const Var>(xs.begin(), xs.size()),
                       std::span<const double>(cs.begin(), cs.size()));
    auto c = cs.begin();
    Var out;
    for (const Var& x : xs) {
        Var term = *c == 1.0 ? x : x * *c;
        out = out.value().defined() ? out + term : term;
        ++c;
    }
    return out;
}

// Euler-Maruyama (KP §10.2): y' = y + f(t, y) h + g(t, y).dW.
// Converges to the Ito solution: strong order 0.5, 1.0 for additive noise (KP §10.2).
class Euler final : public Solver {
public:
    SolverKind kind() const override { return SolverKind::euler; }
    Var step(SDE& sde, double t, double dt, const Var& y, const Var& dw, const Var&, SolverState&) override {
        if (sde.fused_increment()) return combine_n({y, sde.increment(t, dt, y, dw)}, {1.0, 1.0});
        return combine_n({y, sde.f(t, y), sde.g_prod(t, y, dw)}, {1.0, dt, 1.0});
    }
};

// Milstein, derivative free, for diagonal and scalar noise. The Milstein correction
// 1/2 (g . grad) g (dW^2 - h) (Ito) or 1/2 (g . grad) g dW^2 (Stratonovich) needs the derivative of g;
// here it is a finite difference of g along g:
//   Ito (KP §11.1, Platen's explicit order 1.0 strong scheme): y_bar = y + f h + g sqrt|h|,
//     y' = y + f h + g dW + (g(y_bar) - g(y)) / (2 sqrt|h|) (dW^2 - |h|).
//     The forward difference is (g . grad) g + O(sqrt|h|), but it multiplies dW^2 - |h|, which has mean 0:
//     the O(|h|^1.5) local error is a martingale increment and the global error stays O(h).
//     (|h| rather than h keeps E[dW^2 - |h|] = 0 in reverse-time solves, h < 0.)
//   Stratonovich: y_pm = y +- g sqrt|h|,
//     y' = y + f h + g dW + (g(y_+) - g(y_-)) / (4 sqrt|h|) dW^2.
//     Here dW^2 has mean |h|, so a forward difference's O(sqrt|h|) error would bias every step by
//     O(|h|^1.5) and the global error would be O(sqrt h) (measured: slope 0.50 on GBM). The central
//     difference is (g . grad) g + O(|h|): local bias O(h^2), global order 1.0.
// The finite differences are ordinary evaluations of g, so the tape differentiates them like any op; the
// scheme with the exact derivative is MilsteinExact below.
// For diagonal noise, (g(y + g s) - g(y))_i ~= sum_j dg_i/dy_j g_j s is g_i dg_i/dy_i s when g_i depends
// on y_i only (the commutative case Milstein is exact for); for scalar noise it is the directional
// derivative (g . grad) g that the scalar-noise Milstein scheme needs.
class Milstein final : public Solver {
public:
    SolverKind kind() const override { return SolverKind::milstein; }
    Var step(SDE& sde, double t, double dt, const Var& y, const Var& dw, const Var&, SolverState&) override {
        if (sde.fused_increment()) return product_form(sde, t, dt, y, dw);
        const double sq = std::sqrt(std::abs(dt));
        Var fh = sde.f(t, y) * dt;
        Var g = sde.g(t, y);
        Var dw2 = dw * dw;
        Var correction;
        if (sde.calculus() == Calculus::ito) {
            Var y_bar = y + fh + g * sq;
            correction = (sde.g(t, y_bar) - g) * (dw2 - std::abs(dt)) * (0.5 / sq);
        } else {
            Var gs = g * sq;
            correction = (sde.g(t, y + gs) - sde.g(t, y - gs)) * dw2 * (0.25 / sq);
        }
        // g * dw broadcasts over d for scalar noise (dw [batch, 1]), elementwise for diagonal noise.
        return y + fh + g * dw + correction;
    }

private:
    // For an SDE whose diffusion exists only as the product G(y) dW (the adjoint SDE, sde/adjoint_sde.hpp:
    // its G is [D, batch m]), Stratonovich. With v = G(y) dW, the commutative-noise correction
    // 1/2 sum_jk (G_j . grad) G_k dW_j dW_k is 1/2 the derivative of y -> G(y) dW along v, taken as a
    // central difference of step v (its error O(|v|^3 |dW|) = O(h^2) a step):
    //   y' = y + f h + G(y) dW + (G(y + v) dW - G(y - v) dW) / 4.
    // Three products and one drift a step (the adjoint: three VJPs and one fused one).
    static Var product_form(SDE& sde, double t, double dt, const Var& y, const Var& dw) {
        if (sde.calculus() != Calculus::stratonovich)
            throw UsageError(
                "milstein: the product form (an SDE with fused_increment()) is Stratonovich only");
        Var v = sde.g_prod(t, y, dw);
        Var phi = sde.increment(t, dt, y, dw);
        Var gp = sde.g_prod(t, combine_n({y, v}, {1.0, 1.0}), dw);
        Var gm = sde.g_prod(t, combine_n({y, v}, {1.0, -1.0}), dw);
        return combine_n({y, phi, gp, gm}, {1.0, 1.0, 0.25, -0.25});
    }
};

// Milstein with the exact derivative term (KP §10.3; one Brownian motion per component, or one for all):
//   Ito:           y' = y + f h + g dW + 1/2 (g . grad) g (dW^2 - |h|)
//   Stratonovich:  y' = y + f h + g dW + 1/2 (g . grad) g dW^2
// with (g . grad) g from the engine's derivatives (diffusion_derivative, sde/ito_correction.hpp: a VJP for
// diagonal noise, a JVP for scalar noise), recorded with create_graph when a tape records, so that
// backprop through the solver differentiates the term too (second derivatives of g). One g evaluation
// and one or two derivative sweeps per step instead of the derivative-free scheme's extra g evaluations.
// Strong order 1.0 for commutative (diagonal, scalar) noise, as the derivative-free scheme, with no
// O(sqrt h) difference error in the correction.
class MilsteinExact final : public Solver {
public:
    SolverKind kind() const override { return SolverKind::milstein_exact; }
    Var step(SDE& sde, double t, double dt, const Var& y, const Var& dw, const Var&, SolverState&) override {
        Var fh = sde.f(t, y) * dt;
        DiffusionDerivative d = diffusion_derivative(sde, t, y, "milstein_exact");
        Var dw2 = dw * dw;
        // |h| keeps E[dW^2 - |h|] = 0 in reverse-time solves (h < 0), as in Milstein above.
        Var correction = sde.calculus() == Calculus::ito ? d.g_dg * (dw2 - std::abs(dt)) * 0.5
                                                         : d.g_dg * dw2 * 0.5;
        // g * dw broadcasts over d for scalar noise (dw [batch, 1]), elementwise for diagonal noise.
        return y + fh + d.g * dw + correction;
    }
};

// SRA1 of Roessler, "Runge-Kutta methods for the strong approximation of solutions of stochastic
// differential equations", SIAM J. Numer. Anal. 48(3), 2010, §6 (additive noise, strong order 1.5).
// Two stages; the tableau (c0, A0, B0, alpha; c1, beta1, beta2):
//   c0 = (0, 3/4),  A0[1][0] = 3/4,  B0[1][0] = 3/2,  alpha = (1/3, 2/3),
//   c1 = (1, 0),    beta1 = (1, 0),  beta2 = (-1, 1).
// With I = dW and Z = I_(1,0) / h = (1/h) int_t^{t+h} (W(u) - W(t)) du:
//   H1 = y,  H2 = y + 3/4 f(t, y) h + 3/2 g(t + h) Z
//   y' = y + (1/3 f(t, H1) + 2/3 f(t + 3/4 h, H2)) h + g(t + h) (I - Z) + g(t) Z.
// The space-time Levy area H of BrownianPath::increment_levy gives Z = dW / 2 + H (from its definition
// H = I_(1,0) / h - dW / 2; the same identity holds for h < 0 with H as the path returns it).
// Order conditions this satisfies (checked by hand against the Ito-Taylor expansion, KP §5.5): drift
// weights sum to 1; 2/3 * 3/4 = 1/2 for the h^2/2 terms (f_t + f' f); the 2/3 * 3/2 = 1 coefficient
// of f' g I_(1,0); g(t+h) I - (g(t+h) - g(t)) Z = g I + g_t (h I - I_(1,0)) + O(h^2) = g I + g_t I_(0,1).
class SRA1 final : public Solver {
public:
    SolverKind kind() const override { return SolverKind::srk; }
    Var step(SDE& sde, double t, double dt, const Var& y, const Var& dw, const Var& levy_h,
             SolverState&) override {
        Var z = dw * 0.5 + levy_h;
        Var gz_end = sde.g_prod(t + dt, y, z);   // g(t + h) Z
        Var gw_end = sde.g_prod(t + dt, y, dw);  // g(t + h) I
        Var gz_start = sde.g_prod(t, y, z);      // g(t) Z
        Var f1 = sde.f(t, y);
        Var h2 = y + f1 * (0.75 * dt) + gz_end * 1.5;
        Var f2 = sde.f(t + 0.75 * dt, h2);
        return y + (f1 * (1.0 / 3.0) + f2 * (2.0 / 3.0)) * dt + (gw_end - gz_end) + gz_start;
    }
};

// Stratonovich Heun (the stochastic trapezoidal rule; Ruemelin, "Numerical treatment of stochastic
// differential equations", SIAM J. Numer. Anal. 19(3), 1982: explicit RK schemes converge to Stratonovich):
//   y_bar = y + f(t, y) h + g(t, y).dW
//   y'    = y + (f(t, y) + f(t + h, y_bar)) h / 2 + (g(t, y) + g(t + h, y_bar)).dW / 2.
// Strong order 0.5 in general, 1.0 for commutative and additive noise (Diffrax's table).
class Heun final : public Solver {
public:
    SolverKind kind() const override { return SolverKind::heun; }
    Var step(SDE& sde, double t, double dt, const Var& y, const Var& dw, const Var&, SolverState&) override {
        if (sde.fused_increment()) {  // the same scheme with phi = f h + g.dW from one call
            Var phi0 = sde.increment(t, dt, y, dw);
            Var phi1 = sde.increment(t + dt, dt, combine_n({y, phi0}, {1.0, 1.0}), dw);
            return combine_n({y, phi0, phi1}, {1.0, 0.5, 0.5});
        }
        Var f0 = sde.f(t, y);
        Var gw0 = sde.g_prod(t, y, dw);
        Var y_bar = combine_n({y, f0, gw0}, {1.0, dt, 1.0});
        Var f1 = sde.f(t + dt, y_bar);
        Var gw1 = sde.g_prod(t + dt, y_bar, dw);
        // y + f0 h/2 + f1 h/2 + gw0/2 + gw1/2 as one node (rounded term by term, left to right).
        return combine_n({y, f0, f1, gw0, gw1}, {1.0, 0.5 * dt, 0.5 * dt, 0.5, 0.5});
    }
};

// Stratonovich midpoint rule:
//   y_mid = y + f(t, y) h / 2 + g(t, y).dW / 2,   y' = y + f(t + h/2, y_mid) h + g(t + h/2, y_mid).dW.
// Strong order 0.5 in general, 1.0 for commutative and additive noise (Diffrax's table).
class Midpoint final : public Solver {
public:
    SolverKind kind() const override { return SolverKind::midpoint; }
    Var step(SDE& sde, double t, double dt, const Var& y, const Var& dw, const Var&, SolverState&) override {
        const double tm = t + 0.5 * dt;
        if (sde.fused_increment()) {  // the same scheme with phi = f h + g.dW from one call
            Var y_mid = combine_n({y, sde.increment(t, dt, y, dw)}, {1.0, 0.5});
            return combine_n({y, sde.increment(tm, dt, y_mid, dw)}, {1.0, 1.0});
        }
        // One tape node each for y + a f + b g.dW (combine_n() above).
        Var y_mid = combine_n({y, sde.f(t, y), sde.g_prod(t, y, dw)}, {1.0, 0.5 * dt, 0.5});
        return combine_n({y, sde.f(tm, y_mid), sde.g_prod(tm, y_mid, dw)}, {1.0, dt, 1.0});
    }
};

// Reversible Heun, Kidger, Foster, Li, Lyons, "Efficient and Accurate Gradients for Neural SDEs",
// NeurIPS 2021, Algorithm 1. The state is (y, z, f(z), g(z)):
//   z'  = 2 y - z + f(t, z) h + g(t, z).dW
//   y'  = y + (f(t, z) + f(t + h, z')) h / 2 + (g(t, z) + g(t + h, z')).dW / 2
// One f and one g evaluation per step; the step can be inverted exactly (the reversible-Heun adjoint in
// sde/estimators/reversible_heun.cpp). SolverState.vars = {z, f(t, z), g(t, z)} (g as a value, not a
// product, since the next step multiplies it by its own dW). Strong order 0.5 in general, 1.0 for additive noise
// (Kidger et al. 2021), 1.0 for commutative noise (Diffrax's table; measured here).
class ReversibleHeun final : public Solver {
public:
    SolverKind kind() const override { return SolverKind::reversible_heun; }
    void init(SDE& sde, double t0, const Var& y0, SolverState& state) override {
        if (sde.fused_increment()) {  // only z: see step()
            state.vars = {y0};
            return;
        }
        state.vars = {y0, sde.f(t0, y0), sde.g(t0, y0)};
    }
    Var step(SDE& sde, double t, double dt, const Var& y, const Var& dw, const Var&,
             SolverState& state) override {
        if (sde.fused_increment() && state.vars.size() == 1) {
            // An SDE whose diffusion exists only as a product (the adjoint SDE): g(t, z) cannot be carried
            // to the next step's dW, so phi(z) = f(t, z) h + g(t, z).dW is evaluated again with this
            // step's dW (two fused evaluations a step, as heun): the same scheme.
            const Var& z = state.vars[0];
            Var phi0 = sde.increment(t, dt, z, dw);
            Var z1 = combine_n({y, z, phi0}, {2.0, -1.0, 1.0});
            Var phi1 = sde.increment(t + dt, dt, z1, dw);
            state.vars = {z1};
            return combine_n({y, phi0, phi1}, {1.0, 0.5, 0.5});
        }
        if (state.vars.size() != 3)
            throw UsageError(
                fmt::format("reversible_heun: step at t = {} without init() (state holds {} "
                            "values, expected z, f(z), g(z))",
                            t, state.vars.size()));
        const Noise noise = sde.noise();
        const Var& z = state.vars[0];
        const Var& f0 = state.vars[1];
        const Var& g0 = state.vars[2];
        Var gw0 = diffusion_product(noise, g0, dw);
        // One node each (combine_n): z1 has the bits of 2 y - z + f0 h + gw0 written with the plain ops; y1
        // is rounded term by term, left to right.
        Var z1 = combine_n({y, z, f0, gw0}, {2.0, -1.0, dt, 1.0});
        Var f1 = sde.f(t + dt, z1);
        Var g1 = sde.g(t + dt, z1);
        Var y1 = combine_n({y, f0, f1, gw0, diffusion_product(noise, g1, dw)},
                           {1.0, 0.5 * dt, 0.5 * dt, 0.5, 0.5});
        state.vars = {z1, f1, g1};
        return y1;
    }
};

template <class S>
std::unique_ptr<Solver> make() {
    return std::make_unique<S>();
}

// The solver table (docs/solvers.md has the measured orders). Orders by noise: general, commutative
// (diagonal, scalar), additive; 0 = not supported. ito / stratonovich: the calculus the scheme converges
// to for non-additive noise (for additive noise the two coincide and every scheme accepts either).
// clang-format off
constexpr SolverInfo kSolvers[] = {
    // kind                       name               ito    strat  general comm additive levy   factory
    {SolverKind::euler,           "euler",           true,  false, 0.5,    0.5, 1.0,     false, make<Euler>},
    {SolverKind::milstein,        "milstein",        true,  true,  0.0,    1.0, 0.0,     false,
     make<Milstein>},
    {SolverKind::milstein_exact,  "milstein_exact",  true,  true,  0.0,    1.0, 0.0,     false,
     make<MilsteinExact>},
    {SolverKind::srk,             "srk",             true,  true,  0.0,    0.0, 1.5,     true,  make<SRA1>},
    {SolverKind::heun,            "heun",            false, true,  0.5,    1.0, 1.0,     false, make<Heun>},
    {SolverKind::midpoint,        "midpoint",        false, true,  0.5,    1.0, 1.0,     false,
     make<Midpoint>},
    {SolverKind::reversible_heun, "reversible_heun", false, true,  0.5,    1.0, 1.0,     false,
     make<ReversibleHeun>},
};
// clang-format on

}  // namespace

double SolverInfo::strong_order(Noise noise) const {
    switch (noise) {
        case Noise::general: return order_general;
        case Noise::diagonal:
        case Noise::scalar: return order_commutative;
        case Noise::additive: return order_additive;
    }
    return 0.0;
}

bool SolverInfo::supports(Noise noise, Calculus calculus) const {
    if (!(strong_order(noise) > 0)) return false;
    return noise == Noise::additive || (calculus == Calculus::ito ? ito : stratonovich);
}

std::span<const SolverInfo> solver_table() { return kSolvers; }

const SolverInfo& solver_info(SolverKind kind) {
    for (const SolverInfo& s : kSolvers)
        if (s.kind == kind) return s;
    throw UsageError("solver_info: unknown solver kind");
}

const SolverInfo* find_solver(std::string_view name) {
    for (const SolverInfo& s : kSolvers)
        if (name == s.name) return &s;
    return nullptr;
}

std::vector<std::string> solver_names() {
    std::vector<std::string> out;
    for (const SolverInfo& s : kSolvers) out.emplace_back(s.name);
    return out;
}

SolverChoice::SolverChoice(const char* name) {
    if (!name || !*name) return;  // unset
    const SolverInfo* s = find_solver(name);
    if (!s)
        throw UsageError(
            fmt::format("unknown solver '{}'; allowed: {}", name, fmt::join(solver_names(), ", ")));
    kind_ = s->kind;
    set_ = true;
}

std::unique_ptr<Solver> make_solver(const SolverChoice& choice) {
    return solver_info(choice.kind_or(SolverKind::euler)).make();
}

std::unique_ptr<Solver> make_solver(SolverKind kind) { return solver_info(kind).make(); }

}  // namespace sdeuq::sde
