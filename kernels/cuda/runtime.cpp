// The CUDA device runtime (kernels/cuda/runtime.h): devices, the per-thread current stream,
// streams and events as RAII objects, host<->device copies, the TF32 switch, and the error
// path every MG_CUDA_CHECK ends in. A CUDA build on a machine without a GPU answers "no
// device" to the queries and raises a clear error when a device is asked for (DESIGN
// principle 7).
#include <cuda_runtime.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "kernels/cuda/common.h"
#include "kernels/device.h"

namespace metagrad {

int cuda_device_count() {
  static const int n = [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky "no device" error
      return 0;
    }
    return count;
  }();
  return n;
}

bool cuda_is_available() {
  return cuda_device_count() > 0;
}

namespace cuda {

namespace {
std::atomic<uint64_t> g_kernels{0}, g_library_calls{0}, g_host_waits{0};
std::atomic<uint64_t> g_streams_destroyed{0};
}  // namespace

namespace detail {
void count_launch() {
  g_kernels.fetch_add(1, std::memory_order_relaxed);
}
void count_library_call() {
  g_library_calls.fetch_add(1, std::memory_order_relaxed);
}
uint64_t stream_epoch() {
  return g_streams_destroyed.load(std::memory_order_acquire);
}
void fail_call(const char* call, const char* error, const char* file, int line) {
  ::metagrad::detail::fail("cuda", call, " failed: ", error, " (", file, ":", line, ")");
}
}  // namespace detail

void check_device(const char* op, int index) {
  const int n = cuda_device_count();
  MG_CHECK(n > 0, op, "CUDA was asked for (cuda:", index,
           ") but no CUDA device is visible on this machine; use the CPU");
  MG_CHECK(index >= 0 && index < n, op, "device cuda:", index, " does not exist (", n, " device",
           n == 1 ? "" : "s", " visible)");
}

int current_device() {
  int d = 0;
  MG_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

void set_device(int index) {
  check_device("set_device", index);
  MG_CUDA_CHECK(cudaSetDevice(index));
}

namespace {

int resolve(int device) {
  return device < 0 ? current_device() : device;
}

// Switches the current device for the lifetime of the object and back (RAII).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    MG_CUDA_CHECK(cudaGetDevice(&previous_));
    if (device != previous_) MG_CUDA_CHECK(cudaSetDevice(device));
    changed_ = device != previous_;
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  ~DeviceScope() {
    if (changed_) (void)cudaSetDevice(previous_);  // a destructor never throws
  }

 private:
  int previous_ = 0;
  bool changed_ = false;
};

// ---- deferred device errors (Note [Deferred device errors] in runtime.h) -------------------

// One slot of mapped, pinned host memory per device, made on first use and kept for the
// process (the unique_ptr frees it at exit, ignoring a driver already shut down).
class ErrorSlots {
 public:
  struct Slot {
    DeviceErrorSlot* host = nullptr;
    DeviceErrorSlot* device = nullptr;
  };

  Slot get(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(device);
    if (it != slots_.end()) return it->second.slot;
    void* h = nullptr;
    MG_CUDA_CHECK(
        cudaHostAlloc(&h, sizeof(DeviceErrorSlot), cudaHostAllocMapped | cudaHostAllocPortable));
    Owned owned;
    owned.memory.reset(h);
    std::memset(h, 0, sizeof(DeviceErrorSlot));
    void* d = nullptr;
    MG_CUDA_CHECK(cudaHostGetDevicePointer(&d, h, 0));
    owned.slot = {static_cast<DeviceErrorSlot*>(h), static_cast<DeviceErrorSlot*>(d)};
    return slots_.emplace(device, std::move(owned)).first->second.slot;
  }

  DeviceErrorSlot* host_if_made(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(device);
    return it == slots_.end() ? nullptr : it->second.slot.host;
  }

 private:
  struct FreeHost {
    void operator()(void* p) const { (void)cudaFreeHost(p); }
  };
  struct Owned {
    std::unique_ptr<void, FreeHost> memory;
    Slot slot;
  };
  std::mutex mu_;
  std::map<int, Owned> slots_;
};

ErrorSlots& error_slots() {
  static ErrorSlots slots;
  return slots;
}

// Note [Streams]: the current stream per host thread and device; null is the default stream.
constexpr int kMaxDevices = 64;
thread_local void* t_current[kMaxDevices] = {};

std::atomic<bool> g_allow_tf32{false};

}  // namespace

void synchronize(int device) {
  const int d = resolve(device);
  DeviceScope scope(d);
  MG_CUDA_CHECK(cudaDeviceSynchronize());
  check_device_errors(d);
}

DeviceErrorSlot* device_error_slot() {
  // Cached per host thread, so that a launch takes no lock.
  thread_local DeviceErrorSlot* cached[kMaxDevices] = {};
  const int d = current_device();
  MG_CHECK(d < kMaxDevices, "cuda", "device index ", d, " is beyond ", kMaxDevices);
  if (!cached[d]) cached[d] = error_slots().get(d).device;
  return cached[d];
}

void check_device_errors(int device) {
  if (cuda_device_count() == 0) return;
  const int d = resolve(device);
  volatile DeviceErrorSlot* s = error_slots().host_if_made(d);
  if (s == nullptr || s->raised == 0) return;
  // Claimed but not yet complete: a kernel on a stream this wait did not cover is writing it
  // (raise_device_error publishes `site` last). Left for the next wait.
  const int site = s->site;
  if (site == 0) return;
  std::atomic_thread_fence(std::memory_order_acquire);
  const long long value = s->value, bound = s->bound;
  s->site = 0;
  s->raised = 0;  // reported once; the device goes on
  // e.g. "[gather] index 7 is out of bounds for a dimension of size 5 (in gather or
  // index_select, found on cuda:0 by a kernel queued before this wait; ...)"
  const char* found = " found on cuda:";
  const char* invalid = " by a kernel queued before this wait; the op's outputs are invalid)";
  switch (site) {
    case kSiteGather:
      ::metagrad::detail::fail("gather", "index ", value,
                               " is out of bounds for a dimension of size ", bound,
                               " (in gather or index_select,", found, d, invalid);
    case kSiteScatterAdd:
      ::metagrad::detail::fail("scatter_add", "index ", value,
                               " is out of bounds for a dimension of size ", bound, " (", found + 1,
                               d,
                               " by a kernel queued before this wait; the entries with good "
                               "indices were added)");
    case kSiteMaxPool2dBackward:
      ::metagrad::detail::fail("max_pool2d_backward", "index ", value,
                               " is out of range for an input plane of ", bound, " elements (",
                               found + 1, d, invalid);
    case kSiteCrossEntropy:
      ::metagrad::detail::fail(
          "cross_entropy", "target ", value, " is out of bounds for ", bound,
          " classes (labels lie in [0, ", bound, "));", found, d,
          " by a kernel queued before this wait; that sample's loss is NaN (or its "
          "gradient lacks the target's term)");
    default:
      ::metagrad::detail::fail("cuda", "a kernel recorded an unknown error (site ", site,
                               ", value ", value, ") on cuda:", d);
  }
}

void* current_stream_handle(int device) {
  const int d = resolve(device);
  MG_CHECK(d < kMaxDevices, "cuda", "device index ", d, " is beyond ", kMaxDevices);
  return t_current[d];
}

// ---- Stream ------------------------------------------------------------------------

Stream Stream::create(int device) {
  Stream s;
  s.device_ = resolve(device);
  check_device("Stream", s.device_);
  DeviceScope scope(s.device_);
  cudaStream_t h = nullptr;
  MG_CUDA_CHECK(cudaStreamCreateWithFlags(&h, cudaStreamNonBlocking));
  s.handle_ = h;
  s.owned_ = true;
  return s;
}

Stream Stream::default_stream(int device) {
  Stream s;
  s.device_ = resolve(device);
  return s;
}

Stream::Stream(Stream&& o) noexcept {
  *this = std::move(o);
}

Stream& Stream::operator=(Stream&& o) noexcept {
  std::swap(handle_, o.handle_);
  std::swap(device_, o.device_);
  std::swap(owned_, o.owned_);
  return *this;
}

Stream::~Stream() {
  // Wait first: the caching allocator files freed blocks under the stream's handle, and the
  // driver may give the same handle to a new stream, which must not get a block that work
  // still queued here is using.
  if (owned_ && handle_) {
    (void)cudaStreamSynchronize(static_cast<cudaStream_t>(handle_));
    (void)cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
    // After the destroy: a handle that reads the new epoch and rebinds may then meet this
    // address again only as a new stream's.
    g_streams_destroyed.fetch_add(1, std::memory_order_release);
  }
}

// A default stream's handle is null, which CUDA reads as the *current* device's default
// stream: every call on a stream or event first makes its device current (DeviceScope).
void Stream::synchronize() const {
  DeviceScope scope(device_);
  MG_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)));
  check_device_errors(device_);
}

