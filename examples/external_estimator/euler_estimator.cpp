// A gradient estimator defined outside sdeuq: Ito Euler-Maruyama, y_{n+1} = y_n + f(t_n, y_n) dt +
// g(t_n, y_n) dW_n, written here with sdeuq's public ops; the gradient is the tape through this loop. The
// output times must lie on the grid ts[0] + k dt.
#include "euler_estimator.hpp"

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"
#include "sde/integrate.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;

namespace {

class UserEuler final : public GradientEstimator {
public:
    std::string name() const override { return "user_euler"; }
    Var solve(SDE& sde, const Var& y0, std::span<const double> ts, const BrownianPath& bm,
              const SolveOptions& opt, SolveStats* stats) override {
        if (sde.calculus() != Calculus::ito) throw std::invalid_argument("user_euler: Ito SDEs only");
        const std::int64_t batch = y0.value().dim(0), d = y0.value().dim(1), m = sde.brownian_dim(d);
        std::vector<Var> out{y0};
        Var y = y0;
        double t = ts[0];
        std::int64_t steps = 0;
        for (std::size_t i = 1; i < ts.size(); ++i) {
            const double n = (ts[i] - ts[i - 1]) / opt.dt;
            if (std::abs(n - std::round(n)) > 1e-9)
                throw std::invalid_argument("user_euler: every output time must lie on the grid of dt");
            for (std::int64_t k = 0; k < static_cast<std::int64_t>(std::round(n)); ++k) {
                // dW = W(t + dt) - W(t) of the public Brownian path, element (b, k) = coordinate b m + k.
                std::vector<double> buf(static_cast<std::size_t>(batch * m));
                bm.increment(t, t + opt.dt, buf);
                Tensor dw = Tensor::from_vector(buf, Shape{batch, m}, DType::f64).to(y0.value().dtype());
                y = add(add(y, mul(sde.f(t, y), opt.dt)), sde.g_prod(t, y, Var(dw)));
                t = ts[0] + static_cast<double>(++steps) * opt.dt;
            }
            out.push_back(y);
        }
        if (stats) stats->steps = steps;
        return stack(out, 0);
    }
};

}  // namespace

void register_user_euler() {
    register_estimator("user_euler", [] { return std::make_unique<UserEuler>(); });
}
