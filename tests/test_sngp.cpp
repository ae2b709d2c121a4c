// SNGP parts: the spectral-norm bound, the random-feature GP's Laplace covariance against a direct ridge
// computation, the Cholesky solver, and gradient checks.
#include <catch2/catch.hpp>
#include <cmath>
#include <numbers>

#include "autodiff/gradcheck.hpp"
#include "nn/gp_layer.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"
#include "nn/linalg.hpp"
#include "nn/spectral_norm.hpp"

using namespace sdeuq;
using namespace sdeuq::nn;

namespace {

using Mat = std::vector<std::vector<double>>;

Mat to_mat(const Tensor& t) {
    Mat m(static_cast<std::size_t>(t.dim(0)),
          std::vector<double>(static_cast<std::size_t>(t.numel() / t.dim(0))));
    for (std::size_t i = 0; i < m.size(); ++i)
        for (std::size_t j = 0; j < m[i].size(); ++j)
            m[i][j] = t.flat(static_cast<std::int64_t>(i * m[i].size() + j));
    return m;
}
Mat matmul(const Mat& a, const Mat& b) {
    Mat c(a.size(), std::vector<double>(b[0].size(), 0.0));
    for (std::size_t i = 0; i < a.size(); ++i)
        for (std::size_t k = 0; k < b.size(); ++k)
            for (std::size_t j = 0; j < b[0].size(); ++j) c[i][j] += a[i][k] * b[k][j];
    return c;
}
Mat transpose(const Mat& a) {
    Mat t(a[0].size(), std::vector<double>(a.size()));
    for (std::size_t i = 0; i < a.size(); ++i)
        for (std::size_t j = 0; j < a[0].size(); ++j) t[j][i] = a[i][j];
    return t;
}
// Naive Gauss-Jordan inverse with partial pivoting (independent of nn/linalg's Cholesky).
Mat inverse(Mat a) {
    const std::size_t n = a.size();
    Mat inv(n, std::vector<double>(n, 0.0));
    for (std::size_t i = 0; i < n; ++i) inv[i][i] = 1.0;
    for (std::size_t c = 0; c < n; ++c) {
        std::size_t p = c;
        for (std::size_t r = c + 1; r < n; ++r)
            if (std::abs(a[r][c]) > std::abs(a[p][c])) p = r;
        std::swap(a[p], a[c]);
        std::swap(inv[p], inv[c]);
        const double d = a[c][c];
        for (std::size_t j = 0; j < n; ++j) a[c][j] /= d, inv[c][j] /= d;
        for (std::size_t r = 0; r < n; ++r) {
            if (r == c) continue;
            const double f = a[r][c];
            for (std::size_t j = 0; j < n; ++j) a[r][j] -= f * a[c][j], inv[r][j] -= f * inv[c][j];
        }
    }
    return inv;
}
// Largest singular value by power iteration on A^T A run to convergence (independent of SpectralNorm).
double top_singular_value(const Mat& a) {
    const Mat ata = matmul(transpose(a), a);
    std::vector<double> v(ata.size(), 1.0);
    double lambda = 0.0;
    for (int it = 0; it < 5000; ++it) {
        std::vector<double> w(v.size(), 0.0);
        for (std::size_t i = 0; i < v.size(); ++i)
            for (std::size_t j = 0; j < v.size(); ++j) w[i] += ata[i][j] * v[j];
        double n = 0.0;
        for (double x : w) n += x * x;
        n = std::sqrt(n);
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = w[i] / n;
        lambda = n;
    }
    return std::sqrt(lambda);
}
// Random features computed here from the layer's buffers: sqrt(2/M) cos(x W^T + b).
Mat features_of(RandomFeatureGP& gp, const Tensor& x) {
    Tensor w, b;
    for (auto& [n, t] : gp.named_buffers()) {
        if (n == "random_weight") w = *t;
        if (n == "random_bias") b = *t;
    }
    const Mat xm = to_mat(x), wm = to_mat(w);
    const std::size_t m = wm.size();
    Mat phi(xm.size(), std::vector<double>(m));
    for (std::size_t i = 0; i < xm.size(); ++i)
        for (std::size_t k = 0; k < m; ++k) {
            double s = b.flat(static_cast<std::int64_t>(k));
            for (std::size_t j = 0; j < xm[i].size(); ++j) s += xm[i][j] * wm[k][j];
            phi[i][k] = std::sqrt(2.0 / double(m)) * std::cos(s);
        }
    return phi;
}
Tensor rnd(const Shape& s, std::uint64_t stream, double lo = -1.0, double hi = 1.0) {
    Generator g(555, stream);
    return rand_uniform(s, g, DType::f64, lo, hi);
}

}  // namespace