bool Stream::query() const {
  DeviceScope scope(device_);
  const cudaError_t e = cudaStreamQuery(static_cast<cudaStream_t>(handle_));
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  MG_CUDA_CHECK(e);
  return true;
}

StreamGuard::StreamGuard(const Stream& s) : device_(s.device()) {
  MG_CHECK(device_ < kMaxDevices, "StreamGuard", "device index ", device_, " is beyond ",
           kMaxDevices);
  previous_ = t_current[device_];
  t_current[device_] = s.handle();
}

StreamGuard::~StreamGuard() {
  t_current[device_] = previous_;
}

// ---- Event -------------------------------------------------------------------------

Event::Event() {
  device_ = current_device();
  cudaEvent_t e = nullptr;
  MG_CUDA_CHECK(cudaEventCreate(&e));
  handle_ = e;
}

Event::Event(Event&& o) noexcept {
  *this = std::move(o);
}

Event& Event::operator=(Event&& o) noexcept {
  std::swap(handle_, o.handle_);
  std::swap(device_, o.device_);
  return *this;
}

Event::~Event() {
  if (handle_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(handle_));
}

void Event::record(const Stream* s) {
  MG_CHECK(!s || s->device() == device_, "Event", "an event of cuda:", device_,
           " cannot record a stream of cuda:", s->device());
  DeviceScope scope(device_);
  void* h = s ? s->handle() : current_stream_handle(device_);
  MG_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(handle_), static_cast<cudaStream_t>(h)));
}

