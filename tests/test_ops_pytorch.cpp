// The API a PyTorch user reaches for (issue 16, part 3): min/max over several axes, gather/scatter_add on
// any axis, the losses' reduction and cross_entropy's options, retain_grad and Var::grad() on
// intermediates, the dtype rule, and bias/gamma/beta passed as values.
//
// Values and gradients are compared with PyTorch float64 at 1e-12: tests/ops_pytorch_ref.inc is the output
// of tests/gen_ops_pytorch.py (inputs, outputs, and the gradients of L = sum(out * W) with the weights W
// below), regenerate it with `/usr/bin/python3 tests/gen_ops_pytorch.py > tests/ops_pytorch_ref.inc`.
// Each new op also passes the float64 first- and second-derivative checkers.
#include <catch2/catch.hpp>
#include <cmath>
#include <fmt/format.h>
#include <numbers>
#include <string>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/random.hpp"

using namespace sdeuq;

namespace {

#include "ops_pytorch_ref.inc"

using F = std::function<Var(std::span<const Var>)>;

Tensor t64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s, DType::f64); }

// The script's weights: cos(0.37 k + 0.1) + 0.5 over the flat index k.
Tensor weights(const Shape& s) {
    Tensor w = Tensor::empty(s, DType::f64);
    for (std::int64_t k = 0; k < w.numel(); ++k) w.set_flat(k, std::cos(0.37 * static_cast<double>(k) + 0.1) + 0.5);
    return w;
}

void expect_close(const std::string& what, const Tensor& got, const std::vector<double>& want, double tol = 1e-12) {
    INFO(what);
    REQUIRE(got.numel() == static_cast<std::int64_t>(want.size()));
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double g = got.flat(static_cast<std::int64_t>(i)), w = want[i];
        if (!(std::abs(g - w) <= tol * std::max(1.0, std::abs(w))))
            FAIL_CHECK(fmt::format("{}: element {}: got {:.17g}, PyTorch {:.17g}", what, i, g, w));
    }
}

struct Run {
    Tensor out;
    std::vector<Tensor> grads;
};

// out = f(inputs as leaves); the gradients of sum(out * W).
Run run(const F& f, const std::vector<Tensor>& inputs) {
    reset_tape();
    std::vector<Var> xs;
    for (auto& t : inputs) xs.push_back(leaf(t));
    Var out = f(xs);
    backward(sum(mul(out, Var(weights(out.shape())))));
    Run r{out.value().clone(), {}};
    for (auto& x : xs) r.grads.push_back(x.grad().clone());
    reset_tape();
    return r;
}

// Compares out and the gradients of the inputs listed in `want_grads` (nullptr: not checked).
void expect_torch(const std::string& name, const F& f, const std::vector<Tensor>& inputs,
                  const std::vector<double>& want_out, std::vector<const std::vector<double>*> want_grads) {
    Run r = run(f, inputs);
    expect_close(name + " value", r.out, want_out);
    for (std::size_t k = 0; k < want_grads.size(); ++k)
        if (want_grads[k]) expect_close(fmt::format("{} gradient of input {}", name, k), r.grads[k], *want_grads[k]);
}

void expect_first_and_second(const std::string& name, const F& f, const std::vector<Tensor>& inputs) {
    {
        auto r = check_gradients(name, f, inputs);
        INFO(r.message);
        CHECK(r.ok);
    }
    GradcheckOptions opt;
    opt.eps = 1e-5;
    opt.rtol = 1e-6;
    opt.atol = 1e-7;
    auto r = check_second_gradients(name, f, inputs, opt);
    INFO(r.message);
    CHECK(r.ok);
}

const Shape xs{2, 3, 4};

}  // namespace

