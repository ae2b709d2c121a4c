// Zero-copy views of Tensors as xtensor arrays, and Tensors from xtensor expressions: prepare data and
// analyse results with xtensor's NumPy-like API (xt::mean, views, broadcasting) without copying by hand.
//
//   Tensor t = Tensor::empty({2, 3}, DType::f64);
//   auto a = as_xtensor<double>(t);     // an xarray_adaptor over t's storage: writes to a are writes to t
//   a = xt::ones<double>({2, 3}) * 2;
//   Tensor u = from_xtensor(xt::transpose(a));  // evaluated in row-major order into a new heap Tensor
//
// Tensors are row-major and contiguous, so the view has row-major strides (shape[i+1] * ... ). The view of a
// heap tensor shares its storage (a copy of the Tensor rides along in the adaptor: the storage stays alive
// as long as the view does). An arena tensor (an intermediate of the current tape) lives until
// reset_tape(): as_xtensor on one whose arena was reset throws naming the problem, but a view taken before
// the reset must not be used after it (copy with from_xtensor or Tensor::clone first).
// Hot kernels do not use xtensor; this is for user code and non-hot-path helpers.
#pragma once

#include <memory>
#include <type_traits>
#include <vector>
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xeval.hpp>

#include "autodiff/tensor.hpp"

namespace sdeuq {

// The view of t as xt::xarray_adaptor<T>. T must be t's dtype (float for f32, double for f64): another T
// throws UsageError naming both dtypes; a tensor of a reset arena throws as any use of one does.
template <class T>
auto as_xtensor(const Tensor& t) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "Tensors hold float or double");
    T* p = t.data<T>();  // checks the dtype and that the storage is alive
    std::vector<std::size_t> shape(t.shape().begin(), t.shape().end());
    return xt::adapt_smart_ptr(p, shape, std::make_shared<Tensor>(t));
}

// A new heap Tensor holding the values of an xtensor expression of float or double, evaluated in row-major
// order (a transposed or strided view is copied in its logical order).
template <class E>
Tensor from_xtensor(const xt::xexpression<E>& expr) {
    using T = std::decay_t<typename E::value_type>;
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "from_xtensor: the expression must hold float or double (cast it with xt::cast<double>)");
    const auto& e = expr.derived_cast();
    std::vector<std::int64_t> dims(e.shape().begin(), e.shape().end());
    if (dims.size() > static_cast<std::size_t>(Shape::max_rank))
        throw UsageError("from_xtensor: rank " + std::to_string(dims.size()) + " exceeds Tensor's maximum of " +
                         std::to_string(Shape::max_rank));
    Tensor t = Tensor::empty(Shape(dims), dtype_of<T>());
    T* out = t.data<T>();
    const xt::xarray<T, xt::layout_type::row_major> v = e;  // row-major evaluation of any layout
    std::copy(v.begin(), v.end(), out);
    return t;
}

}  // namespace sdeuq
