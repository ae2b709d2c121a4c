// What the convergence tests of the SDE solvers and gradient estimators share (test_solvers,
// test_milstein_exact, test_adjoint, test_ito_adjoint, test_logqp): the least-squares slope of log error
// against log dt, batched initial states, Y(1) of a solve without a tape, W(1) of a path, and the
// error measures.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"
#include "sde/integrate.hpp"

namespace sdeuq::sde::test_util {

struct SlopeFit {
    double slope = 0.0;
    double se = 0.0;  // the slope's standard error (0 with two points)
};

// Least-squares fit of log err = a + slope * log dt.
inline SlopeFit fit_log_slope(const std::vector<double>& dts, const std::vector<double>& errs) {
    REQUIRE(dts.size() == errs.size());
    REQUIRE(dts.size() >= 2);
    const double n = static_cast<double>(dts.size());
    double mx = 0, my = 0;
    for (std::size_t i = 0; i < dts.size(); ++i) {
        mx += std::log(dts[i]) / n;
        my += std::log(errs[i]) / n;
    }
    double sxx = 0, sxy = 0;
    for (std::size_t i = 0; i < dts.size(); ++i) {
        const double dx = std::log(dts[i]) - mx;
        sxx += dx * dx;
        sxy += dx * (std::log(errs[i]) - my);
    }
    SlopeFit f;
    f.slope = sxy / sxx;
    double ss = 0;
    for (std::size_t i = 0; i < dts.size(); ++i) {
        const double r = std::log(errs[i]) - my - f.slope * (std::log(dts[i]) - mx);
        ss += r * r;
    }
    f.se = dts.size() > 2 ? std::sqrt(ss / (n - 2) / sxx) : 0.0;
    return f;
}

// [batch, d] float64, every row `per_component`.
inline Tensor y0_tensor(std::int64_t batch, const std::vector<double>& per_component) {
    const auto d = static_cast<std::int64_t>(per_component.size());
    Tensor y = Tensor::empty(Shape{batch, d}, DType::f64);
    for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t i = 0; i < d; ++i)
            y.set_flat(b * d + i, per_component[static_cast<std::size_t>(i)]);
    return y;
}

// Mean over elements of |a - b|.
inline double mean_abs_diff(const Tensor& a, const Tensor& b) {
    double s = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) s += std::abs(a.flat(i) - b.flat(i));
    return s / static_cast<double>(a.numel());
}

// ||a - b|| / ||b||
inline double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num / den);
}

// Y(1) of a solve from t = 0 without a tape, as a heap tensor (opt.solver is set to `solver`).
inline Tensor solve_to_end(SDE& sde, const std::string& solver, const Tensor& y0, const BrownianPath& bm,
                           SolveOptions opt, SolveStats* stats = nullptr) {
    opt.solver = solver;
    const double ts[2] = {0.0, 1.0};
    auto s = make_solver(solver);
    Tensor out = integrate(sde, *s, Var(y0), ts, bm, opt, false, stats).states.back().clone();
    reset_tape();
    return out;
}

// W(1) of the path as [batch, m].
inline Tensor w_at_1(const BrownianPath& bm, std::int64_t batch) {
    std::vector<double> wv(static_cast<std::size_t>(bm.size()));
    bm.value(1.0, wv);
    return Tensor::from_vector(wv, Shape{batch, bm.size() / batch}, DType::f64);
}

}  // namespace sdeuq::sde::test_util
