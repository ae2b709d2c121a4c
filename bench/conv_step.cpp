// bench_conv_step: training steps (forward, cross-entropy or squared loss, backward, Adam, tape reset) of
// the convolutional networks the image experiments train, batch 128, float32, 1 and 2 threads:
//   quick     mnist_baselines --quick's network (MnistConvNet width 32, 1 residual block, GroupNorm 8)
//   full      its full-size network (width 64, 2 residual blocks, GroupNorm 32)
//   sde_drift 6 Euler steps x <- x + f(t, x) dt of an SDE-Net-style drift on 64 channels of 6 x 6:
//             f = GN(conv(cat(t, relu(GN(conv(cat(t, relu(GN(x))))))))), GroupNorm(32), concat-time
//             convolutions 65 -> 64, kernel 3, padding 1 (SDE-Net's ConcatConv2d), loss mean(x_T^2)
// Each with the PyTorch peer (bench/conv_step_torch.py) run by this program in the same run, best of N.
//
//   bench_conv_step            readable table
//   bench_conv_step --quick    fewer repetitions
//   bench_conv_step --json     {"peak_gflops", "load_average": [start, end], "results": [{"net",
//                              "threads", "us_per_step", "gflop", "floor_us", "floor_fraction", "gflops",
//                              "peak_fraction", "conv_peak_fraction", "torch_us_per_step", "torch_ratio",
//                              "peak_step_mib", "cpu_us_per_step", "cpu_floor_fraction",
//                              "torch_cpu_us_per_step", "cpu_torch_ratio"}],
//                              "eval_memory": [{"passes", "peak_rss_mib"}], "torch_version"}
//   bench_conv_step --profile  per-op tables (autodiff/profile.hpp) of each network, 1 and 2 threads
//   bench_conv_step --only NET THREADS   10 steps of NET in-process and their times, nothing else (for
//                                        perf and quick comparisons)
//
// FLOPs: 2 x the multiply-adds of the convolutions and the linear head (forward; backward: the weight
// gradient, and the input gradient except for the first convolution, whose input needs none). The floor
// is FLOPs / (threads x the measured single-core FMA peak, timed in CPU time). conv_peak_fraction: the
// convolution FLOPs over the (wall) time the profiler charges to the conv2d op (forward and backward,
// im2col and all), against the peak x threads. Peak memory: the peak resident set growth of a forked
// child that builds the model and runs 3 steps (VmHWM after minus VmRSS before, the peak reset through
// /proc/self/clear_refs). CPU time: the process's CPU seconds per step (all threads), best of N like the
// wall time; on a host shared with other jobs it is the steadier figure (cpu_floor_fraction = floor x
// threads / CPU time). Evaluation memory: the same for 1 and 10 no-grad forward passes of the quick
// network over a batch of 500 without a tape reset between passes (as mnist_baselines' MC-dropout
// prediction runs them).
#include <fmt/format.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/parallel.hpp"
#include "autodiff/profile.hpp"
#include "autodiff/random.hpp"
#include "bench/bench_util.hpp"
#include "bench/fma_peak.hpp"
#include "nn/layers.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"

using namespace sdeuq;

