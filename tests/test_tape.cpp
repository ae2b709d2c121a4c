// The tape itself: nested VJPs, no-grad, detach, parameters, anomaly mode, arena misuse, threads.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstring>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/parallel.hpp"
#include "autodiff/profile.hpp"
#include "autodiff/random.hpp"

using namespace sdeuq;

namespace {
Tensor rnd(const Shape& s, std::uint64_t stream) {
    Generator g(5, stream);
    return randn(s, g, DType::f64);
}
}  // namespace

TEST_CASE("a VJP computed in a nested scope equals the one from the outer tape", "[tape][vjp]") {
    Parameter w("w", rnd({4, 3}, 1)), b("b", rnd({4}, 2));
    Tensor x = rnd({5, 3}, 3), cot = rnd({5, 4}, 4);
    auto f = [&](std::span<const Var> in) { return tanh(linear(in[0], w.var(), nullptr) + b.var()); };

    // Outer tape: backward of sum(f(x) * cot).
    w.zero_grad();
    b.zero_grad();
    Var xv = leaf(x);
    Var y = f(std::vector<Var>{xv});
    backward(sum(y * Var(cot)));
    Tensor gx = xv.grad().clone(), gw = w.grad().clone(), gb = b.grad().clone();
    std::size_t outer_nodes = current_tape().size();

    // Nested: inside another recording computation, with its own tape.
    Var z = leaf(rnd({2}, 5));
    Var zz = exp(z);
    std::vector<Parameter*> ps{&w, &b};
    std::vector<Tensor> ins{x};
    VjpResult r = vjp(f, ins, ps, cot);
    CHECK(current_tape().size() == outer_nodes + 2);  // the nested scope left nothing on the outer tape
    for (std::int64_t i = 0; i < gx.numel(); ++i) CHECK(r.input_grads[0].flat(i) == Approx(gx.flat(i)).epsilon(1e-13));
    for (std::int64_t i = 0; i < gw.numel(); ++i) CHECK(r.param_grads[0].flat(i) == Approx(gw.flat(i)).epsilon(1e-13));
    for (std::int64_t i = 0; i < gb.numel(); ++i) CHECK(r.param_grads[1].flat(i) == Approx(gb.flat(i)).epsilon(1e-13));
    for (std::int64_t i = 0; i < y.numel(); ++i) CHECK(r.output.flat(i) == y.value().flat(i));
    // The parameters' own gradients are not touched by the nested VJP.
    for (std::int64_t i = 0; i < gw.numel(); ++i) CHECK(w.grad().flat(i) == gw.flat(i));
    (void)zz;
    reset_tape();
}

TEST_CASE("nested tapes release their memory: repeated VJPs do not grow the outer arena", "[tape][vjp]") {
    Parameter w("w", rnd({16, 16}, 6));
    Tensor x = rnd({8, 16}, 7), cot = rnd({8, 16}, 8);
    auto f = [&](std::span<const Var> in) { return tanh(linear(in[0], w.var(), nullptr)); };
    std::vector<Parameter*> ps{&w};
    std::vector<Tensor> ins{x};
    vjp(f, ins, ps, cot);
    reset_tape();
    std::size_t before = current_tape().arena().bytes_reserved();
    for (int i = 0; i < 200; ++i) {
        vjp(f, ins, ps, cot);
        reset_tape();
    }
    CHECK(current_tape().arena().bytes_reserved() == before);
}

TEST_CASE("no-grad scope records nothing and detach stops the gradient", "[tape]") {
    Var x = leaf(rnd({3}, 9));
    {
        NoGradScope ng;
        Var y = exp(x);
        CHECK_FALSE(y.requires_grad());
    }
    // d/dx [x * detach(x)] = detach(x), not 2x.
    Var y = sum(x * detach(x));
    backward(y);
    for (std::int64_t i = 0; i < 3; ++i) CHECK(x.grad().flat(i) == x.value().flat(i));
    reset_tape();
}

TEST_CASE("gradients accumulate over uses and across steps into parameters", "[tape]") {
    Parameter p("p", Tensor::full({2}, 3.0, DType::f64));
    p.zero_grad();
    for (int step = 0; step < 2; ++step) {
        Var v = p.var();
        backward(sum(v * v + v));  // d/dp = 2p + 1 = 7
        reset_tape();
    }
    CHECK(p.grad().flat(0) == 14.0);
    p.zero_grad();
    CHECK(p.grad().flat(1) == 0.0);
}

