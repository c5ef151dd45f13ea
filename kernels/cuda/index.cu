// The CUDA indexing kernels: index range checks, index min/max, gather (also index_select),
// scatter_add, one_hot and pad. The twin of kernels/cpu/index.cpp, with the same results: the
// same first bad index, the same garbage-but-in-bounds reads in a failing gather, and
// scatter_add summing each element of self in the same order as the CPU (no atomics), so its
// results are deterministic and bitwise equal to the CPU's.
//
// Every kernel is one thread per element (or per scatter_add column) in a grid-stride loop;
// operands are addressed through the coalesced StridedLayout the CPU uses. gather and
// scatter_add check their indices on the device and report a bad one at the host's next wait
// (Note [Deferred device errors] in runtime.h), so neither stalls the queue. The checks that
// return an answer to the host (find_index_out_of_range, index_min_max, used by one_hot and on
// error paths) synchronise the current stream to read it back.
#include <climits>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/args.h"
#include "kernels/cuda/common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "kernels/error.h"
#include "kernels/strided.h"

namespace metagrad::kernels::cuda {

namespace {

using metagrad::cuda::grid_for;
using metagrad::cuda::kThreads;
using metagrad::cuda::stream;
using metagrad::cuda::Workspace;

// Elements that are only moved are moved as unsigned words of their size.
template <size_t Size>
struct WordOf;
template <>
struct WordOf<1> {
  using type = uint8_t;
};
template <>
struct WordOf<4> {
  using type = uint32_t;
};
template <>
struct WordOf<8> {
  using type = uint64_t;
};

__device__ __forceinline__ int64_t thread_id() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// v outside [0, bound) (bound >= 0), as the CPU's out_of_range: one unsigned comparison.
__host__ __device__ __forceinline__ bool out_of_range(int64_t v, int64_t bound) {
  return static_cast<uint64_t>(v) >= static_cast<uint64_t>(bound);
}

// Offsets of element `i` (row-major) for every operand; a 1-d layout (the common case after
// coalescing) skips the division.
template <int N>
__device__ __forceinline__ void offsets_of(const StridedLayout<N>& L, int64_t i, int64_t* off) {
  if (L.ndim == 1) {
    for (int k = 0; k < N; ++k) off[k] = i * L.strides[k][0];
  } else {
    L.offsets(i, off);
  }
}

// int64 <-> uint64 keeping the order, so that unsigned atomicMin / atomicMax order signed values.
__host__ __device__ __forceinline__ unsigned long long order_key(int64_t v) {
  return static_cast<unsigned long long>(v) ^ (1ULL << 63);
}
__host__ __device__ __forceinline__ int64_t from_order_key(unsigned long long u) {
  return static_cast<int64_t>(u ^ (1ULL << 63));
}

// ---- find_index_out_of_range ---------------------------------------------------------------

// *first = the smallest row-major position holding a value outside [0, bound). A thread visits
// its positions in increasing order, so its first hit is its smallest.
template <typename I>
__global__ void first_out_of_range_kernel(StridedLayout<1> L, const I* __restrict__ index,
                                          int64_t bound, unsigned long long* first) {
  for (int64_t i = thread_id(); i < L.numel; i += thread_count()) {
    int64_t off;
    offsets_of(L, i, &off);
    if (out_of_range(static_cast<int64_t>(index[off]), bound)) {
      atomicMin(first, static_cast<unsigned long long>(i));
      return;
    }
  }
}

template <typename I>
bool find_out_of_range_impl(Extent e, Operand index, int64_t bound, int64_t* bad) {
  const auto L = StridedLayout<1>::make(e.rank, e.shape, {index.strides});
  if (L.numel == 0) return false;
  const I* base = static_cast<const I*>(index.data);
  Workspace ws(sizeof(unsigned long long));
  auto* first = ws.as<unsigned long long>();
  MG_CUDA_CHECK(cudaMemsetAsync(first, 0xff, sizeof(unsigned long long), stream()));  // "none"
  first_out_of_range_kernel<I><<<grid_for(L.numel), kThreads, 0, stream()>>>(L, base, bound, first);
  MG_CUDA_LAUNCH_CHECK();
  unsigned long long pos = 0;
  metagrad::cuda::memcpy_to_host(&pos, first, sizeof(pos));  // waits for the stream
  if (pos == ULLONG_MAX) return false;
  int64_t off = 0;
  L.offsets(static_cast<int64_t>(pos), &off);
  I v{};
  metagrad::cuda::memcpy_to_host(&v, base + off, sizeof(I));
  *bad = static_cast<int64_t>(v);
  return true;
}

// ---- index_min_max ---------------------------------------------------------------------------

// mm[0] = min, mm[1] = max, as order keys. Each thread reduces its positions, each warp merges
// by shuffles, and lane 0 updates the result atomically (integer min/max: any order is exact).
template <typename I>
__global__ void min_max_kernel(StridedLayout<1> L, const I* __restrict__ index,
                               unsigned long long* mm) {
  unsigned long long lo = ULLONG_MAX, hi = 0;
  for (int64_t i = thread_id(); i < L.numel; i += thread_count()) {
    int64_t off;
    offsets_of(L, i, &off);
    const unsigned long long k = order_key(static_cast<int64_t>(index[off]));
    lo = k < lo ? k : lo;
    hi = k > hi ? k : hi;
  }
  // Every thread of the block gets here (no early exit), so full-mask shuffles are safe.
  for (int s = 16; s > 0; s >>= 1) {
    const unsigned long long olo = __shfl_down_sync(0xffffffffu, lo, s);
    const unsigned long long ohi = __shfl_down_sync(0xffffffffu, hi, s);
    lo = olo < lo ? olo : lo;
    hi = ohi > hi ? ohi : hi;
  }
  if ((threadIdx.x & 31) == 0) {
    atomicMin(&mm[0], lo);
    atomicMax(&mm[1], hi);
  }
}

template <typename I>
void min_max_impl(Extent e, Operand index, int64_t* mn, int64_t* mx) {
  const auto L = StridedLayout<1>::make(e.rank, e.shape, {index.strides});
  if (L.numel == 0) {  // as the CPU: the identities of min and max
    *mn = INT64_MAX;
    *mx = INT64_MIN;
    return;
  }
  Workspace ws(2 * sizeof(unsigned long long));
  auto* mm = ws.as<unsigned long long>();
  MG_CUDA_CHECK(cudaMemsetAsync(mm, 0xff, sizeof(unsigned long long), stream()));   // min: top
  MG_CUDA_CHECK(cudaMemsetAsync(mm + 1, 0, sizeof(unsigned long long), stream()));  // max: bottom
  min_max_kernel<I>
      <<<grid_for(L.numel), kThreads, 0, stream()>>>(L, static_cast<const I*>(index.data), mm);
  MG_CUDA_LAUNCH_CHECK();
  unsigned long long h[2] = {};
  metagrad::cuda::memcpy_to_host(h, mm, sizeof(h));  // waits for the stream
  *mn = from_order_key(h[0]);
  *mx = from_order_key(h[1]);
}

// ---- gather ----------------------------------------------------------------------------------

// Operands 0 = out, 1 = src (stride of dim zeroed), 2 = index. A bad index reads element 0 of
// its row (in bounds: size > 0) and is recorded in the device's error slot, which the host
// raises at its next wait (Note [Deferred device errors]).
template <typename W, typename I>
__global__ void gather_kernel(StridedLayout<3> L, W* __restrict__ out, const W* __restrict__ src,
                              const I* __restrict__ index, int64_t src_dim_stride, int64_t size,
                              metagrad::cuda::DeviceErrorSlot* err) {
  for (int64_t i = thread_id(); i < L.numel; i += thread_count()) {
    int64_t off[3];
    offsets_of(L, i, off);
    const int64_t v = static_cast<int64_t>(index[off[2]]);
    const bool b = out_of_range(v, size);
    out[off[0]] = src[off[1] + (b ? 0 : v) * src_dim_stride];
    if (b) metagrad::cuda::raise_device_error(err, metagrad::cuda::kSiteGather, v, size);
  }
}

// False only when every index must be out of range (size 0); a bad index among good ones is
// reported at the next wait instead.
template <typename W, typename I>
bool gather_impl(Extent e, Operand out, Operand src, Operand index, int64_t sd, int64_t size) {
  const auto L = StridedLayout<3>::make(e.rank, e.shape, {out.strides, src.strides, index.strides});
  if (L.numel == 0) return true;
  if (size == 0) return false;  // every index is out of range, and src has nothing to read
  gather_kernel<W, I><<<grid_for(L.numel), kThreads, 0, stream()>>>(
      L, static_cast<W*>(out.data), static_cast<const W*>(src.data),
      static_cast<const I*>(index.data), sd, size, metagrad::cuda::device_error_slot());
  MG_CUDA_LAUNCH_CHECK();
  return true;
}

// ---- scatter_add -----------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ T add(T a, T b) {
  if constexpr (std::is_same_v<T, bool>) {
    return a || b;  // bool "+" is "or", as in PyTorch
  } else {
    return static_cast<T>(a + b);
  }
}

// One thread per position of the index shape with `dim` collapsed (operands 0 = self,
// 1 = index, 2 = src); it runs over the K entries along `dim` in order, exactly as the CPU.
// Two threads never write the same element of self (their positions differ outside `dim`),
// so no atomics are needed and every element sums in the CPU's order. An index outside
// [0, size) is skipped and recorded (Note [Deferred device errors]).
template <typename T, typename I>
__global__ void scatter_add_kernel(StridedLayout<3> L, T* __restrict__ self,
                                   const I* __restrict__ index, const T* __restrict__ src,
                                   int64_t K, int64_t ik, int64_t sk, int64_t self_dim_stride,
                                   int64_t size, metagrad::cuda::DeviceErrorSlot* err) {
  for (int64_t i = thread_id(); i < L.numel; i += thread_count()) {
    int64_t off[3];
    offsets_of(L, i, off);
    T* o = self + off[0];
    const I* ix = index + off[1];
    const T* s = src + off[2];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t v = static_cast<int64_t>(ix[k * ik]);
      if (out_of_range(v, size)) {
        metagrad::cuda::raise_device_error(err, metagrad::cuda::kSiteScatterAdd, v, size);
        continue;
      }
      T& d = o[v * self_dim_stride];
      d = add(d, s[k * sk]);
    }
  }
}

