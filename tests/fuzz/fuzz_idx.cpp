// libFuzzer target: data::load_idx on arbitrary bytes (plain IDX and gzip-compressed IDX, told apart by the
// gzip magic as for real files). Any input must give an IdxArray or a std::runtime_error naming the file;
// ASan/UBSan report everything else. Built with -Dfuzz=true (clang); corpus in tests/fuzz/corpus_idx.
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <unistd.h>

#include "nn/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::string path = "/tmp/sdeuq-fuzz-idx." + std::to_string(::getpid());
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return 0;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    try {
        const auto arr = sdeuq::data::load_idx(path);
        std::size_t total = 1;
        for (auto d : arr.dims) total *= d;
        if (total != arr.data.size()) __builtin_trap();  // the loader's own promise
    } catch (const std::runtime_error&) {
    }
    return 0;
}
