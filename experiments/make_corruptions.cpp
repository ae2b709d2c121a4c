// make_corruptions: writes the seeded MNIST-C-style corruption suite (nn/corruptions.hpp) for the MNIST and
// Fashion-MNIST test sets into <data>/mnist-c and <data>/fashion-mnist-c. Run through
// scripts/make-corruptions, which also checks the result against the committed manifest
// scripts/corruptions.sha256.
//
//   make_corruptions [--data DIR] [--seed N] [--jobs N] [--base mnist|fashion-mnist]... [--corruption
//   NAME]...
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "nn/corruptions.hpp"
#include "nn/data.hpp"

using namespace sdeuq;
namespace fs = std::filesystem;

namespace {

int run(int argc, char** argv) {
    CLI::App app{
        "make_corruptions: the MNIST-C-style corruption suite of the MNIST and Fashion-MNIST test sets"};
    std::string data;
    std::uint64_t seed = data::corruption_suite_seed;
    int jobs = 2;
    std::vector<std::string> bases = {"mnist", "fashion-mnist"};
    app.add_option("--data", data, "data directory (default: $SDEUQ_DATA or <repo>/data)");
    app.add_option("--seed", seed, "suite seed (the manifest holds the default's checksums)");
    app.add_option("--jobs", jobs, "worker threads (the files do not depend on it)")
        ->check(CLI::Range(1, 64));
    app.add_option("--base", bases, "test sets to corrupt")->check(CLI::IsMember({"mnist", "fashion-mnist"}));
    std::vector<std::string> only;
    app.add_option("--corruption", only, "only these corruptions (default: all)")
        ->check(CLI::IsMember(data::corruption_names()));
    CLI11_PARSE(app, argc, argv);
    const fs::path data_dir = data::resolve_data_dir(data);

    struct Job {
        const data::Dataset* clean;
        std::string base, corruption;
        int severity;
    };
    std::vector<data::Dataset> cleans;
    cleans.reserve(bases.size());
    std::vector<Job> work;
    try {
        for (const auto& b : bases)
            cleans.push_back(b == "mnist" ? data::load_mnist(data_dir, data::Split::test)
                                          : data::load_fashion_mnist(data_dir, data::Split::test));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_corruptions: %s\n", e.what());
        return 1;
    }
    for (std::size_t b = 0; b < bases.size(); ++b)
        for (const auto& c : only.empty() ? data::corruption_names() : only)
            for (int s = 1; s <= data::num_severities; ++s) work.push_back({&cleans[b], bases[b], c, s});

    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    auto worker = [&] {
        for (std::size_t j = next++; j < work.size() && !failed; j = next++) {
            const Job& job = work[j];
            try {
                const data::Dataset ds =
                    data::corrupt(*job.clean, job.base, job.corruption, job.severity, seed);
                std::vector<std::uint8_t> img(ds.images.size()), lab(ds.n);
                for (std::size_t i = 0; i < img.size(); ++i)
                    img[i] = static_cast<std::uint8_t>(std::lround(double(ds.images[i]) * 255.0));
                for (std::size_t i = 0; i < ds.n; ++i) lab[i] = static_cast<std::uint8_t>(ds.labels[i]);
                const fs::path dir =
                    data::corruption_dir(data_dir, job.base) / job.corruption / std::to_string(job.severity);
                fs::create_directories(dir);
                data::write_idx(dir / "t10k-images-idx3-ubyte.gz", {ds.n, ds.shape[1], ds.shape[2]}, img,
                                true);
                data::write_idx(dir / "t10k-labels-idx1-ubyte.gz", {ds.n}, lab, true);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "make_corruptions: %s/%s/%d: %s\n", job.base.c_str(),
                             job.corruption.c_str(), job.severity, e.what());
                failed = true;
            }
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < jobs; ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    if (failed) return 1;
    std::printf("make_corruptions: wrote %zu corrupted test sets (seed %llu) under %s\n", work.size(),
                static_cast<unsigned long long>(seed), data_dir.string().c_str());
    return 0;
}

}  // namespace

// Not linked with experiments/common (no experiment::run_main): an exception that escapes run() (a thread
// that cannot start, memory) ends in one line and exit 1 here instead of std::terminate.
int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_corruptions: error: %s\n", e.what());
        return 1;
    }
}
