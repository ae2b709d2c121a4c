// A fixed pool of kernel threads with a static work partition.
//
// parallel_for splits [begin, end) into num_threads() contiguous ranges whose boundaries are multiples of
// `align`; the calling thread runs the first range, and any range no worker has started yet (so a
// descheduled worker on a loaded machine does not stall it). Kernels only partition work whose per-element result
// does not depend on the partition (rows of a GEMM, elements of a map, rows of a reduction), so results
// are bitwise identical with 1 and 2 threads.
#pragma once

#include <cstdint>
#include <functional>
#include <type_traits>

namespace sdeuq {

// Threads used by kernels: SDEUQ_THREADS in the environment, else the build's default (meson -Dthreads).
int num_threads();
void set_num_threads(int n);

// fn(lo, hi) for each part. Runs inline when one thread is set or the range is smaller than `min_work`.
void parallel_for_erased(std::int64_t begin, std::int64_t end, std::int64_t align,
                         const std::function<void(std::int64_t, std::int64_t)>& fn);

namespace detail {
// The same with the callable passed as a function pointer and its context: no std::function (and no
// heap allocation) on the hand-off path of short kernels.
using RangeFn = void (*)(const void* ctx, std::int64_t lo, std::int64_t hi);
void parallel_for_raw(std::int64_t begin, std::int64_t end, std::int64_t align, RangeFn fn, const void* ctx);
}  // namespace detail

template <class F>
inline void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t align, std::int64_t min_work, F&& fn) {
    // Small work runs inline, without type erasure: the common case for the small networks of this field.
    if (end - begin < min_work || num_threads() == 1) {
        if (end > begin) fn(begin, end);
        return;
    }
    using Fn = std::remove_reference_t<F>;
    detail::parallel_for_raw(
        begin, end, align,
        [](const void* ctx, std::int64_t lo, std::int64_t hi) { (*static_cast<Fn*>(const_cast<void*>(ctx)))(lo, hi); },
        static_cast<const void*>(&fn));
}

// RAII thread-count override (benchmarks and tests).
class ThreadsScope {
public:
    explicit ThreadsScope(int n) : prev_(num_threads()) { set_num_threads(n); }
    ~ThreadsScope() { set_num_threads(prev_); }

private:
    int prev_;
};

}  // namespace sdeuq
