#include "autodiff/gradcheck.hpp"

#include <cmath>
#include <fmt/format.h>

#include "autodiff/ops.hpp"
#include "autodiff/random.hpp"

namespace sdeuq {

GradcheckResult check_gradients(const std::string& name, const std::function<Var(std::span<const Var>)>& f,
                                const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
    for (auto& t : inputs)
        if (t.dtype() != DType::f64) throw UsageError(fmt::format("check_gradients({}): inputs must be float64", name));
    for (auto* p : opt.params)
        if (p->value().dtype() != DType::f64) throw UsageError(fmt::format("check_gradients({}): parameters must be float64", name));
    GradcheckResult res;
    NestedTape scope;  // everything below is freed on return
    std::vector<Tensor> xs;
    for (auto& t : inputs) xs.push_back(t.clone());
    Tensor w;
    auto loss_value = [&]() {
        NoGradScope ng;
        std::vector<Var> in(xs.begin(), xs.end());
        Var out = f(in);
        double s = 0.0;
        for (std::int64_t i = 0; i < out.numel(); ++i) s += out.value().flat(i) * w.flat(i);
        return s;
    };
    // Analytic.
    std::vector<Tensor> analytic;
    std::vector<Tensor> param_analytic;
    {
        NestedTape t;
        std::vector<Var> in;
        for (auto& x : xs) in.push_back(leaf(x));
        std::vector<Var> pv;
        for (auto* p : opt.params) pv.push_back(p->var());
        Var out = f(in);
        Generator gen(opt.seed, 99);
        w = randn(out.shape(), gen, DType::f64);
        Var l = sum(mul(out, Var(w)));
        if (node_of(l)) backward(l);
        for (auto& v : in) analytic.push_back(v.grad().clone());
        for (auto& v : pv) param_analytic.push_back(v.grad().clone());
    }
    auto compare = [&](const std::string& what, Tensor& x, const Tensor& a) {
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            const double x0 = x.flat(i);
            x.set_flat(i, x0 + opt.eps);
            const double lp = loss_value();
            x.set_flat(i, x0 - opt.eps);
            const double lm = loss_value();
            x.set_flat(i, x0);
            const double num = (lp - lm) / (2 * opt.eps);
            const double an = a.flat(i);
            const double err = std::abs(an - num);
            const double scale = std::max(std::abs(an), std::abs(num));
            res.max_abs_err = std::max(res.max_abs_err, err);
            if (scale > 0) res.max_rel_err = std::max(res.max_rel_err, err / scale);
            if (!(err <= opt.atol + opt.rtol * scale) && res.ok) {
                res.ok = false;
                res.message = fmt::format("{}: gradient of {} {} at flat index {}: analytic {:.12g}, numeric {:.12g} "
                                          "(abs err {:.3g}, rel err {:.3g})",
                                          name, what, describe(x), i, an, num, err, scale > 0 ? err / scale : 0.0);
            }
        }
    };
    for (std::size_t k = 0; k < xs.size(); ++k) compare(fmt::format("input {}", k), xs[k], analytic[k]);
    for (std::size_t k = 0; k < opt.params.size(); ++k)
        compare(fmt::format("parameter '{}'", opt.params[k]->name()), opt.params[k]->value(), param_analytic[k]);
    return res;
}

GradcheckResult check_second_gradients(const std::string& name,
                                       const std::function<Var(std::span<const Var>)>& f,
                                       const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
    for (auto& t : inputs)
        if (t.dtype() != DType::f64)
            throw UsageError(fmt::format("check_second_gradients({}): inputs must be float64", name));
    for (auto* p : opt.params)
        if (p->value().dtype() != DType::f64)
            throw UsageError(fmt::format("check_second_gradients({}): parameters must be float64", name));
    GradcheckResult res;
    NestedTape scope;
    std::vector<Tensor> xs;
    for (auto& t : inputs) xs.push_back(t.clone());
    Tensor w;
    std::vector<Tensor> u;  // one per input, then one per parameter
    // The first gradients of L at the current xs and parameter values (Vars on the current tape).
    auto first = [&](bool create_graph, std::vector<Var>& all) {
        for (auto& x : xs) all.push_back(leaf(x));
        for (auto* p : opt.params) all.push_back(p->var());
        Var out = f(std::span<const Var>(all.data(), xs.size()));
        if (!w.defined()) {
            Generator gen(opt.seed, 99);
            w = randn(out.shape(), gen, DType::f64);
            Generator gu(opt.seed, 101);
            for (auto& v : all) u.push_back(randn(v.shape(), gu, DType::f64));
        }
        Var l = sum(mul(out, Var(w)));
        if (!node_of(l)) return std::vector<Var>();
        return grad(l, all, GradOptions{create_graph});
    };
    auto l2_value = [&]() {
        NestedTape t;
        std::vector<Var> all;
        std::vector<Var> g = first(false, all);
        double s = 0.0;
        for (std::size_t k = 0; k < g.size(); ++k)
            for (std::int64_t i = 0; i < g[k].numel(); ++i) s += g[k].value().flat(i) * u[k].flat(i);
        return s;
    };
    std::vector<Tensor> analytic;
    {
        NestedTape t;
        std::vector<Var> all;
        std::vector<Var> g = first(true, all);
        Var l2;
        for (std::size_t k = 0; k < g.size(); ++k) {
            Var term = sum(mul(g[k], Var(u[k])));
            l2 = k == 0 ? term : add(l2, term);
        }
        std::vector<Var> h;
        if (l2.value().defined() && node_of(l2)) h = grad(l2, all);
        for (std::size_t k = 0; k < all.size(); ++k)
            analytic.push_back(k < h.size() ? h[k].value().clone() : Tensor::zeros(all[k].shape(), DType::f64));
    }
    auto compare = [&](const std::string& what, Tensor& x, const Tensor& a) {
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            const double x0 = x.flat(i);
            x.set_flat(i, x0 + opt.eps);
            const double lp = l2_value();
            x.set_flat(i, x0 - opt.eps);
            const double lm = l2_value();
            x.set_flat(i, x0);
            const double num = (lp - lm) / (2 * opt.eps);
            const double an = a.flat(i);
            const double err = std::abs(an - num);
            const double scale = std::max(std::abs(an), std::abs(num));
            res.max_abs_err = std::max(res.max_abs_err, err);
            if (scale > 0) res.max_rel_err = std::max(res.max_rel_err, err / scale);
            if (!(err <= opt.atol + opt.rtol * scale) && res.ok) {
                res.ok = false;
                res.message = fmt::format("{}: second derivative (Hessian-vector product) for {} {} at flat index "
                                          "{}: analytic {:.12g}, numeric {:.12g} (abs err {:.3g}, rel err {:.3g})",
                                          name, what, describe(x), i, an, num, err, scale > 0 ? err / scale : 0.0);
            }
        }
    };
    for (std::size_t k = 0; k < xs.size(); ++k) compare(fmt::format("input {}", k), xs[k], analytic[k]);
    for (std::size_t k = 0; k < opt.params.size(); ++k)
        compare(fmt::format("parameter '{}'", opt.params[k]->name()), opt.params[k]->value(),
                analytic[xs.size() + k]);
    return res;
}

}  // namespace sdeuq
