// The cuBLAS handle cache (Note [Library handles] in kernels/cuda/handles.h): one handle per
// device per host thread, created on first use, bound to the current stream at every use (rebound
// only when it changed).
#include "kernels/cuda/handles.h"

#include <map>

namespace metagrad::cuda {

namespace {

// Owns one cuBLAS handle, created on the current device.
class CublasHandle {
 public:
  CublasHandle() { MG_CUBLAS_CHECK(cublasCreate(&handle_)); }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  // Never throws: at exit the CUDA driver may be shut down before this runs.
  ~CublasHandle() {
    if (handle_) (void)cublasDestroy(handle_);
  }
  // The handle, bound to `s`. cublasSetStream is only called when the stream changes: it is
  // not free (driver queries), and every matmul fetches the handle.
  cublasHandle_t on(cudaStream_t s) {
    if (!binding_.is(s)) {
      MG_CUBLAS_CHECK(cublasSetStream(handle_, s));
      binding_.set(s);
    }
    return handle_;
  }

 private:
  cublasHandle_t handle_ = nullptr;
  StreamBinding binding_;
};

}  // namespace

cublasHandle_t cublas_handle() {
  // Per thread, so no lock is needed; keyed by device because a handle belongs to the device
  // that was current when it was created.
  thread_local std::map<int, CublasHandle> handles;
  const int device = current_device();
  const cublasHandle_t h = handles.try_emplace(device).first->second.on(stream());
  detail::count_library_call();  // one per product (the handle is fetched for each)
  return h;
}

}  // namespace metagrad::cuda
