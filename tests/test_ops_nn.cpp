// Losses, conv2d, pooling, normalisation and dropout: forward values against naive references, gradients
// through the generic checker in float64, and the error messages for bad shapes.
#include <catch2/catch.hpp>
#include <cmath>
#include <numbers>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/parallel.hpp"
#include "autodiff/random.hpp"
#include "autodiff/tape.hpp"

using namespace sdeuq;
using Catch::Matchers::Contains;

namespace {

using F = std::function<Var(std::span<const Var>)>;

Tensor rnd(const Shape& s, std::uint64_t stream, double lo = -1.0, double hi = 1.0) {
    Generator g(4321, stream);
    return rand_uniform(s, g, DType::f64, lo, hi);
}

void expect_grad(const std::string& name, const F& f, const std::vector<Tensor>& inputs,
                 GradcheckOptions opt = {}) {
    auto r = check_gradients(name, f, inputs, opt);
    INFO(r.message);
    CHECK(r.ok);
}

// Direct 7-loop convolution (reference).
std::vector<double> conv_ref(const Tensor& x, const Tensor& w, const Tensor* b, int s, int p,
                             std::int64_t& ho, std::int64_t& wo) {
    const std::int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
    const std::int64_t o = w.dim(0), kh = w.dim(2), kw = w.dim(3);
    ho = (h + 2 * p - kh) / s + 1;
    wo = (wd + 2 * p - kw) / s + 1;
    std::vector<double> y(static_cast<std::size_t>(n * o * ho * wo));
    for (std::int64_t in = 0; in < n; ++in)
        for (std::int64_t io = 0; io < o; ++io)
            for (std::int64_t oh = 0; oh < ho; ++oh)
                for (std::int64_t ow = 0; ow < wo; ++ow) {
                    double acc = b ? b->flat(io) : 0.0;
                    for (std::int64_t ic = 0; ic < c; ++ic)
                        for (std::int64_t i = 0; i < kh; ++i)
                            for (std::int64_t j = 0; j < kw; ++j) {
                                const std::int64_t ih = oh * s - p + i, iw = ow * s - p + j;
                                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                                acc += x.at({in, ic, ih, iw}) * w.at({io, ic, i, j});
                            }
                    y[static_cast<std::size_t>(((in * o + io) * ho + oh) * wo + ow)] = acc;
                }
    return y;
}

}  // namespace

// ---------------------------------------------------------------- losses
TEST_CASE("cross_entropy matches -mean log softmax and passes the gradient check", "[ops_nn][loss]") {
    Tensor z = rnd({4, 5}, 1, -3.0, 3.0);
    std::vector<std::int32_t> y = {0, 4, 2, 2};
    double ref = 0.0;
    for (std::int64_t i = 0; i < 4; ++i) {
        double s = 0.0;
        for (std::int64_t j = 0; j < 5; ++j) s += std::exp(z.at({i, j}));
        ref += std::log(s) - z.at({i, y[static_cast<std::size_t>(i)]});
    }
    CHECK(cross_entropy(Var(z), y).item() == Approx(ref / 4).epsilon(1e-12));
    // Large logits stay finite (max shifted out).
    Tensor big = Tensor::from_vector({1000.0, 0.0, -1000.0, 0.0}, {2, 2}, DType::f64);
    std::vector<std::int32_t> y2 = {1, 0};  // both rows pay 1000
    CHECK(cross_entropy(Var(big), y2).item() == Approx(1000.0));
    std::vector<std::int32_t> y3 = {0, 1};  // both rows right: loss 0 (exp(-1000) underflows)
    CHECK(cross_entropy(Var(big), y3).item() == 0.0);
    expect_grad("cross_entropy", [y](std::span<const Var> v) { return cross_entropy(v[0], y); }, {z});
    // float32 forward agrees.
    CHECK(cross_entropy(Var(z.to(DType::f32)), y).item() == Approx(ref / 4).epsilon(1e-5));
}

TEST_CASE("cross_entropy gradient is (softmax - onehot) / N", "[ops_nn][loss]") {
    Tensor z = rnd({3, 4}, 2);
    std::vector<std::int32_t> y = {1, 3, 0};
    reset_tape();
    Var lz = leaf(z);
    backward(cross_entropy(lz, y));
    Tensor g = lz.grad();
    for (std::int64_t i = 0; i < 3; ++i) {
        double s = 0.0;
        for (std::int64_t j = 0; j < 4; ++j) s += std::exp(z.at({i, j}));
        for (std::int64_t j = 0; j < 4; ++j) {
            const double p = std::exp(z.at({i, j})) / s - (j == y[static_cast<std::size_t>(i)] ? 1.0 : 0.0);
            CHECK(g.at({i, j}) == Approx(p / 3).epsilon(1e-12));
        }
    }
    reset_tape();
}

