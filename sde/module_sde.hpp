// A neural SDE whose drift f and diffusion g are nn::Modules: parameters() is their trainable parameters
// (deduplicated, in registration order; registered from the modules, SDE::add_parameters), so no
// parameter that f or g use can be missing from it (the memory-efficient estimators differentiate only
// what parameters() lists; for other SDEs they throw a UsageError naming a parameter f or g used but
// that the SDE did not register).
//
// The modules take y [batch, d] (or [y, t] [batch, d + 1] with time_input) and return
//   f: [batch, d];
//   g: [batch, d] for diagonal and scalar noise, [batch, d * m] (reshaped to [batch, d, m]) for general.
// Additive noise (g independent of y) is not a module of y: write an SDE for it.
// Header-only, so that sde/ does not link nn/ (programs using it link nn anyway).
#pragma once

#include <algorithm>
#include <fmt/format.h>
#include <memory>
#include <vector>

#include "nn/module.hpp"
#include "sde/sde.hpp"

namespace sdeuq::sde {

struct ModuleSDEOptions {
    Noise noise = Noise::diagonal;
    Calculus calculus = Calculus::stratonovich;
    bool time_input = false;   // the modules see [y, t]
    std::int64_t brownian_dim = 0;  // m, general noise only
};

class ModuleSDE : public SDE {
public:
    ModuleSDE(std::shared_ptr<nn::Module> drift, std::shared_ptr<nn::Module> diffusion,
              ModuleSDEOptions opt = {})
        : drift_(std::move(drift)), diffusion_(std::move(diffusion)), opt_(opt) {
        if (!drift_ || !diffusion_)
            throw UsageError("ModuleSDE: the drift and diffusion modules must be set");
        if (opt_.noise == Noise::additive)
            throw UsageError(
                "ModuleSDE: additive noise (g independent of y) is not a module of y; write an SDE");
        if (opt_.noise == Noise::general && opt_.brownian_dim < 1)
            throw UsageError(fmt::format("ModuleSDE: general noise needs brownian_dim >= 1, got {}",
                                         opt_.brownian_dim));
        // The parameters are the modules' trainable ones, asked at each call (they follow the trees).
        for (nn::Module* m : {drift_.get(), diffusion_.get()})
            add_parameters([m] { return m->parameters(true); });
    }
    Noise noise() const override { return opt_.noise; }
    Calculus calculus() const override { return opt_.calculus; }
    std::int64_t brownian_dim(std::int64_t d) const override {
        return opt_.noise == Noise::general ? opt_.brownian_dim : SDE::brownian_dim(d);
    }
    Var f(double t, const Var& y) override { return drift_->forward(input(t, y)); }
    Var g(double t, const Var& y) override {
        Var out = diffusion_->forward(input(t, y));
        if (opt_.noise != Noise::general) return out;
        if (out.rank() != 2 || out.dim(1) != y.dim(1) * opt_.brownian_dim)
            throw ShapeError(fmt::format("ModuleSDE: general noise needs the diffusion module to return "
                                         "[batch, d * m] = [{}, {}], got {} ({})",
                                         y.dim(0), y.dim(1) * opt_.brownian_dim, describe(out.value()),
                                         diffusion_->describe()));
        return reshape(out, Shape{y.dim(0), y.dim(1), opt_.brownian_dim});
    }
    nn::Module& drift() { return *drift_; }
    nn::Module& diffusion() { return *diffusion_; }

private:
    Var input(double t, const Var& y) const {
        if (!opt_.time_input) return y;
        Tensor tc = Tensor::arena_zeros({y.dim(0), 1}, y.dtype());
        tc.fill(t);
        std::vector<Var> parts{y, Var(tc)};
        return concat(parts, 1);
    }
    std::shared_ptr<nn::Module> drift_, diffusion_;
    ModuleSDEOptions opt_;
};

}  // namespace sdeuq::sde
