// What every experiment program shares: the common flags, provenance, atomic result files, a progress
// bar with ETA, and checkpoint paths.
//
// Result files are split so that the reproducible part is byte-for-byte identical across runs and
// thread counts: results.json / results.csv hold the numbers, the configuration, the seed, the commit
// and the compiler; run.json holds what legitimately varies (threads, CPU, wall-clock timings, date).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sdeuq::experiment {

struct CommonArgs {
    std::uint64_t seed = 0;
    bool quick = true;  // --quick (default) or --full
    int threads = 0;    // 0: the build default / SDEUQ_THREADS
    std::string out;    // result directory
    std::string data;   // data directory ("" = default)
    bool resume = true; // continue from a checkpoint in `out` when one matches the configuration
};

// Adds --seed, --quick, --full, --threads, --out, --data, --no-resume to app; `default_out` is relative
// to the repository root (e.g. "results/two_moons").
void add_common_flags(CLI::App& app, CommonArgs& args, const std::string& default_out);
// Applies --threads, creates the output directory. Call after parsing.
void apply_common(const CommonArgs& args);
// Parses argv with CLI11; prints errors (naming the flag and its allowed values) and exits non-zero.
// Also records the command line for provenance() (see record_command).
#define SDEUQ_PARSE(app, argc, argv)                        \
    ::sdeuq::experiment::record_command((argc), (argv));    \
    CLI11_PARSE(app, argc, argv)

// Records the command that reproduces the results: the program's name and its arguments without the ones
// that do not change them (--out, --threads, --data, --no-resume), so that runs with 1 and 2 threads into
// different directories record the same command. provenance() writes it as "command".
void record_command(int argc, char** argv);
std::string recorded_command();

std::string mode_name(const CommonArgs& args);

// The reproducible provenance: commit (and whether the tree was dirty), compiler, flags, seed, mode, the
// command and the full configuration. "dirty" looks at tracked files outside reports/ only: result files
// and rendered reports (which a run itself rewrites) do not make a tree dirty (scripts/check-reports
// compares the source the same way).
nlohmann::json provenance(const std::string& experiment, const CommonArgs& args, const nlohmann::json& config);
// The run record: threads, CPU model, start date; add timings to it.
nlohmann::json run_info(const CommonArgs& args);

// Writes `text` to `path` atomically (temporary file in the same directory, fsync, rename).
void write_atomic(const std::string& path, const std::string& text);
void write_json(const std::string& path, const nlohmann::json& j);  // 2-space indent, sorted keys, '\n'
// CSV: a header row and rows of cells (numbers formatted with 17 significant digits by `num`).
void write_csv(const std::string& path, const std::vector<std::string>& header,
               const std::vector<std::vector<std::string>>& rows);
std::string num(double v);

// A progress bar with rate and ETA on stderr (refreshes at most 10 times a second; silent when stderr
// is not a terminal unless SDEUQ_PROGRESS=1).
class Progress {
public:
    Progress(std::string label, std::int64_t total);
    void update(std::int64_t done, const std::string& status = "");
    void finish();
    ~Progress();

private:
    std::string label_;
    std::int64_t total_;
    double start_, last_ = 0;
    bool enabled_, done_ = false;
};

double wall_seconds();

}  // namespace sdeuq::experiment
