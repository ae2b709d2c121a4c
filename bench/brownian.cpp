// bench_brownian: microseconds per sequential BrownianPath query, the access pattern of an SDE solver
// (forward: [t_k, t_{k+1}] for k = 0, 1, ...) and of its adjoint (reversed: [t_{k+1}, t_k] for k
// descending), on [0, 1] with size = 4096 paths, at dt = 2^-7 and dt = 0.01, with and without
// Options::dt_hint = dt and Levy area; and with Options::float_normals (the float32 generator) at both dt
// with the hint. Each figure is the median over passes of (pass time / queries), every pass on a fresh
// path, so it includes sampling the tree. Also the cost of the normal generators alone
// (sde/random_normal.hpp: philox_normals and philox_normals_f32 of `size` numbers per call, the call a
// tree split makes), in CPU ns per normal.
//
//   bench_brownian              readable table
//   bench_brownian --json       one JSON object on stdout:
//                               {"size": n, "results": [{"dt", "dt_hint", "levy", "float_normals",
//                                "direction", "us_per_query", "cpu_us_per_query", "splits_per_query"}],
//                                "normal_cpu_ns": ns per normal of philox_normals,
//                                "normal_f32_cpu_ns": ns per normal of philox_normals_f32}
//   bench_brownian --size N     paths per query (default 4096)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "sde/brownian.hpp"
#include "sde/random_normal.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using sdeuq::sde::BrownianOptions;
using sdeuq::sde::BrownianPath;

struct Result {
    double dt, dt_hint;
    bool levy, float_normals, reversed;
    double us_per_query, cpu_us_per_query, splits_per_query;
};

// CPU time of this thread: on a loaded machine wall time also counts the time other processes ran.
double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

Result run(std::int64_t size, double dt, double dt_hint, bool levy, bool float_normals, bool reversed) {
    const int n = static_cast<int>(std::ceil(1.0 / dt - 1e-9));
    std::vector<double> t(static_cast<std::size_t>(n) + 1);
    for (int k = 0; k <= n; ++k) t[static_cast<std::size_t>(k)] = std::min(1.0, k * dt);
    std::vector<double> dw(static_cast<std::size_t>(size)), hh(static_cast<std::size_t>(size));
    BrownianOptions opt;
    opt.dt_hint = dt_hint;
    opt.levy_area = levy;
    opt.float_normals = float_normals;
    std::vector<double> per_query, cpu_per_query;
    double splits = 0.0, checksum = 0.0;
    double total = 0.0;
    for (int pass = 0; pass < 15 && (pass < 3 || total < 0.5); ++pass) {
        const BrownianPath bm(0.0, 1.0, size, 1234 + static_cast<std::uint64_t>(pass), opt);
        const auto start = clock_type::now();
        const double cpu_start = thread_cpu_seconds();
        for (int i = 0; i < n; ++i) {
            const auto k = static_cast<std::size_t>(reversed ? n - 1 - i : i);
            const double s = reversed ? t[k + 1] : t[k], e = reversed ? t[k] : t[k + 1];
            if (levy) {
                bm.increment_levy(s, e, dw, hh);
            } else {
                bm.increment(s, e, dw);
            }
            checksum += dw[0];
        }
        const double sec = std::chrono::duration<double>(clock_type::now() - start).count();
        cpu_per_query.push_back(1e6 * (thread_cpu_seconds() - cpu_start) / n);
        total += sec;
        per_query.push_back(1e6 * sec / n);
        splits = static_cast<double>(bm.stats().splits) / n;
    }
    std::sort(per_query.begin(), per_query.end());
    std::sort(cpu_per_query.begin(), cpu_per_query.end());
    if (checksum == 12345.678) std::puts("");  // keeps the queries observable
    const std::size_t mid = per_query.size() / 2;
    return {dt, dt_hint, levy, float_normals, reversed, per_query[mid], cpu_per_query[mid], splits};
}

