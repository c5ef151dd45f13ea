// The CUDA reductions (sum, mean, prod, max/min with or without indices, var/std, logsumexp,
// norms): the twin of kernels/cpu/reduce.cpp, with the same results, NaN rules and tie rules.
// One kernel engine (the thread layouts below) runs small "op" structs that say how to start
// (init), extend (step), merge and finish (store) an accumulator, so every layout shares the
// math.
//
// Note [CUDA reduction layouts]: the input arrives as kept dims (output j is contiguous, at
// kept-offset(j)) and reduced dims (element r of output j at kept-offset(j) + red-offset(r)),
// each group coalesced on the host exactly as the CPU does. A block of 256 threads covers
// bx outputs with by = 256 / bx threads each; a thread walks its output's r in steps of by.
//   * rows (lanes along r): consecutive threads take consecutive r of one output: a thread
//     per output for rows under 32 elements, otherwise a group of by = 8 ... 256 consecutive
//     lanes (about 16 elements each, a whole block per output for long rows). When the
//     innermost reduced dim is contiguous, each group reads it with 16-byte vector loads; when
//     there are several reduced dims, it walks them run by run along the innermost one.
//     Merged by warp shuffles, then across warps in shared memory.
//   * columns (lanes along outputs): when the innermost kept dim has unit stride and the
//     innermost reduced one does not (sum over dim 0 of a row-major matrix), a warp takes 32
//     adjacent outputs, so each load instruction reads 32 adjacent elements; the block's 8
//     warps split r and are merged in shared memory (or, with enough outputs to fill the device
//     or rows under 32, each of the 256 threads takes a whole output).
//   * split: when the outputs alone leave the device idle (a sum over everything, or a column
//     reduction with few columns), each output's r range is cut into chunks reduced by separate
//     blocks; their partial accumulators go to a Workspace and a second kernel merges them in
//     a fixed order.
// The layout depends on the shapes only, never on timing or the device, so every result is
// deterministic. Measured on an H100 (float32 sum, against a 1 GiB device-to-device copy at
// 3.0 TB/s read+write): everything of 2^28 elements 100%, [4096, 4096] over everything 75%,
// over dim 1 88%, over dim 0 72%; [16384, 16384] over dim 1 104%, over dim 0 98%.
//
// Note [CUDA reduction accuracy]: accumulators as on the CPU (Note [Reduction accuracy] in
// kernels/cpu/reduce.cpp): float32 and float64 sums, products, var, logsumexp and norms in
// double; integer and bool sums and products in uint64 (wrap-around) written as int64; max
// and min in the input type. Var/Std and LogSumExp read their input once, where the CPU takes
// two passes: Var's state is the shifted moments (Note [Shifted moments] in kernels/online.h),
// LogSumExp's the running max and rescaled sum of exps (Note [Online logsumexp]); both agree
// with the CPU's two passes to rounding. float32 exps use expf (within 2 ulp; the CPU's exp_f32
// is within 1.5), so float32 logsumexp may differ from the CPU in the last bit.
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/args.h"
#include "kernels/cuda/common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "kernels/online.h"
#include "kernels/strided.h"