template <typename T, typename I>
void scatter_add_impl(Extent e, int dim, Operand self, Operand index, Operand src, int64_t sd,
                      int64_t size) {
  int64_t shape[kMaxDims] = {};
  for (int d = 0; d < e.rank; ++d) shape[d] = e.shape[d];
  const int64_t K = shape[dim];
  shape[dim] = 1;  // dropped by the coalescing, strides and all
  if (K == 0) return;
  const auto L = StridedLayout<3>::make(e.rank, shape, {self.strides, index.strides, src.strides});
  if (L.numel == 0) return;
  scatter_add_kernel<T, I><<<grid_for(L.numel), kThreads, 0, stream()>>>(
      L, static_cast<T*>(self.data), static_cast<const I*>(index.data),
      static_cast<const T*>(src.data), K, index.strides[dim], src.strides[dim], sd, size,
      metagrad::cuda::device_error_slot());
  MG_CUDA_LAUNCH_CHECK();
}

// ---- one_hot -----------------------------------------------------------------------------------

template <typename I>
__global__ void one_hot_kernel(int64_t n, const I* __restrict__ labels, int64_t* __restrict__ out,
                               int64_t num_classes) {
  for (int64_t i = thread_id(); i < n; i += thread_count())
    out[i * num_classes + static_cast<int64_t>(labels[i])] = 1;
}

