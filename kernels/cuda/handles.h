// The vendor-library plumbing of kernels/cuda/: the cuBLAS handle of the current device and
// host thread, and the checked-call macros MG_CUBLAS_CHECK and MG_CUDNN_CHECK (the cuBLAS and
// cuDNN twins of MG_CUDA_CHECK in common.h). cuDNN itself (its header, its handle, every call)
// lives in kernels/cuda/conv.cpp alone, so that a move to its graph API stays in one file;
// MG_CUDNN_CHECK is defined here without <cudnn.h> and expands only where that header is seen.
#pragma once
#include <cublas_v2.h>

#include "kernels/cuda/common.h"

// A failing cuBLAS call raises metagrad::Error naming the call, cuBLAS's status string and
// file:line (DESIGN principle 8).
#define MG_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                        \
    const cublasStatus_t mg_status_ = (call);                                                 \
    if (mg_status_ != CUBLAS_STATUS_SUCCESS)                                                  \
      ::metagrad::cuda::detail::fail_call(#call, cublasGetStatusString(mg_status_), __FILE__, \
                                          __LINE__);                                          \
  } while (0)

// Likewise for cuDNN (needs <cudnn.h> where it is used: kernels/cuda/conv.cpp).
#define MG_CUDNN_CHECK(call)                                                                \
  do {                                                                                      \
    const cudnnStatus_t mg_status_ = (call);                                                \
    if (mg_status_ != CUDNN_STATUS_SUCCESS)                                                 \
      ::metagrad::cuda::detail::fail_call(#call, cudnnGetErrorString(mg_status_), __FILE__, \
                                          __LINE__);                                        \
  } while (0)

namespace metagrad::cuda {

// Note [Library handles]: a cuBLAS (or cuDNN) handle must not be used by two host threads at
// once, and creating one costs milliseconds, so each host thread keeps one handle per device,
// created on first use and destroyed when the thread ends (errors ignored: at process exit
// the driver may already be gone). The stream is not part of the key: at every use the
// handle is bound to the current stream (Note [Streams] in runtime.h), so streams may change
// freely between calls. The handle remembers the stream it was bound to and calls
// cublasSetStream / cudnnSetStream only when it changes: those calls query the driver (about
// 2.5 us each for cuDNN, as NVIDIA measured), and every product and convolution fetches a
// handle.
//
// The stream a library handle was last bound to (null is a valid stream, hence `bound_`).
// A stream is known by its address and the stream epoch (detail::stream_epoch(), bumped when
// an owned stream is destroyed): the driver may give a destroyed stream's address to a new
// one, and a handle still bound to the old stream must be rebound (cuBLAS keeps per-stream
// state such as its workspace). Streams are destroyed rarely, so the epoch seldom moves and
// the check stays two comparisons.
class StreamBinding {
 public:
  bool is(cudaStream_t s) const {
    return bound_ && s == stream_ && epoch_ == detail::stream_epoch();
  }
  void set(cudaStream_t s) {
    stream_ = s;
    epoch_ = detail::stream_epoch();
    bound_ = true;
  }

 private:
  cudaStream_t stream_ = nullptr;
  uint64_t epoch_ = 0;
  bool bound_ = false;
};

// The handle of the current device for this thread, bound to the current stream. Valid until
// the thread ends; use it at once rather than keeping it across a stream change.
cublasHandle_t cublas_handle();

}  // namespace metagrad::cuda
