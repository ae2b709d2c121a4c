// Higher-order gradients: grad(..., {.create_graph = true}) and the second-derivative checker over every
// op family, Hessian-vector products, double backward through an MLP, a conv net and norms, and a
// gradient penalty.
#include <catch2/catch.hpp>
#include <cmath>
#include <fmt/format.h>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/ops_fused.hpp"
#include "autodiff/ops_higher.hpp"
#include "autodiff/random.hpp"

using namespace sdeuq;

namespace {

using F = std::function<Var(std::span<const Var>)>;

Tensor rnd(const Shape& s, std::uint64_t stream, double lo = -1.0, double hi = 1.0) {
    Generator g(4321, stream);
    return rand_uniform(s, g, DType::f64, lo, hi);
}
// +-[0.2, 1.5]: away from the kinks at 0 (relu, abs, clamp boundaries are elsewhere).
Tensor away(const Shape& s, std::uint64_t stream) {
    Generator g(77, stream);
    Tensor t = rand_uniform(s, g, DType::f64, 0.2, 1.5);
    for (std::int64_t i = 0; i < t.numel(); ++i)
        if (g.uniform() < 0.5) t.set_flat(i, -t.flat(i));
    return t;
}

void expect_second(const std::string& name, const F& f, const std::vector<Tensor>& inputs,
                   GradcheckOptions opt = {}) {
    opt.eps = 1e-5;
    opt.rtol = 1e-6;
    opt.atol = 1e-7;
    auto r = check_second_gradients(name, f, inputs, opt);
    INFO(r.message);
    CHECK(r.ok);
}

}  // namespace

TEST_CASE("second derivatives of elementwise ops pass the checker, broadcasting included", "[hograd][grad]") {
    struct Case {
        const char* name;
        F f;
        bool positive;
    };
    // Linear ops are squared, so that their backward is differentiated with an x-dependent adjoint.
    std::vector<Case> cases = {
        {"add", [](auto x) { return square(add(x[0], x[1])); }, false},
        {"sub", [](auto x) { return square(sub(x[0], x[1])); }, false},
        {"mul", [](auto x) { return mul(x[0], x[1]); }, false},
        {"div", [](auto x) { return div(x[0], x[1]); }, true},
        {"pow", [](auto x) { return pow(x[1], x[0]); }, true},
        {"maximum", [](auto x) { return square(maximum(x[0], mul(x[1], 0.1))); }, false},
        {"minimum", [](auto x) { return square(minimum(x[0], mul(x[1], 0.1))); }, false},
        {"where", [](auto x) { return square(where(x[0].value(), x[0], x[1])); }, false},
    };
    const std::vector<std::pair<Shape, Shape>> shapes = {{{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 3}, {2, 4, 1}}};
    for (auto& c : cases)
        for (auto& [sa, sb] : shapes) {
            Tensor a = away(sa, 1), b = c.positive ? rnd(sb, 2, 0.5, 2.0) : rnd(sb, 2);
            if (c.positive) a = rnd(sa, 3, 0.5, 2.0);
            expect_second(fmt::format("{} {} {}", c.name, sa.str(), sb.str()), c.f, {a, b});
        }
}

