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
#include <functional>
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
    SDE() = default;
    virtual ~SDE() = default;
    // The registered parameters are pointers into the object (its members, its modules): a copy would
    // report the original's, so an SDE is neither copyable nor movable.
    SDE(const SDE&) = delete;
    SDE& operator=(const SDE&) = delete;
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
    // The parameters of f and g, for the gradient estimators that need them listed (the adjoints): what the
    // constructor registered with add_parameter() / add_parameters(), deduplicated, in registration order.
    // Not virtual, so no SDE lists them by hand (as nn::Module, whose parameters are registered too); a
    // trainable parameter that f or g use without registering it is a UsageError naming it under the
    // adjoint and reversible Heun estimators (sde/estimators/common.cpp, check_listed_parameters).
    std::vector<Parameter*> parameters() const;

protected:
    // Registers a Parameter of the SDE (a member: it must live as long as the SDE).
    void add_parameter(Parameter& p);
    // Registers a source of parameters, asked at every parameters() call: an nn::Module's
    // (`[this] { return net_.parameters(); }`) or another SDE's, so that they follow the module's tree.
    void add_parameters(std::function<std::vector<Parameter*>()> source);

private:
    std::vector<std::function<std::vector<Parameter*>()>> parameter_sources_;
};

// g . dW for a diffusion value g (shapes as above).
Var diffusion_product(Noise noise, const Var& g, const Var& dw);

}  // namespace sdeuq::sde
