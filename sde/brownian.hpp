// Brownian motion source for SDE solvers: a virtual Brownian tree over a (possibly non-dyadic) base grid.
//
// BrownianPath holds `size` independent scalar Brownian motions W_i on [t0, t1] (batch x noise dimension
// flattened) and answers W(t) - W(s) for any s, t, in any order, with the same bits every time. Nothing
// is stored but a small cache: every value is regenerated from (seed, coordinate, tree node) by the
// counter-based normal generator of sde/random_normal.hpp (Philox4x32-10 + Box-Muller; in double, or in float
// with Options::float_normals).
//
// Construction of the path (one fixed binary tree of intervals, the same for all coordinates):
//   * Base grid: cells [b_k, b_{k+1}], b_k = t0 + k * cell for k < nc, b_nc = t1, cell = dt_hint (the
//     last cell may be shorter). With dt_hint = the solver's step, the solver's times t0 + k dt are
//     exactly cell boundaries, so a query never descends into a cell: dt = 0.01 costs what dt = 2^-7
//     does (torchsde issue #109: a dyadic tree made dt = 0.01 ten times slower).
//   * Top tree: the root [t0, t1] is split at the middle cell boundary (cell index (lo + hi) / 2), down
//     to single cells. Inside a cell: bisection, depth D = ceil(log2(cell / tol)), leaves <= tol wide.
//     Leaves and cells are addressed by integer "ticks": tick g = k 2^D + j is time b_k + j w_k 2^-D.
//   * Each internal node is split by sampling its children given the node's values (Brownian bridge),
//     with the normals keyed by (seed, split tick, coordinate): stream = split tick, index = coordinate
//     (root: stream 0). So coordinate i is the same whatever `size` is, and any node is a pure function
//     of its ancestors: the values do not depend on which queries came before.
//       Without Levy area, child [lo, m] of a node [lo, hi] of increment W, h = h1 + h2:
//         W1 = (h1 / h) W + sqrt(h1 h2 / h) z                                   (Brownian bridge)
//       With space-time Levy area H (see increment_levy), (W1, H1) given (W, H) is Gaussian with
//         E[W1] = (h1/h) W + 6 h1 h2 / h^2 H,          Var W1 = (h1 h2 / h)(1 - 3 h1 h2 / h^2),
//         E[H1] = (h1/h)^2 H,                          Var H1 = (h1 / 12)(1 - (h1/h)^3),
//         Cov(W1, H1) = -h1^3 h2 / (2 h^3),
//       derived by Gaussian conditioning of independent W1 ~ N(0, h1), H1 ~ N(0, h1/12), W2, H2 on the
//       identities W = W1 + W2 and H = (h1 H1 + h2 H2) / h + (h2 W1 - h1 W2) / (2 h) (the latter from
//       H = I / h - W / 2, I = int_s^t W(s, u) du, I = I1 + h2 W1 + I2). For h1 = h2 this is the midpoint
//       rule of Diffrax's VirtualBrownianTree (Var W1 = h/16, Var H1 = 7h/192, Cov = -h/32), derived
//       here independently and checked by Monte Carlo in tests/test_brownian.cpp.
//   * Point values W(u) = W(t0, u) are canonical: W at tick g is W(lo) + W1 of the unique node split at
//     g. An increment is W(t) - W(s) of two point values, so W(a, c) = W(a, b) + W(b, c) to round-off
//     and increment(t, s) = -increment(s, t) bit for bit.
//   * Below the resolution (inside a leaf, width <= tol) the path is the conditional mean given the
//     leaf's values: W(lo, u) = r W + 6 r (1 - r) H, r = (u - lo) / h_leaf (H = 0 without Levy area:
//     linear interpolation). So increments shorter than a leaf are not Brownian (their variance is ~r^2
//     h_leaf instead of r h_leaf): the path is exact at the ticks and O(sqrt(tol)) off them.
//   * Query times within 2^-10 leaf width of a tick are snapped to the tick (the path is constant on
//     that window), so that times computed as t0 + k dt or by accumulating t += dt both hit the grid.
//
// Cost: a query evaluates two point values, each a descent from the cached root-to-node path (popped
// to the first ancestor that contains the new point) that samples one split per new node: O(depth) =
// O(log2(nc) + log2(cell / tol)) in the worst case, amortized O(1) splits per query for sequential
// grid-aligned queries forward or backward. A new right child or split writes its size-long arrays; a
// new left child writes nothing (it refers to its parent's arrays). The last two point values are cached.
// Memory: per cached level 3 size doubles (6 with Levy area). At most kMaxTopLevels = 6 levels of the top
// tree (nodes spanning several cells) below the root hold data: when a level needs storage and 6 do, the
// highest cached one is evicted (its buffer reused), and a query that needs an evicted ancestor descends
// again from the root (values are pure functions of the ancestors, so only the work changes). Grid-aligned
// queries (fixed-step solves) thus keep at most 7 buffers whatever the number of cells, where they kept
// log2(cells) + 1 (at 1024 steps, batch 128 x 32: 0.56 MiB more than at 16 steps; now 0.19 MiB). The
// price: a sweep re-samples the evicted levels each time it crosses a boundary of the top levels; measured
// extra splits per query of a forward sweep: none up to 128 cells, 0.10 at 1024, 0.41 at 100000.
// Levels inside a cell (off-grid queries) are not capped: at most D + 1 of them, set by dt_hint / tol.
//
// Thread safety: the const query methods update the internal cache, so one object must not be queried
// from two threads at once; copies are independent and return the same values.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace sdeuq::sde {