TEST_CASE("losses report bad labels and shapes naming the op", "[ops_nn][loss][errors]") {
    Tensor z = Tensor::zeros({128, 10});
    std::vector<std::int32_t> y(128, 1);
    y[3] = 11;
    REQUIRE_THROWS_AS(cross_entropy(Var(z), y), ShapeError);
    REQUIRE_THROWS_WITH(cross_entropy(Var(z), y),
                        Contains("cross_entropy") && Contains("label 11 at row 3") &&
                            Contains("f32[128, 10]"));
    y[3] = -1;
    REQUIRE_THROWS_WITH(nll_loss(Var(z), y), Contains("nll_loss") && Contains("label -1 at row 3"));
    std::vector<std::int32_t> short_y(5, 0);
    REQUIRE_THROWS_AS(cross_entropy(Var(z), short_y), ShapeError);
    REQUIRE_THROWS_WITH(cross_entropy(Var(z), short_y), Contains("cross_entropy") && Contains("got 5 label entries"));
    REQUIRE_THROWS_WITH(cross_entropy(Var(Tensor::zeros({4})), short_y),
                        Contains("cross_entropy") && Contains("[N, C]"));
    REQUIRE_THROWS_WITH(gather(Var(z), short_y), Contains("gather"));
    REQUIRE_THROWS_WITH(gather(Var(z), y), Contains("gather") && Contains("index -1 at row 3"));
    Var a34(Tensor::zeros({3, 4})), a35(Tensor::zeros({3, 5}));
    REQUIRE_THROWS_AS(mse_loss(a34, a35), ShapeError);
    REQUIRE_THROWS_WITH(mse_loss(a34, a35), Contains("mse_loss"));
    REQUIRE_THROWS_WITH(bce_with_logits(Var(Tensor::zeros({3, 4})), Var(Tensor::zeros({2, 4}))),
                        Contains("bce_with_logits"));
    REQUIRE_THROWS_WITH(gaussian_nll(Var(Tensor::zeros({3})), Var(Tensor::full({3}, 1.0)),
                                     Var(Tensor::zeros({4}))),
                        Contains("gaussian_nll"));
    REQUIRE_THROWS_WITH(one_hot(y, 10), Contains("one_hot") && Contains("label -1"));
}

TEST_CASE("nll_loss and gather pass the gradient check", "[ops_nn][loss]") {
    Tensor lp = rnd({5, 3}, 3, -4.0, -0.1);
    std::vector<std::int32_t> y = {2, 0, 1, 1, 2};
    double ref = 0.0;
    for (std::int64_t i = 0; i < 5; ++i) ref -= lp.at({i, y[static_cast<std::size_t>(i)]});
    CHECK(nll_loss(Var(lp), y).item() == Approx(ref / 5).epsilon(1e-12));
    expect_grad("nll_loss", [y](std::span<const Var> v) { return nll_loss(v[0], y); }, {lp});

    Var gt = gather(Var(lp), y);
    REQUIRE(gt.shape() == Shape{5});
    for (std::int64_t i = 0; i < 5; ++i)
        CHECK(gt.value().flat(i) == lp.at({i, y[static_cast<std::size_t>(i)]}));
    expect_grad("gather", [y](std::span<const Var> v) { return gather(v[0], y); }, {lp});
}

TEST_CASE("one_hot builds [N, classes]", "[ops_nn][loss]") {
    std::vector<std::int32_t> y = {2, 0, 1};
    Tensor t = one_hot(y, 4, DType::f64);
    REQUIRE(t.shape() == Shape{3, 4});
    REQUIRE(t.dtype() == DType::f64);
    CHECK(t.on_heap());
    for (std::int64_t i = 0; i < 3; ++i)
        for (std::int64_t j = 0; j < 4; ++j)
            CHECK(t.at({i, j}) == (j == y[static_cast<std::size_t>(i)] ? 1.0 : 0.0));
}

TEST_CASE("mse_loss, with and without broadcasting, passes the gradient check", "[ops_nn][loss]") {
    Tensor p = rnd({3, 4}, 4), t = rnd({3, 4}, 5), tb = rnd({1, 4}, 6);
    double ref = 0.0;
    for (std::int64_t i = 0; i < 12; ++i) ref += std::pow(p.flat(i) - t.flat(i), 2);
    CHECK(mse_loss(Var(p), Var(t)).item() == Approx(ref / 12).epsilon(1e-12));
    expect_grad("mse_loss", [](std::span<const Var> v) { return mse_loss(v[0], v[1]); }, {p, t});
    expect_grad("mse_loss broadcast", [](std::span<const Var> v) { return mse_loss(v[0], v[1]); }, {p, tb});
}

TEST_CASE("gaussian_nll matches its formula and passes the gradient check", "[ops_nn][loss]") {
    Tensor mu = rnd({4, 3}, 7), var = rnd({4, 3}, 8, 0.3, 2.0), x = rnd({4, 3}, 9);
    Tensor vb = rnd({1, 3}, 10, 0.3, 2.0);
    double ref = 0.0;
    for (std::int64_t i = 0; i < 12; ++i) {
        const double r = x.flat(i) - mu.flat(i), v = var.flat(i);
        ref += 0.5 * (std::log(2 * std::numbers::pi * v) + r * r / v);
    }
    CHECK(gaussian_nll(Var(mu), Var(var), Var(x)).item() == Approx(ref / 12).epsilon(1e-12));
    auto f = [](std::span<const Var> v) { return gaussian_nll(v[0], v[1], v[2]); };
    expect_grad("gaussian_nll", f, {mu, var, x});
    expect_grad("gaussian_nll broadcast var", f, {mu, vb, x});
    // var must be positive.
    Tensor bad = var.clone();
    bad.set_flat(5, 0.0);
    REQUIRE_THROWS_AS(gaussian_nll(Var(mu), Var(bad), Var(x)), ShapeError);
    REQUIRE_THROWS_WITH(gaussian_nll(Var(mu), Var(bad), Var(x)),
                        Contains("gaussian_nll") && Contains("var must be > 0"));
}

