// bench_sde_grad: time and memory of one forward + backward of sum(y_T^2) through a neural SDE with the
// three gradient estimators (backprop through the solver, stochastic adjoint, reversible Heun).
//
//   bench_sde_grad          readable table and the ratios against the torchsde reference figures
//   bench_sde_grad --only METHOD STEPS   one configuration in-process (for profilers)
//   bench_sde_grad --profile METHOD STEPS  forward and backward CPU time per step, tape nodes per step,
//                           and the op profile (autodiff/profile.hpp) of the fastest of 5 profiled runs
//   bench_sde_grad --json   {"results": [{"method", "steps", "us_per_step", "cpu_us_per_step", "peak_mib",
//                           "arena_mib"}]}
//
// The SDE (Stratonovich, diagonal noise, float32): state 32, batch 128, drift MLP 32-64-32 (tanh hidden
// layer, linear output), diffusion MLP 32-64-32 (tanh hidden, sigmoid output), the activations fused into
// their linear layers (linear(..., LinearAct), the same bits as the separate ops); t in [0, 1] with 16,
// 128 and 1024 fixed steps; solver midpoint (backprop, adjoint forward and backward) or reversible Heun. One
// kernel thread. The Brownian path draws its normals in float32 (BrownianOptions::float_normals, as
// torchsde samples in the state's dtype): the SDE is float32, and the double generator cost ~2x more.
//
// Memory, two measures, each configuration run in its own forked child so that runs do not share
// arenas or allocator caches:
//   peak_mib   the child's peak resident set growth: VmHWM at the end minus VmRSS at the start, with the
//              peak reset first (writing 5 to /proc/self/clear_refs, Linux >= 4.0). Includes the arenas,
//              heap tensors, allocator slack and the pages touched; ~0.1 MiB resolution (pages).
//   arena_mib  bytes reserved by the engine's arenas (root tape and the first two nested ones), which
//              is where every step's temporaries go.
// Time: the mean of several repetitions after one warm-up run, divided by the number of steps: wall time
// (us_per_step) and the thread's CPU time (cpu_us_per_step, which a loaded machine inflates less).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fmt/format.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "autodiff/parallel.hpp"
#include "autodiff/profile.hpp"
#include "autodiff/random.hpp"
#include "sde/adjoint.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;

namespace {

constexpr std::int64_t kState = 32, kHidden = 64, kBatch = 128;

Tensor init_weight(std::int64_t out, std::int64_t in, std::uint64_t stream) {
    Generator g(1, stream);
    return randn({out, in}, g, DType::f32, 0.0, 1.0 / std::sqrt(static_cast<double>(in)));
}

class NeuralSDE : public SDE {
public:
    NeuralSDE()
        : w1_("w1", init_weight(kHidden, kState, 1)),
          b1_("b1", Tensor::zeros({kHidden})),
          w2_("w2", init_weight(kState, kHidden, 2)),
          b2_("b2", Tensor::zeros({kState})),
          v1_("v1", init_weight(kHidden, kState, 3)),
          c1_("c1", Tensor::zeros({kHidden})),
          v2_("v2", init_weight(kState, kHidden, 4)),
          c2_("c2", Tensor::full({kState}, -2.0)) {}
    Noise noise() const override { return Noise::diagonal; }
    Calculus calculus() const override { return Calculus::stratonovich; }
    Var f(double, const Var& y) override {
        Var b1 = b1_.var(), b2 = b2_.var();
        return linear(linear(y, w1_.var(), &b1, LinearAct::tanh), w2_.var(), &b2);
    }
    Var g(double, const Var& y) override {
        Var c1 = c1_.var(), c2 = c2_.var();
        return linear(linear(y, v1_.var(), &c1, LinearAct::tanh), v2_.var(), &c2, LinearAct::sigmoid);
    }
    std::vector<Parameter*> parameters() override { return {&w1_, &b1_, &w2_, &b2_, &v1_, &c1_, &v2_, &c2_}; }

private:
    Parameter w1_, b1_, w2_, b2_, v1_, c1_, v2_, c2_;
};

struct Result {
    std::string method;
    int steps = 0;
    double us_per_step = 0, cpu_us_per_step = 0, peak_mib = 0, arena_mib = 0;
};

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

long status_kib(const char* key) {
    FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    const std::size_t n = std::strlen(key);
    while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, key, n) == 0) v = std::strtol(line + n, nullptr, 10);
    std::fclose(f);
    return v;
}

void reset_peak_rss() {
    if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
        std::fputs("5", f);
        std::fclose(f);
    }
}

std::size_t arena_bytes() {
    std::size_t total = current_tape().arena().bytes_reserved();
    NestedTape a;
    total += a.tape().arena().bytes_reserved();
    NestedTape b;
    total += b.tape().arena().bytes_reserved();
    return total;
}