namespace metagrad::kernels::cuda {

namespace {

using metagrad::cuda::kThreads;
using metagrad::cuda::stream;
using metagrad::cuda::Workspace;

static_assert(kThreads == 256, "the layouts below assume 256-thread blocks");
constexpr int kThreadsLog2 = 8;

// Threads that keep a whole H100 busy (132 SMs x 2048 resident threads): fewer than this and
// long rows are split. A constant, not a device query, so that the layout (and so the rounding
// of every result) is the same on every device.
constexpr int64_t kFillThreads = int64_t{132} * 2048;
// Elements a thread should reduce before splitting a row further pays off.
constexpr int64_t kMinPerThread = 64;
// Chunk lengths are multiples of this, so that a split keeps 16-byte vector alignment.
constexpr int64_t kChunkAlign = 16;
// Blocks per launch, capped at a few waves (as grid_for): the grid-stride loop over items then
// spares the block scheduler hundreds of thousands of tiny blocks when rows are short.
constexpr int64_t kMaxBlocks = int64_t{132} * 32;

template <typename T>
__device__ __forceinline__ bool is_nan(T x) {
  if constexpr (std::is_floating_point_v<T>) {
    return x != x;  // IEEE: only NaN differs from itself (no fast-math here)
  } else {
    (void)x;
    return false;
  }
}

// 1/d, +inf for d <= 0 (so that 0 * inverse(0) is NaN), as the CPU's.
inline double inverse(double d) {
  return d > 0 ? 1.0 / d : std::numeric_limits<double>::infinity();
}

// ---- maps (element -> accumulated term) and fins (accumulator -> output) -------------------
// bind(o) returns the map specialised to output o, once, before the walk over its elements.

template <typename Acc>
struct ToAcc {
  __device__ ToAcc bind(int64_t) const { return *this; }
  template <typename T>
  __device__ Acc operator()(T x) const {
    return static_cast<Acc>(x);
  }
};

struct AbsMap {  // |x| in double, for the +-inf norms
  template <typename T>
  __device__ double operator()(T x) const {
    return ::fabs(static_cast<double>(x));
  }
};

enum NormKind : int { kNorm2 = 0, kNorm1 = 1, kNorm0 = 2, kNormP = 3 };

struct NormMap {  // the term of a finite-p norm (a uniform runtime branch)
  int kind;
  double p;
  __device__ NormMap bind(int64_t) const { return *this; }
  template <typename T>
  __device__ double operator()(T x) const {
    const double d = static_cast<double>(x);
    switch (kind) {
      case kNorm2:
        return d * d;
      case kNorm1:
        return ::fabs(d);
      case kNorm0:
        return x != T(0) ? 1.0 : 0.0;  // NaN counts as nonzero, as on the CPU
      default:
        return ::pow(::fabs(d), p);
    }
  }
};

struct FinId {
  template <typename A>
  __device__ A operator()(A a, int64_t) const {
    return a;
  }
};

struct FinScale {  // Mean
  double scale;
  __device__ double operator()(double a, int64_t) const { return a * scale; }
};

struct FinNorm {
  int kind;
  double inv_p;
  __device__ double operator()(double a, int64_t) const {
    if (kind == kNorm2) return ::sqrt(a);
    if (kind == kNormP) return ::pow(a, inv_p);
    return a;
  }
};

// ---- the ops -----------------------------------------------------------------------------
// An op has in_t, acc_t, bind(o), init(), step(acc, x, r) (r: the element's linear index over
// the reduced dims; elements reach one accumulator in increasing r), merge(a, b) (associative;
// order-aware through the indices for the arg ops) and store(o, acc).

// acc = sum of map(x); output o gets fin(acc, o).
template <typename T, typename Acc, typename Out, typename Map, typename Fin>
struct AddOp {
  using in_t = T;
  using acc_t = Acc;
  Map map;
  Fin fin;
  Out* out;
  __device__ AddOp bind(int64_t o) const { return {map.bind(o), fin, out}; }
  __device__ Acc init() const { return Acc(0); }
  __device__ Acc step(Acc a, T x, int64_t) const { return a + map(x); }
  __device__ Acc merge(Acc a, Acc b) const { return a + b; }
  __device__ void store(int64_t o, Acc a) const { out[o] = static_cast<Out>(fin(a, o)); }
};

template <typename T, typename Acc, typename Out>
struct MulOp {
  using in_t = T;
  using acc_t = Acc;
  Out* out;
  __device__ MulOp bind(int64_t) const { return *this; }
  __device__ Acc init() const { return Acc(1); }
  __device__ Acc step(Acc a, T x, int64_t) const { return a * static_cast<Acc>(x); }
  __device__ Acc merge(Acc a, Acc b) const { return a * b; }
  __device__ void store(int64_t o, Acc a) const { out[o] = static_cast<Out>(a); }
};

// Largest (IsMax) or smallest map(x); a NaN wins over everything, as torch.amax.
template <typename T, typename Acc, typename Out, bool IsMax, typename Map, typename Fin>
struct ExtremeOp {
  using in_t = T;
  using acc_t = Acc;
  Map map;
  Fin fin;
  Out* out;
  __device__ ExtremeOp bind(int64_t) const { return *this; }
  __device__ Acc init() const {
    using L = std::numeric_limits<Acc>;
    if constexpr (L::has_infinity) {
      return IsMax ? -L::infinity() : L::infinity();
    } else {
      return IsMax ? L::lowest() : L::max();
    }
  }
  __device__ static Acc pick(Acc a, Acc v) {
    return ((IsMax ? v > a : v < a) || is_nan(v)) ? v : a;
  }
  __device__ Acc step(Acc a, T x, int64_t) const { return pick(a, map(x)); }
  __device__ Acc merge(Acc a, Acc b) const { return pick(a, b); }
  __device__ void store(int64_t o, Acc a) const { out[o] = static_cast<Out>(fin(a, o)); }
};

template <typename T>
struct ArgAcc {
  T v;
  int64_t i;  // -1: no element seen yet
};

// Value and index of the largest (IsMax) or smallest element: the first one on ties, the
// first NaN when there is one (torch.max(x, dim) / argmax).
template <typename T, bool IsMax>
struct ArgOp {
  using in_t = T;
  using acc_t = ArgAcc<T>;
  T* values;         // may be null
  int64_t* indices;  // may be null
  __device__ ArgOp bind(int64_t) const { return *this; }
  __device__ static bool better(T x, T y) {
    return (IsMax ? x > y : x < y) || (is_nan(x) && !is_nan(y));
  }
  __device__ acc_t init() const { return {T{}, -1}; }
  __device__ acc_t step(acc_t a, T x, int64_t r) const {
    return (a.i < 0 || better(x, a.v)) ? acc_t{x, r} : a;
  }
  __device__ acc_t merge(acc_t a, acc_t b) const {
    if (b.i < 0) return a;
    if (a.i < 0 || better(b.v, a.v)) return b;
    if (better(a.v, b.v)) return a;
    return b.i < a.i ? b : a;  // equal (or both NaN): the earlier one
  }
  __device__ void store(int64_t o, acc_t a) const {
    if (values) values[o] = a.v;
    if (indices) indices[o] = a.i;
  }
};

// LogSumExp in one pass (Note [Online logsumexp]); the output is log(s) + shift as the CPU's.
template <typename T>
struct LseOp {
  using in_t = T;
  using acc_t = online::LseState<T>;
  T* out;
  __device__ LseOp bind(int64_t) const { return *this; }
  __device__ acc_t init() const { return online::lse_init<T>(); }
  __device__ acc_t step(acc_t a, T x, int64_t) const { return online::lse_step(a, x); }
  __device__ acc_t merge(acc_t a, acc_t b) const { return online::lse_merge(a, b); }
  __device__ void store(int64_t o, acc_t a) const {
    out[o] = static_cast<T>(online::lse_finish(a).logsumexp());
  }
};

// Var (or Std, root) in one pass (Note [Shifted moments]): the sum of squared deviations
// times scale = 1 / (n - correction), +inf where that is not positive (NaN for 0 * inf).
template <typename T>
struct VarOp {
  using in_t = T;
  using acc_t = online::Moments;
  double scale;
  bool root;
  T* out;
  __device__ VarOp bind(int64_t) const { return *this; }
  __device__ acc_t init() const { return online::moments_init(); }
  __device__ acc_t step(acc_t a, T x, int64_t) const {
    return online::moments_step(a, static_cast<double>(x));
  }
  __device__ acc_t merge(acc_t a, acc_t b) const { return online::moments_merge(a, b); }
  __device__ void store(int64_t o, acc_t a) const {
    const double v = online::moments_m2(a) * scale;
    out[o] = static_cast<T>(root ? ::sqrt(v) : v);
  }
};

// ---- warp shuffles of accumulators ---------------------------------------------------------

template <typename T>
__device__ __forceinline__ T shfl_down(T x, int d) {
  if constexpr (sizeof(T) < 4) {  // bool, uint8: shuffled as int
    return static_cast<T>(__shfl_down_sync(0xffffffffu, static_cast<int>(x), d));
  } else {
    return __shfl_down_sync(0xffffffffu, x, d);
  }
}

template <typename T>
__device__ __forceinline__ ArgAcc<T> shfl_down(ArgAcc<T> a, int d) {
  return {shfl_down(a.v, d), shfl_down(a.i, d)};
}

template <typename T>
__device__ __forceinline__ online::LseState<T> shfl_down(online::LseState<T> a, int d) {
  return {shfl_down(a.m, d), shfl_down(a.s, d)};
}

__device__ __forceinline__ online::Moments shfl_down(online::Moments a, int d) {
  return {shfl_down(a.n, d), shfl_down(a.k, d), shfl_down(a.s1, d), shfl_down(a.s2, d)};
}

// ---- the engine ----------------------------------------------------------------------------

// The launch layout, computed on the host from the shapes only (Note [CUDA reduction layouts]).
struct Plan {
  int64_t n_out, n_red;
  int64_t tiles;    // blocks' worth of outputs: ceil(n_out / bx)
  int64_t splits;   // chunks per output row (1: no partials)
  int64_t len;      // elements per chunk, the last one shorter
  int by_log2;      // by = threads per output = 1 << by_log2; bx = 256 >> by_log2
  bool lanes_on_r;  // rows layout (consecutive threads, consecutive r) or columns
  bool small_kept;  // n_out fits 32 bits: 32-bit index arithmetic for the kept offsets
  bool small_red;   // likewise n_red for the reduced offsets
};

// Offset (elements) of row-major element number `lin` of layout L. Index arithmetic in 32
// bits when the linear indices fit (a 64-bit division costs several times a 32-bit one).
__device__ __forceinline__ int64_t offset_of(const StridedLayout<1>& L, int64_t lin, bool small) {
  int64_t off = 0;
  if (small) {
    uint32_t rem = static_cast<uint32_t>(lin);
    for (int d = L.ndim - 1; d > 0; --d) {
      const uint32_t n = static_cast<uint32_t>(L.shape[d]);
      const uint32_t q = rem / n;
      off += static_cast<int64_t>(rem - q * n) * L.strides[0][d];
      rem = q;
    }
    if (L.ndim > 0) off += static_cast<int64_t>(rem) * L.strides[0][0];
  } else {
    for (int d = L.ndim - 1; d > 0; --d) {
      off += (lin % L.shape[d]) * L.strides[0][d];
      lin /= L.shape[d];
    }
    if (L.ndim > 0) off += lin * L.strides[0][0];
  }
  return off;
}

// Elements j = j0, j0 + by, ... < n of p[j * s], reduced index r0 + j. kUnroll loads are
// issued before their steps so that several are in flight per thread.
constexpr int kUnroll = 8;

template <typename Op, typename A, typename T>
__device__ __forceinline__ A walk_strided(const Op& op, A acc, const T* p, int64_t s, int64_t n,
                                          int64_t j0, int by, int64_t r0) {
  int64_t j = j0;
  for (; j + (kUnroll - 1) * by < n; j += kUnroll * by) {
    T x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) x[u] = p[(j + u * by) * s];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc = op.step(acc, x[u], r0 + j + u * by);
  }
  for (; j < n; j += by) acc = op.step(acc, p[j * s], r0 + j);
  return acc;
}

// p[0, n) contiguous, reduced index r0 + j, walked by `by` >= 16 / sizeof(T) consecutive
// threads (ty is this one's rank) with 16-byte loads: a few scalar elements until p is 16-byte
// aligned, the aligned vectors, then the scalar tail. Each thread still meets its elements in
// increasing r.
template <typename Op, typename A, typename T>
__device__ __forceinline__ A walk_contiguous(const Op& op, A acc, const T* p, int64_t n, int ty,
                                             int by, int64_t r0) {
  constexpr int V = 16 / sizeof(T);
  constexpr int U = V >= 8 ? 2 : 4;  // vectors in flight per thread
  struct alignas(16) Vec {
    T v[V];
  };
  const int64_t mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(p) % 16 / sizeof(T));
  const int64_t head = mis == 0 ? 0 : (V - mis < n ? V - mis : n);  // < V <= by
  if (ty < head) acc = op.step(acc, p[ty], r0 + ty);
  const Vec* pv = reinterpret_cast<const Vec*>(p + head);
  const int64_t nv = (n - head) / V, rv = r0 + head;
  int64_t i = ty;
  for (; i + (U - 1) * by < nv; i += U * by) {
    Vec v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u] = pv[i + u * by];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int k = 0; k < V; ++k) acc = op.step(acc, v[u].v[k], rv + (i + u * by) * V + k);
  }
  for (; i < nv; i += by) {
    const Vec v = pv[i];
#pragma unroll
    for (int k = 0; k < V; ++k) acc = op.step(acc, v.v[k], rv + i * V + k);
  }
  const int64_t done = head + nv * V;  // fewer than V <= by elements remain
  if (ty < n - done) acc = op.step(acc, p[done + ty], r0 + done + ty);
  return acc;
}