TEST_CASE("second derivatives of unary and scalar ops pass the checker", "[hograd][grad]") {
    struct Case {
        const char* name;
        F f;
        bool positive;
    };
    std::vector<Case> cases = {
        {"exp", [](auto x) { return exp(x[0]); }, false},
        {"log", [](auto x) { return log(x[0]); }, true},
        {"log1p", [](auto x) { return log1p(x[0]); }, true},
        {"sqrt", [](auto x) { return sqrt(x[0]); }, true},
        {"square", [](auto x) { return square(x[0]); }, false},
        {"abs", [](auto x) { return square(abs(x[0])); }, false},
        {"tanh", [](auto x) { return tanh(x[0]); }, false},
        {"sigmoid", [](auto x) { return sigmoid(x[0]); }, false},
        {"relu", [](auto x) { return square(relu(x[0])); }, false},
        {"softplus", [](auto x) { return softplus(x[0]); }, false},
        {"silu", [](auto x) { return silu(x[0]); }, false},
        {"sin", [](auto x) { return sin(x[0]); }, false},
        {"cos", [](auto x) { return cos(x[0]); }, false},
        {"neg", [](auto x) { return square(neg(x[0])); }, false},
        {"clamp", [](auto x) { return square(clamp(x[0], -1.0, 1.0)); }, false},
        {"masked", [](auto x) { return square(masked(x[0], rnd(x[0].shape(), 9))); }, false},
        {"add_scalar", [](auto x) { return square(x[0] + 0.5); }, false},
        {"mul_scalar", [](auto x) { return square(x[0] * 3.0); }, false},
        {"rsub", [](auto x) { return square(2.0 - x[0]); }, false},
        {"rdiv", [](auto x) { return 2.0 / x[0]; }, true},
        {"pow_scalar", [](auto x) { return pow(x[0], 3.5); }, true},
    };
    for (auto& c : cases) {
        Tensor a = c.positive ? rnd({3, 4}, 4, 0.5, 2.0) : away({3, 4}, 5);
        expect_second(c.name, c.f, {a});
    }
}

TEST_CASE("second derivatives of reductions and shape ops pass the checker", "[hograd][grad]") {
    std::vector<std::pair<const char*, F>> cases = {
        {"sum", [](auto x) { return square(sum(x[0])); }},
        {"sum axes", [](auto x) { return square(sum(x[0], {0, 2}, false)); }},
        {"sum keepdims", [](auto x) { return square(sum(x[0], {1}, true)); }},
        {"mean", [](auto x) { return square(mean(x[0], {1}, false)); }},
        {"max", [](auto x) { return square(max(x[0], 1, false)); }},
        {"logsumexp", [](auto x) { return logsumexp(x[0], 1, false); }},
        {"logsumexp keepdims", [](auto x) { return logsumexp(x[0], 2, true); }},
        {"softmax", [](auto x) { return softmax(x[0], 1); }},
        {"log_softmax", [](auto x) { return log_softmax(x[0], -1); }},
        {"reshape", [](auto x) { return square(reshape(x[0], Shape{6, 4})); }},
        {"transpose", [](auto x) { return tanh(transpose(x[0], 0, 2)); }},
        {"permute", [](auto x) { return tanh(permute(x[0], {2, 0, 1})); }},
        {"slice", [](auto x) { return square(slice(x[0], 1, 1, 3)); }},
        {"concat", [](auto x) { return square(concat({x[0], tanh(x[0])}, 1)); }},
        {"stack", [](auto x) { return square(stack({x[0], tanh(x[0])}, 0)); }},
        {"broadcast_to", [](auto x) { return square(broadcast_to(sum(x[0], {1}, true), Shape{2, 3, 4})); }},
        {"lincomb", [](auto x) {
             Var xs[] = {x[0], tanh(x[0])};
             double cs[] = {0.5, -2.0};
             return square(lincomb(xs, cs));
         }},
        {"sum_products2", [](auto x) { return square(sum_products2(x[0], rnd({2, 3, 4}, 8), tanh(x[0]), rnd({2, 3, 4}, 9))); }},
    };
    Tensor a = away({2, 3, 4}, 6);
    for (auto& [name, f] : cases) expect_second(name, f, {a});
}

TEST_CASE("second derivatives of matmul and linear pass the checker", "[hograd][grad]") {
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            Tensor a = ta ? rnd({2, 4, 3}, 1) : rnd({2, 3, 4}, 1);
            Tensor b = tb ? rnd({5, 4}, 2) : rnd({4, 5}, 2);
            expect_second(fmt::format("matmul ta={} tb={} shared b", ta, tb),
                          [ta, tb](auto x) { return tanh(matmul(x[0], x[1], ta, tb)); }, {a, b});
            expect_second(fmt::format("matmul ta={} tb={} shared a", ta, tb),
                          [ta, tb](auto x) { return tanh(matmul(x[0], x[1], ta, tb)); },
                          {ta ? rnd({4, 5}, 3) : rnd({5, 4}, 3), tb ? rnd({2, 3, 4}, 4) : rnd({2, 4, 3}, 4)});
        }
    for (LinearAct act : {LinearAct::none, LinearAct::tanh, LinearAct::sigmoid, LinearAct::relu})
        expect_second(fmt::format("linear act {}", static_cast<int>(act)),
                      [act](auto x) {
                          Var y = linear(x[0], x[1], &x[2], act);
                          return act == LinearAct::tanh || act == LinearAct::sigmoid ? y : square(y);
                      },
                      {rnd({2, 3, 4}, 5), rnd({5, 4}, 6), away({5}, 7)});
}

