// SDEs with known solutions, for convergence tests, benchmarks and experiments (float64).
//
// Each has exact(t, y0, W_t): the solution at t as a function of y0 [batch, d] and the Brownian value
// W_t = W(t) - W(0) [batch, m] only, so that a solver's error on a path can be measured exactly. The
// coefficients are Parameters, registered with the SDE (SDE::add_parameter), so that estimators can
// differentiate with respect to them.
//   GeometricBrownianMotion   diagonal or scalar noise, Ito or Stratonovich    (KP §4.4)
//   KPAdditive                additive noise, time-dependent diffusion           (KP §4.4)
//   ExpAdditive               additive noise, exponentially decaying diffusion
//   CommutingLinear           general noise (m = 2), commuting matrices          (KP §4.8)
//   DoubleWellAdditive        additive noise, nonlinear drift: no closed form (use a fine reference solve)
//   SineAdditive              additive noise, bounded nonlinear drift: no closed form
// Beware: Heun's method is exact on KPAdditive (its trapezoidal step reproduces the rational solution,
// verified in tests/test_solvers.cpp), and every additive SDE with a linear drift lets SRA1 reach order
// 2; the strong order 1.5 of srk shows on the nonlinear DoubleWellAdditive.
// KP: Kloeden & Platen, "Numerical Solution of Stochastic Differential Equations", 1992.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "autodiff/ops.hpp"
#include "sde/sde.hpp"

namespace sdeuq::sde::testing {

inline Tensor vec_tensor(const std::vector<double>& v) {
    return Tensor::from_vector(v, Shape{static_cast<std::int64_t>(v.size())}, DType::f64);
}

// Geometric Brownian motion, per component i:
//   Ito:           dY_i = mu_i Y_i dt + sigma_i Y_i dW
//   Stratonovich:  dY_i = (mu_i - sigma_i^2 / 2) Y_i dt + sigma_i Y_i o dW   (the same process: the Ito
//                  drift is the Stratonovich drift plus 1/2 g dg/dy = sigma^2 Y / 2)
//   exact:         Y_i(t) = Y_i(0) exp((mu_i - sigma_i^2 / 2) t + sigma_i W(t))
// Diagonal noise: W is W_i (m = d); scalar noise: one W for all components (m = 1).
class GeometricBrownianMotion final : public SDE {
public:
    GeometricBrownianMotion(std::vector<double> mu, std::vector<double> sigma, Calculus calculus,
                            Noise noise = Noise::diagonal)
        : mu_("gbm.mu", vec_tensor(mu)),
          sigma_("gbm.sigma", vec_tensor(sigma)),
          calculus_(calculus),
          noise_(noise) {
        if (mu.size() != sigma.size() || mu.empty())
            throw ShapeError("GeometricBrownianMotion: mu and sigma must have the same, nonzero length");
        if (noise != Noise::diagonal && noise != Noise::scalar)
            throw UsageError("GeometricBrownianMotion: noise must be diagonal or scalar");
        add_parameter(mu_);
        add_parameter(sigma_);
    }
    Noise noise() const override { return noise_; }
    Calculus calculus() const override { return calculus_; }
    Var f(double, const Var& y) override {
        Var mu = mu_.var();
        if (calculus_ == Calculus::stratonovich) {
            Var s = sigma_.var();
            mu = mu - s * s * 0.5;
        }
        return y * mu;
    }
    Var g(double, const Var& y) override { return y * sigma_.var(); }
    std::int64_t dim() const { return mu_.value().numel(); }

