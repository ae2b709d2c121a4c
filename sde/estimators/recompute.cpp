// The worked example of docs/estimators.md: a complete estimator in one file plus one line of the registry
// table (sde/estimators/registry.cpp). docs/estimators.md shows the code between the markers verbatim
// (tests/test_adjoint.cpp checks it, and that its gradients are backprop's).
#include "sde/estimators/estimators.hpp"

namespace sdeuq::sde {

// BEGIN estimators.md example
// "recompute": solves without a tape, records the whole solution as ONE node over {y0, parameters}, and
// in that node's backward solves again on a nested tape and back-propagates through it. The outer tape
// holds one node; the nested one lives only during backward (checkpointing of the whole solve).
class RecomputeEstimator final : public GradientEstimator {
public:
    std::string name() const override { return "recompute"; }
    Var solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
              const SolveOptions& opt, SolveStats* stats) override {
        auto solver = make_solver(opt.solver);
        Tensor out = integrate(sde, *solver, Var(y0.value()), ts, bm, opt, false, stats).stacked.value();

        // Inputs of the node: y0 and every parameter's leaf on the current tape (null nodes: constants).
        std::vector<Parameter*> params = sde.parameters();
        std::vector<Var> inputs{y0};
        for (Parameter* p : params) inputs.push_back(p->var());
        if (!grad_enabled() || !sdeuq::detail::any_on_tape(inputs, current_tape())) return Var(out);
        std::vector<Node*> nodes;
        for (const Var& v : inputs) nodes.push_back(node_of(v));

        // The SDE and the path are held by pointer: the caller keeps them alive until backward().
        auto backward_fn = [sde = &sde, bm = &bm, opt, params, nodes, y0v = y0.value(),
                            times = std::vector<double>(ts.begin(), ts.end())](const Tensor& grad_out) {
            std::vector<Tensor> grads;  // heap copies: the nested arena is freed when the scope ends
            {
                NestedTape scope;
                Var y0_leaf = leaf(y0v);
                std::vector<Var> pv;
                for (Parameter* p : params) pv.push_back(p->var());  // leaves of the nested tape
                auto s = make_solver(opt.solver);
                Var ys = integrate(*sde, *s, y0_leaf, times, *bm, opt, true, nullptr).stacked;
                backward(ys, grad_out);
                grads.push_back(y0_leaf.grad().clone());
                for (const Var& v : pv) grads.push_back(v.grad().clone());
            }
            // Into the outer tape's nodes; a parameter leaf of the root tape adds into Parameter::grad().
            for (std::size_t i = 0; i < nodes.size(); ++i) accumulate(nodes[i], grads[i]);
        };
        using Closure = decltype(backward_fn);
        auto* closure = current_tape().arena().make<Closure>(std::move(backward_fn));
        BackwardFn fn = [](void* c, const Tensor& g) { (*static_cast<Closure*>(c))(g); };
        return record_n("sde_recompute", out, inputs, fn, closure);
    }
};

// The factory that the registry table's row {"recompute", make_recompute_estimator} calls.
std::unique_ptr<GradientEstimator> make_recompute_estimator() {
    return std::make_unique<RecomputeEstimator>();
}
// END estimators.md example

}  // namespace sdeuq::sde
