#include "autodiff/kernels/conv_general.hpp"

#include <algorithm>

namespace sdeuq::kernels {

namespace {

// The output positions o in [0, n_out) whose tap o*s - p + off lands inside [0, extent): [lo, hi).
struct Range {
    std::int64_t lo, hi;
};
Range valid_outputs(std::int64_t n_out, std::int64_t s, std::int64_t p, std::int64_t off, std::int64_t extent) {
    // o*s + (off - p) >= 0  <=>  o >= ceil((p - off) / s);  o*s + (off - p) < extent  <=>  o <= (extent - 1 + p - off) / s
    const std::int64_t a = p - off;
    std::int64_t lo = a <= 0 ? 0 : (a + s - 1) / s;
    const std::int64_t b = extent - 1 + p - off;
    std::int64_t hi = b < 0 ? 0 : b / s + 1;
    lo = std::min(lo, n_out);
    hi = std::clamp(hi, lo, n_out);
    return {lo, hi};
}

// The input index of output (oh, 0)'s tap (i, j) (may be < 0): output (oh, ow) reads base + ow * sw.
std::int64_t tap_base(const ConvGeneralShape& g, std::int64_t oh, std::int64_t i, std::int64_t j) {
    return (oh * g.sh - g.ph + i * g.dh) * g.w - g.pw + j * g.dw;
}

// Calls row(k, oh, base, rw) for each kernel tap k = i * kw + j and each output row oh whose tap lands
// inside the input, taps in order, rows in order; the columns ow in [rw.lo, rw.hi) are those whose tap does.
template <class Row>
void for_each_tap_row(const ConvGeneralShape& g, Row&& row) {
    for (std::int64_t i = 0; i < g.kh; ++i) {
        const Range rh = valid_outputs(g.ho, g.sh, g.ph, i * g.dh, g.h);
        for (std::int64_t j = 0; j < g.kw; ++j) {
            const Range rw = valid_outputs(g.wo, g.sw, g.pw, j * g.dw, g.w);
            for (std::int64_t oh = rh.lo; oh < rh.hi; ++oh) row(i * g.kw + j, oh, tap_base(g, oh, i, j), rw);
        }
    }
}

}  // namespace

template <class T>
void im2col_dilated(const ConvGeneralShape& g, const T* x, T* col, std::int64_t ldc) {
    for (std::int64_t ci = 0; ci < g.cg(); ++ci)
        for (std::int64_t i = 0; i < g.kh; ++i) {
            const Range rh = valid_outputs(g.ho, g.sh, g.ph, i * g.dh, g.h);
            for (std::int64_t j = 0; j < g.kw; ++j) {
                const Range rw = valid_outputs(g.wo, g.sw, g.pw, j * g.dw, g.w);
                T* row = col + ((ci * g.kh + i) * g.kw + j) * ldc;
                const T* plane = x + ci * g.h * g.w;
                for (std::int64_t oh = 0; oh < g.ho; ++oh) {
                    T* r = row + oh * g.wo;
                    if (oh < rh.lo || oh >= rh.hi) {
                        std::fill(r, r + g.wo, T(0));
                        continue;
                    }
                    const std::int64_t base = tap_base(g, oh, i, j);
                    std::fill(r, r + rw.lo, T(0));
                    for (std::int64_t ow = rw.lo; ow < rw.hi; ++ow) r[ow] = plane[base + ow * g.sw];
                    std::fill(r + rw.hi, r + g.wo, T(0));
                }
            }
        }
}

template <class T>
void col2im_dilated(const ConvGeneralShape& g, const T* col, std::int64_t ldc, T* gx) {
    for (std::int64_t ci = 0; ci < g.cg(); ++ci) {
        T* plane = gx + ci * g.h * g.w;
        for_each_tap_row(g, [&](std::int64_t k, std::int64_t oh, std::int64_t base, Range rw) {
            const T* r = col + (ci * g.kh * g.kw + k) * ldc + oh * g.wo;
            for (std::int64_t ow = rw.lo; ow < rw.hi; ++ow) plane[base + ow * g.sw] += r[ow];
        });
    }
}

template <class T>
void depthwise_forward(const ConvGeneralShape& g, std::int64_t ns, const T* x, const T* w, const T* bias, T* y) {
    const std::int64_t m = g.o / g.c, hw = g.h * g.w, p = g.hw_out(), kk = g.kh * g.kw;
    for (std::int64_t s = 0; s < ns; ++s)
        for (std::int64_t oc = 0; oc < g.o; ++oc) {
            const T* plane = x + (s * g.c + oc / m) * hw;
            const T* wk = w + oc * kk;
            T* out = y + (s * g.o + oc) * p;
            std::fill(out, out + p, T(0));
            for_each_tap_row(g, [&](std::int64_t k, std::int64_t oh, std::int64_t base, Range rw) {
                const T wv = wk[k];
                T* r = out + oh * g.wo;
                for (std::int64_t ow = rw.lo; ow < rw.hi; ++ow) r[ow] += wv * plane[base + ow * g.sw];
            });
            if (bias)
                for (std::int64_t q = 0; q < p; ++q) out[q] += bias[oc];
        }
}

template <class T>
void depthwise_input_grad(const ConvGeneralShape& g, std::int64_t ns, const T* gy, const T* w, T* gx) {
    const std::int64_t m = g.o / g.c, hw = g.h * g.w, p = g.hw_out(), kk = g.kh * g.kw;
    for (std::int64_t s = 0; s < ns; ++s)
        for (std::int64_t ci = 0; ci < g.c; ++ci) {
            T* plane = gx + (s * g.c + ci) * hw;
            std::fill(plane, plane + hw, T(0));
            for (std::int64_t oc = ci * m; oc < (ci + 1) * m; ++oc) {
                const T* wk = w + oc * kk;
                const T* go = gy + (s * g.o + oc) * p;
                for_each_tap_row(g, [&](std::int64_t k, std::int64_t oh, std::int64_t base, Range rw) {
                    const T wv = wk[k];
                    const T* r = go + oh * g.wo;
                    for (std::int64_t ow = rw.lo; ow < rw.hi; ++ow) plane[base + ow * g.sw] += wv * r[ow];
                });
            }
        }
}

template <class T>
void depthwise_weight_grad(const ConvGeneralShape& g, std::int64_t ns, const T* x, const T* gy, T* gw) {
    const std::int64_t m = g.o / g.c, hw = g.h * g.w, p = g.hw_out(), kk = g.kh * g.kw;
    for (std::int64_t oc = 0; oc < g.o; ++oc)
        for (std::int64_t i = 0; i < g.kh; ++i) {
            const Range rh = valid_outputs(g.ho, g.sh, g.ph, i * g.dh, g.h);
            for (std::int64_t j = 0; j < g.kw; ++j) {
                const Range rw = valid_outputs(g.wo, g.sw, g.pw, j * g.dw, g.w);
                T acc = T(0);
                for (std::int64_t s = 0; s < ns; ++s) {
                    const T* plane = x + (s * g.c + oc / m) * hw;
                    const T* go = gy + (s * g.o + oc) * p;
                    for (std::int64_t oh = rh.lo; oh < rh.hi; ++oh) {
                        const std::int64_t base = tap_base(g, oh, i, j);
                        const T* r = go + oh * g.wo;
                        for (std::int64_t ow = rw.lo; ow < rw.hi; ++ow) acc += r[ow] * plane[base + ow * g.sw];
                    }
                }
                gw[oc * kk + i * g.kw + j] = acc;
            }
        }
}

namespace {

// One pooling window clipped to the input: rows [ilo, ihi), columns [jlo, jhi), and its output's index in
// the plane.
struct Window {
    std::int64_t out, ilo, ihi, jlo, jhi;
};

// Calls visit(window, divisor) for each output of a plane, row by row; the divisor is kh*kw, or the count
// of window elements inside the input (count_include_pad false).
template <class T, class Visit>
void for_each_window(const PoolShape& p, Visit&& visit) {
    for (std::int64_t oh = 0; oh < p.ho; ++oh) {
        const std::int64_t h0 = oh * p.sh - p.ph;
        const std::int64_t ilo = std::max<std::int64_t>(h0, 0), ihi = std::min(h0 + p.kh, p.h);
        for (std::int64_t ow = 0; ow < p.wo; ++ow) {
            const std::int64_t w0 = ow * p.sw - p.pw;
            const std::int64_t jlo = std::max<std::int64_t>(w0, 0), jhi = std::min(w0 + p.kw, p.w);
            const T divisor = p.count_include_pad ? static_cast<T>(p.kh * p.kw)
                                                  : static_cast<T>((ihi - ilo) * (jhi - jlo));
            visit(Window{oh * p.wo + ow, ilo, ihi, jlo, jhi}, divisor);
        }
    }
}

}  // namespace

template <class T>
void avg_pool_forward(const PoolShape& p, const T* x, T* y) {
    for (std::int64_t pl = 0; pl < p.planes; ++pl) {
        const T* src = x + pl * p.h * p.w;
        T* dst = y + pl * p.ho * p.wo;
        for_each_window<T>(p, [&](const Window& win, T divisor) {
            T acc = T(0);
            for (std::int64_t i = win.ilo; i < win.ihi; ++i)
                for (std::int64_t j = win.jlo; j < win.jhi; ++j) acc += src[i * p.w + j];
            dst[win.out] = acc / divisor;
        });
    }
}

template <class T>
void avg_pool_backward(const PoolShape& p, const T* gy, T* gx) {
    std::fill(gx, gx + p.planes * p.h * p.w, T(0));
    for (std::int64_t pl = 0; pl < p.planes; ++pl) {
        const T* src = gy + pl * p.ho * p.wo;
        T* dst = gx + pl * p.h * p.w;
        for_each_window<T>(p, [&](const Window& win, T divisor) {
            const T v = src[win.out] / divisor;
            for (std::int64_t i = win.ilo; i < win.ihi; ++i)
                for (std::int64_t j = win.jlo; j < win.jhi; ++j) dst[i * p.w + j] += v;
        });
    }
}

#define SDEUQ_CONV_GENERAL_INSTANTIATE(T)                                                                      \
    template void im2col_dilated<T>(const ConvGeneralShape&, const T*, T*, std::int64_t);                     \
    template void col2im_dilated<T>(const ConvGeneralShape&, const T*, std::int64_t, T*);                     \
    template void depthwise_forward<T>(const ConvGeneralShape&, std::int64_t, const T*, const T*, const T*, T*); \
    template void depthwise_input_grad<T>(const ConvGeneralShape&, std::int64_t, const T*, const T*, T*);     \
    template void depthwise_weight_grad<T>(const ConvGeneralShape&, std::int64_t, const T*, const T*, T*);    \
    template void avg_pool_forward<T>(const PoolShape&, const T*, T*);                                        \
    template void avg_pool_backward<T>(const PoolShape&, const T*, T*);
SDEUQ_CONV_GENERAL_INSTANTIATE(float)
SDEUQ_CONV_GENERAL_INSTANTIATE(double)
#undef SDEUQ_CONV_GENERAL_INSTANTIATE

}  // namespace sdeuq::kernels
