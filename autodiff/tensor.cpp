#include "autodiff/tensor.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

#include "autodiff/tape.hpp"

namespace sdeuq {

const char* dtype_name(DType d) { return d == DType::f32 ? "f32" : "f64"; }

Shape::Shape(std::initializer_list<std::int64_t> dims) {
    if (dims.size() > max_rank) throw ShapeError(fmt::format("Shape: rank {} exceeds the maximum {}", dims.size(), max_rank));
    for (auto v : dims) push_back(v);
}

Shape::Shape(const std::vector<std::int64_t>& dims) {
    if (dims.size() > max_rank) throw ShapeError(fmt::format("Shape: rank {} exceeds the maximum {}", dims.size(), max_rank));
    for (auto v : dims) push_back(v);
}

void Shape::push_back(std::int64_t v) {
    if (rank_ >= max_rank) throw ShapeError(fmt::format("Shape: rank exceeds the maximum {}", max_rank));
    if (v < 0) throw ShapeError(fmt::format("Shape: negative dimension {}", v));
    d_[rank_++] = v;
}

std::string Shape::str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(d_[i]);
    return s + "]";
}

std::string describe(const Tensor& t) {
    if (!t.defined()) return "undefined";
    return std::string(dtype_name(t.dtype())) + t.shape().str();
}

Tensor Tensor::empty(const Shape& s, DType dt) {
    Tensor t;
    t.shape_ = s;
    t.dtype_ = dt;
    t.dtype_set_ = true;
    std::size_t bytes = std::max<std::size_t>(64, (t.nbytes() + 63) / 64 * 64);
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
    t.data_ = p;
    return t;
}

Tensor Tensor::zeros(const Shape& s, DType dt) {
    Tensor t = empty(s, dt);
    std::memset(t.data_, 0, t.nbytes());
    return t;
}

Tensor Tensor::full(const Shape& s, double v, DType dt) {
    Tensor t = empty(s, dt);
    t.fill(v);
    return t;
}

Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& s, DType dt) {
    if (static_cast<std::int64_t>(v.size()) != s.numel())
        throw ShapeError(fmt::format("Tensor::from_vector: {} values for shape {}", v.size(), s.str()));
    Tensor t = empty(s, dt);
    for (std::size_t i = 0; i < v.size(); ++i) t.set_flat(static_cast<std::int64_t>(i), v[i]);
    return t;
}

Tensor Tensor::arena_empty(const Shape& s, DType dt) {
    // With gradients off nothing records an intermediate, so its last handle is its last use: large ones
    // go on the heap and are freed then, and repeated no-grad passes (MC dropout, evaluation) reuse their
    // memory instead of piling up in the arena until the next reset. Small ones stay in the arena (cheaper).
    if (!grad_enabled() && s.numel() * static_cast<std::int64_t>(dtype_size(dt)) >= no_grad_heap_bytes)
        return empty(s, dt);
    Tensor t;
    t.shape_ = s;
    t.dtype_ = dt;
    t.dtype_set_ = true;
    Arena& a = current_tape().arena();
    t.data_ = a.allocate(t.nbytes());
    t.arena_ = &a;
    t.generation_ = a.generation();
    return t;
}

Tensor Tensor::arena_zeros(const Shape& s, DType dt) {
    Tensor t = arena_empty(s, dt);
    std::memset(t.data_, 0, t.nbytes());
    return t;
}

Tensor Tensor::view(void* data, const Shape& s, DType dt) {
    Tensor t;
    t.shape_ = s;
    t.dtype_ = dt;
    t.dtype_set_ = true;
    t.data_ = data;
    return t;
}

void Tensor::stale_error() const {
    throw UsageError(fmt::format("tensor {} was allocated in an arena that has since been reset "
                                     "(keep results across steps with clone())",
                                     shape_.str()));
}

void Tensor::type_error(DType wanted) const {
    throw UsageError(fmt::format("tensor {} accessed as {}", describe(*this), dtype_name(wanted)));
}

Tensor Tensor::reshaped(const Shape& s) const {
    if (s.numel() != numel())
        throw ShapeError(fmt::format("reshape: cannot view {} ({} elements) as {}", shape_.str(), numel(), s.str()));
    Tensor t = *this;
    t.shape_ = s;
    return t;
}

Tensor Tensor::clone() const {
    check_alive();
    Tensor t = empty(shape_, dtype_);
    std::memcpy(t.data_, data_, nbytes());
    return t;
}

Tensor Tensor::clone_arena() const {
    check_alive();
    Tensor t = arena_empty(shape_, dtype_);
    std::memcpy(t.data_, data_, nbytes());
    return t;
}

Tensor Tensor::to(DType dt) const {
    Tensor t = empty(shape_, dt);
    t.copy_from(*this);
    return t;
}

void Tensor::copy_from(const Tensor& src) {
    check_alive();
    src.check_alive();
    if (src.numel() != numel())
        throw ShapeError(fmt::format("copy_from: {} into {}", describe(src), describe(*this)));
    if (src.dtype_ == dtype_) {
        std::memcpy(data_, src.data_, nbytes());
        return;
    }
    dispatch(dtype_, [&](auto d) {
        using D = decltype(d);
        dispatch(src.dtype_, [&](auto s) {
            using S = decltype(s);
            const S* sp = static_cast<const S*>(src.data_);
            D* dp = static_cast<D*>(data_);
            for (std::int64_t i = 0; i < numel(); ++i) dp[i] = static_cast<D>(sp[i]);
        });
    });
}

void Tensor::fill(double v) {
    if (v == 0.0 && !std::signbit(v)) {
        std::memset(raw(), 0, nbytes());
        return;
    }
    dispatch(dtype_, [&](auto z) {
        using T = decltype(z);
        T* p = data<T>();
        for (std::int64_t i = 0; i < numel(); ++i) p[i] = static_cast<T>(v);
    });
}

double Tensor::flat(std::int64_t i) const {
    check_alive();
    if (i < 0 || i >= numel()) throw ShapeError(fmt::format("flat index {} out of range for {}", i, describe(*this)));
    return dtype_ == DType::f32 ? static_cast<const float*>(data_)[i] : static_cast<const double*>(data_)[i];
}

void Tensor::set_flat(std::int64_t i, double v) {
    check_alive();
    if (i < 0 || i >= numel()) throw ShapeError(fmt::format("flat index {} out of range for {}", i, describe(*this)));
    if (dtype_ == DType::f32)
        static_cast<float*>(data_)[i] = static_cast<float>(v);
    else
        static_cast<double*>(data_)[i] = v;
}

double Tensor::item() const {
    if (numel() != 1) throw ShapeError(fmt::format("item: tensor {} does not hold exactly one element", describe(*this)));
    return flat(0);
}

double Tensor::at(std::initializer_list<std::int64_t> idx) const {
    if (static_cast<int>(idx.size()) != rank())
        throw ShapeError(fmt::format("at: {} indices for {}", idx.size(), describe(*this)));
    std::int64_t off = 0;
    int k = 0;
    for (auto i : idx) {
        if (i < 0 || i >= shape_[k]) throw ShapeError(fmt::format("at: index {} out of range in dim {} of {}", i, k, describe(*this)));
        off = off * shape_[k] + i;
        ++k;
    }
    return flat(off);
}

std::vector<double> Tensor::to_vector() const {
    std::vector<double> v(static_cast<std::size_t>(numel()));
    for (std::int64_t i = 0; i < numel(); ++i) v[static_cast<std::size_t>(i)] = flat(i);
    return v;
}

}  // namespace sdeuq
