// The stochastic adjoint of an SDE, written as an SDE (as torchsde's AdjointSDE), so that the adjoint's
// backward pass is integrate() (sde/integrate.hpp) running over decreasing times with any of the
// Stratonovich solvers, fixed or adaptive steps, instead of hand-written backward steps.
//
// For dY = f(t, Y) dt + g(t, Y) o dW and the parameters theta of f and g, the augmented state
// X = (y, a, a_theta) solves, from T back to t0 on the same Brownian path (Li, Wong, Chen, Duvenaud 2020,
// "Scalable Gradients for Stochastic Differential Equations", AISTATS, Eq. (14)-(15), Stratonovich form):
//     dy       =  f dt                + g o dW
//     da       = -a^T df/dy dt        - a^T d(g o dW)/dy
//     da_theta = -a^T df/dtheta dt    - a^T d(g o dW)/dtheta
// Its drift F(X) = (f, -a^T df/dy, -a^T df/dtheta) is ONE nested VJP of f with cotangent a; its diffusion
// product G(X) dW the same for g o dW. The solvers whose stages use only the combination F dt + G dW
// (euler, heun, midpoint, reversible_heun) ask for it in one call (SDE::increment), which is one VJP of
// f dt + g o dW: a backward midpoint or Heun step costs two VJPs, as the hand-written steps it replaces
// did. Milstein uses the product form of its correction (sde/solvers.cpp), g_prod only.
//
// The state is flat: X is [1, D] with D = 2 batch d + sum of the parameters' sizes (y [batch, d], then a,
// then each parameter's a_theta in parameters() order), and its Brownian increment [1, batch m] is the
// forward path's [batch, m] read as one row. noise() and calculus() are the forward SDE's: they pick
// which solvers may run it (additive noise keeps Ito = Stratonovich, since a's diffusion is zero there,
// so euler is valid) and the adaptive controller's order.
#pragma once

#include <span>
#include <vector>

#include "sde/sde.hpp"

namespace sdeuq::sde {

class AdjointSDE final : public SDE {
public:
    // The forward SDE, the parameters to differentiate (deduplicated trainable ones), the forward
    // state's [batch, d] and dtype (every parameter must have it).
    AdjointSDE(SDE& sde, std::vector<Parameter*> params, std::int64_t batch, std::int64_t d, DType dtype);

    Noise noise() const override { return sde_->noise(); }
    Calculus calculus() const override { return sde_->calculus(); }
    std::int64_t brownian_dim(std::int64_t) const override { return batch_ * m_; }
    // (f, -a^T df/dy, -a^T df/dtheta): one nested VJP.
    Var f(double t, const Var& x) override;
    // The diffusion matrix of X is never formed (it is [D, batch m]); only its product.
    Var g(double t, const Var& x) override;
    // (g o dW, -a^T d(g o dW)/dy, -a^T d(g o dW)/dtheta): one nested VJP.
    Var g_prod(double t, const Var& x, const Var& dw) override;
    bool fused_increment() const override { return true; }
    // F dt + G dW: one nested VJP of f dt + g o dW.
    Var increment(double t, double dt, const Var& x, const Var& dw) override;

    std::int64_t size() const { return size_; }  // D
    // Views of the parts of a flat state [1, D] (heap or arena; writable).
    Tensor y_part(const Tensor& x) const;
    Tensor a_part(const Tensor& x) const;
    std::vector<Tensor> a_theta_parts(const Tensor& x) const;

private:
    // The augmented value for phi = c_f f(t, y) + (dw ? g(t, y) o dw : 0) at x (c_f 0: no drift).
    Var evaluate(double t, const Var& x, double c_f, const Var* dw);
    Tensor part(const Tensor& x, std::int64_t offset, const Shape& shape) const;

    SDE* sde_;
    std::vector<Parameter*> params_;
    std::vector<std::int64_t> offsets_;  // of each a_theta in X
    std::int64_t batch_, d_, m_, size_;
    DType dtype_;
};

}  // namespace sdeuq::sde
