#include "autodiff/kernels/norm.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/parallel.hpp"

namespace sdeuq::kernels {

namespace {

// sum_j f(j) over [0, n) in 8 interleaved partial sums, combined pairwise: independent chains the
// compiler vectorises (a single serial double sum is one dependent add per element).
template <class F>
inline double sum8(std::int64_t n, F&& f) {
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; ++k) a[k] += f(j + k);
    for (int k = 0; j < n; ++j, ++k) a[k] += f(j);
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

std::int64_t block_min_work(std::int64_t m) {
    return std::max<std::int64_t>(2, parallel_min / std::max<std::int64_t>(1, m));
}

}  // namespace

template <class T>
void norm_forward(const NormShape& s, const T* x, const T* gamma, const T* beta, double eps, T* y,
                  double* mean, double* rstd, bool relu) {
    const std::int64_t m = s.m;
    parallel_for(0, s.blocks, 1, block_min_work(m), [&](std::int64_t lo, std::int64_t hi) {
        for (std::int64_t b = lo; b < hi; ++b) {
            const T* xb = x + b * m;
            const double mu =
                sum8(m, [&](std::int64_t j) { return static_cast<double>(xb[j]); }) / static_cast<double>(m);
            const double var = sum8(m,
                                    [&](std::int64_t j) {
                                        const double d = static_cast<double>(xb[j]) - mu;
                                        return d * d;
                                    }) /
                               static_cast<double>(m);
            const double r = 1.0 / std::sqrt(var + eps);
            mean[b] = mu;
            rstd[b] = r;
            for (std::int64_t k = 0; k < s.cpg; ++k) {
                const std::int64_t c = s.channel(b, k), o = b * m + k * s.spatial;
                const T ga = gamma ? gamma[c] : T(1), be = beta ? beta[c] : T(0);
                const T* xr = x + o;
                T* yr = y + o;
                if (relu)
                    for (std::int64_t j = 0; j < s.spatial; ++j) {
                        const T v = static_cast<T>((static_cast<double>(xr[j]) - mu) * r) * ga + be;
                        yr[j] = v > T(0) ? v : T(0);
                    }
                else
                    for (std::int64_t j = 0; j < s.spatial; ++j)
                        yr[j] = static_cast<T>((static_cast<double>(xr[j]) - mu) * r) * ga + be;
            }
        }
    });
}

template <class T>
void norm_backward(const NormShape& s, const T* g, const T* x, const double* mean, const double* rstd,
                   const T* gamma, const T* y_relu, T* gx, T* ggamma, T* gbeta) {
    const std::int64_t m = s.m, cpg = s.cpg, sp = s.spatial;
    // Per-block, per-channel sums of g xhat and g (double), reduced over blocks in order afterwards.
    const bool params = ggamma || gbeta;
    std::vector<double> part(params ? static_cast<std::size_t>(s.blocks * cpg * 2) : 0);
    parallel_for(0, s.blocks, 1, block_min_work(m), [&](std::int64_t lo, std::int64_t hi) {
        // Per block, gm = g masked by the relu and h = xhat as the forward computed it, in plain loops
        // the compiler vectorises; the sums and gx then read them.
        thread_local std::vector<T> buf;
        if (buf.size() < static_cast<std::size_t>(2 * m)) buf.resize(static_cast<std::size_t>(2 * m));
        T* hh = buf.data();
        T* gmask = buf.data() + m;
        for (std::int64_t b = lo; b < hi; ++b) {
            const std::int64_t o = b * m;
            const double mu = mean[b], r = rstd[b];
            const T* xb = x + o;
            for (std::int64_t j = 0; j < m; ++j)
                hh[j] = static_cast<T>((static_cast<double>(xb[j]) - mu) * r);
            const T* gm = g + o;
            if (y_relu) {
                const T* yb = y_relu + o;
                for (std::int64_t j = 0; j < m; ++j) gmask[j] = yb[j] > T(0) ? gm[j] : T(0);
                gm = gmask;
            }
            double s1 = 0.0, s2 = 0.0;  // sum d, sum d xhat with d = g gamma
            if (sp == 1) {              // one element per channel (layer norm): flat sums over the block
                auto ga = [&](std::int64_t k) {
                    return gamma ? static_cast<double>(gamma[s.channel(b, k)]) : 1.0;
                };
                s1 = sum8(m, [&](std::int64_t k) { return static_cast<double>(gm[k]) * ga(k); });
                s2 = sum8(m, [&](std::int64_t k) {
                    return static_cast<double>(gm[k]) * ga(k) * static_cast<double>(hh[k]);
                });
                if (params)
                    for (std::int64_t k = 0; k < m; ++k) {
                        part[static_cast<std::size_t>((b * cpg + k) * 2)] =
                            static_cast<double>(gm[k]) * static_cast<double>(hh[k]);
                        part[static_cast<std::size_t>((b * cpg + k) * 2 + 1)] = static_cast<double>(gm[k]);
                    }
            }
            for (std::int64_t k = 0; k < cpg && sp != 1; ++k) {
                const T* gk = gm + k * sp;
                const T* hk = hh + k * sp;
                const double sg = sum8(sp, [&](std::int64_t j) { return static_cast<double>(gk[j]); });
                const double sgh = sum8(sp, [&](std::int64_t j) {
                    return static_cast<double>(gk[j]) * static_cast<double>(hk[j]);
                });
                if (params) {
                    part[static_cast<std::size_t>((b * cpg + k) * 2)] = sgh;
                    part[static_cast<std::size_t>((b * cpg + k) * 2 + 1)] = sg;
                }
                const double ga = gamma ? static_cast<double>(gamma[s.channel(b, k)]) : 1.0;
                s1 += ga * sg;
                s2 += ga * sgh;
            }
            if (!gx) continue;
            const double a1 = s1 / static_cast<double>(m), a2 = s2 / static_cast<double>(m);
            for (std::int64_t k = 0; k < cpg; ++k) {
                const std::int64_t kk = k * sp;
                const double ga = gamma ? static_cast<double>(gamma[s.channel(b, k)]) : 1.0;
                T* gxk = gx + o + kk;
                for (std::int64_t j = 0; j < sp; ++j)
                    gxk[j] = static_cast<T>(r * (static_cast<double>(gm[kk + j]) * ga - a1 -
                                                 static_cast<double>(hh[kk + j]) * a2));
            }
        }
    });
    if (!params) return;
    std::vector<double> acc(static_cast<std::size_t>(s.channels * 2), 0.0);
    for (std::int64_t b = 0; b < s.blocks; ++b)
        for (std::int64_t k = 0; k < cpg; ++k) {
            const auto c = static_cast<std::size_t>(s.channel(b, k));
            acc[2 * c] += part[static_cast<std::size_t>((b * cpg + k) * 2)];
            acc[2 * c + 1] += part[static_cast<std::size_t>((b * cpg + k) * 2 + 1)];
        }
    for (std::int64_t c = 0; c < s.channels; ++c) {
        if (ggamma) ggamma[c] += static_cast<T>(acc[static_cast<std::size_t>(2 * c)]);
        if (gbeta) gbeta[c] += static_cast<T>(acc[static_cast<std::size_t>(2 * c + 1)]);
    }
}

template void norm_forward<float>(const NormShape&, const float*, const float*, const float*, double, float*,
                                  double*, double*, bool);
template void norm_forward<double>(const NormShape&, const double*, const double*, const double*, double,
                                   double*, double*, double*, bool);
template void norm_backward<float>(const NormShape&, const float*, const float*, const double*, const double*,
                                   const float*, const float*, float*, float*, float*);
template void norm_backward<double>(const NormShape&, const double*, const double*, const double*,
                                    const double*, const double*, const double*, double*, double*, double*);

}  // namespace sdeuq::kernels