// A run p[0], p[s], ..., p[(n-1)s] (reduced indices r0, r0 + 1, ...) shared by a group of by
// threads. Unit stride only occurs in the rows layout (the columns layout is chosen when the
// innermost reduced stride is not 1), where the group's threads are consecutive lanes.
template <typename Op, typename A, typename T>
__device__ __forceinline__ A walk_run(const Op& op, A acc, const T* p, int64_t s, int64_t n, int ty,
                                      int by, int64_t r0) {
  if (s == 1 && by >= static_cast<int>(16 / sizeof(T)))
    return walk_contiguous(op, acc, p, n, ty, by, r0);
  return walk_strided(op, acc, p, s, n, ty, by, r0);
}

// The reduced elements [lo, hi) run by run along the innermost reduced dim, stepping an
// odometer over the outer ones (no division per element). Every thread of the group keeps the
// same odometer and takes its share of each run.
template <typename Op, typename A, typename T>
__device__ __forceinline__ A walk_runs(const Op& op, A acc, const T* base,
                                       const StridedLayout<1>& red, int64_t lo, int64_t hi, int ty,
                                       int by) {
  if (lo >= hi) return acc;
  const int last = red.ndim - 1;
  const int64_t inner = red.shape[last], s = red.strides[0][last];
  int64_t idx[kMaxDims];
  int64_t off = 0;
  int64_t rem = lo;
  for (int d = last; d >= 0; --d) {
    idx[d] = rem % red.shape[d];
    rem /= red.shape[d];
    off += idx[d] * red.strides[0][d];
  }
  for (int64_t r = lo;;) {
    const int64_t n = hi - r < inner - idx[last] ? hi - r : inner - idx[last];
    acc = walk_run(op, acc, base + off, s, n, ty, by, r);
    r += n;
    if (r >= hi) break;
    off -= idx[last] * s;  // the run ended: back to its start, then on to the next one
    idx[last] = 0;
    for (int d = last - 1; d >= 0; --d) {
      off += red.strides[0][d];
      if (++idx[d] < red.shape[d]) break;
      off -= red.strides[0][d] * red.shape[d];
      idx[d] = 0;
    }
  }
  return acc;
}

