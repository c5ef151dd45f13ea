// The CPU reductions: one engine (three loop orders, below) driven by small "op" structs that
// say how to start, extend, merge and finish an accumulator.
//
// Note [Reduction loop orders]: the input arrives as kept dims (one output element per kept
// index, outputs contiguous) and reduced dims, each group coalesced like an elementwise layout
// (kernels/strided.h). Three ways to walk it:
//   * outputs: one output at a time (OpenMP over outputs), an inner loop over its reduced
//     elements; when the innermost reduced dim has unit stride that loop is a tight,
//     multi-accumulator loop over contiguous memory. Used for reductions over inner dims.
//   * columns: when the innermost *kept* dim has unit stride and the innermost reduced one
//     does not (sum over dim 0 of a contiguous [N, M]), a block of up to kColumns adjacent
//     outputs is accumulated together: for each reduced element, one unit-stride pass over the
//     block's inputs into the block's accumulators. Memory is read in order, never with a
//     stride of M as the "outputs" order would.
//   * split: when there are fewer outputs than threads can use (a reduction over everything),
//     each output's reduced range is cut into chunks reduced in parallel, and the partial
//     accumulators are merged in order.
//
// Note [Reduction accuracy]: sums of float32 and float64 both accumulate in double. For
// float32 this makes the rounding error of the sum itself negligible (the only rounding that
// matters is the final one to float32), at the price of a float->double conversion that the
// vectoriser handles. On top, the accumulation is blocked: kLanes independent accumulators
// inside blocks of kBlock elements, block results folded into a running total, so a float64
// sum of n elements errs by about (kBlock / kLanes + n / kBlock) ulps, not n. Products, var,
// logsumexp and the norms accumulate in double too (float32 logsumexp takes its exps from
// exp_f32 in kernels/cpu/vec_math.h, within 1.5 ulp, because std::exp does not vectorise).
// var/std take two passes (the mean, then the sum of squared deviations), which is stable where
// E[x^2] - E[x]^2 cancels catastrophically. Integer and bool sums and products accumulate in
// uint64 (two's complement wrap-around, as torch's int64, without signed-overflow UB) and are
// written as int64.
#include "kernels/cpu/reduce.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/loops.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/strided.h"

namespace metagrad::kernels::cpu {

namespace {

constexpr int64_t kBlock = 4096;   // elements accumulated before folding into the total
constexpr int64_t kColumns = 256;  // outputs accumulated together in the "columns" order

template <typename T>
inline bool is_nan(T x) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::isnan(x);
  } else {
    (void)x;
    return false;
  }
}

using vec::exp_of;  // kernels/cpu/vec_math.h

inline double inverse(double d) {  // 1/d, +inf for d <= 0 (so that 0 * inverse(0) is NaN)
  return d > 0 ? 1.0 / d : std::numeric_limits<double>::infinity();
}

// ---- the ops ---------------------------------------------------------------------------
// An op has: in_t (input scalar), acc_t, kLanes (independent accumulators in a contiguous
// run), identity(), reduce(acc, x, index, output), combine(acc, acc) (associative, and for
// the arg ops order-aware through the indices), store(output, acc).

// acc = sum of map(x, o); output o gets fin(acc, o).
template <typename T, typename Acc, typename Out, typename Map, typename Fin>
struct AddOp {
  using in_t = T;
  using acc_t = Acc;
  static constexpr int kLanes = 8;
  Map map;
  Fin fin;
  Out* out;
  Acc identity() const { return Acc(0); }
  Acc reduce(Acc a, T x, int64_t, int64_t o) const { return a + map(x, o); }
  Acc combine(Acc a, Acc b) const { return a + b; }
  void store(int64_t o, Acc a) const { out[o] = static_cast<Out>(fin(a, o)); }
};
template <typename T, typename Acc, typename Out, typename Map, typename Fin>
AddOp<T, Acc, Out, Map, Fin> add_op(Map map, Fin fin, Out* out) {
  return {map, fin, out};
}

template <typename T, typename Acc, typename Out>
struct MulOp {
  using in_t = T;
  using acc_t = Acc;
  static constexpr int kLanes = 8;
  Out* out;
  Acc identity() const { return Acc(1); }
  Acc reduce(Acc a, T x, int64_t, int64_t) const { return a * static_cast<Acc>(x); }
  Acc combine(Acc a, Acc b) const { return a * b; }
  void store(int64_t o, Acc a) const { out[o] = static_cast<Out>(a); }
};

