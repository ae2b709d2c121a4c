// The estimator registry: an explicit table of the built-ins, and the names programs register at run time
// (which take precedence, so a program can replace a built-in). A new built-in estimator is one file in
// sde/estimators/ and one row here.
#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <mutex>

#include "sde/estimators/estimators.hpp"

namespace sdeuq::sde {

namespace {

template <class E>
std::unique_ptr<GradientEstimator> make() {
    return std::make_unique<E>();
}

struct Builtin {
    const char* name;
    std::unique_ptr<GradientEstimator> (*make)();
};

const Builtin kBuiltins[] = {
    {"backprop", make<BackpropEstimator>},
    {"adjoint", make<AdjointEstimator>},
    {"reversible_heun", make<ReversibleHeunEstimator>},
    {"recompute", make_recompute_estimator},
};

using Factory = std::function<std::unique_ptr<GradientEstimator>()>;

struct Registered {
    std::mutex mu;
    std::map<std::string, Factory> factories;
};

Registered& registered() {
    static Registered r;
    return r;
}

}  // namespace

Solution GradientEstimator::solve_with_cost(SDE&, const Var&, std::span<const double>, const BrownianPath&,
                                            const SolveOptions&, RunningCost&, SolveStats*) {
    throw UsageError(
        fmt::format("gradient estimator '{}' does not support running costs (the KL path "
                    "integral of sdeint_logqp); \"backprop\", \"adjoint\" and "
                    "\"reversible_heun\" do",
                    name()));
}

void register_estimator(const std::string& name,
                        std::function<std::unique_ptr<GradientEstimator>()> factory) {
    if (name.empty() || !factory)
        throw UsageError(fmt::format("register_estimator: need a name and a factory (got name '{}'{})", name,
                                     factory ? "" : ", no factory"));
    Registered& r = registered();
    std::lock_guard lock(r.mu);
    r.factories[name] = std::move(factory);  // a later registration replaces an earlier one
}

void register_adjoint_estimators() {
    Registered& r = registered();
    std::lock_guard lock(r.mu);
    r.factories.erase("adjoint");
    r.factories.erase("reversible_heun");
}

std::vector<std::string> estimator_names() {
    std::vector<std::string> names;
    for (const Builtin& b : kBuiltins) names.emplace_back(b.name);
    {
        Registered& r = registered();
        std::lock_guard lock(r.mu);
        for (auto& [k, v] : r.factories)
            if (std::find(names.begin(), names.end(), k) == names.end()) names.push_back(k);
    }
    return names;
}

std::unique_ptr<GradientEstimator> make_estimator(const std::string& name) {
    {
        Registered& r = registered();
        std::lock_guard lock(r.mu);
        auto it = r.factories.find(name);
        if (it != r.factories.end()) return it->second();
    }
    for (const Builtin& b : kBuiltins)
        if (name == b.name) return b.make();
    throw UsageError(fmt::format("make_estimator: unknown gradient estimator '{}'; registered: {}", name,
                                 fmt::join(estimator_names(), ", ")));
}

Var sdeint(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
           const SolveOptions& opt, SolveStats* stats) {
    return make_estimator(opt.estimator)->solve(sde, y0, ts, bm, opt, stats);
}

}  // namespace sdeuq::sde
