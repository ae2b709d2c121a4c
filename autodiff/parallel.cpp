#include "autodiff/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fmt/format.h>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

namespace sdeuq {

namespace {

// A spin-wait hint (x86 PAUSE): frees issue slots for a sibling hyperthread, if the host maps the two
// cores onto one physical core, and saves power.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Set on pool workers and while the caller runs its own part: nested parallel_for calls run inline.
thread_local bool t_in_pool = false;

int default_threads() {
    if (const char* e = std::getenv("SDEUQ_THREADS")) {
        char* end = nullptr;
        long v = std::strtol(e, &end, 10);
        if (end == e || *end != '\0' || v < 1 || v > 64)
            throw std::invalid_argument(fmt::format("SDEUQ_THREADS='{}': expected an integer from 1 to 64", e));
        return static_cast<int>(v);
    }
#ifdef SDEUQ_DEFAULT_THREADS
    return SDEUQ_DEFAULT_THREADS;
#else
    return 1;
#endif
}

// Workers spin briefly on a generation counter, then block on it (C++20 atomic wait), so that the
// short kernels of small networks do not pay a kernel wake-up on every call.
//
// Parts are claimed from a ticket (generation, parts, next part) by whoever comes first, the caller
// included: on a loaded machine a descheduled worker does not hold the caller up, since the caller runs
// the parts nobody has claimed. A part computes the same thing whoever runs it, so results still do not
// depend on the thread count or on the timing.
//
// The job description, the generation the workers spin on, the ticket and the count of parts still
// running live on separate cache lines: a worker spinning on the generation does not steal the line
// the caller is writing the job into, and the caller's wait for the last part does not bounce the line
// the parts are claimed from.
struct Job {
    detail::RangeFn fn = nullptr;
    const void* ctx = nullptr;
    std::int64_t begin = 0, end = 0, step = 0;  // part i covers [begin + i * step, begin + (i + 1) * step)
    void run_part(int i) const {
        const std::int64_t lo = std::min(end, begin + i * step), hi = std::min(end, begin + (i + 1) * step);
        if (lo < hi) fn(ctx, lo, hi);
    }
};

class Pool {
public:
    explicit Pool(int workers) {
        for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { loop(); });
    }
    ~Pool() {
        stop_.store(true);
        generation_.fetch_add(1);
        generation_.notify_all();
        for (auto& t : threads_) t.join();
    }
    int size() const { return static_cast<int>(threads_.size()) + 1; }

    void run(int parts, const Job& job) {
        job_ = job;
        pending_.store(parts - 1, std::memory_order_relaxed);
        const std::uint64_t gen = ((ticket_.load(std::memory_order_relaxed) >> 32) + 1) & 0xffffffffu;
        ticket_.store(gen << 32 | static_cast<std::uint64_t>(parts) << 16 | 1u, std::memory_order_release);
        generation_.fetch_add(1, std::memory_order_release);
        generation_.notify_all();
        job.run_part(0);
        for (int i; claim(gen, i);) {
            job.run_part(i);
            pending_.fetch_sub(1, std::memory_order_acq_rel);
        }
        // Parts claimed by workers: spin briefly, then yield (the worker may be descheduled).
        for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
            cpu_relax();
            if (spins > 2000) std::this_thread::yield();
        }
    }

private:
    // Takes the next unclaimed part of generation gen, if any.
    bool claim(std::uint64_t gen, int& part) {
        std::uint64_t t = ticket_.load(std::memory_order_acquire);
        while (true) {
            const auto next = static_cast<int>(t & 0xffffu), parts = static_cast<int>((t >> 16) & 0xffffu);
            if ((t >> 32) != gen || next >= parts) return false;
            if (ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
                part = next;
                return true;
            }
        }
    }
    void loop() {
        std::uint64_t seen = 0;
        while (true) {
            std::uint64_t g;
            auto t0 = std::chrono::steady_clock::now();
            int spins = 0;
            while ((g = generation_.load(std::memory_order_acquire)) == seen) {
                cpu_relax();
                if (++spins % 1024 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(200)) {
                    generation_.wait(seen);
                }
            }
            t_in_pool = true;
            seen = g;
            if (stop_.load()) return;
            const std::uint64_t gen = ticket_.load(std::memory_order_acquire) >> 32;
            for (int i; claim(gen, i);) {
                // The ticket's release store (after job_ was written) is acquired by the claim.
                job_.run_part(i);
                pending_.fetch_sub(1, std::memory_order_acq_rel);
            }
        }
    }
    std::vector<std::thread> threads_;
    alignas(64) Job job_;
    alignas(64) std::atomic<std::uint64_t> generation_{0};
    alignas(64) std::atomic<std::uint64_t> ticket_{0};  // generation << 32 | parts << 16 | next part
    alignas(64) std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
};

int& thread_count() {
    static int n = default_threads();
    return n;
}

std::unique_ptr<Pool>& pool() {
    static std::unique_ptr<Pool> p;
    return p;
}

}  // namespace

int num_threads() { return thread_count(); }

void set_num_threads(int n) {
    if (n < 1 || n > 64) throw std::invalid_argument(fmt::format("set_num_threads({}): expected 1 to 64", n));
    thread_count() = n;
}

void parallel_for_erased(std::int64_t begin, std::int64_t end, std::int64_t align,
                         const std::function<void(std::int64_t, std::int64_t)>& fn) {
    detail::parallel_for_raw(
        begin, end, align,
        [](const void* ctx, std::int64_t lo, std::int64_t hi) {
            (*static_cast<const std::function<void(std::int64_t, std::int64_t)>*>(ctx))(lo, hi);
        },
        &fn);
}

namespace detail {

void parallel_for_raw(std::int64_t begin, std::int64_t end, std::int64_t align, RangeFn fn, const void* ctx) {
    const std::int64_t n = end - begin;
    if (n <= 0) return;
    int parts = num_threads();
    if (align < 1) align = 1;
    const std::int64_t blocks = (n + align - 1) / align;
    if (parts > blocks) parts = static_cast<int>(blocks);
    if (parts <= 1 || t_in_pool) {
        fn(ctx, begin, end);
        return;
    }
    auto& p = pool();
    if (!p || p->size() < parts) p = std::make_unique<Pool>(parts - 1);
    const std::int64_t per = (blocks + parts - 1) / parts;
    const Job job{fn, ctx, begin, end, per * align};
    t_in_pool = true;
    p->run(parts, job);
    t_in_pool = false;
}

}  // namespace detail

}  // namespace sdeuq
