#include "experiments/common.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <new>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <stdexcept>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "autodiff/parallel.hpp"
#include "autodiff/tape.hpp"

#ifndef SDEUQ_SOURCE_DIR
#define SDEUQ_SOURCE_DIR "."
#endif
#ifndef SDEUQ_CXX_FLAGS
#define SDEUQ_CXX_FLAGS "unknown"
#endif

namespace sdeuq::experiment {

namespace fs = std::filesystem;

namespace {

std::string run_command(const std::string& cmd) {
    std::array<char, 512> buf{};
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return "";
    while (fgets(buf.data(), static_cast<int>(buf.size()), p)) out += buf.data();
    pclose(p);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
}

// The directory commit_results builds beside `dir`: <parent>/.<name>.set.<pid>.
std::string set_prefix(const fs::path& dir) { return "." + dir.filename().string() + ".set."; }

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown";
}

}  // namespace

double wall_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void add_common_flags(CLI::App& app, CommonArgs& args, const std::string& default_out) {
    args.out = std::string(SDEUQ_SOURCE_DIR) + "/" + default_out;
    app.add_option("--seed", args.seed, "random seed (0 to 2^64-1)")->capture_default_str()->check(NonNegativeInteger);
    auto* quick = app.add_flag_callback("--quick", [&args] { args.quick = true; }, "quick mode (the default)");
    auto* full = app.add_flag_callback("--full", [&args] { args.quick = false; }, "the paper-scale settings");
    quick->excludes(full);
    app.add_flag("--anomaly", args.anomaly,
                 "anomaly mode: every op checks its output and gradients for NaN/Inf (also SDEUQ_ANOMALY=1)");
    app.add_option("--threads", args.threads, "kernel threads (1-64; default: build default or SDEUQ_THREADS)")
        ->check(CLI::Range(1, 64));
    app.add_option("--out", args.out, "output directory")->capture_default_str();
    app.add_option("--data", args.data, "data directory (default: $SDEUQ_DATA or <repo>/data)");
    app.add_flag("!--no-resume", args.resume, "ignore an existing checkpoint and start over");
}

namespace {
// The commit and dirty flag of the source tree, read once: at the start of the run (apply_common), so
// that a commit or an edit made while a long run is going does not end up in its provenance.
struct GitState {
    std::string commit;
    bool dirty = false;
};
const GitState& git_state() {
    static const GitState s = [] {
        const std::string src = SDEUQ_SOURCE_DIR;
        GitState g;
        g.commit = run_command("git -C '" + src + "' rev-parse HEAD 2>/dev/null");
        // Tracked files outside reports/ only: runs write results and reports (scripts/check-reports).
        g.dirty = !run_command("git -C '" + src + "' status --porcelain --untracked-files=no -- . " +
                               "':(exclude)reports' 2>/dev/null")
                       .empty();
        return g;
    }();
    return s;
}
}  // namespace

void apply_common(const CommonArgs& args) {
    git_state();
    try {
        if (args.threads > 0) {
            set_num_threads(args.threads);
        } else {
            (void)num_threads();  // reads and checks SDEUQ_THREADS now, not in the middle of the run
        }
    } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
    }
    bool anomaly = args.anomaly;
    if (const char* e = std::getenv("SDEUQ_ANOMALY"); e && *e) {
        const std::string v = e;
        if (v != "0" && v != "1") throw UsageError(fmt::format("SDEUQ_ANOMALY='{}': expected 0 or 1", v));
        anomaly = anomaly || v == "1";
    }
    set_anomaly_mode(anomaly);
    std::error_code ec;
    if (fs::exists(args.out, ec) && !fs::is_directory(args.out, ec))
        throw UsageError(fmt::format("--out {}: exists and is not a directory", args.out));
    fs::create_directories(args.out, ec);
    if (ec) throw std::runtime_error(fmt::format("--out {}: cannot create the directory: {}", args.out, ec.message()));
    lock_out(args.out);
}