// Largest (IsMax) or smallest map(x); a NaN wins over everything, as torch.amax.
template <typename T, typename Acc, bool IsMax, typename Map>
struct ExtremeOp {
  using in_t = T;
  using acc_t = Acc;
  static constexpr int kLanes = 8;
  Map map;
  Acc* out;
  Acc identity() const {
    using L = std::numeric_limits<Acc>;
    if constexpr (L::has_infinity) {
      return IsMax ? -L::infinity() : L::infinity();
    } else {
      return IsMax ? L::lowest() : L::max();
    }
  }
  // Both tests always evaluated (no short circuit), so the select needs no branch.
  static Acc pick(Acc a, Acc v) { return ((IsMax ? v > a : v < a) | is_nan(v)) ? v : a; }
  Acc reduce(Acc a, T x, int64_t, int64_t) const { return pick(a, map(x)); }
  Acc combine(Acc a, Acc b) const { return pick(a, b); }
  void store(int64_t o, Acc a) const { out[o] = a; }
};
template <typename T, typename Acc, bool IsMax, typename Map>
ExtremeOp<T, Acc, IsMax, Map> extreme_op(Map map, Acc* out) {
  return {map, out};
}

// Value and index of the largest (IsMax) or smallest element: the first one on ties, the
// first NaN when there is one (torch.max(x, dim) / argmax).
template <typename T, bool IsMax>
struct ArgOp {
  struct acc_t {
    T v;
    int64_t i;  // -1: no element seen yet
  };
  using in_t = T;
  static constexpr int kLanes = 1;  // branchy anyway; one chain keeps "first" trivially right
  T* values;
  int64_t* indices;
  static bool better(T x, T y) { return (IsMax ? x > y : x < y) || (is_nan(x) && !is_nan(y)); }
  acc_t identity() const { return {T{}, -1}; }
  acc_t reduce(acc_t a, T x, int64_t idx, int64_t) const {
    return (a.i < 0 || better(x, a.v)) ? acc_t{x, idx} : a;
  }
  acc_t combine(acc_t a, acc_t b) const {
    if (b.i < 0) return a;
    if (a.i < 0 || better(b.v, a.v)) return b;
    if (better(a.v, b.v)) return a;
    return b.i < a.i ? b : a;  // equal (or both NaN): the earlier one
  }
  void store(int64_t o, acc_t a) const {
    if (values) values[o] = a.v;
    if (indices) indices[o] = a.i;
  }
};

// ---- the engine --------------------------------------------------------------------------

struct Geometry {
  StridedLayout<1> kept, red;
  int64_t n_out = 0, n_red = 0;
};

// Reduces p[0], p[s], ..., p[(n-1)s] (reduced indices idx0, idx0 + 1, ...) for output o,
// blocked as in Note [Reduction accuracy].
template <typename Op>
typename Op::acc_t reduce_run(const Op& op, const typename Op::in_t* p, int64_t n, int64_t s,
                              int64_t idx0, int64_t o) {
  using A = typename Op::acc_t;
  constexpr int L = Op::kLanes;
  A total = op.identity();
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    const auto* q = p + b * s;
    const int64_t i0 = idx0 + b;
    A lane[L];
    for (int k = 0; k < L; ++k) lane[k] = op.identity();
    int64_t i = 0;
    if (s == 1) {  // the contiguous case, separate so that it vectorises
      for (; i + L <= m; i += L)
        for (int k = 0; k < L; ++k) lane[k] = op.reduce(lane[k], q[i + k], i0 + i + k, o);
    } else {
      for (; i + L <= m; i += L)
        for (int k = 0; k < L; ++k) lane[k] = op.reduce(lane[k], q[(i + k) * s], i0 + i + k, o);
    }
    for (; i < m; ++i) lane[0] = op.reduce(lane[0], q[i * s], i0 + i, o);
    A blk = lane[0];
    for (int k = 1; k < L; ++k) blk = op.combine(blk, lane[k]);
    total = op.combine(total, blk);
  }
  return total;
}

