// Dense float64 linear algebra for the GP output layer: Cholesky factorisation and triangular solves.
//
// Heap tensors in, heap tensors out; all inputs must be float64 (the GP's precision matrix is kept in
// float64 whatever the network's dtype: its condition number grows with the number of training points).
// Plain loops (Golub & Van Loan, "Matrix Computations", Alg. 4.2.1, the inner-product Cholesky; Alg. 3.1.1/
// 3.1.2 for the substitutions): sizes here are the number of random features (~1024), not large enough to
// need a blocked factorisation.
#pragma once

#include <stdexcept>
#include <string>

#include "autodiff/tensor.hpp"

namespace sdeuq::nn::linalg {

struct LinalgError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Lower-triangular L with A = L L^T (the strict upper triangle of the result is zero). A must be
// symmetric [n, n] float64; only its lower triangle is read. Throws LinalgError naming `who` and the
// failing pivot if A is not (numerically) positive definite.
Tensor cholesky(const Tensor& a, const std::string& who = "cholesky");
// X with L X = B, L lower-triangular [n, n], B [n, k] (or [n]).
Tensor solve_lower(const Tensor& l, const Tensor& b);
// X with L^T X = B.
Tensor solve_lower_transposed(const Tensor& l, const Tensor& b);
// X with A X = B, given L = cholesky(A).
Tensor cholesky_solve(const Tensor& l, const Tensor& b);
// A^{-1}, given L = cholesky(A).
Tensor cholesky_inverse(const Tensor& l);
// Plain matrix product of float64 [n, k] x [k, m] (for small checks), optionally transposing a.
Tensor matmul64(const Tensor& a, const Tensor& b, bool trans_a = false);

}  // namespace sdeuq::nn::linalg
