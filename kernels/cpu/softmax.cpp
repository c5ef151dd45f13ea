// The fused CPU softmax / log_softmax: per row one pass for the max, one for the sum of
// exp(x - max) (softmax stores those exps in the output on the way), one that writes. The
// composition x - logsumexp(x) it replaces made five passes and two temporaries.
//
// Note [Fused softmax on the CPU]: the tensor layer hands over a contiguous input seen as
// [outer, n, inner], the softmax running over n. Two loop shapes:
//   * rows (inner == 1, softmax over the last dim): a row is n contiguous elements, each
//     pass a unit-stride loop with kLanes accumulators that GCC vectorises; OpenMP over rows.
//   * columns (inner > 1): a block of up to kColumns adjacent columns of one outer index is
//     processed together, each pass walking the n rows of the block in order, so memory is
//     read with unit stride (never `inner` apart); OpenMP over the blocks.
// Accuracy as logsumexp's (Note [Reduction accuracy] in kernels/cpu/reduce.cpp): the sum of
// exps accumulates in double, blocked every kBlock terms; float32 exps come from exp_f32
// (within 1.5 ulp), and log_softmax computes (x - shift) - log(sum) in double (x - shift is
// exact near the max, so large magnitudes lose nothing), rounding once.
// The shift is the row max, or 0 where the max is infinite, so a row of -inf gives NaN (0 / 0),
// as does an entry +inf; a -inf entry gives -inf (log) or 0; a NaN spreads over its row.
#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/loops.h"
#include "kernels/cpu/vec_math.h"

