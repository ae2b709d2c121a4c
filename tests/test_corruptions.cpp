// The MNIST-C-style corruption suite (nn/corruptions.hpp): determinism per seed, shapes and value range,
// severity 0 = identity and a monotone effect of the severity, the IDX writer and the loader's errors.
// Synthetic digit-like images (a bright bar and a disc on a black background), so the test does not need
// the data files; tests/corruptions_manifest.sh checks regenerated files against the committed manifest.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "nn/corruptions.hpp"

namespace d = sdeuq::data;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

d::Dataset synthetic(std::size_t n) {
    d::Dataset ds;
    ds.n = n;
    ds.shape = {1, 28, 28};
    ds.num_classes = 10;
    ds.images.assign(n * 784, 0.0f);
    for (std::size_t i = 0; i < n; ++i) {
        ds.labels.push_back(static_cast<std::int32_t>(i % 10));
        const double cy = 10.0 + double(i % 7), cx = 9.0 + double(i % 9), rad = 3.0 + double(i % 3);
        for (std::size_t r = 0; r < 28; ++r)
            for (std::size_t c = 0; c < 28; ++c) {
                float v = 0;
                if (std::hypot(double(r) - cy, double(c) - cx) < rad)
                    v = 230.0f / 255.0f;  // bytes, as the data sets store them
                if (c >= 12 && c <= 14 && r >= 4 && r <= 23) v = 1.0f;
                ds.images[i * 784 + r * 28 + c] = v;
            }
    }
    return ds;
}

double mean_abs_diff(const d::Dataset& a, const d::Dataset& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.images.size(); ++i) s += std::abs(double(a.images[i]) - b.images[i]);
    return s / double(a.images.size());
}

}  // namespace

TEST_CASE("corruptions: same seed same images, other seed other noise, shapes and range kept",
          "[corruptions]") {
    const auto clean = synthetic(12);
    REQUIRE(d::corruption_names().size() >= 8);
    for (const auto& name : d::corruption_names()) {
        for (int s = 1; s <= d::num_severities; ++s) {
            const auto a = d::corrupt(clean, "mnist", name, s, 7);
            const auto b = d::corrupt(clean, "mnist", name, s, 7);
            INFO(name << " severity " << s);
            CHECK(a.images == b.images);
            CHECK(a.labels == clean.labels);
            CHECK(a.n == clean.n);
            CHECK(a.shape == clean.shape);
            REQUIRE(a.images.size() == clean.images.size());
            bool in_range = true, bytes = true;
            for (float v : a.images) {
                in_range = in_range && v >= 0.0f && v <= 1.0f;
                // stored as bytes: exactly k / 255
                bytes = bytes && std::abs(double(v) * 255 - std::round(double(v) * 255)) < 1e-4;
            }
            CHECK(in_range);
            CHECK(bytes);
        }
    }
    // The random corruptions depend on the seed and on the base set's tag; the deterministic ones do not.
    for (const std::string name :
         {"gaussian_noise", "shot_noise", "impulse_noise", "rotate", "shear", "translate"}) {
        INFO(name);
        const auto a = d::corrupt(clean, "mnist", name, 3, 7);
        CHECK(a.images != d::corrupt(clean, "mnist", name, 3, 8).images);
        CHECK(a.images != d::corrupt(clean, "fashion-mnist", name, 3, 7).images);
    }
    for (const std::string name : {"gaussian_blur", "contrast", "brightness"})
        CHECK(d::corrupt(clean, "mnist", name, 3, 7).images == d::corrupt(clean, "mnist", name, 3, 8).images);
}

TEST_CASE("corruptions: severity 0 is the identity and the effect grows with the severity", "[corruptions]") {
    const auto clean = synthetic(40);
    for (const auto& name : d::corruption_names()) {
        INFO(name);
        CHECK(d::corrupt(clean, "mnist", name, 0, 3).images == clean.images);
        double prev = 0;
        for (int s = 1; s <= d::num_severities; ++s) {
            const double diff = mean_abs_diff(d::corrupt(clean, "mnist", name, s, 3), clean);
            INFO("severity " << s << ": mean |x_s - x| = " << diff << ", previous " << prev);
            CHECK(diff > prev);
            prev = diff;
        }
    }
}

