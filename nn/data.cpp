#include "nn/data.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <new>
#include <numbers>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>
#include <zlib.h>

// The build passes -DSDEUQ_SOURCE_DIR="<repo root>" so binaries find <repo>/data from any working
// directory; without it we fall back to "./data".
#ifndef SDEUQ_SOURCE_DIR
#define SDEUQ_SOURCE_DIR ""
#endif

namespace sdeuq::data {

namespace fs = std::filesystem;

// ---- data directory -------------------------------------------------------------------------------------

fs::path default_data_dir() {
    if (const char* env = std::getenv("SDEUQ_DATA"); env != nullptr && *env != '\0') return fs::path(env);
    const std::string source_dir = SDEUQ_SOURCE_DIR;
    if (source_dir.empty()) return fs::path("data");
    return fs::path(source_dir) / "data";
}

fs::path resolve_data_dir(const std::string& cli_value) {
    return cli_value.empty() ? default_data_dir() : fs::path(cli_value);
}

// ---- IDX ------------------------------------------------------------------------------------------------

namespace {

[[noreturn]] void data_error(const fs::path& path, const std::string& what) {
    throw std::runtime_error(fmt::format(
        "{}: {}. The data files are missing or damaged: run scripts/fetch-data (it downloads and verifies "
        "them into $SDEUQ_DATA or <repo>/data; experiments take --data DIR to read another directory)",
        path.string(), what));
}

std::vector<std::uint8_t> read_file(const fs::path& path) {
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (ec || !fs::exists(status)) data_error(path, "file not found");
    if (!fs::is_regular_file(status)) data_error(path, "not a regular file");
    const auto size = fs::file_size(path, ec);
    if (ec) data_error(path, fmt::format("cannot determine the file size ({})", ec.message()));
    std::ifstream in(path, std::ios::binary);
    if (!in) data_error(path, "cannot be opened for reading");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
        data_error(path, fmt::format("read error after {} of {} bytes", in.gcount(), size));
    }
    return bytes;
}

bool has_gzip_magic(const std::vector<std::uint8_t>& bytes) {
    // RFC 1952 section 2.3.1: ID1 = 0x1f, ID2 = 0x8b.
    return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

// The IDX size its header declares (header + product of the dims), once `n` bytes of it are known;
// SIZE_MAX while the header is incomplete or not an IDX header (load_idx then reports what is wrong).
std::size_t idx_declared_size(const std::uint8_t* p, std::size_t n) {
    if (n < 4 || p[0] != 0 || p[1] != 0 || p[2] != 0x08 || p[3] < 1 || p[3] > 4)
        return std::numeric_limits<std::size_t>::max();
    const std::size_t header = 4 + 4 * std::size_t{p[3]};
    if (n < header) return std::numeric_limits<std::size_t>::max();
    std::size_t total = 1;
    for (std::size_t k = 0; k < p[3]; ++k) {
        const std::size_t d = (std::size_t{p[4 + 4 * k]} << 24) | (std::size_t{p[5 + 4 * k]} << 16) |
                              (std::size_t{p[6 + 4 * k]} << 8) | std::size_t{p[7 + 4 * k]};
        if (d != 0 && total > std::numeric_limits<std::size_t>::max() / d)
            return std::numeric_limits<std::size_t>::max();
        total *= d;
    }
    return total > std::numeric_limits<std::size_t>::max() - header ? std::numeric_limits<std::size_t>::max()
                                                                    : header + total;
}

// Inflates a complete gzip file (RFC 1952), including multi-member files as produced by concatenation. It
// stops as soon as the output exceeds the size the IDX header at its start declares (a small file cannot
// inflate to gigabytes before it is refused).
std::vector<std::uint8_t> gunzip(const std::vector<std::uint8_t>& in, const fs::path& path) {
    if (in.size() > std::numeric_limits<uInt>::max()) data_error(path, "gzip file larger than 4 GiB");
    std::vector<std::uint8_t> out;
    if (in.size() >= 18) {
        // ISIZE trailer = uncompressed size mod 2^32 of the last member; only a capacity hint.
        const std::size_t n = in.size();
        const std::uint32_t isize = std::uint32_t(in[n - 4]) | (std::uint32_t(in[n - 3]) << 8) |
                                    (std::uint32_t(in[n - 2]) << 16) | (std::uint32_t(in[n - 1]) << 24);
        out.reserve(std::min<std::size_t>(isize, std::size_t{1} << 28));
    }
    z_stream zs{};
    // 16 + MAX_WBITS: expect a gzip wrapper (not zlib/raw deflate).
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) data_error(path, "zlib inflateInit2 failed");
    zs.next_in = const_cast<Bytef*>(in.data());
    zs.avail_in = static_cast<uInt>(in.size());
    std::size_t produced = 0;
    constexpr std::size_t chunk = std::size_t{1} << 20;
    for (;;) {
        if (out.size() - produced < chunk) out.resize(produced + chunk);
        zs.next_out = out.data() + produced;
        zs.avail_out = static_cast<uInt>(out.size() - produced);
        const int ret = inflate(&zs, Z_NO_FLUSH);
        produced = out.size() - zs.avail_out;
        if (const std::size_t declared = idx_declared_size(out.data(), produced); produced > declared) {
            inflateEnd(&zs);
            data_error(path, fmt::format("corrupt: the gzip data decompresses to more than the {} bytes its IDX "
                                         "header declares (stopped after {})",
                                         declared, produced));
        }
        if (ret == Z_STREAM_END) {
            if (zs.avail_in == 0) break;
            if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
                inflateReset(&zs); // next member
                continue;
            }
            const auto trailing = zs.avail_in;
            inflateEnd(&zs);
            data_error(path, fmt::format("corrupt gzip file: {} unexpected bytes after the compressed data",
                                         trailing));
        }
        if (ret == Z_OK) continue;
        if (ret == Z_BUF_ERROR && zs.avail_in == 0) {
            inflateEnd(&zs);
            data_error(path, fmt::format("truncated gzip file: compressed stream ends early (after {} "
                                         "compressed bytes, {} decompressed)",
                                         in.size(), produced));
        }
        const std::string msg = zs.msg != nullptr ? zs.msg : fmt::format("zlib error {}", ret);
        inflateEnd(&zs);
        data_error(path, fmt::format("corrupt gzip file: {} (after {} decompressed bytes)", msg, produced));
    }
    inflateEnd(&zs);
    out.resize(produced);
    return out;
}