namespace metagrad::kernels::cpu {

namespace {

using vec::exp_of;

constexpr int kLanes = 8;          // independent accumulators in a contiguous run
constexpr int64_t kBlock = 4096;   // terms summed before folding into the running total
constexpr int64_t kColumns = 256;  // columns processed together in the columns shape

// The largest element (NaN is skipped here; it reaches the sum, which spreads it).
template <typename T>
T row_max(const T* x, int64_t n) {
  T lane[kLanes];
  for (T& l : lane) l = -std::numeric_limits<T>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lane[k] = x[i + k] > lane[k] ? x[i + k] : lane[k];
  for (; i < n; ++i) lane[0] = x[i] > lane[0] ? x[i] : lane[0];
  T m = lane[0];
  for (int k = 1; k < kLanes; ++k) m = lane[k] > m ? lane[k] : m;
  return m;
}

// The shift for exp: the max, or 0 for a row of -inf (no -inf - -inf). A +inf max stays: inf -
// inf = NaN makes the whole row NaN, as PyTorch's softmax (online::softmax_finish on the GPU).
template <typename T>
T shift_of(T m) {
  return m == -std::numeric_limits<T>::infinity() ? T(0) : m;
}

// sum of exp(x[i] - shift) in double, blocked; when `e` is given the exps are stored there.
template <typename T>
double row_sum_exp(const T* x, T* e, int64_t n, T shift) {
  double total = 0;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = std::min(kBlock, n - b);
    const T* p = x + b;
    double lane[kLanes] = {};
    int64_t i = 0;
    if (e) {
      T* q = e + b;
      for (; i + kLanes <= len; i += kLanes)
        for (int k = 0; k < kLanes; ++k) {
          const T v = exp_of<T>(p[i + k] - shift);
          q[i + k] = v;
          lane[k] += static_cast<double>(v);
        }
      for (; i < len; ++i) {
        const T v = exp_of<T>(p[i] - shift);
        q[i] = v;
        lane[0] += static_cast<double>(v);
      }
    } else {
      for (; i + kLanes <= len; i += kLanes)
        for (int k = 0; k < kLanes; ++k)
          lane[k] += static_cast<double>(exp_of<T>(p[i + k] - shift));
      for (; i < len; ++i) lane[0] += static_cast<double>(exp_of<T>(p[i] - shift));
    }
    double blk = lane[0];
    for (int k = 1; k < kLanes; ++k) blk += lane[k];
    total += blk;
  }
  return total;
}

template <typename T>
void softmax_row(bool log, const T* x, T* y, int64_t n) {
  const T shift = shift_of(row_max(x, n));
  const double s = row_sum_exp(x, log ? nullptr : y, n, shift);
  if (log) {
    const double ds = static_cast<double>(shift), ls = std::log(s);
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>((static_cast<double>(x[i]) - ds) - ls);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(static_cast<double>(y[i]) / s);
  }
}

// Columns [0, w) of one outer index: element (i, j) at x[i * inner + j].
template <typename T>
void softmax_columns(bool log, const T* x, T* y, int64_t n, int64_t inner, int64_t w) {
  T shift[kColumns];
  double acc[kColumns], tot[kColumns];
  for (int64_t j = 0; j < w; ++j) shift[j] = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const T* r = x + i * inner;
    for (int64_t j = 0; j < w; ++j) shift[j] = r[j] > shift[j] ? r[j] : shift[j];
  }
  for (int64_t j = 0; j < w; ++j) {
    shift[j] = shift_of(shift[j]);
    acc[j] = tot[j] = 0;
  }
  for (int64_t i = 0; i < n; ++i) {
    const T* r = x + i * inner;
    if (log) {
      for (int64_t j = 0; j < w; ++j) acc[j] += static_cast<double>(exp_of<T>(r[j] - shift[j]));
    } else {
      T* q = y + i * inner;
      for (int64_t j = 0; j < w; ++j) {
        const T v = exp_of<T>(r[j] - shift[j]);
        q[j] = v;
        acc[j] += static_cast<double>(v);
      }
    }
    if ((i + 1) % kBlock == 0 || i + 1 == n)  // blocked accumulation, as in the rows
      for (int64_t j = 0; j < w; ++j) {
        tot[j] += acc[j];
        acc[j] = 0;
      }
  }
  if (log) {
    for (int64_t j = 0; j < w; ++j) tot[j] = std::log(tot[j]);
    for (int64_t i = 0; i < n; ++i) {
      const T* r = x + i * inner;
      T* q = y + i * inner;
      for (int64_t j = 0; j < w; ++j)
        q[j] = static_cast<T>((static_cast<double>(r[j]) - static_cast<double>(shift[j])) - tot[j]);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      T* q = y + i * inner;
      for (int64_t j = 0; j < w; ++j) q[j] = static_cast<T>(static_cast<double>(q[j]) / tot[j]);
    }
  }
}

// The two loop shapes of Note [Fused softmax on the CPU], shared by the forward and the
// backward: row(off) for each row (inner == 1), else columns(off, w) for each block of up to
// kColumns adjacent columns; `off` is the element offset where the row or block starts.
template <typename Row, typename Columns>
void over_rows_or_columns(int64_t outer, int64_t n, int64_t inner, Row row, Columns columns) {
  const bool big = outer * n * inner >= kParallelGrain;
  if (inner == 1) {
    parallel_for(outer, big, [&](int64_t o) { row(o * n); });
    return;
  }
  const int64_t blocks = (inner + kColumns - 1) / kColumns;
  parallel_for(outer * blocks, big && outer * blocks > 1, [&](int64_t it) {
    const int64_t o = it / blocks, j0 = (it % blocks) * kColumns;
    columns(o * n * inner + j0, std::min(kColumns, inner - j0));
  });
}

template <typename T>
void run(bool log, int64_t outer, int64_t n, int64_t inner, const T* x, T* y) {
  over_rows_or_columns(
      outer, n, inner, [&](int64_t off) { softmax_row(log, x + off, y + off, n); },
      [&](int64_t off, int64_t w) { softmax_columns(log, x + off, y + off, n, inner, w); });
}

