#include "autodiff/kernels/conv.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#if SDEUQ_SIMD
#include <immintrin.h>
#endif

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
    const std::int64_t wp = g.w + 2 * g.pad_w;
    // u runs up to (wo - 1) + (kw - 1) / s; and every input column must have its slot.
    const std::int64_t up = std::max((wp + g.stride - 1) / g.stride, g.wo + (g.kw - 1) / g.stride);
    const std::int64_t hp = std::max(g.h + 2 * g.pad_h, (g.ho - 1) * g.stride + g.kh);
    return {hp, up, g.stride};
}

// For each phase f of the padded columns v = iw + p = u s + f: the range [u0, u1) of u whose input column
// iw = u s + f - p lies in [0, w), and iw0, the input column of u0 (fn(f, u0, u1, iw0); no division per
// element).
template <class F>
void for_phases(const ConvShape& g, const Split& sp, F&& fn) {
    for (std::int64_t f = 0; f < g.stride; ++f) {
        // smallest u with u s + f >= p, and one past the largest with u s + f <= w - 1 + p
        const std::int64_t a = g.pad_w - f, b = g.w - 1 + g.pad_w - f;
        const std::int64_t u0 = a <= 0 ? 0 : (a + g.stride - 1) / g.stride;
        const std::int64_t u1 = b < 0 ? 0 : std::min(sp.up, b / g.stride + 1);
        if (u1 > u0) fn(f, u0, u1, u0 * g.stride + f - g.pad_w);
    }
}

// One scratch buffer per thread and type (grows only).
template <class T>
T* scratch(std::size_t n) {
    thread_local std::vector<T> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

// xp (sp.size(g.c) values) = the padded, phase-split copy of one sample x.
template <class T>
void pad_split(const ConvShape& g, const Split& sp, const T* x, T* xp) {
    std::fill(xp, xp + sp.size(g.c), T(0));
    for (std::int64_t ci = 0; ci < g.c; ++ci)
        for (std::int64_t ih = 0; ih < g.h; ++ih) {
            const T* src = x + (ci * g.h + ih) * g.w;
            T* row = xp + ci * sp.plane() + (ih + g.pad_h) * sp.row_len();
            if (g.stride == 1) {
                std::memcpy(row + g.pad_w, src, sizeof(T) * static_cast<std::size_t>(g.w));
            } else {
                for_phases(g, sp, [&](std::int64_t f, std::int64_t u0, std::int64_t u1, std::int64_t iw0) {
                    T* r = row + f * sp.up;
                    for (std::int64_t u = u0; u < u1; ++u) r[u] = src[iw0 + (u - u0) * g.stride];
                });
            }
        }
}

}  // namespace