TEST_CASE("bce_with_logits is stable and passes the gradient check", "[ops_nn][loss]") {
    Tensor z = rnd({3, 5}, 11, -4.0, 4.0), y = rnd({3, 5}, 12, 0.0, 1.0);
    double ref = 0.0;
    for (std::int64_t i = 0; i < 15; ++i) {
        const double s = 1.0 / (1.0 + std::exp(-z.flat(i)));
        ref -= y.flat(i) * std::log(s) + (1 - y.flat(i)) * std::log(1 - s);
    }
    CHECK(bce_with_logits(Var(z), Var(y)).item() == Approx(ref / 15).epsilon(1e-10));
    Tensor big = Tensor::from_vector({200.0, -200.0}, {2}, DType::f64);
    Tensor yb = Tensor::from_vector({0.0, 1.0}, {2}, DType::f64);
    CHECK(bce_with_logits(Var(big), Var(yb)).item() == Approx(200.0));
    expect_grad("bce_with_logits", [](std::span<const Var> v) { return bce_with_logits(v[0], v[1]); },
                {z, y});
}

// ---------------------------------------------------------------- conv2d
TEST_CASE("conv2d matches the direct convolution (stride 2, padding 1, odd sizes)", "[ops_nn][conv]") {
    Tensor x = rnd({2, 3, 7, 5}, 20), w = rnd({4, 3, 3, 3}, 21), b = rnd({4}, 22);
    for (auto [s, p] : {std::pair{2, 1}, std::pair{1, 0}, std::pair{1, 2}, std::pair{3, 1}}) {
        std::int64_t ho = 0, wo = 0;
        auto ref = conv_ref(x, w, &b, s, p, ho, wo);
        Var bv(b);
        Var y = conv2d(Var(x), Var(w), &bv, s, p);
        REQUIRE(y.shape() == Shape{2, 4, ho, wo});
        for (std::size_t i = 0; i < ref.size(); ++i)
            CHECK(y.value().flat(static_cast<std::int64_t>(i)) == Approx(ref[i]).margin(1e-12));
        // float32 agrees.
        Var bf(b.to(DType::f32));
        Var yf = conv2d(Var(x.to(DType::f32)), Var(w.to(DType::f32)), &bf, s, p);
        for (std::size_t i = 0; i < ref.size(); ++i)
            CHECK(yf.value().flat(static_cast<std::int64_t>(i)) == Approx(ref[i]).margin(1e-5));
    }
    // Several chunks of samples (large spatial extent: one sample per GEMM).
    Tensor xl = rnd({3, 2, 70, 69}, 23), wl = rnd({2, 2, 2, 3}, 24);
    std::int64_t ho = 0, wo = 0;
    auto ref = conv_ref(xl, wl, nullptr, 1, 0, ho, wo);
    Var yl = conv2d(Var(xl), Var(wl), nullptr, 1, 0);
    double err = 0.0;
    for (std::size_t i = 0; i < ref.size(); ++i)
        err = std::max(err, std::abs(yl.value().flat(static_cast<std::int64_t>(i)) - ref[i]));
    CHECK(err < 1e-12);
}

TEST_CASE("conv2d passes the gradient check for input, weight and bias", "[ops_nn][conv][grad]") {
    Tensor x = rnd({2, 3, 7, 5}, 30), w = rnd({4, 3, 3, 3}, 31), b = rnd({4}, 32);
    expect_grad("conv2d s2 p1",
                [](std::span<const Var> v) { return conv2d(v[0], v[1], &v[2], 2, 1); }, {x, w, b});
    expect_grad("conv2d s1 p0 no bias",
                [](std::span<const Var> v) { return conv2d(v[0], v[1], nullptr, 1, 0); }, {x, w});
    Tensor w1 = rnd({2, 3, 1, 1}, 33);
    expect_grad("conv2d 1x1", [](std::span<const Var> v) { return conv2d(v[0], v[1], nullptr, 1, 0); },
                {x, w1});
    Tensor w2 = rnd({2, 3, 2, 4}, 34);
    expect_grad("conv2d rect kernel s3 p2",
                [](std::span<const Var> v) { return conv2d(v[0], v[1], nullptr, 3, 2); }, {x, w2});
    // Stride 1, square kernel: the input gradient runs as a convolution with padding k-1-p (here 0), or,
    // with padding beyond the kernel (1x1, p1), through dCOL and col2im.
    expect_grad("conv2d s1 p2 (gradient convolution unpadded)",
                [](std::span<const Var> v) { return conv2d(v[0], v[1], &v[2], 1, 2); }, {x, w, b});
    expect_grad("conv2d 1x1 p1", [](std::span<const Var> v) { return conv2d(v[0], v[1], nullptr, 1, 1); },
                {x, w1});
}

TEST_CASE("conv2d's input gradient by stride phase passes the gradient check", "[ops_nn][conv][grad]") {
    // The input gradient runs one stride-1 convolution per stride phase (kernels::grad_phases): phases
    // with kernels of different sizes (k3 s2: 2 and 1 taps), a rectangular kernel with different row and
    // column paddings per phase, phases no tap reaches (k2 s3: their gx is 0), and padding beyond the
    // kernel (k4 s2 p3: a phase would need negative padding, so dCOL and col2im run instead).
    struct Case {
        const char* name;
        Shape x, w;
        int stride, pad;
    };
    const Case cases[] = {{"k3 s2 p1 odd input", {2, 3, 9, 7}, {4, 3, 3, 3}, 2, 1},
                          {"rect k3x4 s2 p1", {2, 2, 8, 9}, {3, 2, 3, 4}, 2, 1},
                          {"k2 s3 p0 (untapped phases)", {2, 2, 8, 8}, {3, 2, 2, 2}, 3, 0},
                          {"k4 s3 p2", {1, 3, 10, 11}, {2, 3, 4, 4}, 3, 2},
                          {"k4 s2 p3 (col2im fallback)", {1, 2, 6, 6}, {3, 2, 4, 4}, 2, 3}};
    std::uint64_t stream = 250;
    for (const Case& c : cases) {
        Tensor x = rnd(c.x, stream++), w = rnd(c.w, stream++), b = rnd({c.w[0]}, stream++);
        const int s = c.stride, p = c.pad;
        expect_grad(std::string("conv2d ") + c.name,
                    [s, p](std::span<const Var> v) { return conv2d(v[0], v[1], &v[2], s, p); }, {x, w, b});
    }
}

