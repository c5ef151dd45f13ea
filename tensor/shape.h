// Shapes and strides: small vectors of int64 with the helpers every op uses.
#pragma once
#include <algorithm>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace metagrad {

// A vector of int64 whose first kInline entries live inside the object (c10's DimVector).
//
// Why: every tensor and every view holds a shape and strides, and every op computes a few
// more (broadcast shapes, permutations, reduced shapes). As std::vectors they were two to
// eight heap allocations per op and, with their frees, most of malloc's share of a
// per-task sinusoid meta-step (a quarter of it, perf; docs/performance.md). Tensors of up to
// five dims (a task-batched image batch [T, N, C, H, W]) allocate nothing for their geometry;
// longer ones move to the heap, as std::vector does. 56 bytes: five entries, a pointer and two
// 32-bit counts, small enough that an autograd node holding seven of them (its inputs' and
// outputs' shapes, its arguments) still comes from malloc's per-thread cache.
//
// The interface is std::vector's, so code reads the same; it converts implicitly from a
// std::vector<int64_t> (one copy) and `vec()` gives one back.
class DimVector {
 public:
  static constexpr size_t kInline = 5;

  using value_type = int64_t;
  using size_type = size_t;
  using difference_type = std::ptrdiff_t;
  using reference = int64_t&;
  using const_reference = const int64_t&;
  using pointer = int64_t*;
  using const_pointer = const int64_t*;
  using iterator = int64_t*;
  using const_iterator = const int64_t*;
  using reverse_iterator = std::reverse_iterator<iterator>;
  using const_reverse_iterator = std::reverse_iterator<const_iterator>;

  DimVector() noexcept {}  // user-provided: the inline entries past size_ are never read
  explicit DimVector(size_t n, int64_t value = 0) { assign(n, value); }
  DimVector(std::initializer_list<int64_t> l) { assign(l.begin(), l.end()); }
  template <std::input_iterator It>
  DimVector(It first, It last) {
    assign(first, last);
  }
  DimVector(const std::vector<int64_t>& v) { assign(v.begin(), v.end()); }  // NOLINT: implicit
  DimVector(const DimVector& o) { assign(o.begin(), o.end()); }
  DimVector(DimVector&& o) noexcept { take(o); }
  DimVector& operator=(const DimVector& o) {
    if (this != &o) assign(o.begin(), o.end());
    return *this;
  }
  DimVector& operator=(DimVector&& o) noexcept {
    if (this != &o) {
      release_heap();
      take(o);
    }
    return *this;
  }
  DimVector& operator=(std::initializer_list<int64_t> l) {
    assign(l.begin(), l.end());
    return *this;
  }
  ~DimVector() { release_heap(); }

