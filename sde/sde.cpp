#include "sde/sde.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sdeuq::sde {

const char* noise_name(Noise n) {
    switch (n) {
        case Noise::diagonal: return "diagonal";
        case Noise::additive: return "additive";
        case Noise::scalar: return "scalar";
        case Noise::general: return "general";
    }
    return "?";
}

const char* calculus_name(Calculus c) { return c == Calculus::ito ? "ito" : "stratonovich"; }

std::int64_t SDE::brownian_dim(std::int64_t d) const {
    switch (noise()) {
        case Noise::diagonal: return d;
        case Noise::scalar: return 1;
        default:
            throw UsageError(
                fmt::format("SDE with {} noise must override brownian_dim()", noise_name(noise())));
    }
}

std::vector<Parameter*> SDE::parameters() const {
    std::vector<Parameter*> out;
    for (const auto& source : parameter_sources_)
        for (Parameter* p : source())
            if (p && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    return out;
}

void SDE::add_parameter(Parameter& p) {
    Parameter* q = &p;
    parameter_sources_.emplace_back([q] { return std::vector<Parameter*>{q}; });
}

void SDE::add_parameters(std::function<std::vector<Parameter*>()> source) {
    if (!source) throw UsageError("SDE::add_parameters: the parameter source is empty");
    parameter_sources_.push_back(std::move(source));
}

Var SDE::g_prod(double t, const Var& y, const Var& dw) { return diffusion_product(noise(), g(t, y), dw); }

Var SDE::increment(double t, double dt, const Var& y, const Var& dw) {
    return f(t, y) * dt + g_prod(t, y, dw);
}

Var diffusion_product(Noise noise, const Var& g, const Var& dw) {
    switch (noise) {
        case Noise::diagonal:
            if (g.shape() != dw.shape())
                throw ShapeError(fmt::format("diffusion_product (diagonal noise): g {} and dW {} differ",
                                             describe(g.value()), describe(dw.value())));
            return g * dw;
        case Noise::scalar:
            if (dw.rank() != 2 || dw.dim(1) != 1 || g.rank() != 2 || g.dim(0) != dw.dim(0))
                throw ShapeError(
                    fmt::format("diffusion_product (scalar noise): g {} needs dW [batch, 1], got {}",
                                describe(g.value()), describe(dw.value())));
            return g * dw;
        case Noise::additive:
        case Noise::general: {
            if (dw.rank() != 2 || g.dim(-1) != dw.dim(1))
                throw ShapeError(fmt::format("diffusion_product ({} noise): g {} and dW {} do not match",
                                             noise_name(noise), describe(g.value()), describe(dw.value())));
            if (g.rank() == 2) return matmul(dw, g, false, true);  // [d, m] shared: dW @ g^T
            Var col = reshape(dw, Shape{dw.dim(0), dw.dim(1), 1});
            Var out = matmul(g, col);  // [batch, d, 1]
            return reshape(out, Shape{out.dim(0), out.dim(1)});
        }
    }
    throw UsageError("diffusion_product: unknown noise type");
}

}  // namespace sdeuq::sde
