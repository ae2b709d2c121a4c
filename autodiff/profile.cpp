#include "autodiff/profile.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <unordered_map>

namespace sdeuq {

namespace detail {
thread_local bool t_profiling __attribute__((tls_model("initial-exec"))) = false;
}

namespace {

struct Stats {
    std::int64_t fwd_calls = 0, bwd_calls = 0, fwd_ns = 0, bwd_ns = 0;
};

struct ProfileState {
    // Keyed by the op's name pointer (string literals); merged by text in profile_results().
    std::unordered_map<const char*, Stats> by_op;
    std::int64_t last_mark = 0;
    // Every nanosecond charged to any op so far: a backward that runs nested tapes (the adjoints) is
    // charged only what its nested ops were not, so that the rows add up to the time profiled.
    std::int64_t charged = 0;
};

ProfileState& pstate() {
    thread_local ProfileState s;
    return s;
}

}  // namespace

namespace detail {

std::int64_t profile_now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void profile_forward(const char* op) {
    auto& s = pstate();
    const std::int64_t now = profile_now_ns();
    Stats& st = s.by_op[op];
    ++st.fwd_calls;
    st.fwd_ns += now - s.last_mark;
    s.charged += now - s.last_mark;
    s.last_mark = now;
}

void profile_mark() { pstate().last_mark = profile_now_ns(); }

BackwardTimer profile_backward_begin() {
    auto& s = pstate();
    const std::int64_t now = profile_now_ns();
    s.last_mark = now;  // nested ops recorded inside this backward are charged from here
    return {now, s.charged};
}

void profile_backward_end(const char* op, const BackwardTimer& t) {
    auto& s = pstate();
    const std::int64_t now = profile_now_ns();
    const std::int64_t own = (now - t.start_ns) - (s.charged - t.charged_before);
    Stats& st = s.by_op[op];
    ++st.bwd_calls;
    st.bwd_ns += own;
    s.charged += own;
    s.last_mark = now;
}

}  // namespace detail

void set_profiling(bool on) {
    if (on && !detail::t_profiling) detail::profile_mark();
    detail::t_profiling = on;
}

bool profiling() { return detail::t_profiling; }

void profile_reset() {
    pstate().by_op.clear();
    pstate().charged = 0;
    detail::profile_mark();
}

std::vector<OpProfile> profile_results() {
    std::map<std::string, OpProfile> merged;
    for (const auto& [op, st] : pstate().by_op) {
        OpProfile& p = merged[op];
        p.op = op;
        p.forward_calls += st.fwd_calls;
        p.backward_calls += st.bwd_calls;
        p.forward_us += st.fwd_ns * 1e-3;
        p.backward_us += st.bwd_ns * 1e-3;
    }
    std::vector<OpProfile> out;
    for (auto& [name, p] : merged) out.push_back(p);
    std::stable_sort(out.begin(), out.end(), [](const OpProfile& a, const OpProfile& b) {
        return a.forward_us + a.backward_us > b.forward_us + b.backward_us;
    });
    return out;
}

std::string profile_table(const std::string& title) {
    const auto rows = profile_results();
    double total = 0;
    for (const auto& r : rows) total += r.forward_us + r.backward_us;
    std::string s = fmt::format("{} (forward: time since the previous recorded node; backward: exact)\n", title);
    s += fmt::format("  {:<22} {:>9} {:>11} {:>10} {:>9} {:>11} {:>10} {:>7}\n", "op", "fwd calls", "fwd us",
                     "us/call", "bwd calls", "bwd us", "us/call", "share");
    for (const auto& r : rows)
        s += fmt::format("  {:<22} {:>9} {:>11.1f} {:>10.2f} {:>9} {:>11.1f} {:>10.2f} {:>6.1f}%\n", r.op,
                         r.forward_calls, r.forward_us, r.forward_calls ? r.forward_us / r.forward_calls : 0.0,
                         r.backward_calls, r.backward_us,
                         r.backward_calls ? r.backward_us / r.backward_calls : 0.0,
                         total > 0 ? 100 * (r.forward_us + r.backward_us) / total : 0.0);
    s += fmt::format("  {:<22} {:>9} {:>11} {:>10} {:>9} {:>11} {:>10} {:>7}\n", "total", "", "", "", "",
                     fmt::format("{:.1f}", total), "", "");
    return s;
}

ProfileScope::ProfileScope() : prev_(profiling()) {
    profile_reset();
    set_profiling(true);
}

ProfileScope::~ProfileScope() { set_profiling(prev_); }

}  // namespace sdeuq