std::uint32_t read_be32(const std::uint8_t* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
           std::uint32_t(p[3]);
}

} // namespace

namespace {
IdxArray load_idx_unguarded(const fs::path& path) {
    std::vector<std::uint8_t> bytes = read_file(path);
    const bool gz = has_gzip_magic(bytes);
    if (gz) bytes = gunzip(bytes, path);
    const char* kind = gz ? "decompressed IDX data" : "IDX file";

    if (bytes.size() < 4) {
        data_error(path, fmt::format("truncated: the {} has {} bytes, fewer than the 4-byte magic number",
                                     kind, bytes.size()));
    }
    const std::uint32_t magic = read_be32(bytes.data());
    const unsigned type_code = bytes[2];
    const unsigned ndim = bytes[3];
    if (bytes[0] != 0 || bytes[1] != 0 || type_code != 0x08 || ndim < 1 || ndim > 4) {
        data_error(path, fmt::format("bad magic number 0x{:08x}: expected 0x00000803 (images) or 0x00000801 "
                                     "(labels), i.e. unsigned-byte IDX with 1..4 dimensions",
                                     magic));
    }
    const std::size_t header = 4 + 4 * std::size_t{ndim};
    if (bytes.size() < header) {
        data_error(path, fmt::format("truncated: the {} has {} bytes, fewer than the {}-byte header of a "
                                     "{}-dimensional IDX array",
                                     kind, bytes.size(), header, ndim));
    }
    IdxArray arr;
    std::size_t total = 1;
    std::string dims_text;
    for (unsigned k = 0; k < ndim; ++k) {
        const std::size_t d = read_be32(bytes.data() + 4 + 4 * k);
        if (d == 0) data_error(path, fmt::format("corrupt header: dimension {} is 0", k));
        if (total > std::numeric_limits<std::size_t>::max() / d)
            data_error(path, "corrupt header: size overflow");
        total *= d;
        arr.dims.push_back(d);
        dims_text += (k ? " x " : "") + std::to_string(d);
    }
    const std::size_t payload = bytes.size() - header;
    if (payload < total) {
        data_error(path, fmt::format("truncated: header says {} = {} data bytes but only {} follow the "
                                     "{}-byte header",
                                     dims_text, total, payload, header));
    }
    if (payload > total) {
        data_error(path, fmt::format("corrupt: header says {} = {} data bytes but {} follow the {}-byte "
                                     "header ({} extra)",
                                     dims_text, total, payload, header, payload - total));
    }
    arr.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
    return arr;
}
}  // namespace

