// CUDA random fills: the twin of kernels/cpu/random.cpp, giving the same numbers (Note [Philox
// stream contract] in kernels/philox.h). One thread per Philox block: thread b computes block
// c = offset + b, turns it into its K values with the same philox.h conversions as the CPU,
// and stores them into elements b*K .. b*K+K-1 of the output in row-major order, at offsets
// from the coalesced StridedLayout (so any strides give the same values as a contiguous
// output). randperm is not a sequential shuffle but a stable sort of random 64-bit keys, so it
// runs on the device too, with CUB's stable radix sort (see random_perm).
//
// Note [Bit-identical random fills]: uniforms, randint and bernoulli are exact integer or
// correctly rounded arithmetic on both sides. The one place nvcc could change a result is
// contraction of a * b + c into an FMA; uniform_in and normal_'s mean + std * z go through
// philox::mul_rn / add_rn, which are __fmul_rn / __fadd_rn (__dmul_rn / __dadd_rn) on the
// device and so are never contracted, exactly as the CPU loops call them. The other products
// (w * 2^-24, w * 2^-32, x * 2^-53, and 1 - w * 2^-32 in the normals) multiply by a power of
// two without underflow, so they are exact and an FMA rounds them identically. Normals pass
// through log/cos/sin, which libdevice and glibc may round differently (see the note).
#include <cstdint>

#include <cub/device/device_radix_sort.cuh>

#include "kernels/args.h"
#include "kernels/cuda/common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "kernels/philox.h"
#include "kernels/strided.h"

