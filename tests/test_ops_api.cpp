// The API a PyTorch user reaches for (braced lists) and exact special values of the softmax family.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "autodiff/ops.hpp"

using namespace sdeuq;

namespace {
constexpr double inf = std::numeric_limits<double>::infinity();

Tensor row(std::vector<double> v, DType dt) {
    return Tensor::from_vector(v, Shape{1, static_cast<std::int64_t>(v.size())}, dt);
}
}  // namespace

TEST_CASE("concat and stack take braced lists", "[api]") {
    Var a(Tensor::from_vector({1, 2}, Shape{1, 2}, DType::f64)), b(Tensor::from_vector({3, 4}, Shape{1, 2}, DType::f64));
    CHECK(concat({a, b}, 1).value().to_vector() == std::vector<double>{1, 2, 3, 4});
    CHECK(concat({a, b}, 0).shape() == Shape{2, 2});
    CHECK(stack({a, b}, 0).shape() == Shape{2, 1, 2});
}

TEST_CASE("logsumexp, softmax and log_softmax take their limits on infinite rows", "[api][special]") {
    for (DType dt : {DType::f32, DType::f64}) {
        INFO(dtype_name(dt));
        // One +inf: lse +inf, softmax one-hot, log_softmax 0 and -inf.
        Var x(row({1.0, inf, -2.0}, dt));
        CHECK(logsumexp(x, 1).value().flat(0) == inf);
        CHECK(softmax(x, 1).value().to_vector() == std::vector<double>{0.0, 1.0, 0.0});
        CHECK(log_softmax(x, 1).value().to_vector() == std::vector<double>{-inf, 0.0, -inf});
        // Two +inf: the limit splits evenly.
        Var x2(row({inf, 0.0, inf}, dt));
        CHECK(softmax(x2, 1).value().to_vector() == std::vector<double>{0.5, 0.0, 0.5});
        CHECK(log_softmax(x2, 1).value().flat(0) == Approx(-std::log(2.0)));
        // All -inf: lse -inf, softmax undefined (NaN, as PyTorch).
        Var x3(row({-inf, -inf}, dt));
        CHECK(logsumexp(x3, 1).value().flat(0) == -inf);
        CHECK(std::isnan(softmax(x3, 1).value().flat(0)));
        // Some -inf: they get probability 0 and the rest is exact.
        Var x4(row({-inf, 0.0, 0.0}, dt));
        CHECK(logsumexp(x4, 1).value().flat(0) == Approx(std::log(2.0)).epsilon(1e-7));
        CHECK(softmax(x4, 1).value().to_vector() == std::vector<double>{0.0, 0.5, 0.5});
        // NaN anywhere: NaN.
        Var x5(row({1.0, std::nan(""), inf}, dt));
        CHECK(std::isnan(logsumexp(x5, 1).value().flat(0)));
        CHECK(std::isnan(softmax(x5, 1).value().flat(2)));
    }
}

TEST_CASE("logsumexp and softmax are within an ulp or two of long-double references", "[api][special]") {
    const std::vector<double> v = {-3.25, 1e-3, 7.5, 7.5 - 1e-9, -40.0, 2.0};
    long double s = 0.0L, m = 7.5L;
    for (double e : v) s += std::exp(static_cast<long double>(e) - m);
    const long double lse = m + std::log(s);
    Var x(row(v, DType::f64));
    const double got = logsumexp(x, 1).value().flat(0);
    const double want = static_cast<double>(lse), ulp = std::nextafter(want, inf) - want;
    CHECK(std::abs(got - want) <= 2 * ulp);
    Tensor sm = softmax(x, 1).value();
    for (std::size_t j = 0; j < v.size(); ++j) {
        const double want = static_cast<double>(std::exp(static_cast<long double>(v[j]) - lse));
        INFO("element " << j);
        CHECK(std::abs(sm.flat(static_cast<std::int64_t>(j)) - want) <= 4 * std::abs(want) * 1.1102230246251565e-16);
    }
    // A tiny tail keeps its digits: lse(0, -40) = log1p(exp(-40)).
    Var t(row({0.0, -40.0}, DType::f64));
    CHECK(logsumexp(t, 1).value().flat(0) == std::log1p(std::exp(-40.0)));
}