// Note [Fused cross-entropy]: loss[r] = -log_softmax(x[r])[t[r]] = log(s) - (x[r, t] - shift),
// with the row's shift and s = sum exp(x - shift) as softmax_row has them, so the value is
// bitwise that of log_softmax followed by the pick (the negation is exact). The backward
// recomputes the row's statistics (cheaper than saving them, and exact in double where a
// saved float32 logsumexp would cost precision for large logits), keeping the exps in dx on
// the way as softmax does, then scales them: dx = exp(x - shift) (g / s), less g at the
// target. Special values as softmax's: NaN rows where s is 0 or infinite.
struct RowStats {
  double shift, log_s;
};

template <typename T>
RowStats row_stats(const T* x, int64_t n) {
  const T shift = shift_of(row_max(x, n));
  return {static_cast<double>(shift), std::log(row_sum_exp<T>(x, nullptr, n, shift))};
}

// True if every target lies in [0, n); else false with *bad the first that does not.
bool first_bad_target(int64_t rows, int64_t n, const int64_t* t, int64_t* bad) {
  for (int64_t r = 0; r < rows; ++r)
    if (t[r] < 0 || t[r] >= n) {
      *bad = t[r];
      return false;
    }
  return true;
}

template <typename T>
bool ce_forward(int64_t rows, int64_t n, const T* x, const int64_t* t, T* loss, int64_t* bad) {
  if (!first_bad_target(rows, n, t, bad)) return false;  // nothing is written for a bad one
  parallel_for(rows, rows * n >= kParallelGrain && rows > 1, [&](int64_t r) {
    const T* xr = x + r * n;
    const RowStats st = row_stats(xr, n);
    loss[r] = static_cast<T>(st.log_s - (static_cast<double>(xr[t[r]]) - st.shift));
  });
  return true;
}

template <typename T>
void ce_backward(int64_t rows, int64_t n, const T* g, const T* x, const int64_t* t, T* dx) {
  parallel_for(rows, rows * n >= kParallelGrain && rows > 1, [&](int64_t r) {
    const T* xr = x + r * n;
    T* dr = dx + r * n;
    const T shift = shift_of(row_max(xr, n));
    const double s = row_sum_exp(xr, dr, n, shift);  // dr holds exp(x - shift) for now
    const double gr = static_cast<double>(g[r]), scale = gr / s;
    for (int64_t c = 0; c < n; ++c) dr[c] = static_cast<T>(static_cast<double>(dr[c]) * scale);
    const int64_t tr = t[r];  // the target's term: g (p - 1)
    dr[tr] = static_cast<T>(static_cast<double>(exp_of<T>(xr[tr] - shift)) * scale - gr);
  });
}

// Note [Fused softmax backward]: with y the op's output and g the gradient reaching it,
//   softmax:      dx = y (g - sum(g y))      log_softmax:  dx = g - e^y sum(g)
// (autograd/derivatives.cpp derives both). One pass gathers the sum (in double, as the
// forward's), one writes dx, in the forward's two loop shapes; the composition ran four ops
// and two temporaries: [4096, 1024] float32 softmax 3.05 -> 0.98 ms, log_softmax 7.9 -> 2.24
// ms (bench_softmax BM_SoftmaxBackward, 2 threads). Only first derivatives take it: under
// create_graph the rule is the composition, which records a graph of its own.
template <typename T>
double row_dot(bool log, const T* g, const T* y, int64_t n) {
  double lane[kLanes] = {};
  int64_t i = 0;
  if (log) {
    for (; i + kLanes <= n; i += kLanes)
      for (int k = 0; k < kLanes; ++k) lane[k] += static_cast<double>(g[i + k]);
    for (; i < n; ++i) lane[0] += static_cast<double>(g[i]);
  } else {
    for (; i + kLanes <= n; i += kLanes)
      for (int k = 0; k < kLanes; ++k)
        lane[k] += static_cast<double>(g[i + k]) * static_cast<double>(y[i + k]);
    for (; i < n; ++i) lane[0] += static_cast<double>(g[i]) * static_cast<double>(y[i]);
  }
  double total = lane[0];
  for (int k = 1; k < kLanes; ++k) total += lane[k];
  return total;
}

