// The SDE interface: drift f(t, y), diffusion g(t, y), noise type and calculus.
//
// As in torchsde and Diffrax, the SDE, the Brownian path (sde/brownian.hpp), the solver step
// (sde/solvers.hpp) and the gradient estimator (sde/estimators.hpp) are separate objects with small
// interfaces. States are batched: y is [batch, d]. Brownian increments dW are [batch, m]:
//   diagonal    m = d, g(t, y) is [batch, d] and acts elementwise: g . dW = g * dW
//   scalar      m = 1, g(t, y) is [batch, d]:                       g . dW = g * dW[:, 0]
//   additive    g(t) does not depend on y, [batch, d, m] (or [d, m]): g . dW = g @ dW
//   general     g(t, y) is [batch, d, m]:                             g . dW = g @ dW
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"

namespace sdeuq::sde {

enum class Noise { diagonal, additive, scalar, general };
enum class Calculus { ito, stratonovich };
const char* noise_name(Noise n);
const char* calculus_name(Calculus c);

class SDE {
public:
    virtual ~SDE() = default;
    virtual Noise noise() const = 0;
    virtual Calculus calculus() const = 0;
    // Brownian dimension m for state dimension d (diagonal: d, scalar: 1; additive and general override).
    virtual std::int64_t brownian_dim(std::int64_t d) const;
    virtual Var f(double t, const Var& y) = 0;
    virtual Var g(double t, const Var& y) = 0;
    // g(t, y) . dW per the noise type (override for a cheaper product).
    virtual Var g_prod(double t, const Var& y, const Var& dw);
    // f(t, y) dt + g(t, y) . dW in one call, for an SDE that computes the two more cheaply together (the
    // adjoint SDE, sde/adjoint_sde.hpp: one nested VJP instead of two). The solvers whose stages use only
    // that combination (euler, heun, midpoint) call it when fused_increment() is true, and f and g_prod
    // otherwise (whose separate roundings every other SDE keeps).
    virtual bool fused_increment() const { return false; }
    virtual Var increment(double t, double dt, const Var& y, const Var& dw);
    // Parameters of f and g, for gradient estimators that need them listed (the adjoints).
    virtual std::vector<Parameter*> parameters() { return {}; }
};

// g . dW for a diffusion value g (shapes as above).
Var diffusion_product(Noise noise, const Var& g, const Var& dw);

}  // namespace sdeuq::sde
