// The fused CUDA softmax / log_softmax, the twin of kernels/cpu/softmax.cpp: contiguous
// float32/float64 input seen as [outer, n, inner], the softmax over n, the same special values
// (Note [Fused softmax on the CPU]). Each row is read twice (once for its statistics, once to
// write) where the composition x - logsumexp(x) launched five kernels.
//
// Note [CUDA softmax]: a row's statistics are its max m and s = sum exp(x - m), gathered in
// one pass with the online rule of kernels/online.h (Note [Online logsumexp]): a thread keeps
// (m, s) over the elements it visits, the states merge by warp butterfly. Layouts:
//   * a warp per row (inner == 1, n <= kWarpRow): lanes read consecutive elements;
//   * a block per row (inner == 1, longer rows): each warp merges by butterfly, the block's
//     warps are merged from shared memory in warp order by every thread;
//   * a thread per column (inner > 1): consecutive threads take consecutive columns, so each
//     step of the walk over n is a coalesced load (rows far apart with few columns leave the
//     device underused; such softmaxes are rare).
// The layout and the merge order depend on the shapes only: results are deterministic. s is
// kept in double; float32 exps use expf (within 2 ulp of the CPU's exp_f32's 1.5), so float32
// results may differ from the CPU in the last bits, as logsumexp's (kernels/cuda/reduce.cu).
// As on the CPU the exponent's shift is m, or 0 for a row of -inf (online::softmax_finish): a
// row of -inf gives NaN (0 / 0), so does a row holding +inf (inf - inf, as PyTorch's), a -inf
// entry gives -inf (log) or 0, and a NaN spreads over its row.
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/cuda/common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "kernels/online.h"

namespace metagrad::kernels::cuda {

namespace {

using metagrad::cuda::grid_for;
using metagrad::cuda::kThreads;
using metagrad::cuda::stream;

constexpr int kWarp = 32;
constexpr int kWarps = kThreads / kWarp;           // warps per block
constexpr int64_t kWarpRow = 1024;                 // rows up to this long take one warp
constexpr int64_t kMaxBlocks = int64_t{132} * 32;  // a few waves of an H100 (as grid_for)

template <typename T>
using Stats = online::LseState<T>;
template <typename T>
using Final = online::LseFinal<T>;
using online::exp_t;

// A warp per row: this thread's warp among the grid's, and how many there are (rows are taken
// warp, warp + warps, ...; every lane of a warp takes the same row).
__device__ __forceinline__ int64_t warp_index() {
  return (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
}
__device__ __forceinline__ int64_t warp_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
}

template <typename T>
__device__ __forceinline__ Stats<T> warp_merge(Stats<T> a) {
#pragma unroll
  for (int d = kWarp / 2; d > 0; d /= 2) {
    const Stats<T> b{__shfl_xor_sync(0xffffffffu, a.m, d), __shfl_xor_sync(0xffffffffu, a.s, d)};
    a = online::lse_merge(a, b);
  }
  return a;
}

// The statistics of the row xr[0, n), gathered by the lanes of one warp; every lane gets them.
template <typename T>
__device__ __forceinline__ Final<T> warp_row_final(const T* xr, int64_t n, int lane) {
  Stats<T> st = online::lse_init<T>();
  for (int64_t j = lane; j < n; j += kWarp) st = online::lse_step(st, xr[j]);
  return online::softmax_finish(warp_merge(st));
}

template <typename T>
__device__ __forceinline__ T output(bool log, T x, const Final<T>& f) {
  if (log) return static_cast<T>((static_cast<double>(x) - static_cast<double>(f.shift)) - f.log_s);
  return static_cast<T>(static_cast<double>(exp_t<T>(x - f.shift)) / f.s);
}

// A warp per row of n contiguous elements.
template <typename T>
__global__ void softmax_warp_rows(bool log, int64_t rows, int64_t n, const T* __restrict__ x,
                                  T* __restrict__ y) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warp = warp_index(), warps = warp_count();
  for (int64_t r = warp; r < rows; r += warps) {  // the same r for every lane of the warp
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const Final<T> f = warp_row_final(xr, n, lane);
    for (int64_t j = lane; j < n; j += kWarp) yr[j] = output(log, xr[j], f);
  }
}

// A block of kThreads per row of n contiguous elements.
template <typename T>
__global__ void softmax_block_rows(bool log, int64_t rows, int64_t n, const T* __restrict__ x,
                                   T* __restrict__ y) {
  __shared__ T sm[kWarps];
  __shared__ double ss[kWarps];
  const int t = static_cast<int>(threadIdx.x), lane = t % kWarp, w = t / kWarp;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // the same r for the whole block
    const T* xr = x + r * n;
    T* yr = y + r * n;
    Stats<T> st = online::lse_init<T>();
    for (int64_t j = t; j < n; j += kThreads) st = online::lse_step(st, xr[j]);
    st = warp_merge(st);
    if (lane == 0) {
      sm[w] = st.m;
      ss[w] = st.s;
    }
    __syncthreads();
    Stats<T> all{sm[0], ss[0]};
    for (int k = 1; k < kWarps; ++k) all = online::lse_merge(all, Stats<T>{sm[k], ss[k]});
    const Final<T> f = online::softmax_finish(all);
    for (int64_t j = t; j < n; j += kThreads) yr[j] = output(log, xr[j], f);
    __syncthreads();  // the shared slots are read before the next row overwrites them
  }
}

