// bench_sde_grad: time and memory of one forward + backward of sum(y_T^2) through a neural SDE with the
// three gradient estimators (backprop through the solver, stochastic adjoint, reversible Heun).
//
//   bench_sde_grad          readable table and the ratios against the torchsde reference figures
//   bench_sde_grad --only METHOD STEPS   one configuration in-process (for profilers)
//   bench_sde_grad --profile METHOD STEPS  forward and backward CPU time per step, tape nodes per step,
//                           and the op profile (autodiff/profile.hpp) of the fastest of 5 profiled runs
//   bench_sde_grad --json   {"peak_gflops": x, "results": [{"method", "kl", "adaptive", "steps",
//                           "accepted_steps", "us_per_step", "cpu_us_per_step", "peak_mib", "arena_mib",
//                           "gemm_mflop_per_step", "floor_us_per_step", "floor_fraction"}]}
//   bench_sde_grad --quick  the 128-step rows only
//
// Rows: each estimator at 16, 128 and 1024 steps without KL ("kl": "none", the rows of earlier runs);
// each estimator x KL estimator (plain, full, stl) at 128 steps: sdeint_logqp of the same network as the
// posterior against an OU prior h(y) = -y, loss sum(y_T^2) + sum(logqp_T), state 32 + the KL coordinate;
// the adjoint with adaptive steps (rtol = atol = 1e-3 from dt = 1/128; "steps" is then the mean number of
// accepted steps, and per-step figures divide by it).
//
// The arithmetic floor: the GEMM FLOPs of one step (counted below from the evaluations each estimator
// does; the elementwise work is not counted) divided by the single-core float32 FMA peak measured in this
// process (12 independent AVX2 FMA chains, the loop of bench_gemm), and the fraction of it reached
// (floor_us_per_step / cpu_us_per_step).
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
#include "nn/layers.hpp"
#include "sde/adjoint.hpp"
#include "sde/logqp.hpp"
#include "sde/module_sde.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

using namespace sdeuq;
using namespace sdeuq::sde;