struct BrownianOptions {
    // Width of the base grid cells; the solver's step size, so that its times are cell boundaries.
    // 0 (default): one cell [t0, t1] (then the dyadic times t0 + k (t1 - t0) 2^-n are the cheap ones).
    double dt_hint = 0.0;
    // Resolution: leaves inside a cell are <= tol wide. 0 (default): 1e-8 (t1 - t0).
    double tol = 0.0;
    // Also sample the space-time Levy area (increment_levy). It changes the sampled path.
    bool levy_area = false;
    // Draw the tree's normals with the float32 generator (philox_normals_f32 of sde/random_normal.hpp,
    // 24-bit uniforms, |z| <= 5.77, ~2x cheaper per normal), widened exactly to double; the bridge and
    // Levy-area arithmetic of the tree stays double, as do the point values and increments. Meant for
    // float32 solves, as torchsde draws its Brownian samples in the state's dtype. It is a different
    // sample of the path than with the double normals (same law, same structure: order independence,
    // per-coordinate determinism); the default keeps every existing path bit for bit.
    bool float_normals = false;
};


class BrownianPath {
public:
    using Options = BrownianOptions;

    // Counters of the work done, for tests and benchmarks.
    struct Stats {
        std::int64_t splits = 0;       // node splits sampled (each: size or 2 size normals)
        std::int64_t point_evals = 0;  // point values computed (cache misses)
        std::int64_t point_hits = 0;   // point values found in the two-slot cache
    };

    // Throws std::invalid_argument on non-finite or t0 >= t1, size < 1, negative or non-finite options.
    BrownianPath(double t0, double t1, std::int64_t size, std::uint64_t seed, Options options = {});

    // dW = W(t) - W(s), for t0 <= s, t <= t1; s > t gives -(W(s) - W(t)) bit for bit (the reverse-time
    // increment an adjoint solver integrating from t1 back to t0 needs). dW.size() must be size().
    void increment(double s, double t, std::span<double> dW) const;
    // The same increment rounded to float: static_cast<float> of increment()'s doubles, bit for bit, in
    // one pass (no double scratch; what the float32 solvers use).
    void increment(double s, double t, std::span<float> dW) const;

    // dW = W(t) - W(s) as increment() and the space-time Levy area
    //   H(s, t) = (1/h) int_s^t (W(s, u) - (u - s)/h W(s, t)) du,  h = t - s,
    // Var H = h / 12, independent of W(s, t) (Foster, Lyons, Oberhauser 2020, "An optimal polynomial
    // approximation of Brownian motion", SIAM J. Numer. Anal.; used by the SRA/ShARK solvers of strong
    // order 1.5 for additive noise). For s > t the same formula with h < 0 gives H(s, t) = H(t, s): the
    // space-time Levy area is unchanged by time reversal, so H is returned as for (t, s) and dW negated.
    // s == t gives zeros. Requires Options::levy_area. Over [a, b] u [b, c], h1 = b - a, h2 = c - b:
    //   H(a, c) = (h1 H(a, b) + h2 H(b, c)) / h + (h2 W(a, b) - h1 W(b, c)) / (2 h)  (to round-off).
    // Precision: H is (J(t) - J(s)) / h - W(s) - dW / 2 with J(u) = int_t0^u W(t0, r) dr, so its absolute
    // error is ~ eps (t1 - t0)^{3/2} / |h| (1e-14 for t1 - t0 = 1, h = 0.01).
    void increment_levy(double s, double t, std::span<double> dW, std::span<double> H) const;

