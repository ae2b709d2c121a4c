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

// Workers spin briefly on the ticket (generation << 32 | parts << 16 | next part), then block on it
// (C++20 atomic wait), so that the short kernels of small networks do not pay a kernel wake-up on every
// call.
//
// Parts are claimed from the ticket by whoever comes first, the caller included: on a loaded machine a
// descheduled worker does not hold the caller up, since the caller runs the parts nobody has claimed. A
// part computes the same thing whoever runs it, so results still do not depend on the thread count or on
// the timing.
//
// Hand-off cost is cache-line transfers between the cores (a few hundred ns each on this VM), so the
// ticket, the job description and the count of running parts share one cache line: a worker spinning on
// the ticket receives the whole job in the transfer that tells it there is one. A claim is one fetch_add
// on the ticket (a claim past the last part is a harmless no-op: the next-part field only grows within a
// generation, far below its 16 bits).
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
        s_.stop.store(true);
        publish(0);
        for (auto& t : threads_) t.join();
    }
    int size() const { return static_cast<int>(threads_.size()) + 1; }

    void run(int parts, const Job& job) {
        s_.job = job;
        s_.pending.store(parts - 1, std::memory_order_relaxed);
        publish(parts);  // part 0 is the caller's
        job.run_part(0);
        for (int i; claim(i);) {
            job.run_part(i);
            s_.pending.fetch_sub(1, std::memory_order_acq_rel);
        }
        // Parts claimed by workers: spin briefly, then yield (the worker may be descheduled).
        for (int spins = 0; s_.pending.load(std::memory_order_acquire) != 0; ++spins) {
            cpu_relax();
            if (spins > 2000) std::this_thread::yield();
        }
    }

private:
    // A new generation of `parts` parts whose part 0 is taken; the release orders the job and the
    // pending count before it for whoever claims a part.
    void publish(int parts) {
        const std::uint64_t gen = ((s_.ticket.load(std::memory_order_relaxed) >> 32) + 1) & 0xffffffffu;
        s_.ticket.store(gen << 32 | static_cast<std::uint64_t>(parts) << 16 | 1u, std::memory_order_release);
        s_.ticket.notify_all();
    }
    // Takes the next unclaimed part of the current generation, if any.
    bool claim(int& part) {
        const std::uint64_t t = s_.ticket.fetch_add(1, std::memory_order_acq_rel);
        const auto next = static_cast<int>(t & 0xffffu), parts = static_cast<int>((t >> 16) & 0xffffu);
        if (next >= parts) return false;
        part = next;
        return true;
    }
    void loop() {
        t_in_pool = true;
        std::uint64_t seen = s_.ticket.load(std::memory_order_acquire) >> 32;
        while (true) {
            std::uint64_t t;
            auto t0 = std::chrono::steady_clock::now();
            int spins = 0;
            while (((t = s_.ticket.load(std::memory_order_acquire)) >> 32) == seen) {
                cpu_relax();
                if (++spins % 1024 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(200))
                    s_.ticket.wait(t, std::memory_order_acquire);
            }
            seen = t >> 32;
            if (s_.stop.load()) return;
            // A claim may land in a later generation than `seen` (this worker was slow): its part is run
            // all the same, with that generation's job (the claim acquires the ticket published after it).
            for (int i; claim(i);) {
                s_.job.run_part(i);
                s_.pending.fetch_sub(1, std::memory_order_acq_rel);
            }
        }
    }
    std::vector<std::thread> threads_;
    struct alignas(64) Shared {
        std::atomic<std::uint64_t> ticket{0};
        std::atomic<int> pending{0};
        std::atomic<bool> stop{false};
        Job job;
    } s_;
    static_assert(sizeof(Shared) == 64, "ticket, pending count and job share one cache line");
};

int& thread_count() {
    static int n = default_threads();
    return n;
}

// Never destroyed: at exit, static destructors run in the reverse order of construction, and libstdc++'s
// table behind atomic wait/notify is built after the pool (at the first wait), so it would be gone before
// the pool's destructor could wake a sleeping worker to join it (a hang at exit). The workers simply end
// with the process. A pool replaced by a larger one while the program runs is joined as usual.
std::unique_ptr<Pool>& pool() {
    static auto* p = new std::unique_ptr<Pool>();
    return *p;
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
