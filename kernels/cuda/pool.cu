// The CUDA pooling kernels (NCHW, contiguous, float32/float64): max and average pooling and
// their backward ops, the twin of kernels/cpu/pool.cpp with bitwise the same results. The
// forward kernels run one thread per output element, visiting its window in the CPU's
// row-major order with the same comparisons and sums. The backward kernels use no atomics,
// so their results are deterministic and each input element sums its contributions in the
// order the CPU adds them (Note [CUDA pooling backward]).
//
// Note [CUDA pooling backward]: the CPU zeroes gx and, output by output in row-major order,
// adds each contribution to its input element. On the GPU:
//   * avg_pool2d_backward is a gather: one thread per input element walks the outputs whose
//     windows contain it, in row-major order, and sums gy / divisor.
//   * max_pool2d_backward cannot do that: it receives only planes, h, w, oh and ow (the
//     window sizes are not part of its arguments, and its indices may point anywhere in the
//     plane). One warp takes a plane and walks its outputs 32 at a time; within a group of
//     32, lanes whose indices coincide are found with __match_any_sync and the lowest of them
//     adds the group's gy values in lane order. So every input element receives its
//     contributions one at a time in output order, exactly as on the CPU.
#include <cstdint>
#include <limits>

#include "kernels/args.h"
#include "kernels/cuda/common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"

namespace metagrad::kernels::cuda {

namespace {

using metagrad::cuda::grid_for;
using metagrad::cuda::kThreads;
using metagrad::cuda::stream;

__device__ __forceinline__ int64_t thread_id() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// The window of output position o along one dim, as the CPU's window(): [start, end) in
// input coordinates, clipped to the input, and `padded` = its size clipped to the padded input
// (the divisor with count_include_pad).
struct Window {
  int64_t start, end, padded;
};
__device__ __forceinline__ Window window(int64_t o, int64_t k, int64_t s, int64_t p, int64_t n) {
  const int64_t lo = o * s - p;
  const int64_t hi_padded = min(lo + k, n + p);
  return {max(lo, int64_t{0}), min(lo + k, n), hi_padded - lo};
}

// The divisor of avg pooling for the window pair, as on the CPU.
__device__ __forceinline__ int64_t divisor(const Window& wh, const Window& ww,
                                           bool count_include_pad) {
  return count_include_pad ? wh.padded * ww.padded : (wh.end - wh.start) * (ww.end - ww.start);
}

// ---- max_pool2d_forward ------------------------------------------------------------------------

// One thread per output element. The running maximum starts at -inf (the padding) at the
// window's first input position; an element replaces it when larger or NaN (so NaN wins and
// a later NaN moves the index, while ties keep the first position), exactly as the CPU.
template <typename T>
__global__ void max_forward_kernel(Pool2dGeometry g, int64_t n, const T* __restrict__ x,
                                   T* __restrict__ y, int64_t* __restrict__ idx) {
  for (int64_t e = thread_id(); e < n; e += thread_count()) {
    const int64_t ow = e % g.ow, t = e / g.ow;
    const int64_t oh = t % g.oh, p = t / g.oh;
    const Window wh = window(oh, g.kh, g.sh, g.ph, g.h);
    const Window ww = window(ow, g.kw, g.sw, g.pw, g.w);
    const T* xp = x + p * g.h * g.w;
    T best = -std::numeric_limits<T>::infinity();
    int64_t at = wh.start * g.w + ww.start;
    for (int64_t h = wh.start; h < wh.end; ++h)
      for (int64_t w = ww.start; w < ww.end; ++w) {
        const T v = xp[h * g.w + w];
        if (v > best || v != v) {
          best = v;
          at = h * g.w + w;
        }
      }
    y[e] = best;
    idx[e] = at;
  }
}

// ---- max_pool2d_backward -----------------------------------------------------------------------

// One warp per plane (Note [CUDA pooling backward]); gx is already zeroed. An index outside
// [0, in) is skipped and recorded (Note [Deferred device errors] in runtime.h). The loop bounds
// depend on the plane only, so the whole warp runs every iteration and the full-mask ballot
// and __syncwarp are safe.
template <typename T>
__global__ void max_backward_kernel(int64_t planes, int64_t in, int64_t out,
                                    const T* __restrict__ gy, const int64_t* __restrict__ idx,
                                    T* __restrict__ gx, metagrad::cuda::DeviceErrorSlot* err) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int64_t warp = thread_id() >> 5, warps = thread_count() >> 5;
  for (int64_t p = warp; p < planes; p += warps) {
    T* gp = gx + p * in;
    const T* yp = gy + p * out;
    const int64_t* ip = idx + p * out;
    for (int64_t base = 0; base < out; base += 32) {
      const int64_t e = base + lane;
      const int64_t i = e < out ? ip[e] : 0;
      const bool ok = e < out && i >= 0 && i < in;
      if (e < out && !ok)
        metagrad::cuda::raise_device_error(err, metagrad::cuda::kSiteMaxPool2dBackward, i, in);
      const unsigned good = __ballot_sync(0xffffffffu, ok);
      if (ok) {
        const unsigned same = __match_any_sync(good, static_cast<unsigned long long>(i));
        if (lane == __ffs(static_cast<int>(same)) - 1) {  // the group's lowest lane adds, in order
          T acc = gp[i];
          for (unsigned m = same; m != 0; m &= m - 1)
            acc += yp[base + __ffs(static_cast<int>(m)) - 1];
          gp[i] = acc;
        }
      }
      __syncwarp();  // this group's writes are seen by the next group's readers
    }
  }
}

// ---- avg_pool2d --------------------------------------------------------------------------------

// One thread per output element: the window's sum in row-major order, divided once.
template <typename T>
__global__ void avg_forward_kernel(Pool2dGeometry g, bool count_include_pad, int64_t n,
                                   const T* __restrict__ x, T* __restrict__ y) {
  for (int64_t e = thread_id(); e < n; e += thread_count()) {
    const int64_t ow = e % g.ow, t = e / g.ow;
    const int64_t oh = t % g.oh, p = t / g.oh;
    const Window wh = window(oh, g.kh, g.sh, g.ph, g.h);
    const Window ww = window(ow, g.kw, g.sw, g.pw, g.w);
    const T* xp = x + p * g.h * g.w;
    T s = 0;
    for (int64_t h = wh.start; h < wh.end; ++h)
      for (int64_t w = ww.start; w < ww.end; ++w) s += xp[h * g.w + w];
    y[e] = s / static_cast<T>(divisor(wh, ww, count_include_pad));
  }
}

// The output positions [first, last] along one dim whose windows contain input coordinate i:
// o * s - p <= i < o * s - p + k, clipped to [0, n_out). Empty when first > last.
__device__ __forceinline__ void windows_containing(int64_t i, int64_t k, int64_t s, int64_t p,
                                                   int64_t n_out, int64_t* first, int64_t* last) {
  const int64_t a = i + p - k;  // o * s > a
  *first = a < 0 ? 0 : a / s + 1;
  *last = min((i + p) / s, n_out - 1);  // i + p >= 0
}

// One thread per input element (Note [CUDA pooling backward]): the sum of gy / divisor over
// the windows that contain it, in the CPU's (row-major output) order, starting from 0.
template <typename T>
__global__ void avg_backward_kernel(Pool2dGeometry g, bool count_include_pad, int64_t n,
                                    const T* __restrict__ gy, T* __restrict__ gx) {
  for (int64_t j = thread_id(); j < n; j += thread_count()) {
    const int64_t iw = j % g.w, t = j / g.w;
    const int64_t ih = t % g.h, p = t / g.h;
    int64_t oh0, oh1, ow0, ow1;
    windows_containing(ih, g.kh, g.sh, g.ph, g.oh, &oh0, &oh1);
    windows_containing(iw, g.kw, g.sw, g.pw, g.ow, &ow0, &ow1);
    const T* yp = gy + p * g.oh * g.ow;
    T acc = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      const Window wh = window(oh, g.kh, g.sh, g.ph, g.h);
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const Window ww = window(ow, g.kw, g.sw, g.pw, g.w);
        acc += yp[oh * g.ow + ow] / static_cast<T>(divisor(wh, ww, count_include_pad));
      }
    }
    gx[j] = acc;
  }
}

}  // namespace

