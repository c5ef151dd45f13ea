// The caching device allocator (Note [CUDA caching allocator] in kernels/cuda/runtime.h).
//
// Blocks are binned by a rounded size: multiples of 512 bytes below 1 MiB, above it the size
// rounded up to a quarter step of its power of two (waste under 25%, as the CPU cache). A free
// list per (device, stream, bin) holds freed blocks. Reuse within one stream needs no event:
// the kernels that last used the block were queued on that stream before the kernels of its
// next owner. A block is never handed to another stream, so cross-stream use of a tensor must
// be ordered by the user (an Event), as with PyTorch's record_stream.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/common.h"

namespace metagrad::cuda {

namespace {

constexpr size_t kSmall = size_t{1} << 20;

size_t bin_size(size_t n) {
  if (n < kSmall) return (n + 511) / 512 * 512;
  const size_t top = std::bit_floor(n);
  const size_t step = top / 4;
  return (n + step - 1) / step * step;
}

// Set when the allocator itself is destroyed at exit: tensors held by other statics that die
// later are then leaked to the driver, which reclaims everything at process end anyway.
std::atomic<bool> g_destroyed{false};

class DeviceCache {
 public:
  void* alloc(int device, size_t nbytes, void* stream, size_t* capacity) {
    const size_t size = bin_size(nbytes);
    *capacity = size;
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.alloc_count;
    auto it = free_.find({stream, size});
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= size;
      ++stats_.cache_hits;
      note_alloc_locked(size);
      return p;
    }
    void* p = malloc_locked(device, size);
    if (!p) {
      release_locked(device);  // what the cache holds may be what the device lacks
      p = malloc_locked(device, size);
    }
    if (!p)
      ::metagrad::detail::fail("alloc", "out of memory on cuda:", device, " allocating ", nbytes,
                               " bytes (", stats_.allocated, " bytes allocated and ",
                               stats_.reserved, " reserved by metagrad",
                               limit_ ? " under a limit of " : "",
                               limit_ ? std::to_string(limit_) + " bytes" : std::string(), ")");
    note_alloc_locked(size);
    return p;
  }

  void free(void* p, size_t size, void* stream) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.allocated -= std::min(stats_.allocated, size);
    free_[{stream, size}].push_back(p);
    cached_ += size;
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated = stats_.allocated;
    stats_.peak_reserved = stats_.reserved;
  }
  void empty(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    release_locked(device);
  }
  void set_limit(int device, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    limit_ = bytes;
    if (limit_ && stats_.reserved > limit_) release_locked(device);
  }

 private:
  // cudaMalloc on `device`, or null on out-of-memory (or over the limit). Other errors throw.
  void* malloc_locked(int device, size_t size) {
    if (limit_ && stats_.reserved + size > limit_) {
      ++stats_.ooms;
      return nullptr;
    }
    int prev = 0;
    MG_CUDA_CHECK(cudaGetDevice(&prev));
    if (prev != device) MG_CUDA_CHECK(cudaSetDevice(device));
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, size);
    if (prev != device) MG_CUDA_CHECK(cudaSetDevice(prev));
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky, but clear it so the next check starts clean
      ++stats_.ooms;
      return nullptr;
    }
    MG_CUDA_CHECK(e);
    ++stats_.cuda_mallocs;
    stats_.reserved += size;
    stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
    return p;
  }

  // cudaFree waits for the device, so every queued kernel that could still touch a cached
  // block has finished before the block goes back to the driver.
  void release_locked(int device) {
    int prev = 0;
    MG_CUDA_CHECK(cudaGetDevice(&prev));
    if (prev != device) MG_CUDA_CHECK(cudaSetDevice(device));
    for (auto& [key, blocks] : free_) {
      for (void* p : blocks) {
        MG_CUDA_CHECK(cudaFree(p));
        stats_.reserved -= key.second;
      }
    }
    free_.clear();
    cached_ = 0;
    if (prev != device) MG_CUDA_CHECK(cudaSetDevice(prev));
  }

  void note_alloc_locked(size_t size) {
    stats_.allocated += size;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
  }

  std::mutex mu_;
  std::map<std::pair<void*, size_t>, std::vector<void*>> free_;  // (stream, bin) -> blocks
  size_t cached_ = 0;
  size_t limit_ = 0;
  MemoryStats stats_;
};

constexpr int kMaxDevices = 64;

struct Caches {
  DeviceCache per_device[kMaxDevices];
  ~Caches() { g_destroyed.store(true); }  // blocks stay with the driver until exit
};

DeviceCache& cache(int device) {
  static Caches c;
  MG_CHECK(device >= 0 && device < kMaxDevices, "alloc", "device index ", device, " out of range");
  return c.per_device[device];
}

int resolve(int device) {
  return device < 0 ? current_device() : device;
}

}  // namespace

void* device_alloc(int device, size_t nbytes, void* stream, size_t* capacity) {
  *capacity = 0;
  if (nbytes == 0) return nullptr;
  return cache(device).alloc(device, nbytes, stream, capacity);
}

void device_free(int device, void* p, size_t capacity, void* stream) {
  if (!p || g_destroyed.load()) return;
  cache(device).free(p, capacity, stream);
}

MemoryStats memory_stats(int device) {
  return cache(resolve(device)).stats();
}
void reset_peak_memory_stats(int device) {
  cache(resolve(device)).reset_peak();
}
void empty_cache(int device) {
  const int d = resolve(device);
  cache(d).empty(d);
}
void set_memory_limit(size_t bytes, int device) {
  const int d = resolve(device);
  cache(d).set_limit(d, bytes);
}

}  // namespace metagrad::cuda
