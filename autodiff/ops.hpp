// Differentiable ops on Var. Each op's forward and backward stand side by side in the ops_*.cpp files.
//
// Binary elementwise ops broadcast as NumPy does; their gradients are un-broadcast once, centrally, by
// sum_to(). Every op checks its inputs and throws ShapeError naming the op and the shapes.
#pragma once

#include <cstdint>
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
// Ties: the whole gradient goes to the first maximum along the axis (PyTorch's max(dim) to the index it
// returns; its amax and full max() reduction split it evenly among the tied elements).
Var max(const Var& a, int axis, bool keepdims = false);
Var logsumexp(const Var& a, int axis, bool keepdims = false);
Var softmax(const Var& a, int axis = -1);
Var log_softmax(const Var& a, int axis = -1);

// ---- losses (mean over the batch) ----
// logits [N, C], labels int32 [N] stored as a Tensor of f32/f64 integral values or via std::span.
Var cross_entropy(const Var& logits, std::span<const std::int32_t> labels);
Var nll_loss(const Var& log_probs, std::span<const std::int32_t> labels);
Var mse_loss(const Var& pred, const Var& target);
// 0.5 * (log(2 pi var) + (x - mu)^2 / var), mean over elements. Differs from PyTorch's
// gaussian_nll_loss on purpose: the constant 0.5 log(2 pi) is included (PyTorch's full=True), and by
// default there is no variance floor: var must be > 0 everywhere (ShapeError naming the first bad element)
// instead of being clamped silently, so a collapsing variance head shows up. PyTorch's floor is an option.
struct GaussianNllOptions {
    // PyTorch's clamp: v = max(var, eps), a negative var throws, the gradient passes through the clamp
    bool clamp_var = false;
    double eps = 1e-6;       // PyTorch's default
};
Var gaussian_nll(const Var& mean, const Var& var, const Var& target);
Var gaussian_nll(const Var& mean, const Var& var, const Var& target, GaussianNllOptions opt);
// Stable: max(z, 0) - z*y + log1p(exp(-|z|)), mean over elements.
Var bce_with_logits(const Var& logits, const Var& targets);
// gather along axis 1 of [N, C]: out[i] = a[i, idx[i]]
Var gather(const Var& a, std::span<const std::int32_t> index);
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
// normalises over the last dimension; gamma, beta [D] optional.
Var layer_norm(const Var& x, const Var* gamma, const Var* beta, double eps = 1e-5);
class Generator;
// Inverted dropout: the mask (Bernoulli(1-p) / (1-p)) is materialized once from gen.
Var dropout(const Var& x, double p, Generator& gen);
// dropout(relu(x), p, gen) in one pass, with the same random draws and the same bits (for finite
// gradients); the backward is one multiply by the saved mask (zero where x <= 0).
Var relu_dropout(const Var& x, double p, Generator& gen);

}  // namespace sdeuq