// This thread's share of output row `base` over the reduced elements [lo, hi): the ones
// congruent to ty modulo by (by runs of the innermost reduced dim when those are long enough).
template <typename Op, typename T>
__device__ __forceinline__ typename Op::acc_t walk(const Op& op, const T* base,
                                                   const StridedLayout<1>& red, int64_t lo,
                                                   int64_t hi, int ty, int by, bool small) {
  auto acc = op.init();
  if (red.ndim == 0) {  // one element per output
    if (ty == 0 && lo < hi) acc = op.step(acc, base[0], 0);
    return acc;
  }
  if (red.ndim == 1)
    return walk_run(op, acc, base + lo * red.strides[0][0], red.strides[0][0], hi - lo, ty, by, lo);
  if (by == 1 || red.shape[red.ndim - 1] >= by)
    return walk_runs(op, acc, base, red, lo, hi, ty, by);
  // Runs shorter than the group: element by element, each offset by division.
  for (int64_t r = lo + ty; r < hi; r += by) acc = op.step(acc, base[offset_of(red, r, small)], r);
  return acc;
}

// Merges the by accumulators of each output within the block (in a fixed order); the result
// is valid in the thread with ty == 0. Called by every thread of the block.
template <typename Op, typename A>
__device__ __forceinline__ A block_merge(const Op& op, A a, A* smem, int t, int tx, int ty,
                                         int by_log2, bool lanes_on_r) {
  const int by = 1 << by_log2;
  if (by == 1) return a;
  if (lanes_on_r) {  // groups of by consecutive lanes (whole warps when by >= 32)
    for (int d = (by < 32 ? by : 32) >> 1; d > 0; d >>= 1) a = op.merge(a, shfl_down(a, d));
    if (by > 32) {
      const int warps = by >> 5, warp = t >> 5;
      __syncthreads();  // the previous item's readers of smem are done
      if ((t & 31) == 0) smem[warp] = a;
      __syncthreads();
      if (ty == 0) {
        a = smem[warp];
        for (int w = 1; w < warps; ++w) a = op.merge(a, smem[warp + w]);
      }
    }
    return a;
  }
  // Columns: t = ty * bx + tx; a tree over ty in shared memory.
  const int bx = kThreads >> by_log2;
  __syncthreads();
  smem[t] = a;
  __syncthreads();
  for (int h = by >> 1; h > 0; h >>= 1) {
    if (ty < h) smem[t] = op.merge(smem[t], smem[t + h * bx]);
    __syncthreads();
  }
  return ty == 0 ? smem[tx] : a;
}

