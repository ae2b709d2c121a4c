#include "experiments/common.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <stdexcept>
#include <unistd.h>

#include "autodiff/parallel.hpp"

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
    app.add_option("--seed", args.seed, "random seed")->capture_default_str();
    app.add_flag("--quick{true},--full{false}", args.quick, "quick mode (default) or the paper-scale settings");
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
    if (args.threads > 0) set_num_threads(args.threads);
    fs::create_directories(args.out);
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

void write_json(const std::string& path, const nlohmann::json& j) { write_atomic(path, j.dump(2) + "\n"); }

std::string num(double v) { return fmt::format("{:.17g}", v); }

void write_csv(const std::string& path, const std::vector<std::string>& header,
               const std::vector<std::vector<std::string>>& rows) {
    std::string s;
    auto line = [&](const std::vector<std::string>& cells) {
        for (std::size_t i = 0; i < cells.size(); ++i) s += (i ? "," : "") + cells[i];
        s += "\n";
    };
    line(header);
    for (auto& r : rows) line(r);
    write_atomic(path, s);
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

}  // namespace sdeuq::experiment