IdxArray load_idx(const fs::path& path) {
    try {
        return load_idx_unguarded(path);
    } catch (const std::bad_alloc&) {
        data_error(path, "too large to load: out of memory");
    }
}

// ---- image data sets ------------------------------------------------------------------------------------

std::size_t Dataset::sample_size() const {
    return std::accumulate(shape.begin(), shape.end(), std::size_t{1}, std::multiplies<>());
}

std::span<const float> Dataset::image(std::size_t i) const {
    if (i >= n) throw std::out_of_range(fmt::format("Dataset::image: index {} >= n = {}", i, n));
    const std::size_t s = sample_size();
    return std::span<const float>(images).subspan(i * s, s);
}

Dataset load_idx_dataset(const fs::path& images_path, const fs::path& labels_path) {
    const IdxArray img = load_idx(images_path);
    const IdxArray lab = load_idx(labels_path);
    if (img.dims.size() != 3) {
        data_error(images_path, fmt::format("expected a 3-dimensional image array (N x H x W, magic "
                                            "0x00000803), got {} dimensions",
                                            img.dims.size()));
    }
    if (lab.dims.size() != 1) {
        data_error(labels_path, fmt::format("expected a 1-dimensional label array (magic 0x00000801), got {} "
                                            "dimensions",
                                            lab.dims.size()));
    }
    if (img.dims[0] != lab.dims[0]) {
        data_error(labels_path, fmt::format("has {} labels but {} has {} images", lab.dims[0],
                                            images_path.string(), img.dims[0]));
    }
    constexpr std::size_t num_classes = 10;
    Dataset ds;
    ds.n = img.dims[0];
    ds.shape = {1, img.dims[1], img.dims[2]};
    ds.num_classes = num_classes;
    ds.labels.resize(ds.n);
    for (std::size_t i = 0; i < ds.n; ++i) {
        if (lab.data[i] >= num_classes) {
            data_error(labels_path,
                       fmt::format("corrupt: label {} at index {} is outside 0..9", lab.data[i], i));
        }
        ds.labels[i] = lab.data[i];
    }
    ds.images.resize(img.data.size());
    // Division by 255.0f is exact-rounded and matches torchvision's ToTensor() (byte / 255).
    std::transform(img.data.begin(), img.data.end(), ds.images.begin(),
                   [](std::uint8_t b) { return static_cast<float>(b) / 255.0f; });
    return ds;
}

namespace {

// File names as written by scripts/fetch-data: plain for MNIST, .gz for Fashion-MNIST; both accepted.
fs::path find_idx(const fs::path& dir, const std::string& name) {
    const fs::path plain = dir / name;
    if (fs::exists(plain)) return plain;
    const fs::path gz = dir / (name + ".gz");
    if (fs::exists(gz)) return gz;
    data_error(plain, fmt::format("file not found (nor {}.gz)", name));
}

Dataset load_mnist_like(const fs::path& dir, Split split) {
    const std::string prefix = split == Split::train ? "train" : "t10k";
    const fs::path images = find_idx(dir, prefix + "-images-idx3-ubyte");
    const fs::path labels = find_idx(dir, prefix + "-labels-idx1-ubyte");
    Dataset ds = load_idx_dataset(images, labels);
    if (ds.shape[1] != 28 || ds.shape[2] != 28) {
        data_error(images, fmt::format("expected 28 x 28 images, got {} x {}", ds.shape[1], ds.shape[2]));
    }
    return ds;
}

} // namespace

std::vector<fs::path> mnist_files(const fs::path& data_dir, Split split) {
    const std::string prefix = split == Split::train ? "train" : "t10k";
    return {find_idx(data_dir / "mnist", prefix + "-images-idx3-ubyte"),
            find_idx(data_dir / "mnist", prefix + "-labels-idx1-ubyte")};
}

std::vector<fs::path> fashion_mnist_files(const fs::path& data_dir, Split split) {
    const std::string prefix = split == Split::train ? "train" : "t10k";
    return {find_idx(data_dir / "fashion-mnist", prefix + "-images-idx3-ubyte"),
            find_idx(data_dir / "fashion-mnist", prefix + "-labels-idx1-ubyte")};
}

