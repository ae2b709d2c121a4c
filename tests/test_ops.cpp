// Every op through the generic gradient checker, in float64, broadcasting shapes included.
#include <catch2/catch.hpp>
#include <cmath>
#include <fmt/format.h>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/random.hpp"

using namespace sdeuq;

namespace {

Tensor rnd(const Shape& s, std::uint64_t stream, double lo = -1.0, double hi = 1.0) {
    Generator g(1234, stream);
    return rand_uniform(s, g, DType::f64, lo, hi);
}
// Values in +-[lo, hi]: kept away from a kink at 0.
Tensor away_from_zero(const Shape& s, std::uint64_t stream, double lo = 0.2, double hi = 1.5) {
    Generator g(99, stream);
    Tensor t = rand_uniform(s, g, DType::f64, lo, hi);
    for (std::int64_t i = 0; i < t.numel(); ++i)
        if (g.uniform() < 0.5) t.set_flat(i, -t.flat(i));
    return t;
}

void expect_grad(const std::string& name, const std::function<Var(std::span<const Var>)>& f,
                 const std::vector<Tensor>& inputs, GradcheckOptions opt = {}) {
    auto r = check_gradients(name, f, inputs, opt);
    INFO(r.message);
    CHECK(r.ok);
}

using F = std::function<Var(std::span<const Var>)>;

}  // namespace

TEST_CASE("binary elementwise ops pass the gradient check with broadcasting", "[ops][grad]") {
    struct Case {
        const char* name;
        F f;
        bool positive_b;
    };
    std::vector<Case> cases = {
        {"add", [](auto x) { return add(x[0], x[1]); }, false},
        {"sub", [](auto x) { return sub(x[0], x[1]); }, false},
        {"mul", [](auto x) { return mul(x[0], x[1]); }, false},
        {"div", [](auto x) { return div(x[0], x[1]); }, true},
        {"pow", [](auto x) { return pow(x[1], x[0]); }, true},
        {"maximum", [](auto x) { return maximum(x[0], x[1]); }, false},
        {"minimum", [](auto x) { return minimum(x[0], x[1]); }, false},
    };
    const std::vector<std::pair<Shape, Shape>> shapes = {
        {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{3, 1}, {1, 4}}, {{2, 3, 4}, {3, 1}}, {{5}, {}}, {{}, {2, 3}}, {{2, 1, 3}, {2, 4, 1}}};
    for (auto& c : cases)
        for (auto& [sa, sb] : shapes) {
            SECTION(std::string(c.name) + " " + sa.str() + " " + sb.str()) {
                Tensor a = rnd(sa, 1), b = c.positive_b ? rnd(sb, 2, 0.5, 2.0) : rnd(sb, 2);
                if (std::string(c.name) == "maximum" || std::string(c.name) == "minimum") {
                    // keep a and b apart (no ties): a in +-[0.2, 1.5] shifted, b small
                    a = away_from_zero(sa, 3);
                    b = rnd(sb, 4, -0.1, 0.1);
                }
                expect_grad(c.name, c.f, {a, b});
            }
        }
}

TEST_CASE("scalar forms of the binary ops pass the gradient check", "[ops][grad]") {
    Tensor a = rnd({3, 5}, 5, 0.5, 2.0);
    expect_grad("add_scalar", [](auto x) { return x[0] + 2.5; }, {a});
    expect_grad("rsub", [](auto x) { return 2.5 - x[0]; }, {a});
    expect_grad("mul_scalar", [](auto x) { return x[0] * -1.7; }, {a});
    expect_grad("div_scalar", [](auto x) { return x[0] / 3.0; }, {a});
    expect_grad("rdiv", [](auto x) { return 3.0 / x[0]; }, {a});
    expect_grad("pow_scalar", [](auto x) { return pow(x[0], 2.7); }, {a});
    expect_grad("neg", [](auto x) { return -x[0]; }, {a});
}

