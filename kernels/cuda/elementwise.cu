// The CUDA elementwise kernels: unary and binary ops, where(), dtype-converting copy and fill.
// The twin of kernels/cpu/unary.cpp, binary.cpp, ternary.cpp and copy.cpp: the same dtype
// dispatch, the same scalar functors (kernels/functors.h) and the same coalesced layout
// (kernels/strided.h); only the indexing and the launch are GPU-specific.
//
// Note [CUDA elementwise paths]: one kernel per (functor, types) and path, the path chosen on
// the host from the coalesced layout, after exchanging its two inner dims when that puts the
// output's unit stride innermost (any visiting order gives the same result):
//   * vector: every operand's innermost stride is 1, or 0 for an input broadcast along it, the
//     innermost extent is a multiple of V (or the layout is 1-D, whose last numel % V elements
//     take the strided path), and every unit-stride operand is aligned to its pack at every
//     row start. A thread then handles V elements, V = 16 / (widest element): the widest
//     operand moves as one 16-byte load or store, narrower ones as smaller aligned packs, an
//     operand broadcast along the innermost dim is read once per pack. Contiguous ops, scalar
//     operands and row broadcasts ([n, m] + [m]) all take it.
//   * tiled: an input read through a transpose (transposed_inner, Note [Transposed pieces] in
//     kernels/strided.h) would be read a 32-byte sector per element along the innermost dim.
//     A block takes 32 x 32 tiles of the two inner dims; each transposed input is first copied
//     into shared memory with its own unit-stride dim across the warp (coalesced), then read
//     from there transposed (the row of 33 elements keeps the banks apart), so every global
//     access of the tile is coalesced.
//   * strided: any layout; each element finds its operands' offsets from its linear index by
//     a division per coalesced dimension done as a multiplication (DividedLayout, Note
//     [Division by multiplication]), or as i * stride when the layout is 1-D.
// All are grid-stride loops with 64-bit indices. In-place ops pass the same pointer as
// output and input, so no pointer is __restrict__.
#include <cstdint>
#include <type_traits>
#include <utility>

#include "kernels/args.h"
#include "kernels/cuda/common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "kernels/error.h"
#include "kernels/functors.h"
#include "kernels/strided.h"