Dataset load_mnist(const fs::path& data_dir, Split split) {
    return load_mnist_like(data_dir / "mnist", split);
}

Dataset load_fashion_mnist(const fs::path& data_dir, Split split) {
    return load_mnist_like(data_dir / "fashion-mnist", split);
}

MeanStd pixel_mean_std(const Dataset& ds) {
    if (ds.images.empty()) throw std::invalid_argument("pixel_mean_std: empty data set (0 pixels)");
    double sum = 0.0;
    for (float v : ds.images) sum += v;
    const double mu = sum / static_cast<double>(ds.images.size());
    double ss = 0.0;
    for (float v : ds.images) ss += (v - mu) * (v - mu);
    return MeanStd{mu, std::sqrt(ss / static_cast<double>(ds.images.size()))};
}

void normalize(Dataset& ds, MeanStd stats) {
    if (!(stats.std > 0.0) || !std::isfinite(stats.mean)) {
        throw std::invalid_argument(fmt::format(
            "normalize: need finite mean and std > 0, got mean = {}, std = {}", stats.mean, stats.std));
    }
    const double inv = 1.0 / stats.std;
    for (float& v : ds.images) v = static_cast<float>((v - stats.mean) * inv);
}

// ---- deterministic randomness ---------------------------------------------------------------------------