template <class T>
void im2col(const ConvShape& g, const T* x, T* col, std::int64_t ldc) {
    const Split sp = split_of(g);
    T* xp = scratch<T>(static_cast<std::size_t>(sp.size(g.c)));
    pad_split(g, sp, x, xp);
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

namespace {

// One panel of im2col_packed: d[kk*nr + c] = src_kk[off[r] + c] for the lanes c of run r (start[r] to
// start[r] + len[r]), 0 in lanes no run covers, where src_kk = xp + koff[kk].
template <class T>
void copy_panel(const T* xp, const std::int64_t* koff, std::int64_t k, int nr, int nruns, const int* start,
                const int* len, const std::int64_t* off, T* d) {
    for (std::int64_t kk = 0; kk < k; ++kk) {
        T* dk = d + kk * nr;
        const T* src = xp + koff[kk];
        std::fill(dk, dk + nr, T(0));
        for (int r = 0; r < nruns; ++r)
            for (int c = start[r]; c < start[r] + len[r]; ++c) dk[c] = src[off[r] + c];
    }
}

#if SDEUQ_SIMD
// The float panel (nr = 16) as two vectors per k: each run loads the 16 values at its offset and blends
// in its own lanes, so short runs (the 6- and 13-wide output rows of the MNIST networks) cost two loads
// and two blends each instead of a loop. The loads may touch up to 16 values either side of the data;
// the caller provides that margin.
template <>
void copy_panel<float>(const float* xp, const std::int64_t* koff, std::int64_t k, int nr, int nruns,
                       const int* start, const int* len, const std::int64_t* off, float* d) {
    if (nr != 16) {
        for (std::int64_t kk = 0; kk < k; ++kk) {
            float* dk = d + kk * nr;
            std::fill(dk, dk + nr, 0.0f);
            for (int r = 0; r < nruns; ++r)
                for (int c = start[r]; c < start[r] + len[r]; ++c) dk[c] = xp[koff[kk] + off[r] + c];
        }
        return;
    }
    __m256 lo_mask[16], hi_mask[16];
    const __m256i lane_lo = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lane_hi = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
    for (int r = 0; r < nruns; ++r) {
        // lane in [start, start + len): start - 1 < lane < start + len
        const __m256i a = _mm256_set1_epi32(start[r] - 1), b = _mm256_set1_epi32(start[r] + len[r]);
        lo_mask[r] = _mm256_castsi256_ps(
            _mm256_and_si256(_mm256_cmpgt_epi32(lane_lo, a), _mm256_cmpgt_epi32(b, lane_lo)));
        hi_mask[r] = _mm256_castsi256_ps(
            _mm256_and_si256(_mm256_cmpgt_epi32(lane_hi, a), _mm256_cmpgt_epi32(b, lane_hi)));
    }
    for (std::int64_t kk = 0; kk < k; ++kk) {
        const float* src = xp + koff[kk];
        __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
        for (int r = 0; r < nruns; ++r) {
            const float* sr = src + off[r];
            lo = _mm256_blendv_ps(lo, _mm256_loadu_ps(sr), lo_mask[r]);
            hi = _mm256_blendv_ps(hi, _mm256_loadu_ps(sr + 8), hi_mask[r]);
        }
        _mm256_storeu_ps(d + kk * 16, lo);
        _mm256_storeu_ps(d + kk * 16 + 8, hi);
    }
}
#endif

}  // namespace

template <class T>
void im2col_packed(const ConvShape& g, const T* x, std::int64_t ns, std::int64_t nr, T* bp) {
    const Split sp = split_of(g);
    const std::int64_t ss = sp.size(g.c), xs = g.c * g.h * g.w, p = g.hw_out(), n = ns * p, k = g.ck();
    if (n == 0) return;
    // The ns padded samples side by side, with nr values of zeros before and after (copy_panel's loads).
    T* buf = scratch<T>(static_cast<std::size_t>(ns * ss + 2 * nr));
    T* xp = buf + nr;
    std::fill(buf, xp, T(0));
    std::fill(xp + ns * ss, xp + ns * ss + nr, T(0));
    for (std::int64_t s = 0; s < ns; ++s) pad_split(g, sp, x + s * xs, xp + s * ss);
    // Offset of row kk = (ci, i, j) of the columns relative to output position 0.
    std::int64_t* koff = scratch<std::int64_t>(static_cast<std::size_t>(k));
    for (std::int64_t ci = 0; ci < g.c; ++ci)
        for (std::int64_t i = 0; i < g.kh; ++i)
            for (std::int64_t j = 0; j < g.kw; ++j)
                koff[(ci * g.kh + i) * g.kw + j] =
                    ci * sp.plane() + i * sp.row_len() + (j % g.stride) * sp.up + j / g.stride;
    // Within a panel, the columns of one output row of one sample are one contiguous run of xp.
    constexpr std::int64_t max_nr = 16;
    if (nr < 1 || nr > max_nr) throw std::invalid_argument("im2col_packed: panel width must be 1..16");
    int start[max_nr], len[max_nr];
    std::int64_t off[max_nr];
    for (std::int64_t j0 = 0; j0 < n; j0 += nr) {
        const std::int64_t j1 = std::min(n, j0 + nr);
        int nruns = 0;
        for (std::int64_t j = j0; j < j1;) {
            const std::int64_t s = j / p, q = j % p, oh = q / g.wo, ow = q % g.wo;
            const std::int64_t l = std::min(g.wo - ow, j1 - j);
            start[nruns] = static_cast<int>(j - j0);
            len[nruns] = static_cast<int>(l);
            off[nruns] = s * ss + oh * g.stride * sp.row_len() + ow - (j - j0);
            ++nruns;
            j += l;
        }
        copy_panel<T>(xp, koff, k, static_cast<int>(nr), nruns, start, len, off, bp + j0 * k);
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
            const T* row = xp + ci * sp.plane() + (ih + g.pad_h) * sp.row_len();
            if (g.stride == 1) {
                std::memcpy(dst, row + g.pad_w, sizeof(T) * static_cast<std::size_t>(g.w));
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

namespace {

// ceil(a / b) for b > 0 and any a.
std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// floor(a / b) for b > 0 and any a.
std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

std::vector<GradPhase> grad_phases(const ConvShape& f, std::int64_t o) {
    const std::int64_t s = f.stride;
    std::vector<GradPhase> out;
    for (std::int64_t a = 0; a < s; ++a)
        for (std::int64_t b = 0; b < s; ++b) {
            // Phase rows u: input row ih = u s + a - ph in [0, h); u0 the first, nu their count.
            const std::int64_t u0 = std::max<std::int64_t>(0, ceil_div(f.pad_h - a, s));
            const std::int64_t u1 = floor_div(f.h - 1 + f.pad_h - a, s) + 1;
            const std::int64_t v0 = std::max<std::int64_t>(0, ceil_div(f.pad_w - b, s));
            const std::int64_t v1 = floor_div(f.w - 1 + f.pad_w - b, s) + 1;
            const std::int64_t ka = a < f.kh ? ceil_div(f.kh - a, s) : 0;
            const std::int64_t kb = b < f.kw ? ceil_div(f.kw - b, s) : 0;
            GradPhase ph{};
            ph.a = a;
            ph.b = b;
            ph.ih0 = u0 * s + a - f.pad_h;
            ph.iw0 = v0 * s + b - f.pad_w;
            ph.g = ConvShape{o, f.ho, f.wo, ka, kb, std::max<std::int64_t>(0, u1 - u0),
                             std::max<std::int64_t>(0, v1 - v0), 1, ka - 1 - u0, kb - 1 - v0};
            ph.taps = ka > 0 && kb > 0 && ph.g.ho > 0 && ph.g.wo > 0;
            out.push_back(ph);
        }
    return out;
}

template <class T>
void phase_weights(const ConvShape& f, std::int64_t o, const GradPhase& ph, const T* w, T* wt) {
    const std::int64_t ka = ph.g.kh, kb = ph.g.kw, s = f.stride;
    for (std::int64_t oo = 0; oo < o; ++oo)
        for (std::int64_t cc = 0; cc < f.c; ++cc)
            for (std::int64_t di = 0; di < ka; ++di)
                for (std::int64_t dj = 0; dj < kb; ++dj) {
                    const std::int64_t i = ph.a + s * (ka - 1 - di), j = ph.b + s * (kb - 1 - dj);
                    wt[((cc * o + oo) * ka + di) * kb + dj] = w[((oo * f.c + cc) * f.kh + i) * f.kw + j];
                }
}

template <class T>
void phase_scatter(const GradPhase& ph, const T* rows, std::int64_t ld, std::int64_t ns, std::int64_t c,
                   std::int64_t h, std::int64_t w, std::int64_t st, T* gx) {
    const std::int64_t nu = ph.g.ho, nv = ph.g.wo, p = nu * nv;
    for (std::int64_t sn = 0; sn < ns; ++sn)
        for (std::int64_t ci = 0; ci < c; ++ci) {
            const T* src = rows + ci * ld + sn * p;
            T* plane = gx + (sn * c + ci) * h * w + ph.ih0 * w + ph.iw0;
            for (std::int64_t u = 0; u < nu; ++u) {
                const T* r = src + u * nv;
                T* d = plane + u * st * w;
                if (st == 1)
                    std::memcpy(d, r, sizeof(T) * static_cast<std::size_t>(nv));
                else
                    for (std::int64_t v = 0; v < nv; ++v) d[v * st] = r[v];
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
template void im2col_packed<float>(const ConvShape&, const float*, std::int64_t, std::int64_t, float*);
template void im2col_packed<double>(const ConvShape&, const double*, std::int64_t, std::int64_t, double*);
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
template void phase_weights<float>(const ConvShape&, std::int64_t, const GradPhase&, const float*, float*);
template void phase_weights<double>(const ConvShape&, std::int64_t, const GradPhase&, const double*, double*);
template void phase_scatter<float>(const GradPhase&, const float*, std::int64_t, std::int64_t, std::int64_t,
                                   std::int64_t, std::int64_t, std::int64_t, float*);
template void phase_scatter<double>(const GradPhase&, const double*, std::int64_t, std::int64_t, std::int64_t,
                                    std::int64_t, std::int64_t, std::int64_t, double*);
template void transpose_add<float>(std::int64_t, std::int64_t, const float*, std::int64_t, float*,
                                   std::int64_t);
template void transpose_add<double>(std::int64_t, std::int64_t, const double*, std::int64_t, double*,
                                    std::int64_t);

}  // namespace sdeuq::kernels
