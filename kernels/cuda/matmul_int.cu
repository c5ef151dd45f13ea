// The integer batched matrix product (kernels/cuda/matmul_int.h): one 16 x 16 tile of C per
// block, A and B staged through shared memory 16 columns / rows at a time, operands read
// through their strides (broadcast batches have stride 0 and are never materialised).
// Arithmetic wraps modulo 2^bits, as kernels/cpu/matmul.cpp's integer path: products and sums
// are taken in an unsigned type of at least the dtype's width (wrap-around is defined there),
// and the low bits are the two's-complement result.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.h"
#include "kernels/cuda/matmul_int.h"
#include "kernels/strided.h"

namespace metagrad::kernels::cuda {

namespace {

constexpr int kTile = 16;            // a block is kTile x kTile threads, one per element of C
constexpr int64_t kMaxGrid = 65535;  // the y and z grid limits (x is capped too, for symmetry)

// The unsigned accumulator of each dtype. uint8 sums in 32 bits: the result modulo 2^8 is the
// same, and 32-bit arithmetic is native on the GPU.
template <typename T>
struct Accumulator;
template <>
struct Accumulator<uint8_t> {
  using type = uint32_t;
};
template <>
struct Accumulator<int32_t> {
  using type = uint32_t;
};
template <>
struct Accumulator<int64_t> {
  using type = uint64_t;
};

struct IntMatmulArgs {
  StridedLayout<2> batch;  // the batch dims, coalesced; operands 0 = A, 1 = B
  int64_t batches;         // matrices in C
  int64_t m, n, k;
  int64_t a_rs, a_cs, b_rs, b_cs;
  int64_t tiles_m, tiles_n;
};

// Grid-stride loops over (batch, tile row, tile column): the grid is capped at kMaxGrid per
// dimension. Every bound depends on blockIdx only, so all threads of a block take the same
// iterations and reach each __syncthreads together.
template <typename T>
__global__ void matmul_int_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                  T* __restrict__ c, IntMatmulArgs g) {
  using U = typename Accumulator<T>::type;
  __shared__ U as[kTile][kTile];  // as[i][p] = A(i0 + i, p0 + p)
  __shared__ U bs[kTile][kTile];  // bs[p][j] = B(p0 + p, j0 + j)
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t z = blockIdx.z; z < g.batches; z += gridDim.z) {
    int64_t off[2];
    g.batch.offsets(z, off);
    const T* az = a + off[0];
    const T* bz = b + off[1];
    T* cz = c + z * g.m * g.n;
    for (int64_t tm = blockIdx.y; tm < g.tiles_m; tm += gridDim.y) {
      for (int64_t tn = blockIdx.x; tn < g.tiles_n; tn += gridDim.x) {
        const int64_t i = tm * kTile + ty, j = tn * kTile + tx;
        U acc = 0;
        for (int64_t p0 = 0; p0 < g.k; p0 += kTile) {
          const int64_t pa = p0 + tx, pb = p0 + ty;  // A's column, B's row loaded by this thread
          as[ty][tx] = i < g.m && pa < g.k ? static_cast<U>(az[i * g.a_rs + pa * g.a_cs]) : U(0);
          bs[ty][tx] = pb < g.k && j < g.n ? static_cast<U>(bz[pb * g.b_rs + j * g.b_cs]) : U(0);
          __syncthreads();
#pragma unroll
          for (int p = 0; p < kTile; ++p) acc += as[ty][p] * bs[p][tx];
          __syncthreads();  // the tiles are overwritten next step
        }
        if (i < g.m && j < g.n) cz[i * g.n + j] = static_cast<T>(acc);  // modulo 2^bits
      }
    }
  }
}

template <typename T>
void launch(const IntMatmulArgs& g, const void* a, const void* b, void* c) {
  const dim3 block(kTile, kTile);
  const dim3 grid(static_cast<unsigned>(std::min(g.tiles_n, kMaxGrid)),
                  static_cast<unsigned>(std::min(g.tiles_m, kMaxGrid)),
                  static_cast<unsigned>(std::min(g.batches, kMaxGrid)));
  matmul_int_kernel<T><<<grid, block, 0, ::metagrad::cuda::stream()>>>(
      static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(c), g);
  MG_CUDA_LAUNCH_CHECK();
}

}  // namespace

void matmul_int(DType dtype, const MatmulShape& s, MatrixOperand a, MatrixOperand b, void* c) {
  MG_CHECK(s.batch_rank >= 0 && s.batch_rank <= kMaxDims, "matmul", "batch rank ", s.batch_rank,
           " exceeds ", kMaxDims);
  IntMatmulArgs g;
  g.batch = StridedLayout<2>::make(s.batch_rank, s.batch_shape, {a.batch_strides, b.batch_strides});
  g.batches = g.batch.numel;
  if (g.batches == 0) return;  // an empty batch: nothing to write
  g.m = s.m;
  g.n = s.n;
  g.k = s.k;
  g.a_rs = a.rs;
  g.a_cs = a.cs;
  g.b_rs = b.rs;
  g.b_cs = b.cs;
  g.tiles_m = (s.m + kTile - 1) / kTile;
  g.tiles_n = (s.n + kTile - 1) / kTile;
  switch (dtype) {
    case DType::UInt8:
      return launch<uint8_t>(g, a.data, b.data, c);
    case DType::Int32:
      return launch<int32_t>(g, a.data, b.data, c);
    case DType::Int64:
      return launch<int64_t>(g, a.data, b.data, c);
    default:
      ::metagrad::detail::fail("matmul", "integer product of dtype ", dtype_name(dtype),
                               " is not supported");
  }
}

}  // namespace metagrad::kernels::cuda