// One benchmark configuration: the SDE, y0, the path and the solve options for METHOD with STEPS steps.
struct Config {
    NeuralSDE sde;
    Tensor y0;
    SolveOptions opt;
    BrownianPath bm;
    std::vector<double> ts{0.0, 1.0};

    Config(const std::string& method, int steps)
        : y0([] {
              Generator gen(2, 9);
              return randn({kBatch, kState}, gen, DType::f32, 0.0, 0.5);
          }()),
          opt(options(method, steps)),
          bm(0.0, 1.0, kBatch * kState, 17, BrownianOptions{opt.dt, 0.0, false, true}) {}

    static SolveOptions options(const std::string& method, int steps) {
        SolveOptions o;
        o.dt = 1.0 / steps;
        o.solver = method == "reversible_heun" ? "reversible_heun" : "midpoint";
        o.estimator = method;
        return o;
    }
    // sum(y_T^2) of one solve, recorded on the current tape.
    Var loss() {
        Var ys = sdeint(sde, leaf(y0), ts, bm, opt);
        Var yT = slice(ys, 0, 1, 2);
        return sum(yT * yT);
    }
};

// Runs in the forked child.
Result run(const std::string& method, int steps) {
    ThreadsScope threads(1);
    reset_peak_rss();
    const long rss0 = status_kib("VmRSS:");
    Config cfg(method, steps);
    auto once = [&]() {
        backward(cfg.loss());
        reset_tape();
    };
    once();  // warm-up
    const int reps = std::max(2, 4096 / steps);
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = thread_cpu_seconds();
    for (int r = 0; r < reps; ++r) once();
    const double cpu = thread_cpu_seconds() - c0;
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Result res;
    res.method = method;
    res.steps = steps;
    res.us_per_step = sec / reps / steps * 1e6;
    res.cpu_us_per_step = cpu / reps / steps * 1e6;
    res.peak_mib = static_cast<double>(status_kib("VmHWM:") - rss0) / 1024.0;
    res.arena_mib = static_cast<double>(arena_bytes()) / (1024.0 * 1024.0);
    return res;
}

// --profile METHOD STEPS: where a step's time goes, op by op (autodiff/profile.hpp), forward and backward
// of the estimator together (the adjoint's and reversible Heun's nested VJPs included). Of 5 profiled
// runs (after a warm-up), the one with the least total CPU time is shown: its forward, backward and table.
void profile(const std::string& method, int steps) {
    ThreadsScope threads(1);
    Config cfg(method, steps);
    double best_f = 0, best_b = 0, nodes = 0;
    std::string best_table;
    for (int rep = 0; rep < 6; ++rep) {  // the first is a warm-up
        ProfileScope prof;
        const double c0 = thread_cpu_seconds();
        Var loss = cfg.loss();
        const double c1 = thread_cpu_seconds();
        nodes = static_cast<double>(current_tape().size()) / steps;
        backward(loss);
        const double c2 = thread_cpu_seconds();
        reset_tape();
        if (rep == 0 || (rep > 1 && c2 - c0 >= best_f + best_b)) continue;
        best_f = c1 - c0;
        best_b = c2 - c1;
        best_table = profile_table(fmt::format("{}, {} steps, one run, totals in us", method, steps));
    }
    const double us = 1e6 / steps;
    fmt::print("{}, {} steps: forward {:.1f} + backward {:.1f} = {:.1f} CPU us/step, {:.1f} root-tape "
               "nodes/step (a profiled run)\n{}",
               method, steps, best_f * us, best_b * us, (best_f + best_b) * us, nodes, best_table);
}

Result run_forked(const std::string& method, int steps) {
    int fd[2];
    if (pipe(fd) != 0) return run(method, steps);
    const pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        Result r = run(method, steps);
        double buf[4] = {r.us_per_step, r.cpu_us_per_step, r.peak_mib, r.arena_mib};
        ssize_t w = write(fd[1], buf, sizeof buf);
        _exit(w == static_cast<ssize_t>(sizeof buf) ? 0 : 1);
    }
    close(fd[1]);
    double buf[4] = {0, 0, 0, 0};
    ssize_t got = read(fd[0], buf, sizeof buf);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got != static_cast<ssize_t>(sizeof buf) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "bench_sde_grad: child for %s/%d failed\n", method.c_str(), steps);
        return {method, steps, -1, -1, -1, -1};
    }
    return {method, steps, buf[0], buf[1], buf[2], buf[3]};
}

// torchsde 0.2.6 on PyTorch 1.13 on this machine, ms per step (reference figures from the project brief,
// not measured in-process: torchsde cannot be installed here).
struct Reference {
    const char* method;
    double lo_ms, hi_ms;
};
const Reference kReference[] = {{"backprop", 1.1, 1.9}, {"adjoint", 2.5, 4.4}, {"reversible_heun", 2.0, 2.9}};

}  // namespace

