// Differentiable ops on Var. Each op's forward and backward stand side by side in the ops_*.cpp files.
//
// Binary elementwise ops broadcast as NumPy does; their gradients are un-broadcast once, centrally, by
// sum_to(). Every op checks its inputs and throws ShapeError naming the op and the shapes.
//
// No type promotion: the inputs of a binary op (add, sub, mul, div, pow, maximum, minimum, where, matmul,
// the losses, scatter_add) must have one dtype; f32 with f64 throws ShapeError naming the op and both
// operands ("add: dtype mismatch f32[3] vs f64[3]"). Convert explicitly (Tensor::to) where PyTorch would
// promote to f64. Scalars (double) take the tensor's dtype.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "autodiff/tape.hpp"

namespace sdeuq {

// ---- broadcasting helpers (tensors, no tape) ----
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
// Sums t over the broadcast dimensions so that it has `target` shape.
Tensor sum_to(const Tensor& t, const Shape& target);
// The same as a differentiable op (sum over the broadcast axes, then reshape).
Var sum_to(const Var& a, const Shape& target);

// ---- elementwise binary (broadcasting) ----
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
// pow follows C99 Annex F (std::pow) on special values: pow(x, 0) = pow(1, y) = 1, pow(0, -1) = inf,
// pow(-0, 3) = -0, negative base with non-integer y NaN; the vector kernel (kernels::pow_v) matches.
Var pow(const Var& a, const Var& b);       // a > 0 where b is differentiated
// Ties (a == b): maximum sends the whole gradient to a (a >= b), minimum to a (a <= b). PyTorch splits it
// (half to each) on purpose; ours is a subgradient, as relu's. NaN: the value is b's when a or b is NaN
// and a is not >= b (select(a >= b, a, b)), so maximum(NaN, 1) = 1 but maximum(1, NaN) = NaN; PyTorch
// propagates NaN from either side.
Var maximum(const Var& a, const Var& b);
Var minimum(const Var& a, const Var& b);
// scalar forms
Var add(const Var& a, double s);
Var mul(const Var& a, double s);
Var pow(const Var& a, double p);
Var rsub(double s, const Var& a);          // s - a
Var rdiv(double s, const Var& a);          // s / a

inline Var operator+(const Var& a, const Var& b) { return add(a, b); }
inline Var operator-(const Var& a, const Var& b) { return sub(a, b); }
inline Var operator*(const Var& a, const Var& b) { return mul(a, b); }
inline Var operator/(const Var& a, const Var& b) { return div(a, b); }
inline Var operator+(const Var& a, double s) { return add(a, s); }
inline Var operator+(double s, const Var& a) { return add(a, s); }
inline Var operator-(const Var& a, double s) { return add(a, -s); }
inline Var operator-(double s, const Var& a) { return rsub(s, a); }
inline Var operator*(const Var& a, double s) { return mul(a, s); }
inline Var operator*(double s, const Var& a) { return mul(a, s); }
inline Var operator/(const Var& a, double s) { return mul(a, 1.0 / s); }
inline Var operator/(double s, const Var& a) { return rdiv(s, a); }

// ---- elementwise unary ----
Var neg(const Var& a);
inline Var operator-(const Var& a) { return neg(a); }
Var exp(const Var& a);
Var log(const Var& a);
Var log1p(const Var& a);
Var sqrt(const Var& a);
Var square(const Var& a);
Var abs(const Var& a);                     // gradient sign(a), 0 at 0
// Gradient 1 strictly inside (lo, hi), 0 at and beyond the boundaries; PyTorch passes the gradient at
// x == lo or x == hi (its mask is lo <= x <= hi). Ours is the one-sided choice that keeps a clamped
// value from being pushed further out; NaN passes through (value and gradient 0).
Var clamp(const Var& a, double lo, double hi);
Var tanh(const Var& a);
Var sigmoid(const Var& a);
Var relu(const Var& a);
// log(1 + exp(x)) computed stably as max(x, 0) + log1p(exp(-|x|)) for every x. PyTorch's softplus
// switches to the identity above threshold = 20 (an error of exp(-20) ~ 2e-9); ours has no threshold,
// so values and gradients (sigmoid(x)) differ from PyTorch's by up to ~2e-9 above 20.
Var softplus(const Var& a);
Var silu(const Var& a);
Var sin(const Var& a);
Var cos(const Var& a);
// cond != 0 selects a, else b (cond is a constant; broadcasting over all three).
Var where(const Tensor& cond, const Var& a, const Var& b);
// a * mask (mask a constant of a's shape or broadcastable).
Var masked(const Var& a, const Tensor& mask);

// ---- linear algebra ----
// a: [..., M, K] (or [..., K, M] with trans_a), b: [..., K, N] (or [..., N, K] with trans_b).
// Batch dims: equal, or one operand 2-D (shared across the batch).
Var matmul(const Var& a, const Var& b, bool trans_a = false, bool trans_b = false);
// x [.., in] @ w^T + b with w [out, in] (the Linear layer's layout), bias optional.
Var linear(const Var& x, const Var& w, const Var* bias = nullptr);
// act(linear(x, w, bias)) as one node ("linear_tanh", ...): the activation runs in place on the GEMM's
// output while it is in cache, and the backward takes its derivative from the output (tanh: 1 - y^2,
// sigmoid: y (1 - y), relu: y > 0), so one tensor is kept instead of two and one node recorded instead
// of two. The same bits as act(linear(...)), values and gradients (tests/test_ops_fused.cpp).
enum class LinearAct { none, tanh, sigmoid, relu };
Var linear(const Var& x, const Var& w, const Var* bias, LinearAct act);
// The bias as a value (linear(x, w.var(), b.var()) needs no named local); std::nullopt: no bias.
inline Var linear(const Var& x, const Var& w, const std::optional<Var>& bias) {
    return linear(x, w, bias ? &*bias : nullptr);
}
inline Var linear(const Var& x, const Var& w, const std::optional<Var>& bias, LinearAct act) {
    return linear(x, w, bias ? &*bias : nullptr, act);
}

// ---- shape ----
Var reshape(const Var& a, const Shape& s);  // one dim may be -1 (pass as Shape via reshape_infer)
Var reshape_infer(const Var& a, std::vector<std::int64_t> dims);
Var transpose(const Var& a, int d0 = -2, int d1 = -1);
Var permute(const Var& a, std::vector<int> perm);
Var slice(const Var& a, int axis, std::int64_t start, std::int64_t stop);  // [start, stop)
Var concat(std::span<const Var> xs, int axis);
Var stack(std::span<const Var> xs, int axis);
// Braced lists: concat({a, b}, 1) (a braced list does not convert to a span).
inline Var concat(std::initializer_list<Var> xs, int axis) { return concat(std::span<const Var>(xs.begin(), xs.size()), axis); }
inline Var stack(std::initializer_list<Var> xs, int axis) { return stack(std::span<const Var>(xs.begin(), xs.size()), axis); }
Var broadcast_to(const Var& a, const Shape& s);

// ---- reductions ----
Var sum(const Var& a);                                   // all elements -> scalar (rank 0)
Var sum(const Var& a, std::vector<int> axes, bool keepdims = false);
Var mean(const Var& a);
Var mean(const Var& a, std::vector<int> axes, bool keepdims = false);
// Ties: the whole gradient goes to the first maximum (minimum) along the axis (PyTorch's max(dim) and
// min(dim) send it to the index they return; its amax/amin and full max()/min() reductions split it
// evenly among the tied elements). NaN counts as the extremum: the first NaN is returned (as PyTorch).
Var max(const Var& a, int axis, bool keepdims = false);
Var min(const Var& a, int axis, bool keepdims = false);
// Over several axes (PyTorch's amax/amin values): ties go to the first extremum in row-major order over
// the reduced axes (its index within them, flattened). axes must not be empty (pass all axes to reduce
// all); repeated axes throw.
Var max(const Var& a, std::vector<int> axes, bool keepdims = false);
Var min(const Var& a, std::vector<int> axes, bool keepdims = false);
Var logsumexp(const Var& a, int axis, bool keepdims = false);
Var softmax(const Var& a, int axis = -1);
Var log_softmax(const Var& a, int axis = -1);

// ---- losses ----
// Every loss reduces by the mean unless told otherwise (PyTorch's reduction='mean'|'sum'|'none'); with
// none the per-element (per-sample for cross_entropy and nll_loss) losses are returned, in the broadcast
// shape of the inputs.
enum class Reduction { mean, sum, none };
// Labels: int32 values, as a std::span, or as a rank-1 tensor [N] holding integers in float storage (f32
// or f64: the engine has no integer dtype; a non-integer or out-of-range label throws ShapeError naming
// the row). PyTorch's probability targets (float [N, C]) are not supported.
// Options as PyTorch's cross_entropy/nll_loss: class weights w [C] (undefined: all ones), labels equal to
// ignore_index contribute 0 (and, with none, give a 0 entry), label_smoothing e in [0, 1] mixes the
// one-hot target with the uniform one. Per sample i with target y_i (not ignored):
//   loss_i = -(1 - e) w[y_i] log p_i[y_i] - (e / C) sum_c w[c] log p_i[c],
// mean = sum_i loss_i / sum_i w[y_i] over the non-ignored samples (PyTorch's weighted mean, also with
// smoothing; NaN when every sample is ignored, as PyTorch), sum = sum_i loss_i.
struct CrossEntropyOptions {
    Reduction reduction = Reduction::mean;
    Tensor weight = {};  // (an initializer: designated initializers may leave it out under -Wextra)
    std::int32_t ignore_index = -100;
    double label_smoothing = 0.0;
};
// nll_loss takes log-probabilities; the same options without smoothing (label_smoothing must be 0).
using NllLossOptions = CrossEntropyOptions;
// logits [N, C]. Without options: the mean, no weights, every label in [0, C).
Var cross_entropy(const Var& logits, std::span<const std::int32_t> labels);
Var cross_entropy(const Var& logits, std::span<const std::int32_t> labels, const CrossEntropyOptions& opt);
Var cross_entropy(const Var& logits, const Tensor& labels, const CrossEntropyOptions& opt = {});
Var nll_loss(const Var& log_probs, std::span<const std::int32_t> labels);
Var nll_loss(const Var& log_probs, std::span<const std::int32_t> labels, const NllLossOptions& opt);
Var nll_loss(const Var& log_probs, const Tensor& labels, const NllLossOptions& opt = {});
// The labels of a rank-1 tensor of integers in float storage, checked (op names the caller).
std::vector<std::int32_t> labels_from_tensor(const char* op, const Tensor& labels);
Var mse_loss(const Var& pred, const Var& target);
Var mse_loss(const Var& pred, const Var& target, Reduction reduction);
// 0.5 * (log(2 pi var) + (x - mu)^2 / var), mean over elements. Differs from PyTorch's
// gaussian_nll_loss on purpose: the constant 0.5 log(2 pi) is included (PyTorch's full=True), and by
// default there is no variance floor: var must be > 0 everywhere (ShapeError naming the first bad element)
// instead of being clamped silently, so a collapsing variance head shows up. PyTorch's floor is an option.
struct GaussianNllOptions {
    // PyTorch's clamp: v = max(var, eps), a negative var throws, the gradient passes through the clamp
    bool clamp_var = false;
    double eps = 1e-6;       // PyTorch's default
    Reduction reduction = Reduction::mean;
};
Var gaussian_nll(const Var& mean, const Var& var, const Var& target);
Var gaussian_nll(const Var& mean, const Var& var, const Var& target, GaussianNllOptions opt);
// Stable: max(z, 0) - z*y + log1p(exp(-|z|)), mean over elements.
Var bce_with_logits(const Var& logits, const Var& targets);
Var bce_with_logits(const Var& logits, const Var& targets, Reduction reduction);
// gather along axis 1 of [N, C]: out[i] = a[i, idx[i]]
Var gather(const Var& a, std::span<const std::int32_t> index);
// PyTorch's gather and scatter_add on any axis of N-d tensors. The index is a tensor of the input's rank
// holding integers in float storage (f32 or f64: the engine has no integer dtype; f32 is exact up to
// 2^24); a non-integer or out-of-range value throws ShapeError naming the op, the value and its position.
// gather: out has index's shape, out[..., i_axis, ...] = a[..., index[...], ...]; index.dim(d) <= a.dim(d)
// for d != axis. scatter_add: out = self, plus src[e] added at e's position with coordinate `axis`
// replaced by index[e] (sums in index order); src must have index's shape. Each is the other's backward,
// so both have derivatives of every order.
Var gather(const Var& a, int axis, const Tensor& index);
Var scatter_add(const Var& self, int axis, const Tensor& index, const Var& src);
Tensor one_hot(std::span<const std::int32_t> labels, std::int64_t classes, DType dt = DType::f32);

// ---- convolution, pooling, normalisation, dropout ----
// x [N, C, H, W], w [O, C, kh, kw], bias [O] optional; zero padding.
Var conv2d(const Var& x, const Var& w, const Var* bias, int stride = 1, int padding = 0);
// PyTorch's F.conv2d(x, w, bias, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups): w is
// [O, C/groups, kh, kw], O divisible by groups; output [N, O, ho, wo] with
// ho = (H + 2 ph - dh (kh - 1) - 1) / sh + 1. Options equivalent to (stride, padding) above run that
// op (same kernels, same bits); the others run the general path (docs/conv_general.md). Bad options or
// shapes throw UsageError naming conv2d, the shapes and the options.
struct Conv2dFuncOptions {
    int stride_h = 1, stride_w = 1;
    int pad_h = 0, pad_w = 0;
    int dilation_h = 1, dilation_w = 1;
    int groups = 1;
};
Var conv2d(const Var& x, const Var& w, const Var* bias, const Conv2dFuncOptions& opt);
// bias by reference (no named local needed for Parameter::var()), and without bias.
Var conv2d(const Var& x, const Var& w, const Var& bias, const Conv2dFuncOptions& opt);
Var conv2d(const Var& x, const Var& w, const Conv2dFuncOptions& opt);
inline Var conv2d(const Var& x, const Var& w, const Var& bias, int stride = 1, int padding = 0) {
    return conv2d(x, w, &bias, stride, padding);
}
Var avg_pool2d(const Var& x, int kernel, int stride);
// PyTorch's F.avg_pool2d(x, (kh, kw), (sh, sw), (ph, pw), ceil_mode=False, count_include_pad): a stride
// of 0 means the kernel's extent (PyTorch's stride=None); zero padding of at most half the kernel.
struct AvgPool2dFuncOptions {
    int kernel_h = 2, kernel_w = 2;
    int stride_h = 0, stride_w = 0;
    int pad_h = 0, pad_w = 0;
    bool count_include_pad = true;
};
Var avg_pool2d(const Var& x, const AvgPool2dFuncOptions& opt);
Var global_avg_pool(const Var& x);  // [N, C, H, W] -> [N, C]
// x [N, C, ...]: per sample, per group of C/groups channels; gamma, beta [C] optional.
Var group_norm(const Var& x, int groups, const Var* gamma, const Var* beta, double eps = 1e-5);
// relu(group_norm(x, ...)) as one op: the same values, one pass over the data each way, one tensor less.
Var group_norm_relu(const Var& x, int groups, const Var* gamma, const Var* beta, double eps = 1e-5);
// normalises over the last dimension; gamma, beta [D] optional.
Var layer_norm(const Var& x, const Var* gamma, const Var* beta, double eps = 1e-5);
// gamma, beta as values (Parameter::var() needs no named local); std::nullopt: absent.
inline Var group_norm(const Var& x, int groups, const std::optional<Var>& gamma, const std::optional<Var>& beta,
                      double eps = 1e-5) {
    return group_norm(x, groups, gamma ? &*gamma : nullptr, beta ? &*beta : nullptr, eps);
}
inline Var layer_norm(const Var& x, const std::optional<Var>& gamma, const std::optional<Var>& beta,
                      double eps = 1e-5) {
    return layer_norm(x, gamma ? &*gamma : nullptr, beta ? &*beta : nullptr, eps);
}
class Generator;
// Inverted dropout: the mask (Bernoulli(1-p) / (1-p)) is materialized once from gen.
Var dropout(const Var& x, double p, Generator& gen);
// dropout(relu(x), p, gen) in one pass, with the same random draws and the same bits (for finite
// gradients); the backward is one multiply by the saved mask (zero where x <= 0).
Var relu_dropout(const Var& x, double p, Generator& gen);

}  // namespace sdeuq