TEST_CASE("spectral norm bounds the top singular value by c after training-mode calls", "[sngp][spectral]") {
    const double c = 0.9;
    for (double target : {3.0, 0.5}) {
        SECTION(target > c ? "sigma(W) > c: scaled to c" : "sigma(W) < c: unchanged") {
            Generator g(31, 0);
            auto lin = std::make_shared<Linear>(5, 7, g, LinearOptions{.dtype = DType::f64});
            Tensor& w = lin->weight().value();
            w.copy_from(randn(w.shape(), g, DType::f64));
            const double s0 = top_singular_value(to_mat(w));
            for (std::int64_t i = 0; i < w.numel(); ++i) w.set_flat(i, w.flat(i) * target / s0);
            SpectralNorm sn(lin, g, {.norm_multiplier = c, .initial_iterations = 0});
            Tensor x = rnd({2, 5}, 1);
            for (int k = 0; k < 200; ++k) sn.forward(Var(x));
            const double s_eff = top_singular_value(to_mat(sn.effective_weight()));
            CHECK(s_eff <= c + 1e-6);
            if (target > c) {
                CHECK(s_eff == Approx(c).epsilon(1e-6));
                CHECK(sn.sigma_hat() == Approx(target).epsilon(1e-6));
            } else {
                CHECK(sn.effective_weight().to_vector() == w.to_vector());
            }
            // Eval mode takes no power-iteration step.
            sn.eval();
            const auto u = sn.u().to_vector();
            sn.forward(Var(x));
            CHECK(sn.u().to_vector() == u);
            reset_tape();
        }
    }
}

TEST_CASE("spectral norm on a Conv2d bounds the [out, in*k*k] view of its kernel", "[sngp][spectral]") {
    Generator g(32, 0);
    auto conv = std::make_shared<Conv2d>(2, 3, 3, g, Conv2dOptions{.padding = 1, .dtype = DType::f64});
    Tensor& w = conv->weight().value();
    w.copy_from(randn(w.shape(), g, DType::f64, 0.0, 2.0));
    REQUIRE(top_singular_value(to_mat(w)) > 1.0);
    SpectralNorm sn(conv, g, {.norm_multiplier = 0.9});
    Tensor x = rnd({1, 2, 4, 4}, 2);
    for (int k = 0; k < 100; ++k) sn.forward(Var(x));
    CHECK(top_singular_value(to_mat(sn.effective_weight())) == Approx(0.9).epsilon(1e-6));
    CHECK(sn.forward(Var(x)).shape() == Shape{1, 3, 4, 4});
    reset_tape();
}

TEST_CASE("spectral norm passes the gradient check through W and sigma_hat (u, v constant)", "[sngp][grad]") {
    Generator g(33, 0);
    auto lin = std::make_shared<Linear>(4, 3, g, LinearOptions{.dtype = DType::f64});
    lin->weight().value().copy_from(randn({3, 4}, g, DType::f64));
    SpectralNorm sn(lin, g, {.norm_multiplier = 0.5});
    sn.eval();
    REQUIRE(sn.sigma_hat() > 0.5);  // the rescaling branch is the one checked
    GradcheckOptions opt;
    opt.params = sn.trainable_parameters();
    auto r = check_gradients(
        "SpectralNorm(Linear)", [&](std::span<const Var> in) { return sn.forward(in[0]); }, {rnd({3, 4}, 3)},
        opt);
    INFO(r.message);
    CHECK(r.ok);
}

