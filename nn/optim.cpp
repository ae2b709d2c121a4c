#include <type_traits>
#include "nn/optim.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <fmt/format.h>
#include <numbers>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/parallel.hpp"

namespace sdeuq::nn {

namespace {
// Below this many elements an update runs on the calling thread alone.
constexpr std::int64_t kParallelMin = 8192;
}  // namespace

Optimizer::Optimizer(std::vector<Parameter*> params, double lr) : params_(std::move(params)), lr_(lr) {
    for (auto* p : params_)
        if (!p) throw UsageError("Optimizer: null parameter");
    state_.resize(params_.size());
}

void Optimizer::add_slot(const std::string& slot) {
    slots_.push_back(slot);
    for (std::size_t i = 0; i < params_.size(); ++i)
        state_[i].push_back(Tensor::zeros(params_[i]->value().shape(), params_[i]->value().dtype()));
}

std::vector<std::pair<std::string, Tensor*>> Optimizer::named_state() {
    std::vector<std::pair<std::string, Tensor*>> out;
    for (std::size_t i = 0; i < params_.size(); ++i)
        for (std::size_t s = 0; s < slots_.size(); ++s)
            out.emplace_back(fmt::format("{}.{}", i, slots_[s]), &state_[i][s]);
    return out;
}

void Optimizer::step() {
    ++steps_;
    for (std::size_t i = 0; i < params_.size(); ++i) {
        Parameter& p = *params_[i];
        if (!p.trainable()) continue;
        if (p.grad().shape() != p.value().shape() || p.grad().dtype() != p.value().dtype())
            throw ShapeError(fmt::format("{}: gradient {} of parameter '{}' does not match its value {}",
                                         type_name(), describe(p.grad()), p.name(), describe(p.value())));
        update(i, p, steps_);
    }
}

void Optimizer::zero_grad() {
    for (auto* p : params_) p->zero_grad();
}

// ---------------------------------------------------------------- SGD

SGD::SGD(std::vector<Parameter*> params, SGDOptions opt) : Optimizer(std::move(params), opt.lr), opt_(opt) {
    if (opt.nesterov && (opt.momentum <= 0.0 || opt.dampening != 0.0))
        throw UsageError("SGD: Nesterov momentum requires momentum > 0 and zero dampening");
    if (opt.momentum != 0.0) add_slot("momentum_buffer");
}

void SGD::update(std::size_t i, Parameter& p, std::int64_t t) {
    dispatch(p.value().dtype(), [&](auto z) {
        using T = decltype(z);
        T* w = p.value().data<T>();
        const T* g = p.grad().data<T>();
        T* buf = opt_.momentum != 0.0 ? state(i, 0).data<T>() : nullptr;
        const T wd = T(opt_.weight_decay), mu = T(opt_.momentum), damp = T(1.0 - opt_.dampening), lr = T(lr_);
        const std::int64_t n = p.value().numel();
        for (std::int64_t k = 0; k < n; ++k) {
            T d = g[k];
            if (opt_.weight_decay != 0.0) d = d + wd * w[k];
            if (buf) {
                buf[k] = t == 1 ? d : buf[k] * mu + damp * d;
                d = opt_.nesterov ? d + mu * buf[k] : buf[k];
            }
            w[k] = w[k] + (-lr) * d;
        }
    });
}

// ---------------------------------------------------------------- Adam / AdamW

Adam::Adam(std::vector<Parameter*> params, AdamOptions opt)
    : Optimizer(std::move(params), opt.lr), opt_(opt) {
    if (!(opt.beta1 >= 0.0 && opt.beta1 < 1.0 && opt.beta2 >= 0.0 && opt.beta2 < 1.0 && opt.eps >= 0.0))
        throw UsageError(
            fmt::format("Adam: invalid betas ({}, {}) or eps {}", opt.beta1, opt.beta2, opt.eps));
    add_slot("exp_avg");
    add_slot("exp_avg_sq");
}

void Adam::update(std::size_t i, Parameter& p, std::int64_t t) {
    // Scalars in double, as torch computes them in Python floats.
    const double bc1 = 1.0 - std::pow(opt_.beta1, double(t));
    const double bc2_sqrt = std::sqrt(1.0 - std::pow(opt_.beta2, double(t)));
    const double step_size = lr_ / bc1;
    dispatch(p.value().dtype(), [&](auto z) {
        using T = decltype(z);
        T* __restrict w = p.value().data<T>();
        const T* __restrict g = p.grad().data<T>();
        T* __restrict m = state(i, 0).data<T>();
        T* __restrict v = state(i, 1).data<T>();
        const T b1 = T(opt_.beta1), b2 = T(opt_.beta2), one_b1 = T(1.0 - opt_.beta1),
                one_b2 = T(1.0 - opt_.beta2);
        const T wd = T(opt_.weight_decay), decay = T(1.0 - lr_ * opt_.weight_decay), eps = T(opt_.eps);
        const T c2 = T(bc2_sqrt), neg_step = T(-step_size);
        const bool l2 = opt_.weight_decay != 0.0 && !opt_.decoupled;
        const bool decoupled = opt_.weight_decay != 0.0 && opt_.decoupled;
        const std::int64_t n = p.value().numel();
        // Branch-free bodies, one per weight-decay form, written once for scalars and SIMD batches. GCC
        // does not vectorise std::sqrt under -fmath-errno, so the vector body is explicit; sqrt and division
        // are exactly rounded in SIMD too, so every element gets the scalar loop's result.
        auto body = [&](auto l2_on, auto dec_on) {
            auto one = [&](auto wk, auto gk, auto mk, auto vk) {
                using V = decltype(wk);
                using std::sqrt;
                if constexpr (decltype(dec_on)::value) wk = wk * V(decay);
                if constexpr (decltype(l2_on)::value) gk = gk + V(wd) * wk;
                mk = mk * V(b1) + V(one_b1) * gk;
                vk = vk * V(b2) + V(one_b2) * gk * gk;
                const V denom = sqrt(vk) / V(c2) + V(eps);
                wk = wk + V(neg_step) * mk / denom;
                return std::array<V, 3>{wk, mk, vk};
            };
            auto range = [&](std::int64_t lo, std::int64_t hi) {
                std::int64_t k = lo;
#if SDEUQ_SIMD
                using B = kernels::vec<T>;
                for (; k + kernels::vec_size<T> <= hi; k += kernels::vec_size<T>) {
                    auto r = one(B::load_unaligned(w + k), B::load_unaligned(g + k), B::load_unaligned(m + k),
                                 B::load_unaligned(v + k));
                    r[0].store_unaligned(w + k);
                    r[1].store_unaligned(m + k);
                    r[2].store_unaligned(v + k);
                }
#endif
                for (; k < hi; ++k) {
                    auto r = one(w[k], g[k], m[k], v[k]);
                    w[k] = r[0];
                    m[k] = r[1];
                    v[k] = r[2];
                }
            };
            // Elements are independent: large tensors are split over the kernel threads at multiples of 64
            // elements, which changes no result.
            parallel_for(0, n, 64, kParallelMin, range);
        };
        if (decoupled) body(std::false_type{}, std::true_type{});
        else if (l2) body(std::true_type{}, std::false_type{});
        else body(std::false_type{}, std::false_type{});
    });
}

AdamW::AdamW(std::vector<Parameter*> params, AdamOptions opt)
    : Adam(std::move(params), [&] {
          opt.decoupled = true;
          return opt;
      }()) {}

// ---------------------------------------------------------------- schedules

MultiStepLR::MultiStepLR(double base, std::vector<std::int64_t> milestones, double gamma)
    : base_(base), gamma_(gamma), milestones_(std::move(milestones)) {
    std::sort(milestones_.begin(), milestones_.end());
}

double MultiStepLR::operator()(std::int64_t step) const {
    const auto k = std::upper_bound(milestones_.begin(), milestones_.end(), step) - milestones_.begin();
    return base_ * std::pow(gamma_, double(k));
}

WarmupCosineLR::WarmupCosineLR(double base, std::int64_t warmup, std::int64_t total, double min_lr,
                               double warmup_start_factor)
    : base_(base), warmup_(warmup), total_(total), min_lr_(min_lr), start_(warmup_start_factor) {
    if (warmup < 0 || total < warmup)
        throw UsageError(fmt::format("WarmupCosineLR: need 0 <= warmup ({}) <= total ({})", warmup, total));
}

double WarmupCosineLR::operator()(std::int64_t step) const {
    if (step < warmup_) return base_ * (start_ + (1.0 - start_) * double(step) / double(warmup_));
    if (step >= total_) return min_lr_;
    const double progress = double(step - warmup_) / double(total_ - warmup_);
    return min_lr_ + 0.5 * (base_ - min_lr_) * (1.0 + std::cos(std::numbers::pi * progress));
}

double ExponentialLR::operator()(std::int64_t step) const {
    return base_ * std::pow(gamma_, double(step));
}

// ---------------------------------------------------------------- clipping

double grad_norm(std::span<Parameter* const> params) {
    double s = 0.0;
    for (auto* p : params) {
        if (!p->trainable()) continue;
        dispatch(p->grad().dtype(), [&](auto z) {
            using T = decltype(z);
            const T* g = p->grad().template data<T>();
            for (std::int64_t k = 0; k < p->grad().numel(); ++k) s += double(g[k]) * double(g[k]);
        });
    }
    return std::sqrt(s);
}

double clip_grad_norm(std::span<Parameter* const> params, double max_norm) {
    const double norm = grad_norm(params);
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
        for (auto* p : params) {
            if (!p->trainable()) continue;
            dispatch(p->grad().dtype(), [&](auto z) {
                using T = decltype(z);
                T* g = p->grad().template data<T>();
                for (std::int64_t k = 0; k < p->grad().numel(); ++k) g[k] = g[k] * T(coef);
            });
        }
    return norm;
}

}  // namespace sdeuq::nn
