// What every file of kernels/cuda/ shares: the checked-call macros, the current stream, launch
// sizes, and scratch buffers from the caching allocator. Included by .cu files (nvcc) and by
// the .cpp files that call cuBLAS / cuDNN / the runtime (g++); never by the tensor layer.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels/cuda/runtime.h"
#include "kernels/error.h"

namespace metagrad::cuda::detail {

[[noreturn]] void fail_call(const char* call, const char* error, const char* file, int line);
void count_launch();        // LaunchStats::kernels
void count_library_call();  // LaunchStats::library_calls
// How many owned streams have been destroyed in this process (Note [Library handles] in
// handles.h): the driver may hand a destroyed stream's address to a new stream, so a stream
// address alone does not say which stream it is.
uint64_t stream_epoch();

}  // namespace metagrad::cuda::detail

// Every CUDA runtime call is checked: a failure raises metagrad::Error naming the call, the
// error string and file:line (DESIGN principle 8).
#define MG_CUDA_CHECK(call)                                                                        \
  do {                                                                                             \
    const cudaError_t mg_err_ = (call);                                                            \
    if (mg_err_ != cudaSuccess)                                                                    \
      ::metagrad::cuda::detail::fail_call(#call, cudaGetErrorString(mg_err_), __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: a bad configuration (too many threads, too much shared memory)
// shows up here, not at the next unrelated call.
#define MG_CUDA_LAUNCH_CHECK()                \
  do {                                        \
    ::metagrad::cuda::detail::count_launch(); \
    MG_CUDA_CHECK(cudaGetLastError());        \
  } while (0)

namespace metagrad::cuda {

// The error slot of a device (Note [Deferred device errors] in runtime.h): mapped host memory
// that kernels write and the host reads after a wait.
struct DeviceErrorSlot {
  unsigned int raised;  // 0 until a kernel claims the slot
  int site;             // which op (DeviceErrorSite); written last, so nonzero = record complete
  long long value;      // the bad index
  long long bound;      // the size it had to stay below
};
enum DeviceErrorSite : int {
  kSiteGather = 1,
  kSiteScatterAdd = 2,
  kSiteMaxPool2dBackward = 3,
  kSiteCrossEntropy = 4,
};

// The current device's slot as a device pointer, created on first use.
DeviceErrorSlot* device_error_slot();

#ifdef __CUDACC__
// Records the first error of the device; later ones (until the host clears it) are dropped.
// The host may look while a kernel on another stream is still writing (it waited for one
// stream only), so the fields are published in order: value and bound, a system-wide fence,
// then `site`. The host reports a record only once `site` is set.
__device__ __forceinline__ void raise_device_error(DeviceErrorSlot* slot, int site, long long value,
                                                   long long bound) {
  if (atomicCAS(&slot->raised, 0u, 1u) == 0u) {
    volatile DeviceErrorSlot* v = slot;
    v->value = value;
    v->bound = bound;
    __threadfence_system();
    v->site = site;
  }
}
#endif

// The current stream of the current device (Note [Streams] in runtime.h).
inline cudaStream_t stream() {
  return static_cast<cudaStream_t>(current_stream_handle(-1));
}

inline constexpr int kThreads = 256;

// Blocks for `n` work items at `threads` per block, capped (grid-stride loops cover the rest).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  const int64_t cap = int64_t{132} * 32;  // a few waves of an H100's 132 SMs
  return static_cast<unsigned>(b < 1 ? 1 : (b > cap ? cap : b));
}

// Scratch memory from the caching allocator on the current device and stream, returned
// (to the cache, not the driver) when the object dies. Safe to drop right after the launches
// that use it: a later allocation on the same stream runs after them in queue order.
class Workspace {
 public:
  Workspace() = default;
  explicit Workspace(size_t nbytes) : device_(current_device()), stream_(stream()) {
    data_ = device_alloc(device_, nbytes, stream_, &capacity_);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&& o) noexcept { *this = std::move(o); }
  Workspace& operator=(Workspace&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(capacity_, o.capacity_);
    std::swap(device_, o.device_);
    std::swap(stream_, o.stream_);
    return *this;
  }
  ~Workspace() {
    if (data_) device_free(device_, data_, capacity_, stream_);
  }
  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
};

}  // namespace metagrad::cuda
