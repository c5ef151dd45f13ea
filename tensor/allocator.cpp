// The CPU caching allocator (Note [CPU caching allocator] in tensor/allocator.h).
#include "tensor/allocator.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <unistd.h>

#include "tensor/error.h"

namespace metagrad::memory {

namespace {

// The bin of a request: sizes below kThreadCachedBytes are 64-byte multiples (malloc's);
// above, the size rounded up to a quarter step of its power of two (waste below 25%).
constexpr size_t kMaxAllocBytes = size_t{1} << 62;

size_t bin_size(size_t n) {
  if (n < kThreadCachedBytes) return (n + 63) / 64 * 64;
  const size_t top = std::bit_floor(n);
  const size_t step = top / 4;
  return (n + step - 1) / step * step;
}
// Where a block of binned size `size` comes from and goes back to.
enum class Tier { Malloc, Thread, Shared };
Tier tier_of(size_t size) {
  return size < kThreadCachedBytes ? Tier::Malloc
         : size < kMinCachedBytes  ? Tier::Thread
                                   : Tier::Shared;
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

// Note [CPU cache limit]: the cache must hold a training step's working set, or every step
// hands the excess back to the system and faults it in again. A fixed 1 GiB did not hold the
// task-batched Omniglot step's 1.8 GB (32 tasks' activations at once): 39% of its CPU time went
// to the kernel (3.1 million page faults in one benchmark run), and the max-pool step ran
// 1.5-1.6x slower than with the blocks kept (docs/performance.md, session 11). The default is
// therefore a quarter of the memory this process may use (physical memory, or the cgroup's limit
// where lower, as in a container), and never below 1 GiB: freed blocks beyond it still go back, so
// a process that needs most of the machine is not starved by its own cache (and on out-of-memory
// the cache is emptied and the allocation retried).
size_t usable_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  size_t bytes =
      pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : size_t{0};
  // cgroup v2 writes "max" or a byte count; v1 a byte count (near 2^63 when unlimited).
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream cgroup(path);
    unsigned long long limit = 0;
    if (cgroup >> limit && limit > 0 && (bytes == 0 || limit < bytes))
      bytes = static_cast<size_t>(limit);
  }
  return bytes;
}

// Set once the cache itself is destroyed (static destruction): tensors that outlive it, held
// by other statics, then go straight to the system. An atomic is trivially destructible, so
// it stays readable to the end.
std::atomic<bool> g_destroyed{false};

// What all threads' block lists hold, and how much one may hold (the shared cache's limit,
// when lower).
std::atomic<size_t> g_thread_cached{0};
std::atomic<size_t> g_thread_limit{kThreadCacheLimit};

// Note [Per-thread block lists]: the blocks of kThreadCachedBytes to kMinCachedBytes (a
// sinusoid MLP's activations and gradients, a few KiB each) came from malloc, and every one
// of them, as a request of malloc's "large" kind, made glibc consolidate its fast bins first:
// a third of a sinusoid meta-step was malloc and free. Caching them in the shared cache
// instead took its mutex twice per op, which task threads then contended for (the threaded
// step got 5-8% slower). So each thread keeps its own lists, one per bin, without a lock: a
// freed block goes to the freeing thread's list (every block is plain malloc memory, so a
// block may move between threads), bounded per thread, released when the thread ends.
class ThreadBlocks {
 public:
  static constexpr int kBins = 4 * 6;  // four quarter steps for each power of two, 1 to 32 KiB

  ~ThreadBlocks() { release(); }
  void* take(size_t size) {
    std::vector<void*>& b = bins_[index(size)];
    if (b.empty()) return nullptr;
    void* p = b.back();
    b.pop_back();
    bytes_ -= size;
    g_thread_cached.fetch_sub(size, std::memory_order_relaxed);
    return p;
  }
  bool keep(void* p, size_t size) {
    if (bytes_ + size > g_thread_limit.load(std::memory_order_relaxed)) return false;
    bins_[index(size)].push_back(p);
    bytes_ += size;
    g_thread_cached.fetch_add(size, std::memory_order_relaxed);
    return true;
  }
  void release() {
    for (int i = 0; i < kBins; ++i) {
      for (void* p : bins_[i]) small_free(p);
      bins_[i].clear();
    }
    g_thread_cached.fetch_sub(bytes_, std::memory_order_relaxed);
    bytes_ = 0;
  }

