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

}  // namespace sdeuq