    Tensor exact(double t, const Tensor& y0, const Tensor& w) const {
        const std::int64_t batch = y0.dim(0), d = y0.dim(1), m = w.dim(1);
        Tensor out = Tensor::empty(y0.shape(), DType::f64);
        for (std::int64_t b = 0; b < batch; ++b)
            for (std::int64_t i = 0; i < d; ++i) {
                const double mu = mu_.value().flat(i), s = sigma_.value().flat(i);
                const double wt = w.flat(b * m + (m == 1 ? 0 : i));
                out.set_flat(b * d + i, y0.flat(b * d + i) * std::exp((mu - 0.5 * s * s) * t + s * wt));
            }
        return out;
    }
    // E[Y_i(t)] = Y_i(0) e^{mu t},  Var[Y_i(t)] = Y_i(0)^2 e^{2 mu t} (e^{sigma^2 t} - 1).
    double mean(double t, double y0, std::int64_t i) const { return y0 * std::exp(mu_.value().flat(i) * t); }
    double variance(double t, double y0, std::int64_t i) const {
        const double mu = mu_.value().flat(i), s = sigma_.value().flat(i);
        return y0 * y0 * std::exp(2 * mu * t) * std::expm1(s * s * t);
    }

private:
    Parameter mu_, sigma_;
    Calculus calculus_;
    Noise noise_;
};

// Additive noise with a time-dependent diffusion (KP §4.4, the linear SDE dX = -X/(1+t) dt + dW/(1+t)),
// here with d components and m Brownian motions through B [d, m]:
//   dY = -Y / (1 + t) dt + B / (1 + t) dW,     exact: Y(t) = (Y(0) + B W(t)) / (1 + t)
// (check: d[(Y0 + B W) / (1 + t)] = B dW / (1 + t) - (Y0 + B W) / (1 + t)^2 dt). Ito = Stratonovich.
// It exercises the time derivative of the diffusion (the I_(0,1) term of order 1.5 schemes).
class KPAdditive final : public SDE {
public:
    // b: B row-major [d, m].
    KPAdditive(std::int64_t d, std::int64_t m, std::vector<double> b, Calculus calculus = Calculus::ito)
        : d_(d), m_(m), b_("kp.b", Tensor::from_vector(b, Shape{d, m}, DType::f64)), calculus_(calculus) {
        add_parameter(b_);
    }
    Noise noise() const override { return Noise::additive; }
    Calculus calculus() const override { return calculus_; }
    std::int64_t brownian_dim(std::int64_t) const override { return m_; }
    Var f(double t, const Var& y) override { return y * (-1.0 / (1.0 + t)); }
    Var g(double t, const Var&) override { return b_.var() * (1.0 / (1.0 + t)); }  // [d, m], shared

    Tensor exact(double t, const Tensor& y0, const Tensor& w) const {
        const std::int64_t batch = y0.dim(0);
        Tensor out = Tensor::empty(y0.shape(), DType::f64);
        for (std::int64_t b = 0; b < batch; ++b)
            for (std::int64_t i = 0; i < d_; ++i) {
                double s = y0.flat(b * d_ + i);
                for (std::int64_t k = 0; k < m_; ++k) s += b_.value().flat(i * m_ + k) * w.flat(b * m_ + k);
                out.set_flat(b * d_ + i, s / (1.0 + t));
            }
        return out;
    }

private:
    std::int64_t d_, m_;
    Parameter b_;
    Calculus calculus_;
};

// Additive noise whose solution is a function of W(t) (a linear SDE dY = a Y dt + b(t) dW has one when
// b(t) = B Phi(t), Phi' = a Phi): per component i,
//   dY_i = -theta_i Y_i dt + e^{-theta_i t} (B dW)_i,     exact: Y_i(t) = e^{-theta_i t} (Y_i(0) + (B
//   W(t))_i)
// (check: d[e^{-theta t} (Y0 + B W)] = -theta Y dt + e^{-theta t} B dW). Ito = Stratonovich. Unlike
// KPAdditive, no solver here is exact on it.
class ExpAdditive final : public SDE {
public:
    // b: B row-major [d, m], d = theta.size().
    ExpAdditive(std::vector<double> theta, std::int64_t m, std::vector<double> b,
                Calculus calculus = Calculus::ito)
        : d_(static_cast<std::int64_t>(theta.size())),
          m_(m),
          theta_("exp.theta", vec_tensor(theta)),
          b_("exp.b", Tensor::from_vector(b, Shape{d_, m}, DType::f64)),
          calculus_(calculus) {
        add_parameter(theta_);
        add_parameter(b_);
    }
    Noise noise() const override { return Noise::additive; }
    Calculus calculus() const override { return calculus_; }
    std::int64_t brownian_dim(std::int64_t) const override { return m_; }
    Var f(double, const Var& y) override { return -(y * theta_.var()); }
    Var g(double t, const Var&) override {
        Var decay = reshape(exp(theta_.var() * (-t)), Shape{d_, 1});
        return b_.var() * decay;  // [d, m], shared by the batch
    }