// A thread per column (o, j): element i of its row at x[(o * n + i) * inner + j].
template <typename T>
__global__ void softmax_columns(bool log, int64_t outer, int64_t n, int64_t inner,
                                const T* __restrict__ x, T* __restrict__ y) {
  const int64_t cols = outer * inner;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = c / inner, j = c - o * inner;
    const T* xc = x + o * n * inner + j;
    T* yc = y + o * n * inner + j;
    Stats<T> st = online::lse_init<T>();
    for (int64_t i = 0; i < n; ++i) st = online::lse_step(st, xc[i * inner]);
    const Final<T> f = online::softmax_finish(st);
    for (int64_t i = 0; i < n; ++i) yc[i * inner] = output(log, xc[i * inner], f);
  }
}

// Note [CUDA softmax backward]: the twin of Note [Fused softmax backward] (kernels/cpu/
// softmax.cpp): dx = y (g - sum(g y)), or g - e^y sum(g) after log_softmax, in the forward's
// three layouts; each thread sums its terms in double, the warp by butterfly, a block's warps
// in warp order from shared memory, so the result depends on the shapes only.
template <typename T>
__device__ __forceinline__ double dot_term(bool log, T g, T y) {
  return log ? static_cast<double>(g) : static_cast<double>(g) * static_cast<double>(y);
}
// In T with the sum rounded to T, as the CPU (and the formula in ops) compute it.
template <typename T>
__device__ __forceinline__ T backward_value(bool log, T g, T y, double s) {
  const T st = static_cast<T>(s);
  return log ? g - exp_t<T>(y) * st : y * (g - st);
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int d = kWarp / 2; d > 0; d /= 2) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}

template <typename T>
__global__ void softmax_backward_warp_rows(bool log, int64_t rows, int64_t n,
                                           const T* __restrict__ g, const T* __restrict__ y,
                                           T* __restrict__ dx) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warp = warp_index(), warps = warp_count();
  for (int64_t r = warp; r < rows; r += warps) {  // the same r for every lane of the warp
    const T* gr = g + r * n;
    const T* yr = y + r * n;
    T* dr = dx + r * n;
    double part = 0;
    for (int64_t j = lane; j < n; j += kWarp) part += dot_term(log, gr[j], yr[j]);
    const double s = warp_sum(part);
    for (int64_t j = lane; j < n; j += kWarp) dr[j] = backward_value(log, gr[j], yr[j], s);
  }
}

