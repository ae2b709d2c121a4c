// The adjoint SDE (sde/adjoint_sde.hpp): each coefficient evaluation is one VJP on a NestedTape, whose
// results are copied into one flat tensor of the caller's arena before the scope frees its own.
#include "sde/adjoint_sde.hpp"

#include <fmt/format.h>

#include <cstring>

#include "autodiff/ops_fused.hpp"
#include "sde/estimators/estimators.hpp"  // detail::check_listed_parameters

namespace sdeuq::sde {

namespace {

// dst[i] = sign * src[i] (n elements of dtype).
void copy_signed(void* dst, const Tensor& src, double sign) {
    dispatch(src.dtype(), [&](auto z) {
        using T = decltype(z);
        T* __restrict d = static_cast<T*>(dst);
        const T* __restrict s = src.data<T>();
        const std::int64_t n = src.numel();
        if (sign == 1.0) {
            std::memcpy(d, s, static_cast<std::size_t>(n) * sizeof(T));
        } else {
            for (std::int64_t i = 0; i < n; ++i) d[i] = -s[i];
        }
    });
}

// The gradient a leaf received in the nested sweep, undefined if none reached it.
Tensor received(const Var& v) {
    Node* n = v.node();
    return n && n->grad.defined() ? n->grad : Tensor();
}

}  // namespace

AdjointSDE::AdjointSDE(SDE& sde, std::vector<Parameter*> params, std::int64_t batch, std::int64_t d,
                       DType dtype)
    : sde_(&sde), params_(std::move(params)), batch_(batch), d_(d), m_(sde.brownian_dim(d)), dtype_(dtype) {
    std::int64_t off = 2 * batch_ * d_;
    for (Parameter* p : params_) {
        if (p->value().dtype() != dtype_)
            throw UsageError(
                fmt::format("AdjointSDE: parameter '{}' {} differs in dtype from the state ({}); "
                            "the adjoint's flat state holds one dtype",
                            p->name(), describe(p->value()), dtype_name(dtype_)));
        offsets_.push_back(off);
        off += p->value().numel();
    }
    size_ = off;
}

Tensor AdjointSDE::part(const Tensor& x, std::int64_t offset, const Shape& shape) const {
    if (x.numel() != size_ || x.dtype() != dtype_)
        throw ShapeError(fmt::format("AdjointSDE: state {} is not the flat [1, {}] {} state", describe(x),
                                     size_, dtype_name(dtype_)));
    auto* base = static_cast<std::byte*>(x.raw()) + static_cast<std::size_t>(offset) * dtype_size(dtype_);
    return Tensor::view(base, shape, dtype_);
}

Tensor AdjointSDE::y_part(const Tensor& x) const {
    return part(x, 0, Shape{batch_, d_});
}
Tensor AdjointSDE::a_part(const Tensor& x) const {
    return part(x, batch_ * d_, Shape{batch_, d_});
}
std::vector<Tensor> AdjointSDE::a_theta_parts(const Tensor& x) const {
    std::vector<Tensor> out;
    out.reserve(params_.size());
    for (std::size_t k = 0; k < params_.size(); ++k)
        out.push_back(part(x, offsets_[k], params_[k]->value().shape()));
    return out;
}

Var AdjointSDE::evaluate(double t, const Var& x, double c_f, const Var* dw) {
    const Tensor xv = x.value();
    Tensor out = Tensor::arena_empty(Shape{1, size_}, dtype_);  // the caller's arena: outlives the scope
    {
        NestedTape scope;
        Var yl = leaf(y_part(xv));
        std::vector<Var> pv;
        pv.reserve(params_.size());
        for (Parameter* p : params_) pv.push_back(p->var());  // leaves of the nested tape
        Var phi;
        if (!dw) {
            phi = sde_->f(t, yl);
        } else {
            const Var dwf(Tensor::view(dw->value().raw(), Shape{batch_, m_}, dtype_));
            Var gw = sde_->g_prod(t, yl, dwf);
            if (c_f != 0.0) {
                Var fv = sde_->f(t, yl);
                // f dt + g.dW as one node (lincomb: the bits of the plain ops) when the shapes agree; the
                // plain ops otherwise (and the check below names the mismatch).
                if (fv.shape() == gw.shape() && fv.dtype() == gw.dtype()) {
                    const Var terms[2] = {fv, gw};
                    const double coeffs[2] = {c_f, 1.0};
                    phi = lincomb(terms, coeffs);
                } else {
                    phi = fv * c_f + gw;
                }
            } else {
                phi = gw;
            }
        }
        if (phi.shape() != Shape{batch_, d_} || phi.dtype() != dtype_)
            throw ShapeError(fmt::format("adjoint estimator: {} is {}, the state [{}, {}] {}",
                                         !dw          ? "f"
                                         : c_f != 0.0 ? "f dt + g dW"
                                                      : "g dW",
                                         describe(phi.value()), batch_, d_, dtype_name(dtype_)));
        detail::check_listed_parameters("adjoint estimator", params_);
        auto* base = static_cast<std::byte*>(out.raw());
        const std::size_t es = dtype_size(dtype_);
        copy_signed(base, phi.value(), 1.0);
        const bool reaches = node_of(phi) != nullptr;
        if (reaches) {
            // The sweep with cotangent -a gives -a^T dphi/d(y, theta) directly, bit for bit the negated
            // a^T dphi/d(y, theta) (negation commutes exactly with the products and sums of a VJP), and
            // negates the [batch, d] cotangent instead of the [batch, d] + parameters results.
            Tensor neg_a = Tensor::arena_empty(Shape{batch_, d_}, dtype_);
            copy_signed(neg_a.raw(), a_part(xv), -1.0);
            backward(phi, neg_a);
        }
        // -a^T dphi/dy, then -a^T dphi/dtheta_k (zero where nothing flowed in).
        auto put = [&](const Var& v, std::int64_t offset, std::int64_t n) {
            void* dst = base + static_cast<std::size_t>(offset) * es;
            Tensor gv = reaches ? received(v) : Tensor();
            if (gv.defined())
                copy_signed(dst, gv, 1.0);
            else
                std::memset(dst, 0, static_cast<std::size_t>(n) * es);
        };
        put(yl, batch_ * d_, batch_ * d_);
        for (std::size_t k = 0; k < pv.size(); ++k) put(pv[k], offsets_[k], params_[k]->value().numel());
    }
    return Var(out);
}

Var AdjointSDE::f(double t, const Var& x) {
    return evaluate(t, x, 1.0, nullptr);
}

Var AdjointSDE::g(double, const Var&) {
    throw UsageError(
        "AdjointSDE: the diffusion matrix of the adjoint state is never formed; only solvers that use "
        "g_prod (euler, heun, midpoint, reversible_heun, milstein) can solve the adjoint SDE");
}

Var AdjointSDE::g_prod(double t, const Var& x, const Var& dw) {
    return evaluate(t, x, 0.0, &dw);
}

Var AdjointSDE::increment(double t, double dt, const Var& x, const Var& dw) {
    return evaluate(t, x, dt, &dw);
}

}  // namespace sdeuq::sde