std::uint64_t splitmix64(std::uint64_t x) {
    // Steele, Lea & Flood, "Fast splittable pseudorandom number generators" (OOPSLA 2014); constants of
    // the reference SplitMix64 (also used to seed xoshiro generators).
    std::uint64_t z = x + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

Rng::Rng(std::uint64_t seed, Stream stream, std::uint64_t sub) {
    // Chain the words through SplitMix64 so (seed, stream, sub) triples that differ in any word give
    // unrelated mt19937_64 seeds. mt19937_64's seeding from one word is fixed by [rand.eng.mers].
    std::uint64_t h = splitmix64(seed);
    h = splitmix64(h ^ static_cast<std::uint64_t>(stream));
    h = splitmix64(h ^ sub);
    engine_.seed(h);
}

std::uint64_t Rng::next_u64() { return engine_(); }

std::uint64_t Rng::uniform_index(std::uint64_t n) {
    if (n == 0) throw std::invalid_argument("Rng::uniform_index: n must be >= 1");
    // Rejection sampling: accept x only below the largest multiple of n that fits in 2^64, so x % n is
    // exactly uniform. rem = 2^64 mod n; the acceptance probability is > 1/2 for any n.
    const std::uint64_t rem = (std::numeric_limits<std::uint64_t>::max() % n + 1) % n;
    for (;;) {
        const std::uint64_t x = next_u64();
        if (rem == 0 || x <= std::numeric_limits<std::uint64_t>::max() - rem) return x % n;
    }
}

double Rng::uniform01() {
    // Top 53 bits k, value (k + 0.5) 2^-53: exactly representable, uniform on the 2^53 grid midpoints,
    // never 0 (so log() below is finite) and never 1.
    const std::uint64_t k = next_u64() >> 11;
    return (static_cast<double>(k) + 0.5) * 0x1.0p-53;
}

double Rng::normal() {
    // Box & Muller (1958): for independent U1, U2 ~ U(0, 1), sqrt(-2 ln U1) (cos 2 pi U2, sin 2 pi U2) are
    // two independent standard normals; the sine one is kept for the next call.
    if (has_spare_) {
        has_spare_ = false;
        return spare_;
    }
    const double u1 = uniform01();
    const double u2 = uniform01();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * std::numbers::pi * u2;
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
}

std::vector<std::size_t> epoch_permutation(std::size_t n, std::uint64_t seed, std::uint64_t epoch) {
    std::vector<std::size_t> perm(n);
    std::iota(perm.begin(), perm.end(), std::size_t{0});
    Rng rng(seed, Stream::shuffle, epoch);
    // Durstenfeld's Fisher-Yates: for i = n-1 .. 1 swap perm[i] with a uniform perm[j], j in [0, i].
    for (std::size_t i = n; i > 1; --i) {
        const auto j = static_cast<std::size_t>(rng.uniform_index(i));
        std::swap(perm[i - 1], perm[j]);
    }
    return perm;
}

BatchIterator::BatchIterator(std::size_t n, std::size_t batch_size, std::uint64_t seed, bool shuffle,
                             bool drop_last)
    : n_(n), batch_size_(batch_size), seed_(seed), shuffle_(shuffle), drop_last_(drop_last) {
    if (batch_size == 0)
        throw std::invalid_argument(fmt::format("BatchIterator: batch_size must be > 0 (n = {})", n));
    start_epoch(0);
}

void BatchIterator::start_epoch(std::uint64_t epoch) {
    if (shuffle_) {
        order_ = epoch_permutation(n_, seed_, epoch);
    } else {
        order_.resize(n_);
        std::iota(order_.begin(), order_.end(), std::size_t{0});
    }
    pos_ = 0;
}

std::span<const std::size_t> BatchIterator::next() {
    const std::size_t remaining = n_ - pos_;
    if (remaining == 0 || (drop_last_ && remaining < batch_size_)) return {};
    const std::size_t len = std::min(batch_size_, remaining);
    const auto batch = std::span<const std::size_t>(order_).subspan(pos_, len);
    pos_ += len;
    return batch;
}

std::size_t BatchIterator::num_batches() const {
    return drop_last_ ? n_ / batch_size_ : (n_ + batch_size_ - 1) / batch_size_;
}

void gather(const Dataset& ds, std::span<const std::size_t> idx, std::vector<float>& images,
            std::vector<std::int32_t>& labels) {
    const std::size_t s = ds.sample_size();
    images.resize(idx.size() * s);
    labels.resize(idx.size());
    for (std::size_t k = 0; k < idx.size(); ++k) {
        if (idx[k] >= ds.n) throw std::out_of_range(fmt::format("gather: index {} >= n = {}", idx[k], ds.n));
        std::copy_n(ds.images.begin() + static_cast<std::ptrdiff_t>(idx[k] * s), s,
                    images.begin() + static_cast<std::ptrdiff_t>(k * s));
        labels[k] = ds.labels[idx[k]];
    }
}

Dataset subset(const Dataset& ds, std::size_t n) {
    if (n == 0 || n >= ds.n) return ds;
    Dataset out = ds;
    out.n = n;
    out.images.resize(n * ds.sample_size());
    out.labels.resize(n);
    return out;
}

Tensor batch_tensor(const Dataset& ds, std::span<const std::size_t> idx, std::vector<std::int32_t>& labels) {
    Shape shape;
    shape.push_back(static_cast<std::int64_t>(idx.size()));
    for (std::size_t d : ds.shape) shape.push_back(static_cast<std::int64_t>(d));
    Tensor x = Tensor::empty(shape, DType::f32);
    const std::size_t ss = ds.sample_size();
    labels.clear();
    float* p = x.data<float>();
    for (std::size_t i = 0; i < idx.size(); ++i) {
        if (idx[i] >= ds.n)
            throw std::out_of_range(fmt::format("batch_tensor: index {} >= n = {}", idx[i], ds.n));
        std::copy_n(ds.images.begin() + static_cast<std::ptrdiff_t>(idx[i] * ss), ss, p + i * ss);
        if (!ds.labels.empty()) labels.push_back(ds.labels[idx[i]]);
    }
    return x;
}

// ---- two moons ------------------------------------------------------------------------------------------

std::vector<double> linspace(double start, double stop, std::size_t num) {
    // numpy.linspace: step = (stop - start) / (num - 1); y_i = i * step + start; y_{num-1} = stop.
    std::vector<double> y(num);
    if (num == 0) return y;
    if (num == 1) {
        y[0] = start;
        return y;
    }
    const double step = (stop - start) / static_cast<double>(num - 1);
    for (std::size_t i = 0; i < num; ++i) y[i] = static_cast<double>(i) * step + start;
    y[num - 1] = stop;
    return y;
}

Points2d make_two_moons(std::size_t n_per_class, std::uint64_t seed, double noise) {
    if (n_per_class == 0) throw std::invalid_argument("make_two_moons: n_per_class must be > 0");
    if (!(noise >= 0.0) || !std::isfinite(noise)) {
        throw std::invalid_argument(
            fmt::format("make_two_moons: noise must be finite and >= 0, got {}", noise));
    }
    const std::size_t n = 2 * n_per_class;
    std::vector<double> xy(2 * n);
    std::vector<std::int32_t> labels(n);
    const auto t = linspace(0.0, std::numbers::pi, n_per_class);
    for (std::size_t i = 0; i < n_per_class; ++i) {
        // make_moons: outer moon first (label 0), then inner moon (label 1).
        xy[2 * i] = std::cos(t[i]);
        xy[2 * i + 1] = std::sin(t[i]);
        labels[i] = 0;
        const std::size_t j = n_per_class + i;
        xy[2 * j] = 1.0 - std::cos(t[i]);
        xy[2 * j + 1] = 1.0 - std::sin(t[i]) - 0.5;
        labels[j] = 1;
    }
    Rng rng(seed, Stream::two_moons);
    // Same order of operations as make_moons(shuffle=True): shuffle the rows, then add noise row by row.
    for (std::size_t i = n; i > 1; --i) {
        const auto j = static_cast<std::size_t>(rng.uniform_index(i));
        std::swap(xy[2 * (i - 1)], xy[2 * j]);
        std::swap(xy[2 * (i - 1) + 1], xy[2 * j + 1]);
        std::swap(labels[i - 1], labels[j]);
    }
    for (double& v : xy) v += noise * rng.normal();

    // SNGP tutorial's make_training_data: separate the moons a little.
    Points2d out;
    out.n = n;
    out.labels = std::move(labels);
    out.xy.resize(2 * n);
    for (std::size_t i = 0; i < n; ++i) {
        const double dx = out.labels[i] == 0 ? -0.1 : 0.1;
        const double dy = out.labels[i] == 0 ? 0.2 : -0.2;
        out.xy[2 * i] = static_cast<float>(xy[2 * i] + dx);
        out.xy[2 * i + 1] = static_cast<float>(xy[2 * i + 1] + dy);
    }
    return out;
}

Points2d make_two_moons_ood(std::size_t n, std::uint64_t seed, double mean_x, double mean_y,
                            double variance) {
    if (!(variance >= 0.0) || !std::isfinite(variance)) {
        throw std::invalid_argument(
            fmt::format("make_two_moons_ood: variance must be finite and >= 0, got {}", variance));
    }
    Rng rng(seed, Stream::two_moons_ood);
    const double sd = std::sqrt(variance);
    Points2d out;
    out.n = n;
    out.xy.resize(2 * n);
    for (std::size_t i = 0; i < n; ++i) {
        out.xy[2 * i] = static_cast<float>(mean_x + sd * rng.normal());
        out.xy[2 * i + 1] = static_cast<float>(mean_y + sd * rng.normal());
    }
    return out;
}

Grid2d make_grid(double x_lo, double x_hi, double y_lo, double y_hi, std::size_t nx, std::size_t ny) {
    Grid2d g;
    g.nx = nx;
    g.ny = ny;
    g.xs = linspace(x_lo, x_hi, nx);
    g.ys = linspace(y_lo, y_hi, ny);
    g.points.n = nx * ny;
    g.points.xy.resize(2 * nx * ny);
    // numpy.meshgrid(xs, ys) with the default 'xy' indexing: row iy holds ys[iy], column ix holds xs[ix];
    // flatten() is row-major, so x varies fastest.
    for (std::size_t iy = 0; iy < ny; ++iy) {
        for (std::size_t ix = 0; ix < nx; ++ix) {
            const std::size_t k = iy * nx + ix;
            g.points.xy[2 * k] = static_cast<float>(g.xs[ix]);
            g.points.xy[2 * k + 1] = static_cast<float>(g.ys[iy]);
        }
    }
    return g;
}

// ---------------------------------------------------------------- tabular (scikit-learn CSV)

namespace {

std::vector<std::string> split_csv_line(std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::vector<std::string> cells;
    std::string cur;
    for (char c : line) {
        if (c == ',') {
            cells.push_back(cur);
            cur.clear();
        } else {
            cur.push_back(c);
        }
    }
    cells.push_back(cur);
    for (auto& c : cells) {  // trim spaces and one pair of double quotes
        while (!c.empty() && (c.front() == ' ' || c.front() == '\t')) c.erase(c.begin());
        while (!c.empty() && (c.back() == ' ' || c.back() == '\t')) c.pop_back();
        if (c.size() >= 2 && c.front() == '"' && c.back() == '"') c = c.substr(1, c.size() - 2);
    }
    return cells;
}

bool parse_double(const std::string& s, double& v) {
    if (s.empty()) return false;
    char* end = nullptr;
    errno = 0;
    v = std::strtod(s.c_str(), &end);
    return end == s.c_str() + s.size() && errno == 0 && std::isfinite(v);
}

bool parse_count(const std::string& s, std::size_t& v) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 12) return false;
    v = static_cast<std::size_t>(std::stoull(s));
    return v > 0;
}

}  // namespace