void Event::synchronize() const {
  DeviceScope scope(device_);
  MG_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(handle_)));
  check_device_errors(device_);
}

void Event::wait(const Stream& s) const {
  DeviceScope scope(s.device());
  MG_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(s.handle()),
                                    static_cast<cudaEvent_t>(handle_), 0));
}

bool Event::query() const {
  DeviceScope scope(device_);
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(handle_));
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  MG_CUDA_CHECK(e);
  return true;
}

float Event::elapsed_ms(const Event& end) const {
  float ms = 0;
  MG_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(handle_),
                                     static_cast<cudaEvent_t>(end.handle_)));
  return ms;
}

// ---- copies ------------------------------------------------------------------------

void memcpy_to_device(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  // From pageable host memory the driver stages the bytes before returning, so the caller
  // may free `src` at once; the device-side write is ordered in the current stream.
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream()));
}

void memcpy_to_host(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  g_host_waits.fetch_add(1, std::memory_order_relaxed);
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream()));
  MG_CUDA_CHECK(cudaStreamSynchronize(stream()));
  check_device_errors();
}

void memcpy_device_to_device(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream()));
}

LaunchStats launch_stats() {
  return {g_kernels.load(), g_library_calls.load(), g_host_waits.load()};
}

void reset_launch_stats() {
  g_kernels = 0;
  g_library_calls = 0;
  g_host_waits = 0;
}

void set_allow_tf32(bool on) {
  g_allow_tf32.store(on);
}
bool allow_tf32() {
  return g_allow_tf32.load();
}

}  // namespace cuda
}  // namespace metagrad