namespace {

constexpr std::int64_t kBatch = 128;

// Multiply-adds of one convolution over the batch: forward, weight gradient, input gradient.
struct ConvCount {
    double fwd = 0, dw = 0, dx = 0;
};
ConvCount conv_madds(std::int64_t c, std::int64_t o, std::int64_t h, int k, int s, int p, bool need_dx) {
    const double ho = static_cast<double>((h + 2 * p - k) / s + 1);
    const double m =
        static_cast<double>(kBatch) * static_cast<double>(o) * ho * ho * static_cast<double>(c * k * k);
    return {m, m, need_dx ? m : 0.0};
}

struct Flops {
    double conv = 0, other = 0;  // FLOPs of one training step
    void add_conv(const ConvCount& cc) { conv += 2 * (cc.fwd + cc.dw + cc.dx); }
    double total() const { return conv + other; }
};

class Net {
public:
    virtual ~Net() = default;
    virtual Var loss() = 0;
    virtual std::vector<Parameter*> parameters() = 0;
    virtual Flops flops() const = 0;
};

class MnistNet : public Net {
public:
    MnistNet(std::int64_t width, int blocks, int groups) : width_(width), blocks_(blocks) {
        Generator gen(0, 1);
        nn::ConvNetConfig cfg;
        cfg.width = width;
        cfg.num_blocks = blocks;
        cfg.groups = groups;
        model_ = std::make_unique<nn::MnistConvNet>(cfg, gen);
        model_->train();
        Generator data_gen(1, 2);
        x_ = randn({kBatch, 1, 28, 28}, data_gen);
        y_.resize(kBatch);
        for (auto& v : y_) v = static_cast<std::int32_t>(data_gen() % 10u);
    }
    Var loss() override { return cross_entropy(model_->forward(Var(x_)), y_); }
    std::vector<Parameter*> parameters() override { return model_->trainable_parameters(); }
    Flops flops() const override {
        Flops f;
        const std::int64_t w = width_;
        f.add_conv(conv_madds(1, w, 28, 3, 1, 0, false));
        f.add_conv(conv_madds(w, w, 26, 4, 2, 1, true));
        f.add_conv(conv_madds(w, w, 13, 4, 2, 1, true));
        for (int b = 0; b < 2 * blocks_; ++b) f.add_conv(conv_madds(w, w, 6, 3, 1, 1, true));
        f.other = 2.0 * 3 * static_cast<double>(kBatch * w * 10);  // the linear head
        return f;
    }

private:
    std::int64_t width_;
    int blocks_;
    std::unique_ptr<nn::MnistConvNet> model_;
    Tensor x_;
    std::vector<std::int32_t> y_;
};

// SDE-Net's drift on the downsampled MNIST features (Kong et al. 2020, the MNIST SDE-Net's drift block:
// norm, relu, concat-time conv, norm, relu, concat-time conv, norm), integrated by 6 Euler steps.
class SdeDrift : public Net {
public:
    static constexpr std::int64_t kC = 64, kHw = 6;
    static constexpr int kSteps = 6;
    SdeDrift() {
        Generator gen(0, 3);
        nn::Conv2dOptions co;
        co.padding = 1;
        gn1_ = std::make_unique<nn::GroupNorm>(32, kC);
        gn2_ = std::make_unique<nn::GroupNorm>(32, kC);
        gn3_ = std::make_unique<nn::GroupNorm>(32, kC);
        conv1_ = std::make_unique<nn::Conv2d>(kC + 1, kC, 3, gen, co);
        conv2_ = std::make_unique<nn::Conv2d>(kC + 1, kC, 3, gen, co);
        Generator data_gen(1, 4);
        x0_ = randn({kBatch, kC, kHw, kHw}, data_gen);
    }
    Var concat_t(double t, const Var& h) {
        Var tc(Tensor::full({kBatch, 1, kHw, kHw}, t));
        const Var parts[2] = {tc, h};
        return concat(parts, 1);
    }
    Var loss() override {
        Var x(x0_);
        const double dt = 1.0 / kSteps;
        for (int i = 0; i < kSteps; ++i) {
            const double t = i * dt;
            Var h = gn1_->forward_relu(x);
            h = gn2_->forward_relu(conv1_->forward(concat_t(t, h)));
            h = gn3_->forward(conv2_->forward(concat_t(t, h)));
            x = x + h * dt;
        }
        return mean(square(x));
    }
    std::vector<Parameter*> parameters() override {
        std::vector<Parameter*> ps;
        for (nn::Module* m : {static_cast<nn::Module*>(gn1_.get()), static_cast<nn::Module*>(gn2_.get()),
                              static_cast<nn::Module*>(gn3_.get()), static_cast<nn::Module*>(conv1_.get()),
                              static_cast<nn::Module*>(conv2_.get())})
            for (Parameter* p : m->trainable_parameters()) ps.push_back(p);
        return ps;
    }
    Flops flops() const override {
        Flops f;
        for (int i = 0; i < 2 * kSteps; ++i) f.add_conv(conv_madds(kC + 1, kC, kHw, 3, 1, 1, true));
        return f;
    }

private:
    std::unique_ptr<nn::GroupNorm> gn1_, gn2_, gn3_;
    std::unique_ptr<nn::Conv2d> conv1_, conv2_;
    Tensor x0_;
};

std::unique_ptr<Net> make_net(const std::string& name) {
    if (name == "quick") return std::make_unique<MnistNet>(32, 1, 8);
    if (name == "full") return std::make_unique<MnistNet>(64, 2, 32);
    return std::make_unique<SdeDrift>();
}

const std::vector<std::string> kNets = {"quick", "full", "sde_drift"};

struct Stepper {
    std::unique_ptr<Net> net;
    std::unique_ptr<nn::Adam> opt;
    explicit Stepper(const std::string& name) : net(make_net(name)) {
        opt = std::make_unique<nn::Adam>(net->parameters(), nn::AdamOptions{.lr = 1e-4});
    }
    void step() {
        opt->zero_grad();
        backward(net->loss());
        opt->step();
        reset_tape();
    }
};

// CPU seconds of the whole process (all threads). On a host shared with other jobs the wall time of a
// block includes the time this process waited for a core; its CPU time does not.
double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// The 1-minute load average (-1 when /proc/loadavg cannot be read): recorded with the timings, which a
// loaded host inflates.
double load_average() {
    double v = -1;
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
        if (std::fscanf(f, "%lf", &v) != 1) v = -1;
        std::fclose(f);
    }
    return v;
}

