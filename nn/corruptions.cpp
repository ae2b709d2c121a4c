#include "nn/corruptions.hpp"

#include <fmt/format.h>
#include <zlib.h>

#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <numeric>
#include <stdexcept>
#include <utility>

namespace sdeuq::data {

namespace fs = std::filesystem;

namespace {

struct Spec {
    const char* name;
    std::array<double, num_severities> param;
};

// The table of corruptions.hpp; the order fixes the stream tags, so append only.
constexpr std::array<Spec, 9> specs{{
    {"gaussian_noise", {0.08, 0.12, 0.18, 0.26, 0.38}},
    {"shot_noise", {60, 25, 12, 5, 3}},
    {"impulse_noise", {0.03, 0.06, 0.09, 0.17, 0.27}},
    {"gaussian_blur", {0.5, 0.75, 1.0, 1.25, 1.5}},
    {"rotate", {10, 20, 30, 40, 50}},
    {"shear", {0.1, 0.2, 0.3, 0.4, 0.5}},
    {"translate", {1, 2, 3, 4, 5}},
    {"contrast", {0.6, 0.45, 0.3, 0.2, 0.1}},
    {"brightness", {0.1, 0.2, 0.3, 0.4, 0.5}},
}};

std::string allowed_names() {
    std::string s;
    for (const auto& sp : specs) s += (s.empty() ? "" : ", ") + std::string(sp.name);
    return s;
}

std::size_t spec_index(const std::string& name) {
    for (std::size_t k = 0; k < specs.size(); ++k)
        if (name == specs[k].name) return k;
    throw std::invalid_argument(
        fmt::format("corruption '{}' is unknown (allowed: {})", name, allowed_names()));
}

void check_severity(int severity, int lo) {
    if (severity < lo || severity > num_severities)
        throw std::invalid_argument(fmt::format("corruption severity {} is out of range (allowed: {}..{})",
                                                severity, lo, num_severities));
}

float clip01(double v) {
    return static_cast<float>(std::clamp(v, 0.0, 1.0));
}

// An image's floats as an [h, w] array (no copy).
template <class T>
auto image_view(std::span<T> v, std::size_t h, std::size_t w) {
    return xt::adapt(v.data(), v.size(), xt::no_ownership(), std::array<std::size_t, 2>{h, w});
}

// An expression of doubles clipped to [0, 1] and rounded to float, as clip01 does for one value.
template <class E>
auto clipped01(E&& e) {
    return xt::cast<float>(xt::clip(std::forward<E>(e), 0.0, 1.0));
}

// Bilinear sample of `in` at (y, x) with zero outside the image (the MNIST background).
double bilinear(std::span<const float> in, std::size_t h, std::size_t w, double y, double x) {
    const double fy = std::floor(y), fx = std::floor(x);
    const double ty = y - fy, tx = x - fx;
    const auto y0 = static_cast<long>(fy), x0 = static_cast<long>(fx);
    auto at = [&](long r, long c) -> double {
        if (r < 0 || c < 0 || r >= static_cast<long>(h) || c >= static_cast<long>(w)) return 0.0;
        return in[static_cast<std::size_t>(r) * w + static_cast<std::size_t>(c)];
    };
    return (1 - ty) * ((1 - tx) * at(y0, x0) + tx * at(y0, x0 + 1)) +
           ty * ((1 - tx) * at(y0 + 1, x0) + tx * at(y0 + 1, x0 + 1));
}

// out(r, c) = in(A (r, c) + b) for the inverse map of an affine transform about the image centre.
void affine(std::span<const float> in, std::span<float> out, std::size_t h, std::size_t w, double a_yy,
            double a_yx, double a_xy, double a_xx) {
    const double cy = (static_cast<double>(h) - 1) / 2, cx = (static_cast<double>(w) - 1) / 2;
    for (std::size_t r = 0; r < h; ++r)
        for (std::size_t c = 0; c < w; ++c) {
            const double dy = static_cast<double>(r) - cy, dx = static_cast<double>(c) - cx;
            out[r * w + c] =
                clip01(bilinear(in, h, w, cy + a_yy * dy + a_yx * dx, cx + a_xy * dy + a_xx * dx));
        }
}

// Knuth's multiplication method (TAOCP vol. 2, 3.4.1): exact Poisson draws; means here are <= 60.
std::int64_t poisson(double mean, Rng& rng) {
    const double limit = std::exp(-mean);
    double prod = rng.uniform01();
    std::int64_t k = 0;
    while (prod > limit) {
        ++k;
        prod *= rng.uniform01();
    }
    return k;
}

std::uint64_t stream_seed(std::uint64_t seed, const std::string& tag, std::size_t k, int severity) {
    std::uint64_t h = splitmix64(seed ^ 0x636f7272757074ULL);  // "corrupt"
    for (const char ch : tag) h = splitmix64(h ^ static_cast<unsigned char>(ch));
    h = splitmix64(h ^ (k + 1));
    return splitmix64(h ^ static_cast<std::uint64_t>(severity));
}

}  // namespace

const std::vector<std::string>& corruption_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (const auto& sp : specs) v.emplace_back(sp.name);
        return v;
    }();
    return names;
}