// Thread t's place in the block: output tx of the block's bx, rank ty among the output's by.
__device__ __forceinline__ void place(int t, int by_log2, bool lanes_on_r, int* tx, int* ty) {
  if (lanes_on_r) {
    *tx = t >> by_log2;
    *ty = t & ((1 << by_log2) - 1);
  } else {
    *tx = t & ((kThreads >> by_log2) - 1);
    *ty = t >> (kThreadsLog2 - by_log2);
  }
}

// Item = (tile of bx outputs, chunk c of their rows). With one chunk the result is stored,
// otherwise the partial accumulator goes to partial[o * splits + c].
template <typename Op>
__global__ void __launch_bounds__(kThreads)
    reduce_kernel(Op op, const typename Op::in_t* __restrict__ in, StridedLayout<1> kept,
                  StridedLayout<1> red, Plan p, typename Op::acc_t* __restrict__ partial) {
  using A = typename Op::acc_t;
  __shared__ A smem[kThreads];
  const int t = static_cast<int>(threadIdx.x);
  int tx, ty;
  place(t, p.by_log2, p.lanes_on_r, &tx, &ty);
  const int by = 1 << p.by_log2, bx = kThreads >> p.by_log2;
  const int64_t items = p.tiles * p.splits;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    // (a 64-bit division costs dozens of instructions: skipped in the common unsplit case)
    const int64_t tile = p.splits == 1 ? item : item / p.splits, c = item - tile * p.splits;
    const int64_t o = tile * bx + tx;
    A acc = op.init();
    if (o < p.n_out) {
      const int64_t lo = c * p.len, hi = lo + p.len < p.n_red ? lo + p.len : p.n_red;
      acc =
          walk(op.bind(o), in + offset_of(kept, o, p.small_kept), red, lo, hi, ty, by, p.small_red);
    }
    acc = block_merge(op, acc, smem, t, tx, ty, p.by_log2, p.lanes_on_r);
    if (ty == 0 && o < p.n_out) {
      if (p.splits == 1) {
        op.store(o, acc);
      } else {
        partial[o * p.splits + c] = acc;
      }
    }
  }
}