TEST_CASE("unary elementwise ops pass the gradient check", "[ops][grad]") {
    struct Case {
        const char* name;
        F f;
        Tensor in;
    };
    Shape s{4, 7};
    std::vector<Case> cases = {
        {"exp", [](auto x) { return exp(x[0]); }, rnd(s, 10)},
        {"log", [](auto x) { return log(x[0]); }, rnd(s, 11, 0.3, 3.0)},
        {"log1p", [](auto x) { return log1p(x[0]); }, rnd(s, 12, -0.5, 3.0)},
        {"sqrt", [](auto x) { return sqrt(x[0]); }, rnd(s, 13, 0.3, 3.0)},
        {"square", [](auto x) { return square(x[0]); }, rnd(s, 14)},
        {"abs", [](auto x) { return abs(x[0]); }, away_from_zero(s, 15)},
        {"clamp", [](auto x) { return clamp(x[0], -0.5, 0.7); }, rnd(s, 16, -0.45, 0.65)},
        {"clamp_outside", [](auto x) { return clamp(x[0], -0.1, 0.1); }, away_from_zero(s, 17)},
        {"tanh", [](auto x) { return tanh(x[0]); }, rnd(s, 18, -3, 3)},
        {"sigmoid", [](auto x) { return sigmoid(x[0]); }, rnd(s, 19, -5, 5)},
        {"relu", [](auto x) { return relu(x[0]); }, away_from_zero(s, 20)},
        {"softplus", [](auto x) { return softplus(x[0]); }, rnd(s, 21, -20, 20)},
        {"silu", [](auto x) { return silu(x[0]); }, rnd(s, 22, -4, 4)},
        {"sin", [](auto x) { return sin(x[0]); }, rnd(s, 23, -4, 4)},
        {"cos", [](auto x) { return cos(x[0]); }, rnd(s, 24, -4, 4)},
    };
    for (auto& c : cases)
        SECTION(c.name) { expect_grad(c.name, c.f, {c.in}); }
}

TEST_CASE("unary ops agree with the standard library in float64", "[ops]") {
    Tensor x = rnd({1000}, 30, -6, 6);
    NoGradScope ng;
    Var v(x);
    auto check = [&](const char* name, Var y, double (*ref)(double)) {
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            INFO(name << " at x = " << x.flat(i));
            REQUIRE(y.value().flat(i) == Approx(ref(x.flat(i))).epsilon(1e-14).margin(1e-300));
        }
    };
    check("exp", exp(v), [](double a) { return std::exp(a); });
    check("tanh", tanh(v), [](double a) { return std::tanh(a); });
    check("sigmoid", sigmoid(v), [](double a) { return 1.0 / (1.0 + std::exp(-a)); });
    check("softplus", softplus(v), [](double a) { return std::log1p(std::exp(a)); });
    check("sin", sin(v), [](double a) { return std::sin(a); });
    reset_tape();
}

TEST_CASE("where and masked pass the gradient check", "[ops][grad]") {
    Tensor cond = Tensor::from_vector({1, 0, 1, 0, 0, 1}, {2, 3}, DType::f64);
    expect_grad("where", [cond](auto x) { return where(cond, x[0], x[1]); }, {rnd({2, 3}, 40), rnd({3}, 41)});
    Tensor mask = Tensor::from_vector({2, 0, 2, 0, 0, 2}, {2, 3}, DType::f64);
    expect_grad("masked", [mask](auto x) { return masked(x[0], mask); }, {rnd({2, 3}, 42)});
}

TEST_CASE("where does not propagate NaN from the branch it does not select", "[ops]") {
    Tensor cond = Tensor::from_vector({1, 0}, {2}, DType::f64);
    Tensor a = Tensor::from_vector({1.0, std::nan("")}, {2}, DType::f64);
    Tensor b = Tensor::from_vector({std::nan(""), 3.0}, {2}, DType::f64);
    Var y = where(cond, Var(a), Var(b));
    CHECK(y.value().flat(0) == 1.0);
    CHECK(y.value().flat(1) == 3.0);
    reset_tape();
}

TEST_CASE("matmul passes the gradient check in every transposed and batched form", "[ops][grad]") {
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            Shape sa = ta ? Shape{4, 3} : Shape{3, 4};
            Shape sb = tb ? Shape{5, 4} : Shape{4, 5};
            SECTION(fmt::format("2-D ta={} tb={}", ta, tb)) {
                expect_grad("matmul", [=](auto x) { return matmul(x[0], x[1], ta, tb); }, {rnd(sa, 50), rnd(sb, 51)});
            }
            SECTION(fmt::format("batched a, shared b, ta={} tb={}", ta, tb)) {
                Shape ba = ta ? Shape{2, 4, 3} : Shape{2, 3, 4};
                expect_grad("matmul", [=](auto x) { return matmul(x[0], x[1], ta, tb); }, {rnd(ba, 52), rnd(sb, 53)});
            }
            SECTION(fmt::format("shared a, batched b, ta={} tb={}", ta, tb)) {
                Shape bb = tb ? Shape{2, 5, 4} : Shape{2, 4, 5};
                expect_grad("matmul", [=](auto x) { return matmul(x[0], x[1], ta, tb); }, {rnd(sa, 54), rnd(bb, 55)});
            }
            SECTION(fmt::format("both batched, ta={} tb={}", ta, tb)) {
                Shape ba = ta ? Shape{3, 4, 3} : Shape{3, 3, 4};
                Shape bb = tb ? Shape{3, 5, 4} : Shape{3, 4, 5};
                expect_grad("matmul", [=](auto x) { return matmul(x[0], x[1], ta, tb); }, {rnd(ba, 56), rnd(bb, 57)});
            }
        }
    SECTION("linear with bias, 3-D input") {
        expect_grad("linear", [](auto x) { return linear(x[0], x[1], &x[2]); }, {rnd({2, 3, 4}, 58), rnd({5, 4}, 59), rnd({5}, 60)});
    }
}