    Tensor exact(double t, const Tensor& y0, const Tensor& w) const {
        const std::int64_t batch = y0.dim(0);
        Tensor out = Tensor::empty(y0.shape(), DType::f64);
        for (std::int64_t b = 0; b < batch; ++b)
            for (std::int64_t i = 0; i < d_; ++i) {
                double s = y0.flat(b * d_ + i);
                for (std::int64_t k = 0; k < m_; ++k) s += b_.value().flat(i * m_ + k) * w.flat(b * m_ + k);
                out.set_flat(b * d_ + i, std::exp(-theta_.value().flat(i) * t) * s);
            }
        return out;
    }

private:
    std::int64_t d_, m_;
    Parameter theta_, b_;
    Calculus calculus_;
};

// Additive noise with a nonlinear drift (overdamped Langevin dynamics in the double well V = (y^2 - 1)^2 /
// 4):
//   dY = (Y - Y^3) dt + B / (1 + t) dW.
// No closed form: measure errors against a solve with a much smaller step on the same Brownian path. The
// drift's second derivative is what limits SRA1 to strong order 1.5 (the f'' g g I_(1,0)^2 / h term).
class DoubleWellAdditive final : public SDE {
public:
    DoubleWellAdditive(std::int64_t d, std::int64_t m, std::vector<double> b,
                       Calculus calculus = Calculus::ito)
        : m_(m), b_("dw.b", Tensor::from_vector(b, Shape{d, m}, DType::f64)), calculus_(calculus) {
        add_parameter(b_);
    }
    Noise noise() const override { return Noise::additive; }
    Calculus calculus() const override { return calculus_; }
    std::int64_t brownian_dim(std::int64_t) const override { return m_; }
    Var f(double, const Var& y) override { return y - y * y * y; }
    Var g(double t, const Var&) override { return b_.var() * (1.0 / (1.0 + t)); }

private:
    std::int64_t m_;
    Parameter b_;
    Calculus calculus_;
};

// Additive noise with a bounded nonlinear drift, |f'| <= 1:
//   dY = sin(Y) dt + B / (1 + t) dW.
// No closed form (reference solve as for DoubleWellAdditive). The stiffer double well excites the
// parasitic mode of reversible Heun (its z - y oscillation, weakly unstable for f' < 0: Kidger et al. 2021
// §3, Diffrax issue #417), which hides its order-1 error term at practical steps; this one does not.
class SineAdditive final : public SDE {
public:
    SineAdditive(std::int64_t d, std::int64_t m, std::vector<double> b, Calculus calculus = Calculus::ito)
        : m_(m), b_("sin.b", Tensor::from_vector(b, Shape{d, m}, DType::f64)), calculus_(calculus) {
        add_parameter(b_);
    }
    Noise noise() const override { return Noise::additive; }
    Calculus calculus() const override { return calculus_; }
    std::int64_t brownian_dim(std::int64_t) const override { return m_; }
    Var f(double, const Var& y) override { return sin(y); }
    Var g(double t, const Var&) override { return b_.var() * (1.0 / (1.0 + t)); }

private:
    std::int64_t m_;
    Parameter b_;
    Calculus calculus_;
};

// General (non-diagonal) noise, d = 2, m = 2, with commuting matrices (KP §4.8, linear SDEs):
//   Ito:  dY = A Y dt + B1 Y dW1 + B2 Y dW2,  exact Y(t) = exp((A - (B1^2 + B2^2)/2) t + B1 W1 + B2 W2) Y(0)
// A, B1, B2 of the form [[a, b], [b, a]]: they commute and share the eigenvectors e+ = (1, 1)/sqrt2,
// e- = (1, -1)/sqrt2 with eigenvalues a + b and a - b, so in those coordinates the components are
// independent scalar GBMs driven by both W1 and W2. The noise is commutative (Milstein-type schemes would
// need no Levy area), but g(t, y) = [B1 y, B2 y] is a full [batch, 2, 2] matrix: general noise.
// Stratonovich: drift matrix A - (B1^2 + B2^2) / 2, the same solution.
class CommutingLinear final : public SDE {
public:
    // Each of a, b1, b2 is the pair (diagonal, off-diagonal).
    CommutingLinear(std::vector<double> a, std::vector<double> b1, std::vector<double> b2,
                    Calculus calculus = Calculus::ito)
        : a_("lin.a", sym(a)), b1_("lin.b1", sym(b1)), b2_("lin.b2", sym(b2)), calculus_(calculus) {
        for (Parameter* p : {&a_, &b1_, &b2_}) add_parameter(*p);
    }
    Noise noise() const override { return Noise::general; }
    Calculus calculus() const override { return calculus_; }
    std::int64_t brownian_dim(std::int64_t) const override { return 2; }
    Var f(double, const Var& y) override {
        Var a = a_.var();
        if (calculus_ == Calculus::stratonovich) {
            Var b1 = b1_.var(), b2 = b2_.var();
            a = a - (matmul(b1, b1) + matmul(b2, b2)) * 0.5;
        }
        return linear(y, a);
    }
    Var g(double, const Var& y) override {
        Var cols[2] = {linear(y, b1_.var()), linear(y, b2_.var())};  // B_k y: [batch, 2] each
        return stack(cols, 2);                                       // [batch, d = 2, m = 2]
    }

