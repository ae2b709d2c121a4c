#include "autodiff/tape.hpp"

#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <memory>
#include <optional>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/profile.hpp"

namespace sdeuq {

namespace {

struct ThreadState {
    std::vector<std::unique_ptr<Tape>> stack;  // stack[0] is the root tape; deeper tapes are kept for reuse
    int depth = 0;
};

// Hot per-thread flags: initial-exec TLS, so that reading them is one load (no __tls_get_addr call in
// the -fPIC static library) on every op's path.
#define SDEUQ_TLS thread_local __attribute__((tls_model("initial-exec")))
SDEUQ_TLS bool t_grad = true;
SDEUQ_TLS bool t_anomaly = false;

ThreadState& state() {
    thread_local ThreadState s;
    if (s.stack.empty()) s.stack.push_back(std::make_unique<Tape>());
    return s;
}

// The innermost tape, cached: current_tape() is on every op's path.
SDEUQ_TLS Tape* t_current = nullptr;

template <class T> void add_into(T* dst, const T* src, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace

Tape::Tape() : arena_(std::size_t(4) << 20) { nodes_.reserve(4096); }

void Tape::reset() {
    nodes_.clear();
    arena_.reset();
}

Node* Tape::push(const char* op, const Tensor& value, std::span<Node* const> inputs) {
    // Nodes hold unowned views (arena outputs own nothing; parameters and leaves are kept alive by their
    // owners for the step), so they need no destructor call at reset.
    Node* n = arena_.make_untracked<Node>();
    n->op = op;
    n->value = value.unowned();
    n->tape = this;
    n->index = static_cast<std::int64_t>(nodes_.size());
    if (!inputs.empty()) {
        n->inputs = static_cast<Node**>(arena_.allocate(sizeof(Node*) * inputs.size()));
        std::memcpy(n->inputs, inputs.data(), sizeof(Node*) * inputs.size());
        n->n_inputs = static_cast<int>(inputs.size());
    }
    nodes_.push_back(n);
    if (detail::t_profiling) [[unlikely]]
        detail::profile_forward(op);
    return n;
}

[[gnu::noinline]] static Tape& current_tape_slow() {
    auto& s = state();
    t_current = s.stack[static_cast<std::size_t>(s.depth)].get();
    return *t_current;
}

Tape& current_tape() {
    if (t_current) [[likely]] return *t_current;
    return current_tape_slow();
}

void reset_tape() {
    auto& s = state();
    if (s.depth != 0) throw UsageError("reset_tape: called inside a nested tape scope");
    s.stack[0]->reset();
    if (detail::t_profiling) detail::profile_mark();
}

NestedTape::NestedTape() {
    auto& s = state();
    ++s.depth;
    if (static_cast<int>(s.stack.size()) <= s.depth) s.stack.push_back(std::make_unique<Tape>());
    tape_ = s.stack[static_cast<std::size_t>(s.depth)].get();
    tape_->depth_ = s.depth;
    tape_->reset();
    t_current = tape_;
}

NestedTape::~NestedTape() {
    auto& s = state();
    tape_->reset();
    --s.depth;
    t_current = s.stack[static_cast<std::size_t>(s.depth)].get();
}

bool grad_enabled() { return t_grad; }
NoGradScope::NoGradScope() : prev_(t_grad) { t_grad = false; }
NoGradScope::~NoGradScope() { t_grad = prev_; }
EnableGradScope::EnableGradScope() : prev_(t_grad) { t_grad = true; }
EnableGradScope::~EnableGradScope() { t_grad = prev_; }

void set_anomaly_mode(bool on) { t_anomaly = on; }
bool anomaly_mode() { return t_anomaly; }

bool all_finite(const Tensor& t) {
    return dispatch(t.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* p = t.data<T>();
        for (std::int64_t i = 0; i < t.numel(); ++i)
            if (!std::isfinite(p[i])) return false;
        return true;
    });
}

namespace {
void anomaly_check(const char* op, const Tensor& out) {
    if (t_anomaly && !all_finite(out))
        throw AnomalyError(fmt::format("anomaly: op '{}' produced NaN or Inf in its output {}", op, describe(out)));
}
}  // namespace

void check_anomaly(const char* op, const Tensor& out) {
    // The exit of an op that records nothing (no-grad scopes, constant inputs): profiled as a forward call.
    if (detail::t_profiling) [[unlikely]]
        detail::profile_forward(op);
    anomaly_check(op, out);
}

void Var::gradient_as_constant_error(const Tensor& t) {
    throw UsageError(fmt::format("a gradient {} from Var::grad() was passed where a Var is expected: it would be a "
                                 "constant there, with no path back through the gradient; write constant(g) if a "
                                 "constant is meant, or use grad(out, inputs, {{.create_graph = true}}) to "
                                 "differentiate through it",
                                 describe(t)));
}

Tensor Var::grad() const {
    if (!node_) {  // a constant (frozen parameter, leaf under NoGradScope): its gradient is zero
        if (!value_.defined()) throw UsageError("Var::grad: undefined Var");
        return Tensor::arena_zeros(value_.shape(), value_.dtype()).marked_gradient();
    }
    if (node_->backward) {  // an op's result
        if (!node_->retained)
            throw UsageError(fmt::format("Var::grad: the result {} of op '{}' is an intermediate: its gradient is "
                                         "freed by backward(); call retain_grad() on it before backward() "
                                         "(PyTorch returns None here)",
                                         describe(value_), node_->op));
        if (node_->retained->defined()) return node_->retained->marked_gradient();
        return Tensor::arena_zeros(value_.shape(), value_.dtype()).marked_gradient();
    }
    if (node_->grad.defined()) return node_->grad.marked_gradient();
    return Tensor::arena_zeros(value_.shape(), value_.dtype()).marked_gradient();
}

void Var::retain_grad() const {
    if (!node_)
        throw UsageError(fmt::format("Var::retain_grad: {} is a constant (no tape node)",
                                     value_.defined() ? describe(value_) : "undefined"));
    if (!node_->backward || node_->retained) return;  // leaves keep their gradient anyway
    node_->retained = node_->tape->arena().make<Tensor>();
}

namespace {
// backward(): keep a spent adjoint of a retain_grad() node (a copy: its storage may be shared).
[[gnu::noinline]] void keep_retained(Node* n) {
    Tensor& r = *n->retained;
    if (!r.defined()) {
        r = n->grad.clone_arena();
        return;
    }
    dispatch(r.dtype(), [&](auto z) {
        using T = decltype(z);
        add_into(r.data<T>(), n->grad.data<T>(), r.numel());
    });
}
}  // namespace

Node* node_of(const Var& v) {
    Node* n = v.node();
    return (n && n->tape == &current_tape()) ? n : nullptr;
}

namespace detail {
bool any_on_tape(std::span<const Var> inputs, Tape& t) {
    for (auto& v : inputs)
        if (v.node() && v.node()->tape == &t) return true;
    return false;
}
}  // namespace detail

Var record_n(const char* op, const Tensor& out, std::span<const Var> inputs, BackwardFn fn, void* closure,
             HigherFn higher) {
    anomaly_check(op, out);
    Tape& t = current_tape();
    Node* buf[16];
    std::vector<Node*> big;
    Node** ins = buf;
    if (inputs.size() > 16) {
        big.resize(inputs.size());
        ins = big.data();
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) ins[i] = node_of(inputs[i]);
    Node* n = t.push(op, out, std::span<Node* const>(ins, inputs.size()));
    n->backward = fn;
    n->closure = closure;
    if (higher) {
        n->higher = higher;
        // Constant inputs are not reachable through n->inputs: keep their values for the Var backward.
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            if (ins[i] || !inputs[i].value().defined()) continue;
            if (!n->consts) {
                n->consts = static_cast<Tensor**>(t.arena().allocate(sizeof(Tensor*) * inputs.size()));
                std::fill(n->consts, n->consts + inputs.size(), nullptr);
            }
            n->consts[i] = t.arena().make<Tensor>(inputs[i].value());
        }
    }
    return Var(out, n);
}

Var HigherCtx::in(int k) const {
    if (Node* n = node->inputs[k]) return Var(n->value, n);
    if (node->consts && node->consts[k]) return Var(*node->consts[k]);
    return Var();
}

Var leaf(const Tensor& value) {
    if (!value.defined()) throw UsageError("leaf: undefined tensor");
    if (!grad_enabled()) return Var(value);
    Node* n = current_tape().push("leaf", value, {});
    return Var(value, n);
}

void accumulate(Node* n, const Tensor& g) {
    if (!n) return;
    if (g.shape() != n->value.shape() || g.dtype() != n->value.dtype())
        throw ShapeError(fmt::format("internal: gradient {} for node '{}' of value {}", describe(g), n->op,
                                     describe(n->value)));
    if (!n->grad.defined()) {
        if (g.arena() == &n->tape->arena()) {
            g.check_alive();
            n->grad = g.unowned();
            n->grad_shared = true;
        } else {
            n->grad = g.clone_arena();
        }
        return;
    }
    if (n->grad_shared) {
        Tensor sum = Tensor::arena_empty(g.shape(), g.dtype());
        dispatch(g.dtype(), [&](auto z) {
            using T = decltype(z);
            kernels::map2(n->grad.data<T>(), g.data<T>(), sum.data<T>(), g.numel(), [](auto a, auto b) { return a + b; });
        });
        n->grad = sum;
        n->grad_shared = false;
        return;
    }
    if (take_zero(n)) {
        // 0 + g, as the zero-filled gradient would have given (-0 becomes +0).
        dispatch(g.dtype(), [&](auto z) {
            using T = decltype(z);
            kernels::map1(g.data<T>(), n->grad.data<T>(), g.numel(), [](auto v) { return v + decltype(v)(0); });
        });
        return;
    }
    dispatch(g.dtype(), [&](auto z) {
        using T = decltype(z);
        add_into(n->grad.data<T>(), g.data<T>(), g.numel());
    });
}

void accumulate_fresh(Node* n, const Tensor& g) {
    if (n && !n->grad.defined() && g.shape() == n->value.shape() && g.dtype() == n->value.dtype() && !g.on_heap()) {
        n->grad = g;
        return;
    }
    accumulate(n, g);
}

void backward(const Var& out) {
    if (out.numel() != 1)
        throw ShapeError(fmt::format("backward: output {} is not a scalar; pass a cotangent", describe(out.value())));
    backward(out, Tensor::full(out.shape(), 1.0, out.dtype()));
}

void backward(const Var& out, const Tensor& cotangent) {
    if (cotangent.shape() != out.shape())
        throw ShapeError(fmt::format("backward: cotangent {} for output {}", describe(cotangent), describe(out.value())));
    Node* root = node_of(out);
    if (!root) throw UsageError("backward: the output does not depend on any leaf or parameter of the current tape");
    Tensor seed = cotangent.dtype() == out.dtype() ? cotangent : cotangent.to(out.dtype());
    accumulate(root, seed);
    Tape& t = current_tape();
    const bool anomaly = anomaly_mode();
    const auto& nodes = t.nodes();
    for (std::int64_t i = root->index; i >= 0; --i) {
        Node* n = nodes[static_cast<std::size_t>(i)];
        if (!n->backward || !n->grad.defined()) continue;
        if (detail::t_profiling) [[unlikely]] {
            const detail::BackwardTimer timer = detail::profile_backward_begin();
            n->backward(n->closure, n->grad);
            detail::profile_backward_end(n->op, timer);
        } else {
            n->backward(n->closure, n->grad);
        }
        // Its backward may have handed n->grad on to an input unchanged.
        n->grad_shared = true;
        if (anomaly) {
            for (int k = 0; k < n->n_inputs; ++k) {
                Node* in = n->inputs[k];
                if (in && in->grad.defined() && !all_finite(in->grad))
                    throw AnomalyError(fmt::format("anomaly: backward of op '{}' produced NaN or Inf in the gradient "
                                                   "of its input {} ({})",
                                                   n->op, k, describe(in->value)));
            }
        }
        // Spent: a later backward on the same tape (another loss, or a graph that shares this node) must
        // not run this node's backward again with the gradient of this sweep. Leaves keep theirs.
        if (n->retained) [[unlikely]]
            keep_retained(n);
        n->grad = Tensor();
    }
    if (detail::t_profiling) detail::profile_mark();
}

Parameter::Parameter(std::string name, Tensor value, bool trainable)
    : name_(std::move(name)), value_(std::move(value)), trainable_(trainable) {
    if (!value_.on_heap()) value_ = value_.clone();
    grad_ = Tensor::zeros(value_.shape(), value_.dtype());
}

void Parameter::materialize_grad() const {
    if (!zero_pending_) return;
    grad_.fill(0.0);
    zero_pending_ = false;
}

Var Parameter::var() {
    if (!grad_enabled() || !trainable_) return Var(value_);
    Tape& t = current_tape();
    if (cached_ && cached_tape_ == &t && cached_generation_ == t.generation()) return Var(value_, cached_);
    Node* n = t.push("parameter", value_, {});
    n->closure = this;  // no backward: lets a caller name the parameter a leaf belongs to
    if (t.accumulates_into_parameters()) {
        n->grad = grad_.unowned();
        n->zero_pending = &zero_pending_;
    }
    cached_ = n;
    cached_tape_ = &t;
    cached_generation_ = t.generation();
    return Var(value_, n);
}

VjpResult vjp(const std::function<Var(std::span<const Var>)>& f, std::span<const Tensor> inputs,
              std::span<Parameter* const> params, const Tensor& cotangent) {
    // Results are computed on the nested tape, copied to the heap, and then into the enclosing arena once
    // the nested arena is gone.
    VjpResult heap;
    {
        NestedTape scope;
        std::vector<Var> in;
        in.reserve(inputs.size());
        for (auto& x : inputs) in.push_back(leaf(x));
        std::vector<Var> pv;
        for (auto* p : params) pv.push_back(p->var());
        Var out = f(in);
        heap.output = out.value().clone();
        if (node_of(out)) backward(out, cotangent);
        for (auto& v : in) heap.input_grads.push_back(v.grad().clone());
        for (auto& v : pv) heap.param_grads.push_back(v.grad().clone());
    }
    VjpResult r;
    r.output = heap.output.clone_arena();
    for (auto& g : heap.input_grads) r.input_grads.push_back(g.clone_arena());
    for (auto& g : heap.param_grads) r.param_grads.push_back(g.clone_arena());
    return r;
}

namespace {

// The Var-level reverse sweep from root (seeded with `seed`) over the nodes with index >= stop: each
// node's HigherFn turns its output adjoint into its inputs' adjoints, summed with add(). adj[i - stop]
// holds node i's adjoint; nodes below stop are not expanded and collect into `below`.
struct VarSweep {
    std::int64_t stop;
    std::vector<Var> adj;
    std::vector<std::pair<Node*, Var>> below;