// Reduces the reduced elements with linear indices [begin, end) for output o, whose first
// reduced element is at `base`.
template <typename Op>
typename Op::acc_t reduce_range(const Op& op, const typename Op::in_t* base,
                                const StridedLayout<1>& red, int64_t begin, int64_t end,
                                int64_t o) {
  if (red.ndim == 0)  // a single element
    return begin < end ? op.reduce(op.identity(), base[0], 0, o) : op.identity();
  const int last = red.ndim - 1;
  const int64_t inner = red.shape[last], s = red.strides[0][last];
  auto total = op.identity();
  // The first row's offset by division, the next ones by stepping an odometer over the outer
  // reduced dims (short rows, as batch norm's statistics of small feature maps, made the
  // divisions the cost).
  int64_t row = begin / inner, off = 0, idx[kMaxDims] = {};
  red.offsets(row * inner, &off);
  for (int64_t d = last - 1, rem = row; d >= 0; --d) {
    idx[d] = rem % red.shape[d];
    rem /= red.shape[d];
  }
  for (; row * inner < end; ++row) {
    const int64_t lo = std::max(begin, row * inner), hi = std::min(end, (row + 1) * inner);
    total =
        op.combine(total, reduce_run(op, base + off + (lo - row * inner) * s, hi - lo, s, lo, o));
    for (int64_t d = last - 1; d >= 0; --d) {  // next row
      off += red.strides[0][d];
      if (++idx[d] < red.shape[d]) break;
      off -= red.strides[0][d] * red.shape[d];
      idx[d] = 0;
    }
  }
  return total;
}

template <typename Op>
void order_outputs(const Op& op, const typename Op::in_t* in, const Geometry& g, bool par) {
  parallel_for(g.n_out, par, [&](int64_t o) {
    int64_t off;
    g.kept.offsets(o, &off);
    op.store(o, reduce_range(op, in + off, g.red, 0, g.n_red, o));
  });
}

template <typename Op>
void order_columns(const Op& op, const typename Op::in_t* in, const Geometry& g, bool par) {
  using A = typename Op::acc_t;
  const int64_t K = g.kept.shape[g.kept.ndim - 1];  // unit stride
  const int64_t blocks = (K + kColumns - 1) / kColumns;
  const int64_t items = (g.n_out / K) * blocks;
  const int rlast = g.red.ndim - 1;
  const int64_t inner = g.red.shape[rlast], s = g.red.strides[0][rlast];
  const int64_t red_rows = g.n_red / inner;
  parallel_for(items, par, [&](int64_t it) {
    const int64_t r = it / blocks, j0 = (it % blocks) * kColumns;
    const int64_t w = std::min(kColumns, K - j0), o0 = r * K + j0;
    int64_t koff;
    g.kept.offsets(r * K, &koff);
    const auto* base = in + koff + j0;
    A acc[kColumns], tot[kColumns];
    for (int64_t j = 0; j < w; ++j) acc[j] = tot[j] = op.identity();
    int64_t since_fold = 0;
    const auto fold = [&] {  // blocked accumulation, Note [Reduction accuracy]
      for (int64_t j = 0; j < w; ++j) {
        tot[j] = op.combine(tot[j], acc[j]);
        acc[j] = op.identity();
      }
      since_fold = 0;
    };
    for (int64_t rr = 0; rr < red_rows; ++rr) {
      int64_t roff;
      g.red.offsets(rr * inner, &roff);
      int64_t i = 0;
      // Four reduced elements per pass over the block: one load and store of each accumulator
      // per four inputs (the elements still go into it in order).
      for (; i + 4 <= inner; i += 4) {
        const auto* p = base + roff + i * s;
        const int64_t q = rr * inner + i;
        for (int64_t j = 0; j < w; ++j) {
          A a = op.reduce(acc[j], p[j], q, o0 + j);
          a = op.reduce(a, p[s + j], q + 1, o0 + j);
          a = op.reduce(a, p[2 * s + j], q + 2, o0 + j);
          acc[j] = op.reduce(a, p[3 * s + j], q + 3, o0 + j);
        }
        if ((since_fold += 4) >= kBlock) fold();
      }
      for (; i < inner; ++i) {
        const auto* p = base + roff + i * s;
        const int64_t q = rr * inner + i;
        for (int64_t j = 0; j < w; ++j) acc[j] = op.reduce(acc[j], p[j], q, o0 + j);
        if (++since_fold >= kBlock) fold();
      }
    }
    for (int64_t j = 0; j < w; ++j) op.store(o0 + j, op.combine(tot[j], acc[j]));
  });
}