double corruption_parameter(const std::string& corruption, int severity) {
    const std::size_t k = spec_index(corruption);
    check_severity(severity, 1);
    return specs[k].param[static_cast<std::size_t>(severity - 1)];
}

void corrupt_image(std::span<const float> in, std::span<float> out, std::size_t h, std::size_t w,
                   const std::string& corruption, int severity, Rng& rng) {
    const std::size_t k = spec_index(corruption);
    check_severity(severity, 0);
    const std::size_t n = h * w;
    if (in.size() != n || out.size() != n)
        throw std::invalid_argument(
            fmt::format("corrupt_image({}): image of {} values and output of {} for a "
                        "{}x{} image",
                        corruption, in.size(), out.size(), h, w));
    if (severity == 0) {
        std::copy(in.begin(), in.end(), out.begin());
        return;
    }
    const double p = specs[k].param[static_cast<std::size_t>(severity - 1)];
    const std::string name = specs[k].name;
    const auto x = image_view(in, h, w);
    auto y = image_view(out, h, w);
    if (name == "gaussian_noise") {
        for (std::size_t i = 0; i < n; ++i) out[i] = clip01(in[i] + p * rng.normal());
    } else if (name == "shot_noise") {
        for (std::size_t i = 0; i < n; ++i)
            out[i] = clip01(static_cast<double>(poisson(p * std::max(0.0, double(in[i])), rng)) / p);
    } else if (name == "impulse_noise") {
        // skimage.util.random_noise(mode='s&p', amount=a, salt_vs_pepper=0.5), as CIFAR-10-C: a fraction a
        // of the pixels (each independently), half of them set to 1 and half to 0.
        for (std::size_t i = 0; i < n; ++i) {
            const double u = rng.uniform01();
            out[i] = u < p / 2 ? 1.0f : u < p ? 0.0f : in[i];
        }
    } else if (name == "gaussian_blur") {
        const int radius = static_cast<int>(std::ceil(3 * p));
        std::vector<double> ker(static_cast<std::size_t>(2 * radius + 1));
        double s = 0;
        for (int j = -radius; j <= radius; ++j)
            s += ker[static_cast<std::size_t>(j + radius)] = std::exp(-0.5 * j * j / (p * p));
        for (auto& v : ker) v /= s;
        std::vector<double> tmp(n);
        auto clampi = [](long v, std::size_t m) {
            return static_cast<std::size_t>(std::clamp<long>(v, 0, static_cast<long>(m) - 1));
        };
        for (std::size_t r = 0; r < h; ++r)
            for (std::size_t c = 0; c < w; ++c) {
                double acc = 0;
                for (int j = -radius; j <= radius; ++j)
                    acc += ker[static_cast<std::size_t>(j + radius)] * in[r * w + clampi(long(c) + j, w)];
                tmp[r * w + c] = acc;
            }
        for (std::size_t r = 0; r < h; ++r)
            for (std::size_t c = 0; c < w; ++c) {
                double acc = 0;
                for (int j = -radius; j <= radius; ++j)
                    acc += ker[static_cast<std::size_t>(j + radius)] * tmp[clampi(long(r) + j, h) * w + c];
                out[r * w + c] = clip01(acc);
            }
    } else if (name == "rotate") {
        const double sign = rng.uniform01() < 0.5 ? -1.0 : 1.0;
        const double th = sign * p * std::numbers::pi / 180;
        // Inverse rotation: the source of output (dy, dx) is R(-th) (dy, dx).
        affine(in, out, h, w, std::cos(th), -std::sin(th), std::sin(th), std::cos(th));
    } else if (name == "shear") {
        const double sign = rng.uniform01() < 0.5 ? -1.0 : 1.0;
        affine(in, out, h, w, 1.0, 0.0, -sign * p, 1.0);
    } else if (name == "translate") {
        static constexpr std::array<std::array<int, 2>, 8> dirs{
            {{-1, -1}, {-1, 0}, {-1, 1}, {0, -1}, {0, 1}, {1, -1}, {1, 0}, {1, 1}}};
        const auto& d = dirs[rng.uniform_index(8)];
        // The source of output (r, c) is (r - d0 t, c - d1 t), black outside the image: in the image padded
        // by t on every side, (r + (1 - d0) t, c + (1 - d1) t).
        const auto t = static_cast<std::size_t>(p);
        const auto oy = static_cast<std::size_t>(1 - d[0]) * t, ox = static_cast<std::size_t>(1 - d[1]) * t;
        xt::xtensor<float, 2> padded(std::array<std::size_t, 2>{h + 2 * t, w + 2 * t}, 0.0f);
        xt::view(padded, xt::range(t, t + h), xt::range(t, t + w)) = x;
        y = xt::view(padded, xt::range(oy, oy + h), xt::range(ox, ox + w));
    } else if (name == "contrast") {
        const double m = std::accumulate(in.begin(), in.end(), 0.0) / static_cast<double>(n);
        y = clipped01(m + p * (xt::cast<double>(x) - m));
    } else {  // brightness
        y = clipped01(xt::cast<double>(x) + p);
    }
}