    void add_to(Node* in, const Var& d) {
        if (d.shape() != in->value.shape() || d.dtype() != in->value.dtype())
            throw ShapeError(fmt::format("internal: Var gradient {} for node '{}' of value {}", describe(d.value()),
                                         in->op, describe(in->value)));
        Var* slot = nullptr;
        if (in->index >= stop) {
            slot = &adj[static_cast<std::size_t>(in->index - stop)];
        } else {
            for (auto& [nd, v] : below)
                if (nd == in) slot = &v;
            if (!slot) {
                below.emplace_back(in, Var());
                slot = &below.back().second;
            }
        }
        *slot = slot->value().defined() ? add(*slot, d) : d;
    }

    void run(Node* root, const Var& seed) {
        Tape& t = *root->tape;
        adj.assign(static_cast<std::size_t>(root->index - stop + 1), Var());
        adj.back() = seed;
        std::vector<Var> dx;
        for (std::int64_t i = root->index; i >= stop; --i) {
            Node* n = t.nodes()[static_cast<std::size_t>(i)];
            const Var a = adj[static_cast<std::size_t>(i - stop)];
            if (!a.value().defined() || n->n_inputs == 0) continue;
            if (!n->higher)
                throw UsageError(fmt::format("grad: op '{}' has no differentiable backward (use backward() or vjp() "
                                             "through it)",
                                             n->op));
            dx.assign(static_cast<std::size_t>(n->n_inputs), Var());
            HigherCtx ctx{n, a, dx.data()};
            n->higher(n->closure, ctx);
            for (int k = 0; k < n->n_inputs; ++k)
                if (n->inputs[k] && dx[static_cast<std::size_t>(k)].value().defined())
                    add_to(n->inputs[k], dx[static_cast<std::size_t>(k)]);
        }
    }

