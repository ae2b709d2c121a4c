#include "nn/transforms.hpp"

#include <fmt/format.h>

#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <array>
#include <stdexcept>

namespace sdeuq::nn {

namespace {

void check(std::span<float> images, std::size_t n, std::size_t c, std::size_t h, std::size_t w,
           const char* op) {
    if (images.size() != n * c * h * w)
        throw std::invalid_argument(
            fmt::format("{}: {} values for a batch of [{}, {}, {}, {}]", op, images.size(), n, c, h, w));
}

// The caller's floats as an [n, c, h, w] array (no copy).
auto batch_view(std::span<float> images, std::size_t n, std::size_t c, std::size_t h, std::size_t w) {
    return xt::adapt(images.data(), images.size(), xt::no_ownership(), std::array<std::size_t, 4>{n, c, h, w});
}

// Uniform integer in [0, m) from 53 random bits (m is small here; the bias is below 2^-40).
std::int64_t uniform_int(Generator& gen, std::int64_t m) {
    return std::min<std::int64_t>(m - 1, static_cast<std::int64_t>(gen.uniform() * static_cast<double>(m)));
}

}  // namespace

void random_crop_pad(std::span<float> images, std::size_t n, std::size_t c, std::size_t h, std::size_t w,
                     int padding, Generator& gen, float fill) {
    check(images, n, c, h, w, "random_crop_pad");
    if (padding < 0) throw std::invalid_argument(fmt::format("random_crop_pad: padding {} < 0", padding));
    auto batch = batch_view(images, n, c, h, w);
    const auto p = static_cast<std::size_t>(padding);
    // The padded image, filled with `fill` once; each image is copied into its centre. (xt::pad is not used:
    // in xtensor 0.24.3 its strided-view assignment throws std::bad_alloc for a fixed-rank xtensor.)
    xt::xtensor<float, 3> padded(std::array<std::size_t, 3>{c, h + 2 * p, w + 2 * p}, fill);
    auto centre = xt::view(padded, xt::all(), xt::range(p, p + h), xt::range(p, p + w));
    for (std::size_t i = 0; i < n; ++i) {
        // Offset of the crop in the padded image: the output pixel (r, q) is padded pixel (r + oy, q + ox),
        // i.e. source pixel (r + oy - padding, q + ox - padding), with oy, ox in [0, 2 padding].
        const auto oy = static_cast<std::size_t>(uniform_int(gen, 2 * padding + 1));
        const auto ox = static_cast<std::size_t>(uniform_int(gen, 2 * padding + 1));
        auto img = xt::view(batch, i);
        centre = img;
        img = xt::view(padded, xt::all(), xt::range(oy, oy + h), xt::range(ox, ox + w));
    }
}

void cutout(std::span<float> images, std::size_t n, std::size_t c, std::size_t h, std::size_t w, int size,
            double prob, Generator& gen, float fill) {
    check(images, n, c, h, w, "cutout");
    if (size < 0 || !(prob >= 0 && prob <= 1))
        throw std::invalid_argument(
            fmt::format("cutout: size {} must be >= 0 and probability {} in [0, 1]", size, prob));
    auto batch = batch_view(images, n, c, h, w);
    for (std::size_t i = 0; i < n; ++i) {
        // Draw all three numbers for every image so one image's outcome does not shift the next one's draws.
        const bool apply = gen.uniform() < prob;
        const std::int64_t cy = uniform_int(gen, std::int64_t(h)), cx = uniform_int(gen, std::int64_t(w));
        if (!apply) continue;
        const std::int64_t y0 = std::max<std::int64_t>(0, cy - size / 2),
                           y1 = std::min<std::int64_t>(h, cy + size - size / 2);
        const std::int64_t x0 = std::max<std::int64_t>(0, cx - size / 2),
                           x1 = std::min<std::int64_t>(w, cx + size - size / 2);
        xt::view(batch, i, xt::all(), xt::range(y0, y1), xt::range(x0, x1)) = fill;
    }
}

}  // namespace sdeuq::nn
