// Indexing along any axis of N-d tensors with PyTorch's semantics: gather and scatter_add. Each is the
// other's adjoint, so both are differentiable to any order (the Var-level backward of one is the other).
//
// The index is a float tensor (f32 or f64, the engine's storage types) holding integers, of the same rank
// as the input. It is validated once and turned into flat offsets (int64, in the arena); the kernels are
// serial loops over those offsets, so scatter sums are in index order and results do not depend on the
// thread count.
#include <cmath>
#include <fmt/format.h>

#include "autodiff/ops.hpp"
#include "autodiff/tensor_ops.hpp"

namespace sdeuq {

namespace {

std::int64_t* arena_i64(std::int64_t n) {
    return static_cast<std::int64_t*>(
        current_tape().arena().allocate(sizeof(std::int64_t) * static_cast<std::size_t>(std::max<std::int64_t>(1, n))));
}

// For each element e of `index` (row-major), the flat offset into a tensor of shape `target` of e's
// multi-index with coordinate `axis` replaced by index[e]. Checks the rank, the index's extent (at most the
// target's on every axis but `axis`) and every index value (an integer in [0, target[axis])).
const std::int64_t* index_offsets(const char* op, const char* what, const Shape& target, int axis,
                                  const Tensor& index) {
    const int r = target.rank();
    if (index.rank() != r)
        throw ShapeError(fmt::format("{}: index {} must have the rank of {} {}", op, describe(index), what,
                                     target.str()));
    for (int d = 0; d < r; ++d)
        if (d != axis && index.dim(d) > target[d])
            throw ShapeError(fmt::format("{}: index {} is larger than {} {} in dimension {}", op, describe(index),
                                         what, target.str(), d));
    std::int64_t stride[Shape::max_rank];
    std::int64_t s = 1;
    for (int d = r - 1; d >= 0; --d) {
        stride[d] = s;
        s *= target[d];
    }
    const std::int64_t n = index.numel();
    std::int64_t* off = arena_i64(n);
    std::int64_t pos[Shape::max_rank] = {};
    for (std::int64_t e = 0; e < n; ++e) {
        const double v = index.flat(e);
        if (!(v >= 0.0 && v < static_cast<double>(target[axis]) && v == std::floor(v)))
            throw ShapeError(fmt::format("{}: index value {} at flat position {} of {} is not an integer in [0, {}) "
                                         "(axis {} of {} {})",
                                         op, v, e, describe(index), target[axis], axis, what, target.str()));
        std::int64_t o = 0;
        for (int d = 0; d < r; ++d) o += (d == axis ? static_cast<std::int64_t>(v) : pos[d]) * stride[d];
        off[e] = o;
        for (int d = r - 1; d >= 0; --d) {
            if (++pos[d] < index.dim(d)) break;
            pos[d] = 0;
        }
    }
    return off;
}

void check_index_defined(const char* op, const Tensor& index) {
    if (!index.defined()) throw UsageError(fmt::format("{}: undefined index", op));
}

// y[off[e]] += x[e] for e in [0, n) (x contiguous of n elements).
void scatter_into(const Tensor& y, const Tensor& x, const std::int64_t* off) {
    dispatch(y.dtype(), [&](auto z) {
        using T = decltype(z);
        T* py = y.data<T>();
        const T* px = x.data<T>();
        for (std::int64_t e = 0; e < x.numel(); ++e) py[off[e]] += px[e];
    });
}

// y[e] = x[off[e]] for the n elements of y.
void gather_into(const Tensor& y, const Tensor& x, const std::int64_t* off) {
    dispatch(y.dtype(), [&](auto z) {
        using T = decltype(z);
        T* py = y.data<T>();
        const T* px = x.data<T>();
        for (std::int64_t e = 0; e < y.numel(); ++e) py[e] = px[off[e]];
    });
}

}  // namespace

Var gather(const Var& a, int axis, const Tensor& index) {
    const char* op = "gather";
    if (!a.value().defined()) throw UsageError("gather: undefined input");
    check_index_defined(op, index);
    const int ax = detail::norm_axis(op, axis, a.rank());
    const std::int64_t* off = index_offsets(op, "input", a.shape(), ax, index);
    Tensor out = Tensor::arena_empty(index.shape(), a.dtype());
    gather_into(out, a.value(), off);
    // The index is kept (for the Var-level backward) as an arena copy: the caller's tensor need not live on.
    Tensor idx = node_of(a) ? index.clone_arena() : Tensor();
    return record(op, out, {a}, [na = node_of(a), off](const Tensor& g) {
        Tensor ga = Tensor::arena_zeros(na->value.shape(), g.dtype());
        scatter_into(ga, g, off);
        accumulate_fresh(na, ga);
    }, [ax, idx](HigherCtx& c) {
        Var x = c.in(0);
        c.dx[0] = scatter_add(Var(Tensor::arena_zeros(x.shape(), x.dtype())), ax, idx, c.gout);
    });
}

Var scatter_add(const Var& self, int axis, const Tensor& index, const Var& src) {
    const char* op = "scatter_add";
    if (!self.value().defined() || !src.value().defined()) throw UsageError("scatter_add: undefined input");
    check_index_defined(op, index);
    check_same_dtype(op, self.value(), src.value());
    if (src.shape() != index.shape())
        throw ShapeError(fmt::format("scatter_add: src {} must have the index's shape {} (PyTorch also accepts a "
                                     "larger src and uses its corner; slice it first)",
                                     describe(src.value()), index.shape().str()));
    const int ax = detail::norm_axis(op, axis, self.rank());
    const std::int64_t* off = index_offsets(op, "self", self.shape(), ax, index);
    Tensor out = self.value().clone_arena();
    scatter_into(out, src.value(), off);
    Tensor idx = node_of(src) ? index.clone_arena() : Tensor();
    return record(op, out, {self, src}, [ns = node_of(self), nsrc = node_of(src), off](const Tensor& g) {
        if (ns) accumulate(ns, g);
        if (nsrc) {
            Tensor gs = Tensor::arena_empty(nsrc->value.shape(), g.dtype());
            gather_into(gs, g, off);
            accumulate_fresh(nsrc, gs);
        }
    }, [ax, idx](HigherCtx& c) {
        if (c.needs(0)) c.dx[0] = c.gout;
        if (c.needs(1)) c.dx[1] = gather(c.gout, ax, idx);
    });
}

}  // namespace sdeuq