namespace metagrad::kernels::cuda {

namespace {

using metagrad::cuda::grid_for;
using metagrad::cuda::kThreads;
using metagrad::cuda::stream;

// The most inputs an elementwise op has (where: cond, a, b).
constexpr int kMaxInputs = 3;

struct Inputs {
  const void* p[kMaxInputs];
};

// V elements of T as one aligned unit, so that a load or store of it is a single vector
// instruction (V * sizeof(T) is a power of two, at most 16).
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename... Ts>
constexpr size_t max_size() {
  size_t m = 1;
  ((m = sizeof(Ts) > m ? sizeof(Ts) : m), ...);
  return m;
}

// Elements per thread on the vector path: the widest operand moves 16 bytes.
template <typename Out, typename... In>
constexpr int kVec = static_cast<int>(16 / max_size<Out, In...>());

// The offsets of element i of every operand.
template <int N>
__device__ __forceinline__ void offsets_of(const DividedLayout<N>& L, int64_t i, int64_t* off) {
  if (L.ndim <= 1) {
    // One dimension needs no division; with none, every stride is 0 (the single element).
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = i * L.strides[k][0];
  } else {
    L.offsets(i, off);
  }
}

// True when operand k is broadcast along the innermost dim (stride 0), or has no dim at all.
template <int N>
__device__ __forceinline__ bool inner_broadcast(const DividedLayout<N>& L, int k) {
  return L.ndim == 0 || L.strides[k][L.ndim - 1] == 0;
}

// V elements of an input from p on the vector path: a pack, or p[0] repeated.
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p, bool broadcast) {
  Pack<T, V> r;
  if (broadcast) {
    const T x = p[0];
#pragma unroll
    for (int j = 0; j < V; ++j) r.v[j] = x;
  } else {
    r = *reinterpret_cast<const Pack<T, V>*>(p);
  }
  return r;
}

template <int V, typename Out, typename F, typename... P>
__device__ __forceinline__ void apply_packs(const F& f, Pack<Out, V>& o, const P&... packs) {
#pragma unroll
  for (int j = 0; j < V; ++j) o.v[j] = static_cast<Out>(f(packs.v[j]...));
}

// Pack number v (elements v * V ... v * V + V - 1, all in one innermost run).
template <int V, typename Out, typename... In, typename F, size_t... I>
__device__ __forceinline__ void vector_step(const DividedLayout<1 + sizeof...(In)>& L, Out* out,
                                            const Inputs& in, const F& f, int64_t v,
                                            std::index_sequence<I...>) {
  int64_t off[1 + sizeof...(In)];
  offsets_of(L, v * V, off);
  Pack<Out, V> o;
  apply_packs<V>(
      f, o,
      load_pack<In, V>(static_cast<const In*>(in.p[I]) + off[I + 1], inner_broadcast(L, I + 1))...);
  *reinterpret_cast<Pack<Out, V>*>(out + off[0]) = o;
}

// Element number i (row-major over the layout's shape), any layout.
template <typename Out, typename... In, typename F, size_t... I>
__device__ __forceinline__ void element_step(const DividedLayout<1 + sizeof...(In)>& L, Out* out,
                                             const Inputs& in, const F& f, int64_t i,
                                             std::index_sequence<I...>) {
  int64_t off[1 + sizeof...(In)];
  offsets_of(L, i, off);
  out[off[0]] = static_cast<Out>(f(static_cast<const In*>(in.p[I])[off[I + 1]]...));
}

// out = f(in...) over L (operand 0 is the output): the vector and strided paths.
template <typename Out, typename F, typename... In>
__global__ void __launch_bounds__(kThreads)
    elementwise_kernel(DividedLayout<1 + sizeof...(In)> L, Out* out, Inputs in, F f, bool vec) {
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t tail = 0;  // first element left to the element path
  if (vec) {
    constexpr int V = kVec<Out, In...>;
    const int64_t packs = L.numel / V;
    for (int64_t v = start; v < packs; v += step)
      vector_step<V, Out, In...>(L, out, in, f, v, std::index_sequence_for<In...>{});
    tail = packs * V;
  }
  for (int64_t i = tail + start; i < L.numel; i += step)
    element_step<Out, In...>(L, out, in, f, i, std::index_sequence_for<In...>{});
}

// ---- the tiled path ---------------------------------------------------------------------------

constexpr int kTile = 32;  // a tile is kTile x kTile elements of the inner dims
constexpr int kTileRowsPerPass = kThreads / kTile;  // the block covers 8 tile rows at a time
constexpr int kTilePitch = kTile + 1;               // shared-memory row length: no bank conflicts

// Where a tile's operands are: the plane's first element of each, and the inner dims.
template <int N>
struct TileSpot {
  int64_t base[N];
  int64_t r0, c0, rows, cols;
};

// Copies input k's part of the tile into shared memory as tile[col][row], with consecutive
// threads on consecutive rows: the input's unit-stride dim, so the warp's reads coalesce.
template <typename T, int N>
__device__ __forceinline__ void stage(const DividedLayout<N>& L, const TileSpot<N>& t, int k,
                                      const T* p, T* tile) {
  const int a = L.ndim - 2, b = L.ndim - 1;
  const int lr = static_cast<int>(threadIdx.x) % kTile;
  const int64_t r = t.r0 + lr;
  for (int lc = static_cast<int>(threadIdx.x) / kTile; lc < kTile; lc += kTileRowsPerPass) {
    const int64_t c = t.c0 + lc;
    if (r < t.rows && c < t.cols)
      tile[lc * kTilePitch + lr] = p[t.base[k] + r * L.strides[k][a] + c * L.strides[k][b]];
  }
}

template <typename T, int N>
__device__ __forceinline__ T tile_read(const DividedLayout<N>& L, const TileSpot<N>& t, int k,
                                       const T* p, const T* tile, bool staged, int lr, int lc) {
  if (staged) return tile[lc * kTilePitch + lr];
  const int a = L.ndim - 2, b = L.ndim - 1;
  return p[t.base[k] + (t.r0 + lr) * L.strides[k][a] + (t.c0 + lc) * L.strides[k][b]];
}

template <typename Out, typename... In, typename F, size_t... I>
__device__ __forceinline__ void tile_step(const DividedLayout<1 + sizeof...(In)>& L, Out* out,
                                          const Inputs& in, const F& f, unsigned staged,
                                          const TileSpot<1 + sizeof...(In)>& t,
                                          unsigned char (*smem)[kTile * kTilePitch * 8],
                                          std::index_sequence<I...>) {
  ((staged >> I & 1u
        ? stage<In>(L, t, I + 1, static_cast<const In*>(in.p[I]), reinterpret_cast<In*>(smem[I]))
        : void()),
   ...);
  __syncthreads();
  const int a = L.ndim - 2, b = L.ndim - 1;
  const int lc = static_cast<int>(threadIdx.x) % kTile;  // consecutive threads, the output's row
  for (int lr = static_cast<int>(threadIdx.x) / kTile; lr < kTile; lr += kTileRowsPerPass) {
    if (t.r0 + lr < t.rows && t.c0 + lc < t.cols)
      out[t.base[0] + (t.r0 + lr) * L.strides[0][a] + (t.c0 + lc) * L.strides[0][b]] =
          static_cast<Out>(f(tile_read<In>(L, t, I + 1, static_cast<const In*>(in.p[I]),
                                           reinterpret_cast<const In*>(smem[I]),
                                           (staged >> I & 1u) != 0, lr, lc)...));
  }
  __syncthreads();  // the tile is read before the next one overwrites it
}

// out = f(in...) over L (ndim >= 2) in tiles of the two inner dims; bit k of `staged` says
// input k goes through shared memory. Items are (plane, tile row, tile column).
template <typename Out, typename F, typename... In>
__global__ void __launch_bounds__(kThreads)
    tiled_kernel(DividedLayout<1 + sizeof...(In)> L, Out* out, Inputs in, F f, unsigned staged,
                 int64_t row_tiles, int64_t col_tiles) {
  // 8 bytes per element whatever the types: one shared array for every instantiation.
  __shared__ alignas(16) unsigned char smem[sizeof...(In)][kTile * kTilePitch * 8];
  constexpr int N = 1 + sizeof...(In);
  TileSpot<N> t;
  t.rows = static_cast<int64_t>(L.dims[L.ndim - 2].d);
  t.cols = static_cast<int64_t>(L.dims[L.ndim - 1].d);
  const int64_t items = L.numel / (t.rows * t.cols) * row_tiles * col_tiles;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t ct = item % col_tiles, rest = item / col_tiles;
    const int64_t rt = rest % row_tiles, plane = rest / row_tiles;
    L.offsets(plane * t.rows * t.cols, t.base);
    t.r0 = rt * kTile;
    t.c0 = ct * kTile;
    tile_step<Out, In...>(L, out, in, f, staged, t, smem, std::index_sequence_for<In...>{});
  }
}

bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// Launches the elementwise kernels on the current stream (Note [CUDA elementwise paths]);
// nothing for an empty layout.
template <typename Out, typename... In, typename F>
void launch(StridedLayout<1 + sizeof...(In)> L, void* out, Inputs in, F f) {
  static_assert(sizeof...(In) <= kMaxInputs);
  constexpr int N = 1 + sizeof...(In);
  constexpr int V = kVec<Out, In...>;
  if (L.numel == 0) return;
  if (L.ndim >= 2) {
    const int64_t sa = L.strides[0][L.ndim - 2], sb = L.strides[0][L.ndim - 1];
    if ((sa < 0 ? -sa : sa) < (sb < 0 ? -sb : sb)) L.swap_inner();
  }
  const void* ptrs[N] = {out};
  for (int k = 1; k < N; ++k) ptrs[k] = in.p[k - 1];
  constexpr size_t sizes[N] = {sizeof(Out), sizeof(In)...};
  const int last = L.ndim - 1;
  bool vec = L.ndim >= 1 && (L.ndim == 1 || L.shape[last] % V == 0);
  for (int k = 0; k < N && vec; ++k) {
    const int64_t inner = L.strides[k][last];
    if (inner == 0 && k > 0) continue;  // read once per pack (the output is never broadcast)
    if (inner != 1 || !aligned(ptrs[k], sizes[k] * V)) vec = false;
    for (int d = 0; d < last; ++d)
      if (L.strides[k][d] % V != 0) vec = false;
  }
  const auto D = DividedLayout<N>::make(L);
  if constexpr (sizeof...(In) > 0) {
    if (!vec && transposed_inner(L)) {
      unsigned staged = 0;
      const int a = L.ndim - 2, b = L.ndim - 1;
      for (int k = 1; k < N; ++k) {
        const int64_t sa = L.strides[k][a], sb = L.strides[k][b];
        if ((sa == 1 || sa == -1) && (sb < 0 ? -sb : sb) > 16) staged |= 1u << (k - 1);
      }
      const int64_t row_tiles = (L.shape[a] + kTile - 1) / kTile;
      const int64_t col_tiles = (L.shape[b] + kTile - 1) / kTile;
      const int64_t items = L.numel / (L.shape[a] * L.shape[b]) * row_tiles * col_tiles;
      tiled_kernel<Out, F, In...><<<grid_for(items, 1), kThreads, 0, stream()>>>(
          D, static_cast<Out*>(out), in, f, staged, row_tiles, col_tiles);
      MG_CUDA_LAUNCH_CHECK();
      return;
    }
  }
  const int64_t items = vec ? (L.numel + V - 1) / V : L.numel;
  elementwise_kernel<Out, F, In...>
      <<<grid_for(items), kThreads, 0, stream()>>>(D, static_cast<Out*>(out), in, f, vec);
  MG_CUDA_LAUNCH_CHECK();
}

