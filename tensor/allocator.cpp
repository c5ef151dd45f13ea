// The CPU caching allocator (Note [CPU caching allocator] in tensor/allocator.h).
#include "tensor/allocator.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tensor/error.h"

namespace metagrad::memory {

namespace {

// The bin of a request: sizes below kMinCachedBytes are 64-byte multiples (not cached);
// above, the size rounded up to a quarter step of its power of two (waste below 25%).
size_t bin_size(size_t n) {
  if (n < kMinCachedBytes) return (n + 63) / 64 * 64;
  const size_t top = std::bit_floor(n);
  const size_t step = top / 4;
  return (n + step - 1) / step * step;
}

// Small blocks (below kMinCachedBytes) come from malloc, whose per-thread caches serve them in
// a few nanoseconds, over-allocated by 64 bytes and aligned up by hand, the malloc'd address
// kept just below the block for the free: aligned_alloc takes glibc's memalign path instead,
// which split and consolidated its bins on every call (a third of a 4-element add's host time,
// bench_elementwise BM_AddTinyOverhead).
void* small_alloc(size_t size) {
  void* raw = std::malloc(size + 64);
  if (!raw) return nullptr;
  const uintptr_t at = (reinterpret_cast<uintptr_t>(raw) + 64) & ~uintptr_t{63};
  void** block = reinterpret_cast<void**>(at);
  block[-1] = raw;  // malloc aligns to 16 at least, so at least 16 bytes lie below `at`
  return block;
}
void small_free(void* p) {
  std::free(static_cast<void**>(p)[-1]);
}

// Set once the cache itself is destroyed (static destruction): tensors that outlive it, held
// by other statics, then go straight to the system. An atomic is trivially destructible, so
// it stays readable to the end.
std::atomic<bool> g_destroyed{false};

class Cache {
 public:
  ~Cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_all_locked();
    g_destroyed.store(true);
  }

  void* alloc(size_t nbytes, size_t* capacity) {
    const size_t size = bin_size(nbytes);
    *capacity = size;
    if (size >= kMinCachedBytes) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.cached -= size;
        ++stats_.hits;
        note_alloc(size);
        return p;
      }
      ++stats_.misses;
    }
    auto system_alloc = [size] {
      return size < kMinCachedBytes ? small_alloc(size) : std::aligned_alloc(64, size);
    };
    void* p = system_alloc();
    if (!p) {
      empty();  // what the cache holds may be what the system lacks
      p = system_alloc();
    }
    if (!p) {
      const CpuStats s = stats();
      detail::fail("alloc", "out of memory allocating ", nbytes, " bytes on the CPU (", s.allocated,
                   " bytes allocated by metagrad)");
    }
    note_alloc(size);
    return p;
  }

  void free(void* p, size_t size) {
    if (!p) return;
    allocated_.fetch_sub(size, std::memory_order_relaxed);
    if (size < kMinCachedBytes) {
      small_free(p);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stats_.cached + size <= limit_) {
      free_[size].push_back(p);
      stats_.cached += size;
      return;
    }
    std::free(p);
  }

  CpuStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    CpuStats s = stats_;
    s.allocated = allocated_.load(std::memory_order_relaxed);
    s.peak_allocated = peak_.load(std::memory_order_relaxed);
    return s;
  }
  void reset_peak() { peak_.store(allocated_.load(std::memory_order_relaxed)); }
  void empty() {
    std::lock_guard<std::mutex> lock(mu_);
    release_all_locked();
  }
  void set_limit(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    limit_ = bytes;
    if (stats_.cached > limit_) release_all_locked();
  }

 private:
  // Lock-free: a small block (every tensor of a sinusoid MLP) passes no mutex at all.
  void note_alloc(size_t size) {
    const size_t now = allocated_.fetch_add(size, std::memory_order_relaxed) + size;
    size_t peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  void release_all_locked() {
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    stats_.cached = 0;
  }

  std::mutex mu_;  // guards free_ and stats_'s cached/hits/misses
  std::unordered_map<size_t, std::vector<void*>> free_;
  CpuStats stats_;
  std::atomic<size_t> allocated_{0}, peak_{0};
  size_t limit_ = size_t{1} << 30;
};

Cache& cache() {
  static Cache c;
  return c;
}

}  // namespace

void* cpu_alloc(size_t nbytes, size_t* capacity) {
  *capacity = 0;
  if (nbytes == 0) return nullptr;
  if (g_destroyed.load()) {
    *capacity = bin_size(nbytes);
    void* p =
        *capacity < kMinCachedBytes ? small_alloc(*capacity) : std::aligned_alloc(64, *capacity);
    if (!p) detail::fail("alloc", "out of memory allocating ", nbytes, " bytes on the CPU");
    return p;
  }
  return cache().alloc(nbytes, capacity);
}
void cpu_free(void* p, size_t capacity) {
  if (!p) return;
  if (g_destroyed.load()) {
    if (capacity < kMinCachedBytes)
      small_free(p);
    else
      std::free(p);
    return;
  }
  cache().free(p, capacity);
}
CpuStats cpu_stats() {
  return cache().stats();
}
void reset_peak_stats() {
  cache().reset_peak();
}
void empty_cache() {
  cache().empty();
}
void set_cache_limit(size_t bytes) {
  cache().set_limit(bytes);
}

}  // namespace metagrad::memory