namespace {

constexpr std::int64_t kState = 32, kHidden = 64, kBatch = 128;

Tensor init_weight(std::int64_t out, std::int64_t in, std::uint64_t stream) {
    Generator g(1, stream);
    return randn({out, in}, g, DType::f32, 0.0, 1.0 / std::sqrt(static_cast<double>(in)));
}

// The drift and diffusion networks (nn::Sequential: each Linear followed by an activation runs as one fused
// linear(..., LinearAct) op), shared by the plain SDE, a ModuleSDE whose parameters() are the modules',
// and the posterior of the KL rows. The weights are set to the bench's own draws (the same as before the
// networks were modules), in the order drift w1, b1, w2, b2, then diffusion v1, c1, v2, c2.
class Nets {
public:
    Nets() {
        Generator unused(0, 0);  // the Linear layers' own initialisation, overwritten below
        auto layer = [&](nn::Sequential& net, std::int64_t in, std::int64_t out, std::uint64_t stream,
                         double bias) {
            auto lin = net.emplace<nn::Linear>(in, out, unused);
            lin->weight().value().copy_from(init_weight(out, in, stream));
            lin->bias()->value().fill(bias);
        };
        layer(*f_, kState, kHidden, 1, 0.0);
        f_->emplace<nn::Activation>(nn::Act::tanh);
        layer(*f_, kHidden, kState, 2, 0.0);
        layer(*g_, kState, kHidden, 3, 0.0);
        g_->emplace<nn::Activation>(nn::Act::tanh);
        layer(*g_, kHidden, kState, 4, -2.0);
        g_->emplace<nn::Activation>(nn::Act::sigmoid);
    }
    std::shared_ptr<nn::Sequential> f_ = std::make_shared<nn::Sequential>();
    std::shared_ptr<nn::Sequential> g_ = std::make_shared<nn::Sequential>();
};

// The same networks as a posterior against the OU prior h(y) = -y; parameters() are the ModuleSDE's.
class NeuralPosterior : public PosteriorPriorSDE {
public:
    explicit NeuralPosterior(ModuleSDE& sde) : sde_(&sde) {
        add_parameters([s = sde_] { return s->parameters(); });
    }
    Calculus calculus() const override { return Calculus::stratonovich; }
    Var f(double t, const Var& y) override { return sde_->f(t, y); }
    Var g(double t, const Var& y) override { return sde_->g(t, y); }
    Var h(double, const Var& y) override { return -y; }

private:
    ModuleSDE* sde_;
};

double thread_cpu_seconds();

// Single-core float32 FMA peak in GFLOP/s (12 independent AVX2 FMA chains: two 4-cycle FMA pipes need
// 8 in flight; the same loop as bench_gemm's), best of 5; 0 without AVX2/FMA.
#if defined(__x86_64__)
__attribute__((target("avx2,fma"), noinline)) float fma_chains(std::int64_t iters) {
    const __m256 mul = _mm256_set1_ps(0.9999999f), add = _mm256_set1_ps(1e-7f);
    __m256 r[12];
    for (int k = 0; k < 12; ++k) r[k] = _mm256_set1_ps(1.0f + 0.1f * static_cast<float>(k));
    for (std::int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
        for (int k = 0; k < 12; ++k) r[k] = _mm256_fmadd_ps(r[k], mul, add);
    }
    __m256 s = r[0];
    for (int k = 1; k < 12; ++k) s = _mm256_add_ps(s, r[k]);
    alignas(32) float out[8];
    _mm256_store_ps(out, s);
    return out[0] + out[7];
}
double fma_peak_gflops() {
    if (!__builtin_cpu_supports("fma") || !__builtin_cpu_supports("avx2")) return 0.0;
    const std::int64_t iters = 20'000'000;
    volatile float sink = fma_chains(iters / 10);  // clocks up
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {  // thread CPU time: a loaded machine preempts, it does not slow FMAs
        const double t0 = thread_cpu_seconds();
        sink = sink + fma_chains(iters);
        best = std::min(best, thread_cpu_seconds() - t0);
    }
    return static_cast<double>(iters) * 12 * 8 * 2 / best * 1e-9;
}
#else
double fma_peak_gflops() { return 0.0; }
#endif

// GEMMs of one step, in units of one GEMM of [batch, 32] x [32, 64] (2 * 128 * 32 * 64 flops; every
// linear layer here is one). E = one (f, g) evaluation = 4 GEMMs; V = its VJP with respect to y and the
// weights = 8 (dx and dW per layer); Vx = with respect to y only = 4.
//   backprop (midpoint):  forward 2E, backward 2V                              = 24
//   adjoint (midpoint):   forward 2E, backward 2 (E + V)                       = 32
//   reversible Heun:      forward E, backward E + V                            = 16
// The KL cost evaluates u = (f - h) / g at the left point: plain and full one E, stl two (u and u with the
// weights detached). Backprop adds those forward and their VJPs backward (V, and Vx for stl's detached u);
// the adjoint and reversible Heun add them forward, and backward the same evaluations again plus the VJPs.
// Adaptive adjoint: per accepted step, forward (solver steps / accepted steps) x 2E, backward 2 (E + V).
double gemms_per_step(const std::string& method, const std::string& kl, double solver_steps_per_step) {
    const double E = 4, V = 8, Vx = 4;
    double n = 0;
    if (method == "backprop") n = 2 * E + 2 * V;
    if (method == "adjoint") n = solver_steps_per_step * 2 * E + 2 * (E + V);
    if (method == "reversible_heun") n = E + E + V;
    if (kl == "none") return n;
    const double evals = kl == "stl" ? 2 : 1, vjps = V + (kl == "stl" ? Vx : 0);
    return n + evals * E + (method == "backprop" ? 0 : evals * E) + vjps;
}
constexpr double kGemmFlops = 2.0 * kBatch * kState * kHidden;

struct Result {
    std::string method, kl = "none";
    bool adaptive = false;
    int steps = 0;
    double accepted_steps = 0;  // mean accepted steps of a solve (= steps for fixed steps)
    double solver_steps = 0;    // mean solver steps of a solve
    double us_per_step = 0, cpu_us_per_step = 0, peak_mib = 0, arena_mib = 0;
};

struct Case {
    std::string method, kl = "none";
    bool adaptive = false;
    int steps = 128;
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
    Nets nets;
    ModuleSDE sde{nets.f_, nets.g_, ModuleSDEOptions{Noise::diagonal, Calculus::stratonovich}};
    NeuralPosterior posterior{sde};
    std::string kl;
    Tensor y0;
    SolveOptions opt;
    BrownianPath bm;
    std::vector<double> ts{0.0, 1.0};
    SolveStats stats;