    Var get(Node* n) const {
        if (n->index >= stop + static_cast<std::int64_t>(adj.size())) return Var();  // recorded after out
        if (n->index >= stop) return adj[static_cast<std::size_t>(n->index - stop)];
        for (auto& [nd, v] : below)
            if (nd == n) return v;
        return Var();
    }
};

}  // namespace

std::vector<Var> grad(const Var& out, const std::vector<Var>& inputs, GradOptions opt) {
    if (out.numel() != 1)
        throw ShapeError(fmt::format("grad: output {} is not a scalar; pass a cotangent", describe(out.value())));
    return grad(out, inputs, Var(Tensor::full(out.shape(), 1.0, out.dtype())), opt);
}

std::vector<Var> grad(const Var& out, const std::vector<Var>& inputs, const Var& cotangent, GradOptions opt) {
    if (!out.value().defined()) throw UsageError("grad: undefined output");
    if (!cotangent.value().defined() || cotangent.shape() != out.shape() || cotangent.dtype() != out.dtype())
        throw ShapeError(fmt::format("grad: cotangent {} for output {} (same shape and dtype needed)",
                                     cotangent.value().defined() ? describe(cotangent.value()) : "undefined",
                                     describe(out.value())));
    Node* root = node_of(out);
    if (!root) throw UsageError("grad: the output does not depend on any leaf or parameter of the current tape");
    std::int64_t stop = root->index;
    for (std::size_t k = 0; k < inputs.size(); ++k) {
        Node* n = node_of(inputs[k]);
        if (!n)
            throw UsageError(fmt::format("grad: input {} ({}) is a constant on the current tape; make it a leaf(), "
                                         "a Parameter::var() or an op's result",
                                         k, inputs[k].value().defined() ? describe(inputs[k].value()) : "undefined"));
        stop = std::min(stop, n->index);
    }
    VarSweep sw{stop, {}, {}};
    std::vector<Var> res;
    {
        std::optional<NoGradScope> off;
        if (!opt.create_graph) off.emplace();
        sw.run(root, cotangent);
        for (auto& v : inputs) {
            Var g = sw.get(node_of(v));
            if (!g.value().defined()) g = Var(Tensor::arena_zeros(v.shape(), v.dtype()));
            res.push_back(opt.create_graph ? g : detach(g));
        }
    }
    return res;
}

namespace detail {
std::vector<Var> local_grad(const Var& out, std::span<const Var> inputs, const Var& gout, std::int64_t first) {
    std::vector<Var> res(inputs.size());
    Node* root = node_of(out);
    if (!root || root->index < first) return res;  // out does not depend on any input here
    VarSweep sw{first, {}, {}};
    sw.run(root, gout);
    for (std::size_t k = 0; k < inputs.size(); ++k)
        if (Node* n = node_of(inputs[k])) res[k] = sw.get(n);
    return res;
}
}  // namespace detail

}  // namespace sdeuq
