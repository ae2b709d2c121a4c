// The generic gradient checker (as Stan's expect_ad or ggml's test-backend-ops "grad" mode).
//
// f maps float64 inputs to a Var of any shape. The scalar probed is L = sum(f(x) * w) with fixed random
// weights w, so that every output element enters. Reverse-mode gradients of L are compared with central
// differences (step eps): |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "autodiff/tape.hpp"

namespace sdeuq {

struct GradcheckOptions {
    double eps = 1e-6;
    double rtol = 1e-6;
    double atol = 1e-8;
    std::uint64_t seed = 7;
    // Parameters that f uses (their gradients are checked too).
    std::vector<Parameter*> params;
};

struct GradcheckResult {
    bool ok = true;
    double max_abs_err = 0.0;
    double max_rel_err = 0.0;
    std::string message;  // the first failing element: op name, input, index, both values
};

GradcheckResult check_gradients(const std::string& name, const std::function<Var(std::span<const Var>)>& f,
                                const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {});

// Second derivatives: with L = sum(f(x) * w) and fixed random u_k, the scalar
// L2(x) = sum_k <u_k, dL/dx_k> (dL/dx_k from grad(..., {.create_graph = true}), so every op's
// differentiable backward enters) is differentiated again by grad() and compared with central differences
// of L2, whose values come from first gradients only. Parameters in opt.params count as inputs.
GradcheckResult check_second_gradients(const std::string& name,
                                       const std::function<Var(std::span<const Var>)>& f,
                                       const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {});

}  // namespace sdeuq