    explicit Config(const Case& c)
        : kl(c.kl),
          y0([] {
              Generator gen(2, 9);
              return randn({kBatch, kState}, gen, DType::f32, 0.0, 0.5);
          }()),
          opt(options(c)),
          bm(0.0, 1.0, kBatch * kState, 17, BrownianOptions{opt.dt, 0.0, false, true}) {}

    static SolveOptions options(const Case& c) {
        SolveOptions o;
        o.dt = 1.0 / c.steps;
        o.solver = c.method == "reversible_heun" ? "reversible_heun" : "midpoint";
        o.estimator = c.method;
        o.adaptive = c.adaptive;
        o.rtol = o.atol = 1e-3;
        return o;
    }
    // sum(y_T^2) (+ sum(logqp_T) with a KL estimator) of one solve, recorded on the current tape.
    Var loss() {
        if (kl == "none") {
            Var ys = sdeint(sde, leaf(y0), ts, bm, opt, &stats);
            Var yT = slice(ys, 0, 1, 2);
            return sum(yT * yT);
        }
        const KLEstimator e = kl == "plain" ? KLEstimator::plain
                              : kl == "full" ? KLEstimator::full
                                             : KLEstimator::stl;
        LogqpResult r = sdeint_logqp(posterior, leaf(y0), ts, bm, opt, e, &stats);
        Var yT = slice(r.ys, 0, 1, 2);
        return sum(yT * yT) + sum(slice(r.logqp, 0, 1, 2));
    }
};

// Runs in the forked child.
Result run(const Case& c) {
    ThreadsScope threads(1);
    reset_peak_rss();
    const long rss0 = status_kib("VmRSS:");
    Config cfg(c);
    double accepted = 0, solver_steps = 0;
    auto once = [&]() {
        backward(cfg.loss());
        reset_tape();
        accepted += static_cast<double>(cfg.stats.steps);
        solver_steps += static_cast<double>(cfg.stats.solver_steps);
    };
    once();  // warm-up
    const int reps = std::max(2, 4096 / c.steps);
    accepted = solver_steps = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = thread_cpu_seconds();
    for (int r = 0; r < reps; ++r) once();
    const double cpu = thread_cpu_seconds() - c0;
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Result res;
    res.method = c.method;
    res.kl = c.kl;
    res.adaptive = c.adaptive;
    res.steps = c.steps;
    res.accepted_steps = accepted / reps;
    res.solver_steps = solver_steps / reps;
    res.us_per_step = sec / reps / res.accepted_steps * 1e6;
    res.cpu_us_per_step = cpu / reps / res.accepted_steps * 1e6;
    res.peak_mib = static_cast<double>(status_kib("VmHWM:") - rss0) / 1024.0;
    res.arena_mib = static_cast<double>(arena_bytes()) / (1024.0 * 1024.0);
    return res;
}

// --profile METHOD STEPS: where a step's time goes, op by op (autodiff/profile.hpp), forward and backward
// of the estimator together (the adjoint's and reversible Heun's nested VJPs included). Of 5 profiled
// runs (after a warm-up), the one with the least total CPU time is shown: its forward, backward and table.
void profile(const std::string& method, int steps) {
    ThreadsScope threads(1);
    Config cfg(Case{method, "none", false, steps});
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

Result run_forked(const Case& c) {
    int fd[2];
    if (pipe(fd) != 0) return run(c);
    const pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        Result r = run(c);
        double buf[6] = {r.us_per_step, r.cpu_us_per_step, r.peak_mib, r.arena_mib, r.accepted_steps,
                         r.solver_steps};
        ssize_t w = write(fd[1], buf, sizeof buf);
        _exit(w == static_cast<ssize_t>(sizeof buf) ? 0 : 1);
    }
    close(fd[1]);
    double buf[6] = {0, 0, 0, 0, 0, 0};
    ssize_t got = read(fd[0], buf, sizeof buf);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    Result r;
    r.method = c.method;
    r.kl = c.kl;
    r.adaptive = c.adaptive;
    r.steps = c.steps;
    if (got != static_cast<ssize_t>(sizeof buf) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "bench_sde_grad: child for %s/%s/%d failed\n", c.method.c_str(), c.kl.c_str(),
                     c.steps);
        r.us_per_step = r.cpu_us_per_step = r.peak_mib = r.arena_mib = -1;
        return r;
    }
    r.us_per_step = buf[0];
    r.cpu_us_per_step = buf[1];
    r.peak_mib = buf[2];
    r.arena_mib = buf[3];
    r.accepted_steps = buf[4];
    r.solver_steps = buf[5];
    return r;
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
    bool json = false, quick = false;
    std::vector<std::string> methods{"backprop", "adjoint", "reversible_heun"};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--profile" && i + 2 < argc) {
            profile(argv[i + 1], std::atoi(argv[i + 2]));
            return 0;
        }
        if (a == "--json") {
            json = true;
        } else if (a == "--peak") {
            fmt::print("single-core float32 FMA peak {:.1f} GFLOP/s\n", fma_peak_gflops());
            return 0;
        } else if (a == "--quick") {
            quick = true;
        } else if (a == "--only" && i + 2 < argc) {  // --only METHOD STEPS [KL]: one configuration, no fork
            const std::string kl = i + 3 < argc ? argv[i + 3] : "none";
            Result r = run(Case{argv[i + 1], kl, false, std::atoi(argv[i + 2])});
            fmt::print("{} {} steps kl {}: {:.1f} us/step wall, {:.1f} us/step cpu, peak {:.2f} MiB\n",
                       r.method, r.steps, r.kl, r.us_per_step, r.cpu_us_per_step, r.peak_mib);
            return 0;
        } else {
            std::fprintf(
                stderr,
                "bench_sde_grad: unknown flag '%s' (allowed: --json, --quick, --only METHOD STEPS [KL], "
                "--profile METHOD STEPS)\n",
                a.c_str());
            return 2;
        }
    }
    const std::vector<int> steps = quick ? std::vector<int>{128} : std::vector<int>{16, 128, 1024};
    std::vector<Case> cases;
    for (auto& m : methods)
        for (int s : steps) cases.push_back(Case{m, "none", false, s});
    for (auto& m : methods)
        for (const char* kl : {"plain", "full", "stl"}) cases.push_back(Case{m, kl, false, 128});
    cases.push_back(Case{"adjoint", "none", true, 128});
    const double peak = fma_peak_gflops();
    std::vector<Result> results;
    for (const Case& c : cases) results.push_back(run_forked(c));
    const double peak_after = fma_peak_gflops();  // the host's clock drifts: the larger of the two
    const double pk = std::max(peak, peak_after);
    auto floor_us = [&](const Result& r) {
        const double gemms = gemms_per_step(r.method, r.kl, r.solver_steps / std::max(1.0, r.accepted_steps));
        return pk > 0 ? gemms * kGemmFlops / (pk * 1e3) : 0.0;
    };
    auto mflop = [&](const Result& r) {
        return gemms_per_step(r.method, r.kl, r.solver_steps / std::max(1.0, r.accepted_steps)) * kGemmFlops *
               1e-6;
    };

    if (json) {
        fmt::print("{{\"peak_gflops\": {:.2f}, \"results\": [", pk);
        for (std::size_t i = 0; i < results.size(); ++i) {
            const Result& r = results[i];
            fmt::print(
                "{}{{\"method\": \"{}\", \"kl\": \"{}\", \"adaptive\": {}, \"steps\": {}, "
                "\"accepted_steps\": "
                "{:.2f}, \"us_per_step\": {:.3f}, \"cpu_us_per_step\": {:.3f}, \"peak_mib\": {:.3f}, "
                "\"arena_mib\": {:.3f}, \"gemm_mflop_per_step\": {:.3f}, \"floor_us_per_step\": {:.3f}, "
                "\"floor_fraction\": {:.3f}}}",
                i ? ", " : "", r.method, r.kl, r.adaptive ? "true" : "false", r.steps, r.accepted_steps,
                r.us_per_step, r.cpu_us_per_step, r.peak_mib, r.arena_mib, mflop(r), floor_us(r),
                floor_us(r) / r.cpu_us_per_step);
        }
        fmt::print("]}}\n");
        return 0;
    }
    fmt::print(
        "neural SDE d={} batch={} hidden={} float32, Stratonovich, t in [0, 1], 1 thread; FMA peak "
        "{:.1f} GFLOP/s (measured before and after: {:.1f}, {:.1f})\n",
        kState, kBatch, kHidden, pk, peak, peak_after);
    fmt::print("{:<16} {:>5} {:>8} {:>6} {:>10} {:>12} {:>9} {:>9} {:>10} {:>9} {:>7}\n", "method", "kl",
               "adaptive", "steps", "us/step", "cpu us/step", "peak MiB", "arena MiB", "GEMM MFLOP",
               "floor us", "of it");
    for (auto& r : results)
        fmt::print(
            "{:<16} {:>5} {:>8} {:>6.1f} {:>10.1f} {:>12.1f} {:>9.2f} {:>9.2f} {:>10.2f} {:>9.1f} "
            "{:>6.0f}%\n",
            r.method, r.kl, r.adaptive ? "yes" : "no", r.accepted_steps, r.us_per_step, r.cpu_us_per_step,
            r.peak_mib, r.arena_mib, mflop(r), floor_us(r), 100 * floor_us(r) / r.cpu_us_per_step);
    auto find = [&](const std::string& m, int s) {
        for (auto& r : results)
            if (r.method == m && r.steps == s && r.kl == "none" && !r.adaptive) return r;
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
        fmt::print(
            "  {:<16} reference {:.1f}-{:.1f} ms/step, ours {:.0f}-{:.0f} | {:.0f}-{:.0f} us/step: "
            "{:.1f}x-{:.1f}x | {:.1f}x-{:.1f}x\n",
            ref.method, ref.lo_ms, ref.hi_ms, best, worst, cbest, cworst, ref.lo_ms * 1e3 / worst,
            ref.hi_ms * 1e3 / best, ref.lo_ms * 1e3 / cworst, ref.hi_ms * 1e3 / cbest);
    }
    fmt::print("adjoint time / backprop time (target <= 2.5), CPU time:");
    for (int s : steps)
        fmt::print("  {} steps {:.2f}", s,
                   find("adjoint", s).cpu_us_per_step / find("backprop", s).cpu_us_per_step);
    if (!quick) {
        fmt::print("\nmemory growth 16 -> 1024 steps (target <= 1.10 for adjoint and reversible Heun):\n");
        for (auto& m : methods) {
            const Result a = find(m, 16), b = find(m, 1024);
            fmt::print(
                "  {:<16} peak RSS {:.2f} -> {:.2f} MiB ({:.2f}x), arena {:.2f} -> {:.2f} MiB ({:.2f}x)\n", m,
                a.peak_mib, b.peak_mib, b.peak_mib / a.peak_mib, a.arena_mib, b.arena_mib,
                b.arena_mib / a.arena_mib);
        }
    } else {
        fmt::print("\n");
    }
    return 0;
}