// Median over passes of the CPU ns per normal of philox_normals (T = double) or philox_normals_f32
// (T = float) of size numbers, a new stream per call.
template <class T>
double normal_cpu_ns(std::int64_t size) {
    std::vector<T> z(static_cast<std::size_t>(size));
    std::vector<double> per_normal;
    const int calls = std::max(1, static_cast<int>(1000000 / size));
    double checksum = 0.0, total = 0.0;
    std::uint64_t stream = 1;
    for (int pass = 0; pass < 25 && (pass < 5 || total < 0.3); ++pass) {
        const double start = thread_cpu_seconds();
        for (int c = 0; c < calls; ++c) {
            if constexpr (std::is_same_v<T, float>) {
                sdeuq::sde::philox_normals_f32(1234, stream++, 0, z.data(), z.size());
            } else {
                sdeuq::sde::philox_normals(1234, stream++, 0, z.data(), z.size());
            }
            checksum += z[static_cast<std::size_t>(c) % z.size()];
        }
        const double sec = thread_cpu_seconds() - start;
        total += sec;
        per_normal.push_back(1e9 * sec / (static_cast<double>(calls) * static_cast<double>(size)));
    }
    if (checksum == 12345.678) std::puts("");  // keeps the calls observable
    std::sort(per_normal.begin(), per_normal.end());
    return per_normal[per_normal.size() / 2];
}

void usage(std::FILE* f) {
    fmt::print(f, "usage: bench_brownian [--json] [--size N] [--help]\n"
                  "  --json     print one JSON object on stdout instead of the table\n"
                  "  --size N   number of paths per query (default 4096)\n");
}

}  // namespace

int main(int argc, char** argv) {
    bool json = false;
    std::int64_t size = 4096;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--json") {
            json = true;
        } else if (arg == "--size" && i + 1 < argc) {
            size = std::stoll(argv[++i]);
            if (size < 1) {
                fmt::print(stderr, "bench_brownian: --size must be >= 1\n");
                return 2;
            }
        } else if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        } else {
            fmt::print(stderr,
                       "bench_brownian: unknown argument '{}'; allowed flags: --json, --size N, --help\n",
                       arg);
            usage(stderr);
            return 2;
        }
    }
    const double normal_ns = normal_cpu_ns<double>(size);
    const double normal_f32_ns = normal_cpu_ns<float>(size);
    std::vector<Result> results;
    for (bool levy : {false, true}) {
        for (double dt : {0x1p-7, 0.01}) {
            for (bool hint : {true, false}) {
                for (bool reversed : {false, true}) {
                    results.push_back(run(size, dt, hint ? dt : 0.0, levy, false, reversed));
                }
            }
        }
    }
    // The float32 generator, on the grid a fixed-step float32 solve uses (with the hint).
    for (double dt : {0x1p-7, 0.01}) {
        for (bool reversed : {false, true}) results.push_back(run(size, dt, dt, false, true, reversed));
    }
    if (json) {
        std::string out = fmt::format("{{\"size\": {}, \"results\": [", size);
        for (std::size_t i = 0; i < results.size(); ++i) {
            const Result& r = results[i];
            out += fmt::format("{}{{\"dt\": {}, \"dt_hint\": {}, \"levy\": {}, \"float_normals\": {}, "
                               "\"direction\": \"{}\", \"us_per_query\": {:.3f}, "
                               "\"cpu_us_per_query\": {:.3f}, \"splits_per_query\": {:.3f}}}",
                               i ? ", " : "", r.dt, r.dt_hint, r.levy ? "true" : "false",
                               r.float_normals ? "true" : "false", r.reversed ? "reversed" : "forward",
                               r.us_per_query, r.cpu_us_per_query, r.splits_per_query);
        }
        out += fmt::format("], \"normal_cpu_ns\": {:.3f}, \"normal_f32_cpu_ns\": {:.3f}}}", normal_ns,
                           normal_f32_ns);
        fmt::print("{}\n", out);
        return 0;
    }
    fmt::print("philox_normals: {:.2f} cpu ns per normal, philox_normals_f32: {:.2f} ({} per call)\n",
               normal_ns, normal_f32_ns, size);
    fmt::print("BrownianPath sequential queries on [0, 1], size = {}\n", size);
    fmt::print("{:>6} {:>8} {:>5} {:>7} {:>9} {:>10} {:>14} {:>13}\n", "dt", "dt_hint", "levy", "normals",
               "direction", "us/query", "cpu us/query", "splits/query");
    for (const Result& r : results) {
        fmt::print("{:>6} {:>8} {:>5} {:>7} {:>9} {:>10.1f} {:>14.1f} {:>13.2f}\n",
                   r.dt == 0.01 ? "0.01" : "2^-7",
                   r.dt_hint == 0.0 ? "none" : (r.dt_hint == 0.01 ? "0.01" : "2^-7"), r.levy ? "yes" : "no",
                   r.float_normals ? "f32" : "f64", r.reversed ? "reversed" : "forward", r.us_per_query,
                   r.cpu_us_per_query, r.splits_per_query);
    }
    return 0;
}
