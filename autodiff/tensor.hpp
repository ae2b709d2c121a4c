// Tensor: a contiguous, row-major n-d array of float32 or float64.
//
// A Tensor is a small value type (shape, dtype, data pointer). Its storage lives either on the heap
// (parameters, optimizer state, data sets: `owner_` keeps it alive) or in the current arena (every
// intermediate of a training step: no reference count, recovered in one call by Tape::reset). An arena
// tensor remembers the arena generation it was allocated in, so using one after its arena was reset is
// an error with a message, not a dangling read.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "autodiff/arena.hpp"

namespace sdeuq {

enum class DType : std::uint8_t { f32, f64 };

const char* dtype_name(DType d);
inline std::size_t dtype_size(DType d) { return d == DType::f32 ? 4 : 8; }

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }

// Calls f(T{}) with T = float or double according to d.
template <class F> decltype(auto) dispatch(DType d, F&& f) {
    if (d == DType::f32) return f(float{});
    return f(double{});
}

// Error thrown by every op on bad shapes or misuse; the message names the op and the shapes.
struct ShapeError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};
struct UsageError : std::logic_error {
    using std::logic_error::logic_error;
};

class Shape {
public:
    static constexpr int max_rank = 8;
    Shape() = default;
    Shape(std::initializer_list<std::int64_t> dims);
    explicit Shape(const std::vector<std::int64_t>& dims);

    int rank() const { return rank_; }
    std::int64_t operator[](int i) const { return d_[i < 0 ? i + rank_ : i]; }
    std::int64_t& operator[](int i) { return d_[i < 0 ? i + rank_ : i]; }
    std::int64_t numel() const {
        std::int64_t n = 1;
        for (int i = 0; i < rank_; ++i) n *= d_[i];
        return n;
    }
    const std::int64_t* begin() const { return d_; }
    const std::int64_t* end() const { return d_ + rank_; }
    void push_back(std::int64_t v);
    std::vector<std::int64_t> vec() const { return {d_, d_ + rank_}; }
    std::string str() const;
    bool operator==(const Shape& o) const {
        if (rank_ != o.rank_) return false;
        for (int i = 0; i < rank_; ++i)
            if (d_[i] != o.d_[i]) return false;
        return true;
    }
    bool operator!=(const Shape& o) const { return !(*this == o); }

private:
    std::int64_t d_[max_rank] = {};
    int rank_ = 0;
};

class Tensor {
public:
    Tensor() = default;

    // Heap-owned tensors (outlive any step).
    static Tensor empty(const Shape& s, DType dt = DType::f32);
    static Tensor zeros(const Shape& s, DType dt = DType::f32);
    static Tensor full(const Shape& s, double v, DType dt = DType::f32);
    static Tensor from_vector(const std::vector<double>& v, const Shape& s, DType dt = DType::f32);
    static Tensor scalar(double v, DType dt = DType::f32) { return full(Shape{}, v, dt); }
    // Arena-allocated tensors (valid until the current arena is reset). With gradients off (NoGradScope),
    // tensors of at least no_grad_heap_bytes are heap tensors instead, freed with their last handle.
    static constexpr std::int64_t no_grad_heap_bytes = std::int64_t(1) << 16;
    static Tensor arena_empty(const Shape& s, DType dt);
    static Tensor arena_zeros(const Shape& s, DType dt);
    // A tensor viewing memory owned elsewhere (the caller keeps it alive).
    static Tensor view(void* data, const Shape& s, DType dt);

    bool defined() const { return dtype_set_; }
    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    std::int64_t dim(int i) const { return shape_[i]; }
    std::int64_t numel() const { return shape_.numel(); }
    DType dtype() const { return dtype_; }
    std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
    bool on_heap() const { return arena_ == nullptr; }
    // The arena holding the storage (null for heap tensors and views).
    const Arena* arena() const { return arena_; }

    template <class T> T* data() const {
        check_alive();
        if (dtype_of<T>() != dtype_) type_error(dtype_of<T>());
        return static_cast<T*>(data_);
    }
    void* raw() const { check_alive(); return data_; }

    // Same storage, new shape (numel must match).
    Tensor reshaped(const Shape& s) const;
    // Deep copies.
    Tensor clone() const;                    // heap
    Tensor clone_arena() const;              // current arena
    Tensor to(DType dt) const;               // heap, converted
    void copy_from(const Tensor& src);       // same numel; converts dtype
    void fill(double v);

    double item() const;                     // numel must be 1
    double at(std::initializer_list<std::int64_t> idx) const;
    double flat(std::int64_t i) const;
    void set_flat(std::int64_t i, double v);
    std::vector<double> to_vector() const;

    // Marks a gradient handed out by Var::grad(): such a tensor does not convert implicitly to a Var (an
    // adjoint passed back into an op would silently be a constant there); constant(t) converts it on
    // purpose. Copies and reshapes keep the mark, clones and results of ops do not.
    bool is_gradient() const { return gradient_; }
    Tensor marked_gradient() const {
        Tensor t = *this;
        t.gradient_ = true;
        return t;
    }

    void check_alive() const {
        if (arena_ && arena_->generation() != generation_) stale_error();
    }
    // The same tensor without a share in its storage (the caller guarantees the storage outlives it).
    Tensor unowned() const {
        Tensor t;
        t.shape_ = shape_;
        t.dtype_ = dtype_;
        t.dtype_set_ = dtype_set_;
        t.data_ = data_;
        t.arena_ = arena_;
        t.generation_ = generation_;
        return t;
    }

private:
    [[noreturn]] void stale_error() const;
    [[noreturn]] void type_error(DType wanted) const;
    Shape shape_;
    DType dtype_ = DType::f32;
    bool dtype_set_ = false;
    bool gradient_ = false;
    void* data_ = nullptr;
    std::shared_ptr<void> owner_;
    Arena* arena_ = nullptr;
    std::uint64_t generation_ = 0;
};

std::string describe(const Tensor& t);  // "f32[3, 4]"

}  // namespace sdeuq
