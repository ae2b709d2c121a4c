// The general convolution's loops, on raw pointers: per-dimension stride and padding, dilation and groups
// (PyTorch's F.conv2d), and the padded average pool. The square, undilated, ungrouped convolution keeps
// its own faster kernels (conv.hpp); these serve every other configuration.
//
// Geometry: input [N, C, H, W], weight [O, C/groups, kh, kw], output [N, O, ho, wo] with
// ho = (H + 2 ph - dh (kh - 1) - 1) / sh + 1 (and the same for wo). Group g reads the input channels
// [g C/G, (g+1) C/G) and writes the output channels [g O/G, (g+1) O/G).
#pragma once

#include <cstdint>

namespace sdeuq::kernels {

struct ConvGeneralShape {
    std::int64_t c, h, w;  // input channels (all groups) and extent of one sample
    std::int64_t o;        // output channels (all groups)
    std::int64_t kh, kw;   // kernel
    std::int64_t ho, wo;   // output extent
    std::int64_t sh, sw, ph, pw, dh, dw;
    std::int64_t groups;
    std::int64_t cg() const { return c / groups; }  // input channels per group
    std::int64_t og() const { return o / groups; }  // output channels per group
    std::int64_t ckg() const { return cg() * kh * kw; }  // one output's reduction length
    std::int64_t hw_out() const { return ho * wo; }
};

// col[(ci*kh + i)*kw + j, oh*wo + ow] = x[ci, oh*sh - ph + i*dh, ow*sw - pw + j*dw] (0 outside the input),
// for the cg() channels of one group of one sample at x; col's row stride is ldc.
template <class T>
void im2col_dilated(const ConvGeneralShape& g, const T* x, T* col, std::int64_t ldc);

// The adjoint: every entry of col is added into the input element it was read from (gx is accumulated,
// not overwritten), in the order (ci, i, j, oh, ow).
template <class T>
void col2im_dilated(const ConvGeneralShape& g, const T* col, std::int64_t ldc, T* gx);

// Depthwise (groups == c, m = o / c outputs per input channel): direct loops over ns samples.
// y[s, oc] = bias[oc] + sum_{i,j} w[oc, 0, i, j] x[s, oc / m, ...]; bias may be null.
template <class T>
void depthwise_forward(const ConvGeneralShape& g, std::int64_t ns, const T* x, const T* w, const T* bias, T* y);
// gx[s, ci] (overwritten) = sum over the m outputs of channel ci of the adjoint of their windows.
template <class T>
void depthwise_input_grad(const ConvGeneralShape& g, std::int64_t ns, const T* gy, const T* w, T* gx);
// gw[oc, 0, i, j] (overwritten) = sum_{s, oh, ow} gy[s, oc, oh, ow] x[s, oc / m, ...], samples in order.
template <class T>
void depthwise_weight_grad(const ConvGeneralShape& g, std::int64_t ns, const T* x, const T* gy, T* gw);

// Average pool over planes (n*c of them, h x w each) with zero padding: y = the window's sum divided by
// kh*kw (count_include_pad) or by the number of window elements inside the input.
struct PoolShape {
    std::int64_t planes, h, w, kh, kw, ho, wo, sh, sw, ph, pw;
    bool count_include_pad;
};
template <class T>
void avg_pool_forward(const PoolShape& p, const T* x, T* y);
// gx (overwritten) = the adjoint: every gy element spread over its window with the same divisor.
template <class T>
void avg_pool_backward(const PoolShape& p, const T* gy, T* gx);

}  // namespace sdeuq::kernels
