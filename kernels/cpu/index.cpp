// CPU loops of the indexing ops (declared in index.h): index range checks, gather,
// scatter_add, one_hot and pad. The tensor layer (tensor/indexing.cpp) checks arguments,
// allocates and calls in here.
#include "kernels/cpu/index.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/cpu/loops.h"
#include "kernels/strided.h"

namespace metagrad::kernels::cpu {

namespace {

// for_each_piece (loops.h) with two additions: the piece also receives the row-major
// position of its first element, and `cost` (work per element of the layout) scales both the
// parallel threshold and the piece size, so loops that do a lot per element still split.
template <int N, typename Piece>
void for_each_piece_at(const StridedLayout<N>& L, int64_t cost, Piece piece) {
  if (L.numel == 0) return;
  int64_t zero[N] = {};
  if (L.ndim == 0) {
    piece(int64_t{0}, zero, zero, int64_t{1});
    return;
  }
  const int last = L.ndim - 1;
  const int64_t inner = L.shape[last];
  const int64_t outer = L.numel / inner;
  const int64_t chunk = std::max<int64_t>(1, kChunk / std::max<int64_t>(cost, 1));
  int64_t inner_strides[N];
  for (int k = 0; k < N; ++k) inner_strides[k] = L.strides[k][last];
  const int64_t chunks_per_row = (inner + chunk - 1) / chunk;
  const int64_t items = outer * chunks_per_row;
  parallel_for(items, L.numel * cost >= kParallelGrain && items > 1, [&](int64_t it) {
    const int64_t r = it / chunks_per_row, c = it % chunks_per_row;
    int64_t off[N];
    L.offsets(r * inner, off);
    const int64_t begin = c * chunk;
    const int64_t n = std::min(chunk, inner - begin);
    for (int k = 0; k < N; ++k) off[k] += begin * inner_strides[k];
    piece(r * inner + begin, static_cast<const int64_t*>(off),
          static_cast<const int64_t*>(inner_strides), n);
  });
}

// v outside [0, bound) (bound >= 0), in one unsigned comparison that vectorises.
inline bool out_of_range(int64_t v, int64_t bound) {
  return static_cast<uint64_t>(v) >= static_cast<uint64_t>(bound);
}

void atomic_min(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load(std::memory_order_relaxed);
  while (v < cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}
void atomic_max(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load(std::memory_order_relaxed);
  while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

template <typename I>
bool find_out_of_range_impl(Extent e, Operand index, int64_t bound, int64_t* bad) {
  auto L = StridedLayout<1>::make(e.rank, e.shape, {index.strides});
  const I* base = static_cast<const I*>(index.data);
  std::atomic<int64_t> first{std::numeric_limits<int64_t>::max()};
  for_each_piece_at<1>(L, 1, [&](int64_t at, const int64_t* off, const int64_t* st, int64_t n) {
    const I* p = base + off[0];
    bool any = false;  // a branch-free scan first: the common case has no bad index
    for (int64_t i = 0; i < n; ++i) any |= out_of_range(static_cast<int64_t>(p[i * st[0]]), bound);
    if (!any) return;
    for (int64_t i = 0; i < n; ++i)
      if (out_of_range(static_cast<int64_t>(p[i * st[0]]), bound)) {
        atomic_min(first, at + i);
        return;
      }
  });
  const int64_t pos = first.load();
  if (pos == std::numeric_limits<int64_t>::max()) return false;
  int64_t off = 0;
  L.offsets(pos, &off);
  *bad = static_cast<int64_t>(base[off]);
  return true;
}

template <typename I>
void min_max_impl(Extent e, Operand index, int64_t* mn, int64_t* mx) {
  auto L = StridedLayout<1>::make(e.rank, e.shape, {index.strides});
  const I* base = static_cast<const I*>(index.data);
  std::atomic<int64_t> lo{std::numeric_limits<int64_t>::max()};
  std::atomic<int64_t> hi{std::numeric_limits<int64_t>::min()};
  for_each_piece_at<1>(L, 1, [&](int64_t, const int64_t* off, const int64_t* st, int64_t n) {
    const I* p = base + off[0];
    int64_t a = std::numeric_limits<int64_t>::max(), b = std::numeric_limits<int64_t>::min();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = static_cast<int64_t>(p[i * st[0]]);
      a = std::min(a, v);
      b = std::max(b, v);
    }
    atomic_min(lo, a);
    atomic_max(hi, b);
  });
  *mn = lo.load();
  *mx = hi.load();
}

template <typename T, typename I>
bool gather_impl(Extent e, Operand out, Operand src, Operand index, int64_t sd, int64_t size) {
  auto L = StridedLayout<3>::make(e.rank, e.shape, {out.strides, src.strides, index.strides});
  if (L.numel == 0) return true;
  if (size == 0) return false;  // every index is out of range, and src has nothing to read
  std::atomic<bool> ok{true};
  for_each_piece_at<3>(L, 1, [&](int64_t, const int64_t* off, const int64_t* st, int64_t n) {
    T* o = static_cast<T*>(out.data) + off[0];
    const T* s = static_cast<const T*>(src.data) + off[1];
    const I* ix = static_cast<const I*>(index.data) + off[2];
    if (st[2] == 0) {  // one index for the whole piece (index_select rows): a strided copy
      const int64_t v = static_cast<int64_t>(ix[0]);
      if (out_of_range(v, size)) {
        ok.store(false, std::memory_order_relaxed);
        return;
      }
      const T* row = s + v * sd;
      if (st[0] == 1 && st[1] == 1) {
        std::memcpy(o, row, static_cast<size_t>(n) * sizeof(T));
      } else {
        for (int64_t i = 0; i < n; ++i) o[i * st[0]] = row[i * st[1]];
      }
      return;
    }
    // A bad index reads element 0 of its row (always in bounds, since size > 0) and is
    // reported afterwards; the output is then discarded by the caller.
    bool bad = false;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = static_cast<int64_t>(ix[i * st[2]]);
      const bool b = out_of_range(v, size);
      bad |= b;
      o[i * st[0]] = s[i * st[1] + (b ? 0 : v) * sd];
    }
    if (bad) ok.store(false, std::memory_order_relaxed);
  });
  return ok.load();
}

template <typename T>
inline T add(T a, T b) {
  if constexpr (std::is_same_v<T, bool>)
    return a || b;  // bool "+" is "or", as in PyTorch
  else
    return static_cast<T>(a + b);
}

template <typename T, typename I>
void scatter_add_impl(Extent e, int dim, Operand self, Operand index, Operand src, int64_t sd) {
  // Iterate over the index shape with `dim` collapsed to size 1; each position then runs over
  // the K entries along `dim` itself. Two positions of this outer layout never write the same
  // element of self, so threads never collide and each element sums in a fixed order.
  int64_t shape[kMaxDims];
  std::copy(e.shape, e.shape + e.rank, shape);
  const int64_t K = shape[dim];
  shape[dim] = 1;
  if (K == 0) return;
  auto L = StridedLayout<3>::make(e.rank, shape, {self.strides, index.strides, src.strides});
  const int64_t ik = index.strides[dim], sk = src.strides[dim];
  for_each_piece_at<3>(L, K, [&](int64_t, const int64_t* off, const int64_t* st, int64_t n) {
    T* o = static_cast<T*>(self.data) + off[0];
    const I* ix = static_cast<const I*>(index.data) + off[1];
    const T* s = static_cast<const T*>(src.data) + off[2];
    // Walk whichever of the two directions is closer together in memory innermost.
    if (n == 1 || std::abs(ik) <= std::abs(st[1])) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < K; ++k) {
          T& d = o[i * st[0] + static_cast<int64_t>(ix[i * st[1] + k * ik]) * sd];
          d = add(d, s[i * st[2] + k * sk]);
        }
    } else {
      for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < n; ++i) {
          T& d = o[i * st[0] + static_cast<int64_t>(ix[i * st[1] + k * ik]) * sd];
          d = add(d, s[i * st[2] + k * sk]);
        }
    }
  });
}