TabularDataset load_sklearn_csv(const std::filesystem::path& path) {
    const std::string name = path.string();
    std::ifstream in(path);
    if (!in)
        throw std::runtime_error(fmt::format("{}: cannot open the file. Run scripts/fetch-data (it downloads and "
                                             "verifies the data sets).", name));
    auto fail = [&](std::size_t line, const std::string& what) {
        return std::runtime_error(fmt::format("{}: line {}: {}", name, line, what));
    };
    std::string line;
    std::size_t lineno = 0;
    if (!std::getline(in, line)) throw fail(1, "empty file (expected 'n_samples,n_features')");
    ++lineno;
    auto head = split_csv_line(line);
    TabularDataset ds;
    if (head.size() < 2 || !parse_count(head[0], ds.n) || !parse_count(head[1], ds.d))
        throw fail(1, fmt::format("expected 'n_samples,n_features' (two positive integers), got '{}'", line));
    for (std::size_t i = 2; i < head.size(); ++i)
        if (!head[i].empty()) throw fail(1, fmt::format("column {}: unexpected cell '{}'", i + 1, head[i]));
    if (!std::getline(in, line)) throw fail(2, "missing the header of column names");
    ++lineno;
    auto names = split_csv_line(line);
    if (names.size() != ds.d + 1)
        throw fail(2, fmt::format("{} column names, expected {} ({} features and the target)", names.size(),
                                  ds.d + 1, ds.d));
    for (std::size_t j = 0; j < names.size(); ++j)
        if (names[j].empty()) throw fail(2, fmt::format("column {}: empty column name", j + 1));
    ds.feature_names.assign(names.begin(), names.end() - 1);
    ds.target_name = names.back();
    // Line 1 is a claim, not a size to allocate: a data row of d + 1 cells takes at least 2 (d + 1) - 1
    // bytes and a line end, so a file of B bytes holds at most B / (2 (d + 1)) + 1 rows. A larger count
    // (e.g. 999999999999) is refused here instead of reserving terabytes (found by tests/fuzz/fuzz_csv).
    std::error_code size_ec;
    const auto bytes = static_cast<std::size_t>(std::filesystem::file_size(path, size_ec));
    if (!size_ec && ds.n > bytes / (2 * (ds.d + 1)) + 1)
        throw fail(1, fmt::format("{} rows of {} cells announced, more than the file's {} bytes can hold",
                                  ds.n, ds.d + 1, bytes));
    ds.x.reserve(ds.n * ds.d);
    ds.y.reserve(ds.n);
    std::size_t rows = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.empty() || line == "\r") continue;
        if (rows == ds.n)
            throw fail(lineno, fmt::format("more data rows than the {} announced on line 1", ds.n));
        auto cells = split_csv_line(line);
        if (cells.size() != ds.d + 1)
            throw fail(lineno, fmt::format("{} cells, expected {}", cells.size(), ds.d + 1));
        for (std::size_t j = 0; j < cells.size(); ++j) {
            double v = 0;
            if (!parse_double(cells[j], v))
                throw fail(lineno, fmt::format("column {} ({}): '{}' is not a finite number", j + 1, names[j],
                                               cells[j]));
            (j < ds.d ? ds.x : ds.y).push_back(v);
        }
        ++rows;
    }
    if (rows != ds.n)
        throw fail(lineno, fmt::format("the file ends after {} data rows, {} announced on line 1", rows, ds.n));
    return ds;
}

TabularDataset load_boston(const std::filesystem::path& data_dir) {
    const auto path = data_dir / "boston" / "boston_house_prices.csv";
    TabularDataset ds = load_sklearn_csv(path);
    if (ds.n != 506 || ds.d != 13 || ds.target_name != "MEDV")
        throw std::runtime_error(fmt::format("{}: {} rows of {} features with target '{}', expected Boston housing's "
                                             "506 x 13 with target MEDV. Run scripts/fetch-data.",
                                             path.string(), ds.n, ds.d, ds.target_name));
    return ds;
}

} // namespace sdeuq::data
