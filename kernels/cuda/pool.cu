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

// Note [Pooling index width]: the kernels locate an element by dividing its flat index by
// the plane's sizes and find windows by dividing by the stride; in 64-bit integers each
// division is a software routine of dozens of instructions, and the first H100 run had
// avg_pool2d_backward (six such divisions per input element, more per window) at 13% of the
// copy bandwidth. So the kernels are templated on the index type I and run in 32-bit
// integers when every flat index and coordinate fits (small_pool(): elements per tensor below
// 2^30, so that a grid-stride step cannot overflow either, and each size, stride and padding
// below 2^28, so that o * s + k and i + p stay below 2^31), in 64-bit otherwise.
template <typename I>
struct PoolDims {
  I planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
};
template <typename I>
PoolDims<I> dims_as(const Pool2dGeometry& g) {
  return {static_cast<I>(g.planes), static_cast<I>(g.h),  static_cast<I>(g.w),
          static_cast<I>(g.oh),     static_cast<I>(g.ow), static_cast<I>(g.kh),
          static_cast<I>(g.kw),     static_cast<I>(g.sh), static_cast<I>(g.sw),
          static_cast<I>(g.ph),     static_cast<I>(g.pw)};
}
bool small_pool(const Pool2dGeometry& g) {
  constexpr int64_t kElems = int64_t{1} << 30, kSize = int64_t{1} << 28;
  for (const int64_t v : {g.h, g.w, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw})
    if (v < 0 || v >= kSize) return false;
  return g.planes * g.h * g.w < kElems && g.planes * g.oh * g.ow < kElems;
}
// Runs f with the index type of Note [Pooling index width]: f(int32_t{}) or f(int64_t{}).
template <typename F>
void with_index_type(const Pool2dGeometry& g, F&& f) {
  if (small_pool(g))
    f(int32_t{});
  else
    f(int64_t{});
}

// The window of output position o along one dim, as the CPU's window(): [start, end) in
// input coordinates, clipped to the input, and `padded` = its size clipped to the padded input
// (the divisor with count_include_pad).
template <typename I>
struct Window {
  I start, end, padded;
};
template <typename I>
__device__ __forceinline__ Window<I> window(I o, I k, I s, I p, I n) {
  const I lo = o * s - p;
  const I hi_padded = min(lo + k, n + p);
  return {max(lo, I{0}), min(lo + k, n), hi_padded - lo};
}

// Output element e's plane and its window along h and w.
template <typename I>
struct OutputWindow {
  I plane;
  Window<I> h, w;
};
template <typename I>
__device__ __forceinline__ OutputWindow<I> output_window(const PoolDims<I>& g, I e) {
  const I ow = e % g.ow, t = e / g.ow;
  const I oh = t % g.oh;
  return {t / g.oh, window(oh, g.kh, g.sh, g.ph, g.h), window(ow, g.kw, g.sw, g.pw, g.w)};
}

// The divisor of avg pooling for the window pair, as on the CPU (in 64 bits: a window of
// 2^28 x 2^28 pixels is allowed).
template <typename I>
__device__ __forceinline__ int64_t divisor(const Window<I>& wh, const Window<I>& ww,
                                           bool count_include_pad) {
  return count_include_pad
             ? static_cast<int64_t>(wh.padded) * ww.padded
             : static_cast<int64_t>(wh.end - wh.start) * static_cast<int64_t>(ww.end - ww.start);
}

// ---- max_pool2d_forward ------------------------------------------------------------------------