TEST_CASE("min and max over one axis and several axes match PyTorch float64", "[api][reduce]") {
    Tensor x = t64(X, xs);
    expect_torch("max axis 1", [](auto v) { return max(v[0], 1); }, {x}, max1_out, {&max1_dx});
    expect_torch("min axis 1", [](auto v) { return min(v[0], 1); }, {x}, min1_out, {&min1_dx});
    expect_torch("max {0, 2} keepdims", [](auto v) { return max(v[0], {0, 2}, true); }, {x}, max02k_out, {&max02k_dx});
    expect_torch("min {0, 2} keepdims", [](auto v) { return min(v[0], {0, 2}, true); }, {x}, min02k_out, {&min02k_dx});
    expect_torch("max {1, 2}", [](auto v) { return max(v[0], {2, -2}); }, {x}, max12_out, {&max12_dx});
    expect_torch("min {0, 1, 2}", [](auto v) { return min(v[0], {0, 1, 2}); }, {x}, min012_out, {&min012_dx});
    CHECK(max(Var(x), {0, 2}, true).shape() == Shape{1, 3, 1});
    CHECK(min(Var(x), {0, 1, 2}).shape() == Shape{});
}

TEST_CASE("min and max send a tie's gradient to the first extremum, in row-major order over the axes",
          "[api][reduce]") {
    // [2, 2, 2] reduced over {0, 2} (flat index 4 i0 + 2 j + i2): for j = 0 the maximum 5 at flat 1 and 4,
    // for j = 1 the minimum -1 at flat 2 and 7.
    Tensor x = t64({0, 5, -1, 2, 5, 3, 1, -1}, Shape{2, 2, 2});
    Run r = run([](auto v) { return max(v[0], {0, 2}); }, {x});
    CHECK(r.out.to_vector() == std::vector<double>{5, 2});
    Tensor w = weights(Shape{2});
    CHECK(r.grads[0].to_vector() == std::vector<double>{0, w.flat(0), 0, w.flat(1), 0, 0, 0, 0});
    r = run([](auto v) { return min(v[0], {0, 2}); }, {x});
    CHECK(r.out.to_vector() == std::vector<double>{0, -1});
    CHECK(r.grads[0].to_vector() == std::vector<double>{w.flat(0), 0, w.flat(1), 0, 0, 0, 0, 0});
    // One axis: the first along it (PyTorch's max(dim) and min(dim) indices).
    Tensor y = t64({2, 7, 7, -3, 1, -3}, Shape{1, 6});
    r = run([](auto v) { return max(v[0], 1); }, {y});
    CHECK(r.grads[0].to_vector() == std::vector<double>{0, w.flat(0), 0, 0, 0, 0});
    r = run([](auto v) { return min(v[0], -1); }, {y});
    CHECK(r.grads[0].to_vector() == std::vector<double>{0, 0, 0, w.flat(0), 0, 0});
    // NaN is the extremum (the first one), as PyTorch's max(dim)/min(dim).
    Tensor z = t64({1, NAN, 3}, Shape{3});
    CHECK(std::isnan(max(Var(z), 0).item()));
    CHECK(std::isnan(min(Var(z), 0).item()));
}

TEST_CASE("min and max reject empty, repeated and out-of-range axes", "[api][reduce]") {
    Var x(t64(X, xs));
    CHECK_THROWS_AS(max(x, std::vector<int>{}), UsageError);
    CHECK_THROWS_AS(min(x, {0, -3}), ShapeError);
    CHECK_THROWS_AS(max(x, {0, 3}), ShapeError);
    CHECK_THROWS_AS(min(Var(Tensor::zeros(Shape{2, 0}, DType::f64)), {0, 1}), ShapeError);
}

TEST_CASE("min and max over several axes pass the first- and second-derivative checkers", "[api][reduce][grad]") {
    Tensor x = t64(X, xs);
    // Squared, so that the second derivative sees an x-dependent adjoint.
    expect_first_and_second("min axis 0", [](auto v) { return square(min(v[0], 0)); }, {x});
    expect_first_and_second("max {0, 2}", [](auto v) { return square(max(v[0], {0, 2}, true)); }, {x});
    expect_first_and_second("min {1, 2}", [](auto v) { return square(min(v[0], {1, 2})); }, {x});
}