Dataset corrupt(const Dataset& clean, const std::string& dataset_tag, const std::string& corruption,
                int severity, std::uint64_t seed) {
    const std::size_t k = spec_index(corruption);
    check_severity(severity, 0);
    if (clean.shape.size() != 3 || clean.shape[0] != 1)
        throw std::invalid_argument(
            fmt::format("corrupt({}): expects grey-scale images of shape [1, H, W], "
                        "got {} dimensions",
                        corruption, clean.shape.size()));
    const std::size_t h = clean.shape[1], w = clean.shape[2], ss = h * w;
    Dataset out = clean;
    const std::uint64_t base = stream_seed(seed, dataset_tag, k, severity);
    for (std::size_t i = 0; i < clean.n; ++i) {
        Rng rng(base, Stream::user, i);
        std::span<float> dst(out.images.data() + i * ss, ss);
        corrupt_image(clean.image(i), dst, h, w, corruption, severity, rng);
        // The files store bytes; round here so memory and files agree.
        auto d = image_view(dst, h, w);
        d = xt::cast<float>(xt::round(xt::cast<double>(d) * 255.0)) / 255.0f;
    }
    return out;
}

fs::path corruption_dir(const fs::path& data_dir, const std::string& base) {
    if (base != "mnist" && base != "fashion-mnist")
        throw std::invalid_argument(
            fmt::format("corruption suite base '{}' is unknown (allowed: mnist, fashion-mnist)", base));
    return data_dir / (base + "-c");
}

Dataset load_corruption(const fs::path& data_dir, const std::string& base, const std::string& corruption,
                        int severity) {
    spec_index(corruption);
    check_severity(severity, 1);
    const fs::path dir = corruption_dir(data_dir, base) / corruption / std::to_string(severity);
    auto find = [&](const std::string& name) {
        for (const fs::path& p : {dir / (name + ".gz"), dir / name})
            if (fs::exists(p)) return p;
        throw std::runtime_error(fmt::format(
            "{}: file not found (nor without .gz). The corruption suite is generated, not downloaded: run "
            "scripts/make-corruptions (it builds the generator, writes <data>/mnist-c and "
            "<data>/fashion-mnist-c and checks them against scripts/corruptions.sha256)",
            (dir / (name + ".gz")).string()));
    };
    return load_idx_dataset(find("t10k-images-idx3-ubyte"), find("t10k-labels-idx1-ubyte"));
}

void write_idx(const fs::path& path, const std::vector<std::size_t>& dims, std::span<const std::uint8_t> data,
               bool gzip) {
    if (dims.empty() || dims.size() > 4)
        throw std::invalid_argument(
            fmt::format("write_idx({}): {} dimensions (allowed 1..4)", path.string(), dims.size()));
    std::size_t total = 1;
    for (auto d : dims) total *= d;
    if (total != data.size())
        throw std::invalid_argument(fmt::format("write_idx({}): dims hold {} values, data has {}",
                                                path.string(), total, data.size()));
    std::vector<std::uint8_t> bytes = {0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
    for (auto d : dims)
        for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<std::uint8_t>((d >> s) & 0xff));
    bytes.insert(bytes.end(), data.begin(), data.end());
    const fs::path tmp = path.string() + ".part";
    auto fail = [&](const std::string& what) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw std::runtime_error(fmt::format("{}: {}", path.string(), what));
    };
    if (gzip) {
        // gzopen writes a fixed header (no name, mtime 0), so the bytes depend only on the data and zlib.
        gzFile f = gzopen(tmp.c_str(), "wb6");
        if (f == nullptr) fail("cannot open for writing");
        const int wrote = gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
        if (gzclose(f) != Z_OK || wrote != static_cast<int>(bytes.size())) fail("gzip write failed");
    } else {
        std::FILE* f = std::fopen(tmp.c_str(), "wb");
        if (f == nullptr) fail("cannot open for writing");
        const std::size_t wrote = std::fwrite(bytes.data(), 1, bytes.size(), f);
        if (std::fclose(f) != 0 || wrote != bytes.size()) fail("write failed");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) fail("rename of the temporary file failed: " + ec.message());
}

}  // namespace sdeuq::data