TEST_CASE("shape ops pass the gradient check", "[ops][grad]") {
    Tensor a = rnd({2, 3, 4}, 70);
    expect_grad("reshape", [](auto x) { return reshape(x[0], Shape{4, 6}); }, {a});
    expect_grad("reshape_infer", [](auto x) { return reshape_infer(x[0], {-1, 3}); }, {a});
    expect_grad("transpose", [](auto x) { return transpose(x[0], 0, 2); }, {a});
    expect_grad("permute", [](auto x) { return permute(x[0], {2, 0, 1}); }, {a});
    expect_grad("slice", [](auto x) { return slice(x[0], 1, 1, 3); }, {a});
    expect_grad("slice_last", [](auto x) { return slice(x[0], -1, 0, 2); }, {a});
    expect_grad("concat", [](auto x) { return concat(std::vector<Var>{x[0], x[1], x[0]}, 1); }, {a, rnd({2, 2, 4}, 71)});
    expect_grad("stack", [](auto x) { return stack(std::vector<Var>{x[0], x[1]}, 1); }, {rnd({3, 4}, 72), rnd({3, 4}, 73)});
    expect_grad("broadcast_to", [](auto x) { return broadcast_to(x[0], Shape{2, 3, 4}); }, {rnd({3, 1}, 74)});
}

TEST_CASE("reductions pass the gradient check", "[ops][grad]") {
    Tensor a = rnd({2, 3, 4}, 80, -2, 2);
    expect_grad("sum_all", [](auto x) { return sum(x[0]); }, {a});
    expect_grad("mean_all", [](auto x) { return mean(x[0]); }, {a});
    for (bool keep : {false, true}) {
        expect_grad("sum_axis1", [keep](auto x) { return sum(x[0], {1}, keep); }, {a});
        expect_grad("sum_axes02", [keep](auto x) { return sum(x[0], {0, 2}, keep); }, {a});
        expect_grad("mean_axis-1", [keep](auto x) { return mean(x[0], {-1}, keep); }, {a});
        expect_grad("max_axis1", [keep](auto x) { return max(x[0], 1, keep); }, {a});
        expect_grad("logsumexp", [keep](auto x) { return logsumexp(x[0], 2, keep); }, {a});
        expect_grad("logsumexp_axis0", [keep](auto x) { return logsumexp(x[0], 0, keep); }, {a});
    }
    expect_grad("softmax", [](auto x) { return softmax(x[0], -1); }, {a});
    expect_grad("softmax_axis1", [](auto x) { return softmax(x[0], 1); }, {a});
    expect_grad("log_softmax", [](auto x) { return log_softmax(x[0], -1); }, {a});
    expect_grad("log_softmax_axis0", [](auto x) { return log_softmax(x[0], 0); }, {a});
}

TEST_CASE("softmax and logsumexp are stable for large inputs", "[ops]") {
    Tensor a = Tensor::from_vector({1000.0, 1001.0, -1000.0}, {1, 3}, DType::f64);
    Var s = softmax(Var(a), -1);
    CHECK(s.value().flat(1) == Approx(1.0 / (1.0 + std::exp(-1.0))));
    Var l = logsumexp(Var(a), -1);
    CHECK(l.value().flat(0) == Approx(1001.0 + std::log1p(std::exp(-1.0))));
    reset_tape();
}