// One thread per output element. The running maximum starts at -inf (the padding) at the
// window's first input position; an element replaces it when larger or NaN (so NaN wins and
// a later NaN moves the index, while ties keep the first position), exactly as the CPU.
template <typename T, typename I>
__global__ void max_forward_kernel(PoolDims<I> g, I n, const T* __restrict__ x, T* __restrict__ y,
                                   int64_t* __restrict__ idx) {
  for (I e = static_cast<I>(thread_id()); e < n; e += static_cast<I>(thread_count())) {
    const OutputWindow<I> ow = output_window(g, e);
    const Window<I>& wh = ow.h;
    const Window<I>& ww = ow.w;
    const T* xp = x + static_cast<int64_t>(ow.plane) * g.h * g.w;
    T best = -std::numeric_limits<T>::infinity();
    I at = wh.start * g.w + ww.start;
    for (I h = wh.start; h < wh.end; ++h)
      for (I w = ww.start; w < ww.end; ++w) {
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
template <typename T, typename I>
__global__ void avg_forward_kernel(PoolDims<I> g, bool count_include_pad, I n,
                                   const T* __restrict__ x, T* __restrict__ y) {
  for (I e = static_cast<I>(thread_id()); e < n; e += static_cast<I>(thread_count())) {
    const OutputWindow<I> ow = output_window(g, e);
    const Window<I>& wh = ow.h;
    const Window<I>& ww = ow.w;
    const T* xp = x + static_cast<int64_t>(ow.plane) * g.h * g.w;
    T s = 0;
    for (I h = wh.start; h < wh.end; ++h)
      for (I w = ww.start; w < ww.end; ++w) s += xp[h * g.w + w];
    y[e] = s / static_cast<T>(divisor(wh, ww, count_include_pad));
  }
}

// The output positions [first, last] along one dim whose windows contain input coordinate i:
// o * s - p <= i < o * s - p + k, clipped to [0, n_out). Empty when first > last.
template <typename I>
__device__ __forceinline__ void windows_containing(I i, I k, I s, I p, I n_out, I* first, I* last) {
  const I a = i + p - k;  // o * s > a
  *first = a < 0 ? 0 : a / s + 1;
  *last = min((i + p) / s, n_out - 1);  // i + p >= 0
}

// One thread per input element (Note [CUDA pooling backward]): the sum of gy / divisor over
// the windows that contain it, in the CPU's (row-major output) order, starting from 0.
template <typename T, typename I>
__global__ void avg_backward_kernel(PoolDims<I> g, bool count_include_pad, I n,
                                    const T* __restrict__ gy, T* __restrict__ gx) {
  for (I j = static_cast<I>(thread_id()); j < n; j += static_cast<I>(thread_count())) {
    const I iw = j % g.w, t = j / g.w;
    const I ih = t % g.h, p = t / g.h;
    I oh0, oh1, ow0, ow1;
    windows_containing(ih, g.kh, g.sh, g.ph, g.oh, &oh0, &oh1);
    windows_containing(iw, g.kw, g.sw, g.pw, g.ow, &ow0, &ow1);
    const T* yp = gy + static_cast<int64_t>(p) * g.oh * g.ow;
    T acc = 0;
    for (I oh = oh0; oh <= oh1; ++oh) {
      const Window<I> wh = window(oh, g.kh, g.sh, g.ph, g.h);
      for (I ow = ow0; ow <= ow1; ++ow) {
        const Window<I> ww = window(ow, g.kw, g.sw, g.pw, g.w);
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
    with_index_type(g, [&](auto i) {
      using I = decltype(i);
      max_forward_kernel<scalar_t, I><<<grid_for(n), kThreads, 0, stream()>>>(
          dims_as<I>(g), static_cast<I>(n), static_cast<const scalar_t*>(x),
          static_cast<scalar_t*>(y), idx);
      MG_CUDA_LAUNCH_CHECK();
    });
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
    with_index_type(g, [&](auto i) {
      using I = decltype(i);
      avg_forward_kernel<scalar_t, I><<<grid_for(n), kThreads, 0, stream()>>>(
          dims_as<I>(g), count_include_pad, static_cast<I>(n), static_cast<const scalar_t*>(x),
          static_cast<scalar_t*>(y));
      MG_CUDA_LAUNCH_CHECK();
    });
  });
}

void avg_pool2d_backward(DType dtype, const Pool2dGeometry& g, bool count_include_pad,
                         const void* gy, void* gx) {
  const int64_t n = g.planes * g.h * g.w;
  if (n == 0) return;
  MG_DISPATCH_FLOAT(dtype, [&] {
    with_index_type(g, [&](auto i) {
      using I = decltype(i);
      avg_backward_kernel<scalar_t, I><<<grid_for(n), kThreads, 0, stream()>>>(
          dims_as<I>(g), count_include_pad, static_cast<I>(n), static_cast<const scalar_t*>(gy),
          static_cast<scalar_t*>(gx));
      MG_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace metagrad::kernels::cuda
