// The float32 tanh kernel (autodiff/kernels/elementwise.hpp): accuracy against double-precision tanh,
// special values, and the same bits in the vector body and the padded tail. (The exhaustive check over all
// 2^32 inputs, <= 2 ulp, was run once offline; this samples every binade.)
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/ops_fused.hpp"
#include "autodiff/parallel.hpp"
#include "autodiff/random.hpp"

using namespace sdeuq;

namespace {

std::int64_t ulp_distance(float a, float b) {
    std::int32_t ia, ib;
    std::memcpy(&ia, &a, 4);
    std::memcpy(&ib, &b, 4);
    if (ia < 0) ia = std::numeric_limits<std::int32_t>::min() - ia;
    if (ib < 0) ib = std::numeric_limits<std::int32_t>::min() - ib;
    return std::llabs(static_cast<std::int64_t>(ia) - ib);
}

Tensor f32_tensor(const std::vector<float>& v) {
    Tensor t = Tensor::empty({static_cast<std::int64_t>(v.size())}, DType::f32);
    std::memcpy(t.data<float>(), v.data(), v.size() * sizeof(float));
    return t;
}

}  // namespace

TEST_CASE("tanh float32: within 2 ulp of double tanh on every binade", "[ops][tanh]") {
    std::vector<float> xs;
    // 4096 inputs per binade from 2^-40 to 2^4, both signs, plus the branch point 0.625 neighbourhood.
    for (int e = -40; e <= 4; ++e)
        for (int k = 0; k < 4096; ++k) {
            const float x = std::ldexp(1.0f + static_cast<float>(k) / 4096.0f, e);
            xs.push_back(x);
            xs.push_back(-x);
        }
    for (float x = 0.62f; x < 0.63f; x = std::nextafter(x, 1.0f)) xs.push_back(x);
    NoGradScope no_grad;
    const Tensor y = tanh(Var(f32_tensor(xs))).value();
    std::int64_t worst = 0;
    float worst_x = 0.0f;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const float ref = static_cast<float>(std::tanh(static_cast<double>(xs[i])));
        const std::int64_t d = ulp_distance(y.data<float>()[i], ref);
        if (d > worst) {
            worst = d;
            worst_x = xs[i];
        }
    }
    INFO("worst " << worst << " ulp at x = " << worst_x);
    CHECK(worst <= 2);
}

TEST_CASE("tanh float32: special values and odd lengths", "[ops][tanh]") {
    const float inf = std::numeric_limits<float>::infinity();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> xs{0.0f, -0.0f, inf, -inf, nan, 9.4f, 9.6f, -20.0f, 1e-30f, -1e-45f, 0.625f};
    NoGradScope no_grad;
    const Tensor y = tanh(Var(f32_tensor(xs))).value();
    const float* p = y.data<float>();
    CHECK(p[0] == 0.0f);
    CHECK(!std::signbit(p[0]));
    CHECK(p[1] == 0.0f);
    CHECK(std::signbit(p[1]));
    CHECK(p[2] == 1.0f);
    CHECK(p[3] == -1.0f);
    CHECK(std::isnan(p[4]));
    CHECK(p[5] == 1.0f);
    CHECK(p[6] == 1.0f);
    CHECK(p[7] == -1.0f);
    CHECK(p[8] == 1e-30f);
    CHECK(p[9] == -1e-45f);
    CHECK(ulp_distance(p[10], static_cast<float>(std::tanh(0.625))) <= 2);
    // Every element computed by the same instructions wherever it falls (vector body or padded tail).
    std::vector<float> ramp;
    for (int i = 0; i < 37; ++i) ramp.push_back(-3.0f + 0.17f * static_cast<float>(i));
    const Tensor all = tanh(Var(f32_tensor(ramp))).value();
    for (int i = 0; i < 37; ++i) {
        const Tensor one = tanh(Var(f32_tensor({ramp[static_cast<std::size_t>(i)]}))).value();
        REQUIRE(one.data<float>()[0] == all.data<float>()[i]);
    }
}

// ---- fused ops (autodiff/ops_fused.hpp) ----

