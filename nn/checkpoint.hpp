// Checkpoints: parameters, buffers, random generators and optimizer state in one binary file.
//
// Layout (little-endian):
//   header  (32 bytes): magic "SDEUQCKP" | u32 version | u32 entry count | u64 payload bytes |
//                       u32 CRC-32 (zlib) of the payload | u32 reserved (0)
//   payload:            u64 metadata length | metadata (a JSON document, free-form: epoch, config, ...)
//                       entries: u32 name length | name | u8 dtype (0 f32, 1 f64, 2 bytes) | u8 rank |
//                                i64 dims[rank] | u64 data bytes | data
// Entry names: "param/<module path>", "buffer/<...>", "generator/<...>" (a module's registered generators),
// "rng/<name>" (extra generators the caller passes, e.g. the data shuffler), "optim/type", "optim/step",
// "optim/lr", "optim/state/<index>.<slot>".
//
// Writing is atomic: the file is written to "<path>.tmp", fsync'ed, renamed over <path>, and the directory
// fsync'ed, so a crash leaves either the old or the new checkpoint. Loading validates the whole file
// (size, magic, version, checksum, structure, and every name, dtype and shape against the model and
// optimizer) before writing anything into them: a missing, truncated, corrupt or mismatched file throws
// CheckpointError naming the file and the problem, and leaves the model untouched.
//
// Generators are stored as their raw object bytes (Generator is a trivially copyable Philox state): a
// checkpoint restores them exactly on the same platform and build, which is what resuming needs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.hpp"
#include "nn/optim.hpp"

namespace sdeuq::nn {

struct CheckpointError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline constexpr char checkpoint_magic[9] = "SDEUQCKP";
inline constexpr std::uint32_t checkpoint_version = 1;

struct CheckpointEntry {
    std::string name;
    std::uint8_t dtype = 0;  // 0 f32, 1 f64, 2 raw bytes
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> data;
};

struct CheckpointFile {
    std::string metadata = "{}";
    std::vector<CheckpointEntry> entries;
    const CheckpointEntry* find(const std::string& name) const;
};

// Low level: the container format.
void write_checkpoint_file(const std::string& path, const CheckpointFile& ck);
CheckpointFile read_checkpoint_file(const std::string& path);

using NamedGenerators = std::vector<std::pair<std::string, Generator*>>;

// Saves model (parameters, buffers, its registered generators), the optimizer if given, extra generators
// and a JSON metadata string (checked to be valid JSON).
void save_checkpoint(const std::string& path, Module& model, Optimizer* opt = nullptr,
                     const std::string& metadata_json = "{}", const NamedGenerators& generators = {});
// Restores them and returns the metadata. Every model entry must be present and match exactly, and the file
// must hold no unknown model entries; optimizer entries are required (and checked against the optimizer's
// type and state shapes) only when opt is given; each requested extra generator must be present.
std::string load_checkpoint(const std::string& path, Module& model, Optimizer* opt = nullptr,
                            const NamedGenerators& generators = {});

// ---- which run a checkpoint belongs to ----------------------------------------------------------------------
//
// A checkpoint is resumed only by the run it belongs to. Experiments store an identity in the metadata
// (key "identity"): the experiment, the data set and the size and CRC-32 of each data file it trains on
// (file_identity), the model slot (e.g. "member1", "dropout"), the configuration and the seed. Before
// training, checkpoint_to_resume compares it with this run's identity: a foreign checkpoint (another
// ensemble member's, another data set's, one trained on other data files or with other settings) is
// refused, never resumed silently and never overwritten.

// {"<file name>": {"bytes": n, "crc32": c}} of each file (zlib CRC-32 of the bytes as stored). Throws
// std::runtime_error naming a file that cannot be read.
nlohmann::json file_identity(const std::vector<std::filesystem::path>& files);

// The metadata of the checkpoint at `path` to resume from, or nullopt when there is none (no file) or
// resume is false (--no-resume: the caller starts over and overwrites it). Throws CheckpointError when the
// file is unreadable or corrupt, and when its metadata["identity"] differs from `identity`: the message
// names the file, each differing field with both values, and how to start over.
std::optional<nlohmann::json> checkpoint_to_resume(const std::string& path, const nlohmann::json& identity,
                                                   bool resume);

}  // namespace sdeuq::nn
