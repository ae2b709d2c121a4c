// Brownian path as a virtual Brownian tree over a base grid; see brownian.hpp for the construction and
// the formulas.
#include "sde/brownian.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

#include "sde/random_normal.hpp"

namespace sdeuq::sde {

namespace {

// Per-level array indices (each array is size_ doubles).
constexpr int kWlo = 0;  // W(t0, lo)
constexpr int kDW = 1;   // W(lo, hi)
constexpr int kW1 = 2;   // W(lo, m) once split
constexpr int kJlo = 3;  // J(lo) = int_t0^lo W(t0, r) dr          (Levy area only)
constexpr int kH = 4;    // H(lo, hi)                               (Levy area only)
constexpr int kH1 = 5;   // H(lo, m) once split                     (Levy area only)

// Times within kSnap leaf widths of a tick are snapped to it (see brownian.hpp).
constexpr double kSnap = 0x1p-10;

constexpr std::int64_t kMaxCells = std::int64_t{1} << 40;

// out[j] = normal first + j of `stream` under `seed`, j < n: philox_normals, or with Options::float_normals
// philox_normals_f32 widened to double (exact) through an L1-sized float buffer. Both give the same bits
// for any blocking, so the callers' blocks (and this one) do not change the values.
void draw_normals(bool float_normals, std::uint64_t seed, std::uint64_t stream, std::uint64_t first,
                  double* out, std::size_t n) {
    if (!float_normals) {
        philox_normals(seed, stream, first, out, n);
        return;
    }
    constexpr std::size_t kChunk = 512;
    float zf[kChunk];
    for (std::size_t j = 0; j < n; j += kChunk) {
        const std::size_t len = std::min(kChunk, n - j);
        philox_normals_f32(seed, stream, first + j, zf, len);
        for (std::size_t i = 0; i < len; ++i) out[j + i] = static_cast<double>(zf[i]);
    }
}

}  // namespace

BrownianPath::BrownianPath(double t0, double t1, std::int64_t size, std::uint64_t seed, Options options)
    : t0_(t0), t1_(t1), size_(size), seed_(seed), options_(options) {
    if (!std::isfinite(t0) || !std::isfinite(t1) || !(t0 < t1)) {
        throw std::invalid_argument(fmt::format(
            "BrownianPath: the interval [t0, t1] = [{}, {}] must be finite with t0 < t1", t0, t1));
    }
    if (size < 1) {
        throw std::invalid_argument(fmt::format("BrownianPath: size = {} must be >= 1", size));
    }
    const double span = t1 - t0;
    if (!std::isfinite(options.dt_hint) || options.dt_hint < 0.0) {
        throw std::invalid_argument(fmt::format(
            "BrownianPath: dt_hint = {} must be finite and >= 0 (0: no base grid) on [t0, t1] = [{}, {}]",
            options.dt_hint, t0, t1));
    }
    if (!std::isfinite(options.tol) || options.tol < 0.0) {
        throw std::invalid_argument(fmt::format(
            "BrownianPath: tol = {} must be finite and >= 0 (0: default 1e-8 (t1 - t0))", options.tol));
    }
    if (options_.tol == 0.0) options_.tol = 1e-8 * span;

    // Base grid: cells of width dt_hint, the last one possibly shorter. A ratio span / dt_hint within
    // 1e-9 of an integer n (0.3 / 0.1 = 2.9999999999999996) gives n cells, not a sliver cell at the end.
    cell_ = (options_.dt_hint > 0.0 && options_.dt_hint < span) ? options_.dt_hint : span;
    const double ratio = span / cell_;
    if (!(ratio <= static_cast<double>(kMaxCells))) {
        throw std::invalid_argument(fmt::format(
            "BrownianPath: dt_hint = {} gives more than 2^40 cells on [t0, t1] = [{}, {}]", options_.dt_hint,
            t0, t1));
    }
    const double nearest = std::round(ratio);
    nc_ = static_cast<std::int64_t>(std::abs(ratio - nearest) <= 1e-9 * ratio ? nearest : std::ceil(ratio));
    nc_ = std::max<std::int64_t>(nc_, 1);

    // Depth inside a cell: leaves <= tol, with the tick count nc 2^D < 2^62 and leaves wider than 64 ulp
    // of the times (finer leaves could not be told apart by a double time anyway).
    int cell_bits = 0;
    while ((std::int64_t{1} << cell_bits) < nc_) ++cell_bits;
    const double tmax = std::max(std::abs(t0), std::abs(t1));
    const double ulp = std::nextafter(tmax, std::numeric_limits<double>::infinity()) - tmax;
    depth_ = 0;
    while (depth_ + cell_bits < 62 && std::ldexp(cell_, -depth_) > options_.tol &&
           std::ldexp(cell_, -(depth_ + 1)) >= 64.0 * ulp) {
        ++depth_;
    }
    nticks_ = static_cast<std::uint64_t>(nc_) << depth_;
    arrays_ = options_.levy_area ? 6 : 3;
    path_.resize(static_cast<std::size_t>(cell_bits + depth_ + 2));
}

double BrownianPath::leaf_width() const { return std::ldexp(cell_, -depth_); }

void BrownianPath::check_time(const char* call, double s, double t) const {
    if (!std::isfinite(s) || !std::isfinite(t)) {
        throw std::invalid_argument(
            fmt::format("{}: non-finite time in the query [s, t] = [{}, {}]", call, s, t));
    }
    if (s < t0_ || s > t1_ || t < t0_ || t > t1_) {
        throw std::invalid_argument(fmt::format(
            "{}: the query [s, t] = [{}, {}] is outside the bounds [t0, t1] = [{}, {}]", call, s, t, t0_,
            t1_));
    }
}

void BrownianPath::check_span(const char* call, const char* what, std::size_t n) const {
    if (n != static_cast<std::size_t>(size_)) {
        throw std::invalid_argument(fmt::format(
            "{}: output {} has {} elements, the path has size {} (on [t0, t1] = [{}, {}])", call, what, n,
            size_, t0_, t1_));
    }
}

double BrownianPath::boundary(std::int64_t k) const {
    return k >= nc_ ? t1_ : t0_ + static_cast<double>(k) * cell_;
}

double BrownianPath::tick_time(std::uint64_t g) const {
    const auto k = static_cast<std::int64_t>(g >> depth_);
    const std::uint64_t j = g & ((std::uint64_t{1} << depth_) - 1);
    if (k >= nc_) return t1_;
    const double b = boundary(k);
    if (j == 0) return b;
    return b + static_cast<double>(j) * std::ldexp(boundary(k + 1) - b, -depth_);
}

double BrownianPath::length(std::uint64_t lo, std::uint64_t hi) const {
    const std::uint64_t leaves = std::uint64_t{1} << depth_;
    if (hi - lo <= leaves && (lo >> depth_) == ((hi - 1) >> depth_)) {
        // Inside one cell: a multiple of the leaf width, so bisection halves lengths exactly.
        const auto k = static_cast<std::int64_t>(lo >> depth_);
        return static_cast<double>(hi - lo) * std::ldexp(boundary(k + 1) - boundary(k), -depth_);
    }
    return tick_time(hi) - tick_time(lo);  // whole cells
}

std::uint64_t BrownianPath::split_point(std::uint64_t lo, std::uint64_t hi) const {
    const std::uint64_t leaves = std::uint64_t{1} << depth_;
    if (hi - lo > leaves) {  // several cells: split at the middle cell boundary
        return (((lo >> depth_) + (hi >> depth_)) / 2) << depth_;
    }
    return lo + (hi - lo) / 2;  // inside a cell: bisect
}

void BrownianPath::ensure_root() const {
    if (root_ready_) return;
    Level& root = path_[0];
    const auto n = static_cast<std::size_t>(size_);
    root.lo = 0;
    root.hi = nticks_;
    root.h = t1_ - t0_;
    root.split = false;
    root.data.assign(static_cast<std::size_t>(arrays_) * n, 0.0);
    for (std::uint32_t a = 0; a < 6; ++a) root.src[a] = Ref{0, a};
    const double sd = std::sqrt(root.h);
    double* dw = arr(root, kDW);
    if (options_.levy_area) {
        // Root: W ~ N(0, T), H ~ N(0, T / 12) independent; normals 2i, 2i + 1 of stream 0.
        z_.resize(2 * n);
        draw_normals(options_.float_normals, seed_, 0, 0, z_.data(), 2 * n);
        const double sh = std::sqrt(root.h / 12.0);
        double* hh = arr(root, kH);
        for (std::size_t i = 0; i < n; ++i) {
            dw[i] = sd * z_[2 * i];
            hh[i] = sh * z_[2 * i + 1];
        }
    } else {
        z_.resize(n);
        draw_normals(options_.float_normals, seed_, 0, 0, z_.data(), n);
        for (std::size_t i = 0; i < n; ++i) dw[i] = sd * z_[i];
    }
    top_ = 0;
    base_ = 1;
    root_ready_ = true;
}

void BrownianPath::sample_split(Level& lv) const {
    const auto n = static_cast<std::size_t>(size_);
    const std::uint64_t m = split_point(lv.lo, lv.hi);
    const double h1 = length(lv.lo, m), h2 = length(m, lv.hi), h = lv.h;
    const double* dw = view(lv, kDW);
    double* w1 = arr(lv, kW1);
    // Stream = the split tick m, unique to this node (root: stream 0, never an interior tick).
    if (!options_.levy_area) {
        // Brownian bridge: W(lo, m) | W(lo, hi) ~ N(h1/h W, h1 h2 / h).
        // The normals in L1-sized blocks, used at once (philox_normals and philox_normals_f32 give the
        // same bits for any blocking), rather than one pass writing n of them and another reading them back.
        constexpr std::size_t kBlock = 512;
        double z[kBlock];
        const double a = h1 / h, sd = std::sqrt(h1 * h2 / h);
        for (std::size_t i0 = 0; i0 < n; i0 += kBlock) {
            const std::size_t len = std::min(kBlock, n - i0);
            draw_normals(options_.float_normals, seed_, m, i0, z, len);
            for (std::size_t i = 0; i < len; ++i) w1[i0 + i] = a * dw[i0 + i] + sd * z[i];
        }
    } else {
        // (W1, H1) | (W, H): the conditional Gaussian of brownian.hpp, sampled through the Cholesky factor
        // [[a, 0], [b, c]] of its covariance: W1 = mean + a z1, H1 = mean + b z1 + c z2.
        z_.resize(2 * n);
        draw_normals(options_.float_normals, seed_, m, 0, z_.data(), 2 * n);
        const double p = h1 / h, q = h2 / h;
        const double var_w = h1 * q * (1.0 - 3.0 * p * q);
        const double cov = -0.5 * h1 * p * p * q;
        const double var_h = h1 / 12.0 * (1.0 - p * p * p);
        const double a = std::sqrt(var_w), b = cov / a, c = std::sqrt(std::max(0.0, var_h - b * b));
        const double c_ww = p, c_wh = 6.0 * p * q, c_hh = p * p;
        const double* hh = view(lv, kH);
        double* h1v = arr(lv, kH1);
        for (std::size_t i = 0; i < n; ++i) {
            const double z1 = z_[2 * i], z2 = z_[2 * i + 1];
            w1[i] = (c_ww * dw[i] + c_wh * hh[i]) + a * z1;
            h1v[i] = c_hh * hh[i] + (b * z1 + c * z2);
        }
    }
    lv.split = true;
    ++stats_.splits;
}

void BrownianPath::make_child(std::size_t parent, bool right) const {
    Level& p = path_[parent];
    Level& c = path_[parent + 1];
    const auto n = static_cast<std::size_t>(size_);
    const std::size_t total = static_cast<std::size_t>(arrays_) * n;
    const std::uint64_t m = split_point(p.lo, p.hi);
    const double h1 = length(p.lo, m), h2 = length(m, p.hi), h = p.h;
    const auto pk = static_cast<std::uint32_t>(parent), ck = pk + 1;
    c.lo = right ? m : p.lo;
    c.hi = right ? p.hi : m;
    c.h = right ? h2 : h1;
    c.split = false;
    // A left child still gets its own buffer: it writes its W1, H1 there once split.
    if (c.data.size() != total) acquire_buffer(parent + 1);
    c.src[kW1] = Ref{ck, kW1};
    c.src[kH1] = Ref{ck, kH1};
    if (!right) {
        // Left child: the parent's values, referred to where they are (no copy). The parent stays on the
        // cached path as long as the child does; acquire_buffer copies them before evicting their owner.
        c.src[kWlo] = p.src[kWlo];
        c.src[kDW] = Ref{pk, kW1};
        c.src[kJlo] = p.src[kJlo];
        c.src[kH] = Ref{pk, kH1};
        return;
    }
    c.src[kWlo] = Ref{ck, kWlo};
    c.src[kDW] = Ref{ck, kDW};
    c.src[kJlo] = Ref{ck, kJlo};
    c.src[kH] = Ref{ck, kH};
    const double* wlo = view(p, kWlo);
    const double* dw = view(p, kDW);
    const double* w1 = arr(p, kW1);
    double* cwlo = arr(c, kWlo);
    double* cdw = arr(c, kDW);
    // Right child. W(m) = W(lo) + W1 is computed here only, so it is canonical: every node with lo = m
    // inherits these bits (left children share their parent's lo values).
    for (std::size_t i = 0; i < n; ++i) {
        cwlo[i] = wlo[i] + w1[i];
        cdw[i] = dw[i] - w1[i];
    }
    if (options_.levy_area) {
        // J(m) = J(lo) + int_lo^m W(t0, r) dr = J(lo) + h1 (W(lo) + W1 / 2 + H1), from I1 = h1 (H1 + W1 / 2).
        // H2 solves H = (h1 H1 + h2 H2) / h + (h2 W1 - h1 W2) / (2 h).
        const double* jlo = view(p, kJlo);
        const double* hh = view(p, kH);
        const double* h1v = arr(p, kH1);
        double* cjlo = arr(c, kJlo);
        double* ch = arr(c, kH);
        for (std::size_t i = 0; i < n; ++i) {
            cjlo[i] = jlo[i] + h1 * ((wlo[i] + 0.5 * w1[i]) + h1v[i]);
            const double w2 = dw[i] - w1[i];
            ch[i] = ((h * hh[i] - h1 * h1v[i]) - 0.5 * (h2 * w1[i] - h1 * w2)) / h2;
        }
    }
}

bool BrownianPath::multi_cell(const Level& lv) const { return lv.hi - lv.lo > (std::uint64_t{1} << depth_); }

void BrownianPath::acquire_buffer(std::size_t k) const {
    // Storage for path_[k] (k = top_ + 1, so every level beyond k is off the cached path): a stale buffer
    // of a deeper level if there is one; else, when kMaxTopLevels multi-cell levels already hold data, the
    // one of the highest cached non-root level (path_[base_], evicted: a later query that needs it descends
    // again from the root); else a new one. So at most kMaxTopLevels multi-cell levels below the root are
    // allocated (after a re-descent from the root, which reuses the stale buffers, there may transiently be
    // more; the next acquisitions evict them). Levels refer only to arrays of their ancestors (see Level), so
    // no cached level refers to a stale buffer; an evicted one is first copied into the levels below that
    // refer to it.
    const std::size_t total = static_cast<std::size_t>(arrays_) * static_cast<std::size_t>(size_);
    Level& c = path_[k];
    for (std::size_t j = path_.size() - 1; j > k; --j) {
        if (path_[j].data.size() == total) {
            c.data.swap(path_[j].data);
            std::vector<double>().swap(path_[j].data);
            return;
        }
    }
    std::size_t cached = 0;
    for (std::size_t j = base_; j < k; ++j) cached += multi_cell(path_[j]) ? 1 : 0;
    if (cached >= kMaxTopLevels && base_ + 1 < k && multi_cell(path_[base_])) {
        // The first cached level below that refers to an array of path_[base_] gets its own copy, in its
        // own slot for that array, and deeper levels referring to the same array refer to that copy.
        const auto e = static_cast<std::uint32_t>(base_);
        constexpr int kShared[4] = {kWlo, kDW, kJlo, kH};
        const int shared = options_.levy_area ? 4 : 2;
        Ref moved[6];
        bool done[6] = {};
        for (std::size_t j = base_ + 1; j < k; ++j) {
            Level& lv = path_[j];
            for (int i = 0; i < shared; ++i) {
                const int a = kShared[i];
                Ref& r = lv.src[a];
                if (r.level != e) continue;
                if (!done[r.array]) {
                    const double* from = view(lv, a);
                    std::copy(from, from + size_, arr(lv, a));
                    done[r.array] = true;
                    moved[r.array] = Ref{static_cast<std::uint32_t>(j), static_cast<std::uint32_t>(a)};
                }
                r = moved[r.array];
            }
        }
        c.data.swap(path_[base_].data);
        std::vector<double>().swap(path_[base_].data);
        ++base_;
        return;
    }
    c.data.assign(total, 0.0);
}

std::size_t BrownianPath::descend(std::uint64_t g, bool leaf) const {
    ensure_root();
    const auto contains = [&](const Level& lv) {
        return leaf ? (lv.lo <= g && g + 1 <= lv.hi) : (lv.lo <= g && g < lv.hi);
    };
    while (top_ > 0 && !contains(path_[top_])) --top_;
    if (top_ < base_) {  // the deepest cached ancestor was evicted: descend again from the root
        top_ = 0;
        base_ = 1;
    }
    for (;;) {
        Level& lv = path_[top_];
        if (lv.lo == g && (!leaf || lv.hi == g + 1)) return top_;
        if (!lv.split) sample_split(lv);
        make_child(top_, g >= split_point(lv.lo, lv.hi));
        ++top_;
    }
}

void BrownianPath::eval_point(double u, PointSlot& slot) const {
    const auto n = static_cast<std::size_t>(size_);
    const bool levy = options_.levy_area;
    slot.valid = true;
    slot.u = u;
    slot.w.resize(n);
    if (levy) slot.j.resize(n);
    ++stats_.point_evals;

    // Cell k with b_k <= u < b_{k+1} (k = nc - 1 for u = t1), then the position x in leaf units.
    auto k = static_cast<std::int64_t>(std::floor((u - t0_) / cell_));
    k = std::clamp<std::int64_t>(k, 0, nc_ - 1);
    while (k > 0 && u < boundary(k)) --k;
    while (k < nc_ - 1 && u >= boundary(k + 1)) ++k;
    const double b = boundary(k);
    const std::uint64_t leaves = std::uint64_t{1} << depth_;
    const double x = std::ldexp((u - b) / (boundary(k + 1) - b), depth_);
    double jf = std::floor(x);
    jf = std::clamp(jf, 0.0, static_cast<double>(leaves - 1));
    const double r = x - jf;
    const std::uint64_t g0 = (static_cast<std::uint64_t>(k) << depth_) + static_cast<std::uint64_t>(jf);

    if (r <= kSnap || r >= 1.0 - kSnap) {
        // On a tick: W(g), and J(u) = J(g) + (u - t_g) W(g) for the path held constant near the tick.
        const std::uint64_t g = r <= kSnap ? g0 : g0 + 1;
        if (g == 0) {
            std::fill(slot.w.begin(), slot.w.end(), 0.0);
            if (levy) std::fill(slot.j.begin(), slot.j.end(), 0.0);
            return;
        }
        const double off = u - tick_time(g);
        if (g == nticks_) {
            ensure_root();
            Level& root = path_[0];
            const double* wlo = view(root, kWlo);
            const double* dw = view(root, kDW);
            for (std::size_t i = 0; i < n; ++i) slot.w[i] = wlo[i] + dw[i];
            if (levy) {
                const double* jlo = view(root, kJlo);
                const double* hh = view(root, kH);
                for (std::size_t i = 0; i < n; ++i) {
                    slot.j[i] = (jlo[i] + root.h * ((wlo[i] + 0.5 * dw[i]) + hh[i])) + off * slot.w[i];
                }
            }
            return;
        }
        Level& lv = path_[descend(g, false)];
        const double* wlo = view(lv, kWlo);
        std::copy(wlo, wlo + n, slot.w.begin());
        if (levy) {
            const double* jlo = view(lv, kJlo);
            for (std::size_t i = 0; i < n; ++i) slot.j[i] = jlo[i] + off * wlo[i];
        }
        return;
    }

    // Inside the leaf [g0, g0 + 1]: the conditional mean given the leaf's (W, H),
    //   W(lo, u) = r W + 6 r (1 - r) H,  int_lo^u W(lo, v) dv = h_leaf (r^2 / 2 W + (3 r^2 - 2 r^3) H)
    // (Foster et al. 2020, the polynomial part of the Brownian bridge given its space-time Levy area).
    Level& lv = path_[descend(g0, true)];
    const double* wlo = view(lv, kWlo);
    const double* dw = view(lv, kDW);
    if (!levy) {
        for (std::size_t i = 0; i < n; ++i) slot.w[i] = wlo[i] + r * dw[i];
        return;
    }
    const double* jlo = view(lv, kJlo);
    const double* hh = view(lv, kH);
    const double cw = 6.0 * r * (1.0 - r);
    const double iw = 0.5 * r * r, ih = r * r * (3.0 - 2.0 * r);
    for (std::size_t i = 0; i < n; ++i) {
        slot.w[i] = wlo[i] + (r * dw[i] + cw * hh[i]);
        slot.j[i] = jlo[i] + lv.h * ((r * wlo[i] + iw * dw[i]) + ih * hh[i]);
    }
}

void BrownianPath::points(double s, double t, const PointSlot*& ps, const PointSlot*& pt) const {
    // Two slots; a miss never evicts the other endpoint of the same query, so sequential queries
    // [t_k, t_{k+1}] forward or backward evaluate one new point each.
    const auto find = [&](double u) {
        for (int i = 0; i < 2; ++i) {
            if (slots_[i].valid && slots_[i].u == u) return i;
        }
        return -1;
    };
    int is = find(s), it = find(t);
    if (is >= 0) ++stats_.point_hits;
    if (it >= 0) ++stats_.point_hits;
    if (is < 0) {
        is = (it == 0) ? 1 : 0;
        if (s == t) it = is;
        eval_point(s, slots_[is]);
    }
    if (it < 0) {
        it = 1 - is;
        eval_point(t, slots_[it]);
    }
    ps = &slots_[is];
    pt = &slots_[it];
}

template <class T>
void BrownianPath::increment_into(double s, double t, std::span<T> dW) const {
    constexpr const char* call = "BrownianPath::increment";
    check_time(call, s, t);
    check_span(call, "dW", dW.size());
    const PointSlot *ps = nullptr, *pt = nullptr;
    points(s, t, ps, pt);
    // The difference in double, rounded once to T.
    for (std::size_t i = 0; i < dW.size(); ++i) dW[i] = static_cast<T>(pt->w[i] - ps->w[i]);
}

void BrownianPath::increment(double s, double t, std::span<double> dW) const { increment_into(s, t, dW); }

void BrownianPath::increment(double s, double t, std::span<float> dW) const { increment_into(s, t, dW); }

void BrownianPath::increment_levy(double s, double t, std::span<double> dW, std::span<double> H) const {
    constexpr const char* call = "BrownianPath::increment_levy";
    if (!options_.levy_area) {
        throw std::invalid_argument(fmt::format(
            "{}: the path on [t0, t1] = [{}, {}] was built without Options::levy_area (query [{}, {}])", call,
            t0_, t1_, s, t));
    }
    check_time(call, s, t);
    check_span(call, "dW", dW.size());
    check_span(call, "H", H.size());
    const PointSlot *ps = nullptr, *pt = nullptr;
    points(s, t, ps, pt);
    for (std::size_t i = 0; i < dW.size(); ++i) dW[i] = pt->w[i] - ps->w[i];
    if (s == t) {
        std::fill(H.begin(), H.end(), 0.0);
        return;
    }
    // H(a, b) = (1/h) int_a^b W(a, u) du - W(a, b) / 2 = ((J(b) - J(a)) - h W(a)) / h - W(a, b) / 2 over the
    // ordered interval a < b (H is the same for (s, t) and (t, s), see brownian.hpp).
    const PointSlot* pa = s < t ? ps : pt;
    const PointSlot* pb = s < t ? pt : ps;
    const double h = s < t ? t - s : s - t;
    for (std::size_t i = 0; i < H.size(); ++i) {
        const double wa = pa->w[i];
        H[i] = ((pb->j[i] - pa->j[i]) - h * wa) / h - 0.5 * (pb->w[i] - wa);
    }
}

void BrownianPath::value(double t, std::span<double> W) const {
    constexpr const char* call = "BrownianPath::value";
    check_time(call, t, t);
    check_span(call, "W", W.size());
    const PointSlot *ps = nullptr, *pt = nullptr;
    points(t, t, ps, pt);
    std::copy(pt->w.begin(), pt->w.end(), W.begin());
}

void BrownianPath::clear_cache() const {
    root_ready_ = false;
    top_ = 0;
    base_ = 1;
    for (auto& lv : path_) {
        lv.split = false;
        std::vector<double>().swap(lv.data);
    }
    for (auto& sl : slots_) sl.valid = false;
}

}  // namespace sdeuq::sde
