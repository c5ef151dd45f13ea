// The CPU caching allocator behind every Storage on the CPU.
//
// Note [CPU caching allocator]: a meta-training step allocates and frees the same large activations
// (megabytes each) hundreds of times. From glibc each such block is a fresh mmap whose pages fault
// in on first touch and are unmapped on free: 11% of an Omniglot conv-4 meta-step went to page
// faults in the kernel (perf, docs/performance.md). So blocks of at least kMinCachedBytes are kept
// on free, binned by a size rounded up to one of four steps per power of two, and handed out again
// for any request of the same bin. Blocks of 1 to 64 KiB are binned the same way and kept in lists
// of the thread that frees them (Note [Per-thread block lists]); below 1 KiB they go straight to
// malloc, whose per-thread cache serves them (aligned to 64 bytes by hand, not through
// aligned_alloc, whose memalign path is several times slower). The cache is bounded (a quarter of
// the machine's memory, at least 1 GiB, by default: Note [CPU cache limit] in allocator.cpp;
// `set_cache_limit`; the per-thread lists 4 MiB each, within it); on out-of-memory it is emptied
// and the allocation retried once before a clear error. `cached` counts every thread's lists;
// empty_cache and set_cache_limit release the calling thread's lists (other threads' are released
// when those threads end or reuse them). Thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>

namespace metagrad::memory {

inline constexpr size_t kMinCachedBytes = size_t{64} << 10;  // the shared cache's smallest
// Blocks from here to kMinCachedBytes are kept per thread (Note [Per-thread block lists] in
// allocator.cpp), at most kThreadCacheLimit bytes per thread; smaller ones are malloc's.
inline constexpr size_t kThreadCachedBytes = size_t{1} << 10;
inline constexpr size_t kThreadCacheLimit = size_t{4} << 20;

struct CpuStats {
  size_t allocated = 0;       // bytes in live blocks (as rounded for their bin)
  size_t cached = 0;          // bytes in freed blocks kept for reuse
  size_t peak_allocated = 0;  // the high-water mark of `allocated` since the last reset
  uint64_t hits = 0;          // allocations served from the cache
  uint64_t misses = 0;        // allocations of cacheable size that went to the system
};

// A block of at least `nbytes` (64-byte aligned); `capacity` receives its real size, to be
// passed back to cpu_free. nbytes == 0 gives nullptr.
void* cpu_alloc(size_t nbytes, size_t* capacity);
void cpu_free(void* p, size_t capacity);

CpuStats cpu_stats();
void reset_peak_stats();
// Returns every cached block to the system.
void empty_cache();
// The most bytes the cache keeps; blocks freed beyond it go back to the system.
void set_cache_limit(size_t bytes);
size_t cache_limit();
// The limit a process starts with: a quarter of physical memory (or of the cgroup's memory
// limit, where lower), at least 1 GiB.
size_t default_cache_limit();

}  // namespace metagrad::memory
