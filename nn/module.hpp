// Module: a tree of layers owning named parameters, buffers and random generators.
//
// As in PyTorch's nn.Module, a module registers its parameters ("weight", "bias"), its buffers (persistent
// non-trainable state such as the spectral-norm vectors u, v or a GP precision matrix) and its children
// ("blocks.3"); names are joined with '.' down the tree ("blocks.3.linear.weight"). Parameters and
// buffers live on the heap (never in the arena) and have stable addresses for the module's lifetime.
//
// Unlike PyTorch, a module may also register the random Generators it draws from (Dropout's masks), so
// that a checkpoint restores them and a resumed run is bit-for-bit the uninterrupted one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/random.hpp"
#include "autodiff/tape.hpp"

namespace sdeuq::nn {

class Module {
public:
    Module() = default;
    virtual ~Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    // A short description used in error messages, e.g. "Linear(in=4, out=3)".
    virtual std::string describe() const = 0;
    // The single-input forward pass; modules with other signatures (the GP head's covariance) add their
    // own methods and may still implement this one for their main output.
    virtual Var forward(const Var& x);
    Var operator()(const Var& x) { return forward(x); }

    // ---- tree traversal (depth first, registration order; the same order on every call) ----
    std::vector<std::pair<std::string, Parameter*>> named_parameters(bool trainable_only = false);
    std::vector<Parameter*> parameters(bool trainable_only = false);
    std::vector<Parameter*> trainable_parameters() { return parameters(true); }
    std::vector<std::pair<std::string, Tensor*>> named_buffers();
    std::vector<Tensor*> buffers();
    std::vector<std::pair<std::string, Generator*>> named_generators();
    // This module (name "") and all descendants.
    std::vector<std::pair<std::string, Module*>> named_modules();
    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }
    std::int64_t num_parameters(bool trainable_only = false);

    // ---- modes ----
    // Training mode (dropout active, spectral-norm power iteration, GP precision accumulation); set on
    // the whole subtree, as in PyTorch.
    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }
    void zero_grad();
    // Freezes (or unfreezes) every parameter of the subtree: optimizers skip non-trainable parameters
    // and Parameter::var() records no node for them.
    void set_trainable(bool on);

protected:
    Parameter& register_parameter(const std::string& name, Tensor value, bool trainable = true);
    Tensor& register_buffer(const std::string& name, Tensor value);
    void register_generator(const std::string& name, Generator* gen);
    template <class M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
        add_child(name, m);
        return m;
    }
    // Hook for modules that must react to mode changes.
    virtual void on_train(bool) {}

private:
    void add_child(const std::string& name, std::shared_ptr<Module> m);
    void check_name(const std::string& name) const;
    bool training_ = true;
    std::vector<std::pair<std::string, std::unique_ptr<Parameter>>> params_;
    std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> buffers_;
    std::vector<std::pair<std::string, Generator*>> generators_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

using ModulePtr = std::shared_ptr<Module>;

// Modules applied in order; children are named "0", "1", ...
class Sequential : public Module {
public:
    Sequential() = default;
    explicit Sequential(std::vector<ModulePtr> layers);
    Sequential& push_back(ModulePtr m);
    template <class M, class... Args>
    std::shared_ptr<M> emplace(Args&&... args) {
        auto m = std::make_shared<M>(std::forward<Args>(args)...);
        push_back(m);
        return m;
    }
    std::size_t size() const { return layers_.size(); }
    Module& operator[](std::size_t i) { return *layers_.at(i); }
    std::string describe() const override;
    Var forward(const Var& x) override;

private:
    std::vector<ModulePtr> layers_;
};

// Copies parameter and buffer values from src to dst (same architecture: names, shapes and dtypes must
// match; converts nothing). Useful for ensembles and for tests.
void copy_state(Module& dst, Module& src);

}  // namespace sdeuq::nn