TEST_CASE("gather and scatter_add on every axis match PyTorch float64", "[api][index]") {
    Tensor x = t64(X, xs);
    const std::vector<Shape> idx_shapes = {{2, 2, 3}, {2, 2, 4}, {2, 3, 2}};
    const std::vector<const std::vector<double>*> idx = {&IDX0, &IDX1, &IDX2}, src = {&SRC0, &SRC1, &SRC2};
    const std::vector<const std::vector<double>*> g_out = {&gather0_out, &gather1_out, &gather2_out},
                                                  g_dx = {&gather0_dx, &gather1_dx, &gather2_dx},
                                                  s_out = {&scatter0_out, &scatter1_out, &scatter2_out},
                                                  s_dx = {&scatter0_dx, &scatter1_dx, &scatter2_dx},
                                                  s_ds = {&scatter0_ds, &scatter1_ds, &scatter2_ds};
    for (int ax = 0; ax < 3; ++ax) {
        Tensor index = t64(*idx[static_cast<std::size_t>(ax)], idx_shapes[static_cast<std::size_t>(ax)]);
        Tensor s = t64(*src[static_cast<std::size_t>(ax)], idx_shapes[static_cast<std::size_t>(ax)]);
        const auto k = static_cast<std::size_t>(ax);
        expect_torch(fmt::format("gather axis {}", ax), [&](auto v) { return gather(v[0], ax, index); }, {x},
                     *g_out[k], {g_dx[k]});
        expect_torch(fmt::format("scatter_add axis {}", ax), [&](auto v) { return scatter_add(v[0], ax, index, v[1]); },
                     {x, s}, *s_out[k], {s_dx[k], s_ds[k]});
        // Negative axes count from the end.
        CHECK(gather(Var(x), ax - 3, index).value().to_vector() == *g_out[k]);
        expect_first_and_second(fmt::format("gather axis {}", ax),
                                [&](auto v) { return square(gather(v[0], ax, index)); }, {x});
        expect_first_and_second(fmt::format("scatter_add axis {}", ax),
                                [&](auto v) { return square(scatter_add(v[0], ax, index, v[1])); }, {x, s});
    }
}