void max_pool2d_forward(DType dtype, const Pool2dGeometry& g, const void* x, void* y,
                        int64_t* idx) {
  const int64_t n = g.planes * g.oh * g.ow;
  if (n == 0) return;
  MG_DISPATCH_FLOAT(dtype, [&] {
    max_forward_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream()>>>(
        g, n, static_cast<const scalar_t*>(x), static_cast<scalar_t*>(y), idx);
    MG_CUDA_LAUNCH_CHECK();
  });
}

bool max_pool2d_backward(DType dtype, const Pool2dGeometry& g, const void* gy, const int64_t* idx,
                         void* gx, int64_t* /*bad: raised at the next wait instead*/) {
  const int64_t n = g.planes * g.oh * g.ow, in = g.h * g.w;
  MG_DISPATCH_FLOAT(dtype, [&] {
    const int64_t bytes = g.planes * in * static_cast<int64_t>(sizeof(scalar_t));
    MG_CUDA_CHECK(cudaMemsetAsync(gx, 0, static_cast<size_t>(bytes), stream()));  // +0.0 bits
    if (n == 0) return;
    max_backward_kernel<scalar_t><<<grid_for(g.planes * 32), kThreads, 0, stream()>>>(
        g.planes, in, g.oh * g.ow, static_cast<const scalar_t*>(gy), idx,
        static_cast<scalar_t*>(gx), metagrad::cuda::device_error_slot());
    MG_CUDA_LAUNCH_CHECK();
  });
  return true;
}

void avg_pool2d_forward(DType dtype, const Pool2dGeometry& g, bool count_include_pad, const void* x,
                        void* y) {
  const int64_t n = g.planes * g.oh * g.ow;
  if (n == 0) return;
  MG_DISPATCH_FLOAT(dtype, [&] {
    avg_forward_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream()>>>(
        g, count_include_pad, n, static_cast<const scalar_t*>(x), static_cast<scalar_t*>(y));
    MG_CUDA_LAUNCH_CHECK();
  });
}

void avg_pool2d_backward(DType dtype, const Pool2dGeometry& g, bool count_include_pad,
                         const void* gy, void* gx) {
  const int64_t n = g.planes * g.h * g.w;
  if (n == 0) return;
  MG_DISPATCH_FLOAT(dtype, [&] {
    avg_backward_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream()>>>(
        g, count_include_pad, n, static_cast<const scalar_t*>(gy), static_cast<scalar_t*>(gx));
    MG_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace metagrad::kernels::cuda