  std::vector<int64_t> vec() const { return {begin(), end()}; }
  bool is_inline() const { return data_ == inline_; }  // no heap block held

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }
  int64_t* data() { return data_; }
  const int64_t* data() const { return data_; }
  iterator begin() { return data_; }
  iterator end() { return data_ + size_; }
  const_iterator begin() const { return data_; }
  const_iterator end() const { return data_ + size_; }
  const_iterator cbegin() const { return begin(); }
  const_iterator cend() const { return end(); }
  reverse_iterator rbegin() { return reverse_iterator(end()); }
  reverse_iterator rend() { return reverse_iterator(begin()); }
  const_reverse_iterator rbegin() const { return const_reverse_iterator(end()); }
  const_reverse_iterator rend() const { return const_reverse_iterator(begin()); }
  int64_t& operator[](size_t i) { return data_[i]; }
  const int64_t& operator[](size_t i) const { return data_[i]; }
  int64_t& front() { return data_[0]; }
  const int64_t& front() const { return data_[0]; }
  int64_t& back() { return data_[size_ - 1]; }
  const int64_t& back() const { return data_[size_ - 1]; }

  void reserve(size_t n) {
    if (n > capacity_) grow(n);
  }
  void clear() { size_ = 0; }
  void resize(size_t n, int64_t value = 0) {
    reserve(n);
    if (n > size_) std::fill(data_ + size_, data_ + n, value);
    size_ = static_cast<uint32_t>(n);
  }
  void assign(size_t n, int64_t value) {
    size_ = 0;
    resize(n, value);
  }
  template <std::input_iterator It>
  void assign(It first, It last) {
    size_ = 0;
    if constexpr (std::forward_iterator<It>)
      reserve(static_cast<size_t>(std::distance(first, last)));
    for (; first != last; ++first) push_back(*first);
  }
  void assign(std::initializer_list<int64_t> l) { assign(l.begin(), l.end()); }
  void push_back(int64_t v) {
    if (size_ == capacity_) grow(2 * capacity_);
    data_[size_++] = v;
  }
  int64_t& emplace_back(int64_t v) {
    push_back(v);
    return back();
  }
  void pop_back() { --size_; }
  iterator insert(const_iterator pos, int64_t v) { return insert(pos, size_t{1}, v); }
  iterator insert(const_iterator pos, size_t n, int64_t v) {
    const size_t at = open_gap(pos, n);
    std::fill(data_ + at, data_ + at + n, v);
    return data_ + at;
  }
  template <std::forward_iterator It>
  iterator insert(const_iterator pos, It first, It last) {
    // A range from this vector itself is copied out first: the gap may move the storage.
    const DimVector values(first, last);
    const size_t at = open_gap(pos, values.size());
    std::copy(values.begin(), values.end(), data_ + at);
    return data_ + at;
  }
  iterator insert(const_iterator pos, std::initializer_list<int64_t> l) {
    return insert(pos, l.begin(), l.end());
  }
  iterator erase(const_iterator pos) { return erase(pos, pos + 1); }
  iterator erase(const_iterator first, const_iterator last) {
    const size_t at = static_cast<size_t>(first - data_);
    std::copy(data_ + (last - data_), end(), data_ + at);
    size_ -= static_cast<uint32_t>(last - first);
    return data_ + at;
  }

  friend bool operator==(const DimVector& a, const DimVector& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  }
  friend std::strong_ordering operator<=>(const DimVector& a, const DimVector& b) {
    return std::lexicographical_compare_three_way(a.begin(), a.end(), b.begin(), b.end());
  }

 private:
  // Makes room for n entries at pos and returns pos as an index.
  size_t open_gap(const_iterator pos, size_t n) {
    const size_t at = static_cast<size_t>(pos - data_);
    reserve(size_ + n);
    std::copy_backward(data_ + at, data_ + size_, data_ + size_ + n);
    size_ += static_cast<uint32_t>(n);
    return at;
  }
  void grow(size_t n) {
    n = std::max(n, kInline);
    int64_t* fresh = std::allocator<int64_t>().allocate(n);
    std::copy(begin(), end(), fresh);
    release_heap();
    data_ = fresh;
    capacity_ = static_cast<uint32_t>(n);
  }
  void release_heap() {
    if (!is_inline()) std::allocator<int64_t>().deallocate(data_, capacity_);
    data_ = inline_;
    capacity_ = kInline;
  }
  // Takes o's entries (its heap block when it has one) and leaves o empty and inline.
  void take(DimVector& o) {
    if (o.is_inline()) {
      std::copy(o.begin(), o.end(), inline_);
      data_ = inline_;
      capacity_ = kInline;
    } else {
      data_ = o.data_;
      capacity_ = o.capacity_;
      o.data_ = o.inline_;
      o.capacity_ = kInline;
    }
    size_ = o.size_;
    o.size_ = 0;
  }

  int64_t* data_ = inline_;
  uint32_t size_ = 0;
  uint32_t capacity_ = kInline;
  int64_t inline_[kInline];
};

using Shape = DimVector;

std::string shape_str(const Shape& s);  // "[2, 3]"
int64_t numel_of(const Shape& s);
Shape contiguous_strides(const Shape& shape);

// a + b and a * b of sizes, or "[op] <what> overflows int64" (user-given sizes, paddings and
// steps can be anything; the arithmetic on them must not be undefined).
int64_t checked_add(const char* op, const char* what, int64_t a, int64_t b);
int64_t checked_mul(const char* op, const char* what, int64_t a, int64_t b);

// Wraps a possibly negative dim into [0, ndim); throws "[op] dim d out of range for a 3-d tensor".
int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim);

// NumPy broadcasting of two shapes, or "[op] shapes [..] and [..] cannot be broadcast".
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

}  // namespace metagrad
