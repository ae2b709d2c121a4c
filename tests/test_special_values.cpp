// Every elementwise op over a table of special inputs (signed zeros, subnormals, infinities, NaN, and a
// few ordinary values), for f32 and f64, each input placed once in the vector body and once in the tail
// of a 35-element tensor (35 = 2 * 16 + 3: the last 3 elements are a tail for 4-, 8- and 16-lane
// batches), against the scalar std:: formula of the op in the same type. Values and gradients.
//
// Comparison: NaN == NaN; zeros and infinities exactly, sign included; other results to 8 ulp
// (vector transcendental kernels and libm may differ in the last bits on ordinary inputs), except pow:
// its vector kernel is exp(y log x) in working precision, whose relative error grows as |y ln x| ulp
// (libm carries extra bits), so pow gets 8 + 2 (|y ln x| + |(y - 1) ln x|) ulp.
// Special values (0, inf, NaN, the sign of a zero) must match exactly everywhere.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"

using namespace sdeuq;

namespace {

constexpr std::int64_t n_elems = 35;
constexpr std::int64_t body_pos = 5, tail_pos = 33;
constexpr double fill = 0.75;

template <class T>
std::vector<T> specials() {
    using L = std::numeric_limits<T>;
    const T sub = std::is_same_v<T, float> ? T(1e-40f) : T(1e-310);
    return {T(0),      T(-0.0),       L::denorm_min(), -L::denorm_min(), sub,      -sub,    L::min(),
            -L::min(), L::infinity(), -L::infinity(),  L::quiet_NaN(),   T(1),     T(-1),   T(0.5),
            T(-0.5),   T(2),          T(-3),           T(1e-30),         T(-7.25), T(88.5), L::max(),
            -L::max()};
}

template <class T>
bool same(T got, T want, T ulps = T(8)) {
    if (std::isnan(want)) return std::isnan(got);
    if (want == T(0) || std::isinf(want)) return got == want && std::signbit(got) == std::signbit(want);
    if (!std::isfinite(got)) return false;
    const T tol = ulps * std::numeric_limits<T>::epsilon() * std::abs(want);
    return std::abs(got - want) <= std::max(tol, T(8) * std::numeric_limits<T>::denorm_min());
}

template <class T>
DType dtype_of() {
    return std::is_same_v<T, float> ? DType::f32 : DType::f64;
}

// A 35-element tensor of `fill` with v at the body and the tail position.
template <class T>
Tensor placed(T v) {
    Tensor t = Tensor::full(Shape{n_elems}, fill, dtype_of<T>());
    t.data<T>()[body_pos] = v;
    t.data<T>()[tail_pos] = v;
    return t;
}

template <class T>
std::string show(T v) {
    return fmt::format("{}", v);
}

// Unary op: value and gradient (cotangent 1) against ref and dref at every element.
template <class T>
void check_unary(const char* name, const std::function<Var(const Var&)>& op, const std::function<T(T)>& ref,
                 const std::function<T(T)>& dref, const std::function<T(T)>& ulps = {}) {
    for (T v : specials<T>()) {
        Var x = leaf(placed(v));
        Var y = op(x);
        backward(y, Tensor::full(Shape{n_elems}, 1.0, dtype_of<T>()));
        const T* py = y.value().template data<T>();
        Tensor gx = x.grad();
        const T* pg = gx.template data<T>();
        const T* px = x.value().template data<T>();
        for (std::int64_t i = 0; i < n_elems; ++i) {
            INFO(name << " (" << (sizeof(T) == 4 ? "f32" : "f64") << ") at x = " << show(px[i]) << ", index "
                      << i << ": value " << show(py[i]) << " vs std " << show(ref(px[i])) << ", gradient "
                      << show(pg[i]) << " vs " << show(dref(px[i])));
            const T u = ulps ? ulps(px[i]) : T(8);
            CHECK(same(py[i], ref(px[i]), u));
            CHECK(same(pg[i], dref(px[i]), u));
        }
        reset_tape();
    }
}

// Binary op over every pair of specials; gradients via da(a, b), db(a, b) (empty: value only).
template <class T>
void check_binary(const char* name, const std::function<Var(const Var&, const Var&)>& op,
                  const std::function<T(T, T)>& ref, const std::function<T(T, T)>& da,
                  const std::function<T(T, T)>& db, const std::function<T(T, T)>& ulps = {}) {
    for (T va : specials<T>())
        for (T vb : specials<T>()) {
            Var a = leaf(placed(va)), b = leaf(placed(vb));
            Var y = op(a, b);
            backward(y, Tensor::full(Shape{n_elems}, 1.0, dtype_of<T>()));
            Tensor ga = a.grad(), gb = b.grad();
            const T* py = y.value().template data<T>();
            for (std::int64_t i : {std::int64_t(0), body_pos, tail_pos, n_elems - 1}) {
                const T x0 = a.value().template data<T>()[i], x1 = b.value().template data<T>()[i];
                INFO(name << " (" << (sizeof(T) == 4 ? "f32" : "f64") << ") at (" << show(x0) << ", "
                          << show(x1) << "), index " << i << ": value " << show(py[i]) << " vs std "
                          << show(ref(x0, x1)) << "; gradients " << show(ga.template data<T>()[i]) << ", "
                          << show(gb.template data<T>()[i]));
                const T u = ulps ? ulps(x0, x1) : T(8);
                CHECK(same(py[i], ref(x0, x1), u));
                if (da) CHECK(same(ga.template data<T>()[i], da(x0, x1), u));
                if (db) CHECK(same(gb.template data<T>()[i], db(x0, x1), u));
            }
            reset_tape();
        }
}

template <class T>
void check_all_unary() {
    using std::abs, std::cos, std::exp, std::log, std::log1p, std::sin, std::sqrt, std::tanh;
    auto sig = [](T x) { return T(1) / (T(1) + exp(-x)); };
    check_unary<T>(
        "exp", [](const Var& x) { return exp(x); }, [](T x) { return exp(x); }, [](T x) { return exp(x); });
    check_unary<T>(
        "log", [](const Var& x) { return log(x); }, [](T x) { return log(x); }, [](T x) { return T(1) / x; });
    check_unary<T>(
        "log1p", [](const Var& x) { return log1p(x); }, [](T x) { return log1p(x); },
        [](T x) { return T(1) / (T(1) + x); });
    check_unary<T>(
        "sqrt", [](const Var& x) { return sqrt(x); }, [](T x) { return sqrt(x); },
        [](T x) { return T(0.5) / sqrt(x); });
    check_unary<T>(
        "square", [](const Var& x) { return square(x); }, [](T x) { return x * x; },
        [](T x) { return T(2) * x; });
    check_unary<T>(
        "abs", [](const Var& x) { return abs(x); }, [](T x) { return abs(x); },
        [](T x) { return x > T(0)   ? T(1)
                         : x < T(0) ? T(-1)
                                    : T(0); });
    check_unary<T>(
        "neg", [](const Var& x) { return neg(x); }, [](T x) { return -x; }, [](T) { return T(-1); });
    check_unary<T>(
        "tanh", [](const Var& x) { return tanh(x); }, [](T x) { return tanh(x); },
        [](T x) { return T(1) - tanh(x) * tanh(x); });
    check_unary<T>(
        "sigmoid", [](const Var& x) { return sigmoid(x); }, sig,
        [sig](T x) { return sig(x) * (T(1) - sig(x)); });
    check_unary<T>(
        "relu", [](const Var& x) { return relu(x); }, [](T x) { return x > T(0) ? x : T(0); },
        [](T x) { return x > T(0) ? T(1) : T(0); });
    check_unary<T>(
        "softplus", [](const Var& x) { return softplus(x); },
        [](T x) { return (x > T(0) ? x : T(0)) + log1p(exp(-abs(x))); }, sig);
    check_unary<T>(
        "silu", [](const Var& x) { return silu(x); }, [](T x) { return x / (T(1) + exp(-x)); },
        [sig](T x) { return sig(x) * (T(1) + x * (T(1) - sig(x))); });
    check_unary<T>(
        "sin", [](const Var& x) { return sin(x); }, [](T x) { return sin(x); }, [](T x) { return cos(x); });
    check_unary<T>(
        "cos", [](const Var& x) { return cos(x); }, [](T x) { return cos(x); }, [](T x) { return -sin(x); });
    check_unary<T>(
        "clamp", [](const Var& x) { return clamp(x, -1.0, 2.0); },
        [](T x) { return x < T(-1)  ? T(-1)
                         : x > T(2) ? T(2)
                                    : x; },
        [](T x) { return x > T(-1) && x < T(2) ? T(1) : T(0); });
}

template <class T>
T pow_ulps(T x, T y) {
    const T l = std::abs(std::log(std::abs(x)));
    const T u = T(8) + T(2) * (std::abs(y) * l + std::abs(y - T(1)) * l);
    return std::isfinite(u) ? u : T(8);
}

template <class T>
void check_all_binary() {
    using std::log, std::pow;
    check_binary<T>(
        "add", [](const Var& a, const Var& b) { return add(a, b); }, [](T a, T b) { return a + b; },
        [](T, T) { return T(1); }, [](T, T) { return T(1); });
    check_binary<T>(
        "sub", [](const Var& a, const Var& b) { return sub(a, b); }, [](T a, T b) { return a - b; },
        [](T, T) { return T(1); }, [](T, T) { return T(-1); });
    check_binary<T>(
        "mul", [](const Var& a, const Var& b) { return mul(a, b); }, [](T a, T b) { return a * b; },
        [](T, T b) { return b; }, [](T a, T) { return a; });
    check_binary<T>(
        "div", [](const Var& a, const Var& b) { return div(a, b); }, [](T a, T b) { return a / b; },
        [](T, T b) { return T(1) / b; }, [](T a, T b) { return -((T(1) / b) * (a / b)); });
    check_binary<T>(
        "pow", [](const Var& a, const Var& b) { return pow(a, b); }, [](T a, T b) { return pow(a, b); },
        [](T a, T b) { return b * pow(a, b - T(1)); }, [](T a, T b) { return pow(a, b) * log(a); },
        pow_ulps<T>);
    check_binary<T>(
        "maximum", [](const Var& a, const Var& b) { return maximum(a, b); },
        [](T a, T b) { return a >= b ? a : b; }, [](T a, T b) { return a >= b ? T(1) : T(0); },
        [](T a, T b) { return a >= b ? T(0) : T(1); });
    check_binary<T>(
        "minimum", [](const Var& a, const Var& b) { return minimum(a, b); },
        [](T a, T b) { return a <= b ? a : b; }, [](T a, T b) { return a <= b ? T(1) : T(0); },
        [](T a, T b) { return a <= b ? T(0) : T(1); });
    // The scalar forms (one operand broadcast: the map2_scalar path).
    for (T p : specials<T>()) {
        const double pd = static_cast<double>(p);
        INFO("exponent " << show(p));
        check_unary<T>(
            "pow(x, p)", [pd](const Var& x) { return pow(x, pd); }, [p](T x) { return pow(x, p); },
            [p](T x) { return p * pow(x, p - T(1)); }, [p](T x) { return pow_ulps(x, p); });
    }
}

}  // namespace