TEST_CASE("second derivatives of losses pass the checker", "[hograd][grad]") {
    const std::vector<std::int32_t> labels = {2, 0, 1, 2};
    expect_second("cross_entropy", [&](auto x) { return cross_entropy(x[0], labels); }, {rnd({4, 3}, 1)});
    expect_second("nll_loss", [&](auto x) { return nll_loss(log_softmax(x[0]), labels); }, {rnd({4, 3}, 2)});
    expect_second("gather", [&](auto x) { return square(gather(x[0], labels)); }, {rnd({4, 3}, 3)});
    expect_second("mse_loss", [](auto x) { return mse_loss(tanh(x[0]), x[1]); }, {rnd({4, 3}, 4), rnd({3}, 5)});
    expect_second("gaussian_nll", [](auto x) { return gaussian_nll(x[0], x[1], x[2]); },
                  {rnd({4, 3}, 6), rnd({4, 3}, 7, 0.5, 2.0), rnd({4, 3}, 8)});
    GaussianNllOptions clamp{true, 0.3};
    expect_second("gaussian_nll clamp_var", [clamp](auto x) { return gaussian_nll(x[0], x[1], x[2], clamp); },
                  {rnd({4, 3}, 6), rnd({4, 3}, 7, 0.5, 2.0), rnd({4, 3}, 8)});
    expect_second("bce_with_logits", [](auto x) { return bce_with_logits(x[0], x[1]); },
                  {rnd({4, 3}, 9, -3, 3), rnd({4, 3}, 10, 0, 1)});
}

TEST_CASE("second derivatives of conv2d, pooling, norms and dropout pass the checker", "[hograd][grad]") {
    for (int stride : {1, 2})
        for (int pad : {0, 1})
            expect_second(fmt::format("conv2d stride {} pad {}", stride, pad),
                          [=](auto x) { return tanh(conv2d(x[0], x[1], &x[2], stride, pad)); },
                          {rnd({2, 2, 5, 5}, 1), rnd({3, 2, 3, 3}, 2), rnd({3}, 3)});
    expect_second("conv2d_input_grad", [](auto x) { return square(conv2d_input_grad(x[0], x[1], Shape{1, 2, 5, 5}, 2, 1)); },
                  {rnd({1, 3, 3, 3}, 4), rnd({3, 2, 3, 3}, 5)});
    expect_second("conv2d_weight_grad", [](auto x) { return square(conv2d_weight_grad(x[0], x[1], Shape{3, 2, 3, 3}, 2, 1)); },
                  {rnd({1, 2, 5, 5}, 6), rnd({1, 3, 3, 3}, 7)});
    expect_second("avg_pool2d", [](auto x) { return square(avg_pool2d(x[0], 2, 1)); }, {rnd({2, 2, 4, 4}, 8)});
    expect_second("avg_pool2d_adjoint", [](auto x) { return square(avg_pool2d_adjoint(x[0], Shape{1, 2, 5, 5}, 3, 2)); },
                  {rnd({1, 2, 2, 2}, 9)});
    expect_second("global_avg_pool", [](auto x) { return square(global_avg_pool(x[0])); }, {rnd({2, 3, 2, 2}, 10)});
    expect_second("group_norm", [](auto x) { return tanh(group_norm(x[0], 2, &x[1], &x[2])); },
                  {rnd({2, 4, 2, 3}, 11), rnd({4}, 12), rnd({4}, 13)});
    expect_second("group_norm_relu", [](auto x) { return tanh(group_norm_relu(x[0], 2, &x[1], &x[2])); },
                  {rnd({2, 4, 2, 3}, 11), rnd({4}, 12), rnd({4}, 13)});
    expect_second("group_norm no affine", [](auto x) { return tanh(group_norm(x[0], 1, nullptr, nullptr)); },
                  {rnd({2, 2, 3}, 14)});
    expect_second("layer_norm", [](auto x) { return tanh(layer_norm(x[0], &x[1], &x[2])); },
                  {rnd({3, 5}, 15), rnd({5}, 16), rnd({5}, 17)});
    expect_second("dropout", [](auto x) {
        Generator gen(5, 5);
        return square(dropout(x[0], 0.3, gen));
    }, {rnd({4, 5}, 18)});
    expect_second("relu_dropout", [](auto x) {
        Generator gen(5, 6);
        return square(relu_dropout(x[0], 0.3, gen));
    }, {away({4, 5}, 19)});
}

