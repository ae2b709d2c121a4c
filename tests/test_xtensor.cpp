// as_xtensor / from_xtensor (autodiff/xtensor.hpp): aliasing, strides, dtype, lifetime.
#include <catch2/catch.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xview.hpp>

#include "autodiff/ops.hpp"
#include "autodiff/xtensor.hpp"

using namespace sdeuq;

TEST_CASE("as_xtensor is a view: writes either way are seen by the other", "[xtensor]") {
    Tensor t = Tensor::from_vector({1, 2, 3, 4, 5, 6}, Shape{2, 3}, DType::f64);
    auto a = as_xtensor<double>(t);
    REQUIRE(a.shape() == std::vector<std::size_t>{2, 3});
    CHECK(a.strides()[0] == 3);
    CHECK(a.strides()[1] == 1);
    CHECK(a(1, 0) == 4.0);
    CHECK(a.data() == t.data<double>());
    a(0, 2) = 30.0;
    CHECK(t.at({0, 2}) == 30.0);
    t.set_flat(4, -5.0);
    CHECK(a(1, 1) == -5.0);
    CHECK(xt::sum(a)() == 1 + 2 + 30 + 4 - 5 + 6);
}

TEST_CASE("as_xtensor checks the dtype and the arena generation", "[xtensor]") {
    Tensor f = Tensor::from_vector({1, 2}, Shape{2}, DType::f32);
    CHECK_NOTHROW(as_xtensor<float>(f));
    CHECK_THROWS_WITH(as_xtensor<double>(f), Catch::Contains("f32") && Catch::Contains("f64"));
    Tensor arena = Tensor::arena_zeros(Shape{3}, DType::f64);
    CHECK_NOTHROW(as_xtensor<double>(arena));
    reset_tape();
    CHECK_THROWS(as_xtensor<double>(arena));
}

TEST_CASE("the view of a heap tensor keeps its storage alive", "[xtensor]") {
    auto make = [] {
        Tensor t = Tensor::from_vector({7, 8, 9}, Shape{3}, DType::f64);
        return as_xtensor<double>(t);  // t itself goes out of scope here
    };
    auto a = make();
    CHECK(a(2) == 9.0);
    a(0) = 1.0;
    CHECK(a(0) == 1.0);
}

TEST_CASE("from_xtensor copies an expression in row-major order, whatever its strides", "[xtensor]") {
    xt::xarray<double> x = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
    Tensor t = from_xtensor(xt::transpose(x));  // a strided view: [[1, 4], [2, 5], [3, 6]]
    REQUIRE(t.shape()[0] == 3);
    REQUIRE(t.shape()[1] == 2);
    CHECK(t.to_vector() == std::vector<double>{1, 4, 2, 5, 3, 6});
    CHECK(t.on_heap());
    x(0, 0) = 100.0;  // a copy: the Tensor does not alias the expression
    CHECK(t.at({0, 0}) == 1.0);
    Tensor s = from_xtensor(xt::view(x, xt::all(), xt::range(0, 3, 2)) * 2.0);  // a lazy expression
    CHECK(s.to_vector() == std::vector<double>{200, 6, 8, 12});
    xt::xarray<float> g = {1.5f, 2.5f};
    CHECK(from_xtensor(g).dtype() == DType::f32);
}
