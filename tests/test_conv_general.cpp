// conv2d with per-dimension stride/padding, dilation and groups, and avg_pool2d with padding: values and
// gradients against PyTorch float64 (tests/gen_conv_general.py -> tests/conv_general_ref.inc), the float64
// gradient checker to first and second order, the plain options on the plain kernels bit for bit, 1 vs 2
// threads, and the errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/ops_higher.hpp"
#include "autodiff/parallel.hpp"
#include "autodiff/random.hpp"
#include "autodiff/tape.hpp"

using namespace sdeuq;
using Catch::Matchers::Contains;

// One case of tests/gen_conv_general.py (its tables are the only ones): inputs' shapes, options, PyTorch's
// values of y and of the gradients of L = sum(y * r).
struct ConvRef {
    const char* name;
    Shape xs, ws;
    bool bias;
    Conv2dFuncOptions opt;
    std::vector<std::int64_t> y_shape;
    std::vector<double> y, gx, gw, gb;
};
struct PoolRef {
    const char* name;
    Shape xs;
    AvgPool2dFuncOptions opt;
    std::vector<std::int64_t> y_shape;
    std::vector<double> y, gx;
};

namespace ref {
#include "conv_general_ref.inc"
}

namespace {

using F = std::function<Var(std::span<const Var>)>;

// The closed-formula inputs of tests/gen_conv_general.py.
template <class Fn>
Tensor formula(const Shape& s, Fn f) {
    Tensor t = Tensor::zeros(s, DType::f64);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, f(static_cast<double>(i)));
    return t;
}

void expect_close(const std::string& what, const std::vector<double>& got, const std::vector<double>& want) {
    INFO(what);
    REQUIRE(got.size() == want.size());
    double worst = 0.0;
    for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
    INFO("max abs error " << worst);
    CHECK(worst <= 1e-12);
}

// The generator's input x of case kd.
Tensor formula_x(const Shape& s, double kd) {
    return formula(s, [&](double i) { return std::sin(1.3 * i + 0.1 * kd); });
}

// y's shape and values against PyTorch's, then the backward sweep of L = sum(y * r), r the generator's
// formula.
void check_y_and_backward(const Var& y, const std::vector<std::int64_t>& y_shape,
                          const std::vector<double>& want, double kd) {
    REQUIRE(y.rank() == 4);
    for (int d = 0; d < 4; ++d) CHECK(y.dim(d) == y_shape[static_cast<std::size_t>(d)]);
    expect_close("y", y.value().to_vector(), want);
    Tensor r = formula(y.shape(), [&](double i) { return std::cos(0.23 * i + 0.05 * kd); });
    backward(sum(mul(y, Var(r))));
}

Conv2dFuncOptions opts(int sh, int sw, int ph, int pw, int dh, int dw, int g) {
    return {.stride_h = sh, .stride_w = sw, .pad_h = ph, .pad_w = pw, .dilation_h = dh, .dilation_w = dw,
            .groups = g};
}

Tensor rnd(const Shape& s, std::uint64_t stream) {
    Generator g(2718, stream);
    return rand_uniform(s, g, DType::f64, -1.0, 1.0);
}

void expect_first(const std::string& name, const F& f, const std::vector<Tensor>& inputs) {
    auto r = check_gradients(name, f, inputs);
    INFO(r.message);
    CHECK(r.ok);
}

void expect_second(const std::string& name, const F& f, const std::vector<Tensor>& inputs) {
    GradcheckOptions opt;
    opt.eps = 1e-5;
    opt.rtol = 1e-6;
    opt.atol = 1e-7;
    auto r = check_second_gradients(name, f, inputs, opt);
    INFO(r.message);
    CHECK(r.ok);
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(double)) != 0) return false;
    return true;
}

}  // namespace

TEST_CASE("conv2d with per-dimension stride/padding, dilation and groups matches PyTorch float64 to 1e-12",
          "[conv_general]") {
    for (std::size_t k = 0; k < ref::conv.size(); ++k) {
        const ConvRef& c = ref::conv[k];
        INFO(c.name);
        const double kd = static_cast<double>(k);
        reset_tape();
        Var x = leaf(formula_x(c.xs, kd));
        Var w = leaf(formula(c.ws, [&](double i) { return 0.5 * std::cos(0.7 * i + 0.2 * kd); }));
        Var b = leaf(formula(Shape{c.ws[0]}, [](double i) { return 0.1 * (i + 1) - 0.3; }));
        // The bias by reference (no named pointer) and no bias at all: both overloads.
        Var y = c.bias ? conv2d(x, w, b, c.opt) : conv2d(x, w, c.opt);
        check_y_and_backward(y, c.y_shape, c.y, kd);
        expect_close("dL/dx", x.grad().to_vector(), c.gx);
        expect_close("dL/dw", w.grad().to_vector(), c.gw);
        if (c.bias) expect_close("dL/db", b.grad().to_vector(), c.gb);
        reset_tape();
    }
}