int main(int argc, char** argv) {
    register_adjoint_estimators();
    bool json = false;
    std::vector<std::string> methods{"backprop", "adjoint", "reversible_heun"};
    std::vector<int> steps{16, 128, 1024};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--profile" && i + 2 < argc) {
            profile(argv[i + 1], std::atoi(argv[i + 2]));
            return 0;
        }
        if (a == "--json") {
            json = true;
        } else if (a == "--only" &&
                   i + 2 < argc) {  // --only METHOD STEPS: one configuration, no fork (profiling)
            Result r = run(argv[i + 1], std::atoi(argv[i + 2]));
            fmt::print("{} {} steps: {:.1f} us/step wall, {:.1f} us/step cpu, peak {:.2f} MiB\n", r.method,
                       r.steps, r.us_per_step, r.cpu_us_per_step, r.peak_mib);
            return 0;
        }
    }
    std::vector<Result> results;
    for (auto& m : methods)
        for (int s : steps) results.push_back(run_forked(m, s));

    if (json) {
        fmt::print("{{\"results\": [");
        for (std::size_t i = 0; i < results.size(); ++i) {
            const Result& r = results[i];
            fmt::print(
                "{}{{\"method\": \"{}\", \"steps\": {}, \"us_per_step\": {:.3f}, \"cpu_us_per_step\": "
                "{:.3f}, "
                "\"peak_mib\": {:.3f}, \"arena_mib\": {:.3f}}}",
                i ? ", " : "", r.method, r.steps, r.us_per_step, r.cpu_us_per_step, r.peak_mib, r.arena_mib);
        }
        fmt::print("]}}\n");
        return 0;
    }
    fmt::print("neural SDE d={} batch={} hidden={} float32, Stratonovich, t in [0, 1], 1 thread\n", kState,
               kBatch, kHidden);
    fmt::print("{:<16} {:>6} {:>12} {:>12} {:>14} {:>12}\n", "method", "steps", "us/step", "cpu us/step",
               "peak RSS MiB", "arena MiB");
    for (auto& r : results)
        fmt::print("{:<16} {:>6} {:>12.1f} {:>12.1f} {:>14.2f} {:>12.2f}\n", r.method, r.steps, r.us_per_step,
                   r.cpu_us_per_step, r.peak_mib, r.arena_mib);
    auto find = [&](const std::string& m, int s) {
        for (auto& r : results)
            if (r.method == m && r.steps == s) return r;
        return Result{};
    };
    fmt::print(
        "\nspeed-up per step against torchsde 0.2.6 / PyTorch 1.13 (reference figures quoted, not measured "
        "here; target >= 10x), by wall time | by thread CPU time:\n");
    for (auto& ref : kReference) {
        double best = 1e300, worst = 0, cbest = 1e300, cworst = 0;
        for (int s : steps) {
            const Result r = find(ref.method, s);
            best = std::min(best, r.us_per_step);
            worst = std::max(worst, r.us_per_step);
            cbest = std::min(cbest, r.cpu_us_per_step);
            cworst = std::max(cworst, r.cpu_us_per_step);
        }
        fmt::print("  {:<16} reference {:.1f}-{:.1f} ms/step, ours {:.0f}-{:.0f} | {:.0f}-{:.0f} us/step: "
                   "{:.1f}x-{:.1f}x | {:.1f}x-{:.1f}x\n",
                   ref.method, ref.lo_ms, ref.hi_ms, best, worst, cbest, cworst, ref.lo_ms * 1e3 / worst,
                   ref.hi_ms * 1e3 / best, ref.lo_ms * 1e3 / cworst, ref.hi_ms * 1e3 / cbest);
    }
    fmt::print("adjoint time / backprop time (target <= 2.5), CPU time:");
    for (int s : steps)
        fmt::print("  {} steps {:.2f}", s,
                   find("adjoint", s).cpu_us_per_step / find("backprop", s).cpu_us_per_step);
    fmt::print("\nmemory growth 16 -> 1024 steps (target <= 1.10 for adjoint and reversible Heun):\n");
    for (auto& m : methods) {
        const Result a = find(m, 16), b = find(m, 1024);
        fmt::print("  {:<16} peak RSS {:.2f} -> {:.2f} MiB ({:.2f}x), arena {:.2f} -> {:.2f} MiB ({:.2f}x)\n",
                   m, a.peak_mib, b.peak_mib, b.peak_mib / a.peak_mib, a.arena_mib, b.arena_mib,
                   b.arena_mib / a.arena_mib);
    }
    return 0;
}