void lock_out(const std::string& out) {
    // One run per --out: an flock on <out>/.lock, held until the process ends (the kernel drops it when the
    // process dies, so a killed run never leaves a stale lock). The file holds the owner's pid for the message.
    static int fd = -1;
    if (fd >= 0) return;
    const std::string path = (fs::path(out) / ".lock").string();
    const int f = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) throw std::runtime_error(fmt::format("--out {}: cannot create {}: {}", out, path, std::strerror(errno)));
    if (::flock(f, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {};
        const auto n = ::pread(f, buf, sizeof buf - 1, 0);
        ::close(f);
        throw std::runtime_error(fmt::format("--out {}: another run (pid {}) is writing there; wait for it to "
                                             "finish or choose another --out",
                                             out, n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?"));
    }
    const std::string pid = std::to_string(::getpid());
    if (::ftruncate(f, 0) != 0 || ::pwrite(f, pid.data(), pid.size(), 0) < 0) {
        // The pid is only for the message of a second run; the lock itself is held.
    }
    fd = f;
    // With the lock held no other run writes here: temporary files left by a killed run (write_atomic's
    // "<file>.tmp.<pid>", the checkpoint writer's "<file>.tmp") are removed.
    std::error_code ec;
    // A result directory that a killed commit_results left beside <out>: half built, or the old set.
    const fs::path real = fs::canonical(out, ec);
    if (!ec) {
        const std::string prefix = set_prefix(real);
        std::vector<fs::path> stale;
        for (const auto& e : fs::directory_iterator(real.parent_path(), ec)) {
            const std::string name = e.path().filename().string();
            if (name.rfind(prefix, 0) == 0 && name.size() > prefix.size() &&
                name.find_first_not_of("0123456789", prefix.size()) == std::string::npos)
                stale.push_back(e.path());
        }
        for (const auto& p : stale) fs::remove_all(p, ec);
    }
    for (const fs::path& dir : {fs::path(out), fs::path(out) / "checkpoints"}) {
        if (!fs::is_directory(dir, ec)) continue;
        for (const auto& e : fs::directory_iterator(dir, ec)) {
            const std::string name = e.path().filename().string();
            if (e.is_regular_file(ec) && (name.find(".tmp.") != std::string::npos ||
                                          (name.size() > 4 && name.ends_with(".tmp"))))
                fs::remove(e.path(), ec);
        }
    }
}

namespace {
std::string& command_storage() {
    static std::string c;
    return c;
}
}  // namespace

void record_command(int argc, char** argv) {
    std::string c = argc > 0 ? fs::path(argv[0]).filename().string() : "";
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--out" || a == "--threads" || a == "--data") {
            ++i;  // and its value
            continue;
        }
        if (a == "--no-resume" || a.rfind("--out=", 0) == 0 || a.rfind("--threads=", 0) == 0 ||
            a.rfind("--data=", 0) == 0)
            continue;
        c += " " + a;
    }
    command_storage() = c;
}

std::string recorded_command() { return command_storage(); }

std::string mode_name(const CommonArgs& args) { return args.quick ? "quick" : "full"; }

nlohmann::json provenance(const std::string& experiment, const CommonArgs& args, const nlohmann::json& config) {
    const GitState& git = git_state();
    nlohmann::json p;
    p["experiment"] = experiment;
    p["commit"] = git.commit.empty() ? "unknown" : git.commit;
    p["dirty"] = git.dirty;
    p["seed"] = args.seed;
    p["mode"] = mode_name(args);
    p["config"] = config;
    p["command"] = recorded_command();
    p["compiler"] = std::string(__VERSION__);
    p["cxx_flags"] = SDEUQ_CXX_FLAGS;
    return p;
}

nlohmann::json run_info(const CommonArgs& args) {
    nlohmann::json r;
    r["threads"] = num_threads();
    r["cpu"] = cpu_model();
    std::time_t t = std::time(nullptr);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    r["date"] = buf;
    r["mode"] = mode_name(args);
    r["seed"] = args.seed;
    return r;
}

