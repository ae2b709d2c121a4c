// Fused ops (see autodiff/ops_fused.hpp): forward and backward side by side.
#include "autodiff/ops_fused.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <string>

#include "autodiff/ops.hpp"
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

Var lincomb(std::span<const Var> xs, std::span<const double> coeffs) {
    constexpr std::size_t kMax = 8;
    if (xs.empty() || xs.size() > kMax || coeffs.size() != xs.size())
        throw ShapeError(fmt::format("lincomb: need 1 to {} inputs and as many coefficients, got {} and {}",
                                     kMax, xs.size(), coeffs.size()));
    if (!xs[0].value().defined()) throw ShapeError("lincomb: input 0 is undefined");
    for (std::size_t k = 1; k < xs.size(); ++k) {
        const std::string name = fmt::format("input {}", k);
        check_same("lincomb", name.c_str(), xs[0], xs[k]);
    }
    Tensor out = Tensor::arena_empty(xs[0].shape(), xs[0].dtype());
    dispatch(out.dtype(), [&](auto z) {
        using T = decltype(z);
        const std::int64_t n = out.numel();
        T* po = out.data<T>();
        // Term by term over blocks of the output small enough to stay in L1 between the terms.
        constexpr std::int64_t block = 1024;
        for (std::int64_t lo = 0; lo < n; lo += block) {
            const std::int64_t hi = std::min(n, lo + block);
            const T c0 = static_cast<T>(coeffs[0]);
            const T* p0 = xs[0].value().data<T>();
            for (std::int64_t i = lo; i < hi; ++i) po[i] = c0 * p0[i];
            for (std::size_t k = 1; k < xs.size(); ++k) {
                const T c = static_cast<T>(coeffs[k]);
                const T* p = xs[k].value().data<T>();
                for (std::int64_t i = lo; i < hi; ++i) po[i] = po[i] + c * p[i];
            }
        }
    });
    if (!grad_enabled() || !detail::any_on_tape(xs, current_tape())) {
        check_anomaly("lincomb", out);
        return Var(out);
    }
    struct Closure {
        std::size_t n;
        Node* nodes[kMax];
        double c[kMax];
    };
    auto* cl = current_tape().arena().make_untracked<Closure>();
    cl->n = xs.size();
    for (std::size_t k = 0; k < xs.size(); ++k) {
        cl->nodes[k] = node_of(xs[k]);
        cl->c[k] = coeffs[k];
    }
    BackwardFn fn = [](void* c, const Tensor& g) {
        const auto* cl = static_cast<const Closure*>(c);
        for (std::size_t k = 0; k < cl->n; ++k) accumulate_scaled(cl->nodes[k], g, cl->c[k]);
    };
    HigherFn hf = [](void* c, HigherCtx& hc) {
        const auto* cl = static_cast<const Closure*>(c);
        for (std::size_t k = 0; k < cl->n; ++k)
            if (hc.needs(static_cast<int>(k))) hc.dx[k] = cl->c[k] == 1.0 ? hc.gout : mul(hc.gout, cl->c[k]);
    };
    return record_n("lincomb", out, xs, fn, cl, hf);
}

namespace {
// sum x[i] c[i] in double, in 8 interleaved partial sums (they vectorise; a serial sum does not).
template <class T>
double dot8(const T* __restrict x, const T* __restrict c, std::int64_t n) {
    double p[8] = {};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) p[k] += static_cast<double>(x[i + k]) * static_cast<double>(c[i + k]);
    for (int k = 0; i < n; ++i, ++k) p[k] += static_cast<double>(x[i]) * static_cast<double>(c[i]);
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}
}  // namespace

Var sum_products2(const Var& a, const Tensor& ca, const Var& b, const Tensor& cb) {
    if (!a.value().defined() || !b.value().defined()) throw ShapeError("sum_products2: undefined input");
    check_same("sum_products2", "ca", a, Var(ca));
    if (b.dtype() != a.dtype())
        throw ShapeError(fmt::format("sum_products2: a is {}, b is {} (one dtype needed)", describe(a.value()),
                                     describe(b.value())));
    check_same("sum_products2", "cb (against b)", b, Var(cb));
    Tensor out = Tensor::arena_empty(Shape{}, a.dtype());
    dispatch(a.dtype(), [&](auto z) {
        using T = decltype(z);
        const double s = dot8(a.value().data<T>(), ca.data<T>(), a.numel()) +
                         dot8(b.value().data<T>(), cb.data<T>(), b.numel());
        out.data<T>()[0] = static_cast<T>(s);
    });
    return record("sum_products2", out, {a, b}, [na = node_of(a), nb = node_of(b), ca, cb](const Tensor& g) {
        const double G = g.item();
        accumulate_scaled(na, ca, G);  // G == 1: ca itself (copied into the arena if on the heap)
        accumulate_scaled(nb, cb, G);
    }, [ca, cb](HigherCtx& c) {
        if (c.needs(0)) c.dx[0] = mul(Var(ca), c.gout);
        if (c.needs(1)) c.dx[1] = mul(Var(cb), c.gout);
    });
}

}  // namespace sdeuq