// ---- pad ---------------------------------------------------------------------------------------

struct PadArgs {
  int rank;
  int64_t numel;
  int64_t shape[kMaxDims];        // of the output (contiguous)
  int64_t src_strides[kMaxDims];  // in elements
  int64_t map_at[kMaxDims];       // where dim d's map starts in `maps`
};

// out[o] = src[map_0[o_0], ..., map_{r-1}[o_{r-1}]], or `value` where any map entry is -1.
// Elements are moved as words of their size (the fill value arrives as the same bits).
template <typename W>
__global__ void pad_kernel(PadArgs a, W* __restrict__ out, const W* __restrict__ src,
                           const int64_t* __restrict__ maps, W value) {
  for (int64_t o = thread_id(); o < a.numel; o += thread_count()) {
    int64_t r = o, soff = 0;
    bool inside = true;
    for (int d = a.rank - 1; d >= 0; --d) {
      const int64_t c = r % a.shape[d];
      r /= a.shape[d];
      const int64_t m = maps[a.map_at[d] + c];
      inside = inside && m >= 0;
      soff += m * a.src_strides[d];
    }
    out[o] = inside ? src[soff] : value;
  }
}

}  // namespace

bool find_index_out_of_range(DType index_t, Extent e, Operand index, int64_t bound, int64_t* bad) {
  return MG_DISPATCH_INDEX("find_index_out_of_range", index_t,
                           [&] { return find_out_of_range_impl<scalar_t>(e, index, bound, bad); });
}