TEST_CASE("gather and scatter_add reject bad indices with the op and the position", "[api][index]") {
    Var x(t64(X, xs));
    auto msg = [](auto f) {
        try {
            f();
        } catch (const ShapeError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    Tensor idx = t64({0, 1, 2}, Shape{1, 1, 3});
    CHECK(gather(x, 2, idx).value().shape() == Shape{1, 1, 3});
    CHECK_THAT(msg([&] { gather(x, 1, t64({0, 3, 1}, Shape{1, 1, 3})); }),
               Catch::Contains("gather") && Catch::Contains("index value 3 at flat position 1"));
    CHECK_THAT(msg([&] { gather(x, 2, t64({0, 0.5, 1}, Shape{1, 1, 3})); }), Catch::Contains("not an integer"));
    CHECK_THAT(msg([&] { gather(x, 2, t64({0, -1, 1}, Shape{1, 1, 3})); }), Catch::Contains("index value -1"));
    CHECK_THAT(msg([&] { gather(x, 2, t64({0, 1}, Shape{2, 1})); }), Catch::Contains("rank"));
    CHECK_THAT(msg([&] { gather(x, 2, Tensor::zeros(Shape{3, 1, 1}, DType::f64)); }),
               Catch::Contains("larger than input"));
    CHECK_THAT(msg([&] { scatter_add(x, 2, idx, Var(Tensor::zeros(Shape{1, 1, 4}, DType::f64))); }),
               Catch::Contains("scatter_add: src"));
    CHECK_THROWS_AS(scatter_add(x, 2, idx, Var(Tensor::zeros(Shape{1, 1, 3}, DType::f32))), ShapeError);
}

TEST_CASE("cross_entropy and nll_loss options match PyTorch float64", "[api][loss]") {
    Tensor z = t64(Z, Shape{5, 4});
    Tensor lab = t64(LAB, Shape{5}), ign = t64(LAB_IGN, Shape{5}), cw = t64(CW, Shape{4});
    auto ce = [](Tensor labels, CrossEntropyOptions o) -> F {
        return [labels, o](auto v) { return cross_entropy(v[0], labels, o); };
    };
    expect_torch("weighted mean", ce(lab, {.weight = cw}), {z}, ce_w_out, {&ce_w_dz});
    expect_torch("weighted, smoothed, ignored", ce(ign, {.weight = cw, .label_smoothing = 0.1}), {z},
                 ce_w_ls_ign_out, {&ce_w_ls_ign_dz});
    expect_torch("smoothed", ce(lab, {.label_smoothing = 0.2}), {z}, ce_ls_out, {&ce_ls_dz});
    expect_torch("sum, ignored", ce(ign, {.reduction = Reduction::sum}), {z}, ce_sum_ign_out, {&ce_sum_ign_dz});
    expect_torch("none, weighted, smoothed", ce(ign, {.reduction = Reduction::none, .weight = cw, .label_smoothing = 0.3}),
                 {z}, ce_none_w_ls_out, {&ce_none_w_ls_dz});
    expect_torch("nll weighted, ignored", [&](auto v) { return nll_loss(log_softmax(v[0], 1), ign, {.weight = cw}); },
                 {z}, nll_w_ign_out, {&nll_w_ign_dz});
    expect_torch("nll none", [&](auto v) { return nll_loss(v[0], lab, {.reduction = Reduction::none}); }, {z},
                 nll_none_out, {&nll_none_dz});
    // The options' defaults give the plain loss; labels as a span or as a tensor give the same.
    std::vector<std::int32_t> li = {1, 0, 3, 2, 2};
    CHECK(cross_entropy(Var(z), lab).item() == Approx(cross_entropy(Var(z), li).item()).epsilon(1e-14));
    CHECK(nll_loss(Var(z), lab).item() == Approx(nll_loss(Var(z), li).item()).epsilon(1e-14));
    // Every sample ignored: the weighted mean is 0/0 (PyTorch: nan).
    CHECK(std::isnan(cross_entropy(Var(z), Tensor::full(Shape{5}, -100.0, DType::f64)).item()));
}

TEST_CASE("cross_entropy and nll_loss options pass the first- and second-derivative checkers", "[api][loss][grad]") {
    Tensor z = t64(Z, Shape{5, 4}), ign = t64(LAB_IGN, Shape{5}), cw = t64(CW, Shape{4});
    for (Reduction red : {Reduction::mean, Reduction::sum, Reduction::none}) {
        CrossEntropyOptions o{.reduction = red, .weight = cw, .label_smoothing = 0.15};
        expect_first_and_second(fmt::format("cross_entropy reduction {}", static_cast<int>(red)),
                                [&](auto v) { return cross_entropy(v[0], ign, o); }, {z});
        o.label_smoothing = 0.0;
        expect_first_and_second(fmt::format("nll_loss reduction {}", static_cast<int>(red)),
                                [&](auto v) { return nll_loss(log_softmax(v[0], 1), ign, o); }, {z});
    }
}

TEST_CASE("cross_entropy rejects bad labels, weights and smoothing", "[api][loss]") {
    Var z(t64(Z, Shape{5, 4}));
    CHECK_THROWS_AS(cross_entropy(z, t64({1, 0, 3, 2, 4}, Shape{5})), ShapeError);      // 4 >= C
    CHECK_THROWS_AS(cross_entropy(z, t64({1, 0, 3, 2, 1.5}, Shape{5})), ShapeError);    // not an integer
    CHECK_THROWS_AS(cross_entropy(z, t64({1, 0, 3, 2}, Shape{4})), ShapeError);         // N mismatch
    CHECK_THROWS_AS(cross_entropy(z, Tensor::zeros(Shape{5, 4}, DType::f64)), ShapeError);  // probabilities
    CHECK_THROWS_AS(cross_entropy(z, t64(LAB, Shape{5}), {.weight = Tensor::zeros(Shape{3}, DType::f64)}), ShapeError);
    CHECK_THROWS_AS(cross_entropy(z, t64(LAB, Shape{5}), {.label_smoothing = 1.5}), UsageError);
    CHECK_THROWS_AS(nll_loss(z, t64(LAB, Shape{5}), {.label_smoothing = 0.1}), UsageError);
}

TEST_CASE("mse, bce_with_logits and gaussian_nll with sum and none reductions match PyTorch float64", "[api][loss]") {
    Tensor p = t64(P, Shape{3, 4}), t = t64(T, Shape{4}), y = t64(Y01, Shape{4}), v = t64(V, Shape{3, 4});
    expect_torch("mse sum", [](auto a) { return mse_loss(a[0], a[1], Reduction::sum); }, {p, t}, mse_sum_out,
                 {&mse_sum_dp, &mse_sum_dt});
    expect_torch("mse none", [](auto a) { return mse_loss(a[0], a[1], Reduction::none); }, {p, t}, mse_none_out,
                 {&mse_none_dp, &mse_none_dt});
    expect_torch("bce sum", [](auto a) { return bce_with_logits(mul(a[0], 3.0), a[1], Reduction::sum); }, {p, y},
                 bce_sum_out, {&bce_sum_dp, &bce_sum_dy});
    expect_torch("bce none", [](auto a) { return bce_with_logits(mul(a[0], 3.0), a[1], Reduction::none); }, {p, y},
                 bce_none_out, {&bce_none_dp, &bce_none_dy});
    expect_torch("gaussian_nll sum",
                 [](auto a) { return gaussian_nll(a[0], a[1], a[2], {.reduction = Reduction::sum}); }, {p, v, t},
                 gnll_sum_out, {&gnll_sum_dm, &gnll_sum_dv, &gnll_sum_dt});
    expect_torch("gaussian_nll none",
                 [](auto a) { return gaussian_nll(a[0], a[1], a[2], {.reduction = Reduction::none}); }, {p, v, t},
                 gnll_none_out, {&gnll_none_dm, &gnll_none_dv, &gnll_none_dt});
    // The clamp option under none: var below eps is floored in the value, the gradient passes.
    Tensor small = Tensor::full(Shape{4}, 1e-9, DType::f64);
    Var g = gaussian_nll(Var(p), Var(small), Var(t), {.clamp_var = true, .reduction = Reduction::none});
    CHECK(g.value().flat(0) == Approx(0.5 * (std::log(2 * std::numbers::pi * 1e-6) + std::pow(T[0] - P[0], 2) / 1e-6)));
}

TEST_CASE("sum and none reductions of mse, bce_with_logits and gaussian_nll pass the derivative checkers",
          "[api][loss][grad]") {
    Tensor p = t64(P, Shape{3, 4}), t = t64(T, Shape{4}), y = t64(Y01, Shape{4}), v = t64(V, Shape{3, 4});
    for (Reduction red : {Reduction::sum, Reduction::none}) {
        const std::string r = red == Reduction::sum ? "sum" : "none";
        expect_first_and_second("mse " + r, [red](auto a) { return mse_loss(a[0], a[1], red); }, {p, t});
        expect_first_and_second("bce " + r, [red](auto a) { return bce_with_logits(mul(a[0], 3.0), a[1], red); },
                                {p, y});
        expect_first_and_second("gaussian_nll " + r,
                                [red](auto a) { return gaussian_nll(a[0], a[1], a[2], {.reduction = red}); },
                                {p, v, t});
    }
}

TEST_CASE("retain_grad keeps an intermediate's gradient; grad() of other intermediates throws",
          "[api][tape]") {
    reset_tape();
    Tensor xt = t64({1.0, -2.0, 3.0}, Shape{3});
    Var x = leaf(xt);
    Var y = mul(x, x);
    Var u = mul(y, 2.0);  // not retained
    y.retain_grad();
    x.retain_grad();  // a no-op on a leaf
    backward(sum(mul(u, 3.0)));
    CHECK(y.grad().to_vector() == std::vector<double>{6, 6, 6});
    CHECK(x.grad().to_vector() == std::vector<double>{12, -24, 36});
    CHECK_THROWS_WITH(u.grad(), Catch::Contains("intermediate") && Catch::Contains("retain_grad"));
    CHECK(Var(xt).grad().to_vector() == std::vector<double>{0, 0, 0});  // a constant: zero gradient
    CHECK_THROWS_AS(Var(xt).retain_grad(), UsageError);
    // Summed over backward calls, as PyTorch's retained .grad.
    backward(sum(y));
    CHECK(y.grad().to_vector() == std::vector<double>{7, 7, 7});
    // A gradient does not become a constant Var without saying so: Var(g) refuses it, constant(g) says so.
    CHECK_THROWS_WITH(exp(Var(x.grad())), Catch::Contains("constant(g)"));
    CHECK(exp(constant(x.grad())).value().flat(0) == Approx(std::exp(14.0)));  // 12 + 2 x from the second backward
    CHECK(exp(Var(x.grad().clone())).value().flat(0) == Approx(std::exp(14.0)));  // a copy is a plain value
    // Retained but nothing flowed in yet: zeros.
    Var w = exp(x);
    w.retain_grad();
    CHECK(w.grad().to_vector() == std::vector<double>{0, 0, 0});
    reset_tape();
}

TEST_CASE("binary ops with f32 and f64 inputs throw naming the op and both dtypes", "[api][dtype]") {
    Var a(Tensor::zeros(Shape{2, 2}, DType::f32)), b(Tensor::zeros(Shape{2, 2}, DType::f64));
    auto msg = [](auto f) {
        try {
            f();
        } catch (const std::exception& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    const std::vector<std::pair<std::string, std::function<void()>>> ops = {
        {"add", [&] { add(a, b); }},
        {"sub", [&] { sub(a, b); }},
        {"mul", [&] { mul(a, b); }},
        {"div", [&] { div(a, b); }},
        {"pow", [&] { pow(a, b); }},
        {"maximum", [&] { maximum(a, b); }},
        {"minimum", [&] { minimum(a, b); }},
        {"matmul", [&] { matmul(a, b); }},
        {"mse_loss", [&] { mse_loss(a, b); }},
        {"bce_with_logits", [&] { bce_with_logits(a, b); }},
    };
    for (auto& [name, f] : ops) {
        INFO(name);
        const std::string m = msg(f);
        CHECK_THAT(m, Catch::Contains(name) && Catch::Contains("f32[2, 2]") && Catch::Contains("f64[2, 2]"));
    }
}

TEST_CASE("linear, layer_norm and group_norm take bias, gamma and beta as values", "[api]") {
    reset_tape();
    Generator gen(3, 0);
    Tensor xt = rand_uniform(Shape{2, 4, 3}, gen, DType::f64, -1, 1);
    Parameter w("w", rand_uniform(Shape{5, 3}, gen, DType::f64, -1, 1)), b("b", rand_uniform(Shape{5}, gen, DType::f64, -1, 1));
    Parameter g("g", rand_uniform(Shape{4}, gen, DType::f64, 0.5, 1.5)), beta("beta", rand_uniform(Shape{4}, gen, DType::f64, -1, 1));
    Parameter g3("g3", rand_uniform(Shape{3}, gen, DType::f64, 0.5, 1.5));
    Var x(xt);
    Var wv = w.var(), bv = b.var(), gv = g.var(), betav = beta.var(), g3v = g3.var();
    CHECK(linear(x, w.var(), b.var()).value().to_vector() == linear(x, wv, &bv).value().to_vector());
    CHECK(linear(x, w.var(), b.var(), LinearAct::tanh).value().to_vector() ==
          linear(x, wv, &bv, LinearAct::tanh).value().to_vector());
    CHECK(linear(x, w.var(), std::nullopt).value().to_vector() == linear(x, wv).value().to_vector());
    CHECK(layer_norm(x, g3.var(), std::nullopt).value().to_vector() == layer_norm(x, &g3v, nullptr).value().to_vector());
    CHECK(group_norm(x, 2, g.var(), beta.var()).value().to_vector() ==
          group_norm(x, 2, &gv, &betav).value().to_vector());
    reset_tape();
}