    // W(t) = W(t) - W(t0), dW.size() == size().
    void value(double t, std::span<double> W) const;

    double t0() const { return t0_; }
    double t1() const { return t1_; }
    std::int64_t size() const { return size_; }
    std::uint64_t seed() const { return seed_; }
    const Options& options() const { return options_; }
    double cell_width() const { return cell_; }
    std::int64_t num_cells() const { return nc_; }
    int cell_depth() const { return depth_; }  // D: a cell is split into 2^D leaves
    double leaf_width() const;                 // of a full cell
    Stats stats() const { return stats_; }
    void clear_cache() const;  // drops the cached path and points (values do not change)

private:
    // One node on the cached root-to-node path: ticks [lo, hi], length h, and per coordinate the
    // arrays (each size_ long) Wlo = W(t0, lo), dW = W(lo, hi), and with Levy area Jlo = J(lo),
    // H = H(lo, hi); once split: W1 = W(lo, m), H1 = H(lo, m). A left child's Wlo, Jlo are its parent's
    // and its dW, H its parent's W1, H1, so it refers to them instead of copying them: src[a] says where
    // array a is, in the buffer of this level or of an ancestor (level index and array index, not a
    // pointer, so that copies of the object refer to their own buffers). W1 and H1 are always its own.
    struct Ref {
        std::uint32_t level = 0;
        std::uint32_t array = 0;
    };
    struct Level {
        std::uint64_t lo = 0, hi = 0;
        double h = 0.0;
        bool split = false;
        Ref src[6];
        std::vector<double> data;  // this level's own arrays (arrays_ x size_), whether used or not
    };
    struct PointSlot {
        bool valid = false;
        double u = 0.0;
        std::vector<double> w, j;  // W(t0, u), J(u)
    };

    void check_time(const char* call, double s, double t) const;
    void check_span(const char* call, const char* what, std::size_t n) const;
    double boundary(std::int64_t k) const;  // b_k
    double tick_time(std::uint64_t g) const;
    double length(std::uint64_t lo, std::uint64_t hi) const;
    std::uint64_t split_point(std::uint64_t lo, std::uint64_t hi) const;
    void ensure_root() const;
    void sample_split(Level& lv) const;
    void make_child(std::size_t parent, bool right) const;
    bool multi_cell(const Level& lv) const;
    void acquire_buffer(std::size_t k) const;
    static constexpr std::size_t kMaxTopLevels = 6;
    // Descends the cached path to the node with lo == g (leaf == false) or the leaf [g, g + 1].
    std::size_t descend(std::uint64_t g, bool leaf) const;
    void eval_point(double u, PointSlot& slot) const;
    // Slots holding W(s), W(t) (evaluated if not cached).
    void points(double s, double t, const PointSlot*& ps, const PointSlot*& pt) const;
    template <class T> void increment_into(double s, double t, std::span<T> dW) const;

    double* arr(Level& lv, int which) const { return lv.data.data() + which * size_; }
    // Array `which` of lv where it is (its own buffer or an ancestor's).
    const double* view(const Level& lv, int which) const {
        const Ref r = lv.src[which];
        return path_[r.level].data.data() + static_cast<std::int64_t>(r.array) * size_;
    }

    double t0_, t1_;
    std::int64_t size_;
    std::uint64_t seed_;
    Options options_;
    double cell_ = 0.0;         // base cell width
    std::int64_t nc_ = 1;       // number of cells
    int depth_ = 0;             // D
    std::uint64_t nticks_ = 1;  // nc 2^D
    int arrays_ = 3;            // per level: 3 (W) or 6 (W and H)

    mutable std::vector<Level> path_;  // path_[0] is the root once sampled
    mutable std::size_t top_ = 0;      // path_[0..top_] is the cached path (valid when root_ready_)
    mutable std::size_t base_ = 1;     // path_[1..base_ - 1] were evicted (no data; see acquire_buffer)
    mutable bool root_ready_ = false;
    mutable PointSlot slots_[2];
    mutable std::vector<double> z_;  // scratch normals
    mutable Stats stats_;
};

}  // namespace sdeuq::sde