TEST_CASE("conv2d passes the gradient check in the configurations the image models use",
          "[ops_nn][conv][grad]") {
    // MnistConvNet: k3 s1 p0 from one channel; k4 s2 p1 downsampling (even and odd inputs, 26 -> 13 -> 6);
    // residual k3 s1 p1 with and without bias; SDE-Net's concat-time conv (C + 1 -> C, k3 p1, 6 x 6).
    struct Case {
        const char* name;
        Shape x, w;
        int stride, pad;
        bool bias;
    };
    const Case cases[] = {{"k3 s1 p0 from 1 channel", {2, 1, 8, 7}, {3, 1, 3, 3}, 1, 0, true},
                          {"k4 s2 p1 even input", {2, 3, 8, 8}, {4, 3, 4, 4}, 2, 1, true},
                          {"k4 s2 p1 odd input", {2, 3, 7, 7}, {4, 3, 4, 4}, 2, 1, true},
                          {"k4 s2 p1 no bias", {1, 2, 6, 6}, {3, 2, 4, 4}, 2, 1, false},
                          {"k3 s1 p1 bias", {2, 4, 6, 6}, {4, 4, 3, 3}, 1, 1, true},
                          {"k3 s1 p1 no bias", {2, 4, 6, 6}, {4, 4, 3, 3}, 1, 1, false},
                          {"concat-time k3 p1 5 -> 4", {2, 5, 6, 6}, {4, 5, 3, 3}, 1, 1, true}};
    std::uint64_t stream = 200;
    for (const Case& c : cases) {
        Tensor x = rnd(c.x, stream++), w = rnd(c.w, stream++), b = rnd({c.w[0]}, stream++);
        const int s = c.stride, p = c.pad;
        if (c.bias)
            expect_grad(std::string("conv2d ") + c.name,
                        [s, p](std::span<const Var> v) { return conv2d(v[0], v[1], &v[2], s, p); },
                        {x, w, b});
        else
            expect_grad(std::string("conv2d ") + c.name,
                        [s, p](std::span<const Var> v) { return conv2d(v[0], v[1], nullptr, s, p); }, {x, w});
        // Only the input or only the weight needing a gradient (the forward keeps the columns only for
        // the weight's).
        expect_grad(std::string("conv2d x only ") + c.name,
                    [wv = w, s, p](std::span<const Var> v) { return conv2d(v[0], Var(wv), nullptr, s, p); },
                    {x});
        expect_grad(std::string("conv2d w only ") + c.name,
                    [xv = x, s, p](std::span<const Var> v) { return conv2d(Var(xv), v[0], nullptr, s, p); },
                    {w});
    }
}

TEST_CASE("conv2d over many chunks: gradients equal the per-sample ones", "[ops_nn][conv]") {
    // 13 samples of 16 x 20 x 20 (k3 p1): columns of 144 x 400 doubles, so the GEMMs run one sample at a
    // time within chunks of 11 samples. The input gradient does not depend on how samples are grouped
    // (bitwise); the weight gradient is the same sum in another order.
    const std::int64_t n = 13;
    Tensor x = rnd({n, 16, 20, 20}, 300), w = rnd({8, 16, 3, 3}, 301), gy = rnd({n, 8, 20, 20}, 302);
    reset_tape();
    Var lx = leaf(x), lw = leaf(w);
    Var y = conv2d(lx, lw, nullptr, 1, 1);
    backward(y, gy);
    const std::vector<double> gx = lx.grad().to_vector(), gw = lw.grad().to_vector();
    const std::vector<double> yv = y.value().to_vector();
    reset_tape();
    std::vector<double> gw_sum(gw.size(), 0.0);
    const std::int64_t xs = 16 * 400, ys = 8 * 400;
    for (std::int64_t i = 0; i < n; ++i) {
        Var li = leaf(slice(Var(x), 0, i, i + 1).value());
        Var lwi = leaf(w);
        Var yi = conv2d(li, lwi, nullptr, 1, 1);
        backward(yi, slice(Var(gy), 0, i, i + 1).value());
        const auto gxi = li.grad().to_vector(), gwi = lwi.grad().to_vector(), yvi = yi.value().to_vector();
        bool same_x = true, same_y = true;
        for (std::int64_t k = 0; k < xs; ++k) same_x = same_x && gxi[k] == gx[i * xs + k];
        for (std::int64_t k = 0; k < ys; ++k) same_y = same_y && yvi[k] == yv[i * ys + k];
        INFO("sample " << i);
        CHECK(same_x);
        CHECK(same_y);
        for (std::size_t k = 0; k < gw.size(); ++k) gw_sum[k] += gwi[k];
        reset_tape();
    }
    for (std::size_t k = 0; k < gw.size(); ++k) CHECK(gw[k] == Approx(gw_sum[k]).epsilon(1e-10).margin(1e-12));
}

