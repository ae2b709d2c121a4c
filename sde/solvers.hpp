// Solver steps. A solver is a step function plus its strong order by noise type; the driver loop
// (sde/integrate.hpp) is shared by all of them, as in torchsde and Diffrax.
//
// Every step is written with the engine's ops (sde/solvers.cpp), so the tape differentiates through it
// (the "backprop" estimator) and the same code runs without a tape (adjoint forward passes). No solver
// writes into a tensor it was given: a SolverState copied before a step is a snapshot (the adaptive
// driver's step doubling relies on that).
//
// Solvers, calculus and strong order (theory; measured values in docs/solvers.md):
//   name             calculus          general  commutative (diagonal, scalar)  additive
//   euler            Ito               0.5      0.5                             1.0
//   milstein         Ito and Strat.    -        1.0                             -
//   milstein_exact   Ito and Strat.    -        1.0                             -
//   srk              either (additive) -        -                               1.5
//   heun             Stratonovich      0.5      1.0                             1.0
//   midpoint         Stratonovich      0.5      1.0                             1.0
//   reversible_heun  Stratonovich      0.5      1.0                             1.0
// For additive noise the Ito and Stratonovich solutions coincide, so every solver accepts either calculus
// there. "-": the noise type is not supported (strong_order returns 0).
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <string>
#include <vector>

#include "sde/sde.hpp"

namespace sdeuq::sde {

// State a solver carries from step to step (reversible Heun: z and the last f, g evaluations).
struct SolverState {
    std::vector<Var> vars;
};

enum class SolverKind { euler, milstein, srk, heun, midpoint, reversible_heun, milstein_exact };

class Solver;

// One row of the solver table (sde/solvers.cpp): what a solver supports, as data.
struct SolverInfo {
    SolverKind kind;
    const char* name;
    // The calculus the scheme converges to for non-additive noise (additive: the two coincide).
    bool ito, stratonovich;
    // Theoretical strong order by noise type (diagonal and scalar noise are commutative), 0 where the
    // noise type is not supported. Documented in docs/solvers.md, measured by tests/test_solvers.cpp and
    // experiments/sde_convergence.cpp; the adaptive driver uses it in its step-size controller.
    double order_general, order_commutative, order_additive;
    bool levy_area;  // needs the space-time Levy area of the Brownian path
    std::unique_ptr<Solver> (*make)();

    double strong_order(Noise noise) const;
    bool supports(Noise noise, Calculus calculus) const;
};
std::span<const SolverInfo> solver_table();
const SolverInfo& solver_info(SolverKind kind);
const SolverInfo* find_solver(std::string_view name);  // null if unknown

class Solver {
public:
    virtual ~Solver() = default;
    virtual SolverKind kind() const = 0;
    const SolverInfo& info() const { return solver_info(kind()); }
    std::string name() const { return info().name; }
    bool supports(Noise noise, Calculus calculus) const { return info().supports(noise, calculus); }
    double strong_order(Noise noise) const { return info().strong_order(noise); }
    bool needs_levy_area() const { return info().levy_area; }
    // Called once at the initial time before the first step (default: nothing to carry).
    virtual void init(SDE& sde, double t0, const Var& y0, SolverState& state);
    // y(t + dt) from y(t). dw = W(t + dt) - W(t) [batch, m]; levy_h the space-time Levy area H(t, t+dt)
    // (same shape, undefined unless needs_levy_area()). dt may be negative (reverse-time solves).
    virtual Var step(SDE& sde, double t, double dt, const Var& y, const Var& dw, const Var& levy_h,
                     SolverState& state) = 0;
};

// "euler" (Euler-Maruyama), "milstein" (derivative-free, Ito or Stratonovich by the SDE's calculus),
// "milstein_exact" (Milstein with (g . grad) g from the engine's derivatives, Ito or Stratonovich),
// "srk" (Roessler's SRA1, strong order 1.5, additive noise), "heun" (Stratonovich), "midpoint"
// (Stratonovich), "reversible_heun". Unknown names: UsageError listing the allowed ones.
// A solver choice (SolveOptions::solver): a row of the table, or unset. Made from a SolverKind or from a
// name; an unknown name is a UsageError at once, listing the allowed ones ("" is unset). Unset means each
// estimator's default: euler for backprop and the adjoint (as the old default string "euler" did), the
// reversible Heun method for reversible_heun, which rejects any other explicit choice (the old string
// could not tell "euler" from unset, so asking reversible Heun for euler silently ran reversible Heun).
class SolverChoice {
public:
    SolverChoice() = default;
    SolverChoice(SolverKind kind) : kind_(kind), set_(true) {}  // NOLINT(implicit): opt.solver = kind
    SolverChoice(const char* name);                              // NOLINT(implicit): opt.solver = "heun"
    SolverChoice(const std::string& name) : SolverChoice(name.c_str()) {}  // NOLINT(implicit)
    bool empty() const { return !set_; }
    void clear() { set_ = false; }
    SolverKind kind_or(SolverKind fallback) const { return set_ ? kind_ : fallback; }
    std::string name() const { return set_ ? solver_info(kind_).name : ""; }
    friend bool operator==(const SolverChoice& a, const SolverChoice& b) {
        return a.set_ == b.set_ && (!a.set_ || a.kind_ == b.kind_);
    }

private:
    SolverKind kind_ = SolverKind::euler;
    bool set_ = false;
};

// The chosen solver (unset: euler). Unknown names: UsageError listing the allowed ones.
std::unique_ptr<Solver> make_solver(const SolverChoice& choice);
std::unique_ptr<Solver> make_solver(SolverKind kind);
std::vector<std::string> solver_names();

}  // namespace sdeuq::sde
