// The derivative term of the diffusion, (g . grad) g, computed by the engine's differentiable derivatives
// (grad(..., {.create_graph = true}), autodiff/tape.hpp), and the Stratonovich form of an Ito SDE built
// from it. Used by the exact Milstein scheme (sde/solvers.cpp, "milstein_exact") and by the stochastic
// adjoint of Ito SDEs (sde/estimators/adjoint.cpp), which solves the Stratonovich adjoint of the
// Stratonovich form (docs/estimators.md, "Ito SDEs through the adjoint").
//
// For the noise types with a [batch, d] diffusion (the term of Milstein's scheme, KP §10.3):
//   diagonal  (g . grad) g = g_i dg_i/dy_i, computed as the VJP g^T dg/dy = sum_j g_j dg_j/dy_i. The two
//             agree when g_i depends on y_i only, the commutative diagonal noise that Milstein and the
//             order-1 Stratonovich schemes assume (torchsde makes the same convention and the same VJP).
//   scalar    (g . grad) g = sum_k g_k dg_i/dy_k = (dg/dy) g, a Jacobian-vector product, computed as the
//             VJP of a VJP: v(u) = u^T dg/dy is linear in u, and d<v(u), g>/du = (dg/dy) g.
// KP: Kloeden & Platen, "Numerical Solution of Stochastic Differential Equations", 1992.
#pragma once

#include "sde/sde.hpp"

namespace sdeuq::sde {

struct DiffusionDerivative {
    Var g;     // g(t, y) [batch, d]
    Var g_dg;  // (g . grad) g [batch, d]
};

// g(t, y) and (g . grad) g for diagonal or scalar noise (anything else: UsageError naming `who`).
// When recording (gradients on and y or a parameter of g on the current tape), both are on the tape and
// differentiable in y and the parameters: the derivative's own derivatives (second derivatives of g) reach
// backward(). Without a tape (NoGradScope: adjoint forward passes, inference) the derivative is taken on a
// nested tape and only its value is returned.
DiffusionDerivative diffusion_derivative(SDE& sde, double t, const Var& y, const char* who);

// The Stratonovich form of an Ito SDE with diagonal or scalar noise (the same process):
//     dY = (f - 1/2 (g . grad) g) dt + g o dW
// (the Ito-Stratonovich drift correction, KP §4.9). g, g_prod, the noise type, the Brownian dimension and the
// parameters are the Ito SDE's; only the drift changes, and it is differentiable (second derivatives of g
// included) for the adjoint's nested VJPs. The SDE must outlive this view.
class StratonovichForm final : public SDE {
public:
    explicit StratonovichForm(SDE& ito_sde);
    Noise noise() const override { return sde_->noise(); }
    Calculus calculus() const override { return Calculus::stratonovich; }
    std::int64_t brownian_dim(std::int64_t d) const override { return sde_->brownian_dim(d); }
    Var f(double t, const Var& y) override;
    Var g(double t, const Var& y) override { return sde_->g(t, y); }
    Var g_prod(double t, const Var& y, const Var& dw) override { return sde_->g_prod(t, y, dw); }

private:
    SDE* sde_;
};

// True when the SDE's stochastic adjoint must run on its Stratonovich form: Ito calculus with a
// y-dependent (diagonal or scalar) diffusion. Ito SDEs with additive noise equal their Stratonovich form.
bool needs_ito_correction(const SDE& sde);

}  // namespace sdeuq::sde
