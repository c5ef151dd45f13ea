// CPU random fills: one loop (philox_loop) walks a strided output in row-major order, one
// Philox block per K elements, and per-draw functors turn each block into K values (Note
// [Philox stream contract] in kernels/philox.h). Work is split across OpenMP threads by
// whole blocks, so the value of element i never depends on how the work was split.
#include "kernels/cpu/random.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <utility>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/philox.h"
#include "kernels/strided.h"

namespace metagrad::kernels::cpu {

namespace {

using philox::Block;

// Below this many elements one thread is faster than a parallel region.
constexpr int64_t kRandomGrain = 16384;
// Blocks one thread generates at a time: big enough to amortise the cursor set-up.
constexpr int64_t kBlocksPerChunk = 1024;

// Row-major walk over a coalesced layout: the element offsets of every operand.
template <int N>
struct Cursor {
  const StridedLayout<N>& L;
  int64_t idx[kMaxDims] = {};
  int64_t off[N] = {};

  Cursor(const StridedLayout<N>& layout, int64_t linear) : L(layout) {
    for (int d = L.ndim - 1; d >= 0; --d) {
      idx[d] = linear % L.shape[d];
      linear /= L.shape[d];
      for (int k = 0; k < N; ++k) off[k] += idx[d] * L.strides[k][d];
    }
  }
  void next() {
    for (int d = L.ndim - 1; d >= 0; --d) {
      for (int k = 0; k < N; ++k) off[k] += L.strides[k][d];
      if (++idx[d] < L.shape[d]) return;
      for (int k = 0; k < N; ++k) off[k] -= L.shape[d] * L.strides[k][d];
      idx[d] = 0;
    }
  }
};

// For every block c = offset + b of the draw, vals = gen(philox block c) gives its K values,
// then put(vals, j, off) stores slot j into the element whose operand offsets are `off`.
template <int N, int K, typename Gen, typename Put>
void philox_loop(const StridedLayout<N>& L, uint64_t seed, uint64_t offset, Gen gen, Put put) {
  const int64_t n = L.numel;
  if (n == 0) return;
  const int64_t nblocks = (n + K - 1) / K;
  const int64_t chunks = (nblocks + kBlocksPerChunk - 1) / kBlocksPerChunk;
  const bool flat = L.ndim <= 1;  // one stride per operand: index arithmetic, no cursor
  parallel_for(chunks, n >= kRandomGrain && chunks > 1, [&](int64_t ch) {
    const int64_t b0 = ch * kBlocksPerChunk, b1 = std::min(nblocks, b0 + kBlocksPerChunk);
    int64_t i = b0 * K;
    Cursor<N> cur(L, flat ? 0 : i);
    for (int64_t b = b0; b < b1; ++b) {
      const auto vals = gen(philox::block(seed, offset + static_cast<uint64_t>(b)));
      const int jn = static_cast<int>(std::min<int64_t>(K, n - i));
      for (int j = 0; j < jn; ++j, ++i) {
        if (flat) {
          int64_t off[N];
          for (int k = 0; k < N; ++k) off[k] = i * L.strides[k][0];  // 0 when ndim == 0
          put(vals, j, off);
        } else {
          put(vals, j, cur.off);
          cur.next();
        }
      }
    }
  });
}

// The common case: one output operand, each slot's value stored as is.
template <typename T, int K, typename Gen>
void fill(Extent e, Operand out, uint64_t seed, uint64_t offset, Gen gen) {
  const auto L = StridedLayout<1>::make(e.rank, e.shape, {out.strides});
  T* o = static_cast<T*>(out.data);
  philox_loop<1, K>(
      L, seed, offset, gen,
      [o](const std::array<T, K>& v, int j, const int64_t* off) { o[off[0]] = v[j]; });
}

}  // namespace

void random_uniform(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, double from,
                    double to) {
  if (dtype == DType::Float32) {
    const float lo = static_cast<float>(from), hi = static_cast<float>(to);
    fill<float, 4>(e, out, seed, offset, [=](const Block& b) {
      std::array<float, 4> v;
      for (int j = 0; j < 4; ++j) v[j] = philox::uniform_in(philox::to_float01(b.w[j]), lo, hi);
      return v;
    });
  } else if (dtype == DType::Float64) {
    fill<double, 2>(e, out, seed, offset, [=](const Block& b) {
      std::array<double, 2> v;
      for (int j = 0; j < 2; ++j)
        v[j] = philox::uniform_in(philox::to_double01(b.w[2 * j], b.w[2 * j + 1]), from, to);
      return v;
    });
  }
}

void random_normal(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, double mean,
                   double std) {
  using philox::add_rn;
  using philox::mul_rn;
  if (dtype == DType::Float32) {
    fill<float, 4>(e, out, seed, offset, [=](const Block& b) {
      double z[4];
      philox::normals4_32(b, z);
      std::array<float, 4> v;
      for (int j = 0; j < 4; ++j) v[j] = static_cast<float>(add_rn(mean, mul_rn(std, z[j])));
      return v;
    });
  } else if (dtype == DType::Float64) {
    fill<double, 2>(e, out, seed, offset, [=](const Block& b) {
      double z[2];
      philox::normals2_53(b, z);
      return std::array<double, 2>{add_rn(mean, mul_rn(std, z[0])),
                                   add_rn(mean, mul_rn(std, z[1]))};
    });
  }
}

void random_int(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, int64_t low,
                uint64_t range) {
  // low + r computed modulo 2^64, so the full int64 range cannot overflow.
  const uint64_t base = static_cast<uint64_t>(low);
  MG_DISPATCH_ALL(dtype, [&] {
    using T = scalar_t;
    if (philox::randint_per_block(range) == 4) {
      fill<T, 4>(e, out, seed, offset, [=](const Block& b) {
        std::array<T, 4> v;
        for (int j = 0; j < 4; ++j)
          v[j] = static_cast<T>(static_cast<int64_t>(base + b.w[j] % range));
        return v;
      });
    } else {
      fill<T, 2>(e, out, seed, offset, [=](const Block& b) {
        std::array<T, 2> v;
        for (int j = 0; j < 2; ++j) {
          const uint64_t x = (static_cast<uint64_t>(b.w[2 * j + 1]) << 32) | b.w[2 * j];
          v[j] = static_cast<T>(static_cast<int64_t>(base + x % range));
        }
        return v;
      });
    }
  });
}

void random_bernoulli(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset,
                      double p) {
  MG_DISPATCH_ALL(dtype, [&] {
    using T = scalar_t;
    fill<T, 4>(e, out, seed, offset, [=](const Block& b) {
      std::array<T, 4> v;
      for (int j = 0; j < 4; ++j) v[j] = static_cast<T>(philox::to_double01_32(b.w[j]) < p);
      return v;
    });
  });
}

bool random_bernoulli_tensor(DType dtype, Extent e, Operand out, Operand p, uint64_t seed,
                             uint64_t offset) {
  const auto L = StridedLayout<2>::make(e.rank, e.shape, {out.strides, p.strides});
  std::atomic<bool> ok{true};
  MG_DISPATCH_FLOAT(dtype, [&] {
    using T = scalar_t;
    T* o = static_cast<T*>(out.data);
    const T* pp = static_cast<const T*>(p.data);
    philox_loop<2, 4>(
        L, seed, offset, [](const Block& b) { return b; },
        [&](const Block& b, int j, const int64_t* off) {
          const double pi = static_cast<double>(pp[off[1]]);
          if (!(pi >= 0.0 && pi <= 1.0)) ok.store(false, std::memory_order_relaxed);
          o[off[0]] = static_cast<T>(philox::to_double01_32(b.w[j]) < pi);
        });
  });
  return ok.load();
}

void random_perm(int64_t n, int64_t* out, uint64_t seed, uint64_t offset) {
  // Sorting (key, index) pairs is a stable sort by key: equal keys keep index order.
  std::vector<std::pair<uint64_t, int64_t>> keys(static_cast<size_t>(n));
  const int64_t nblocks = (n + 1) / 2;
  parallel_for(nblocks, n >= kRandomGrain, [&](int64_t b) {
    const Block w = philox::block(seed, offset + static_cast<uint64_t>(b));
    for (int64_t j = 0; j < 2 && 2 * b + j < n; ++j) {
      const int64_t i = 2 * b + j;
      keys[i] = {(static_cast<uint64_t>(w.w[2 * j + 1]) << 32) | w.w[2 * j], i};
    }
  });
  std::sort(keys.begin(), keys.end());
  for (int64_t i = 0; i < n; ++i) out[i] = keys[i].second;
}

}  // namespace metagrad::kernels::cpu