TEST_CASE("group_norm passes the gradient check in the image models' configurations",
          "[ops_nn][norm][grad]") {
    // Two channels per group on 6 x 6 (SDE-Net's GroupNorm(32) of 64 channels), four on 7 x 7, and one
    // element per channel (rank 2), with gamma and beta.
    struct Case {
        Shape x;
        int groups;
    };
    const Case cases[] = {{{2, 8, 6, 6}, 4}, {{2, 8, 7, 7}, 2}, {{3, 12}, 3}};
    std::uint64_t stream = 400;
    for (const Case& c : cases) {
        Tensor x = rnd(c.x, stream++, -2.0, 3.0), gamma = rnd({c.x[1]}, stream++, 0.5, 1.5),
               beta = rnd({c.x[1]}, stream++);
        const int g = c.groups;
        // A step of 1e-4: with blocks of ~200 elements the default 1e-6 is limited by rounding (measured:
        // the error falls from 2e-8 at 1e-6 to 2e-10 at 1e-4).
        GradcheckOptions opt;
        opt.eps = 1e-4;
        expect_grad("group_norm " + c.x.str(),
                    [g](std::span<const Var> v) { return group_norm(v[0], g, &v[1], &v[2], 1e-5); },
                    {x, gamma, beta}, opt);
    }
}

TEST_CASE("group_norm_relu equals relu(group_norm) bitwise and passes the gradient check",
          "[ops_nn][norm][grad]") {
    // The image models' configurations (two channels per group on 6 x 6, four on 7 x 7), with and without
    // gamma and beta.
    struct Case {
        Shape x;
        int groups;
        bool affine;
    };
    const Case cases[] = {{{2, 8, 6, 6}, 4, true}, {{2, 8, 7, 7}, 2, true}, {{2, 4, 5, 5}, 2, false}};
    std::uint64_t stream = 450;
    for (const Case& c : cases) {
        Tensor x = rnd(c.x, stream++, -2.0, 3.0), gamma = rnd({c.x[1]}, stream++, 0.5, 1.5),
               beta = rnd({c.x[1]}, stream++, -0.3, 0.3);
        const int g = c.groups;
        const bool aff = c.affine;
        INFO("input " << c.x.str() << (aff ? " affine" : ""));
        // Bitwise: values and gradients of the fused op and of the two ops, float32 and float64.
        for (DType dt : {DType::f32, DType::f64}) {
            auto run = [&](bool fused) {
                reset_tape();
                Var lx = leaf(x.to(dt)), lg = leaf(gamma.to(dt)), lb = leaf(beta.to(dt));
                const Var* pg = aff ? &lg : nullptr;
                const Var* pb = aff ? &lb : nullptr;
                Var y = fused ? group_norm_relu(lx, g, pg, pb) : relu(group_norm(lx, g, pg, pb));
                backward(y, rnd(c.x, 499).to(dt));
                std::vector<std::vector<double>> out = {y.value().to_vector(), lx.grad().to_vector()};
                if (aff) {
                    out.push_back(lg.grad().to_vector());
                    out.push_back(lb.grad().to_vector());
                }
                reset_tape();
                return out;
            };
            CHECK(run(true) == run(false));
        }
        // Away from the relu's kink: steps of 1e-5 move y by ~1e-5 here (gamma r ~ 1), so they must not
        // cross it.
        const Var vg(gamma), vb(beta);
        Var y0 = group_norm(Var(x), g, aff ? &vg : nullptr, aff ? &vb : nullptr);
        double closest = 1e9;
        for (double v : y0.value().to_vector()) closest = std::min(closest, std::abs(v));
        REQUIRE(closest > 1e-4);
        GradcheckOptions opt;
        opt.eps = 1e-5;
        if (aff)
            expect_grad("group_norm_relu " + c.x.str(),
                        [g](std::span<const Var> v) { return group_norm_relu(v[0], g, &v[1], &v[2], 1e-5); },
                        {x, gamma, beta}, opt);
        else
            expect_grad("group_norm_relu " + c.x.str(),
                        [g](std::span<const Var> v) { return group_norm_relu(v[0], g, nullptr, nullptr); },
                        {x}, opt);
    }
}

TEST_CASE("no-grad passes reuse their memory instead of growing the arena", "[ops_nn][memory]") {
    // 10 passes over a 512 KiB activation: with gradients off the intermediates are heap tensors
    // freed with their last handle, so the arena does not grow pass after pass.
    Tensor x = rnd({4, 8, 64, 64}, 500).to(DType::f32);
    Tensor w = rnd({8, 8, 3, 3}, 501).to(DType::f32);
    reset_tape();
    NoGradScope ng;
    auto pass = [&] { return sum(relu(conv2d(Var(x), Var(w), nullptr, 1, 1))).item(); };
    const double first = pass();
    const std::size_t used = current_tape().arena().bytes_in_use();
    for (int r = 0; r < 9; ++r) CHECK(pass() == first);
    CHECK(current_tape().arena().bytes_in_use() - used < (std::size_t(1) << 16));
    Tensor big = Tensor::arena_empty({1 << 14}, DType::f32);
    CHECK(big.on_heap());
    Tensor small = Tensor::arena_empty({64}, DType::f32);
    CHECK(!small.on_heap());
    reset_tape();
}