template <typename T>
__global__ void softmax_backward_block_rows(bool log, int64_t rows, int64_t n,
                                            const T* __restrict__ g, const T* __restrict__ y,
                                            T* __restrict__ dx) {
  __shared__ double sums[kWarps];
  const int t = static_cast<int>(threadIdx.x), lane = t % kWarp, w = t / kWarp;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // the same r for the whole block
    const T* gr = g + r * n;
    const T* yr = y + r * n;
    T* dr = dx + r * n;
    double part = 0;
    for (int64_t j = t; j < n; j += kThreads) part += dot_term(log, gr[j], yr[j]);
    part = warp_sum(part);
    if (lane == 0) sums[w] = part;
    __syncthreads();
    double s = sums[0];
    for (int k = 1; k < kWarps; ++k) s += sums[k];
    for (int64_t j = t; j < n; j += kThreads) dr[j] = backward_value(log, gr[j], yr[j], s);
    __syncthreads();  // the shared slots are read before the next row overwrites them
  }
}

template <typename T>
__global__ void softmax_backward_columns(bool log, int64_t outer, int64_t n, int64_t inner,
                                         const T* __restrict__ g, const T* __restrict__ y,
                                         T* __restrict__ dx) {
  const int64_t cols = outer * inner;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = c / inner, j = c - o * inner, base = o * n * inner + j;
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += dot_term(log, g[base + i * inner], y[base + i * inner]);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t at = base + i * inner;
      dx[at] = backward_value(log, g[at], y[at], s);
    }
  }
}

// Note [CUDA cross-entropy]: the twin of Note [Fused cross-entropy] (kernels/cpu/softmax.cpp):
// a warp per row of logits gathers the row's statistics with the online rule and lane 0 writes
// loss = log s - (x[t] - shift); the backward gathers them again and writes
// dx = exp(x - shift) (g / s), less g at the target, as the CPU does. A target outside [0, n) gives
// a NaN loss (a row of dx without its target term) and is raised at the host's next wait
// (Note [Deferred device errors]).
template <typename T>
__global__ void cross_entropy_forward_kernel(int64_t rows, int64_t n, const T* __restrict__ x,
                                             const int64_t* __restrict__ target,
                                             T* __restrict__ loss,
                                             metagrad::cuda::DeviceErrorSlot* err) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warp = warp_index(), warps = warp_count();
  for (int64_t r = warp; r < rows; r += warps) {
    const T* xr = x + r * n;
    const Final<T> f = warp_row_final(xr, n, lane);
    if (lane == 0) {
      const int64_t t = target[r];
      if (t < 0 || t >= n) {
        metagrad::cuda::raise_device_error(err, metagrad::cuda::kSiteCrossEntropy, t, n);
        loss[r] = std::numeric_limits<T>::quiet_NaN();
      } else {
        loss[r] =
            static_cast<T>(f.log_s - (static_cast<double>(xr[t]) - static_cast<double>(f.shift)));
      }
    }
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(int64_t rows, int64_t n, const T* __restrict__ g,
                                              const T* __restrict__ x,
                                              const int64_t* __restrict__ target,
                                              T* __restrict__ dx,
                                              metagrad::cuda::DeviceErrorSlot* err) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warp = warp_index(), warps = warp_count();
  for (int64_t r = warp; r < rows; r += warps) {
    const T* xr = x + r * n;
    T* dr = dx + r * n;
    const Final<T> f = warp_row_final(xr, n, lane);
    const double gr = static_cast<double>(g[r]), scale = gr / f.s;
    const int64_t t = target[r];
    if (lane == 0 && (t < 0 || t >= n))
      metagrad::cuda::raise_device_error(err, metagrad::cuda::kSiteCrossEntropy, t, n);
    for (int64_t j = lane; j < n; j += kWarp) {
      const double e = static_cast<double>(exp_t<T>(xr[j] - f.shift)) * scale;
      dr[j] = static_cast<T>(j == t ? e - gr : e);
    }
  }
}

