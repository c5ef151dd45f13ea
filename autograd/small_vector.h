// A vector whose first N elements live inside the object itself.
//
// Why: every recorded op makes a node, and a node's per-input and per-output lists (edges,
// shapes, the outputs it produced) hold one to three entries. As std::vectors they cost four
// heap allocations and frees per op, a fifth of the host time of a recorded 4-element add
// (bench_elementwise BM_AddTinyOverhead). Inline, the node is one allocation. Past N the
// elements move to the heap, as llvm::SmallVector and c10::SmallVector do.
//
// Only what the graph needs: no copy or move of the container itself (a Node is neither
// copied nor moved), growth at the end, clear.
#pragma once
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <utility>

namespace metagrad::autograd {

template <typename T, size_t N>
class SmallVector {
  static_assert(N > 0, "SmallVector needs room for at least one inline element");

 public:
  SmallVector() = default;
  SmallVector(std::initializer_list<T> l) { assign(l); }
  SmallVector(const SmallVector&) = delete;
  SmallVector& operator=(const SmallVector&) = delete;
  SmallVector& operator=(std::initializer_list<T> l) {
    assign(l);
    return *this;
  }
  ~SmallVector() {
    clear();
    release_heap();
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  bool is_inline() const { return data_ == inline_data(); }

  void reserve(size_t n) {
    if (n > capacity_) grow(n);
  }
  template <typename... Args>
  T& emplace_back(Args&&... args) {
    if (size_ == capacity_) grow(2 * capacity_);
    T* p = std::construct_at(data_ + size_, std::forward<Args>(args)...);
    ++size_;
    return *p;
  }
  void push_back(const T& v) { emplace_back(v); }
  void push_back(T&& v) { emplace_back(std::move(v)); }
  void clear() {
    std::destroy(begin(), end());
    size_ = 0;
  }

 private:
  T* inline_data() { return reinterpret_cast<T*>(inline_); }
  const T* inline_data() const { return reinterpret_cast<const T*>(inline_); }

  void assign(std::initializer_list<T> l) {
    clear();
    reserve(l.size());
    for (const T& v : l) emplace_back(v);
  }
  void grow(size_t n) {
    std::allocator<T> alloc;
    T* fresh = alloc.allocate(n);
    std::uninitialized_move(begin(), end(), fresh);
    std::destroy(begin(), end());
    release_heap();
    data_ = fresh;
    capacity_ = n;
  }
  void release_heap() {
    if (!is_inline()) std::allocator<T>().deallocate(data_, capacity_);
  }

  alignas(T) std::byte inline_[N * sizeof(T)];
  T* data_ = inline_data();
  size_t size_ = 0;
  size_t capacity_ = N;
};

}  // namespace metagrad::autograd
