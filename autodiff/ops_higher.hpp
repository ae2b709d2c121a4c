// Differentiable backwards of the convolution, pooling and normalisation ops (autodiff/ops_nn.cpp), for
// grad(..., {.create_graph = true}).
//
// The adjoints of conv2d and avg_pool2d are ops of their own here, each with a backward and a Var-level
// backward, so gradients of gradients of any order exist: conv2d_input_grad(gy, w) = J_x^T gy and
// conv2d_weight_grad(x, gy) = J_w^T gy are bilinear, and their derivatives are conv2d and the other
// adjoint again. Their values are computed by conv2d's own backward (a vjp at a zero input: J_x does not
// depend on x), so they use whatever kernels conv2d uses. The norms' Var-level backward restates the
// forward as a composite of ops and differentiates that (detail::local_grad).
#pragma once

#include "autodiff/ops.hpp"

namespace sdeuq {

// J_x^T gy of y = conv2d(x, w, nullptr, stride, padding) for x of shape x_shape.
Var conv2d_input_grad(const Var& gy, const Var& w, const Shape& x_shape, int stride, int padding);
// J_w^T gy of the same conv2d, for w of shape w_shape.
Var conv2d_weight_grad(const Var& x, const Var& gy, const Shape& w_shape, int stride, int padding);
// J_x^T gy of y = avg_pool2d(x, kernel, stride) for x of shape x_shape.
Var avg_pool2d_adjoint(const Var& gy, const Shape& x_shape, int kernel, int stride);
// The same adjoints for conv2d(x, w, nullptr, opt) and avg_pool2d(x, opt) (autodiff/ops_conv_general.cpp).
Var conv2d_input_grad(const Var& gy, const Var& w, const Shape& x_shape, const Conv2dFuncOptions& opt);
Var conv2d_weight_grad(const Var& x, const Var& gy, const Shape& w_shape, const Conv2dFuncOptions& opt);
Var avg_pool2d_adjoint(const Var& gy, const Shape& x_shape, const AvgPool2dFuncOptions& opt);

namespace detail {
// The Var-level backwards the ops of ops_nn.cpp record (inputs as those ops order them).
void conv2d_higher(HigherCtx& c, int stride, int padding);           // {x, w, bias}
void conv2d_general_higher(HigherCtx& c, const Conv2dFuncOptions& opt);  // {x, w, bias}
void avg_pool2d_general_higher(HigherCtx& c, const AvgPool2dFuncOptions& opt);  // {x}
void avg_pool2d_higher(HigherCtx& c, int kernel, int stride);        // {x}
void global_avg_pool_higher(HigherCtx& c);                           // {x}
// {x, gamma, beta}; groups 0: layer_norm; relu: relu(norm) (group_norm_relu)
void norm_higher(HigherCtx& c, int groups, double eps, bool relu = false);
void dropout_higher(HigherCtx& c, const Tensor& mask);               // {x}
}  // namespace detail

}  // namespace sdeuq
