// Differentiable adjoints of conv2d and avg_pool2d, and the Var-level backwards of ops_nn.cpp's ops.
#include "autodiff/ops_higher.hpp"

#include <fmt/format.h>

#include "autodiff/tensor_ops.hpp"

namespace sdeuq {

namespace {

// J^T gy of y = f(x) at x = 0 (f linear in x), by f's own backward on a nested tape. Recording is on
// inside (grad() without create_graph runs the Var backwards in a no-grad scope).
Tensor linear_adjoint(const std::function<Var(const Var&)>& f, const Shape& x_shape, DType dt, const Tensor& gy) {
    EnableGradScope on;
    Tensor x0 = Tensor::zeros(x_shape, dt);
    VjpResult r = vjp([&](std::span<const Var> in) { return f(in[0]); }, std::span<const Tensor>(&x0, 1), {}, gy);
    return r.input_grads[0];
}

// The plain (stride, padding) convolution as options: conv2d(x, w, nullptr, opt) runs that op.
Conv2dFuncOptions plain(int stride, int padding) {
    return {.stride_h = stride, .stride_w = stride, .pad_h = padding, .pad_w = padding};
}

Tensor input_grad_value(const Tensor& gy, const Tensor& w, const Shape& xs, const Conv2dFuncOptions& opt) {
    return linear_adjoint([&](const Var& x) { return conv2d(x, Var(w), nullptr, opt); }, xs, w.dtype(), gy);
}

Tensor weight_grad_value(const Tensor& x, const Tensor& gy, const Shape& ws, const Conv2dFuncOptions& opt) {
    return linear_adjoint([&](const Var& w) { return conv2d(Var(x), w, nullptr, opt); }, ws, x.dtype(), gy);
}

Tensor conv_value(const Tensor& x, const Tensor& w, const Conv2dFuncOptions& opt) {
    NoGradScope off;
    return conv2d(Var(x), Var(w), nullptr, opt).value();
}

}  // namespace

Var conv2d_input_grad(const Var& gy, const Var& w, const Shape& x_shape, int stride, int padding) {
    return conv2d_input_grad(gy, w, x_shape, plain(stride, padding));
}

Var conv2d_weight_grad(const Var& x, const Var& gy, const Shape& w_shape, int stride, int padding) {
    return conv2d_weight_grad(x, gy, w_shape, plain(stride, padding));
}

Var conv2d_input_grad(const Var& gy, const Var& w, const Shape& x_shape, const Conv2dFuncOptions& opt) {
    check_same_dtype("conv2d_input_grad", gy.value(), w.value());
    Tensor y = input_grad_value(gy.value(), w.value(), x_shape, opt);
    // <v, J_x^T gy(gy, w)> is bilinear: d gy = conv2d(v, w), d w = J_w^T gy evaluated at x = v.
    return record("conv2d_input_grad", y, {gy, w},
                  [ng = node_of(gy), nw = node_of(w), gyv = gy.value(), wv = w.value(), opt](const Tensor& v) {
                      if (ng) accumulate_fresh(ng, conv_value(v, wv, opt));
                      if (nw) accumulate_fresh(nw, weight_grad_value(v, gyv, wv.shape(), opt));
                  },
                  [opt](HigherCtx& c) {
                      Var gy = c.in(0), w = c.in(1);
                      if (c.needs(0)) c.dx[0] = conv2d(c.gout, w, nullptr, opt);
                      if (c.needs(1)) c.dx[1] = conv2d_weight_grad(c.gout, gy, w.shape(), opt);
                  });
}

Var conv2d_weight_grad(const Var& x, const Var& gy, const Shape& w_shape, const Conv2dFuncOptions& opt) {
    check_same_dtype("conv2d_weight_grad", x.value(), gy.value());
    Tensor y = weight_grad_value(x.value(), gy.value(), w_shape, opt);
    // <v, J_w^T gy(x, gy)>: d x = J_x^T gy at w = v, d gy = conv2d(x, v).
    return record("conv2d_weight_grad", y, {x, gy},
                  [nx = node_of(x), ng = node_of(gy), xv = x.value(), gyv = gy.value(), opt](const Tensor& v) {
                      if (nx) accumulate_fresh(nx, input_grad_value(gyv, v, xv.shape(), opt));
                      if (ng) accumulate_fresh(ng, conv_value(xv, v, opt));
                  },
                  [opt](HigherCtx& c) {
                      Var x = c.in(0), gy = c.in(1);
                      if (c.needs(0)) c.dx[0] = conv2d_input_grad(gy, c.gout, x.shape(), opt);
                      if (c.needs(1)) c.dx[1] = conv2d(x, c.gout, nullptr, opt);
                  });
}

Var avg_pool2d_adjoint(const Var& gy, const Shape& x_shape, int kernel, int stride) {
    Tensor y = linear_adjoint([&](const Var& x) { return avg_pool2d(x, kernel, stride); }, x_shape, gy.dtype(),
                              gy.value());
    return record("avg_pool2d_adjoint", y, {gy},
                  [ng = node_of(gy), kernel, stride](const Tensor& v) {
                      NoGradScope off;
                      accumulate_fresh(ng, avg_pool2d(Var(v), kernel, stride).value());
                  },
                  [kernel, stride](HigherCtx& c) { c.dx[0] = avg_pool2d(c.gout, kernel, stride); });
}

namespace detail {

void conv2d_higher(HigherCtx& c, int stride, int padding) {
    Var x = c.in(0), w = c.in(1);
    if (c.needs(0)) c.dx[0] = conv2d_input_grad(c.gout, w, x.shape(), stride, padding);
    if (c.needs(1)) c.dx[1] = conv2d_weight_grad(x, c.gout, w.shape(), stride, padding);
    if (c.needs(2)) c.dx[2] = sum(c.gout, {0, 2, 3});
}

void conv2d_general_higher(HigherCtx& c, const Conv2dFuncOptions& opt) {
    Var x = c.in(0), w = c.in(1);
    if (c.needs(0)) c.dx[0] = conv2d_input_grad(c.gout, w, x.shape(), opt);
    if (c.needs(1)) c.dx[1] = conv2d_weight_grad(x, c.gout, w.shape(), opt);
    if (c.needs(2)) c.dx[2] = sum(c.gout, {0, 2, 3});
}

void avg_pool2d_general_higher(HigherCtx& c, const AvgPool2dFuncOptions& opt) {
    c.dx[0] = avg_pool2d_adjoint(c.gout, c.in(0).shape(), opt);
}

void avg_pool2d_higher(HigherCtx& c, int kernel, int stride) {
    c.dx[0] = avg_pool2d_adjoint(c.gout, c.in(0).shape(), kernel, stride);
}

void global_avg_pool_higher(HigherCtx& c) {
    const Shape xs = c.in(0).shape();
    c.dx[0] = mul(broadcast_to(reshape(c.gout, Shape{xs[0], xs[1], 1, 1}), xs), 1.0 / static_cast<double>(xs[2] * xs[3]));
}

void dropout_higher(HigherCtx& c, const Tensor& mask) { c.dx[0] = mul(c.gout, Var(mask)); }

void norm_higher(HigherCtx& c, int groups, double eps, bool relu) {
    Var x = c.in(0), gamma = c.in(1), beta = c.in(2);
    // Recorded even without create_graph: local_grad differentiates the recorded composite.
    EnableGradScope on;
    const auto first = static_cast<std::int64_t>(current_tape().size());
    // The forward as ops: per block (a row of layer_norm, a sample's group of group_norm), the biased
    // variance, as kernels::norm_forward.
    const Shape& xs = x.shape();
    Var blocks = groups == 0 ? x : reshape(x, Shape{xs[0], groups, x.numel() / (xs[0] * groups)});
    Var mu = mean(blocks, {-1}, true);
    Var xc = sub(blocks, mu);
    Var var = mean(square(xc), {-1}, true);
    Var y = reshape(mul(xc, pow(add(var, eps), -0.5)), xs);
    std::vector<std::int64_t> cs(static_cast<std::size_t>(xs.rank()), 1);  // gamma, beta along C
    cs[groups == 0 ? cs.size() - 1 : 1] = groups == 0 ? xs[-1] : xs[1];
    if (gamma.value().defined()) y = mul(y, reshape(gamma, Shape(cs)));
    if (beta.value().defined()) y = add(y, reshape(beta, Shape(cs)));
    if (relu) y = sdeuq::relu(y);
    std::vector<Var> in{x, gamma, beta};
    std::vector<Var> d = local_grad(y, in, c.gout, first);
    for (int k = 0; k < 3; ++k)
        if (c.needs(k)) c.dx[k] = d[static_cast<std::size_t>(k)];
}

}  // namespace detail

}  // namespace sdeuq