TEST_CASE("conv2d reports bad shapes naming the op", "[ops_nn][conv][errors]") {
    Var x(Tensor::zeros({2, 3, 5, 5})), w(Tensor::zeros({4, 2, 3, 3}));
    REQUIRE_THROWS_AS(conv2d(x, w, nullptr), ShapeError);
    REQUIRE_THROWS_WITH(conv2d(x, w, nullptr), Contains("conv2d") && Contains("channel mismatch"));
    Var big(Tensor::zeros({4, 3, 8, 3}));
    REQUIRE_THROWS_WITH(conv2d(x, big, nullptr, 1, 1), Contains("conv2d") && Contains("does not fit"));
    CHECK_NOTHROW(conv2d(x, Var(Tensor::zeros({4, 3, 7, 3})), nullptr, 1, 1));
    REQUIRE_THROWS_WITH(conv2d(Var(Tensor::zeros({3, 5, 5})), w, nullptr),
                        Contains("conv2d") && Contains("rank 4"));
    Var b(Tensor::zeros({3}));
    REQUIRE_THROWS_WITH(conv2d(x, Var(Tensor::zeros({4, 3, 3, 3})), &b),
                        Contains("conv2d") && Contains("bias"));
    REQUIRE_THROWS_WITH(conv2d(x, Var(Tensor::zeros({4, 3, 3, 3})), nullptr, 0), Contains("stride"));
    REQUIRE_THROWS_AS(conv2d(x, Var(Tensor::zeros({4, 3, 3, 3}, DType::f64)), nullptr), ShapeError);
}

// ---------------------------------------------------------------- pooling
TEST_CASE("avg_pool2d and global_avg_pool", "[ops_nn][pool]") {
    Tensor x = rnd({2, 3, 5, 6}, 40);
    Var y = avg_pool2d(Var(x), 2, 2);
    REQUIRE(y.shape() == Shape{2, 3, 2, 3});
    const double ref =
        (x.at({1, 2, 2, 4}) + x.at({1, 2, 2, 5}) + x.at({1, 2, 3, 4}) + x.at({1, 2, 3, 5})) / 4;
    CHECK(y.value().at({1, 2, 1, 2}) == Approx(ref).epsilon(1e-12));
    expect_grad("avg_pool2d k2 s2", [](std::span<const Var> v) { return avg_pool2d(v[0], 2, 2); }, {x});
    expect_grad("avg_pool2d k3 s1", [](std::span<const Var> v) { return avg_pool2d(v[0], 3, 1); }, {x});
    REQUIRE_THROWS_WITH(avg_pool2d(Var(x), 6, 1), Contains("avg_pool2d") && Contains("larger"));
    REQUIRE_THROWS_WITH(avg_pool2d(Var(Tensor::zeros({3, 5, 5})), 2, 2), Contains("avg_pool2d"));

    Var gp = global_avg_pool(Var(x));
    REQUIRE(gp.shape() == Shape{2, 3});
    double s = 0.0;
    for (std::int64_t i = 0; i < 5; ++i)
        for (std::int64_t j = 0; j < 6; ++j) s += x.at({1, 1, i, j});
    CHECK(gp.value().at({1, 1}) == Approx(s / 30).epsilon(1e-12));
    expect_grad("global_avg_pool", [](std::span<const Var> v) { return global_avg_pool(v[0]); }, {x});
    REQUIRE_THROWS_WITH(global_avg_pool(Var(Tensor::zeros({3, 5}))), Contains("global_avg_pool"));
}

// ---------------------------------------------------------------- normalisation
TEST_CASE("group_norm normalises each (sample, group) and passes the gradient check", "[ops_nn][norm]") {
    Tensor x = rnd({2, 4, 3, 3}, 50, -2.0, 3.0), gamma = rnd({4}, 51, 0.5, 1.5), beta = rnd({4}, 52);
    Var y = group_norm(Var(x), 2, nullptr, nullptr, 0.0);
    for (std::int64_t n = 0; n < 2; ++n)
        for (std::int64_t g = 0; g < 2; ++g) {
            double m = 0.0, v = 0.0;
            for (std::int64_t k = 0; k < 18; ++k) m += y.value().flat(n * 36 + g * 18 + k);
            for (std::int64_t k = 0; k < 18; ++k)
                v += std::pow(y.value().flat(n * 36 + g * 18 + k) - m / 18, 2);
            CHECK(m / 18 == Approx(0.0).margin(1e-12));
            CHECK(v / 18 == Approx(1.0).epsilon(1e-10));
        }
    // affine: y = yhat * gamma[c] + beta[c]
    Var gv(gamma), bv(beta);
    Var ya = group_norm(Var(x), 2, &gv, &bv, 0.0);
    CHECK(ya.value().at({1, 3, 2, 1}) == Approx(y.value().at({1, 3, 2, 1}) * gamma.flat(3) + beta.flat(3)));
    expect_grad("group_norm g2",
                [](std::span<const Var> v) { return group_norm(v[0], 2, &v[1], &v[2], 1e-5); },
                {x, gamma, beta});
    expect_grad("group_norm g1 no affine",
                [](std::span<const Var> v) { return group_norm(v[0], 1, nullptr, nullptr); }, {x});
    expect_grad("group_norm g4 gamma only",
                [](std::span<const Var> v) { return group_norm(v[0], 4, &v[1], nullptr); }, {x, gamma});
    Tensor x3 = rnd({3, 6, 5}, 53);
    expect_grad("group_norm rank 3",
                [](std::span<const Var> v) { return group_norm(v[0], 3, nullptr, &v[1]); },
                {x3, rnd({6}, 54)});
    REQUIRE_THROWS_AS(group_norm(Var(x), 3, nullptr, nullptr), ShapeError);
    REQUIRE_THROWS_WITH(group_norm(Var(x), 3, nullptr, nullptr),
                        Contains("group_norm") && Contains("3 groups"));
    Var g5(Tensor::zeros({5}, DType::f64));
    REQUIRE_THROWS_WITH(group_norm(Var(x), 2, &g5, nullptr), Contains("group_norm") && Contains("gamma"));
}

