// The CUDA elementwise kernels: unary and binary ops, where(), dtype-converting copy and fill.
// The twin of kernels/cpu/unary.cpp, binary.cpp, ternary.cpp and copy.cpp: the same dtype
// dispatch, the same scalar functors (kernels/functors.h) and the same coalesced layout
// (kernels/strided.h); only the indexing and the launch are GPU-specific.
//
// Note [CUDA elementwise paths]: one kernel per (functor, types) with a runtime branch
// between two paths, chosen on the host from the coalesced layout:
//   * vector: the output and every input have unit stride over one coalesced dimension, or an
//     input is a broadcast scalar (stride 0), and every unit-stride pointer is aligned to its
//     pack. A thread then handles V elements, V = 16 / (widest element): the widest operand
//     moves as one 16-byte load or store, narrower ones as smaller aligned packs, a scalar is
//     read once. The last numel % V elements take the element path below.
//   * strided: any layout; each element finds its operands through L.offsets (one division
//     per coalesced dimension), or i * stride when the layout is 1-D.
// Both are grid-stride loops with 64-bit indices. In-place ops pass the same pointer as
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

// Input number k (operand k + 1) on the vector path: a pack, or the broadcast scalar
// repeated (stride 0; also the only element when the layout has no dimension).
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const void* p, bool scalar, int64_t v) {
  const T* t = static_cast<const T*>(p);
  Pack<T, V> r;
  if (scalar) {
    const T x = t[0];
#pragma unroll
    for (int j = 0; j < V; ++j) r.v[j] = x;
  } else {
    r = reinterpret_cast<const Pack<T, V>*>(t)[v];
  }
  return r;
}

template <int V, typename Out, typename F, typename... P>
__device__ __forceinline__ void apply_packs(const F& f, Pack<Out, V>& o, const P&... packs) {
#pragma unroll
  for (int j = 0; j < V; ++j) o.v[j] = static_cast<Out>(f(packs.v[j]...));
}

// Pack number v (elements v * V ... v * V + V - 1) of a vector-path layout (ndim == 1).
template <int V, typename Out, typename... In, typename F, size_t... I>
__device__ __forceinline__ void vector_step(const StridedLayout<1 + sizeof...(In)>& L, Out* out,
                                            const Inputs& in, const F& f, int64_t v,
                                            std::index_sequence<I...>) {
  Pack<Out, V> o;
  apply_packs<V>(f, o, load_pack<In, V>(in.p[I], L.strides[I + 1][0] == 0, v)...);
  reinterpret_cast<Pack<Out, V>*>(out)[v] = o;
}

// Element number i (row-major over the layout's shape), any layout.
template <typename Out, typename... In, typename F, size_t... I>
__device__ __forceinline__ void element_step(const StridedLayout<1 + sizeof...(In)>& L, Out* out,
                                             const Inputs& in, const F& f, int64_t i,
                                             std::index_sequence<I...>) {
  constexpr int N = 1 + sizeof...(In);
  int64_t off[N];
  if (L.ndim <= 1) {
    // One dimension needs no division; with none, every stride is 0 (the single element).
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = i * L.strides[k][0];
  } else {
    L.offsets(i, off);
  }
  out[off[0]] = static_cast<Out>(f(static_cast<const In*>(in.p[I])[off[I + 1]]...));
}

// out = f(in...) over L (operand 0 is the output). Note [CUDA elementwise paths].
template <typename Out, typename F, typename... In>
__global__ void __launch_bounds__(kThreads)
    elementwise_kernel(StridedLayout<1 + sizeof...(In)> L, Out* out, Inputs in, F f, bool vec) {
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

bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// Launches elementwise_kernel on the current stream; nothing for an empty layout.
template <typename Out, typename... In, typename F>
void launch(const StridedLayout<1 + sizeof...(In)>& L, void* out, Inputs in, F f) {
  static_assert(sizeof...(In) <= kMaxInputs);
  constexpr int N = 1 + sizeof...(In);
  constexpr int V = kVec<Out, In...>;
  if (L.numel == 0) return;
  const void* ptrs[N] = {out};
  for (int k = 1; k < N; ++k) ptrs[k] = in.p[k - 1];
  constexpr size_t sizes[N] = {sizeof(Out), sizeof(In)...};
  bool vec = true;
  for (int k = 0; k < N; ++k) {
    const bool scalar = k > 0 && L.scalar(k);  // the output is never a broadcast
    if (!L.contiguous(k) && !scalar) vec = false;
    if (!scalar && !aligned(ptrs[k], sizes[k] * V)) vec = false;
  }
  const int64_t items = vec ? (L.numel + V - 1) / V : L.numel;
  elementwise_kernel<Out, F, In...>
      <<<grid_for(items), kThreads, 0, stream()>>>(L, static_cast<Out*>(out), in, f, vec);
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