// The single-core FMA peak as bench::measure_peak_gflops measures it, timed in this thread's CPU time:
// on a loaded host the wall-clock peak counts the time the loop waited for a core (measured at load 16
// on 2 cores: 19 GFLOP/s by wall clock), which would understate the peak and flatter every fraction.
double peak_gflops_cpu() {
#ifdef SDEUQ_BENCH_X86
    if (!__builtin_cpu_supports("fma") || !__builtin_cpu_supports("avx2")) return 0.0;
    auto thread_cpu = [] {
        timespec ts{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
    };
    const std::int64_t iters = 20'000'000;
    volatile float sink = bench::fma_peak_loop(iters / 10);  // warm up clocks
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
        const double t0 = thread_cpu();
        sink = sink + bench::fma_peak_loop(iters);
        best = std::min(best, thread_cpu() - t0);
    }
    return static_cast<double>(iters) * 12 * 8 * 2 / best * 1e-9;
#else
    return 0.0;
#endif
}

struct StepTime {
    double wall, cpu;  // seconds per step, each the best over the blocks
};

// Seconds per step: the fastest of `blocks` blocks of `steps` steps, after 2 warm-up steps, in wall and
// in process CPU time (the minimum of each over the blocks).
StepTime seconds_per_step(Stepper& s, int blocks, int steps) {
    s.step();
    s.step();
    StepTime best{1e300, 1e300};
    for (int b = 0; b < blocks; ++b) {
        const double t0 = bench::now_seconds(), c0 = cpu_seconds();
        for (int i = 0; i < steps; ++i) s.step();
        best.cpu = std::min(best.cpu, (cpu_seconds() - c0) / steps);
        best.wall = std::min(best.wall, (bench::now_seconds() - t0) / steps);
    }
    return best;
}

// Seconds charged to conv2d (forward and backward) per step by the profiler, over `steps` steps.
double conv_seconds_per_step(Stepper& s, int steps) {
    ProfileScope prof;
    for (int i = 0; i < steps; ++i) s.step();
    double us = 0;
    for (const auto& r : profile_results())
        if (r.op == "conv2d") us += r.forward_us + r.backward_us;
    return us * 1e-6 / steps;
}

long status_kib(const char* key) {
    FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long v = 0;
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

// Runs fn() in a forked child and returns its peak resident set growth in MiB (-1 when it failed).
template <class F>
double peak_mib_forked(F&& fn) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    const pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        reset_peak_rss();
        const long rss0 = status_kib("VmRSS:");
        fn();
        const double mib = static_cast<double>(status_kib("VmHWM:") - rss0) / 1024.0;
        const ssize_t w = write(fd[1], &mib, sizeof mib);
        _exit(w == sizeof mib ? 0 : 1);
    }
    close(fd[1]);
    double mib = -1;
    if (read(fd[0], &mib, sizeof mib) != sizeof mib) mib = -1;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return mib;
}

// No-grad forward passes of the quick network over 500 images, as mnist_baselines' predict() runs them.
void eval_passes(int passes) {
    Generator gen(0, 1);
    nn::ConvNetConfig cfg;
    cfg.width = 32;
    cfg.num_blocks = 1;
    cfg.groups = 8;
    cfg.dropout = 0.1;
    nn::MnistConvNet model(cfg, gen);
    Generator data_gen(1, 2);
    Var x(randn({500, 1, 28, 28}, data_gen));
    NoGradScope ng;
    model.eval();
    nn::set_mc_dropout(model, true);
    volatile float sink = 0;
    for (int r = 0; r < passes; ++r) {
        Var p = softmax(model.forward(x), -1);
        sink = sink + p.value().data<float>()[0];
    }
    reset_tape();
}

struct Torch {
    std::string version;
    double us[2] = {-1, -1};      // 1 and 2 threads, wall
    double cpu_us[2] = {-1, -1};  // process CPU time
};