TEST_CASE("layer_norm normalises the last dimension and passes the gradient check", "[ops_nn][norm]") {
    Tensor x = rnd({2, 3, 5}, 60, -1.0, 2.0), gamma = rnd({5}, 61, 0.5, 1.5), beta = rnd({5}, 62);
    Var gv(gamma), bv(beta);
    Var y = layer_norm(Var(x), &gv, &bv, 1e-5);
    for (std::int64_t r = 0; r < 6; ++r) {
        double m = 0.0, v = 0.0;
        for (std::int64_t k = 0; k < 5; ++k) m += x.flat(r * 5 + k);
        m /= 5;
        for (std::int64_t k = 0; k < 5; ++k) v += std::pow(x.flat(r * 5 + k) - m, 2);
        v /= 5;
        for (std::int64_t k = 0; k < 5; ++k) {
            const double ref = (x.flat(r * 5 + k) - m) / std::sqrt(v + 1e-5) * gamma.flat(k) + beta.flat(k);
            CHECK(y.value().flat(r * 5 + k) == Approx(ref).epsilon(1e-12));
        }
    }
    expect_grad("layer_norm", [](std::span<const Var> v) { return layer_norm(v[0], &v[1], &v[2]); },
                {x, gamma, beta});
    expect_grad("layer_norm plain", [](std::span<const Var> v) { return layer_norm(v[0], nullptr, nullptr); },
                {x});
    Var g4(Tensor::zeros({4}, DType::f64));
    REQUIRE_THROWS_WITH(layer_norm(Var(x), &g4, nullptr), Contains("layer_norm") && Contains("gamma"));
}

TEST_CASE("normalisation ops agree in float32", "[ops_nn][norm]") {
    Tensor x = rnd({2, 4, 3, 3}, 70);
    Var y64 = group_norm(Var(x), 2, nullptr, nullptr);
    Var y32 = group_norm(Var(x.to(DType::f32)), 2, nullptr, nullptr);
    for (std::int64_t i = 0; i < x.numel(); ++i)
        CHECK(y32.value().flat(i) == Approx(y64.value().flat(i)).margin(1e-5));
    Var l64 = layer_norm(Var(x), nullptr, nullptr);
    Var l32 = layer_norm(Var(x.to(DType::f32)), nullptr, nullptr);
    for (std::int64_t i = 0; i < x.numel(); ++i)
        CHECK(l32.value().flat(i) == Approx(l64.value().flat(i)).margin(1e-5));
}

// ---------------------------------------------------------------- dropout
TEST_CASE("dropout: inverted mask, p == 0 identity, p range checked", "[ops_nn][dropout]") {
    Tensor x = rnd({50, 40}, 80, 0.5, 1.5);
    Generator gen(5);
    reset_tape();
    Var lx = leaf(x);
    Var same = dropout(lx, 0.0, gen);
    CHECK(same.node() == lx.node());
    CHECK(same.value().raw() == lx.value().raw());
    Var y = dropout(lx, 0.25, gen);
    std::int64_t kept = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) {
        const double v = y.value().flat(i);
        if (v != 0.0) {
            ++kept;
            CHECK(v == Approx(x.flat(i) / 0.75).epsilon(1e-15));
        }
    }
    CHECK(static_cast<double>(kept) / 2000.0 == Approx(0.75).margin(0.05));
    backward(sum(y));
    Tensor g = lx.grad();
    for (std::int64_t i = 0; i < x.numel(); ++i)
        CHECK(g.flat(i) == (y.value().flat(i) != 0.0 ? 1.0 / 0.75 : 0.0));
    reset_tape();
    // Same seed, same mask.
    Generator a(9), b(9);
    CHECK(dropout(Var(x), 0.5, a).value().to_vector() == dropout(Var(x), 0.5, b).value().to_vector());
    REQUIRE_THROWS_AS(dropout(Var(x), 1.0, gen), ShapeError);
    REQUIRE_THROWS_WITH(dropout(Var(x), -0.1, gen), Contains("dropout"));
    expect_grad("dropout", [](std::span<const Var> v) {
        Generator g(3);
        return dropout(v[0], 0.4, g);
    }, {rnd({6, 7}, 81)});
}

TEST_CASE("dropout draws the generator's words in order (as bernoulli does), whatever the thread count", "[ops_nn][dropout]") {
    // 3 words already taken from the generator's current block (the head path), an odd length (the
    // tail path), and enough blocks for the threaded, chunked generation.
    for (std::int64_t n : {std::int64_t(7), std::int64_t(5001), std::int64_t(40003)}) {
        for (int threads : {1, 2}) {
            ThreadsScope ts(threads);
            Generator gen(11, 3);
            for (int k = 0; k < 3; ++k) gen();
            Generator copy = gen, scalar = gen;
            Tensor x = Tensor::full({n}, 1.0, DType::f32);
            reset_tape();
            const std::vector<double> y = dropout(Var(x), 0.3, gen).value().to_vector();
            const std::vector<double> keep = bernoulli({n}, 0.7, copy, DType::f32).to_vector();
            reset_tape();
            std::int64_t bad = 0;
            for (std::int64_t i = 0; i < n; ++i)
                bad += (y[static_cast<std::size_t>(i)] != 0.0) != (keep[static_cast<std::size_t>(i)] != 0.0);
            INFO("n = " << n << ", threads = " << threads);
            CHECK(bad == 0);
            // Against the generator's one-word-at-a-time path (scalar Random123), which shares no code
            // with the chunked bulk path that dropout and bernoulli use.
            const auto th = Generator::u32_threshold(0.7);
            std::int64_t bad_scalar = 0;
            for (std::int64_t i = 0; i < n; ++i)
                bad_scalar += (y[static_cast<std::size_t>(i)] != 0.0) != (scalar() < th);
            CHECK(bad_scalar == 0);
            const std::uint32_t next = gen();
            CHECK(next == copy());  // all three consumed exactly n words
            CHECK(next == scalar());
        }
    }
}