TEST_CASE("avg_pool2d with per-dimension kernel, stride and padding matches PyTorch float64 to 1e-12",
          "[conv_general]") {
    for (std::size_t k = 0; k < ref::pool.size(); ++k) {
        const PoolRef& c = ref::pool[k];
        INFO(c.name);
        const double kd = static_cast<double>(k);
        reset_tape();
        Var x = leaf(formula_x(c.xs, kd));
        Var y = avg_pool2d(x, c.opt);
        check_y_and_backward(y, c.y_shape, c.y, kd);
        expect_close("dL/dx", x.grad().to_vector(), c.gx);
        reset_tape();
    }
}

TEST_CASE("general conv2d and padded avg_pool2d pass the float64 gradient checker, first and second order",
          "[conv_general][grad]") {
    struct Case {
        const char* name;
        Shape xs, ws;
        Conv2dFuncOptions opt;
    };
    const std::vector<Case> cases = {
        {"stride (1,2) padding (0,1)", {1, 2, 5, 4}, {2, 2, 3, 3}, opts(1, 2, 0, 1, 1, 1, 1)},
        {"dilation 2 padding (2,1)", {1, 2, 5, 5}, {2, 2, 3, 2}, opts(1, 1, 2, 1, 2, 2, 1)},
        {"groups 2 stride (2,1)", {2, 4, 5, 4}, {4, 2, 2, 3}, opts(2, 1, 1, 0, 1, 1, 2)},
        {"depthwise x2 dilation (1,2)", {1, 2, 5, 6}, {4, 1, 3, 2}, opts(1, 2, 1, 1, 1, 2, 2)},
    };
    std::uint64_t stream = 1;
    for (const Case& c : cases) {
        Tensor x = rnd(c.xs, stream++), w = rnd(c.ws, stream++), b = rnd(Shape{c.ws[0]}, stream++);
        const Conv2dFuncOptions o = c.opt;
        expect_first(fmt::format("conv2d {}", c.name), [o](auto v) { return conv2d(v[0], v[1], &v[2], o); }, {x, w, b});
        // tanh makes the second derivative depend on x and w through the conv and its adjoints.
        expect_second(fmt::format("conv2d {}", c.name), [o](auto v) { return tanh(conv2d(v[0], v[1], v[2], o)); },
                      {x, w, b});
        Var y = conv2d(Var(x), Var(w), o);
        Tensor gy = rnd(y.shape(), stream++);
        reset_tape();
        const Shape xs = c.xs, ws = c.ws;
        expect_second(fmt::format("conv2d_input_grad {}", c.name),
                      [o, xs](auto v) { return square(conv2d_input_grad(v[0], v[1], xs, o)); }, {gy, w});
        expect_second(fmt::format("conv2d_weight_grad {}", c.name),
                      [o, ws](auto v) { return square(conv2d_weight_grad(v[0], v[1], ws, o)); }, {x, gy});
    }
    for (bool incl : {true, false}) {
        const AvgPool2dFuncOptions o{3, 2, 2, 1, 1, 1, incl};
        Tensor x = rnd({2, 2, 5, 4}, stream++);
        expect_first("avg_pool2d padded", [o](auto v) { return avg_pool2d(v[0], o); }, {x});
        expect_second("avg_pool2d padded", [o](auto v) { return square(avg_pool2d(v[0], o)); }, {x});
        Tensor gy = rnd(avg_pool2d(Var(x), o).shape(), stream++);
        reset_tape();
        expect_second("avg_pool2d_adjoint padded",
                      [o](auto v) { return square(avg_pool2d_adjoint(v[0], Shape{2, 2, 5, 4}, o)); }, {gy});
    }
}

TEST_CASE("conv2d options equal to (stride, padding) run the plain kernels, bit for bit", "[conv_general]") {
    Tensor x = rnd({3, 3, 9, 8}, 40), w = rnd({5, 3, 3, 3}, 41), b = rnd({5}, 42), gy0 = rnd({3, 5, 5, 4}, 43);
    auto run = [&](bool options) {
        reset_tape();
        Var lx = leaf(x), lw = leaf(w), lb = leaf(b);
        Var y = options ? conv2d(lx, lw, lb, opts(2, 2, 1, 1, 1, 1, 1)) : conv2d(lx, lw, &lb, 2, 1);
        backward(y, gy0);
        std::vector<std::vector<double>> out = {y.value().to_vector(), lx.grad().to_vector(), lw.grad().to_vector(),
                                                lb.grad().to_vector()};
        reset_tape();
        return out;
    };
    const auto a = run(false), o = run(true);
    for (std::size_t k = 0; k < a.size(); ++k) CHECK(same_bits(a[k], o[k]));
    // The int-argument adjoints (now written through the options) keep the value of conv2d's own backward.
    Tensor gy = rnd({3, 5, 5, 4}, 44);
    reset_tape();
    const std::vector<double> gx = conv2d_input_grad(Var(gy), Var(w), x.shape(), 2, 1).value().to_vector();
    const std::vector<double> gw = conv2d_weight_grad(Var(x), Var(gy), w.shape(), 2, 1).value().to_vector();
    reset_tape();
    Var lx = leaf(Tensor::zeros(x.shape(), DType::f64)), lw = leaf(w);
    backward(conv2d(lx, lw, nullptr, 2, 1), gy);
    CHECK(same_bits(gx, lx.grad().to_vector()));
    reset_tape();
    Var lx2 = leaf(x), lw2 = leaf(Tensor::zeros(w.shape(), DType::f64));
    backward(conv2d(lx2, lw2, nullptr, 2, 1), gy);
    CHECK(same_bits(gw, lw2.grad().to_vector()));
    reset_tape();
}