unsigned blocks_for(int64_t items) {
  return static_cast<unsigned>(items < 1 ? 1 : (items > kMaxBlocks ? kMaxBlocks : items));
}

}  // namespace

void softmax(DType dtype, bool log, int64_t outer, int64_t n, int64_t inner, const void* x,
             void* y) {
  if (outer * n * inner == 0) return;
  MG_DISPATCH_FLOAT(dtype, [&] {
    const auto* xs = static_cast<const scalar_t*>(x);
    auto* ys = static_cast<scalar_t*>(y);
    if (inner > 1) {
      softmax_columns<scalar_t>
          <<<grid_for(outer * inner), kThreads, 0, stream()>>>(log, outer, n, inner, xs, ys);
    } else if (n <= kWarpRow) {
      softmax_warp_rows<scalar_t>
          <<<blocks_for((outer + kWarps - 1) / kWarps), kThreads, 0, stream()>>>(log, outer, n, xs,
                                                                                 ys);
    } else {
      softmax_block_rows<scalar_t>
          <<<blocks_for(outer), kThreads, 0, stream()>>>(log, outer, n, xs, ys);
    }
    MG_CUDA_LAUNCH_CHECK();
  });
}

void softmax_backward(DType dtype, bool log, int64_t outer, int64_t n, int64_t inner,
                      const void* g, const void* y, void* dx) {
  if (outer * n * inner == 0) return;
  MG_DISPATCH_FLOAT(dtype, [&] {
    const auto* gs = static_cast<const scalar_t*>(g);
    const auto* ys = static_cast<const scalar_t*>(y);
    auto* ds = static_cast<scalar_t*>(dx);
    if (inner > 1) {
      softmax_backward_columns<scalar_t><<<grid_for(outer * inner), kThreads, 0, stream()>>>(
          log, outer, n, inner, gs, ys, ds);
    } else if (n <= kWarpRow) {
      softmax_backward_warp_rows<scalar_t>
          <<<blocks_for((outer + kWarps - 1) / kWarps), kThreads, 0, stream()>>>(log, outer, n, gs,
                                                                                 ys, ds);
    } else {
      softmax_backward_block_rows<scalar_t>
          <<<blocks_for(outer), kThreads, 0, stream()>>>(log, outer, n, gs, ys, ds);
    }
    MG_CUDA_LAUNCH_CHECK();
  });
}

bool cross_entropy_forward(DType dtype, int64_t rows, int64_t n, const void* x,
                           const int64_t* target, void* loss, int64_t* /*bad: deferred*/) {
  if (rows == 0) return true;
  MG_DISPATCH_FLOAT(dtype, [&] {
    cross_entropy_forward_kernel<scalar_t>
        <<<blocks_for((rows + kWarps - 1) / kWarps), kThreads, 0, stream()>>>(
            rows, n, static_cast<const scalar_t*>(x), target, static_cast<scalar_t*>(loss),
            metagrad::cuda::device_error_slot());
    MG_CUDA_LAUNCH_CHECK();
  });
  return true;
}

bool cross_entropy_backward(DType dtype, int64_t rows, int64_t n, const void* g, const void* x,
                            const int64_t* target, void* dx, int64_t* /*bad: deferred*/) {
  if (rows == 0) return true;
  MG_DISPATCH_FLOAT(dtype, [&] {
    cross_entropy_backward_kernel<scalar_t>
        <<<blocks_for((rows + kWarps - 1) / kWarps), kThreads, 0, stream()>>>(
            rows, n, static_cast<const scalar_t*>(g), static_cast<const scalar_t*>(x), target,
            static_cast<scalar_t*>(dx), metagrad::cuda::device_error_slot());
    MG_CUDA_LAUNCH_CHECK();
  });
  return true;
}

}  // namespace metagrad::kernels::cuda
