#include "nn/attacks.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "autodiff/ops.hpp"
#include "autodiff/random.hpp"

namespace sdeuq::nn {

namespace {

void check_inputs(const char* what, const Classifier& c, const Tensor& x, std::span<const std::int32_t> labels) {
    if (!c.forward) throw UsageError(fmt::format("{}({}): the classifier has no forward function", what, c.name));
    if (c.passes < 1)
        throw UsageError(fmt::format("{}({}): passes must be >= 1 (got {})", what, c.name, c.passes));
    if (x.rank() < 1 || x.dim(0) != static_cast<std::int64_t>(labels.size()))
        throw ShapeError(fmt::format("{}({}): input {} does not match {} labels (expected [N, ...] with N = "
                                     "number of labels)",
                                     what, c.name, describe(x), labels.size()));
}

void check_box(const char* what, double epsilon, const Box& box) {
    if (!(epsilon >= 0.0) || !std::isfinite(epsilon))
        throw UsageError(fmt::format("{}: epsilon must be finite and >= 0 (got {})", what, epsilon));
    if (!(box.lo < box.hi)) throw UsageError(fmt::format("{}: box lo {} must be < hi {}", what, box.lo, box.hi));
}

double sign(double g) { return g > 0 ? 1.0 : (g < 0 ? -1.0 : 0.0); }

}  // namespace

Var attack_loss(const Classifier& c, const Var& x, std::span<const std::int32_t> labels) {
    Var out = c.forward(x);
    if (out.rank() != 2 || out.dim(0) != static_cast<std::int64_t>(labels.size()))
        throw ShapeError(fmt::format("attack_loss({}): the classifier returned {} for {} labels (expected [N, C])",
                                     c.name, describe(out.value()), labels.size()));
    if (c.output == ClassifierOutput::logits) return cross_entropy(out, labels);
    Var py = gather(out, labels);
    return mean(neg(log(maximum(py, Var(Tensor::scalar(1e-12, py.dtype()))))));
}

InputGradient input_gradient(const Classifier& c, const Tensor& x, std::span<const std::int32_t> labels) {
    check_inputs("input_gradient", c, x, labels);
    InputGradient r;
    Tensor acc = Tensor::zeros(x.shape(), DType::f64);
    double* a = acc.data<double>();
    for (int k = 0; k < c.passes; ++k) {
        NestedTape scope;  // one pass's graph, freed at the end of the iteration
        Var xv = leaf(x);
        Var loss = attack_loss(c, xv, labels);
        r.loss += loss.item() / c.passes;
        backward(loss);
        const Tensor g = xv.grad();
        for (std::int64_t i = 0; i < acc.numel(); ++i) a[i] += g.flat(i) / c.passes;
    }
    r.grad = acc.to(x.dtype());
    return r;
}

Tensor fgsm(const Classifier& c, const Tensor& x, std::span<const std::int32_t> labels, double epsilon, Box box) {
    check_inputs("fgsm", c, x, labels);
    check_box("fgsm", epsilon, box);
    Tensor out = x.clone();
    if (epsilon == 0.0) return out;  // the identity, without spending passes (and without clipping x)
    const Tensor g = input_gradient(c, x, labels).grad;
    for (std::int64_t i = 0; i < out.numel(); ++i)
        out.set_flat(i, std::clamp(x.flat(i) + epsilon * sign(g.flat(i)), box.lo, box.hi));
    return out;
}

PgdResult pgd(const Classifier& c, const Tensor& x, std::span<const std::int32_t> labels, const PgdOptions& opt) {
    check_inputs("pgd", c, x, labels);
    check_box("pgd", opt.epsilon, opt.box);
    if (opt.steps < 1) throw UsageError(fmt::format("pgd: steps must be >= 1 (got {})", opt.steps));
    if (!(opt.step_size >= 0.0))
        throw UsageError(fmt::format("pgd: step_size must be >= 0 (got {}; 0 = 2.5 epsilon / steps)", opt.step_size));
    const double eps = opt.epsilon;
    const double alpha = opt.step_size > 0.0 ? opt.step_size : 2.5 * eps / opt.steps;
    const std::int64_t n = x.numel();
    // Projection onto the intersection of the ball and the box, computed in double, rounded once.
    auto project = [&](std::int64_t i, double v) {
        const double x0 = x.flat(i);
        return std::clamp(std::clamp(v, x0 - eps, x0 + eps), opt.box.lo, opt.box.hi);
    };
    PgdResult r;
    r.x_adv = x.clone();
    if (opt.random_start && eps > 0.0) {
        Generator gen(opt.seed, 0x5067'6400);  // "PGD" start stream
        const Tensor u = rand_uniform(x.shape(), gen, DType::f64, -eps, eps);
        for (std::int64_t i = 0; i < n; ++i) r.x_adv.set_flat(i, project(i, x.flat(i) + u.flat(i)));
    }
    for (int t = 0; t < opt.steps; ++t) {
        const InputGradient g = input_gradient(c, r.x_adv, labels);
        r.loss_trace.push_back(g.loss);
        for (std::int64_t i = 0; i < n; ++i)
            r.x_adv.set_flat(i, project(i, r.x_adv.flat(i) + alpha * sign(g.grad.flat(i))));
    }
    double final_loss = 0.0;
    for (int k = 0; k < c.passes; ++k) {
        NestedTape scope;
        NoGradScope ng;
        final_loss += attack_loss(c, Var(r.x_adv), labels).item() / c.passes;
    }
    r.loss_trace.push_back(final_loss);
    return r;
}

}  // namespace sdeuq::nn
