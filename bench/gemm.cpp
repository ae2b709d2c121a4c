// bench_gemm: sgemm throughput against the measured single-core FMA peak and, when built with it,
// OpenBLAS in the same run.
//
//   bench_gemm            readable table
//   bench_gemm --json     one JSON object on stdout:
//                         {"peak_gflops": x, "results": [{"n", "threads", "gflops", "openblas_gflops"}]}
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "autodiff/kernels/gemm.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/parallel.hpp"
#include "autodiff/tape.hpp"

#include "bench/fma_peak.hpp"

#ifdef SDEUQ_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

using sdeuq::bench::measure_peak_gflops;

// Best-of-reps seconds per call of fn(): calls are grouped into batches of at least ~5 ms so that
// small sizes are not dominated by timer resolution.
template <class F>
double best_seconds_per_call(F&& fn) {
    fn();
    auto t0 = clock_type::now();
    fn();
    const double one = std::max(seconds_since(t0), 1e-7);
    const int per_batch = static_cast<int>(std::clamp(5e-3 / one, 1.0, 100000.0));
    const int batches = one > 0.2 ? 3 : 7;
    double best = 1e30;
    for (int r = 0; r < batches; ++r) {
        auto t1 = clock_type::now();
        for (int i = 0; i < per_batch; ++i) fn();
        best = std::min(best, seconds_since(t1) / per_batch);
    }
    return best;
}

// Best microseconds per call of fn with 1 and 2 kernel threads (best of 5 measurements each).
template <class F>
std::array<double, 2> best_us_1t_2t(F&& fn) {
    std::array<double, 2> us{};
    for (int t = 1; t <= 2; ++t) {
        sdeuq::ThreadsScope scope(t);
        double best = 1e30;
        for (int rep = 0; rep < 5; ++rep) best = std::min(best, best_seconds_per_call(fn));
        us[static_cast<std::size_t>(t - 1)] = best * 1e6;
    }
    return us;
}


struct Result {
    int n;
    int threads;
    double gflops;
    double openblas_gflops;  // < 0: not measured
    double seconds;
};

std::string json_number(double v) {
    return v < 0 ? "null" : fmt::format("{:.3f}", v);
}

void usage(std::FILE* f) {
    fmt::print(f,
               "usage: bench_gemm [--json] [--shapes] [--help]\n"
               "  --json     print one JSON object on stdout instead of the table\n"
               "  --shapes   time the shapes of the training benchmark instead: 128^3 in the three transposed\n"
               "             forms of an MLP layer, two small SDE shapes, and linear forward + backward\n"
               "  --help     print this message\n");
}

// The GEMMs of a training step: best-of microseconds per call at 1 and 2 threads.
void run_shapes() {
    struct Shape3 {
        const char* name;
        bool ta, tb;
        int m, n, k;
        float beta;
    };
    const Shape3 shapes[] = {
        {"NT 128^3 (x W^T)", false, true, 128, 128, 128, 0.0f},
        {"NN 128^3 (dY W)", false, false, 128, 128, 128, 0.0f},
        {"TN 128^3 (dY^T X, beta 1)", true, false, 128, 128, 128, 1.0f},
        {"NT m128 n64 k32", false, true, 128, 64, 32, 0.0f},
        {"TN m64 n32 k128", true, false, 64, 32, 128, 1.0f},
    };
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    fmt::print("{:<28} {:>10} {:>10}\n", "shape", "1 thr us", "2 thr us");
    for (const Shape3& s : shapes) {
        const int lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
        std::vector<float> a(static_cast<std::size_t>(s.m) * s.k), b(static_cast<std::size_t>(s.k) * s.n);
        std::vector<float> c(static_cast<std::size_t>(s.m) * s.n, 0.0f);
        for (auto& x : a) x = dist(rng);
        for (auto& x : b) x = dist(rng);
        const auto us = best_us_1t_2t([&] {
            sdeuq::kernels::gemm<float>(s.ta, s.tb, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, s.beta,
                                        c.data(), s.n);
        });
        fmt::print("{:<28} {:>10.2f} {:>10.2f}\n", s.name, us[0], us[1]);
    }
    // linear(x, W, &b) forward + backward, x [128, 128], W [128, 128], b [128] (all need gradients).
    sdeuq::Parameter w("w", sdeuq::Tensor::zeros(sdeuq::Shape{128, 128})), bias("b", sdeuq::Tensor::zeros(sdeuq::Shape{128}));
    sdeuq::Parameter x("x", sdeuq::Tensor::zeros(sdeuq::Shape{128, 128}));
    for (auto* p : {&w, &bias, &x}) {
        float* d = p->value().data<float>();
        for (std::int64_t i = 0; i < p->value().numel(); ++i) d[i] = dist(rng);
    }
    const sdeuq::Tensor cot = sdeuq::Tensor::full(sdeuq::Shape{128, 128}, 0.5);
    const auto us = best_us_1t_2t([&] {
        sdeuq::NestedTape tape;
        sdeuq::Var bv = bias.var();
        sdeuq::Var y = sdeuq::linear(x.var(), w.var(), &bv);
        sdeuq::backward(y, cot);
    });
    fmt::print("{:<28} {:>10.2f} {:>10.2f}\n", "linear fwd+bwd 128 (+bias)", us[0], us[1]);
    // The same layer as matmul followed by a broadcast add (what linear did before the fused epilogue).
    const auto us_plain = best_us_1t_2t([&] {
        sdeuq::NestedTape tape;
        sdeuq::Var y = sdeuq::add(sdeuq::matmul(x.var(), w.var(), false, true), bias.var());
        sdeuq::backward(y, cot);
    });
    fmt::print("{:<28} {:>10.2f} {:>10.2f}\n", "matmul + add fwd+bwd 128", us_plain[0], us_plain[1]);
}

}  // namespace