void index_min_max(DType index_t, Extent e, Operand index, int64_t* mn, int64_t* mx) {
  MG_DISPATCH_INDEX("index_min_max", index_t, [&] { min_max_impl<scalar_t>(e, index, mn, mx); });
}

bool gather(size_t elem_size, DType index_t, Extent e, Operand out, Operand src, Operand index,
            int64_t src_dim_stride, int64_t dim_size) {
  return MG_DISPATCH_BY_SIZE("gather", elem_size, [&] {
    return MG_DISPATCH_INDEX("gather", index_t, [&] {
      return gather_impl<word_t, scalar_t>(e, out, src, index, src_dim_stride, dim_size);
    });
  });
}

void scatter_add(DType dtype, DType index_t, Extent e, int dim, Operand self, Operand index,
                 Operand src, int64_t self_dim_stride, int64_t self_dim_size) {
  MG_DISPATCH_INDEX("scatter_add", index_t, [&] {
    using I = scalar_t;
    MG_DISPATCH_ALL(dtype, [&] {
      scatter_add_impl<scalar_t, I>(e, dim, self, index, src, self_dim_stride, self_dim_size);
    });
  });
}

void one_hot(DType label_t, int64_t n, const void* labels, int64_t* out, int64_t num_classes) {
  if (n == 0) return;
  MG_DISPATCH_INDEX("one_hot", label_t, [&] {
    one_hot_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream()>>>(
        n, static_cast<const scalar_t*>(labels), out, num_classes);
    MG_CUDA_LAUNCH_CHECK();
  });
}

void pad(DType dtype, int rank, const int64_t* out_shape, void* out, const void* src,
         const int64_t* src_strides, const int64_t* maps, double value) {
  if (rank == 0) {  // a single element, copied
    metagrad::cuda::memcpy_device_to_device(out, src, dtype_size(dtype));
    return;
  }
  PadArgs a{};
  a.rank = rank;
  a.numel = 1;
  int64_t total = 0;  // entries in `maps`
  for (int d = 0; d < rank; ++d) {
    a.shape[d] = out_shape[d];
    a.src_strides[d] = src_strides[d];
    a.map_at[d] = total;
    a.numel *= out_shape[d];
    total += out_shape[d];
  }
  if (a.numel == 0) return;
  // The maps live in host memory (built by the tensor layer); the copy is staged by the driver
  // and ordered before the kernel in the stream.
  Workspace map_ws(static_cast<size_t>(total) * sizeof(int64_t));
  metagrad::cuda::memcpy_to_device(map_ws.data(), maps,
                                   static_cast<size_t>(total) * sizeof(int64_t));
  MG_DISPATCH_ALL(dtype, [&] {
    scalar_t v;
    if constexpr (std::is_same_v<scalar_t, bool>) {
      v = value != 0;
    } else {
      v = static_cast<scalar_t>(value);
    }
    using W = typename WordOf<sizeof(scalar_t)>::type;
    W bits;
    std::memcpy(&bits, &v, sizeof(W));
    pad_kernel<W><<<grid_for(a.numel), kThreads, 0, stream()>>>(
        a, static_cast<W*>(out), static_cast<const W*>(src), map_ws.as<const int64_t>(), bits);
    MG_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace metagrad::kernels::cuda
