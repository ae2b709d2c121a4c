#include "nn/linalg.hpp"

#include <cmath>
#include <fmt/format.h>

namespace sdeuq::nn::linalg {

namespace {
void check_f64(const char* op, const Tensor& t) {
    if (t.dtype() != DType::f64)
        throw ShapeError(fmt::format("linalg::{}: expected float64, got {}", op, describe(t)));
}
void check_square(const char* op, const Tensor& t) {
    check_f64(op, t);
    if (t.rank() != 2 || t.dim(0) != t.dim(1))
        throw ShapeError(fmt::format("linalg::{}: expected a square matrix, got {}", op, describe(t)));
}
void check_rhs(const char* op, const Tensor& l, const Tensor& b) {
    check_square(op, l);
    check_f64(op, b);
    if (b.rank() < 1 || b.rank() > 2 || b.dim(0) != l.dim(0))
        throw ShapeError(
            fmt::format("linalg::{}: right-hand side {} does not match {}", op, describe(b), describe(l)));
}
// Four partial sums: the dot product is the inner loop of the factorisation and, without -ffast-math, a
// single accumulator cannot be vectorised.
inline double dot(const double* a, const double* b, std::int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; ++k) s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}
}  // namespace

Tensor cholesky(const Tensor& a, const std::string& who) {
    check_square("cholesky", a);
    const std::int64_t n = a.dim(0);
    Tensor l = Tensor::zeros({n, n}, DType::f64);
    const double* pa = a.data<double>();
    double* pl = l.data<double>();
    for (std::int64_t j = 0; j < n; ++j) {
        double* lj = pl + j * n;
        const double d = pa[j * n + j] - dot(lj, lj, j);
        if (!(d > 0.0) || !std::isfinite(d))
            throw LinalgError(fmt::format("{}: matrix {} is not positive definite (pivot {} = {:.6g})", who,
                                          describe(a), j, d));
        const double ljj = std::sqrt(d);
        lj[j] = ljj;
        for (std::int64_t i = j + 1; i < n; ++i) {
            double* li = pl + i * n;
            li[j] = (pa[i * n + j] - dot(li, lj, j)) / ljj;
        }
    }
    return l;
}

Tensor solve_lower(const Tensor& l, const Tensor& b) {
    check_rhs("solve_lower", l, b);
    const std::int64_t n = l.dim(0), k = b.rank() == 2 ? b.dim(1) : 1;
    Tensor x = b.clone();
    const double* pl = l.data<double>();
    double* px = x.data<double>();
    // Row-oriented forward substitution: X_i = (B_i - sum_{j<i} L_ij X_j) / L_ii over whole rows of X.
    for (std::int64_t i = 0; i < n; ++i) {
        double* xi = px + i * k;
        for (std::int64_t j = 0; j < i; ++j) {
            const double lij = pl[i * n + j];
            if (lij == 0.0) continue;
            const double* xj = px + j * k;
            for (std::int64_t c = 0; c < k; ++c) xi[c] -= lij * xj[c];
        }
        const double inv = 1.0 / pl[i * n + i];
        for (std::int64_t c = 0; c < k; ++c) xi[c] *= inv;
    }
    return x;
}

Tensor solve_lower_transposed(const Tensor& l, const Tensor& b) {
    check_rhs("solve_lower_transposed", l, b);
    const std::int64_t n = l.dim(0), k = b.rank() == 2 ? b.dim(1) : 1;
    Tensor x = b.clone();
    const double* pl = l.data<double>();
    double* px = x.data<double>();
    // Back substitution with U = L^T: once X_i is final, eliminate it from the rows above
    // (column-oriented on L^T, row-oriented on L).
    for (std::int64_t i = n - 1; i >= 0; --i) {
        double* xi = px + i * k;
        const double inv = 1.0 / pl[i * n + i];
        for (std::int64_t c = 0; c < k; ++c) xi[c] *= inv;
        for (std::int64_t j = 0; j < i; ++j) {
            const double lij = pl[i * n + j];  // (L^T)_{ji}
            if (lij == 0.0) continue;
            double* xj = px + j * k;
            for (std::int64_t c = 0; c < k; ++c) xj[c] -= lij * xi[c];
        }
    }
    return x;
}

Tensor cholesky_solve(const Tensor& l, const Tensor& b) {
    return solve_lower_transposed(l, solve_lower(l, b));
}

Tensor cholesky_inverse(const Tensor& l) {
    check_square("cholesky_inverse", l);
    const std::int64_t n = l.dim(0);
    Tensor eye = Tensor::zeros({n, n}, DType::f64);
    for (std::int64_t i = 0; i < n; ++i) eye.data<double>()[i * n + i] = 1.0;
    return cholesky_solve(l, eye);
}

Tensor matmul64(const Tensor& a, const Tensor& b, bool trans_a) {
    check_f64("matmul64", a);
    check_f64("matmul64", b);
    if (a.rank() != 2 || b.rank() != 2 || (trans_a ? a.dim(0) : a.dim(1)) != b.dim(0))
        throw ShapeError(fmt::format("linalg::matmul64: {}{} x {} do not match", describe(a),
                                     trans_a ? "^T" : "", describe(b)));
    const std::int64_t n = trans_a ? a.dim(1) : a.dim(0), kk = b.dim(0), m = b.dim(1);
    Tensor c = Tensor::zeros({n, m}, DType::f64);
    const double* pa = a.data<double>();
    const double* pb = b.data<double>();
    double* pc = c.data<double>();
    for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t k = 0; k < kk; ++k) {
            const double aik = trans_a ? pa[k * n + i] : pa[i * kk + k];
            if (aik == 0.0) continue;
            for (std::int64_t j = 0; j < m; ++j) pc[i * m + j] += aik * pb[k * m + j];
        }
    return c;
}

}  // namespace sdeuq::nn::linalg
