#include "nn/module.hpp"

#include "nn/layers.hpp"

#include <fmt/format.h>

namespace sdeuq::nn {

Var Module::forward(const Var&) {
    throw UsageError(fmt::format("{}: this module has no single-input forward()", describe()));
}

void Module::check_name(const std::string& name) const {
    if (name.empty() || name.find('.') != std::string::npos)
        throw UsageError(fmt::format("{}: invalid member name '{}' (non-empty, no '.')", describe(), name));
    auto taken = [&](const auto& v) {
        for (auto& [n, _] : v)
            if (n == name) return true;
        return false;
    };
    if (taken(params_) || taken(buffers_) || taken(generators_) || taken(children_))
        throw UsageError(fmt::format("{}: member name '{}' registered twice", describe(), name));
}

Parameter& Module::register_parameter(const std::string& name, Tensor value, bool trainable) {
    check_name(name);
    params_.emplace_back(name, std::make_unique<Parameter>(name, std::move(value), trainable));
    return *params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor value) {
    check_name(name);
    if (!value.on_heap()) value = value.clone();
    buffers_.emplace_back(name, std::make_unique<Tensor>(std::move(value)));
    return *buffers_.back().second;
}

void Module::register_generator(const std::string& name, Generator* gen) {
    check_name(name);
    generators_.emplace_back(name, gen);
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
    if (!m) throw UsageError(fmt::format("{}: child '{}' is null", describe(), name));
    check_name(name);
    m->train(training_);
    children_.emplace_back(name, std::move(m));
}

namespace {
std::string join(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
}

template <class F>
void walk(Module& m, const std::string& prefix, F&& f) {
    f(prefix, m);
    for (auto& [n, c] : m.children()) walk(*c, join(prefix, n), f);
}
}  // namespace

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
    std::vector<std::pair<std::string, Module*>> out;
    walk(*this, "", [&](const std::string& p, Module& m) { out.emplace_back(p, &m); });
    return out;
}

std::vector<std::pair<std::string, Parameter*>> Module::named_parameters(bool trainable_only) {
    std::vector<std::pair<std::string, Parameter*>> out;
    walk(*this, "", [&](const std::string& p, Module& m) {
        for (auto& [n, par] : m.params_)
            if (!trainable_only || par->trainable()) out.emplace_back(join(p, n), par.get());
    });
    return out;
}

std::vector<Parameter*> Module::parameters(bool trainable_only) {
    std::vector<Parameter*> out;
    for (auto& [_, p] : named_parameters(trainable_only)) out.push_back(p);
    return out;
}

std::vector<std::pair<std::string, Tensor*>> Module::named_buffers() {
    std::vector<std::pair<std::string, Tensor*>> out;
    walk(*this, "", [&](const std::string& p, Module& m) {
        for (auto& [n, b] : m.buffers_) out.emplace_back(join(p, n), b.get());
    });
    return out;
}

std::vector<Tensor*> Module::buffers() {
    std::vector<Tensor*> out;
    for (auto& [_, b] : named_buffers()) out.push_back(b);
    return out;
}

std::vector<std::pair<std::string, Generator*>> Module::named_generators() {
    std::vector<std::pair<std::string, Generator*>> out;
    walk(*this, "", [&](const std::string& p, Module& m) {
        for (auto& [n, g] : m.generators_) out.emplace_back(join(p, n), g);
    });
    return out;
}

std::int64_t Module::num_parameters(bool trainable_only) {
    std::int64_t n = 0;
    for (auto* p : parameters(trainable_only)) n += p->value().numel();
    return n;
}

void Module::train(bool on) {
    training_ = on;
    on_train(on);
    for (auto& [_, c] : children_) c->train(on);
}

void Module::zero_grad() {
    for (auto* p : parameters()) p->zero_grad();
}

void Module::set_trainable(bool on) {
    for (auto* p : parameters()) p->set_trainable(on);
}

// ---------------------------------------------------------------- Sequential

Sequential::Sequential(std::vector<ModulePtr> layers) {
    for (auto& m : layers) push_back(std::move(m));
}

Sequential& Sequential::push_back(ModulePtr m) {
    register_module(std::to_string(layers_.size()), m);
    layers_.push_back(std::move(m));
    return *this;
}

std::string Sequential::describe() const {
    return fmt::format("Sequential(n={})", layers_.size());
}

namespace {
// The activation a Linear followed by this module fuses with (LinearAct::none: it does not fuse).
LinearAct fusable(const Module& m) {
    const auto* a = dynamic_cast<const Activation*>(&m);
    if (!a) return LinearAct::none;
    switch (a->act()) {
        case Act::tanh: return LinearAct::tanh;
        case Act::sigmoid: return LinearAct::sigmoid;
        case Act::relu: return LinearAct::relu;
        default: return LinearAct::none;
    }
}
}  // namespace

Var Sequential::forward(const Var& x) {
    Var h = x;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
        // Linear then tanh / sigmoid / relu, GroupNorm then relu: one fused op (the same bits, one tensor
        // kept instead of two).
        if (i + 1 < layers_.size()) {
            auto* lin = dynamic_cast<Linear*>(layers_[i].get());
            const LinearAct act = fusable(*layers_[i + 1]);
            if (lin && act != LinearAct::none) {
                h = lin->forward_activated(h, act);
                ++i;
                continue;
            }
            auto* gn = dynamic_cast<GroupNorm*>(layers_[i].get());
            if (gn && act == LinearAct::relu) {
                h = gn->forward_relu(h);
                ++i;
                continue;
            }
        }
        h = layers_[i]->forward(h);
    }
    return h;
}

void copy_state(Module& dst, Module& src) {
    auto dp = dst.named_parameters(), sp = src.named_parameters();
    auto db = dst.named_buffers(), sb = src.named_buffers();
    auto check = [&](const std::string& what, const std::string& dn, const Tensor& d, const std::string& sn,
                     const Tensor& s) {
        if (dn != sn || d.shape() != s.shape() || d.dtype() != s.dtype())
            throw ShapeError(fmt::format("copy_state({} -> {}): {} '{}' {} does not match '{}' {}",
                                         src.describe(), dst.describe(), what, sn, sdeuq::describe(s), dn,
                                         sdeuq::describe(d)));
    };
    if (dp.size() != sp.size() || db.size() != sb.size())
        throw ShapeError(fmt::format("copy_state({} -> {}): different numbers of parameters or buffers",
                                     src.describe(), dst.describe()));
    for (std::size_t i = 0; i < dp.size(); ++i)
        check("parameter", dp[i].first, dp[i].second->value(), sp[i].first, sp[i].second->value());
    for (std::size_t i = 0; i < db.size(); ++i)
        check("buffer", db[i].first, *db[i].second, sb[i].first, *sb[i].second);
    for (std::size_t i = 0; i < dp.size(); ++i) dp[i].second->value().copy_from(sp[i].second->value());
    for (std::size_t i = 0; i < db.size(); ++i) db[i].second->copy_from(*sb[i].second);
}

}  // namespace sdeuq::nn
