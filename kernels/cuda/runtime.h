// The CUDA device runtime as the rest of metagrad and its users see it: devices, streams,
// events, synchronisation, the caching device allocator's statistics, and switches (TF32).
// No CUDA header is included here, so this compiles in every build; in a build without CUDA
// (kernels/cpu/no_cuda.cpp) every call that needs a GPU raises
// "[cuda] this build has no CUDA support", and the queries answer "no device".
//
// Note [Streams]: each device has a current stream per host thread, the default (legacy)
// stream unless a StreamGuard says otherwise, as in PyTorch. Every kernel, cuBLAS and cuDNN
// call goes to the current stream and returns at once; the host waits only in item(),
// to(cpu), synchronize() and a few ops that must answer on the host (one_hot inferring its
// class count, the checks that run only on an error path).
//
// Note [Deferred device errors]: a bad argument that only the device sees (an index out of range in
// gather / index_select, scatter_add or max_pool2d_backward) is not checked by a host wait before
// the op, which would stall the queue on every call of the meta-step's hot path. The kernel itself
// finds it, skips the bad element (nothing is read or written out of bounds) and records the first
// one it meets in the device's error slot, a few bytes of mapped host memory; the host raises it as
// metagrad::Error at its next wait on that device (item(), to(cpu), synchronize(), Stream /
// Event::synchronize), naming the op, the bad value and the bound. The slot is per device, not per
// stream: a wait on any stream of the device raises an error recorded by a kernel on another
// (CUDA's own sticky errors are per context, too). The op's outputs are then invalid (scatter_add
// has added the good entries), as after PyTorch's device-side assertions, but the device stays
// usable. The CPU checks first and raises at the op.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/device.h"

namespace metagrad::cuda {

// Throws unless CUDA is compiled in and device `index` exists.
void check_device(const char* op, int index);
int current_device();
void set_device(int index);  // for this host thread, as cudaSetDevice
// Waits for all work on `device` (every stream) to finish.
void synchronize(int device = -1);

// A CUDA stream owned by this object (created non-blocking; destroyed with it), or a
// non-owning handle to the default stream. Opaque: the handle is a cudaStream_t.
class Stream {
 public:
  static Stream create(int device = -1);  // a new stream on `device` (-1: the current one)
  static Stream default_stream(int device = -1);
  Stream() = default;  // the default stream of cuda:0 (default_stream(d) for another)
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;
  ~Stream();

  void* handle() const { return handle_; }
  int device() const { return device_; }
  void synchronize() const;
  bool query() const;  // true when all work queued on it has finished

 private:
  void* handle_ = nullptr;
  int device_ = 0;
  bool owned_ = false;
};

// The stream that kernels launched from this thread on `device` go to.
void* current_stream_handle(int device = -1);

// Makes `s` the current stream of its device for this thread until destroyed.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& s);
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;
  ~StreamGuard();

 private:
  int device_;
  void* previous_;
};

// A CUDA event (timing enabled): record on a stream, wait for it, time between two.
class Event {
 public:
  Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&&) noexcept;
  Event& operator=(Event&&) noexcept;
  ~Event();
  void record(const Stream* s = nullptr);  // on `s`, or the current stream
  void synchronize() const;
  void wait(const Stream& s) const;  // makes `s` wait for this event (no host wait)
  bool query() const;
  float elapsed_ms(const Event& end) const;  // both recorded and finished

 private:
  void* handle_ = nullptr;
  int device_ = 0;
};

// ---- the caching device allocator (kernels/cuda/allocator.cpp) ---------------------------
// Note [CUDA caching allocator]: cudaMalloc and cudaFree synchronise the device and cost
// microseconds to milliseconds, and a meta-step allocates hundreds of activations. Freed
// blocks are kept, binned by size (rounded as the CPU cache rounds, tensor/allocator.h), per
// device and per stream: a block freed on stream s is handed out again only for stream s,
// where queue order makes the reuse safe without any host wait. On out-of-memory the cache
// of that device is released (cudaFree) and the allocation retried once; then an error names
// the requested, allocated and reserved sizes.
struct MemoryStats {
  size_t allocated = 0;       // bytes in live blocks
  size_t reserved = 0;        // bytes obtained from cudaMalloc (live + cached)
  size_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset
  size_t peak_reserved = 0;
  uint64_t alloc_count = 0;   // allocations served
  uint64_t cache_hits = 0;    // of those, served from the cache
  uint64_t cuda_mallocs = 0;  // calls to cudaMalloc
  uint64_t ooms = 0;          // cudaMalloc failures (each followed by a cache release)
};

// A block of at least `nbytes` on `device` for use on `stream` (a cudaStream_t, null for the
// default stream); nbytes == 0 gives nullptr. `capacity` receives the block's real size.
void* device_alloc(int device, size_t nbytes, void* stream, size_t* capacity);
void device_free(int device, void* p, size_t capacity, void* stream);
MemoryStats memory_stats(int device = -1);
void reset_peak_memory_stats(int device = -1);
// Returns every cached block of `device` to the driver (cudaFree).
void empty_cache(int device = -1);
// Caps the bytes this allocator may reserve on `device` (0: no cap). Over the cap an
// allocation first releases the cache, then fails as on out-of-memory; tests use it.
void set_memory_limit(size_t bytes, int device = -1);

// Copies between host and device memory, in the current stream. Host-to-device returns at
// once (the host buffer is staged); device-to-host waits for the stream.
void memcpy_to_device(void* dst, const void* src, size_t nbytes);
void memcpy_to_host(void* dst, const void* src, size_t nbytes);
void memcpy_device_to_device(void* dst, const void* src, size_t nbytes);

// ---- counters (for profiling without a profiler) -------------------------------------------
// How much a piece of code asks of the GPU: kernels launched by metagrad's own kernels (every
// MG_CUDA_LAUNCH_CHECK), cuBLAS / cuDNN operations (each launches one or more kernels of its
// own), and host waits (device-to-host copies: item(), to(cpu), the index checks). Counted
// for all threads and devices together; bench_meta_step reports them per meta-step.
// Raises the error a kernel recorded on `device` (-1: the current one) since the last check,
// if any, and clears it (Note [Deferred device errors]). Every host wait calls it; it reads
// host memory only, so it is free to call at any time.
void check_device_errors(int device = -1);

struct LaunchStats {
  uint64_t kernels = 0;
  uint64_t library_calls = 0;
  uint64_t host_waits = 0;
};
LaunchStats launch_stats();
void reset_launch_stats();

// TF32 tensor-core math in float32 matrix products and convolutions: off by default
// (exactness first), as torch.backends.cuda.matmul.allow_tf32 in recent PyTorch.
void set_allow_tf32(bool on);
bool allow_tf32();

}  // namespace metagrad::cuda