TEST_CASE("general conv2d and avg_pool2d are bitwise identical with 1 and 2 threads", "[conv_general][threads]") {
    Tensor x = rnd({6, 4, 13, 11}, 60), w = rnd({6, 2, 3, 3}, 61), wd = rnd({8, 1, 3, 3}, 62), b = rnd({6}, 63);
    auto run = [&](int threads) {
        ThreadsScope ts(threads);
        reset_tape();
        Var lx = leaf(x), lw = leaf(w), lwd = leaf(wd), lb = leaf(b);
        Var y1 = conv2d(lx, lw, lb, opts(2, 1, 1, 2, 1, 2, 2));
        Var y2 = conv2d(lx, lwd, opts(1, 2, 1, 1, 2, 1, 4));
        Var y3 = avg_pool2d(lx, AvgPool2dFuncOptions{3, 2, 2, 1, 1, 1, false});
        backward(add(add(sum(square(y1)), sum(square(y2))), sum(square(y3))));
        std::vector<std::vector<double>> out = {y1.value().to_vector(), y2.value().to_vector(),
                                                lx.grad().to_vector(), lw.grad().to_vector(),
                                                lwd.grad().to_vector(), lb.grad().to_vector()};
        reset_tape();
        return out;
    };
    const auto one = run(1), two = run(2);
    for (std::size_t k = 0; k < one.size(); ++k) CHECK(same_bits(one[k], two[k]));
}

TEST_CASE("conv2d and avg_pool2d reject bad options and shapes with a UsageError naming the op", "[conv_general]") {
    Var x(rnd({2, 4, 6, 5}, 80)), w(rnd({6, 2, 3, 3}, 81));
    auto expect_error = [](const char* what, auto&& f, const char* fragment) {
        INFO(what);
        CHECK_THROWS_AS(f(), UsageError);
        CHECK_THROWS_WITH(f(), Contains("conv2d") && Contains(fragment));
    };
    expect_error("channels not divisible by groups", [&] { return conv2d(x, Var(rnd({6, 1, 3, 3}, 82)), opts(1, 1, 0, 0, 1, 1, 3)); },
                 "divisible by groups 3");
    expect_error("output channels not divisible by groups", [&] { return conv2d(x, Var(rnd({5, 2, 3, 3}, 82)), opts(1, 1, 0, 0, 1, 1, 2)); },
                 "output channels 5");
    expect_error("weight shape", [&] { return conv2d(x, w, opts(1, 1, 0, 0, 1, 1, 1)); }, "C/groups = 4");
    expect_error("kernel larger than the padded input",
                 [&] { return conv2d(x, w, opts(1, 1, 0, 0, 3, 1, 2)); }, "larger than the padded input");
    expect_error("stride 0", [&] { return conv2d(x, w, opts(0, 1, 0, 0, 1, 1, 2)); }, "stride (0, 1)");
    expect_error("dilation -1", [&] { return conv2d(x, w, opts(1, 1, 0, 0, 1, -1, 2)); }, "dilation (1, -1)");
    expect_error("negative padding", [&] { return conv2d(x, w, opts(1, 1, -1, 0, 1, 1, 2)); }, "padding (-1, 0)");
    expect_error("bias shape", [&] { return conv2d(x, w, Var(rnd({4}, 83)), opts(1, 1, 0, 0, 1, 1, 2)); },
                 "bias");
    expect_error("rank", [&] { return conv2d(Var(rnd({4, 6, 5}, 84)), w, opts(1, 1, 0, 0, 1, 1, 2)); }, "rank 4");
    auto pool_error = [](const char* what, auto&& f, const char* fragment) {
        INFO(what);
        CHECK_THROWS_AS(f(), UsageError);
        CHECK_THROWS_WITH(f(), Contains("avg_pool2d") && Contains(fragment));
    };
    pool_error("padding over half the kernel", [&] { return avg_pool2d(x, AvgPool2dFuncOptions{3, 3, 1, 1, 2, 0, true}); },
               "half the kernel");
    pool_error("kernel larger than the input", [&] { return avg_pool2d(x, AvgPool2dFuncOptions{7, 2, 1, 1, 0, 0, true}); },
               "larger than the padded input");
    pool_error("negative stride", [&] { return avg_pool2d(x, AvgPool2dFuncOptions{2, 2, -1, 1, 0, 0, true}); },
               "stride (-1, 1)");
    reset_tape();
}
