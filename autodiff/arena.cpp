#include "autodiff/arena.hpp"

#include <cstdlib>
#include <algorithm>
#include <new>

namespace sdeuq {

namespace {
std::byte* aligned_chunk(std::size_t size) {
    void* p = std::aligned_alloc(Arena::alignment, size);
    if (!p) throw std::bad_alloc();
    return static_cast<std::byte*>(p);
}
std::size_t round_up(std::size_t n) { return (n + Arena::alignment - 1) / Arena::alignment * Arena::alignment; }
}  // namespace

Arena::Arena(std::size_t first_chunk) {
    chunks_.push_back({aligned_chunk(round_up(first_chunk)), round_up(first_chunk)});
    select_chunk(0);
}

void Arena::select_chunk(std::size_t i) {
    current_ = i;
    offset_ = 0;
    base_ = chunks_[i].data;
    limit_ = chunks_[i].size;
}

Arena::~Arena() {
    for (auto it = dtors_.rbegin(); it != dtors_.rend(); ++it) it->fn(it->obj);
    for (auto& c : chunks_) std::free(c.data);
}

void* Arena::allocate_slow(std::size_t bytes) {
    bytes = round_up(bytes == 0 ? 1 : bytes);
    while (true) {
        if (offset_ + bytes <= limit_) {
            void* p = base_ + offset_;
            offset_ += bytes;
            return p;
        }
        if (current_ + 1 < chunks_.size() && chunks_[current_ + 1].size >= bytes) {
            select_chunk(current_ + 1);
            continue;
        }
        // A new chunk at least twice the last one, inserted after the current one.
        std::size_t size = std::max(bytes, chunks_.back().size * 2);
        chunks_.insert(chunks_.begin() + static_cast<std::ptrdiff_t>(current_) + 1, {aligned_chunk(size), size});
        select_chunk(current_ + 1);
    }
}

void Arena::register_destructor(void* obj, void (*fn)(void*)) { dtors_.push_back({obj, fn}); }

void Arena::reset() {
    for (auto it = dtors_.rbegin(); it != dtors_.rend(); ++it) it->fn(it->obj);
    dtors_.clear();
    select_chunk(0);
    ++generation_;
}

std::size_t Arena::bytes_in_use() const {
    std::size_t n = offset_;
    for (std::size_t i = 0; i < current_; ++i) n += chunks_[i].size;
    return n;
}

std::size_t Arena::bytes_reserved() const {
    std::size_t n = 0;
    for (auto& c : chunks_) n += c.size;
    return n;
}

}  // namespace sdeuq
