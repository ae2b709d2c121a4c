// A user of sdeuq built with it as a Meson subproject (examples/subproject/meson.build): solves geometric
// Brownian motion with Milstein's method on one Brownian path and checks the result against the closed
// form on that path, and its gradient through the solver against the exact one. Exit 0 when both agree.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "autodiff/ops.hpp"
#include "sde/integrate.hpp"
#include "sde/test_sdes.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;

int main() {
    testing::GeometricBrownianMotion sde({0.3, -0.2}, {0.5, 0.8}, Calculus::ito);
    const Tensor y0_value = Tensor::from_vector({1.0, 2.0, 0.5, 1.5}, Shape{2, 2}, DType::f64);
    SolveOptions opt;
    opt.solver = "milstein";
    opt.dt = 1.0 / 1024;
    BrownianPath bm(0.0, 1.0, 2 * 2, 7, BrownianOptions{opt.dt, 0.0, false});
    Var y0 = leaf(y0_value);
    const std::vector<double> ts{0.0, 1.0};
    Var y_T = slice(sdeint(sde, y0, ts, bm, opt), 0, 1, 2);
    backward(sum(y_T));
    // The closed form on the same path (W(1) - W(0) per component) and, GBM being linear in y0, the exact
    // derivative of every solver's Y_T with respect to y0: Y_T / y0.
    std::vector<double> w(4);
    bm.increment(0.0, 1.0, w);
    const Tensor exact = sde.exact(1.0, y0_value, Tensor::from_vector(w, Shape{2, 2}, DType::f64));
    const std::vector<double> y = y_T.value().to_vector(), g = y0.grad().to_vector(), ex = exact.to_vector();
    double err = 0, grad_err = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
        err = std::max(err, std::abs(y[i] - ex[i]) / std::abs(ex[i]));
        grad_err = std::max(grad_err, std::abs(g[i] - y[i] / y0_value.flat(static_cast<std::int64_t>(i))) /
                                          std::abs(g[i]));
    }
    std::printf("subproject_user: Milstein at dt 2^-10 vs the closed form: max relative error %.3g; gradient "
                "vs Y_T / y0: %.3g\n", err, grad_err);
    if (!(err < 1e-2) || !(grad_err < 1e-12)) {
        std::fprintf(stderr, "subproject_user: the solution or its gradient is off\n");
        return 1;
    }
    return 0;
}