TEST_CASE("Cholesky factorisation and solves; non-positive-definite matrices are named errors",
          "[sngp][linalg]") {
    const std::int64_t n = 5;
    Tensor b = rnd({n, n}, 4);
    Tensor a = linalg::matmul64(b, b, true);
    for (std::int64_t i = 0; i < n; ++i) a.set_flat(i * n + i, a.flat(i * n + i) + 0.1);
    Tensor l = linalg::cholesky(a);
    const Mat lm = to_mat(l), back = matmul(lm, transpose(lm)), am = to_mat(a);
    for (std::size_t i = 0; i < lm.size(); ++i)
        for (std::size_t j = 0; j < lm.size(); ++j) {
            CHECK(back[i][j] == Approx(am[i][j]).margin(1e-12));
            if (j > i) CHECK(lm[i][j] == 0.0);
        }
    Tensor rhs = rnd({n, 2}, 5);
    const Mat x = to_mat(linalg::cholesky_solve(l, rhs)), want = matmul(inverse(am), to_mat(rhs));
    for (std::size_t i = 0; i < x.size(); ++i)
        for (std::size_t j = 0; j < 2; ++j) CHECK(x[i][j] == Approx(want[i][j]).margin(1e-10));
    const Mat inv = to_mat(linalg::cholesky_inverse(l)), inv_ref = inverse(am);
    for (std::size_t i = 0; i < inv.size(); ++i)
        for (std::size_t j = 0; j < inv.size(); ++j) CHECK(inv[i][j] == Approx(inv_ref[i][j]).margin(1e-9));

    Tensor bad = Tensor::from_vector({1, 2, 2, 1}, {2, 2}, DType::f64);
    try {
        linalg::cholesky(bad, "test matrix");
        FAIL("no error");
    } catch (const linalg::LinalgError& e) {
        CHECK(std::string(e.what()).find("test matrix: matrix f64[2, 2] is not positive definite (pivot 1") ==
              0);
    }
    CHECK_THROWS_AS(linalg::cholesky(Tensor::zeros({2, 2})), ShapeError);  // float32 refused
}

TEST_CASE("GP predictive covariance equals ridge * Phi* (ridge I + Phi^T Phi)^-1 Phi*^T", "[sngp][gp]") {
    const double ridge = 0.5;  // != 1, so that TF's ridge convention is what is checked
    Generator g(34, 0);
    GpOptions opt{
        .num_inducing = 6, .kernel_scale = 2.0, .ridge = ridge, .momentum = -1.0, .dtype = DType::f64};
    RandomFeatureGP gp(3, 2, g, opt);
    Tensor x1 = rnd({4, 3}, 6), x2 = rnd({5, 3}, 7), xt = rnd({3, 3}, 8);
    gp.train();
    gp.forward(Var(x1));
    gp.forward(Var(x2));
    reset_tape();

    // Features from the buffers agree with the layer's.
    const Mat phi_t = features_of(gp, xt);
    {
        const Mat phi_layer = to_mat(gp.features(Var(xt)).value());
        for (std::size_t i = 0; i < phi_t.size(); ++i)
            for (std::size_t k = 0; k < phi_t[i].size(); ++k)
                CHECK(phi_layer[i][k] == Approx(phi_t[i][k]).margin(1e-14));
    }
    Mat phi = features_of(gp, x1);
    for (auto& row : features_of(gp, x2)) phi.push_back(row);
    Mat p = matmul(transpose(phi), phi);
    for (std::size_t i = 0; i < p.size(); ++i) p[i][i] += ridge;
    Mat cov_ref = matmul(matmul(phi_t, inverse(p)), transpose(phi_t));
    for (auto& row : cov_ref)
        for (double& v : row) v *= ridge;

    gp.eval();
    GpPrediction pred = gp.predict(Var(xt), true);
    const Mat cov = to_mat(pred.covariance);
    for (std::size_t i = 0; i < cov.size(); ++i) {
        for (std::size_t j = 0; j < cov.size(); ++j)
            CHECK(cov[i][j] == Approx(cov_ref[i][j]).epsilon(1e-10).margin(1e-13));
        CHECK(pred.variance.flat(static_cast<std::int64_t>(i)) == Approx(cov_ref[i][i]).epsilon(1e-10));
    }
    Tensor var_only = gp.predict(Var(xt)).variance;
    for (std::int64_t i = 0; i < 3; ++i)
        CHECK(var_only.flat(i) == Approx(pred.variance.flat(i)).epsilon(1e-12));
    // Eval calls do not touch the precision; reset_precision restores ridge * I.
    const auto prec = gp.precision().to_vector();
    gp.forward(Var(x1));
    CHECK(gp.precision().to_vector() == prec);
    gp.reset_precision();
    for (std::int64_t i = 0; i < 6; ++i)
        for (std::int64_t j = 0; j < 6; ++j) CHECK(gp.precision().flat(i * 6 + j) == (i == j ? ridge : 0.0));
    // With P = ridge I the covariance is the prior's, phi* phi*^T.
    const Mat prior = to_mat(gp.predict(Var(xt), true).covariance),
              prior_ref = matmul(phi_t, transpose(phi_t));
    CHECK(prior[0][1] == Approx(prior_ref[0][1]).margin(1e-14));
    reset_tape();
}

