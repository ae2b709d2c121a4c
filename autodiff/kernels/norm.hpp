// Normalisation kernels (group norm, layer norm) on raw pointers.
//
// Blocks of m contiguous elements are normalised: xhat = (x - mu) r, mu and var = mean (x - mu)^2 (biased)
// over the block, r = 1 / sqrt(var + eps); then y = xhat gamma[c] + beta[c]. A block holds cpg runs of
// `spatial` elements, run k belonging to channel (b % groups) * cpg + k (group norm: block = (sample,
// group); layer norm: groups = 1, cpg = D, spatial = 1). Statistics are summed in double, in 8
// interleaved partial sums (one serial chain per block was the kernel's bottleneck), combined pairwise.
// Blocks are spread over the kernel threads; every sum is computed within one block or, for the
// parameter gradients, over blocks in a fixed order, so results do not depend on the thread count.
#pragma once

#include <cstdint>

namespace sdeuq::kernels {

struct NormShape {
    std::int64_t blocks, m, groups, cpg, spatial, channels;
    std::int64_t channel(std::int64_t b, std::int64_t k) const { return (b % groups) * cpg + k; }
};

// y, mean[blocks] and rstd[blocks] from x; gamma, beta optional (null: 1 and 0); relu applies max(0, .)
// to y. xhat is not stored: the backward recomputes it from x, mean and rstd with the same expression
// (so the same bits), which saves writing and reading back a tensor of x's size.
template <class T>
void norm_forward(const NormShape& s, const T* x, const T* gamma, const T* beta, double eps, T* y,
                  double* mean, double* rstd, bool relu = false);

// With xhat = T((x - mean) rstd) and d = g gamma[c] (g zeroed where the relu output y_relu is not
// positive, when y_relu is given): gx = r (d - mean(d) - xhat mean(d xhat)) over the block;
// ggamma[c] += sum g xhat, gbeta[c] += sum g over all elements of channel c (each optional: null skips it).
template <class T>
void norm_backward(const NormShape& s, const T* g, const T* x, const double* mean, const double* rstd,
                   const T* gamma, const T* y_relu, T* gx, T* ggamma, T* gbeta);

}  // namespace sdeuq::kernels