// dx from the sums (one per column of a w-wide run; w = 1 for a row): y (g - s), or g - e^y s,
// in T with s rounded to T, as the formula in ops computes them (its sum, too, adds in double
// and rounds once). Two loops, not a branch per element, so that both vectorise.
template <typename T>
void write_backward(bool log, const T* __restrict g, const T* __restrict y, T* __restrict dx,
                    const T* s, int64_t w) {
  if (log) {
    for (int64_t j = 0; j < w; ++j) dx[j] = g[j] - exp_of<T>(y[j]) * s[j];
  } else {
    for (int64_t j = 0; j < w; ++j) dx[j] = y[j] * (g[j] - s[j]);
  }
}

template <typename T>
void softmax_backward_columns(bool log, const T* g, const T* y, T* dx, int64_t n, int64_t inner,
                              int64_t w) {
  double tot[kColumns] = {};
  for (int64_t i = 0; i < n; ++i) {
    const T* gr = g + i * inner;
    const T* yr = y + i * inner;
    if (log) {
      for (int64_t j = 0; j < w; ++j) tot[j] += static_cast<double>(gr[j]);
    } else {
      for (int64_t j = 0; j < w; ++j)
        tot[j] += static_cast<double>(gr[j]) * static_cast<double>(yr[j]);
    }
  }
  T st[kColumns];
  for (int64_t j = 0; j < w; ++j) st[j] = static_cast<T>(tot[j]);
  for (int64_t i = 0; i < n; ++i)
    write_backward(log, g + i * inner, y + i * inner, dx + i * inner, st, w);
}

template <typename T>
void backward_row(bool log, const T* g, const T* y, T* dx, int64_t n) {
  const T s = static_cast<T>(row_dot(log, g, y, n));
  if (log) {
    for (int64_t i = 0; i < n; ++i) dx[i] = g[i] - exp_of<T>(y[i]) * s;
  } else {
    for (int64_t i = 0; i < n; ++i) dx[i] = y[i] * (g[i] - s);
  }
}

template <typename T>
void run_backward(bool log, int64_t outer, int64_t n, int64_t inner, const T* g, const T* y,
                  T* dx) {
  over_rows_or_columns(
      outer, n, inner, [&](int64_t off) { backward_row(log, g + off, y + off, dx + off, n); },
      [&](int64_t off, int64_t w) {
        softmax_backward_columns(log, g + off, y + off, dx + off, n, inner, w);
      });
}

}  // namespace

void softmax_backward(DType dtype, bool log, int64_t outer, int64_t n, int64_t inner, const void* g,
                      const void* y, void* dx) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    run_backward(log, outer, n, inner, static_cast<const scalar_t*>(g),
                 static_cast<const scalar_t*>(y), static_cast<scalar_t*>(dx));
  });
}

void softmax(DType dtype, bool log, int64_t outer, int64_t n, int64_t inner, const void* x,
             void* y) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    run(log, outer, n, inner, static_cast<const scalar_t*>(x), static_cast<scalar_t*>(y));
  });
}

bool cross_entropy_forward(DType dtype, int64_t rows, int64_t n, const void* x,
                           const int64_t* target, void* loss, int64_t* bad) {
  return MG_DISPATCH_FLOAT(dtype, [&] {
    return ce_forward(rows, n, static_cast<const scalar_t*>(x), target,
                      static_cast<scalar_t*>(loss), bad);
  });
}

bool cross_entropy_backward(DType dtype, int64_t rows, int64_t n, const void* g, const void* x,
                            const int64_t* target, void* dx, int64_t* bad) {
  if (!first_bad_target(rows, n, target, bad)) return false;
  MG_DISPATCH_FLOAT(dtype, [&] {
    ce_backward(rows, n, static_cast<const scalar_t*>(g), static_cast<const scalar_t*>(x), target,
                static_cast<scalar_t*>(dx));
  });
  return true;
}

}  // namespace metagrad::kernels::cpu