TEST_CASE("zero_grad is lazy: the next gradient overwrites, an unused parameter reads zeros", "[tape]") {
    // Weight gradients reach the parameter through the GEMM (written in place) and the bias gradient
    // through accumulate; the parameter c gets none.
    Generator gen(4, 1);
    Tensor xv = randn({5, 3}, gen, DType::f64), w0 = randn({4, 3}, gen, DType::f64), b0 = randn({4}, gen, DType::f64);
    Parameter w("w", w0), b("b", b0), c("c", Tensor::full({2}, 1.0, DType::f64));
    auto step = [&] {
        Var bv = b.var();
        backward(sum(square(linear(Var(xv), w.var(), &bv))));
        reset_tape();
    };
    step();
    const std::vector<double> gw = w.grad().to_vector(), gb = b.grad().to_vector();
    for (double v : gw) REQUIRE(std::isfinite(v));
    step();  // without zero_grad: accumulates
    for (std::size_t i = 0; i < gw.size(); ++i) CHECK(w.grad().to_vector()[i] == 2 * gw[i]);
    for (auto* p : {&w, &b, &c}) {
        p->grad().fill(std::nan(""));  // stale contents must not leak through
        p->zero_grad();
    }
    step();
    CHECK(w.grad().to_vector() == gw);
    CHECK(b.grad().to_vector() == gb);
    CHECK(c.grad().to_vector() == std::vector<double>{0.0, 0.0});
    // Read before any backward: zeros.
    w.zero_grad();
    CHECK(w.grad().to_vector() == std::vector<double>(12, 0.0));
}

TEST_CASE("anomaly mode names the first op that produced NaN or Inf", "[tape][anomaly]") {
    AnomalyScope on;
    Var x = leaf(Tensor::from_vector({1.0, -1.0}, {2}, DType::f64));
    REQUIRE_THROWS_AS(log(x), AnomalyError);
    REQUIRE_THROWS_WITH(sqrt(x), Catch::Contains("'sqrt'"));
    Var z = leaf(Tensor::from_vector({0.0, 1.0}, {2}, DType::f64));
    Var s = sum(sqrt(z));  // finite forward, infinite derivative at 0
    REQUIRE_THROWS_WITH(backward(s), Catch::Contains("backward of op 'sqrt'"));
    reset_tape();
}

TEST_CASE("a second backward on the same tape runs only its own graph (earlier sweeps are spent)", "[tape]") {
    // Separate graphs: gradients accumulate as in PyTorch, each graph's backward runs once.
    Parameter w("w", Tensor::from_vector({2.0}, {1}, DType::f64));
    Var x = leaf(Tensor::from_vector({3.0}, {1}, DType::f64));
    for (int i = 0; i < 3; ++i) backward(sum(w.var() * x));
    CHECK(w.grad().flat(0) == 9.0);
    CHECK(x.grad().flat(0) == 6.0);
    // A shared intermediate: d/dx of sum(h) then of sum(h * h), h = exp(x), gives e^x + 2 e^(2x).
    Var u = leaf(Tensor::from_vector({0.5}, {1}, DType::f64));
    Var h = exp(u);
    backward(sum(h));
    backward(sum(h * h));
    CHECK(u.grad().flat(0) == Approx(std::exp(0.5) + 2 * std::exp(1.0)).epsilon(1e-14));
    reset_tape();
}