void write_atomic(const std::string& path, const std::string& text) {
    fs::path p(path);
    if (p.has_parent_path()) fs::create_directories(p.parent_path());
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw std::runtime_error(fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
                    ::fsync(fileno(f)) == 0;
    std::fclose(f);
    if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw std::runtime_error(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
    }
}

std::string json_text(const nlohmann::json& j) { return j.dump(2) + "\n"; }

void write_json(const std::string& path, const nlohmann::json& j) { write_atomic(path, json_text(j)); }

std::string num(double v) { return fmt::format("{:.17g}", v); }

std::string csv_text(const std::vector<std::string>& header,
                     const std::vector<std::vector<std::string>>& rows) {
    std::string s;
    auto line = [&](const std::vector<std::string>& cells) {
        for (std::size_t i = 0; i < cells.size(); ++i) s += (i ? "," : "") + cells[i];
        s += "\n";
    };
    line(header);
    for (auto& r : rows) line(r);
    return s;
}

void write_csv(const std::string& path, const std::vector<std::string>& header,
               const std::vector<std::vector<std::string>>& rows) {
    write_atomic(path, csv_text(header, rows));
}

// ---- result sets ----------------------------------------------------------------------------------------

namespace {

// A test hook: SDEUQ_RESULTS_PAUSE=<seconds> widens the window between the steps of a commit so that the
// kill test can land in it. Read once; a bad value is refused like every other SDEUQ_* variable.
void commit_pause() {
    static const double seconds = [] {
        const char* e = std::getenv("SDEUQ_RESULTS_PAUSE");
        if (!e || !*e) return 0.0;
        char* end = nullptr;
        const double v = std::strtod(e, &end);
        if (*end != '\0' || !std::isfinite(v) || v < 0 || v > 60)
            throw UsageError(fmt::format("SDEUQ_RESULTS_PAUSE='{}': expected seconds from 0 to 60", e));
        return v;
    }();
    if (seconds > 0) ::usleep(static_cast<useconds_t>(seconds * 1e6));
}

void fsync_path(const fs::path& p) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    (void)::fsync(fd);
    ::close(fd);
}

void write_synced(const fs::path& path, const std::string& text) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw std::runtime_error(fmt::format("cannot write {}: {}", path.string(), std::strerror(errno)));
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
                    ::fsync(fileno(f)) == 0;
    const int err = errno;
    std::fclose(f);
    if (!ok) throw std::runtime_error(fmt::format("cannot write {}: {}", path.string(), std::strerror(err)));
}

// Hard-links the tree `from` into `to` (directories recreated, files and symlinks linked), leaving out the
// top-level names in `skip`. False when the file system cannot hard-link.
bool link_tree(const fs::path& from, const fs::path& to, const std::vector<std::string>& skip) {
    for (const auto& e : fs::directory_iterator(from)) {
        const std::string name = e.path().filename().string();
        if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
        const fs::path target = to / name;
        if (e.is_directory() && !e.is_symlink()) {
            fs::create_directory(target);
            if (!link_tree(e.path(), target, {})) return false;
        } else if (::link(e.path().c_str(), target.c_str()) != 0) {
            if (errno == EPERM || errno == EXDEV || errno == EOPNOTSUPP || errno == EMLINK) return false;
            throw std::runtime_error(fmt::format("cannot link {} into the new result set {}: {}",
                                                 e.path().string(), to.string(), std::strerror(errno)));
        }
    }
    return true;
}

}  // namespace

void ResultSet::add(const std::string& name, std::string text) {
    for (auto& [n, t] : files_)
        if (n == name) throw std::logic_error(fmt::format("result set {}: {} added twice", out_, name));
    files_.emplace_back(name, std::move(text));
}

void ResultSet::commit() { commit_results(out_, files_); }

