// Arena: a bump allocator in 64-byte-aligned chunks, recovered in one call.
//
// As in Stan Math's stack_alloc, everything a training step creates (tape nodes, backward closures,
// intermediate tensors) is bump-allocated here and released at once by reset(); chunks are kept, so a
// steady-state step performs no heap allocation. Each reset bumps `generation`, which tensors record so
// that a stale arena tensor is detected when used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace sdeuq {

class Arena {
public:
    static constexpr std::size_t alignment = 64;
    explicit Arena(std::size_t first_chunk = std::size_t(1) << 20);
    ~Arena();
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;

    void* allocate(std::size_t bytes) {
        bytes = (bytes + alignment - 1) & ~(alignment - 1);
        if (bytes != 0 && offset_ + bytes <= limit_) {
            void* p = base_ + offset_;
            offset_ += bytes;
            return p;
        }
        return allocate_slow(bytes);
    }
    // For objects whose destructor has nothing to release (the caller guarantees it).
    template <class T, class... Args> T* make_untracked(Args&&... args) {
        return new (allocate(sizeof(T))) T(std::forward<Args>(args)...);
    }
    template <class T, class... Args> T* make(Args&&... args) {
        void* p = allocate(sizeof(T));
        T* obj = new (p) T(std::forward<Args>(args)...);
        if constexpr (!std::is_trivially_destructible_v<T>) register_destructor(obj, [](void* o) {
            static_cast<T*>(o)->~T();
        });
        return obj;
    }
    // Runs pending destructors, rewinds to the start, keeps the chunks.
    void reset();
    std::uint64_t generation() const { return generation_; }
    std::size_t bytes_in_use() const;
    std::size_t bytes_reserved() const;

private:
    void register_destructor(void* obj, void (*fn)(void*));
    void* allocate_slow(std::size_t bytes);
    void select_chunk(std::size_t i);
    std::byte* base_ = nullptr;  // chunks_[current_].data
    std::size_t limit_ = 0;      // chunks_[current_].size
    struct Chunk {
        std::byte* data;
        std::size_t size;
    };
    std::vector<Chunk> chunks_;
    std::size_t current_ = 0;  // index of the chunk being filled
    std::size_t offset_ = 0;   // bytes used in chunks_[current_]
    struct Dtor {
        void* obj;
        void (*fn)(void*);
    };
    std::vector<Dtor> dtors_;
    std::uint64_t generation_ = 1;
};

}  // namespace sdeuq