TEST_CASE("ops name themselves and the shapes on bad input", "[ops][errors]") {
    Var a(Tensor::zeros({3, 4}, DType::f64)), b(Tensor::zeros({5, 4}, DType::f64));
    REQUIRE_THROWS_AS(add(a, b), ShapeError);
    REQUIRE_THROWS_WITH(add(a, b), Catch::Contains("add") && Catch::Contains("[3, 4]") && Catch::Contains("[5, 4]"));
    REQUIRE_THROWS_WITH(matmul(a, b), Catch::Contains("matmul") && Catch::Contains("inner dimensions"));
    REQUIRE_THROWS_WITH(reshape(a, Shape{5}), Catch::Contains("reshape") && Catch::Contains("[3, 4]"));
    REQUIRE_THROWS_WITH(sum(a, {2}), Catch::Contains("sum") && Catch::Contains("axis 2"));
    REQUIRE_THROWS_WITH(slice(a, 0, 2, 5), Catch::Contains("slice"));
    Var f(Tensor::zeros({3, 4}, DType::f32));
    REQUIRE_THROWS_WITH(mul(a, f), Catch::Contains("mul") && Catch::Contains("dtype"));
    std::vector<Var> xs{a, b};
    REQUIRE_THROWS_WITH(concat(xs, 1), Catch::Contains("concat"));
    Var w(Tensor::zeros({5, 3}, DType::f64));
    REQUIRE_THROWS_WITH(linear(a, w), Catch::Contains("linear") && Catch::Contains("[5, 3]"));
    reset_tape();
}

TEST_CASE("gaussian_nll's optional variance floor follows PyTorch's clamp", "[ops][loss]") {
    GaussianNllOptions opt;
    opt.clamp_var = true;  // eps = 1e-6, PyTorch's default
    // Hand-computed: element 0 has var 1e-8 -> 1e-6, r = 2e-3:
    // 0.5 (ln(2 pi) + ln(1e-6) + 4) = -3.98881674577746;
    // element 1: var 0.5, r = 1: 0.5 (ln(pi) + 2) = 1.57236494292470; mean -1.20822590142638.
    // d/dvar = 0.5 (1/v - r^2/v^2) / 2 = -750000 and -0.5 (through the clamp, as PyTorch); d/dmu = -r/v/2.
    Var mu = leaf(Tensor::from_vector({0.0, 1.0}, Shape{2}, DType::f64));
    Var var = leaf(Tensor::from_vector({1e-8, 0.5}, Shape{2}, DType::f64));
    Var x = leaf(Tensor::from_vector({2e-3, 2.0}, Shape{2}, DType::f64));
    Var loss = gaussian_nll(mu, var, x, opt);
    CHECK(loss.item() == Approx(-1.2082259014263823).epsilon(1e-14));
    backward(loss);
    CHECK(var.grad().flat(0) == Approx(-750000.0).epsilon(1e-12));
    CHECK(var.grad().flat(1) == Approx(-0.5).epsilon(1e-14));
    CHECK(mu.grad().flat(0) == Approx(-1000.0).epsilon(1e-12));
    CHECK(x.grad().flat(1) == Approx(1.0).epsilon(1e-14));
    reset_tape();
    // Without the option a variance below zero or at zero still throws; with it, only a negative one.
    const Var mu_c(mu.value()), x_c(x.value());
    const Var zero_var(Tensor::from_vector({0.0, 0.5}, Shape{2}, DType::f64));
    REQUIRE_THROWS_AS(gaussian_nll(mu_c, zero_var, x_c), ShapeError);
    CHECK(std::isfinite(gaussian_nll(mu_c, zero_var, x_c, opt).item()));
    const Var negative_var(Tensor::from_vector({-1.0, 0.5}, Shape{2}, DType::f64));
    REQUIRE_THROWS_WITH(gaussian_nll(mu_c, negative_var, x_c, opt),
                        Catch::Contains("gaussian_nll") && Catch::Contains(">= 0"));
    opt.eps = 0.0;
    REQUIRE_THROWS_AS(gaussian_nll(mu_c, zero_var, x_c, opt), UsageError);
    reset_tape();
    // float64 gradient check: a floor (0.3) below every variance (all gradients), and a floor above
    // some of them with the variance held constant (mean and target gradients through clamped elements).
    GaussianNllOptions floor_low{true, 0.3}, floor_high{true, 1.0};
    Tensor m = rnd({3, 4}, 40), t = rnd({3, 4}, 41), v = rnd({3, 4}, 42, 0.5, 2.0);
    expect_grad("gaussian_nll clamp_var inactive",
                [floor_low](auto in) { return gaussian_nll(in[0], in[1], in[2], floor_low); }, {m, v, t});
    expect_grad("gaussian_nll clamp_var active",
                [floor_high, v](auto in) { return gaussian_nll(in[0], Var(v), in[1], floor_high); }, {m, t});
}