TEST_CASE("the op profiler counts each recorded op's forward and backward calls, only while on", "[tape][profile]") {
    Var x = leaf(rnd({4, 3}, 12));
    Var w = leaf(rnd({3, 3}, 13));
    {
        ProfileScope prof;
        for (int i = 0; i < 3; ++i) {
            Var y = sum(tanh(matmul(x, w)));
            backward(y);
        }
        const auto rows = profile_results();
        auto find = [&](const std::string& op) {
            for (const auto& r : rows)
                if (r.op == op) return r;
            FAIL("op '" << op << "' missing from the profile");
            return OpProfile{};
        };
        for (const char* op : {"matmul", "tanh", "sum"}) {
            const OpProfile r = find(op);
            CHECK(r.forward_calls == 3);
            CHECK(r.backward_calls == 3);
            CHECK(r.forward_us >= 0);
            CHECK(r.backward_us >= 0);
        }
        CHECK_THAT(profile_table(), Catch::Contains("matmul") && Catch::Contains("tanh"));
    }
    CHECK_FALSE(profiling());
    {
        // Ops under no-grad are counted as forward calls; nested VJPs (run inside the profiled region) are
        // counted once: the rows add up to no more than the elapsed time.
        ProfileScope prof;
        const auto t0 = std::chrono::steady_clock::now();
        {
            NoGradScope ng;
            Var e = exp(x);
        }
        for (int i = 0; i < 20; ++i) {
            Tensor xs[] = {x.value()};
            vjp([&](std::span<const Var> in) { return tanh(matmul(in[0], w)); }, xs, {},
                Tensor::full({4, 3}, 1.0, DType::f64));
        }
        const double elapsed_us =
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
        double total_us = 0;
        std::int64_t exp_calls = 0, tanh_bwd = 0;
        for (const auto& r : profile_results()) {
            total_us += r.forward_us + r.backward_us;
            if (r.op == "exp") exp_calls = r.forward_calls;
            if (r.op == "tanh") tanh_bwd = r.backward_calls;
        }
        CHECK(exp_calls == 1);
        CHECK(tanh_bwd == 20);
        CHECK(total_us <= elapsed_us);
    }
    auto exp_calls = [] {
        for (const auto& r : profile_results())
            if (r.op == "exp") return r.forward_calls;
        return std::int64_t{0};
    };
    const std::int64_t before = exp_calls();
    Var y = sum(exp(x));
    backward(y);
    CHECK(exp_calls() == before);  // profiling is off: nothing more is counted
    reset_tape();
}

TEST_CASE("misuse is reported: stale arena tensors, non-scalar backward, constant outputs", "[tape][errors]") {
    Var x = leaf(rnd({3}, 10));
    Var y = exp(x);
    Tensor stale = y.value();
    reset_tape();
    REQUIRE_THROWS_WITH(stale.flat(0), Catch::Contains("reset"));
    Var x2 = leaf(rnd({3}, 11));
    REQUIRE_THROWS_WITH(backward(exp(x2)), Catch::Contains("not a scalar"));
    Var c(Tensor::zeros({1}, DType::f64));
    REQUIRE_THROWS_WITH(backward(exp(c)), Catch::Contains("does not depend"));
    REQUIRE_THROWS_AS(Shape({1, 2, 3, 4, 5, 6, 7, 8, 9}), ShapeError);
    REQUIRE_THROWS_WITH(Tensor::zeros({2}, DType::f64).data<float>(), Catch::Contains("accessed as f32"));
    reset_tape();
}

TEST_CASE("elementwise and reduction kernels give bitwise identical results with 1 and 2 threads", "[threads]") {
    Generator g(3, 3);
    Tensor x = randn({300, 517}, g, DType::f32);
    auto run = [&](int threads) {
        ThreadsScope ts(threads);
        Var v(x);
        Var y = sum(tanh(v) * exp(v * 0.1), {1});
        Var z = softmax(v, -1);
        std::vector<float> out(static_cast<std::size_t>(y.numel() + z.numel()));
        std::memcpy(out.data(), y.value().data<float>(), sizeof(float) * static_cast<std::size_t>(y.numel()));
        std::memcpy(out.data() + y.numel(), z.value().data<float>(), sizeof(float) * static_cast<std::size_t>(z.numel()));
        reset_tape();
        return out;
    };
    auto a = run(1), b = run(2);
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_CASE("random streams are reproducible from (seed, stream) and independent of creation order", "[random]") {
    Generator a(42, 1), b(42, 2);
    Tensor ta = randn({100}, a), tb = randn({100}, b);
    Generator b2(42, 2), a2(42, 1);
    Tensor tb2 = randn({100}, b2), ta2 = randn({100}, a2);
    CHECK(std::memcmp(ta.raw(), ta2.raw(), ta.nbytes()) == 0);
    CHECK(std::memcmp(tb.raw(), tb2.raw(), tb.nbytes()) == 0);
    CHECK(std::memcmp(ta.raw(), tb.raw(), ta.nbytes()) != 0);
    // mean and variance of 1e5 normals
    Generator c(1, 0);
    double s = 0, s2 = 0;
    for (int i = 0; i < 100000; ++i) {
        double v = c.normal();
        s += v;
        s2 += v * v;
    }
    CHECK(std::abs(s / 1e5) < 0.02);
    CHECK(std::abs(s2 / 1e5 - 1.0) < 0.02);
}
