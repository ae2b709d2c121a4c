#include "nn/transforms.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace sdeuq::nn {

namespace {

void check(std::span<float> images, std::size_t n, std::size_t c, std::size_t h, std::size_t w,
           const char* op) {
    if (images.size() != n * c * h * w)
        throw std::invalid_argument(
            fmt::format("{}: {} values for a batch of [{}, {}, {}, {}]", op, images.size(), n, c, h, w));
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
    std::vector<float> src(c * h * w);
    for (std::size_t i = 0; i < n; ++i) {
        // Offset of the crop in the padded image, minus the padding: the source pixel of output (r, q) is
        // (r + dy, q + dx) with dy, dx in [-padding, padding].
        const std::int64_t dy = uniform_int(gen, 2 * padding + 1) - padding;
        const std::int64_t dx = uniform_int(gen, 2 * padding + 1) - padding;
        float* img = images.data() + i * c * h * w;
        std::copy(img, img + c * h * w, src.begin());
        for (std::size_t ch = 0; ch < c; ++ch)
            for (std::size_t r = 0; r < h; ++r)
                for (std::size_t q = 0; q < w; ++q) {
                    const std::int64_t sr = std::int64_t(r) + dy, sq = std::int64_t(q) + dx;
                    const bool in = sr >= 0 && sq >= 0 && sr < std::int64_t(h) && sq < std::int64_t(w);
                    img[(ch * h + r) * w + q] =
                        in ? src[(ch * h + static_cast<std::size_t>(sr)) * w + static_cast<std::size_t>(sq)]
                           : fill;
                }
    }
}

void cutout(std::span<float> images, std::size_t n, std::size_t c, std::size_t h, std::size_t w, int size,
            double prob, Generator& gen, float fill) {
    check(images, n, c, h, w, "cutout");
    if (size < 0 || !(prob >= 0 && prob <= 1))
        throw std::invalid_argument(
            fmt::format("cutout: size {} must be >= 0 and probability {} in [0, 1]", size, prob));
    for (std::size_t i = 0; i < n; ++i) {
        // Draw all three numbers for every image so one image's outcome does not shift the next one's draws.
        const bool apply = gen.uniform() < prob;
        const std::int64_t cy = uniform_int(gen, std::int64_t(h)), cx = uniform_int(gen, std::int64_t(w));
        if (!apply) continue;
        const std::int64_t y0 = std::max<std::int64_t>(0, cy - size / 2),
                           y1 = std::min<std::int64_t>(h, cy + size - size / 2);
        const std::int64_t x0 = std::max<std::int64_t>(0, cx - size / 2),
                           x1 = std::min<std::int64_t>(w, cx + size - size / 2);
        float* img = images.data() + i * c * h * w;
        for (std::size_t ch = 0; ch < c; ++ch)
            for (std::int64_t r = y0; r < y1; ++r)
                for (std::int64_t q = x0; q < x1; ++q)
                    img[(ch * h + std::size_t(r)) * w + std::size_t(q)] = fill;
    }
}

}  // namespace sdeuq::nn
