// Fused differentiable ops: one tape node (one arena output, one backward closure) where the plain ops
// would record several. Forward and backward stand side by side in autodiff/ops_fused.cpp; each has a
// float64 gradient check in tests/test_ops_fused.cpp.
#pragma once

#include <span>

#include "autodiff/tape.hpp"

namespace sdeuq {

// c_0 x_0 + c_1 x_1 + ... + c_{k-1} x_{k-1} for 1 <= k <= 8 inputs of one shape and dtype, one node.
// Evaluated per element left to right in the dtype T, each product T(c_i) * x_i rounded before it is
// added: ((T(c_0) x_0 + T(c_1) x_1) + T(c_2) x_2) + ..., which is bit for bit `x_0 + x_1 * c_1 - x_2`
// and the like written with the plain ops whenever those apply their scalars to single inputs (c = 1 and
// c = -1 are exact; the products are not contracted into FMAs: the project builds with -ffp-contract=off).
// Backward: dx_i = c_i G (c_i = 1 passes G through without a copy). Used by the SDE solver steps
// (y + f h + g.dW and their halves) and the adjoint's f dt + g.dW.
Var lincomb(std::span<const Var> xs, std::span<const double> coeffs);

// sum(a * ca) + sum(b * cb), a rank-0 Var, for constants ca, cb of a's and b's shapes and dtype (no
// broadcasting). The sums run in double, over each of the two in 8 interleaved partial sums (element i
// into partial i % 8, added as ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)); a serial sum is one
// dependent add per element), sum(a * ca) + sum(b * cb) rounded once to the dtype. Backward with
// output adjoint G: da = G ca, db = G cb (for G == 1, ca and cb themselves, bit for bit). It seeds a VJP
// with several cotangents in one node: the reversible Heun adjoint differentiates
// <f, A> + <g o dW_j, C> + <g o dW_{j-1}, A_y / 2> with cb = dW_j o C + dW_{j-1} o A_y / 2.
Var sum_products2(const Var& a, const Tensor& ca, const Var& b, const Tensor& cb);

}  // namespace sdeuq