int main(int argc, char** argv) {
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--json") {
            json = true;
        } else if (arg == "--shapes") {
            run_shapes();
            return 0;
        } else if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        } else {
            fmt::print(stderr, "bench_gemm: unknown argument '{}'; allowed flags: --json, --shapes, --help\n", arg);
            usage(stderr);
            return 2;
        }
    }

    double peak = measure_peak_gflops();
    const std::vector<int> sizes = {64, 128, 256, 512, 1024};
    const std::vector<int> thread_counts = {1, 2};
    std::vector<Result> results;

    std::mt19937 rng(12345);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (int n : sizes) {
        const std::size_t nn = static_cast<std::size_t>(n) * n;
        std::vector<float> a(nn), b(nn), c(nn, 0.0f);
        for (auto& x : a) x = dist(rng);
        for (auto& x : b) x = dist(rng);
        const double flops = 2.0 * n * n * n;
        for (int t : thread_counts) {
            Result r{n, t, 0.0, -1.0, 1e30};
            // Ours and OpenBLAS alternate over several rounds, each keeping its best, so that both see
            // the same machine conditions (the host's speed varies over seconds).
            double ob = 1e30;
            for (int round = 0; round < 4; ++round) {
                {
                    sdeuq::ThreadsScope scope(t);
                    r.seconds = std::min(r.seconds, best_seconds_per_call([&] {
                        sdeuq::kernels::gemm<float>(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                                                    c.data(), n);
                    }));
                }
#ifdef SDEUQ_HAVE_OPENBLAS
                openblas_set_num_threads(t);
                ob = std::min(ob, best_seconds_per_call([&] {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(),
                                n, 0.0f, c.data(), n);
                }));
                // OpenBLAS workers keep spinning for a while after a call; let them go to sleep so that they
                // do not take a core from the next measurement of our kernel.
                std::this_thread::sleep_for(std::chrono::milliseconds(t > 1 ? 300 : 20));
#endif
            }
            r.gflops = flops / r.seconds * 1e-9;
#ifdef SDEUQ_HAVE_OPENBLAS
            r.openblas_gflops = flops / ob * 1e-9;
#else
            (void)ob;
#endif
            results.push_back(r);
        }
    }

    // The peak again after the sweep (the larger of the two: the host's clock varies).
    peak = std::max(peak, measure_peak_gflops());

    if (json) {
        std::string out = fmt::format("{{\"peak_gflops\": {}, \"results\": [", json_number(peak));
        for (std::size_t i = 0; i < results.size(); ++i) {
            const Result& r = results[i];
            out += fmt::format("{}{{\"n\": {}, \"threads\": {}, \"gflops\": {}, \"openblas_gflops\": {}}}",
                               i ? ", " : "", r.n, r.threads, json_number(r.gflops),
                               json_number(r.openblas_gflops));
        }
        out += "]}\n";
        fmt::print("{}", out);
        return 0;
    }

    fmt::print("single-core FMA peak (ymm, fp32): {:.1f} GFLOP/s\n", peak);
    fmt::print("{:>6} {:>7} {:>10} {:>10} {:>9} {:>12} {:>9}\n", "n", "threads", "us/call", "GFLOP/s",
               "% peak", "OpenBLAS", "ratio");
    for (const Result& r : results) {
        const double pct = peak > 0 ? 100.0 * r.gflops / (peak * r.threads) : 0.0;
        const std::string ob = r.openblas_gflops < 0 ? "n/a" : fmt::format("{:.1f}", r.openblas_gflops);
        const std::string ratio =
            r.openblas_gflops < 0 ? "n/a" : fmt::format("{:.2f}", r.gflops / r.openblas_gflops);
        fmt::print("{:>6} {:>7} {:>10.1f} {:>10.1f} {:>8.1f}% {:>12} {:>9}\n", r.n, r.threads,
                   r.seconds * 1e6, r.gflops, pct, ob, ratio);
    }
    return 0;
}
