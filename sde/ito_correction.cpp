// (g . grad) g by the engine's differentiable derivatives, and the Stratonovich form of an Ito SDE
// (sde/ito_correction.hpp).
#include "sde/ito_correction.hpp"

#include <fmt/format.h>

#include "autodiff/ops_fused.hpp"

namespace sdeuq::sde {

namespace {

void check_noise(const SDE& sde, const char* who) {
    if (sde.noise() != Noise::diagonal && sde.noise() != Noise::scalar)
        throw UsageError(fmt::format("{}: the derivative term (g . grad) g needs diagonal or scalar noise, "
                                     "not {}",
                                     who, noise_name(sde.noise())));
}

void check_g(const Var& g, const Var& y, const SDE& sde, const char* who) {
    if (g.shape() != y.shape() || g.dtype() != y.dtype())
        throw ShapeError(fmt::format("{}: g(t, y) is {}; {} noise needs the state's shape and dtype {}", who,
                                     describe(g.value()), noise_name(sde.noise()), describe(y.value())));
}

// (g . grad) g for g = g(t, y) recorded from y, which lives on the current tape (see the header for the
// two noise types). create_graph: the result is recorded too (differentiable again).
Var derivative_term(Noise noise, const Var& g, const Var& y, bool create_graph) {
    auto zeros = [&] { return Var(Tensor::arena_zeros(y.shape(), y.dtype())); };
    if (!node_of(g)) return zeros();  // g is a constant here: no derivative
    if (noise == Noise::diagonal) return grad(g, {y}, g, {.create_graph = create_graph})[0];
    // Scalar noise: the JVP (dg/dy) g as the VJP of the VJP v(u) = u^T dg/dy at u = 0 (v is linear in u).
    Var u = leaf(Tensor::arena_zeros(y.shape(), y.dtype()));
    Var v = grad(g, {y}, u, {.create_graph = true})[0];
    if (!node_of(v)) return zeros();  // v does not depend on u: dg/dy = 0
    return grad(v, {u}, g, {.create_graph = create_graph})[0];
}

}  // namespace

DiffusionDerivative diffusion_derivative(SDE& sde, double t, const Var& y, const char* who) {
    check_noise(sde, who);
    if (grad_enabled()) {
        Var yv = y;
        bool record = node_of(y) != nullptr;
        if (!record) {
            // y is a constant here (the first step of a solve from a constant y0): g still depends on the
            // tape through the parameters, if any is on it; a fresh leaf for y lets grad() differentiate in y.
            record = node_of(sde.g(t, y)) != nullptr;
            if (record) yv = leaf(y.value());
        }
        if (record) {
            Var g = sde.g(t, yv);
            check_g(g, yv, sde, who);
            return {g, derivative_term(sde.noise(), g, yv, true)};
        }
    }
    // Values only: the derivative on a nested tape, copied out to the caller's arena before it is freed.
    Tensor gv = Tensor::arena_empty(y.shape(), y.dtype());
    Tensor cv = Tensor::arena_empty(y.shape(), y.dtype());
    {
        EnableGradScope on;
        NestedTape scope;
        Var yl = leaf(y.value());
        Var g = sde.g(t, yl);
        check_g(g, yl, sde, who);
        Var c = derivative_term(sde.noise(), g, yl, false);
        gv.copy_from(g.value());
        cv.copy_from(c.value());
    }
    return {Var(gv), Var(cv)};
}

StratonovichForm::StratonovichForm(SDE& ito_sde) : sde_(&ito_sde) {
    add_parameters([this] { return sde_->parameters(); });
    if (ito_sde.calculus() != Calculus::ito)
        throw UsageError("StratonovichForm: the SDE is already in Stratonovich form");
    check_noise(ito_sde, "StratonovichForm");
}

Var StratonovichForm::f(double t, const Var& y) {
    Var fv = sde_->f(t, y);
    Var c = diffusion_derivative(*sde_, t, y, "StratonovichForm").g_dg;
    if (fv.shape() == c.shape() && fv.dtype() == c.dtype()) {
        const Var terms[2] = {fv, c};
        const double coeffs[2] = {1.0, -0.5};
        return lincomb(terms, coeffs);
    }
    return fv - c * 0.5;  // a mis-shaped f: the caller's shape check names it
}

bool needs_ito_correction(const SDE& sde) {
    return sde.calculus() == Calculus::ito && (sde.noise() == Noise::diagonal || sde.noise() == Noise::scalar);
}

}  // namespace sdeuq::sde
