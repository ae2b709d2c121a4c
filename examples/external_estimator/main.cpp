// Solves geometric Brownian motion (Ito, diagonal noise) with the estimator of euler_estimator.cpp and
// with sdeuq's "backprop" through its Euler solver on the same Brownian path, and checks that the loss and
// its gradient with respect to y0, mu and sigma agree (relative 1e-10). Exit 0 when they do.
#include <cmath>
#include <cstdio>
#include <vector>

#include "autodiff/ops.hpp"
#include "euler_estimator.hpp"
#include "sde/integrate.hpp"
#include "sde/test_sdes.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;

namespace {

std::vector<double> gradient(SDE& sde, const Tensor& y0_value, const BrownianPath& bm, const SolveOptions& opt,
                             double& loss) {
    for (Parameter* p : sde.parameters()) p->zero_grad();
    Var y0 = leaf(y0_value);
    const std::vector<double> ts{0.0, 0.5, 1.0};
    Var l = mean(sdeint(sde, y0, ts, bm, opt));
    backward(l);
    loss = l.item();
    std::vector<double> g = y0.grad().to_vector();
    for (Parameter* p : sde.parameters()) {
        auto v = p->grad().to_vector();
        g.insert(g.end(), v.begin(), v.end());
    }
    reset_tape();
    return g;
}

}  // namespace

int main() {
    register_user_euler();
    testing::GeometricBrownianMotion sde({0.3, -0.2}, {0.5, 0.8}, Calculus::ito);
    Tensor y0 = Tensor::from_vector({1.0, 2.0, 0.5, 1.5, 0.7, 1.1}, Shape{3, 2}, DType::f64);
    SolveOptions opt;
    opt.solver = "euler";
    opt.dt = 1.0 / 64;
    BrownianPath bm(0.0, 1.0, 3 * 2, 42, BrownianOptions{opt.dt, 0.0, false});
    double l_user = 0, l_ref = 0;
    opt.estimator = "user_euler";
    const auto g_user = gradient(sde, y0, bm, opt, l_user);
    opt.estimator = "backprop";
    const auto g_ref = gradient(sde, y0, bm, opt, l_ref);
    double worst = std::abs(l_user - l_ref) / std::abs(l_ref);
    for (std::size_t i = 0; i < g_ref.size(); ++i)
        worst = std::max(worst, std::abs(g_user[i] - g_ref[i]) / std::max(1e-12, std::abs(g_ref[i])));
    std::printf("user_euler vs backprop: loss %.12g vs %.12g, %zu gradient entries, max relative difference "
                "%.3g\n", l_user, l_ref, g_ref.size(), worst);
    if (!(worst < 1e-10)) {
        std::fprintf(stderr, "external_estimator: the gradients differ\n");
        return 1;
    }
    return 0;
}