TEST_CASE("lincomb of three (y + a x1 + b x2, the solver steps): float64 gradient check, and the bits of the plain ops", "[ops][fused][grad]") {
    auto rnd = [](const Shape& s, std::uint64_t stream) {
        Generator g(1234, stream);
        return rand_uniform(s, g, DType::f64, -1.0, 1.0);
    };
    const Tensor y = rnd({3, 5}, 1), x1 = rnd({3, 5}, 2), x2 = rnd({3, 5}, 3);
    for (auto [a, b] : {std::pair{0.37, -1.25}, std::pair{1.0, 1.0}, std::pair{-0.5, 0.0}}) {
        auto r = check_gradients(
            "lincomb3", [a = a, b = b](std::span<const Var> x) { return lincomb(x, std::vector<double>{1.0, a, b}); }, {y, x1, x2});
        INFO(r.message);
        CHECK(r.ok);
    }
    // The same input twice (gradients accumulate into one adjoint).
    auto r = check_gradients(
        "lincomb3 aliased", [](std::span<const Var> x) { return lincomb(std::vector<Var>{x[0], x[1], x[0]}, std::vector<double>{1.0, 0.3, 2.0}); }, {y, x1});
    INFO(r.message);
    CHECK(r.ok);
    // float32: the same bits as y + x1 * a + x2 * b written with the plain ops.
    Generator g(5, 6);
    const Tensor fy = randn({128, 32}, g, DType::f32), f1 = randn({128, 32}, g, DType::f32),
                 f2 = randn({128, 32}, g, DType::f32);
    NoGradScope no_grad;
    for (auto [a, b] : {std::pair{0.5 / 128, 0.5}, std::pair{1.0 / 1024, 1.0}, std::pair{-0.1, 0.3}}) {
        const Tensor fused = lincomb(std::vector<Var>{Var(fy), Var(f1), Var(f2)}, std::vector<double>{1.0, a, b}).value();
        const Tensor plain = (Var(fy) + Var(f1) * a + Var(f2) * b).value();
        REQUIRE(std::memcmp(fused.raw(), plain.raw(), 128 * 32 * sizeof(float)) == 0);
    }
    CHECK_THROWS_AS(lincomb(std::vector<Var>{Var(fy), Var(rnd({3, 5}, 4)), Var(fy)}, std::vector<double>{1.0, 1.0, 1.0}), ShapeError);
}

TEST_CASE("sum_products2: float64 gradient check, seeds exactly", "[ops][fused][grad]") {
    auto rnd = [](const Shape& s, std::uint64_t stream) {
        Generator g(77, stream);
        return rand_uniform(s, g, DType::f64, -1.0, 1.0);
    };
    const Tensor a = rnd({4, 3}, 1), b = rnd({4, 5}, 2), ca = rnd({4, 3}, 3), cb = rnd({4, 5}, 4);
    auto r = check_gradients(
        "sum_products2",
        [&](std::span<const Var> x) { return sum_products2(tanh(x[0]), ca, x[1] * x[1], cb) * 1.5; }, {a, b});
    INFO(r.message);
    CHECK(r.ok);
    // Value, and backward(total) hands ca, cb on bit for bit.
    Var va = leaf(a), vb = leaf(b);
    Var total = sum_products2(va, ca, vb, cb);
    // The value: 8 partial sums per operand (element i into i % 8), added pairwise.
    auto dot8 = [](const Tensor& x, const Tensor& c) {
        double p[8] = {};
        for (std::int64_t i = 0; i < x.numel(); ++i) p[i % 8] += x.flat(i) * c.flat(i);
        return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    };
    CHECK(total.item() == dot8(a, ca) + dot8(b, cb));
    double serial = 0.0;
    for (std::int64_t i = 0; i < a.numel(); ++i) serial += a.flat(i) * ca.flat(i);
    for (std::int64_t i = 0; i < b.numel(); ++i) serial += b.flat(i) * cb.flat(i);
    CHECK(total.item() == Approx(serial).epsilon(1e-14));
    backward(total);
    for (std::int64_t i = 0; i < a.numel(); ++i) REQUIRE(va.grad().flat(i) == ca.flat(i));
    for (std::int64_t i = 0; i < b.numel(); ++i) REQUIRE(vb.grad().flat(i) == cb.flat(i));
    reset_tape();
    CHECK_THROWS_AS(sum_products2(Var(a), cb, Var(b), cb), ShapeError);
}