// The PyTorch peer's best microseconds per step of `net`, or negative values when it cannot run.
Torch torch_peer(const std::string& net, bool quick) {
    std::string cmd = std::string("/usr/bin/python3 ") + SDEUQ_SOURCE_DIR +
                      "/bench/conv_step_torch.py --json --net " + net + (quick ? " --quick" : "") +
                      " 2>/dev/null";
    Torch t;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return t;
    char buf[4096] = {};
    std::string out;
    while (fgets(buf, sizeof buf, p)) out += buf;
    if (pclose(p) != 0) return t;
    auto num = [&](const char* key) {
        auto k = out.find(key);
        return k == std::string::npos ? -1.0 : std::atof(out.c_str() + k + std::strlen(key));
    };
    t.us[0] = num("\"torch_us_per_step_1t\": ");
    t.us[1] = num("\"torch_us_per_step_2t\": ");
    t.cpu_us[0] = num("\"torch_cpu_us_per_step_1t\": ");
    t.cpu_us[1] = num("\"torch_cpu_us_per_step_2t\": ");
    auto k = out.find("\"torch_version\": \"");
    if (k != std::string::npos) {
        k += 18;
        t.version = out.substr(k, out.find('"', k) - k);
    }
    return t;
}

struct Row {
    std::string net;
    int threads;
    double us, gflop, floor_us, gflops, conv_gflops, torch_us, peak_mib;
    double cpu_us, torch_cpu_us;
};

std::string num_or_null(double v, int digits = 2) {
    return v > 0 ? fmt::format("{:.{}f}", v, digits) : "null";
}

}  // namespace