void commit_results(const std::string& out, const std::vector<std::pair<std::string, std::string>>& files) {
    std::vector<std::string> names;
    for (auto& [name, text] : files) {
        if (name.empty() || name.find('/') != std::string::npos || name[0] == '.')
            throw std::logic_error(fmt::format("result set {}: '{}' is not a plain file name", out, name));
        names.push_back(name);
    }
    // The real directory (a symlinked --out stays a symlink: its target is swapped).
    const fs::path dir = fs::canonical(out);
    const fs::path tmp = dir.parent_path() / (set_prefix(dir) + std::to_string(::getpid()));
    std::error_code ec;
    fs::remove_all(tmp, ec);
    if (!fs::create_directory(tmp, ec) || ec)
        throw std::runtime_error(fmt::format("cannot create {} for the result set of {}: {}", tmp.string(),
                                             dir.string(), ec.message()));
    bool swapped = false;
    try {
        commit_pause();
        for (auto& [name, text] : files) {
            write_synced(tmp / name, text);
            commit_pause();
        }
        if (link_tree(dir, tmp, names)) {
            fsync_path(tmp);
            swapped = ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0;
            if (!swapped && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
                throw std::runtime_error(fmt::format("cannot swap the new result set {} into {}: {}",
                                                     tmp.string(), dir.string(), std::strerror(errno)));
        }
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
    if (swapped) {
        fsync_path(dir.parent_path());
        commit_pause();
        fs::remove_all(tmp, ec);  // the old set; if this is killed, the next lock_out removes it
        return;
    }
    // No exchange or no hard links here: each file atomically, the set not.
    std::fprintf(stderr,
                 "warning: %s cannot swap directories atomically; the result files are replaced one by one\n",
                 dir.parent_path().c_str());
    for (auto& name : names) {
        if (std::rename((tmp / name).c_str(), (dir / name).c_str()) != 0) {
            const int err = errno;
            fs::remove_all(tmp, ec);
            throw std::runtime_error(
                fmt::format("cannot write {}: {}", (dir / name).string(), std::strerror(err)));
        }
    }
    fsync_path(dir);
    fs::remove_all(tmp, ec);
}

Progress::Progress(std::string label, std::int64_t total)
    : label_(std::move(label)), total_(total), start_(wall_seconds()) {
    const char* e = std::getenv("SDEUQ_PROGRESS");
    enabled_ = (e && std::string(e) == "1") || (isatty(fileno(stderr)) && !(e && std::string(e) == "0"));
}

void Progress::update(std::int64_t done, const std::string& status) {
    if (!enabled_) return;
    const double now = wall_seconds();
    if (now - last_ < 0.1 && done < total_) return;
    last_ = now;
    const double el = now - start_;
    const double frac = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
    const double eta = frac > 0 ? el * (1 - frac) / frac : 0.0;
    const int width = 30, fill = static_cast<int>(frac * width);
    std::fprintf(stderr, "\r%s [%s%s] %lld/%lld %5.1f%% %6.1fs ETA %6.1fs %s", label_.c_str(),
                 std::string(static_cast<std::size_t>(fill), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - fill), '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), 100 * frac, el, eta, status.c_str());
    std::fflush(stderr);
}

void Progress::finish() {
    if (enabled_ && !done_) {
        update(total_);
        std::fprintf(stderr, "\n");
    }
    done_ = true;
}

Progress::~Progress() { finish(); }

namespace {
std::string& program_name() {
    static std::string n = "experiment";
    return n;
}
}  // namespace

int parse_error_exit(CLI::App& app, const CLI::ParseError& e) {
    if (dynamic_cast<const CLI::CallForHelp*>(&e) || dynamic_cast<const CLI::CallForAllHelp*>(&e) ||
        dynamic_cast<const CLI::CallForVersion*>(&e))
        return app.exit(e);
    std::fprintf(stderr, "%s: error: %s (see --help)\n", program_name().c_str(), e.what());
    return 2;
}

int run_main(const char* name, int argc, char** argv, int (*body)(int, char**)) {
    program_name() = name;
    auto say = [&](const std::string& what) { std::fprintf(stderr, "%s: error: %s\n", name, what.c_str()); };
    try {
        return body(argc, argv);
    } catch (const UsageError& e) {
        say(e.what());
        return 2;
    } catch (const CLI::Error& e) {
        say(std::string(e.what()) + " (see --help)");
        return 2;
    } catch (const std::bad_alloc&) {
        say("out of memory (a data set or configuration too large for this machine?)");
        return 1;
    } catch (const std::exception& e) {
        say(e.what());
        return 1;
    } catch (...) {
        say("unknown exception");
        return 1;
    }
}

namespace {
template <bool allow_zero>
std::string finite_check(const std::string& s) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v) || errno == ERANGE)
        return fmt::format("'{}' is not a finite number", s);
    if (allow_zero ? v < 0 : v <= 0) return fmt::format("'{}' must be {} 0", s, allow_zero ? ">=" : ">");
    return "";
}
}  // namespace

const CLI::Validator PositiveFinite(finite_check<false>, "FINITE > 0", "PositiveFinite");
const CLI::Validator NonNegativeFinite(finite_check<true>, "FINITE >= 0", "NonNegativeFinite");
const CLI::Validator NonNegativeInteger(
    [](const std::string& s) -> std::string {
        std::uint64_t v = 0;
        const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
            return fmt::format("'{}' is not a non-negative integer (decimal digits only)", s);
        if (r.ec == std::errc::result_out_of_range) return fmt::format("'{}' is larger than 2^64-1", s);
        if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return fmt::format("'{}' is not an integer", s);
        return "";
    },
    "UINT", "NonNegativeInteger");

void check_loss(double loss, const std::string& what, std::int64_t epoch, std::int64_t batch) {
    if (std::isfinite(loss)) return;
    throw std::runtime_error(fmt::format(
        "the training loss of {} is {} in epoch {}, batch {}: rerun with --anomaly (or SDEUQ_ANOMALY=1) to "
        "find the op that produced it",
        what, std::isnan(loss) ? "NaN" : (loss > 0 ? "+Inf" : "-Inf"), epoch, batch));
}

}  // namespace sdeuq::experiment
