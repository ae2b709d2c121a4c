// Fused ops (see autodiff/ops_fused.hpp): forward and backward side by side.
#include "autodiff/ops_fused.hpp"

#include <fmt/format.h>

#include "autodiff/tensor_ops.hpp"

namespace sdeuq {

namespace {

void check_same(const char* op, const char* name, const Var& ref, const Var& x) {
    if (!x.value().defined() || x.shape() != ref.shape() || x.dtype() != ref.dtype())
        throw ShapeError(fmt::format("{}: {} is {}, but y is {} (same shape and dtype needed, no "
                                     "broadcasting)",
                                     op, name, x.value().defined() ? describe(x.value()) : "undefined",
                                     describe(ref.value())));
}

// c * g as a fresh arena tensor, or g itself (shared) for c == 1.
void accumulate_scaled(Node* n, const Tensor& g, double c) {
    if (!n) return;
    if (c == 1.0)
        accumulate(n, g);
    else
        accumulate_fresh(n, t_scale(g, c));
}

}  // namespace

Var axpy2(const Var& y, double a, const Var& x1, double b, const Var& x2) {
    if (!y.value().defined()) throw ShapeError("axpy2: y is undefined");
    check_same("axpy2", "x1", y, x1);
    check_same("axpy2", "x2", y, x2);
    Tensor out = Tensor::arena_empty(y.shape(), y.dtype());
    dispatch(y.dtype(), [&](auto z) {
        using T = decltype(z);
        const T ca = static_cast<T>(a), cb = static_cast<T>(b);
        const T* py = y.value().data<T>();
        const T* p1 = x1.value().data<T>();
        const T* p2 = x2.value().data<T>();
        T* po = out.data<T>();
        const std::int64_t n = out.numel();
        for (std::int64_t i = 0; i < n; ++i) {
            const T s = py[i] + p1[i] * ca;  // rounded here, as the separate ops round
            po[i] = s + p2[i] * cb;
        }
    });
    return record("axpy2", out, {y, x1, x2},
                  [ny = node_of(y), n1 = node_of(x1), n2 = node_of(x2), a, b](const Tensor& g) {
                      if (ny) accumulate(ny, g);
                      accumulate_scaled(n1, g, a);
                      accumulate_scaled(n2, g, b);
                  });
}

}  // namespace sdeuq
