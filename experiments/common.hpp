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
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sdeuq::experiment {

struct CommonArgs {
    std::uint64_t seed = 0;
    bool quick = true;  // --quick (default) or --full (giving both is a usage error)
    bool anomaly = false; // --anomaly or SDEUQ_ANOMALY=1: the engine's anomaly mode (autodiff/tape.hpp)
    int threads = 0;    // 0: the build default / SDEUQ_THREADS
    std::string out;    // result directory
    std::string data;   // data directory ("" = default)
    bool resume = true; // continue from a checkpoint in `out` when one matches the configuration
};

// Adds --seed, --quick, --full, --threads, --out, --data, --no-resume, --anomaly to app; `default_out` is relative
// to the repository root (e.g. "results/two_moons").
void add_common_flags(CLI::App& app, CommonArgs& args, const std::string& default_out);
// Applies --threads, --anomaly, checks SDEUQ_THREADS / SDEUQ_ANOMALY, creates the output directory and
// locks it (lock_out). Call after parsing.
void apply_common(const CommonArgs& args);
// Takes <out>/.lock for the rest of the process (a second run on the same --out fails, exit 1, naming the
// first one's pid) and removes temporary files a killed run left in <out> and <out>/checkpoints, and a
// half-built or swapped-out result directory (<parent>/.<name>.set.<pid>, commit_results).
void lock_out(const std::string& out);
// Records the command (record_command) and parses argv with CLI11. --help prints the help and returns 0 from main; a bad flag or value prints one
// line naming the flag and what is allowed and returns 2 from main.
#define SDEUQ_PARSE(app, argc, argv)                                   \
    ::sdeuq::experiment::record_command((argc), (argv));               \
    try {                                                              \
        (app).parse((argc), (argv));                                   \
    } catch (const CLI::ParseError& e_) {                              \
        return ::sdeuq::experiment::parse_error_exit((app), e_);       \
    }
int parse_error_exit(CLI::App& app, const CLI::ParseError& e);

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
// The bytes write_json / write_csv write.
std::string json_text(const nlohmann::json& j);
std::string csv_text(const std::vector<std::string>& header,
                     const std::vector<std::vector<std::string>>& rows);

// A run's result files (results.json, results.csv, run.json, ...) committed as a whole, so that a kill
// between two writes can never leave a new results.json beside an old results.csv. Collect the files, then
// commit(): see commit_results.
class ResultSet {
public:
    explicit ResultSet(std::string out) : out_(std::move(out)) {}
    void json(const std::string& name, const nlohmann::json& j) { add(name, json_text(j)); }
    void csv(const std::string& name, const std::vector<std::string>& header,
             const std::vector<std::vector<std::string>>& rows) { add(name, csv_text(header, rows)); }
    void add(const std::string& name, std::string text);
    void commit();

private:
    std::string out_;
    std::vector<std::pair<std::string, std::string>> files_;
};

// Writes `files` (name -> content; plain names, no '/') into the directory `out` as one set. The new
// directory is built beside `out` (<parent>/.<name>.set.<pid>): the set's files are written and fsynced,
// everything else in `out` (checkpoints/, the .lock, files of other kinds) is hard-linked into it, and the
// two directories are swapped with one renameat2(RENAME_EXCHANGE); the old one is then removed. A kill at
// any point leaves `out` either entirely old or entirely new, and lock_out removes the leftover directory.
// Where the file system cannot exchange or hard-link, the files are renamed in one by one (each atomic,
// the set not) and a warning says so. Call with the lock held (apply_common). SDEUQ_RESULTS_PAUSE=<seconds>
// sleeps between the steps (for the kill test tests/result_set_kill.sh only).
void commit_results(const std::string& out, const std::vector<std::pair<std::string, std::string>>& files);

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

// ---- errors: one clear line and an exit status, never std::terminate --------------------------------------

// A bad flag value or combination found after parsing (exit status 2).
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Every experiment's main is `return experiment::run_main("name", argc, argv, run);`. It runs `body` and turns
// what escapes it into one line "name: error: <what>" on stderr: UsageError and CLI11 errors exit 2 (bad
// usage); anything else (a missing or corrupt file, a foreign checkpoint, an unwritable --out, a full disk,
// a bad SDEUQ_* variable, a NaN loss) exits 1; std::bad_alloc says that memory ran out.
int run_main(const char* name, int argc, char** argv, int (*body)(int, char**));

// CLI11 validators that refuse what CLI::PositiveNumber lets through (nan, inf): a finite number > 0,
// resp. >= 0.
extern const CLI::Validator PositiveFinite;
extern const CLI::Validator NonNegativeFinite;
// A non-negative integer written in decimal digits only (no sign, no blank, no overflow): for size_t and
// uint64 options, which CLI11 would otherwise saturate ("-1" -> 2^64-1) or reject with a vague message.
extern const CLI::Validator NonNegativeInteger;

// The per-batch loss check every training loop makes: throws (exit 1) naming what was trained, the epoch
// and the batch when `loss` is NaN or infinite, with the hint to rerun with --anomaly, instead of training
// on to the end and failing in the metrics.
void check_loss(double loss, const std::string& what, std::int64_t epoch, std::int64_t batch);

}  // namespace sdeuq::experiment
