// The tape: flat, append-only, in creation order; backward is one reverse sweep.
//
// Every op that has an input requiring a gradient pushes one Node onto the current tape. The node holds
// its output value, its adjoint, pointers to its input nodes and a type-erased backward closure that
// lives, like the node itself, in the tape's arena. Creation order is a topological order, so backward()
// is a plain reverse loop (Stan Math's design) with no sort, no hash set and no recursion.
//
// Tapes nest: NestedTape pushes a fresh tape (with its own arena) on a thread-local stack; ops record onto
// the innermost one, and tensors or nodes of outer tapes are constants there. This is what vjp() uses,
// and what the stochastic adjoint uses at every backward step, so that its memory is independent of the
// number of steps.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff/arena.hpp"
#include "autodiff/tensor.hpp"

namespace sdeuq {

class Tape;
struct Node;

using BackwardFn = void (*)(void* closure, const Tensor& grad_out);
struct HigherCtx;
// An op's backward written with Var ops (recorded on the tape), for grad(..., {.create_graph = true}):
// reads the op's inputs, output and output adjoint from the context and sets the input adjoints.
using HigherFn = void (*)(void* closure, HigherCtx& ctx);

struct Node {
    const char* op = "";
    Tensor value;
    Tensor grad;  // undefined until a gradient flows in (parameter leaves: a view of Parameter::grad)
    // grad's storage may be shared with another adjoint (or a value): accumulate into it out of place.
    bool grad_shared = false;
    // Parameter leaves: while *zero_pending is set, grad's storage holds stale values that stand for zeros
    // (Parameter::zero_grad only sets the flag); the first gradient written overwrites it (take_zero).
    bool* zero_pending = nullptr;
    BackwardFn backward = nullptr;
    void* closure = nullptr;  // Parameter leaves (op "parameter"): the Parameter (for error messages)
    HigherFn higher = nullptr;  // null: the op's backward is not differentiable (grad() says which op)
    Node** inputs = nullptr;
    // With `higher`: the values of inputs that are constants here (null node), by input index, else null.
    Tensor** consts = nullptr;
    int n_inputs = 0;
    std::int64_t index = 0;
    Tape* tape = nullptr;
    // Var::retain_grad(): where backward() keeps this intermediate's adjoint (summed over sweeps).
    Tensor* retained = nullptr;
};

// True (once) when n's gradient storage must be overwritten rather than added to: see Node::zero_pending.
inline bool take_zero(Node* n) {
    if (!n->zero_pending || !*n->zero_pending) return false;
    *n->zero_pending = false;
    return true;
}

// A differentiable value: a tensor, plus the tape node that produced it (null for constants).
//
// A Tensor becomes a constant Var (no node: a value, never a gradient path) only explicitly, by Var(t) or
// constant(t). Var(t) refuses a gradient returned by Var::grad() (Tensor::is_gradient(), UsageError):
// write constant(g) to mean "a constant", or take the gradient as a Var from
// grad(..., {.create_graph = true}) to differentiate through it. Tensors from vjp() and Parameter::grad()
// are plain values (the SDE adjoints use them as constants on purpose).
class Var {
public:
    Var() = default;
    explicit Var(Tensor v) : value_(std::move(v)) {
        if (value_.is_gradient()) [[unlikely]]
            gradient_as_constant_error(value_);
    }
    Var(Tensor v, Node* n) : value_(std::move(v)), node_(n) {}

    const Tensor& value() const { return value_; }
    Node* node() const { return node_; }
    bool requires_grad() const { return node_ != nullptr; }
    const Shape& shape() const { return value_.shape(); }
    int rank() const { return value_.rank(); }
    std::int64_t dim(int i) const { return value_.dim(i); }
    std::int64_t numel() const { return value_.numel(); }
    DType dtype() const { return value_.dtype(); }
    double item() const { return value_.item(); }
    // The adjoint after backward(), as PyTorch's .grad: for a leaf (leaf(), Parameter::var()) what
    // flowed in, zeros if nothing did (PyTorch: None); for an intermediate (an op's result) only after
    // retain_grad() (zeros before anything flowed in), otherwise UsageError naming the op: the sweep
    // frees the adjoints of intermediates (PyTorch returns None there). A constant (a frozen parameter's
    // var(), a leaf made under NoGradScope) gives zeros: its gradient is zero.
    Tensor grad() const;
    // Keep this intermediate's adjoint through backward() (summed over several backward calls, as
    // PyTorch's retain_grad); a no-op on leaves; UsageError on a constant. Call it before backward().
    void retain_grad() const;

private:
    friend Var constant(const Tensor& t);
    [[noreturn]] static void gradient_as_constant_error(const Tensor& t);
    Tensor value_;
    Node* node_ = nullptr;
};

// What a HigherFn sees: input k as a Var (its node when it is on the tape, else its value as a constant),
// the op's output, the output's adjoint, and dx[k] to set (left undefined: no gradient for input k).
struct HigherCtx {
    Node* node;
    Var gout;
    Var* dx;
    bool needs(int k) const { return node->inputs[k] != nullptr; }
    Var in(int k) const;
    Var out() const { return Var(node->value, node); }
};

class Tape {
public:
    Tape();
    Arena& arena() { return arena_; }
    const std::vector<Node*>& nodes() const { return nodes_; }
    std::size_t size() const { return nodes_.size(); }
    // Frees every node, closure and arena tensor of this tape at once.
    void reset();
    std::uint64_t generation() const { return arena_.generation(); }
    int depth() const { return depth_; }
    bool accumulates_into_parameters() const { return depth_ == 0; }

