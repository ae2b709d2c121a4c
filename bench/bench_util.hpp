// Small helpers shared by the benchmarks: timing, flag parsing for --json, and CPU model.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace sdeuq::bench {

inline double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best (minimum) wall time of fn over `reps` runs after one warm-up run.
template <class F> double best_of(int reps, F&& fn) {
    fn();
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
        double t0 = now_seconds();
        fn();
        best = std::min(best, now_seconds() - t0);
    }
    return best;
}

// Parses the flags every benchmark takes: --json, --quick. Unknown flags: message and exit 2.
struct Flags {
    bool json = false;
    bool quick = false;
    bool profile = false;  // print the per-op profile (autodiff/profile.hpp) instead of the timing table
};
inline Flags parse_flags(int argc, char** argv, const char* name, bool allow_profile = false) {
    Flags f;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--json")) f.json = true;
        else if (!std::strcmp(argv[i], "--quick")) f.quick = true;
        else if (!std::strcmp(argv[i], "--profile") && allow_profile) f.profile = true;
        else {
            std::fprintf(stderr, "%s: unknown flag '%s' (allowed: --json, --quick%s)\n", name, argv[i],
                         allow_profile ? ", --profile" : "");
            std::exit(2);
        }
    }
    return f;
}

inline std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown";
}

}  // namespace sdeuq::bench