TEST_CASE("corruptions: hand-checked values of the deterministic corruptions", "[corruptions]") {
    sdeuq::data::Rng rng(1, d::Stream::user);
    std::vector<float> img(9, 0.0f), out(9);
    img[4] = 0.5f;  // 3x3, centre pixel 0.5, mean 0.5 / 9
    d::corrupt_image(img, out, 3, 3, "brightness", 2, rng);
    CHECK(out[0] == Approx(0.2));
    CHECK(out[4] == Approx(0.7));
    d::corrupt_image(img, out, 3, 3, "contrast", 1, rng);  // m + 0.6 (x - m)
    CHECK(out[0] == Approx(0.5 / 9 * 0.4));
    CHECK(out[4] == Approx(0.5 / 9 + 0.6 * (0.5 - 0.5 / 9)));
    d::corrupt_image(img, out, 3, 3, "translate", 1, rng);  // one pixel in one of 8 directions
    int moved = 0;
    for (int i = 0; i < 9; ++i) moved += out[static_cast<std::size_t>(i)] == 0.5f && i != 4;
    CHECK(moved == 1);
    CHECK(out[4] == 0.0f);
    d::corrupt_image(img, out, 3, 3, "gaussian_blur", 3, rng);  // sd 1, kernel radius 3, edges clamped
    double s = 0;
    for (int j = -3; j <= 3; ++j) s += std::exp(-0.5 * j * j);
    const double k0 = 1 / s, k1 = std::exp(-0.5) / s;
    CHECK(out[4] == Approx(0.5 * k0 * k0));
    CHECK(out[1] == Approx(0.5 * k1 * k0));
    CHECK(out[0] == Approx(0.5 * k1 * k1));
    CHECK(d::corruption_parameter("shot_noise", 5) == 3.0);
}

TEST_CASE("corruptions: bad names and severities are named in the error", "[corruptions]") {
    const auto clean = synthetic(2);
    CHECK_THROWS_WITH(d::corrupt(clean, "mnist", "fog", 1, 0), Contains("fog") && Contains("gaussian_noise"));
    CHECK_THROWS_WITH(d::corrupt(clean, "mnist", "rotate", 6, 0), Contains("6") && Contains("0..5"));
    CHECK_THROWS_WITH(d::load_corruption("/nonexistent", "mnist", "rotate", 0), Contains("1..5"));
    CHECK_THROWS_WITH(d::load_corruption("/nonexistent", "cifar", "rotate", 1), Contains("fashion-mnist"));
}

TEST_CASE("corruptions: written files load back as the in-memory suite; a missing file says what to run",
          "[corruptions]") {
    const fs::path dir = fs::temp_directory_path() / ("sdeuq_corr_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    CHECK_THROWS_WITH(d::load_corruption(dir, "fashion-mnist", "shear", 2),
                      Contains("shear/2/t10k-") && Contains("scripts/make-corruptions"));
    const auto clean = synthetic(5);
    const auto c = d::corrupt(clean, "fashion-mnist", "shear", 2, 11);
    std::vector<std::uint8_t> img(c.images.size()), lab(c.n);
    for (std::size_t i = 0; i < img.size(); ++i)
        img[i] = static_cast<std::uint8_t>(std::lround(c.images[i] * 255.0));
    for (std::size_t i = 0; i < c.n; ++i) lab[i] = static_cast<std::uint8_t>(c.labels[i]);
    const fs::path sub = d::corruption_dir(dir, "fashion-mnist") / "shear" / "2";
    fs::create_directories(sub);
    d::write_idx(sub / "t10k-images-idx3-ubyte.gz", {c.n, 28, 28}, img, true);
    d::write_idx(sub / "t10k-labels-idx1-ubyte", {c.n}, lab, false);
    const auto back = d::load_corruption(dir, "fashion-mnist", "shear", 2);
    CHECK(back.images == c.images);
    CHECK(back.labels == c.labels);
    CHECK_THROWS_WITH(d::write_idx(sub / "x", {3, 3}, img, false), Contains("dims hold 9"));
    fs::remove_all(dir);
}
