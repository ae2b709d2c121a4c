// Shape ops: reshape (a view), transpose/permute, slice, concat, stack, broadcast_to.
#include <array>
#include <cstring>
#include <fmt/format.h>
#include <numeric>

#include "autodiff/ops.hpp"
#include "autodiff/tensor_ops.hpp"

namespace sdeuq {

int detail::norm_axis(const char* op, int axis, int rank) {
    const int a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) throw ShapeError(fmt::format("{}: axis {} out of range for rank {}", op, axis, rank));
    return a;
}

namespace {

// y = x permuted: y.shape[i] = x.shape[perm[i]].
Tensor permute_tensor(const Tensor& x, const std::vector<int>& perm) {
    const Shape& s = x.shape();
    const int r = s.rank();
    Shape out;
    for (int i = 0; i < r; ++i) out.push_back(s[perm[static_cast<std::size_t>(i)]]);
    Tensor y = Tensor::arena_empty(out, x.dtype());
    std::int64_t xs[Shape::max_rank], st = 1;
    for (int i = r - 1; i >= 0; --i) {
        xs[i] = st;
        st *= s[i];
    }
    std::int64_t ps[Shape::max_rank];  // stride in x of each output dim
    for (int i = 0; i < r; ++i) ps[i] = xs[perm[static_cast<std::size_t>(i)]];
    dispatch(x.dtype(), [&](auto z) {
        using T = decltype(z);
        const T* px = x.data<T>();
        T* py = y.data<T>();
        const std::int64_t n = out.numel();
        if (n == 0) return;
        std::int64_t idx[Shape::max_rank] = {};
        const std::int64_t inner = out[r - 1], is = ps[r - 1];
        std::int64_t off = 0;
        for (std::int64_t o = 0; o < n; o += inner) {
            for (std::int64_t i = 0; i < inner; ++i) py[o + i] = px[off + i * is];
            for (int d = r - 2; d >= 0; --d) {
                off += ps[d];
                if (++idx[d] < out[d]) break;
                off -= ps[d] * out[d];
                idx[d] = 0;
            }
        }
    });
    return y;
}

// Copies x into y at offset `start` along `axis` (y larger along that axis), or the reverse (extract).
void copy_block(const Tensor& src, const Tensor& dst, int axis, std::int64_t start, bool into_dst) {
    const Tensor& big = into_dst ? dst : src;
    const Tensor& small = into_dst ? src : dst;
    std::int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; ++i) outer *= big.dim(i);
    for (int i = axis + 1; i < big.rank(); ++i) inner *= big.dim(i);
    const std::int64_t nb = big.dim(axis), ns = small.dim(axis);
    const std::size_t es = dtype_size(big.dtype());
    auto* pb = static_cast<std::byte*>(big.raw());
    auto* ps = static_cast<std::byte*>(small.raw());
    for (std::int64_t o = 0; o < outer; ++o) {
        std::byte* b = pb + static_cast<std::size_t>((o * nb + start) * inner) * es;
        std::byte* sm = ps + static_cast<std::size_t>(o * ns * inner) * es;
        const std::size_t bytes = static_cast<std::size_t>(ns * inner) * es;
        if (into_dst) std::memcpy(b, sm, bytes);
        else std::memcpy(sm, b, bytes);
    }
}

}  // namespace

Var reshape(const Var& a, const Shape& s) {
    if (s.numel() != a.numel())
        throw ShapeError(fmt::format("reshape: cannot reshape {} ({} elements) to {}", describe(a.value()), a.numel(), s.str()));
    Tensor y = a.value().reshaped(s);
    return record("reshape", y, {a}, [na = node_of(a)](const Tensor& g) { accumulate(na, g.reshaped(na->value.shape())); },
                  [](HigherCtx& c) { c.dx[0] = reshape(c.gout, c.in(0).shape()); });
}