TEST_CASE("GP precision with momentum in (0, 1) is the moving average of batch-mean Gram matrices",
          "[sngp][gp]") {
    const double m = 0.9, ridge = 1.0;
    Generator g(35, 0);
    RandomFeatureGP gp(3, 2, g, {.num_inducing = 5, .momentum = m, .dtype = DType::f64});
    Tensor x1 = rnd({4, 3}, 9), x2 = rnd({2, 3}, 10);
    gp.forward(Var(x1));
    gp.forward(Var(x2));
    reset_tape();
    Mat p(5, std::vector<double>(5, 0.0));
    for (std::size_t i = 0; i < 5; ++i) p[i][i] = ridge;
    for (const Tensor* x : {&x1, &x2}) {
        const Mat f = features_of(gp, *x), gram = matmul(transpose(f), f);
        for (std::size_t i = 0; i < 5; ++i)
            for (std::size_t j = 0; j < 5; ++j)
                p[i][j] = m * p[i][j] + (1 - m) * gram[i][j] / double(f.size());
    }
    const Mat got = to_mat(gp.precision());
    for (std::size_t i = 0; i < 5; ++i)
        for (std::size_t j = 0; j < 5; ++j) CHECK(got[i][j] == Approx(p[i][j]).margin(1e-14));
}

TEST_CASE("random features approximate the RBF kernel with the documented length scale", "[sngp][gp]") {
    Generator g(36, 0);
    const double scale = 2.0;
    RandomFeatureGP gp(2, 1, g, {.num_inducing = 2048, .kernel_scale = scale, .dtype = DType::f64});
    Tensor x = Tensor::from_vector({0.0, 0.0, 1.0, 0.5, -0.5, 2.0}, {3, 2}, DType::f64);
    const Mat phi = to_mat(gp.features(Var(x)).value()), k = matmul(phi, transpose(phi));
    const Mat xm = to_mat(x);
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j) {
            const double d2 = std::pow(xm[i][0] - xm[j][0], 2) + std::pow(xm[i][1] - xm[j][1], 2);
            CHECK(k[i][j] == Approx(std::exp(-d2 / (2.0 * scale))).margin(0.06));
        }
    reset_tape();
}

TEST_CASE("the GP layer's trainable path passes the gradient check (with input layer norm)", "[sngp][grad]") {
    Generator g(37, 0);
    RandomFeatureGP gp(
        4, 3, g,
        {.num_inducing = 10, .normalize_input = true, .output_bias_trainable = true, .dtype = DType::f64});
    for (auto* p : gp.parameters()) p->value().copy_from(rnd(p->value().shape(), 11, 0.5, 1.5));
    REQUIRE(gp.trainable_parameters().size() == 4);  // gamma, beta, output weight, output bias
    GradcheckOptions opt;
    opt.params = gp.trainable_parameters();
    auto r = check_gradients(
        "RandomFeatureGP", [&](std::span<const Var> in) { return gp.forward(in[0]); }, {rnd({3, 4}, 12)},
        opt);
    INFO(r.message);
    CHECK(r.ok);
}

TEST_CASE("mean-field logits divide by sqrt(1 + lambda variance)", "[sngp][gp]") {
    Tensor logits = Tensor::from_vector({1.0, -2.0, 0.5, 3.0}, {2, 2}, DType::f64);
    Tensor var = Tensor::from_vector({0.0, 4.0}, {2}, DType::f64);
    auto out = mean_field_logits(Var(logits), var).value().to_vector();
    const double s = std::sqrt(1.0 + std::numbers::pi / 8.0 * 4.0);
    const std::vector<double> want = {1.0, -2.0, 0.5 / s, 3.0 / s};
    for (std::size_t i = 0; i < 4; ++i) CHECK(out[i] == Approx(want[i]).epsilon(1e-15));
    CHECK(mean_field_logits(Var(logits), var, -1.0).value().to_vector() == logits.to_vector());
    auto r =
        check_gradients("mean_field_logits",
                        [&](std::span<const Var> in) { return mean_field_logits(in[0], var); }, {logits});
    CHECK(r.ok);
}