namespace metagrad::kernels::cuda {

namespace {

using metagrad::cuda::grid_for;
using metagrad::cuda::kThreads;
using metagrad::cuda::stream;
using metagrad::cuda::Workspace;
using philox::Block;

// Element offsets (one per operand) of row-major element i: index arithmetic when the coalesced
// layout has at most one dimension (strides[k][0] is 0 when ndim == 0), as the CPU's flat path.
template <int N>
__device__ __forceinline__ void offsets_of(const StridedLayout<N>& L, int64_t i, int64_t off[N]) {
  if (L.ndim <= 1) {
    for (int k = 0; k < N; ++k) off[k] = i * L.strides[k][0];
  } else {
    L.offsets(i, off);
  }
}

// Draw::K values of type Draw::T from block number c = offset + b, for every b of the draw;
// value j of block b goes to row-major element b*K + j.
template <typename Draw>
__global__ void fill_kernel(StridedLayout<1> L, typename Draw::T* out, uint64_t seed,
                            uint64_t offset, const Draw draw) {
  constexpr int K = Draw::K;
  const int64_t n = L.numel;
  const int64_t nblocks = (n + K - 1) / K;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < nblocks;
       b += stride) {
    typename Draw::T v[K];
    draw(philox::block(seed, offset + static_cast<uint64_t>(b)), v);
    const int64_t i0 = b * K;
    const int jn = n - i0 < K ? static_cast<int>(n - i0) : K;
#pragma unroll  // constant indices keep v in registers
    for (int j = 0; j < K; ++j)
      if (j < jn) {
        int64_t off[1];
        offsets_of(L, i0 + j, off);
        out[off[0]] = v[j];
      }
  }
}

// ---- the draws: each the body of the CPU's generator lambda --------------------------------

struct UniformF32 {
  using T = float;
  static constexpr int K = 4;
  float lo, hi;
  __device__ void operator()(const Block& b, float v[K]) const {
    for (int j = 0; j < K; ++j) v[j] = philox::uniform_in(philox::to_float01(b.w[j]), lo, hi);
  }
};

struct UniformF64 {
  using T = double;
  static constexpr int K = 2;
  double lo, hi;
  __device__ void operator()(const Block& b, double v[K]) const {
    for (int j = 0; j < K; ++j)
      v[j] = philox::uniform_in(philox::to_double01(b.w[2 * j], b.w[2 * j + 1]), lo, hi);
  }
};

struct NormalF32 {
  using T = float;
  static constexpr int K = 4;
  double mean, std;
  __device__ void operator()(const Block& b, float v[K]) const {
    double z[4];
    philox::normals4_32(b, z);
    for (int j = 0; j < K; ++j)
      v[j] = static_cast<float>(philox::add_rn(mean, philox::mul_rn(std, z[j])));
  }
};

struct NormalF64 {
  using T = double;
  static constexpr int K = 2;
  double mean, std;
  __device__ void operator()(const Block& b, double v[K]) const {
    double z[2];
    philox::normals2_53(b, z);
    for (int j = 0; j < K; ++j) v[j] = philox::add_rn(mean, philox::mul_rn(std, z[j]));
  }
};

// low + r computed modulo 2^64 (base = low as uint64), so the full int64 range cannot overflow.
template <typename Out>
struct RandInt32 {  // range <= 2^32: one word per element
  using T = Out;
  static constexpr int K = 4;
  uint64_t base, range;
  __device__ void operator()(const Block& b, Out v[K]) const {
    for (int j = 0; j < K; ++j)
      v[j] = static_cast<Out>(static_cast<int64_t>(base + b.w[j] % range));
  }
};

template <typename Out>
struct RandInt64 {  // range > 2^32: two words per element
  using T = Out;
  static constexpr int K = 2;
  uint64_t base, range;
  __device__ void operator()(const Block& b, Out v[K]) const {
    for (int j = 0; j < K; ++j) {
      const uint64_t x = (static_cast<uint64_t>(b.w[2 * j + 1]) << 32) | b.w[2 * j];
      v[j] = static_cast<Out>(static_cast<int64_t>(base + x % range));
    }
  }
};

template <typename Out>
struct Bernoulli {
  using T = Out;
  static constexpr int K = static_cast<int>(philox::kBernoulliPerBlock);
  double p;
  __device__ void operator()(const Block& b, Out v[K]) const {
    for (int j = 0; j < K; ++j) v[j] = static_cast<Out>(philox::to_double01_32(b.w[j]) < p);
  }
};

template <typename Draw>
void launch_fill(Extent e, Operand out, uint64_t seed, uint64_t offset, const Draw& draw) {
  const auto L = StridedLayout<1>::make(e.rank, e.shape, {out.strides});
  if (L.numel == 0) return;
  const int64_t nblocks = (L.numel + Draw::K - 1) / Draw::K;
  fill_kernel<Draw><<<grid_for(nblocks), kThreads, 0, stream()>>>(
      L, static_cast<typename Draw::T*>(out.data), seed, offset, draw);
  MG_CUDA_LAUNCH_CHECK();
}

// bernoulli with a tensor of probabilities (same dtype as out): as the CPU, every element is
// written, and `bad` is set when some p is outside [0, 1] or NaN.
template <typename T>
__global__ void bernoulli_tensor_kernel(StridedLayout<2> L, T* out, const T* p, uint64_t seed,
                                        uint64_t offset, int* bad) {
  constexpr int K = static_cast<int>(philox::kBernoulliPerBlock);
  const int64_t n = L.numel;
  const int64_t nblocks = (n + K - 1) / K;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < nblocks;
       b += stride) {
    const Block w = philox::block(seed, offset + static_cast<uint64_t>(b));
    const int64_t i0 = b * K;
    const int jn = n - i0 < K ? static_cast<int>(n - i0) : K;
#pragma unroll  // constant indices keep w in registers
    for (int j = 0; j < K; ++j) {
      if (j >= jn) break;
      int64_t off[2];
      offsets_of(L, i0 + j, off);
      const double pi = static_cast<double>(p[off[1]]);
      if (!(pi >= 0.0 && pi <= 1.0)) *bad = 1;  // every writer stores the same value
      out[off[0]] = static_cast<T>(philox::to_double01_32(w.w[j]) < pi);
    }
  }
}

// randperm's sort keys: element i gets key (w[2j+1] << 32) | w[2j] of block offset + i / 2,
// j = i % 2, and its own index as the value that the sort carries along.
__global__ void perm_keys_kernel(int64_t n, uint64_t seed, uint64_t offset, uint64_t* keys,
                                 int64_t* idx) {
  constexpr int K = static_cast<int>(philox::kRandpermPerBlock);
  const int64_t nblocks = (n + K - 1) / K;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < nblocks;
       b += stride) {
    const Block w = philox::block(seed, offset + static_cast<uint64_t>(b));
    for (int j = 0; j < K && b * K + j < n; ++j) {
      const int64_t i = b * K + j;
      keys[i] = (static_cast<uint64_t>(w.w[2 * j + 1]) << 32) | w.w[2 * j];
      idx[i] = i;
    }
  }
}

}  // namespace

