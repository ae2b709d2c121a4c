// libFuzzer target: data::load_sklearn_csv (the tabular loader, Boston housing's format) on arbitrary bytes.
// Any input must give a TabularDataset that keeps the loader's promises or a std::runtime_error naming the
// file; ASan/UBSan report everything else. Built with -Dfuzz=true (clang); corpus in tests/fuzz/corpus_csv.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <unistd.h>

#include "nn/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::string path = "/tmp/sdeuq-fuzz-csv." + std::to_string(::getpid());
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return 0;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    try {
        const auto ds = sdeuq::data::load_sklearn_csv(path);
        // The loader's own promises: the announced shape, names for every column, finite numbers.
        if (ds.x.size() != ds.n * ds.d || ds.y.size() != ds.n || ds.feature_names.size() != ds.d ||
            ds.target_name.empty())
            __builtin_trap();
        for (double v : ds.x)
            if (!std::isfinite(v)) __builtin_trap();
        for (double v : ds.y)
            if (!std::isfinite(v)) __builtin_trap();
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find(path) == std::string::npos) __builtin_trap();  // names the file
    }
    return 0;
}