// Merges each output's `splits` partial accumulators (rows layout over c) and stores it.
template <typename Op>
__global__ void __launch_bounds__(kThreads)
    combine_kernel(Op op, const typename Op::acc_t* __restrict__ partial, int64_t n_out,
                   int64_t splits, int64_t tiles, int by_log2) {
  using A = typename Op::acc_t;
  __shared__ A smem[kThreads];
  const int t = static_cast<int>(threadIdx.x);
  int tx, ty;
  place(t, by_log2, true, &tx, &ty);
  const int by = 1 << by_log2, bx = kThreads >> by_log2;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t o = tile * bx + tx;
    A acc = op.init();
    if (o < n_out)
      for (int64_t c = ty; c < splits; c += by) acc = op.merge(acc, partial[o * splits + c]);
    acc = block_merge(op, acc, smem, t, tx, ty, by_log2, true);
    if (ty == 0 && o < n_out) op.store(o, acc);
  }
}

struct Geometry {
  StridedLayout<1> kept, red;
  int64_t n_out = 0, n_red = 0;
};

int floor_log2(int64_t x) {  // x >= 1
  int k = 0;
  while (x >> (k + 1)) ++k;
  return k;
}

// log2 of the threads per output in the rows layout for rows of n elements: one thread for
// rows under 32 (measured on an H100: a thread per output beat 4 threads sharing a 16-element
// row, 68% against 54% of copy bandwidth), about 4 elements each up to 64, 16 beyond, at most
// 256; widened (down to 4 elements each) while the outputs alone leave the device idle.
int rows_by_log2(int64_t n, int64_t n_out) {
  if (n < 32) return 0;
  const int64_t per = n > 64 ? 16 : 4;
  int k = n >= 2 * per ? floor_log2(n / per) : 0;
  k = k < kThreadsLog2 ? k : kThreadsLog2;
  while (k < kThreadsLog2 && (n_out << k) < kFillThreads && (n >> (k + 1)) >= 4) ++k;
  return k;
}