template <typename T>
void pad_impl(int rank, const int64_t* oshape, T* out, const T* src, const int64_t* sst,
              const int64_t* maps, T value) {
  if (rank == 0) {
    out[0] = src[0];
    return;
  }
  const int64_t* map[kMaxDims];
  int64_t rows = 1;
  int64_t at = 0;
  for (int d = 0; d < rank; at += oshape[d], ++d) {
    map[d] = maps + at;
    if (d < rank - 1) rows *= oshape[d];
  }
  const int last = rank - 1;
  const int64_t W = oshape[last], sl = sst[last];
  if (rows == 0 || W == 0) return;
  const int64_t* ml = map[last];
  // [a, b): the run of the last dim that maps to consecutive source elements (the copied
  // middle of every row); the rest of the row goes through the map one element at a time.
  int64_t a = 0;
  while (a < W && !(ml[a] >= 0 && (a + 1 == W || ml[a + 1] == ml[a] + 1))) ++a;
  int64_t b = a;
  while (b < W && ml[b] >= 0 && ml[b] == ml[a] + (b - a)) ++b;

  parallel_region(rows * W >= kParallelGrain && rows > 1, [&](int64_t t, int64_t nt) {
    const int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    int64_t coord[kMaxDims] = {};
    for (int64_t r = r0, d = last - 1; d >= 0; --d) {
      coord[d] = r % oshape[d];
      r /= oshape[d];
    }
    for (int64_t r = r0; r < r1; ++r) {
      T* o = out + r * W;
      int64_t soff = 0;
      bool inside = true;
      for (int d = 0; d < last; ++d) {
        const int64_t m = map[d][coord[d]];
        inside = inside && m >= 0;
        soff += m * sst[d];
      }
      if (!inside) {
        std::fill(o, o + W, value);
      } else {
        const T* p = src + soff;
        for (int64_t x = 0; x < a; ++x) o[x] = ml[x] < 0 ? value : p[ml[x] * sl];
        const T* q = p + (a < b ? ml[a] * sl : 0);
        if (sl == 1) {
          std::copy(q, q + (b - a), o + a);
        } else {
          for (int64_t x = a; x < b; ++x) o[x] = q[(x - a) * sl];
        }
        for (int64_t x = b; x < W; ++x) o[x] = ml[x] < 0 ? value : p[ml[x] * sl];
      }
      for (int d = last - 1; d >= 0; --d) {  // next row
        if (++coord[d] < oshape[d]) break;
        coord[d] = 0;
      }
    }
  });
}