TEST_CASE("relu_dropout equals dropout(relu(x)) bit for bit, values and gradients", "[ops_nn][dropout]") {
    // Odd length: the vector body and the scalar tail both run; values on both sides of the kink.
    Tensor x = rnd({37, 29}, 82, -1.0, 1.0);
    Tensor gy = rnd({37, 29}, 83, -2.0, 2.0);
    for (DType dt : {DType::f32, DType::f64}) {
        auto run = [&](bool fused) {
            reset_tape();
            Generator gen(17, 4);
            Var lx = leaf(x.to(dt));
            Var y = fused ? relu_dropout(lx, 0.3, gen) : dropout(relu(lx), 0.3, gen);
            backward(y, gy.to(dt));
            auto out = std::make_pair(y.value().to_vector(), lx.grad().to_vector());
            reset_tape();
            return out;
        };
        const auto fused = run(true), plain = run(false);
        CHECK(fused.first == plain.first);
        CHECK(fused.second == plain.second);
        std::int64_t zeros = 0;
        for (double v : fused.first) zeros += v == 0.0;
        CHECK(zeros > 300);  // ~ half from relu, ~ 30% of the rest dropped
        CHECK(zeros < 900);
    }
    Generator gen(1);
    CHECK(relu_dropout(Var(x), 0.0, gen).value().to_vector() == relu(Var(x)).value().to_vector());
    REQUIRE_THROWS_WITH(relu_dropout(Var(x), 1.5, gen), Contains("relu_dropout") && Contains("[0, 1)"));
    // Inputs kept away from the kink at 0.
    Tensor xs = rnd({6, 7}, 84, 0.2, 1.0);
    for (std::int64_t i = 0; i < xs.numel(); i += 2) xs.set_flat(i, -xs.flat(i));
    expect_grad("relu_dropout", [](std::span<const Var> v) {
        Generator g(3);
        return relu_dropout(v[0], 0.4, g);
    }, {xs});
}

TEST_CASE("strided conv2d and group_norm_relu are bitwise identical with 1 and 2 threads",
          "[ops_nn][threads]") {
    // The image models' downsampling (k4 s2 p1, input gradient by stride phase) then GroupNorm + ReLU.
    Tensor x = rnd({6, 4, 13, 13}, 95), w = rnd({8, 4, 4, 4}, 96), b = rnd({8}, 97), gam = rnd({8}, 98),
           gy = rnd({6, 8, 6, 6}, 99);
    for (DType dt : {DType::f32, DType::f64}) {
        auto run = [&](int threads) {
            ThreadsScope ts(threads);
            reset_tape();
            Var lx = leaf(x.to(dt)), lw = leaf(w.to(dt)), lb = leaf(b.to(dt)), lg = leaf(gam.to(dt));
            Var y = group_norm_relu(conv2d(lx, lw, &lb, 2, 1), 4, &lg, &lb);
            backward(y, gy.to(dt));
            std::vector<std::vector<double>> out = {y.value().to_vector(), lx.grad().to_vector(),
                                                    lw.grad().to_vector(), lb.grad().to_vector(),
                                                    lg.grad().to_vector()};
            reset_tape();
            return out;
        };
        CHECK(run(1) == run(2));
    }
}

TEST_CASE("conv2d and group_norm are bitwise identical with 1 and 4 threads, float32 close to float64",
          "[ops_nn][threads]") {
    Tensor x = rnd({8, 6, 33, 31}, 90), w = rnd({5, 6, 3, 3}, 91), b = rnd({5}, 92), gam = rnd({5}, 93);
    auto run = [&](int threads, DType dt) {
        ThreadsScope ts(threads);
        reset_tape();
        Var lx = leaf(x.to(dt)), lw = leaf(w.to(dt)), lb = leaf(b.to(dt)), lg = leaf(gam.to(dt));
        Var y = group_norm(conv2d(lx, lw, &lb, 2, 1), 5, &lg, nullptr);
        backward(y, Tensor::full(y.shape(), 0.5, dt));
        std::vector<std::vector<double>> out = {y.value().to_vector(), lx.grad().to_vector(),
                                                lw.grad().to_vector(), lb.grad().to_vector(),
                                                lg.grad().to_vector()};
        reset_tape();
        return out;
    };
    auto a = run(1, DType::f64), c = run(4, DType::f64), f = run(4, DType::f32);
    CHECK(a == c);
    for (std::size_t k = 0; k < a.size(); ++k) {
        double err = 0.0, scale = 0.0;
        for (std::size_t i = 0; i < a[k].size(); ++i) {
            err = std::max(err, std::abs(a[k][i] - f[k][i]));
            scale = std::max(scale, std::abs(a[k][i]));
        }
        INFO("output " << k);
        CHECK(err <= 1e-4 * std::max(1.0, scale));
    }
}