int main(int argc, char** argv) {
    // --only NET THREADS: run NET's steps in-process and nothing else (for perf and other profilers)
    if (argc == 4 && !std::strcmp(argv[1], "--only")) {
        ThreadsScope ts(std::atoi(argv[3]));
        Stepper s(argv[2]);
        const StepTime st = seconds_per_step(s, 4, 2);
        std::printf("%s, %s threads: %.0f us/step wall, %.0f us/step CPU (best of 4 blocks of 2 steps)\n",
                    argv[2], argv[3], st.wall * 1e6, st.cpu * 1e6);
        return 0;
    }
    auto flags = bench::parse_flags(argc, argv, "bench_conv_step", true);
    if (flags.profile) {
        for (const auto& name : kNets)
            for (int threads : {1, 2}) {
                ThreadsScope ts(threads);
                Stepper s(name);
                s.step();
                ProfileScope prof;
                const int steps = name == "full" ? 3 : 5;
                for (int i = 0; i < steps; ++i) s.step();
                std::printf("%s", profile_table(fmt::format("{}, {} threads, {} steps, totals in us", name,
                                                            threads, steps))
                                      .c_str());
            }
        return 0;
    }
    // Memory first, in forked children of a process that has not run a step yet (a child inherits the
    // parent's arena chunks, whose pages would then not count as growth).
    std::vector<double> step_mib;
    for (const auto& name : kNets)
        step_mib.push_back(peak_mib_forked([&] {
            ThreadsScope ts(1);
            Stepper s(name);
            for (int i = 0; i < 3; ++i) s.step();
        }));
    const double eval1 = peak_mib_forked([] { eval_passes(1); });
    const double eval10 = peak_mib_forked([] { eval_passes(10); });
    const double load_start = load_average();
    double peak = peak_gflops_cpu();
    std::vector<Row> rows;
    std::string torch_version;
    for (std::size_t ni = 0; ni < kNets.size(); ++ni) {
        const std::string& name = kNets[ni];
        const Flops fl = make_net(name)->flops();
        const double mib = step_mib[ni];
        // The peer first and then ours, per network, so that both see similar machine load.
        const Torch torch = torch_peer(name, flags.quick);
        if (!torch.version.empty()) torch_version = torch.version;
        for (int threads : {1, 2}) {
            ThreadsScope ts(threads);
            Stepper s(name);
            const int steps = name == "full" ? 2 : 4;
            const StepTime st = seconds_per_step(s, flags.quick ? 2 : 5, steps);
            const double sec = st.wall;
            const double conv_sec = conv_seconds_per_step(s, steps);
            const double floor = peak > 0 ? fl.total() / (peak * 1e9 * threads) : 0;
            rows.push_back({name, threads, sec * 1e6, fl.total() * 1e-9, floor * 1e6, fl.total() / sec * 1e-9,
                            fl.conv / conv_sec * 1e-9, torch.us[threads - 1], mib, st.cpu * 1e6,
                            torch.cpu_us[threads - 1]});
        }
    }
    // The peak again after the runs, the larger of the two (the host's clock and load vary); the floors
    // and fractions use it.
    const double peak2 = peak_gflops_cpu();
    const double load_end = load_average();
    if (peak2 > peak) {
        for (Row& r : rows) r.floor_us *= peak / peak2;
        peak = peak2;
    }
    if (flags.json) {
        std::string out = fmt::format(
            "{{\"peak_gflops\": {:.3f}, \"torch_version\": {}, \"load_average\": [{:.2f}, {:.2f}], "
            "\"results\": [",
            peak, torch_version.empty() ? "null" : "\"" + torch_version + "\"", load_start, load_end);
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const Row& r = rows[i];
            const double pk = peak * r.threads;
            out += fmt::format(
                "{}{{\"net\": \"{}\", \"threads\": {}, \"us_per_step\": {:.1f}, \"gflop\": {:.4f}, "
                "\"floor_us\": {:.1f}, \"floor_fraction\": {:.4f}, \"gflops\": {:.3f}, \"peak_fraction\": "
                "{:.4f}, "
                "\"conv_peak_fraction\": {:.4f}, \"torch_us_per_step\": {}, \"torch_ratio\": {}, "
                "\"peak_step_mib\": {:.1f}, \"cpu_us_per_step\": {:.1f}, \"cpu_floor_fraction\": {:.4f}, "
                "\"torch_cpu_us_per_step\": {}, \"cpu_torch_ratio\": {}}}",
                i ? ", " : "", r.net, r.threads, r.us, r.gflop, r.floor_us, r.floor_us / r.us, r.gflops,
                pk > 0 ? r.gflops / pk : 0.0, pk > 0 ? r.conv_gflops / pk : 0.0, num_or_null(r.torch_us, 1),
                r.torch_us > 0 ? fmt::format("{:.3f}", r.torch_us / r.us) : "null", r.peak_mib, r.cpu_us,
                r.floor_us * r.threads / r.cpu_us, num_or_null(r.torch_cpu_us, 1),
                r.torch_cpu_us > 0 ? fmt::format("{:.3f}", r.torch_cpu_us / r.cpu_us) : "null");
        }
        out += fmt::format(
            "], \"eval_memory\": [{{\"passes\": 1, \"peak_rss_mib\": {:.1f}}}, "
            "{{\"passes\": 10, \"peak_rss_mib\": {:.1f}}}]}}",
            eval1, eval10);
        std::printf("%s\n", out.c_str());
        return 0;
    }
    std::printf("conv training steps, batch 128, Adam; single-core FMA peak %.1f GFLOP/s; PyTorch %s\n", peak,
                torch_version.empty() ? "not available" : torch_version.c_str());
    std::printf("load average %.2f at the start, %.2f at the end (2 cores); wall times are best of N blocks, "
                "cpu = process CPU time (all threads), best of N\n",
                load_start, load_end);
    std::printf("%-10s %3s %10s %8s %10s %7s %8s %6s %8s %10s %7s %9s %10s %10s %7s\n", "net", "thr",
                "us/step", "GFLOP", "floor us", "floor%", "GFLOP/s", "peak%", "conv pk%", "torch us", "torch/x",
                "step MiB", "cpu us", "torch cpu", "cpu t/x");
    for (const Row& r : rows) {
        const double pk = peak * r.threads;
        std::printf("%-10s %3d %10.0f %8.3f %10.0f %6.1f%% %8.1f %5.1f%% %7.1f%% %10s %7s %9.1f %10.0f %10s "
                    "%7s\n",
                    r.net.c_str(), r.threads, r.us, r.gflop, r.floor_us, 100 * r.floor_us / r.us, r.gflops,
                    pk > 0 ? 100 * r.gflops / pk : 0.0, pk > 0 ? 100 * r.conv_gflops / pk : 0.0,
                    num_or_null(r.torch_us, 0).c_str(),
                    r.torch_us > 0 ? fmt::format("{:.2f}", r.torch_us / r.us).c_str() : "-", r.peak_mib,
                    r.cpu_us,
                    num_or_null(r.torch_cpu_us, 0).c_str(),
                    r.torch_cpu_us > 0 ? fmt::format("{:.2f}", r.torch_cpu_us / r.cpu_us).c_str() : "-");
    }
    std::printf(
        "no-grad evaluation (quick net, batch 500, MC dropout): peak RSS growth %.1f MiB for 1 pass, "
        "%.1f MiB for 10 passes\n",
        eval1, eval10);
}