void random_uniform(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, double from,
                    double to) {
  if (dtype == DType::Float32)
    launch_fill(e, out, seed, offset, UniformF32{static_cast<float>(from), static_cast<float>(to)});
  else if (dtype == DType::Float64)
    launch_fill(e, out, seed, offset, UniformF64{from, to});
}

void random_normal(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, double mean,
                   double std) {
  if (dtype == DType::Float32)
    launch_fill(e, out, seed, offset, NormalF32{mean, std});
  else if (dtype == DType::Float64)
    launch_fill(e, out, seed, offset, NormalF64{mean, std});
}

void random_int(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, int64_t low,
                uint64_t range) {
  const uint64_t base = static_cast<uint64_t>(low);
  MG_DISPATCH_ALL(dtype, [&] {
    if (philox::randint_per_block(range) == 4)
      launch_fill(e, out, seed, offset, RandInt32<scalar_t>{base, range});
    else
      launch_fill(e, out, seed, offset, RandInt64<scalar_t>{base, range});
  });
}

void random_bernoulli(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset,
                      double p) {
  MG_DISPATCH_ALL(dtype, [&] { launch_fill(e, out, seed, offset, Bernoulli<scalar_t>{p}); });
}

bool random_bernoulli_tensor(DType dtype, Extent e, Operand out, Operand p, uint64_t seed,
                             uint64_t offset) {
  const auto L = StridedLayout<2>::make(e.rank, e.shape, {out.strides, p.strides});
  if (L.numel == 0) return true;
  Workspace flag(sizeof(int));
  MG_CUDA_CHECK(cudaMemsetAsync(flag.data(), 0, sizeof(int), stream()));
  const int64_t nblocks = (L.numel + philox::kBernoulliPerBlock - 1) / philox::kBernoulliPerBlock;
  MG_DISPATCH_FLOAT(dtype, [&] {
    using T = scalar_t;
    bernoulli_tensor_kernel<T><<<grid_for(nblocks), kThreads, 0, stream()>>>(
        L, static_cast<T*>(out.data), static_cast<const T*>(p.data), seed, offset, flag.as<int>());
    MG_CUDA_LAUNCH_CHECK();
  });
  int bad = 0;
  metagrad::cuda::memcpy_to_host(&bad, flag.data(), sizeof(int));  // waits for the stream
  return bad == 0;
}

// The CPU sorts (key, index) pairs, i.e. a stable sort by key with ties in index order. CUB's
// radix sort is stable, so sorting the keys with the indices 0..n-1 as values gives the same
// permutation without a round trip through the host.
void random_perm(int64_t n, int64_t* out, uint64_t seed, uint64_t offset) {
  if (n <= 0) return;
  const size_t bytes = static_cast<size_t>(n) * sizeof(uint64_t);
  Workspace keys_in(bytes), keys_out(bytes), idx_in(static_cast<size_t>(n) * sizeof(int64_t));
  const int64_t nblocks = (n + philox::kRandpermPerBlock - 1) / philox::kRandpermPerBlock;
  perm_keys_kernel<<<grid_for(nblocks), kThreads, 0, stream()>>>(
      n, seed, offset, keys_in.as<uint64_t>(), idx_in.as<int64_t>());
  MG_CUDA_LAUNCH_CHECK();
  size_t temp_bytes = 0;
  MG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in.as<uint64_t>(),
                                                keys_out.as<uint64_t>(), idx_in.as<int64_t>(), out,
                                                n, 0, 64, stream()));
  // A null temp pointer would turn the second call into another size query.
  Workspace temp(temp_bytes > 0 ? temp_bytes : 1);
  MG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data(), temp_bytes, keys_in.as<uint64_t>(),
                                                keys_out.as<uint64_t>(), idx_in.as<int64_t>(), out,
                                                n, 0, 64, stream()));
}

}  // namespace metagrad::kernels::cuda