    Node* push(const char* op, const Tensor& value, std::span<Node* const> inputs);

private:
    friend class NestedTape;
    Arena arena_;
    std::vector<Node*> nodes_;
    int depth_ = 0;
};

// The innermost tape of this thread.
Tape& current_tape();
// Resets the root tape (the usual end of a training step).
void reset_tape();

// RAII: a fresh tape for the duration of the scope; everything it recorded is freed at exit.
class NestedTape {
public:
    NestedTape();
    ~NestedTape();
    NestedTape(const NestedTape&) = delete;
    NestedTape& operator=(const NestedTape&) = delete;
    Tape& tape() { return *tape_; }

private:
    Tape* tape_;
};

// Gradient recording on/off for this thread.
bool grad_enabled();
class NoGradScope {
public:
    NoGradScope();
    ~NoGradScope();

private:
    bool prev_;
};
// Recording on for the scope (inside a NoGradScope: ops that compute a value through a nested vjp).
class EnableGradScope {
public:
    EnableGradScope();
    ~EnableGradScope();

private:
    bool prev_;
};

// Anomaly mode: every op checks its output (and, in backward, the gradients it produced) for NaN/Inf and
// throws AnomalyError naming the first op that produced one.
struct AnomalyError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
void set_anomaly_mode(bool on);
bool anomaly_mode();
class AnomalyScope {
public:
    AnomalyScope() : prev_(anomaly_mode()) { set_anomaly_mode(true); }
    ~AnomalyScope() { set_anomaly_mode(prev_); }

private:
    bool prev_;
};
bool all_finite(const Tensor& t);

// A leaf that requires a gradient (for inputs to differentiate with respect to).
Var leaf(const Tensor& value);
// Stop-gradient: the same value, no node.
inline Var detach(const Var& v) { return Var(v.value()); }
// A tensor as a constant Var: Var(t) without its check, so the only way to pass a gradient from
// Var::grad() into an op as a constant.
inline Var constant(const Tensor& t) { return Var(t, nullptr); }

// Reverse sweep from `out`, seeded with ones (out must hold one element) or with `cotangent`.
void backward(const Var& out);
void backward(const Var& out, const Tensor& cotangent);

// Adds g (already of n's shape) into n's adjoint; null nodes are skipped. A first gradient that lives in
// the tape's arena is adopted without a copy, as storage shared with its other holders (copy on write: a
// later accumulation into either makes a new tensor), so adjoints passed through unchanged (add, reshape)
// cost nothing. Adjoints read through Var::grad() may therefore share storage: do not write to them.
void accumulate(Node* n, const Tensor& g);
// Same, but g is a freshly computed arena tensor that nobody else holds: it may be adopted as is.
void accumulate_fresh(Node* n, const Tensor& g);

// Trainable state living outside the arena, with its gradient.
class Parameter {
public:
    Parameter() = default;
    Parameter(std::string name, Tensor value, bool trainable = true);
    const std::string& name() const { return name_; }
    Tensor& value() { return value_; }
    const Tensor& value() const { return value_; }
    Tensor& grad() {
        materialize_grad();
        return grad_;
    }
    const Tensor& grad() const {
        materialize_grad();
        return grad_;
    }
    bool trainable() const { return trainable_; }
    void set_trainable(bool t) { trainable_ = t; }
    // Logically zeroes the gradient without touching its memory: the next backward overwrites it, and
    // grad() writes the zeros if no gradient came in before it is read.
    void zero_grad() { zero_pending_ = true; }
    // A leaf on the current tape (one per tape and generation); a constant when gradients are off.
    Var var();

private:
    std::string name_;
    Tensor value_;
    void materialize_grad() const;
    mutable Tensor grad_;
    mutable bool zero_pending_ = false;
    bool trainable_ = true;
    Node* cached_ = nullptr;
    Tape* cached_tape_ = nullptr;
    std::uint64_t cached_generation_ = 0;
};

// Records an op. `backward` is a callable taking the output's adjoint (const Tensor&); it is moved into
// the arena, next to the node. If gradients are off or no input needs one, nothing is recorded and the
// result is a constant.
template <class F>
Var record(const char* op, const Tensor& out, std::initializer_list<Var> inputs, F&& backward_fn);
// Same, with the op's differentiable backward `higher_fn` (a callable taking HigherCtx&), stored with
// backward_fn in one arena closure.
template <class F, class H>
Var record(const char* op, const Tensor& out, std::initializer_list<Var> inputs, F&& backward_fn, H&& higher_fn);
Var record_n(const char* op, const Tensor& out, std::span<const Var> inputs, BackwardFn fn, void* closure,
             HigherFn higher = nullptr);
// The exit of an op that records nothing: the anomaly check, and a forward call for the profiler.
void check_anomaly(const char* op, const Tensor& out);

namespace detail {
bool any_on_tape(std::span<const Var> inputs, Tape& t);
// The partial derivatives of `out` with respect to `inputs` (with output adjoint gout) through the nodes
// recorded at tape index >= first only; nodes below first are not expanded. The differentiable backward
// of an op whose forward is restated as a composite of ops (the norms): the composite is recorded from
// index first on, and its Var-level sweep gives the op's input adjoints.
std::vector<Var> local_grad(const Var& out, std::span<const Var> inputs, const Var& gout, std::int64_t first);
}

template <class F>
Var record(const char* op, const Tensor& out, std::initializer_list<Var> inputs, F&& backward_fn) {
    std::span<const Var> in(inputs.begin(), inputs.size());
    if (!grad_enabled() || !detail::any_on_tape(in, current_tape())) {
        check_anomaly(op, out);
        return Var(out);
    }
    using Fn = std::decay_t<F>;
    Fn* closure = current_tape().arena().make<Fn>(std::forward<F>(backward_fn));
    BackwardFn fn = [](void* c, const Tensor& g) { (*static_cast<Fn*>(c))(g); };
    return record_n(op, out, in, fn, closure);
}

template <class F, class H>
Var record(const char* op, const Tensor& out, std::initializer_list<Var> inputs, F&& backward_fn, H&& higher_fn) {
    std::span<const Var> in(inputs.begin(), inputs.size());
    if (!grad_enabled() || !detail::any_on_tape(in, current_tape())) {
        check_anomaly(op, out);
        return Var(out);
    }
    struct Both {
        std::decay_t<F> f;
        std::decay_t<H> h;
    };
    Both* closure = current_tape().arena().make<Both>(Both{std::forward<F>(backward_fn), std::forward<H>(higher_fn)});
    BackwardFn fn = [](void* c, const Tensor& g) { static_cast<Both*>(c)->f(g); };
    HigherFn hf = [](void* c, HigherCtx& x) { static_cast<Both*>(c)->h(x); };
    return record_n(op, out, in, fn, closure, hf);
}

// Input node of a Var if it lives on the current tape, else null (a constant there).
Node* node_of(const Var& v);

// Vector-Jacobian product in a nested scope: evaluates out = f(inputs) on a fresh tape (inputs become
// leaves; parameters used by f get leaves of that tape), and returns out together with
// cotangent^T d out / d input for each input and each parameter. Nothing recorded by f survives the call:
// results are copied into the enclosing arena. The enclosing computation is not recorded through.
struct VjpResult {
    Tensor output;
    std::vector<Tensor> input_grads;
    std::vector<Tensor> param_grads;
};
VjpResult vjp(const std::function<Var(std::span<const Var>)>& f, std::span<const Tensor> inputs,
              std::span<Parameter* const> params, const Tensor& cotangent);

// d out / d inputs as Vars (PyTorch's torch.autograd.grad). The sweep runs each op's differentiable
// backward (HigherFn) from out down to the earliest input; it neither reads nor writes any node's or
// parameter's .grad. With create_graph the gradient ops are recorded on the tape, so the results can be
// differentiated again (Hessian-vector products, gradient penalties, grad of grad); without it they are
// constants. An input out does not depend on gets zeros. inputs must live on the current tape (leaves,
// Parameter::var(), or intermediates: the gradient then counts the paths through that Var). Ops without a
// differentiable backward (the SDE estimators' fused nodes) throw UsageError naming the op.
struct GradOptions {
    bool create_graph = false;
};
std::vector<Var> grad(const Var& out, const std::vector<Var>& inputs, GradOptions opt = {});
// With the output's cotangent (a Var of out's shape; it may itself be on the tape).
std::vector<Var> grad(const Var& out, const std::vector<Var>& inputs, const Var& cotangent, GradOptions opt = {});

}  // namespace sdeuq
