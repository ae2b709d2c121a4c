#include "autodiff/kernels/conv.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace sdeuq::kernels {

namespace {

// The padded, phase-split layout of one sample: plane ci, padded row r = ih + p, phase f = (iw + p) % s,
// index u = (iw + p) / s. A row of col for (ci, i, j) and output row oh starts at
// xp[ci][oh*s + i][j % s][j / s] and runs over wo consecutive u.
struct Split {
    std::int64_t hp, up, s;
    std::int64_t row_len() const { return s * up; }
    std::int64_t plane() const { return hp * row_len(); }
    std::int64_t size(std::int64_t c) const { return c * plane(); }
};

Split split_of(const ConvShape& g) {
    const std::int64_t wp = g.w + 2 * g.pad;
    // u runs up to (wo - 1) + (kw - 1) / s; and every input column must have its slot.
    const std::int64_t up = std::max((wp + g.stride - 1) / g.stride, g.wo + (g.kw - 1) / g.stride);
    const std::int64_t hp = std::max(g.h + 2 * g.pad, (g.ho - 1) * g.stride + g.kh);
    return {hp, up, g.stride};
}

// For each phase f of the padded columns v = iw + p = u s + f: the range [u0, u1) of u whose input column
// iw = u s + f - p lies in [0, w), and iw0, the input column of u0 (fn(f, u0, u1, iw0); no division per
// element).
template <class F>
void for_phases(const ConvShape& g, const Split& sp, F&& fn) {
    for (std::int64_t f = 0; f < g.stride; ++f) {
        // smallest u with u s + f >= p, and one past the largest with u s + f <= w - 1 + p
        const std::int64_t a = g.pad - f, b = g.w - 1 + g.pad - f;
        const std::int64_t u0 = a <= 0 ? 0 : (a + g.stride - 1) / g.stride;
        const std::int64_t u1 = b < 0 ? 0 : std::min(sp.up, b / g.stride + 1);
        if (u1 > u0) fn(f, u0, u1, u0 * g.stride + f - g.pad);
    }
}

// One scratch buffer per thread and type (grows only).
template <class T>
T* scratch(std::size_t n) {
    thread_local std::vector<T> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

}  // namespace

template <class T>
void im2col(const ConvShape& g, const T* x, T* col, std::int64_t ldc) {
    const Split sp = split_of(g);
    T* xp = scratch<T>(static_cast<std::size_t>(sp.size(g.c)));
    std::fill(xp, xp + sp.size(g.c), T(0));
    for (std::int64_t ci = 0; ci < g.c; ++ci)
        for (std::int64_t ih = 0; ih < g.h; ++ih) {
            const T* src = x + (ci * g.h + ih) * g.w;
            T* row = xp + ci * sp.plane() + (ih + g.pad) * sp.row_len();
            if (g.stride == 1) {
                std::memcpy(row + g.pad, src, sizeof(T) * static_cast<std::size_t>(g.w));
            } else {
                for_phases(g, sp, [&](std::int64_t f, std::int64_t u0, std::int64_t u1, std::int64_t iw0) {
                    T* r = row + f * sp.up;
                    for (std::int64_t u = u0; u < u1; ++u) r[u] = src[iw0 + (u - u0) * g.stride];
                });
            }
        }
    const std::int64_t wo = g.wo;
    for (std::int64_t ci = 0; ci < g.c; ++ci)
        for (std::int64_t i = 0; i < g.kh; ++i)
            for (std::int64_t j = 0; j < g.kw; ++j) {
                T* dst = col + ((ci * g.kh + i) * g.kw + j) * ldc;
                const T* src =
                    xp + ci * sp.plane() + i * sp.row_len() + (j % g.stride) * sp.up + j / g.stride;
                for (std::int64_t oh = 0; oh < g.ho; ++oh) {
                    const T* s = src + oh * g.stride * sp.row_len();
                    T* d = dst + oh * wo;
                    for (std::int64_t ow = 0; ow < wo; ++ow) d[ow] = s[ow];
                }
            }
}

template <class T>
void col2im(const ConvShape& g, const T* col, std::int64_t ldc, T* gx) {
    const Split sp = split_of(g);
    T* xp = scratch<T>(static_cast<std::size_t>(sp.size(g.c)));
    std::fill(xp, xp + sp.size(g.c), T(0));
    const std::int64_t wo = g.wo;
    for (std::int64_t ci = 0; ci < g.c; ++ci)
        for (std::int64_t i = 0; i < g.kh; ++i)
            for (std::int64_t j = 0; j < g.kw; ++j) {
                const T* src = col + ((ci * g.kh + i) * g.kw + j) * ldc;
                T* dst = xp + ci * sp.plane() + i * sp.row_len() + (j % g.stride) * sp.up + j / g.stride;
                for (std::int64_t oh = 0; oh < g.ho; ++oh) {
                    T* d = dst + oh * g.stride * sp.row_len();
                    const T* s = src + oh * wo;
                    for (std::int64_t ow = 0; ow < wo; ++ow) d[ow] += s[ow];
                }
            }
    for (std::int64_t ci = 0; ci < g.c; ++ci)
        for (std::int64_t ih = 0; ih < g.h; ++ih) {
            T* dst = gx + (ci * g.h + ih) * g.w;
            const T* row = xp + ci * sp.plane() + (ih + g.pad) * sp.row_len();
            if (g.stride == 1) {
                std::memcpy(dst, row + g.pad, sizeof(T) * static_cast<std::size_t>(g.w));
            } else {
                for_phases(g, sp, [&](std::int64_t f, std::int64_t u0, std::int64_t u1, std::int64_t iw0) {
                    const T* r = row + f * sp.up;
                    for (std::int64_t u = u0; u < u1; ++u) dst[iw0 + (u - u0) * g.stride] = r[u];
                });
            }
        }
}

template <class T>
void samples_to_rows(const T* y, std::int64_t ns, std::int64_t o, std::int64_t p, T* rows, std::int64_t ld) {
    for (std::int64_t s = 0; s < ns; ++s)
        for (std::int64_t c = 0; c < o; ++c)
            std::memcpy(rows + c * ld + s * p, y + (s * o + c) * p, sizeof(T) * static_cast<std::size_t>(p));
}

template <class T>
void rows_to_samples(const T* rows, std::int64_t ld, std::int64_t ns, std::int64_t o, std::int64_t p,
                     const T* bias, T* y) {
    for (std::int64_t s = 0; s < ns; ++s)
        for (std::int64_t c = 0; c < o; ++c) {
            const T* src = rows + c * ld + s * p;
            T* dst = y + (s * o + c) * p;
            if (bias) {
                const T b = bias[c];
                for (std::int64_t q = 0; q < p; ++q) dst[q] = src[q] + b;
            } else {
                std::memcpy(dst, src, sizeof(T) * static_cast<std::size_t>(p));
            }
        }
}

template <class T>
void transpose_add(std::int64_t m, std::int64_t n, const T* src, std::int64_t lds, T* dst, std::int64_t ldd) {
    // 32 x 32 blocks: both the rows read and the rows written stay in L1 within a block.
    constexpr std::int64_t bs = 32;
    for (std::int64_t i0 = 0; i0 < m; i0 += bs)
        for (std::int64_t j0 = 0; j0 < n; j0 += bs) {
            const std::int64_t i1 = std::min(m, i0 + bs), j1 = std::min(n, j0 + bs);
            for (std::int64_t j = j0; j < j1; ++j)
                for (std::int64_t i = i0; i < i1; ++i) dst[j * ldd + i] += src[i * lds + j];
        }
}

template void im2col<float>(const ConvShape&, const float*, float*, std::int64_t);
template void im2col<double>(const ConvShape&, const double*, double*, std::int64_t);
template void col2im<float>(const ConvShape&, const float*, std::int64_t, float*);
template void col2im<double>(const ConvShape&, const double*, std::int64_t, double*);

template void samples_to_rows<float>(const float*, std::int64_t, std::int64_t, std::int64_t, float*,
                                     std::int64_t);
template void samples_to_rows<double>(const double*, std::int64_t, std::int64_t, std::int64_t, double*,
                                      std::int64_t);
template void rows_to_samples<float>(const float*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                                     const float*, float*);
template void rows_to_samples<double>(const double*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                                      const double*, double*);
template void transpose_add<float>(std::int64_t, std::int64_t, const float*, std::int64_t, float*,
                                   std::int64_t);
template void transpose_add<double>(std::int64_t, std::int64_t, const double*, std::int64_t, double*,
                                    std::int64_t);

}  // namespace sdeuq::kernels