// ---- unary ----------------------------------------------------------------------------------

template <UnaryOp Op>
void run_unary(double p0, double p1, DType dtype, Extent e, Operand out, Operand in) {
  auto L = StridedLayout<2>::make(e.rank, e.shape, {out.strides, in.strides});
  const Inputs ins{{in.data}};
  const fn::Unary<Op> f{p0, p1};
  if constexpr (unary_needs_float(Op)) {
    MG_DISPATCH_FLOAT(dtype, [&] { launch<scalar_t, scalar_t>(L, out.data, ins, f); });
  } else {
    MG_DISPATCH_NUMERIC(dtype, [&] { launch<scalar_t, scalar_t>(L, out.data, ins, f); });
  }
}

// ---- binary ---------------------------------------------------------------------------------

constexpr bool binary_is_numeric(BinaryOp op) {
  return op == BinaryOp::Pow || op == BinaryOp::Fmod || op == BinaryOp::Add ||
         op == BinaryOp::Sub || op == BinaryOp::Mul || op == BinaryOp::Div ||
         op == BinaryOp::ThresholdBackward;
}

template <BinaryOp Op>
void run_binary(DType dtype, Extent e, Operand out, Operand a, Operand b) {
  auto L = StridedLayout<3>::make(e.rank, e.shape, {out.strides, a.strides, b.strides});
  const Inputs ins{{a.data, b.data}};
  const fn::Binary<Op> f;
  auto go = [&]<typename T>() {
    using Out = std::conditional_t<binary_returns_bool(Op), bool, T>;
    launch<Out, T, T>(L, out.data, ins, f);
  };
  if constexpr (binary_is_numeric(Op)) {
    MG_DISPATCH_NUMERIC(dtype, [&] { go.template operator()<scalar_t>(); });
  } else {
    MG_DISPATCH_ALL(dtype, [&] { go.template operator()<scalar_t>(); });
  }
}

// ---- where, copy, fill ----------------------------------------------------------------------

// The condition is read as bytes (a bool is one byte holding 0 or 1), as on the CPU.
template <typename T>
struct Select {
  __device__ T operator()(uint8_t c, T x, T y) const { return c != 0 ? x : y; }
};