Plan make_plan(const Geometry& g) {
  Plan p{};
  p.n_out = g.n_out;
  p.n_red = g.n_red;
  const bool kept_unit = g.kept.ndim > 0 && g.kept.strides[0][g.kept.ndim - 1] == 1;
  const bool red_unit = g.red.ndim == 0 || g.red.strides[0][g.red.ndim - 1] == 1;
  if (kept_unit && !red_unit) {
    p.lanes_on_r = false;
    // 32 outputs x 8 threads, or 256 outputs when rows are short or outputs plentiful.
    p.by_log2 = g.n_red >= 32 && g.n_out < kFillThreads ? 3 : 0;
  } else {
    p.lanes_on_r = true;
    p.by_log2 = rows_by_log2(g.n_red, g.n_out);
  }
  const int64_t by = int64_t{1} << p.by_log2, bx = kThreads / by;
  p.tiles = (g.n_out + bx - 1) / bx;
  p.splits = 1;
  p.len = g.n_red;
  const int64_t threads = p.tiles * kThreads;
  if (threads < kFillThreads) {  // the outputs alone leave the device idle: split the rows
    const int64_t want = kFillThreads / threads, most = g.n_red / (by * kMinPerThread);
    const int64_t splits = want < most ? want : most;
    if (splits > 1) {
      const int64_t len = (g.n_red + splits - 1) / splits;
      p.len = (len + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
      p.splits = (g.n_red + p.len - 1) / p.len;  // every chunk nonempty
    }
  }
  constexpr int64_t k32 = int64_t{1} << 32;
  p.small_kept = g.n_out < k32;
  p.small_red = g.n_red < k32;
  return p;
}

// Runs `op` over the whole input: one launch, or two with a split (Note [CUDA reduction
// layouts]). g.n_out > 0.
template <typename Op>
void run(const Geometry& g, const Plan& p, const void* data, const Op& op) {
  using A = typename Op::acc_t;
  const auto* in = static_cast<const typename Op::in_t*>(data);
  Workspace ws;
  A* partial = nullptr;
  if (p.splits > 1) {
    ws = Workspace(static_cast<size_t>(p.n_out * p.splits) * sizeof(A));
    partial = ws.as<A>();
  }
  const int64_t items = p.tiles * p.splits;
  const auto blocks = static_cast<unsigned>(items < kMaxBlocks ? items : kMaxBlocks);
  reduce_kernel<Op><<<blocks, kThreads, 0, stream()>>>(op, in, g.kept, g.red, p, partial);
  MG_CUDA_LAUNCH_CHECK();
  if (p.splits == 1) return;
  const int lg = floor_log2(p.splits), by_log2 = lg < kThreadsLog2 ? lg : kThreadsLog2;
  const int64_t bx = kThreads >> by_log2, tiles = (p.n_out + bx - 1) / bx;
  const auto cblocks = static_cast<unsigned>(tiles < kMaxBlocks ? tiles : kMaxBlocks);
  combine_kernel<Op>
      <<<cblocks, kThreads, 0, stream()>>>(op, partial, p.n_out, p.splits, tiles, by_log2);
  MG_CUDA_LAUNCH_CHECK();
}

// Integer and bool sums/products: uint64 accumulation, int64 result.
template <typename T>
using add_acc_t = std::conditional_t<std::is_floating_point_v<T>, double, uint64_t>;
template <typename T>
using add_out_t = std::conditional_t<std::is_floating_point_v<T>, T, int64_t>;

template <typename T>
void run_norm(const Geometry& g, const Plan& p, const void* in, T* out, double np) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (np == inf) {
    run(g, p, in, ExtremeOp<T, double, T, true, AbsMap, FinId>{{}, {}, out});
  } else if (np == -inf) {
    run(g, p, in, ExtremeOp<T, double, T, false, AbsMap, FinId>{{}, {}, out});
  } else {
    const int kind = np == 2 ? kNorm2 : np == 1 ? kNorm1 : np == 0 ? kNorm0 : kNormP;
    run(g, p, in, AddOp<T, double, T, NormMap, FinNorm>{{kind, np}, {kind, 1.0 / np}, out});
  }
}

}  // namespace

