// Argument checks shared by conv2d (autodiff/ops_nn.cpp) and its general form with per-dimension stride,
// padding, dilation and groups (autodiff/ops_conv_general.cpp), so that both say the same thing about the
// same mistake.
#pragma once

#include <cstdint>
#include <fmt/format.h>
#include <string>

#include "autodiff/ops.hpp"
#include "autodiff/tensor_ops.hpp"

namespace sdeuq::detail {

// bias, when given, must be a defined [o] tensor of x's dtype. context (e.g. " (stride 2 ...)") ends the
// messages.
inline void check_conv_bias(const char* op, const Var& x, const Var& w, const Var* bias, std::int64_t o,
                            const std::string& context = "") {
    if (!bias) return;
    if (!bias->value().defined()) throw UsageError(fmt::format("{}: undefined bias{}", op, context));
    check_same_dtype(op, x.value(), bias->value());
    if (bias->rank() != 1 || bias->dim(0) != o)
        throw UsageError(fmt::format("{}: bias {} does not match weight {} (expected [{}]){}", op,
                                     describe(bias->value()), describe(w.value()), o, context));
}

}  // namespace sdeuq::detail