template <typename I>
void one_hot_impl(int64_t n, const I* labels, int64_t* out, int64_t num_classes) {
  parallel_for(n, n * num_classes >= kParallelGrain,
               [&](int64_t i) { out[i * num_classes + static_cast<int64_t>(labels[i])] = 1; });
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
                 Operand src, int64_t self_dim_stride, int64_t /*self_dim_size: checked above*/) {
  MG_DISPATCH_INDEX("scatter_add", index_t, [&] {
    using I = scalar_t;
    MG_DISPATCH_ALL(
        dtype, [&] { scatter_add_impl<scalar_t, I>(e, dim, self, index, src, self_dim_stride); });
  });
}

void one_hot(DType label_t, int64_t n, const void* labels, int64_t* out, int64_t num_classes) {
  MG_DISPATCH_INDEX("one_hot", label_t, [&] {
    one_hot_impl(n, static_cast<const scalar_t*>(labels), out, num_classes);
  });
}

void pad(DType dtype, int rank, const int64_t* out_shape, void* out, const void* src,
         const int64_t* src_strides, const int64_t* maps, double value) {
  MG_DISPATCH_ALL(dtype, [&] {
    scalar_t v;
    if constexpr (std::is_same_v<scalar_t, bool>)
      v = value != 0;
    else
      v = static_cast<scalar_t>(value);
    pad_impl<scalar_t>(rank, out_shape, static_cast<scalar_t*>(out),
                       static_cast<const scalar_t*>(src), src_strides, maps, v);
  });
}

}  // namespace metagrad::kernels::cpu