TEST_CASE("the Hessian-vector product of a quadratic form is A v", "[hograd]") {
    // f(x) = 0.5 x^T A x with symmetric A: grad f = A x, H v = A v, for any x.
    NestedTape scope;
    Tensor m = rnd({4, 4}, 1);
    Var a = add(Var(m), transpose(Var(m)));  // symmetric, constant
    Var x = leaf(rnd({4, 1}, 2));
    Tensor v = rnd({4, 1}, 3);
    Var f = mul(sum(mul(x, matmul(a, x))), 0.5);
    Var g = grad(f, {x}, {.create_graph = true})[0];
    Var hv = grad(sum(mul(g, Var(v))), {x})[0];
    for (int i = 0; i < 4; ++i) {
        double ax = 0.0, av = 0.0;
        for (int j = 0; j < 4; ++j) {
            ax += a.value().at({i, j}) * x.value().flat(j);
            av += a.value().at({i, j}) * v.flat(j);
        }
        CHECK(g.value().flat(i) == Approx(ax).epsilon(1e-13));
        CHECK(hv.value().flat(i) == Approx(av).epsilon(1e-13));
    }
    CHECK(!hv.requires_grad());  // without create_graph the result is a constant
}

TEST_CASE("third derivatives: d^3/dx^3 of x^4 sin(x) by grad of grad of grad", "[hograd]") {
    NestedTape scope;
    const double x0 = 0.7;
    Var x = leaf(Tensor::full({}, x0, DType::f64));
    Var f = mul(pow(x, 4.0), sin(x));
    Var d1 = grad(f, {x}, {.create_graph = true})[0];
    Var d2 = grad(d1, {x}, {.create_graph = true})[0];
    Var d3 = grad(d2, {x})[0];
    // (x^4 sin x)''' = 24 x sin x + 36 x^2 cos x - 12 x^3 sin x - x^4 cos x
    const double s = std::sin(x0), c = std::cos(x0);
    const double want = 24 * x0 * s + 36 * x0 * x0 * c - 12 * x0 * x0 * x0 * s - x0 * x0 * x0 * x0 * c;
    CHECK(d3.value().item() == Approx(want).epsilon(1e-12));
}

TEST_CASE("double backward through an MLP with parameters passes the checker", "[hograd][grad]") {
    Parameter w1("w1", rnd({6, 3}, 1)), b1("b1", rnd({6}, 2)), w2("w2", rnd({2, 6}, 3)), b2("b2", rnd({2}, 4));
    GradcheckOptions opt;
    opt.params = {&w1, &b1, &w2, &b2};
    const std::vector<std::int32_t> labels = {1, 0, 1, 1, 0};
    expect_second("mlp", [&](auto x) {
        Var bb1 = b1.var(), bb2 = b2.var();
        Var h = linear(x[0], w1.var(), &bb1, LinearAct::tanh);
        return cross_entropy(linear(silu(h), w2.var(), &bb2), labels);
    }, {rnd({5, 3}, 5)}, opt);
}