template <typename Op>
void order_split(const Op& op, const typename Op::in_t* in, const Geometry& g, int threads) {
  using A = typename Op::acc_t;
  const int64_t chunks =
      std::max<int64_t>(1, std::min<int64_t>(int64_t{4} * threads, g.n_red / kBlock));
  const int64_t len = (g.n_red + chunks - 1) / chunks;
  std::vector<A> partial(static_cast<size_t>(g.n_out * chunks));
#pragma omp parallel for schedule(static)
  for (int64_t it = 0; it < g.n_out * chunks; ++it) {
    const int64_t o = it / chunks, c = it % chunks;
    int64_t off;
    g.kept.offsets(o, &off);
    const int64_t begin = std::min(g.n_red, c * len), end = std::min(g.n_red, begin + len);
    partial[static_cast<size_t>(it)] = reduce_range(op, in + off, g.red, begin, end, o);
  }
  for (int64_t o = 0; o < g.n_out; ++o) {
    A a = op.identity();
    for (int64_t c = 0; c < chunks; ++c)
      a = op.combine(a, partial[static_cast<size_t>(o * chunks + c)]);
    op.store(o, a);
  }
}

// Picks the loop order (Note [Reduction loop orders]) and runs `op` over the whole input.
template <typename Op>
void run(const Geometry& g, const void* data, const Op& op) {
  const auto* in = static_cast<const typename Op::in_t*>(data);
  if (g.n_out == 0) return;
  if (g.n_red == 0) {
    for (int64_t o = 0; o < g.n_out; ++o) op.store(o, op.identity());
    return;
  }
  const int threads = omp_get_max_threads();
  const bool par = threads > 1 && g.n_out * g.n_red >= kParallelGrain;
  const bool kept_unit = g.kept.ndim > 0 && g.kept.strides[0][g.kept.ndim - 1] == 1;
  const bool red_unit = g.red.ndim == 0 || g.red.strides[0][g.red.ndim - 1] == 1;
  if (par && g.n_out < 2 * threads) {
    order_split(op, in, g, threads);
  } else if (kept_unit && !red_unit) {
    order_columns(op, in, g, par);
  } else {
    order_outputs(op, in, g, par);
  }
}

// Integer and bool sums/products: uint64 accumulation, int64 result (Note [Reduction accuracy]).
template <typename T>
using add_acc_t = std::conditional_t<std::is_floating_point_v<T>, double, uint64_t>;
template <typename T>
using add_out_t = std::conditional_t<std::is_floating_point_v<T>, T, int64_t>;

template <typename T>
void run_norm(const Geometry& g, const void* in, T* out, double p) {
  const auto keep = [](double a, int64_t) { return a; };
  const auto abs_d = [](T x) { return std::abs(static_cast<double>(x)); };
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (p == 2) {
    run(g, in,
        add_op<T, double>([](T x, int64_t) { return double(x) * double(x); },
                          [](double a, int64_t) { return std::sqrt(a); }, out));
  } else if (p == 1) {
    run(g, in, add_op<T, double>([](T x, int64_t) { return std::abs(double(x)); }, keep, out));
  } else if (p == 0) {  // the number of nonzero elements
    run(g, in, add_op<T, double>([](T x, int64_t) { return x != T(0) ? 1.0 : 0.0; }, keep, out));
  } else if (p == inf || p == -inf) {
    std::vector<double> r(static_cast<size_t>(g.n_out));
    if (p > 0)
      run(g, in, extreme_op<T, double, true>(abs_d, r.data()));
    else
      run(g, in, extreme_op<T, double, false>(abs_d, r.data()));
    for (size_t o = 0; o < r.size(); ++o) out[o] = static_cast<T>(r[o]);
  } else {
    run(g, in,
        add_op<T, double>([p](T x, int64_t) { return std::pow(std::abs(double(x)), p); },
                          [p](double a, int64_t) { return std::pow(a, 1.0 / p); }, out));
  }
}

}  // namespace

