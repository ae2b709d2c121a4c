// libFuzzer target: nn::read_checkpoint_file on arbitrary bytes, and checkpoint_to_resume (which also
// parses the metadata JSON). Any input must give a CheckpointFile or a CheckpointError; ASan/UBSan report
// everything else. Built with -Dfuzz=true (clang); corpus in tests/fuzz/corpus_checkpoint.
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "nn/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::string path = "/tmp/sdeuq-fuzz-ckpt." + std::to_string(::getpid());
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return 0;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    try {
        (void)sdeuq::nn::read_checkpoint_file(path);
        (void)sdeuq::nn::checkpoint_to_resume(path, {{"experiment", "fuzz"}}, true);
    } catch (const sdeuq::nn::CheckpointError&) {
    }
    return 0;
}