TEST_CASE("double backward through a conv net with group_norm passes the checker", "[hograd][grad]") {
    Parameter w("w", rnd({3, 2, 3, 3}, 1)), b("b", rnd({3}, 2)), gam("gamma", rnd({3}, 3, 0.5, 1.5)),
        bet("beta", rnd({3}, 4)), fc("fc", rnd({2, 3}, 5));
    GradcheckOptions opt;
    opt.params = {&w, &b, &gam, &bet, &fc};
    const std::vector<std::int32_t> labels = {1, 0};
    expect_second("conv net", [&](auto x) {
        Var bb = b.var(), gg = gam.var(), be = bet.var();
        Var h = conv2d(x[0], w.var(), &bb, 1, 1);
        h = tanh(group_norm(h, 3, &gg, &be));
        h = global_avg_pool(avg_pool2d(h, 2, 2));
        return cross_entropy(linear(h, fc.var()), labels);
    }, {rnd({2, 2, 4, 4}, 6)}, opt);
}

TEST_CASE("a gradient penalty's parameter gradient matches finite differences of the penalty", "[hograd]") {
    // WGAN-GP's penalty (||d D(x) / dx|| - 1)^2 for a small critic D; backward() of it reaches the
    // parameters through the differentiable backward of every op of D.
    Parameter w1("w1", rnd({5, 3}, 1)), w2("w2", rnd({1, 5}, 2));
    Tensor xin = rnd({4, 3}, 3);
    auto penalty = [&]() {
        Var x = leaf(xin);
        Var d = sum(linear(softplus(linear(x, w1.var())), w2.var()));
        Var gx = grad(d, {x}, {.create_graph = true})[0];
        Var norm = sqrt(sum(square(gx), {1}, false));
        return mean(square(add(norm, -1.0)));
    };
    Tensor analytic;
    {
        NestedTape t;
        Var p = penalty();
        Var pw = w1.var();
        analytic = grad(p, {pw})[0].value().clone();
    }
    const double eps = 1e-6;
    for (std::int64_t i = 0; i < w1.value().numel(); ++i) {
        const double v0 = w1.value().flat(i);
        auto at = [&](double v) {
            w1.value().set_flat(i, v);
            NestedTape t;
            return penalty().value().item();
        };
        const double num = (at(v0 + eps) - at(v0 - eps)) / (2 * eps);
        w1.value().set_flat(i, v0);
        INFO("w1 flat index " << i);
        CHECK(analytic.flat(i) == Approx(num).epsilon(1e-6).margin(1e-9));
    }
    // And backward() accumulates the same gradient into the parameter on the root tape.
    w1.zero_grad();
    Var p = penalty();
    backward(p);
    for (std::int64_t i = 0; i < w1.value().numel(); ++i) CHECK(w1.grad().flat(i) == Approx(analytic.flat(i)).epsilon(1e-12));
    reset_tape();
}

TEST_CASE("grad without create_graph leaves every .grad untouched and returns constants", "[hograd]") {
    NestedTape scope;
    Var x = leaf(rnd({3}, 1));
    Var y = tanh(x);
    Var f = sum(mul(y, y));
    auto g = grad(f, {x, y});
    CHECK(!g[0].requires_grad());
    CHECK(!g[1].requires_grad());
    CHECK(!x.node()->grad.defined());
    for (int i = 0; i < 3; ++i) {
        const double t = std::tanh(x.value().flat(i));
        CHECK(g[1].value().flat(i) == Approx(2 * t).epsilon(1e-14));  // with respect to an intermediate
        CHECK(g[0].value().flat(i) == Approx(2 * t * (1 - t * t)).epsilon(1e-14));
    }
    // An input the output does not depend on gets zeros.
    Var z = leaf(rnd({2}, 2));
    CHECK(grad(f, {z})[0].value().to_vector() == std::vector<double>{0.0, 0.0});
}

TEST_CASE("grad names the op without a differentiable backward and rejects constant inputs", "[hograd]") {
    NestedTape scope;
    Var x = leaf(rnd({3}, 1));
    Var y = record("first_order_only", x.value().clone_arena(), {x},
                   [nx = x.node()](const Tensor& g) { accumulate(nx, g); });
    Var f = sum(square(y));
    CHECK_THROWS_WITH(grad(f, {x}), Catch::Contains("first_order_only"));
    CHECK_THROWS_WITH(grad(f, {Var(rnd({3}, 2))}), Catch::Contains("constant"));
    CHECK_THROWS_AS(grad(y, {x}), ShapeError);  // not a scalar, no cotangent
}
