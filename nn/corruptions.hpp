// A seeded MNIST-C-style corruption suite (after Mu & Gilmer, "MNIST-C: A robustness benchmark for computer
// vision", 2019, and Hendrycks & Dietterich's CIFAR-10-C severities, 2019) for 28x28 grey-scale test sets.
//
// Nine corruptions at severities 1..5 (severity 0 is the identity); the parameters per severity are in
// corruption_parameter() and the report of every experiment that uses the suite:
//   gaussian_noise  x + N(0, s^2)                         s = .08 .12 .18 .26 .38   (CIFAR-10-C's values)
//   shot_noise      Poisson(lambda x) / lambda            lambda = 60 25 12 5 3     (CIFAR-10-C)
//   impulse_noise   salt and pepper, fraction a           a = .03 .06 .09 .17 .27   (CIFAR-10-C)
//   gaussian_blur   separable Gaussian, sd s pixels       s = .5 .75 1 1.25 1.5     (edges clamped)
//   rotate          +-d degrees about the centre          d = 10 20 30 40 50        (random sign, bilinear)
//   shear           x' = x + k (y - centre), +-k          k = .1 .2 .3 .4 .5        (random sign, bilinear)
//   translate       t pixels along one of 8 directions     t = 1 2 3 4 5             (random direction)
//   contrast        m + c (x - m), m the image mean        c = .6 .45 .3 .2 .1
//   brightness      x + b                                 b = .1 .2 .3 .4 .5
// Every result is clipped to [0, 1] and rounded to a byte (round(255 x) / 255), exactly as the files store
// it, so corrupt() in memory and load_corruption() from the files give the same floats.
//
// Randomness: image i of corruption k at severity s of data set tag d draws from its own
// Rng(splitmix64(seed ^ ...(d, k, s)), Stream::user, i), so every image depends only on (seed, d, k, s, i):
// the files do not depend on the order or the thread count of the generation.
//
// Files (written by scripts/make-corruptions, which runs build/experiments/make_corruptions and checks the
// committed manifest scripts/corruptions.sha256): for base "mnist" and "fashion-mnist",
//   <data>/<base>-c/<corruption>/<severity>/t10k-images-idx3-ubyte.gz   10000 x 28 x 28 bytes
//   <data>/<base>-c/<corruption>/<severity>/t10k-labels-idx1-ubyte.gz   the clean test labels, same order
// i.e. every directory is an MNIST-layout test split (load_idx_dataset reads it too).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "nn/data.hpp"

namespace sdeuq::data {

inline constexpr int num_severities = 5;

// The corruption names in the suite's order.
const std::vector<std::string>& corruption_names();
// The parameter of `corruption` at `severity` (1..5) from the table above. Throws std::invalid_argument
// naming the allowed values for an unknown name or a severity outside 1..5.
double corruption_parameter(const std::string& corruption, int severity);

// Corrupts one h x w image `in` (values in [0, 1]) into `out` (same size, not aliasing `in`). Severity 0
// copies `in`. The result is clipped to [0, 1] but not rounded to bytes.
void corrupt_image(std::span<const float> in, std::span<float> out, std::size_t h, std::size_t w,
                   const std::string& corruption, int severity, Rng& rng);

// The corrupted copy of `clean` (its images in [0, 1], not normalised), rounded to bytes as stored.
// `dataset_tag` separates the random streams of different base sets ("mnist", "fashion-mnist").
Dataset corrupt(const Dataset& clean, const std::string& dataset_tag, const std::string& corruption,
                int severity, std::uint64_t seed);

// The default seed of the committed suite (scripts/make-corruptions --seed changes it, and then the
// manifest no longer matches).
inline constexpr std::uint64_t corruption_suite_seed = 20190201;

// <data_dir>/<base>-c, base "mnist" or "fashion-mnist".
std::filesystem::path corruption_dir(const std::filesystem::path& data_dir, const std::string& base);

// Loads the corrupted test split written by scripts/make-corruptions. A missing file throws
// std::runtime_error naming it and saying to run scripts/make-corruptions; an unknown base, corruption or
// severity throws std::invalid_argument naming the allowed values.
Dataset load_corruption(const std::filesystem::path& data_dir, const std::string& base,
                        const std::string& corruption, int severity);

// Writes an IDX file of unsigned bytes (magic 0x000008NN, big-endian sizes; see load_idx), gzip-compressed
// at level 6 when `gzip`, atomically (a temporary name, then a rename). Throws std::runtime_error naming
// the file on any I/O error.
void write_idx(const std::filesystem::path& path, const std::vector<std::size_t>& dims,
               std::span<const std::uint8_t> data, bool gzip);

}  // namespace sdeuq::data