    Tensor exact(double t, const Tensor& y0, const Tensor& w) const {
        const std::int64_t batch = y0.dim(0);
        Tensor out = Tensor::empty(y0.shape(), DType::f64);
        auto eig = [](const Parameter& p, int sign) { return p.value().flat(0) + sign * p.value().flat(1); };
        for (std::int64_t b = 0; b < batch; ++b) {
            const double y1 = y0.flat(2 * b), y2 = y0.flat(2 * b + 1);
            const double w1 = w.flat(2 * b), w2 = w.flat(2 * b + 1);
            double u[2] = {(y1 + y2) / std::sqrt(2.0), (y1 - y2) / std::sqrt(2.0)};
            for (int e = 0; e < 2; ++e) {
                const int sgn = e == 0 ? 1 : -1;
                const double la = eig(a_, sgn), l1 = eig(b1_, sgn), l2 = eig(b2_, sgn);
                u[e] *= std::exp((la - 0.5 * (l1 * l1 + l2 * l2)) * t + l1 * w1 + l2 * w2);
            }
            out.set_flat(2 * b, (u[0] + u[1]) / std::sqrt(2.0));
            out.set_flat(2 * b + 1, (u[0] - u[1]) / std::sqrt(2.0));
        }
        return out;
    }

private:
    static Tensor sym(const std::vector<double>& p) {
        return Tensor::from_vector({p.at(0), p.at(1), p.at(1), p.at(0)}, Shape{2, 2}, DType::f64);
    }
    Parameter a_, b1_, b2_;
    Calculus calculus_;
};

}  // namespace sdeuq::sde::testing