void reduce(ReduceOp op, const ReduceInput& in, void* values, int64_t* indices, double param) {
  Geometry g;
  g.kept = StridedLayout<1>::make(in.kept_rank, in.kept_shape, {in.kept_strides});
  g.red = StridedLayout<1>::make(in.red_rank, in.red_shape, {in.red_strides});
  g.n_out = g.kept.numel;
  g.n_red = g.red.numel;
  if (g.n_out == 0) return;
  const Plan p = make_plan(g);
  const double n = static_cast<double>(g.n_red);
  switch (op) {
    case ReduceOp::Sum:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        using Acc = add_acc_t<T>;
        using Out = add_out_t<T>;
        run(g, p, in.data,
            AddOp<T, Acc, Out, ToAcc<Acc>, FinId>{{}, {}, static_cast<Out*>(values)});
      });
    case ReduceOp::Mean:
      return MG_DISPATCH_FLOAT(in.dtype, [&] {
        using T = scalar_t;
        run(g, p, in.data,
            AddOp<T, double, T, ToAcc<double>, FinScale>{
                {}, {inverse(n)}, static_cast<T*>(values)});
      });
    case ReduceOp::Prod:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        using Out = add_out_t<T>;
        run(g, p, in.data, MulOp<T, add_acc_t<T>, Out>{static_cast<Out*>(values)});
      });
    case ReduceOp::Max:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        run(g, p, in.data,
            ExtremeOp<T, T, T, true, ToAcc<T>, FinId>{{}, {}, static_cast<T*>(values)});
      });
    case ReduceOp::Min:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        run(g, p, in.data,
            ExtremeOp<T, T, T, false, ToAcc<T>, FinId>{{}, {}, static_cast<T*>(values)});
      });
    case ReduceOp::ArgMax:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        run(g, p, in.data, ArgOp<T, true>{static_cast<T*>(values), indices});
      });
    case ReduceOp::ArgMin:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        run(g, p, in.data, ArgOp<T, false>{static_cast<T*>(values), indices});
      });
    case ReduceOp::Var:
    case ReduceOp::Std:
      return MG_DISPATCH_FLOAT(in.dtype, [&] {
        using T = scalar_t;
        const double scale = inverse(n - param > 0 ? n - param : 0.0);
        run(g, p, in.data, VarOp<T>{scale, op == ReduceOp::Std, static_cast<T*>(values)});
      });
    case ReduceOp::LogSumExp:
      return MG_DISPATCH_FLOAT(in.dtype, [&] {
        using T = scalar_t;
        run(g, p, in.data, LseOp<T>{static_cast<T*>(values)});
      });
    case ReduceOp::Norm:
      return MG_DISPATCH_FLOAT(in.dtype, [&] {
        run_norm<scalar_t>(g, p, in.data, static_cast<scalar_t*>(values), param);
      });
  }
}

}  // namespace metagrad::kernels::cuda