Var reshape_infer(const Var& a, std::vector<std::int64_t> dims) {
    int infer = -1;
    std::int64_t known = 1;
    for (std::size_t i = 0; i < dims.size(); ++i) {
        if (dims[i] == -1) {
            if (infer >= 0) throw ShapeError("reshape: more than one -1 dimension");
            infer = static_cast<int>(i);
        } else {
            known *= dims[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || a.numel() % known != 0)
            throw ShapeError(fmt::format("reshape: cannot infer -1 for {} elements of {}", a.numel(), describe(a.value())));
        dims[static_cast<std::size_t>(infer)] = a.numel() / known;
    }
    return reshape(a, Shape(dims));
}

Var permute(const Var& a, std::vector<int> perm) {
    const int r = a.rank();
    if (static_cast<int>(perm.size()) != r)
        throw ShapeError(fmt::format("permute: {} axes given for {}", perm.size(), describe(a.value())));
    std::vector<int> seen(static_cast<std::size_t>(r), 0), inv(static_cast<std::size_t>(r));
    for (int i = 0; i < r; ++i) {
        int p = detail::norm_axis("permute", perm[static_cast<std::size_t>(i)], r);
        if (seen[static_cast<std::size_t>(p)]++) throw ShapeError("permute: repeated axis");
        perm[static_cast<std::size_t>(i)] = p;
        inv[static_cast<std::size_t>(p)] = i;
    }
    Tensor y = permute_tensor(a.value(), perm);
    std::array<int, Shape::max_rank> inv_a{};  // a fixed-size copy for the Var backward (no allocation)
    std::copy(inv.begin(), inv.end(), inv_a.begin());
    return record("permute", y, {a}, [na = node_of(a), inv](const Tensor& g) { accumulate_fresh(na, permute_tensor(g, inv)); },
                  [inv_a, r](HigherCtx& c) { c.dx[0] = permute(c.gout, std::vector<int>(inv_a.begin(), inv_a.begin() + r)); });
}

Var transpose(const Var& a, int d0, int d1) {
    const int r = a.rank();
    if (r < 2) throw ShapeError(fmt::format("transpose: {} has rank < 2", describe(a.value())));
    int x = detail::norm_axis("transpose", d0, r), y = detail::norm_axis("transpose", d1, r);
    std::vector<int> perm(static_cast<std::size_t>(r));
    std::iota(perm.begin(), perm.end(), 0);
    std::swap(perm[static_cast<std::size_t>(x)], perm[static_cast<std::size_t>(y)]);
    return permute(a, perm);
}

Var slice(const Var& a, int axis, std::int64_t start, std::int64_t stop) {
    int ax = detail::norm_axis("slice", axis, a.rank());
    if (start < 0 || stop > a.dim(ax) || start > stop)
        throw ShapeError(fmt::format("slice: [{}, {}) out of range for axis {} of {}", start, stop, axis, describe(a.value())));
    Shape s = a.shape();
    s[ax] = stop - start;
    Tensor y = Tensor::arena_empty(s, a.dtype());
    copy_block(a.value(), y, ax, start, false);
    return record("slice", y, {a}, [na = node_of(a), ax, start](const Tensor& g) {
        Tensor gx = Tensor::arena_zeros(na->value.shape(), g.dtype());
        copy_block(g, gx, ax, start, true);
        accumulate_fresh(na, gx);
    }, [ax, start](HigherCtx& c) {
        // Zero blocks on either side of the adjoint along the axis.
        const Shape xs = c.in(0).shape();
        Shape lo = xs, hi = xs;
        lo[ax] = start;
        hi[ax] = xs[ax] - start - c.gout.shape()[ax];
        c.dx[0] = concat({Var(Tensor::arena_zeros(lo, c.gout.dtype())), c.gout,
                          Var(Tensor::arena_zeros(hi, c.gout.dtype()))}, ax);
    });
}

Var concat(std::span<const Var> xs, int axis) {
    if (xs.empty()) throw ShapeError("concat: no inputs");
    const Shape& s0 = xs[0].shape();
    int ax = detail::norm_axis("concat", axis, s0.rank());
    Shape out = s0;
    out[ax] = 0;
    for (auto& x : xs) {
        bool ok = x.rank() == s0.rank() && x.dtype() == xs[0].dtype();
        for (int i = 0; ok && i < s0.rank(); ++i) ok = i == ax || x.shape()[i] == s0[i];
        if (!ok) throw ShapeError(fmt::format("concat: {} does not match {} along axes other than {}", describe(x.value()), describe(xs[0].value()), axis));
        out[ax] += x.shape()[ax];
    }
    Tensor y = Tensor::arena_empty(out, xs[0].dtype());
    std::int64_t off = 0;
    std::vector<std::int64_t> offsets;
    for (auto& x : xs) {
        copy_block(x.value(), y, ax, off, true);
        offsets.push_back(off);
        off += x.shape()[ax];
    }
    struct Closure {
        std::vector<Node*> nodes;
        std::vector<std::int64_t> offsets;
        int ax;
    };
    auto* c = current_tape().arena().make<Closure>();
    for (auto& x : xs) c->nodes.push_back(node_of(x));
    c->offsets = std::move(offsets);
    c->ax = ax;
    if (!grad_enabled() || !detail::any_on_tape(xs, current_tape())) {
        check_anomaly("concat", y);
        return Var(y);
    }
    return record_n("concat", y, xs, [](void* cl, const Tensor& g) {
        auto* c = static_cast<Closure*>(cl);
        for (std::size_t i = 0; i < c->nodes.size(); ++i) {
            Node* n = c->nodes[i];
            if (!n) continue;
            Tensor gx = Tensor::arena_empty(n->value.shape(), g.dtype());
            copy_block(g, gx, c->ax, c->offsets[i], false);
            accumulate_fresh(n, gx);
        }
    }, c, [](void* cl, HigherCtx& hc) {
        auto* c = static_cast<Closure*>(cl);
        for (std::size_t i = 0; i < c->nodes.size(); ++i) {
            if (!hc.needs(static_cast<int>(i))) continue;
            const std::int64_t len = hc.in(static_cast<int>(i)).shape()[c->ax];
            hc.dx[i] = slice(hc.gout, c->ax, c->offsets[i], c->offsets[i] + len);
        }
    });
}

Var stack(std::span<const Var> xs, int axis) {
    if (xs.empty()) throw ShapeError("stack: no inputs");
    const int r = xs[0].rank() + 1;
    int ax = detail::norm_axis("stack", axis, r);
    std::vector<Var> ex;
    for (auto& x : xs) {
        if (x.shape() != xs[0].shape())
            throw ShapeError(fmt::format("stack: {} differs from {}", describe(x.value()), describe(xs[0].value())));
        std::vector<std::int64_t> d = x.shape().vec();
        d.insert(d.begin() + ax, 1);
        ex.push_back(reshape(x, Shape(d)));
    }
    return concat(ex, ax);
}

Var broadcast_to(const Var& a, const Shape& s) {
    Shape b = broadcast_shapes("broadcast_to", a.shape(), s);
    if (b != s) throw ShapeError(fmt::format("broadcast_to: {} cannot broadcast to {}", describe(a.value()), s.str()));
    Tensor y = t_binary("broadcast_to", Tensor::arena_empty(s, a.dtype()), a.value(), [](auto, auto v) { return v; });
    return record("broadcast_to", y, {a}, [na = node_of(a)](const Tensor& g) { accumulate_fresh(na, sum_to(g, na->value.shape())); },
                  [](HigherCtx& c) { c.dx[0] = sum_to(c.gout, c.in(0).shape()); });
}

}  // namespace sdeuq