 private:
  // `size` is a bin size: a power of two from 1 KiB to 32 KiB plus 0 to 3 quarter steps.
  static int index(size_t size) {
    const size_t top = std::bit_floor(size);
    return (std::countr_zero(top) - 10) * 4 + static_cast<int>((size - top) / (top / 4));
  }
  std::vector<void*> bins_[kBins];
  size_t bytes_ = 0;
};

// This thread's lists, or nullptr once they are destroyed (a tensor freed later in the
// thread's exit, or in static destruction, goes back to malloc). The pointer is trivially
// destructible, so it stays readable after its owner is gone.
thread_local ThreadBlocks* t_blocks = nullptr;
ThreadBlocks* thread_blocks() {
  struct Owner {
    ThreadBlocks blocks;
    Owner() { t_blocks = &blocks; }
    ~Owner() { t_blocks = nullptr; }
  };
  thread_local Owner owner;  // constructed on first use in each thread
  return t_blocks;
}

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
    const Tier tier = tier_of(size);
    if (tier == Tier::Thread) {
      if (ThreadBlocks* t = thread_blocks()) {
        if (void* p = t->take(size)) {
          note_alloc(size);
          return p;
        }
      }
    }
    if (tier == Tier::Shared) {
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
    auto system_alloc = [size, tier] {
      return tier == Tier::Shared ? std::aligned_alloc(64, size) : small_alloc(size);
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
    const Tier tier = tier_of(size);
    if (tier == Tier::Thread) {
      ThreadBlocks* t = t_blocks;  // null once this thread's lists are gone
      if (!t || !t->keep(p, size)) small_free(p);
      return;
    }
    if (tier == Tier::Malloc) {
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
    s.cached += g_thread_cached.load(std::memory_order_relaxed);
    s.allocated = allocated_.load(std::memory_order_relaxed);
    s.peak_allocated = peak_.load(std::memory_order_relaxed);
    return s;
  }
  void reset_peak() { peak_.store(allocated_.load(std::memory_order_relaxed)); }
  void empty() {
    if (ThreadBlocks* t = t_blocks) t->release();
    std::lock_guard<std::mutex> lock(mu_);
    release_all_locked();
  }
  size_t limit() {
    std::lock_guard<std::mutex> lock(mu_);
    return limit_;
  }
  void set_limit(size_t bytes) {
    g_thread_limit.store(std::min(bytes, kThreadCacheLimit));
    if (ThreadBlocks* t = t_blocks) t->release();
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
  size_t limit_ = default_cache_limit();
};

Cache& cache() {
  static Cache c;
  return c;
}

}  // namespace

void* cpu_alloc(size_t nbytes, size_t* capacity) {
  *capacity = 0;
  if (nbytes == 0) return nullptr;
  // No machine has 2^62 bytes; the bound also keeps bin_size's rounding from wrapping.
  if (nbytes > kMaxAllocBytes)
    detail::fail("alloc", "out of memory allocating ", nbytes, " bytes on the CPU");
  if (g_destroyed.load()) {
    *capacity = bin_size(nbytes);
    void* p = tier_of(*capacity) == Tier::Shared ? std::aligned_alloc(64, *capacity)
                                                 : small_alloc(*capacity);
    if (!p) detail::fail("alloc", "out of memory allocating ", nbytes, " bytes on the CPU");
    return p;
  }
  return cache().alloc(nbytes, capacity);
}
void cpu_free(void* p, size_t capacity) {
  if (!p) return;
  if (g_destroyed.load()) {
    if (tier_of(capacity) == Tier::Shared)
      std::free(p);
    else
      small_free(p);
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
size_t cache_limit() {
  return cache().limit();
}
size_t default_cache_limit() {
  static const size_t limit = std::max(size_t{1} << 30, usable_memory() / 4);
  return limit;
}

}  // namespace metagrad::memory