// Casting to bool means "is nonzero", as in C++ and PyTorch. Floating to integer casts out of
// range (and of NaN) are undefined in C++; the CPU backend gives what x86-64 gives (truncation
// toward zero, and the type's minimum, "integer indefinite", when the result does not fit;
// uint8 takes the low byte of the int32 conversion), where the GPU would saturate. We
// reproduce the CPU's results so that both backends agree on every input.
template <typename D, typename S>
struct Cast {
  __device__ D operator()(S x) const {
    if constexpr (std::is_same_v<D, bool>) {
      return x != S(0);
    } else if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) {
      const double d = static_cast<double>(x);  // exact for float
      if constexpr (std::is_same_v<D, int64_t>) {
        // -2^63 <= d < 2^63, else (or NaN) INT64_MIN.
        return d >= -9223372036854775808.0 && d < 9223372036854775808.0 ? static_cast<int64_t>(d)
                                                                        : INT64_MIN;
      } else {
        // int32 and uint8: through int32, whose truncation fits when -2^31 - 1 < d < 2^31.
        const int32_t i =
            d > -2147483649.0 && d < 2147483648.0 ? static_cast<int32_t>(d) : INT32_MIN;
        return static_cast<D>(i);
      }
    } else {
      return static_cast<D>(x);
    }
  }
};

template <typename T>
struct Constant {
  T v;
  __device__ T operator()() const { return v; }
};

}  // namespace

void unary(UnaryOp op, double p0, double p1, DType dtype, Extent e, Operand out, Operand in) {
  // The CPU leaves these to the tensor layer (undefined behaviour otherwise); a check is free.
  if (unary_needs_float(op) ? !is_floating(dtype) : dtype == DType::Bool)
    ::metagrad::detail::fail("unary", "op ", static_cast<int>(op), " is not defined for ",
                             dtype_name(dtype));
  switch (op) {
#define MG_CASE(name) \
  case UnaryOp::name: \
    return run_unary<UnaryOp::name>(p0, p1, dtype, e, out, in);
    MG_FOR_EACH_UNARY_OP(MG_CASE)
#undef MG_CASE
  }
}

void binary(BinaryOp op, DType dtype, Extent e, Operand out, Operand a, Operand b) {
  if (binary_is_numeric(op) && dtype == DType::Bool)
    ::metagrad::detail::fail("binary", "op ", static_cast<int>(op), " is not defined for bool");
  switch (op) {
#define MG_CASE(name)  \
  case BinaryOp::name: \
    return run_binary<BinaryOp::name>(dtype, e, out, a, b);
    MG_FOR_EACH_BINARY_OP(MG_CASE)
#undef MG_CASE
  }
}

void where(DType dtype, Extent e, Operand out, Operand cond, Operand a, Operand b) {
  auto L =
      StridedLayout<4>::make(e.rank, e.shape, {out.strides, cond.strides, a.strides, b.strides});
  const Inputs ins{{cond.data, a.data, b.data}};
  MG_DISPATCH_ALL(dtype, [&] {
    launch<scalar_t, uint8_t, scalar_t, scalar_t>(L, out.data, ins, Select<scalar_t>{});
  });
}

void copy(DType dst_t, DType src_t, Extent e, Operand dst, Operand src) {
  auto L = StridedLayout<2>::make(e.rank, e.shape, {dst.strides, src.strides});
  if (L.numel == 0) return;
  if (dst_t == src_t && L.contiguous(0) && L.contiguous(1)) {
    MG_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data,
                                  static_cast<size_t>(L.numel) * dtype_size(dst_t),
                                  cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  const Inputs ins{{src.data}};
  MG_DISPATCH_ALL(dst_t, [&] {
    using D = scalar_t;
    MG_DISPATCH_ALL(src_t, [&] { launch<D, scalar_t>(L, dst.data, ins, Cast<D, scalar_t>{}); });
  });
}

void fill(DType dtype, Extent e, Operand dst, double value) {
  auto L = StridedLayout<1>::make(e.rank, e.shape, {dst.strides});
  MG_DISPATCH_ALL(dtype, [&] {
    // Converted on the host, by the same rules as the CPU's fill.
    launch<scalar_t>(L, dst.data, Inputs{}, Constant<scalar_t>{static_cast<scalar_t>(value)});
  });
}

}  // namespace metagrad::kernels::cuda