void reduce(ReduceOp op, const ReduceInput& in, void* values, int64_t* indices, double param) {
  Geometry g;
  g.kept = StridedLayout<1>::make(in.kept_rank, in.kept_shape, {in.kept_strides});
  g.red = StridedLayout<1>::make(in.red_rank, in.red_shape, {in.red_strides});
  g.n_out = g.kept.numel;
  g.n_red = g.red.numel;
  const auto id = [](auto x, int64_t) { return x; };
  const double n = static_cast<double>(g.n_red);
  switch (op) {
    case ReduceOp::Sum:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        using Acc = add_acc_t<T>;
        run(g, in.data,
            add_op<T, Acc>([](T x, int64_t) { return static_cast<Acc>(x); }, id,
                           static_cast<add_out_t<T>*>(values)));
      });
    case ReduceOp::Mean:
      return MG_DISPATCH_FLOAT(in.dtype, [&] {
        using T = scalar_t;
        const double scale = inverse(n);
        run(g, in.data,
            add_op<T, double>([](T x, int64_t) { return double(x); },
                              [scale](double a, int64_t) { return a * scale; },
                              static_cast<T*>(values)));
      });
    case ReduceOp::Prod:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        run(g, in.data, MulOp<T, add_acc_t<T>, add_out_t<T>>{static_cast<add_out_t<T>*>(values)});
      });
    case ReduceOp::Max:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        run(g, in.data, extreme_op<T, T, true>([](T x) { return x; }, static_cast<T*>(values)));
      });
    case ReduceOp::Min:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        run(g, in.data, extreme_op<T, T, false>([](T x) { return x; }, static_cast<T*>(values)));
      });
    case ReduceOp::ArgMax:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        run(g, in.data, ArgOp<T, true>{static_cast<T*>(values), indices});
      });
    case ReduceOp::ArgMin:
      return MG_DISPATCH_ALL(in.dtype, [&] {
        using T = scalar_t;
        run(g, in.data, ArgOp<T, false>{static_cast<T*>(values), indices});
      });
    case ReduceOp::Var:
    case ReduceOp::Std:
      return MG_DISPATCH_FLOAT(in.dtype, [&] {
        using T = scalar_t;
        // Pass 1: the mean of each output's elements, in double.
        std::vector<double> mean(static_cast<size_t>(g.n_out));
        const double inv_n = inverse(n);
        run(g, in.data,
            add_op<T, double>([](T x, int64_t) { return double(x); },
                              [inv_n](double a, int64_t) { return a * inv_n; }, mean.data()));
        // Pass 2: the sum of squared deviations from it.
        const double* c = mean.data();
        const double scale = inverse(std::max(0.0, n - param));
        const bool root = op == ReduceOp::Std;
        run(g, in.data,
            add_op<T, double>(
                [c](T x, int64_t o) {
                  const double d = double(x) - c[o];
                  return d * d;
                },
                [scale, root](double a, int64_t) {
                  return root ? std::sqrt(a * scale) : a * scale;
                },
                static_cast<T*>(values)));
      });
    case ReduceOp::LogSumExp:
      return MG_DISPATCH_FLOAT(in.dtype, [&] {
        using T = scalar_t;
        // Pass 1: each output's max m, so that exp(x - m) <= 1 cannot overflow. Where m is
        // infinite, shift by 0 instead: a row of -inf then gives log(0) = -inf and a +inf
        // gives +inf, rather than the NaN of inf - inf (torch does the same).
        std::vector<double> m(static_cast<size_t>(g.n_out));
        run(g, in.data, extreme_op<T, double, true>([](T x) { return double(x); }, m.data()));
        for (double& v : m)
          if (std::isinf(v)) v = 0;
        const double* c = m.data();
        run(g, in.data,
            add_op<T, double>(
                [c](T x, int64_t o) { return double(exp_of<T>(x - static_cast<T>(c[o]))); },
                [c](double a, int64_t o) { return std::log(a) + c[o]; }, static_cast<T*>(values)));
      });
    case ReduceOp::Norm:
      return MG_DISPATCH_FLOAT(
          in.dtype, [&] { run_norm<scalar_t>(g, in.data, static_cast<scalar_t*>(values), param); });
  }
}

}  // namespace metagrad::kernels::cpu