TEST_CASE("SNGP ResNet at the tutorial's sizes: variance is small on the data and large far from it",
          "[sngp][models]") {
    Generator g(38, 0);
    ResNetConfig cfg;  // 2 -> 128, 6 residual layers, SN 0.9, GP with 1024 features, ridge 1, momentum -1
    cfg.sngp = true;
    ResNetClassifier net(cfg, g);
    Adam opt(net.trainable_parameters(), AdamOptions{.lr = 1e-3});
    // Two Gaussian blobs, labels by blob.
    Generator dg(39, 0);
    Tensor x = randn({256, 2}, dg, DType::f32, 0.0, 0.3);
    std::vector<std::int32_t> y(256);
    for (std::int64_t i = 0; i < 256; ++i) {
        y[static_cast<std::size_t>(i)] = i % 2;
        x.set_flat(2 * i, x.flat(2 * i) + (i % 2 ? 1.0 : -1.0));
    }
    net.train();
    net.reset_precision();
    for (int b = 0; b < 2; ++b) {
        opt.zero_grad();
        Var xb = slice(Var(x), 0, 128 * b, 128 * (b + 1));
        backward(cross_entropy(net.forward(xb), std::span<const std::int32_t>(y.data() + 128 * b, 128)));
        opt.step();
        reset_tape();
    }
    net.eval();
    Tensor probe = Tensor::from_vector({-1.0, 0.0, 1.0, 0.0, 8.0, 8.0, -6.0, 9.0}, {4, 2});
    GpPrediction p = net.predict(Var(probe));
    INFO("variances " << p.variance.flat(0) << " " << p.variance.flat(1) << " " << p.variance.flat(2) << " "
                      << p.variance.flat(3));
    CHECK(p.variance.flat(2) > 5.0 * p.variance.flat(0));
    CHECK(p.variance.flat(3) > 5.0 * p.variance.flat(1));
    CHECK(p.variance.flat(2) <= 1.0 + 1e-9);  // bounded by the prior variance phi^T phi ~ 1
    Var adjusted = mean_field_logits(p.logits, p.variance);
    CHECK(adjusted.shape() == Shape{4, 2});
    reset_tape();
}

TEST_CASE("SNGP conv net: every convolution spectrally bounded, a GP head with a positive variance, "
          "gradients checked", "[sngp][conv]") {
    Generator g(41, 0);
    ConvNetConfig cfg;
    cfg.width = 4;
    cfg.groups = 2;
    cfg.num_blocks = 1;
    cfg.dtype = DType::f64;
    cfg.sngp = true;
    cfg.spec_norm_bound = 0.7;
    cfg.gp.num_inducing = 16;
    MnistConvNet net(cfg, g);
    // Kernels large enough that the bound binds.
    for (auto& [name, m] : net.named_modules())
        if (auto* sn = dynamic_cast<SpectralNorm*>(m)) {
            Tensor& w = sn->weight().value();
            w.copy_from(randn(w.shape(), g, DType::f64, 0.0, 1.0));
        }
    Tensor x = rnd({3, 1, 12, 12}, 7);
    net.train();
    for (int k = 0; k < 60; ++k) {  // power iterations converge; the GP precision accumulates
        net.reset_precision();
        CHECK(net.forward(Var(x)).shape() == Shape{3, 10});
        reset_tape();
    }
    int bounded = 0;
    for (auto& [name, m] : net.named_modules())
        if (auto* sn = dynamic_cast<SpectralNorm*>(m)) {
            INFO(name);
            CHECK(top_singular_value(to_mat(sn->effective_weight())) <= 0.7 * (1 + 1e-6));
            ++bounded;
        }
    CHECK(bounded == 5);  // 3 downsampling convolutions, 2 in the residual block
    // The precision is ridge I + the batch's phi^T phi: its trace exceeds ridge * M.
    const Tensor& p = net.gp()->precision();
    double trace = 0;
    for (std::int64_t i = 0; i < 16; ++i) trace += p.flat(i * 16 + i);
    CHECK(trace > 16.0);
    net.eval();
    GpPrediction pred = net.predict(Var(x));
    REQUIRE(pred.variance.numel() == 3);
    for (std::int64_t i = 0; i < 3; ++i) CHECK(pred.variance.flat(i) > 0.0);
    CHECK(pred.logits.shape() == Shape{3, 10});
    reset_tape();
    GradcheckOptions opt;
    opt.params = net.trainable_parameters();
    auto r = check_gradients(
        "SNGP conv net", [&](std::span<const Var> in) { return net.forward(in[0]); },
        {rnd({2, 1, 10, 10}, 8)}, opt);
    INFO(r.message);
    CHECK(r.ok);
}