TEST_CASE("lincomb: float64 gradient check, and the bits of the plain ops", "[ops][fused][grad]") {
    auto rnd = [](const Shape& s, std::uint64_t stream) {
        Generator g(4321, stream);
        return rand_uniform(s, g, DType::f64, -1.0, 1.0);
    };
    const std::vector<Tensor> in = {rnd({2, 7}, 1), rnd({2, 7}, 2), rnd({2, 7}, 3), rnd({2, 7}, 4)};
    const std::vector<double> c = {2.0, -1.0, 0.031, 0.5};
    auto r = check_gradients(
        "lincomb", [&](std::span<const Var> x) { return lincomb(x, c); }, in);
    INFO(r.message);
    CHECK(r.ok);
    auto r1 = check_gradients(
        "lincomb one", [](std::span<const Var> x) { return lincomb(x, std::vector<double>{-0.7}); }, {in[0]});
    INFO(r1.message);
    CHECK(r1.ok);
    // Repeated input: the adjoints add up.
    auto r2 = check_gradients(
        "lincomb aliased",
        [](std::span<const Var> x) {
            const std::vector<Var> v = {x[0], x[1], x[0]};
            return lincomb(v, std::vector<double>{1.0, 0.25, 1.0});
        },
        {in[0], in[1]});
    INFO(r2.message);
    CHECK(r2.ok);
    // float32 bits: 2 y - z + f h + p as the reversible Heun step wrote it with the plain ops.
    Generator g(8, 9);
    const Tensor y = randn({64, 32}, g, DType::f32), z = randn({64, 32}, g, DType::f32),
                 f = randn({64, 32}, g, DType::f32), p = randn({64, 32}, g, DType::f32);
    NoGradScope no_grad;
    const double h = 1.0 / 128;
    const std::vector<Var> xs = {Var(y), Var(z), Var(f), Var(p)};
    const Tensor fused = lincomb(xs, std::vector<double>{2.0, -1.0, h, 1.0}).value();
    const Tensor plain = (Var(y) * 2.0 - Var(z) + Var(f) * h + Var(p)).value();
    REQUIRE(std::memcmp(fused.raw(), plain.raw(), 64 * 32 * sizeof(float)) == 0);
    CHECK_THROWS_AS(lincomb(xs, std::vector<double>{1.0}), ShapeError);
}

TEST_CASE("linear with a fused activation: float64 gradient check", "[ops][fused][grad]") {
    auto rnd = [](const Shape& s, std::uint64_t stream) {
        Generator g(99, stream);
        return rand_uniform(s, g, DType::f64, -1.0, 1.0);
    };
    for (LinearAct act : {LinearAct::tanh, LinearAct::sigmoid, LinearAct::relu}) {
        for (const Shape& xs : {Shape{5, 3}, Shape{2, 4, 3}, Shape{3}}) {
            for (bool with_bias : {true, false}) {
                // relu: inputs kept away from the kink (|x W^T + b| >= 0.05 is checked below).
                const Tensor x = rnd(xs, 1), w = rnd({4, 3}, 2), b = rnd({4}, 3);
                const auto f = [&](std::span<const Var> in) {
                    Var bv = in[2];
                    return linear(in[0], in[1], with_bias ? &bv : nullptr, act);
                };
                if (act == LinearAct::relu) {
                    NoGradScope ng;
                    Var bv(b);
                    const Tensor z = linear(Var(x), Var(w), with_bias ? &bv : nullptr).value();
                    bool near_kink = false;
                    for (std::int64_t i = 0; i < z.numel(); ++i) near_kink |= std::abs(z.flat(i)) < 0.05;
                    if (near_kink) continue;
                }
                auto r = check_gradients("linear act", f, {x, w, b});
                INFO(r.message << " act " << static_cast<int>(act) << " x " << xs.str() << " bias " << with_bias);
                CHECK(r.ok);
            }
        }
    }
}

TEST_CASE("linear with a fused activation gives the bits of act(linear(...)), 1 and 2 threads", "[ops][fused]") {
    for (DType dt : {DType::f32, DType::f64}) {
        for (int threads : {1, 2}) {
            ThreadsScope ts(threads);
            Generator g(7, 7);
            const Tensor x = randn({128, 32}, g, dt), w = randn({64, 32}, g, dt), b = randn({64}, g, dt);
            const Tensor cot = randn({128, 64}, g, dt);
            for (LinearAct act : {LinearAct::tanh, LinearAct::sigmoid, LinearAct::relu}) {
                auto run = [&](bool fused) {
                    Var xv = leaf(x);
                    Parameter wp("w", w.clone()), bp("b", b.clone());
                    Var bv = bp.var();
                    Var y;
                    if (fused) {
                        y = linear(xv, wp.var(), &bv, act);
                    } else {
                        Var z = linear(xv, wp.var(), &bv);
                        y = act == LinearAct::tanh ? tanh(z) : act == LinearAct::sigmoid ? sigmoid(z) : relu(z);
                    }
                    backward(sum(y * Var(cot)));
                    std::vector<Tensor> out = {y.value().clone(), xv.grad().clone(), wp.grad().clone(),
                                               bp.grad().clone()};
                    reset_tape();
                    return out;
                };
                const auto a = run(true), r = run(false);
                for (std::size_t k = 0; k < a.size(); ++k) {
                    INFO("act " << static_cast<int>(act) << " output " << k << " threads " << threads);
                    REQUIRE(a[k].numel() == r[k].numel());
                    REQUIRE(std::memcmp(a[k].raw(), r[k].raw(), a[k].nbytes()) == 0);
                }
            }
        }
    }
    Var x = leaf(Tensor::zeros({2, 3}, DType::f64));
    REQUIRE_THROWS_WITH(linear(x, Var(Tensor::zeros({4, 5}, DType::f64)), nullptr, LinearAct::tanh),
                        Catch::Contains("linear_tanh") && Catch::Contains("[2, 3]"));
    reset_tape();
}