TEST_CASE("every elementwise op equals the scalar std:: formula on special inputs (f64)", "[ops][special]") {
    check_all_unary<double>();
    check_all_binary<double>();
}

TEST_CASE("every elementwise op equals the scalar std:: formula on special inputs (f32)", "[ops][special]") {
    check_all_unary<float>();
    check_all_binary<float>();
}

TEST_CASE("pow and log: the cases xsimd 8.1's generic kernels got wrong", "[ops][special]") {
    for (DType dt : {DType::f32, DType::f64}) {
        NoGradScope ng;
        Tensor zeros = Tensor::zeros(Shape{n_elems}, dt);
        CHECK(pow(Var(zeros), 0.0).value().flat(tail_pos) == 1.0);
        CHECK(pow(Var(zeros), 0.0).value().flat(body_pos) == 1.0);
        CHECK(std::isinf(pow(Var(zeros), -1.0).value().flat(body_pos)));
        reset_tape();
    }
    {
        Var x = leaf(Tensor::zeros(Shape{n_elems}, DType::f64));
        backward(sum(pow(x, 1.0)));
        CHECK(x.grad().flat(body_pos) == 1.0);
        CHECK(x.grad().flat(tail_pos) == 1.0);
        reset_tape();
    }
    NoGradScope ng;
    Var x(Tensor::full(Shape{n_elems}, 1e-310, DType::f64));
    CHECK(log(x).value().flat(body_pos) == Approx(std::log(1e-310)).epsilon(1e-15));  // -713.8, not -746.5
    CHECK(pow(x, 0.5).value().flat(tail_pos) == Approx(std::sqrt(1e-310)).epsilon(1e-13));
    reset_tape();
}
