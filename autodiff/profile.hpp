// Op profiler: wall time and call counts per op, forward and backward, on this thread's tapes.
//
//   { sdeuq::ProfileScope prof;  ...training steps...  }  then  std::puts(sdeuq::profile_table().c_str());
//
// Backward time is exact: the reverse sweep times each node's backward closure. Forward time is
// attributed when an op records its node, or, with gradients off, returns its unrecorded result: the time
// since the previous mark (the previous op, the start or end of a backward call, a tape reset or
// profile_reset()) is charged to the op. Work between ops that is no op (user code, Brownian queries,
// the solver loop) is therefore charged to the next op; "parameter" and "leaf" rows hold such gaps.
// Times are exclusive: a backward that runs nested tapes (the stochastic adjoint, reversible Heun) is
// charged only the time that its nested ops are not, so the rows add up to the time profiled. The cost
// when profiling is off is one thread-local flag test per op.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sdeuq {

struct OpProfile {
    std::string op;
    std::int64_t forward_calls = 0, backward_calls = 0;
    double forward_us = 0, backward_us = 0;
};

void set_profiling(bool on);
bool profiling();
// Clears the counts and restarts the forward clock.
void profile_reset();
// Per-op totals, largest forward + backward time first.
std::vector<OpProfile> profile_results();
// The results as a fixed-width table, with per-call microseconds and each op's share of the total.
std::string profile_table(const std::string& title = "op profile");

class ProfileScope {
public:
    ProfileScope();
    ~ProfileScope();
    ProfileScope(const ProfileScope&) = delete;
    ProfileScope& operator=(const ProfileScope&) = delete;

private:
    bool prev_;
};

namespace detail {
// Read on every op's path: initial-exec TLS, one load (no __tls_get_addr call in the -fPIC library).
extern thread_local bool t_profiling __attribute__((tls_model("initial-exec")));
// Called by the tape: charge the time since the last mark to op's forward, or time one backward call.
void profile_forward(const char* op);
void profile_mark();
std::int64_t profile_now_ns();
struct BackwardTimer {
    std::int64_t start_ns, charged_before;
};
BackwardTimer profile_backward_begin();
void profile_backward_end(const char* op, const BackwardTimer& t);
}  // namespace detail

}  // namespace sdeuq
