// Non-differentiable tensor kernels used by the forward and backward passes of the ops. Results are
// arena tensors.
#pragma once

#include <cstdint>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/tensor.hpp"

namespace sdeuq {

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
Tensor sum_to(const Tensor& t, const Shape& target);
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);

namespace detail {
// Strides of `s` aligned to the trailing dims of `out`, 0 where s broadcasts.
void broadcast_strides(const Shape& s, const Shape& out, std::int64_t* strides);
// axis in [-rank, rank) as an index in [0, rank); otherwise a ShapeError naming op, axis and rank.
int norm_axis(const char* op, int axis, int rank);
}

// y = f(a, b) with broadcasting.
template <class F> Tensor t_binary(const char* op, const Tensor& a, const Tensor& b, F f) {
    check_same_dtype(op, a, b);
    Shape out = broadcast_shapes(op, a.shape(), b.shape());
    Tensor y = Tensor::arena_empty(out, a.dtype());
    dispatch(a.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* pa = a.data<T>();
        const T* pb = b.data<T>();
        T* py = y.data<T>();
        const std::int64_t n = out.numel();
        if (n == 0) return;
        if (a.shape() == out && b.shape() == out) return kernels::map2(pa, pb, py, n, f);
        if (b.numel() == 1 && a.shape() == out) return kernels::map2_scalar_serial(pa, pb[0], py, n, false, f);
        if (a.numel() == 1 && b.shape() == out) return kernels::map2_scalar_serial(pb, pa[0], py, n, true, f);
        const int r = out.rank();
        std::int64_t sa[Shape::max_rank], sb[Shape::max_rank], idx[Shape::max_rank] = {};
        detail::broadcast_strides(a.shape(), out, sa);
        detail::broadcast_strides(b.shape(), out, sb);
        const std::int64_t inner = out[r - 1], ia = sa[r - 1], ib = sb[r - 1];
        std::int64_t oa = 0, ob = 0;
        for (std::int64_t o = 0; o < n; o += inner) {
            if (ia == 1 && ib == 1) kernels::map2_serial(pa + oa, pb + ob, py + o, inner, f);
            else if (ia == 1) kernels::map2_scalar_serial(pa + oa, pb[ob], py + o, inner, false, f);
            else if (ib == 1) kernels::map2_scalar_serial(pb + ob, pa[oa], py + o, inner, true, f);
            else kernels::map2_scalar_serial(pa + oa, pb[ob], py + o, 1, false, f), std::fill(py + o + 1, py + o + inner, py[o]);
            // advance the outer multi-index (dims 0..r-2)
            for (int d = r - 2; d >= 0; --d) {
                oa += sa[d];
                ob += sb[d];
                if (++idx[d] < out[d]) break;
                oa -= sa[d] * out[d];
                ob -= sb[d] * out[d];
                idx[d] = 0;
            }
        }
    });
    return y;
}

template <class F> Tensor t_unary(const Tensor& x, F f) {
    Tensor y = Tensor::arena_empty(x.shape(), x.dtype());
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        kernels::map1(x.data<T>(), y.data<T>(), x.numel(), f);
    });
    return y;
}

// Common tensor arithmetic.
Tensor t_add(const Tensor& a, const Tensor& b);
Tensor t_sub(const Tensor& a, const Tensor& b);
Tensor t_mul(const Tensor& a, const Tensor& b);
Tensor t_div(const Tensor& a, const Tensor& b);
Tensor t_scale(const Tensor& a, double s);
Tensor t_neg(const Tensor& a);
double t_sum_all(const Tensor& a);

}  // namespace sdeuq
