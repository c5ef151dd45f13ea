// The CPU elementwise loop: splits the (coalesced) iteration space into rows and chunks,
// runs them across OpenMP threads, and hands each piece to a typed inner loop that the
// compiler vectorises when every operand has unit stride.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <tuple>
#include <utility>

#include "kernels/cpu/parallel.h"
#include "kernels/strided.h"

namespace metagrad::kernels::cpu {

// Below this many elements a parallel region costs more than it saves.
inline constexpr int64_t kParallelGrain = 32768;
inline constexpr int64_t kChunk = 16384;

// Note [Transposed pieces]: pieces run along the innermost dim, which an operand read through a
// transpose (x.t().contiguous(), a + b.t()) crosses with a large stride: row by row, each of
// its elements is on a cache line of its own, evicted before the next row comes back for the
// line's other elements (a 1024 x 1024 float copy ran at 1.9 GB/s). When an operand steps by 1
// along the second-innermost dim instead (transposed_inner, kernels/strided.h), the two inner
// dims are walked in tiles of kTileRows x kTileCols: the tile's rows are still pieces along the
// innermost dim, but the transposed operand's lines are shared by the tile's consecutive rows
// and stay in L1 between them (kTileCols lines of 64 bytes per 16 rows: 4 KB).
inline constexpr int64_t kTileRows = 32, kTileCols = 64;

// Calls piece(off, inner_strides, n) for disjoint pieces covering the layout. `off` holds each
// operand's element offset of the piece's first element; inner_strides the innermost strides.
template <int N, typename Piece>
void for_each_piece(const StridedLayout<N>& L, Piece piece) {
  if (L.numel == 0) return;
  int64_t zero[N] = {};
  if (L.ndim == 0) {
    piece(zero, zero, int64_t{1});
    return;
  }
  const int last = L.ndim - 1;
  const int64_t inner = L.shape[last];
  const int64_t outer = L.numel / inner;
  int64_t inner_strides[N];
  for (int k = 0; k < N; ++k) inner_strides[k] = L.strides[k][last];
  if (transposed_inner(L)) {  // Note [Transposed pieces]
    const int a = last - 1;
    const int64_t rows = L.shape[a], plane = rows * inner;
    const int64_t row_tiles = (rows + kTileRows - 1) / kTileRows;
    const int64_t col_tiles = (inner + kTileCols - 1) / kTileCols;
    const int64_t tiles = L.numel / plane * row_tiles * col_tiles;
    parallel_for(tiles, L.numel >= kParallelGrain, [&](int64_t t) {
      const int64_t p = t / (row_tiles * col_tiles), rt = t / col_tiles % row_tiles,
                    ct = t % col_tiles;
      int64_t base[N], off[N];
      L.offsets(p * plane, base);  // the plane's first element
      const int64_t r0 = rt * kTileRows, r1 = std::min(rows, r0 + kTileRows);
      const int64_t c0 = ct * kTileCols, n = std::min(kTileCols, inner - c0);
      for (int64_t r = r0; r < r1; ++r) {
        for (int k = 0; k < N; ++k) off[k] = base[k] + r * L.strides[k][a] + c0 * inner_strides[k];
        piece(off, inner_strides, n);
      }
    });
    return;
  }
  const int64_t chunks_per_row = (inner + kChunk - 1) / kChunk;
  const int64_t items = outer * chunks_per_row;
  // Below the grain no parallel region is entered at all (Note [Serial loops skip OpenMP]).
  const bool parallel = L.numel >= kParallelGrain && items > 1;
  if (chunks_per_row == 1) {
    // Whole rows: each thread takes a contiguous range of rows and steps the operands'
    // offsets from row to row like an odometer, instead of dividing a linear index per row
    // (which dominated for short rows, e.g. a 2 x 2 feature map: 4 elements a row).
    auto rows = [&](int64_t r0, int64_t r1) {
      if (r0 >= r1) return;
      int64_t off[N], idx[kMaxDims] = {};
      L.offsets(r0 * inner, off);
      for (int64_t d = last - 1, rem = r0; d >= 0; --d) {
        idx[d] = rem % L.shape[d];
        rem /= L.shape[d];
      }
      for (int64_t r = r0; r < r1; ++r) {
        piece(off, inner_strides, inner);
        for (int d = last - 1; d >= 0; --d) {  // next row
          for (int k = 0; k < N; ++k) off[k] += L.strides[k][d];
          if (++idx[d] < L.shape[d]) break;
          for (int k = 0; k < N; ++k) off[k] -= L.strides[k][d] * L.shape[d];
          idx[d] = 0;
        }
      }
    };
    parallel_region(parallel,
                    [&](int64_t t, int64_t nt) { rows(outer * t / nt, outer * (t + 1) / nt); });
    return;
  }
  auto chunk = [&](int64_t it) {
    const int64_t r = it / chunks_per_row, c = it % chunks_per_row;
    int64_t off[N];
    L.offsets(r * inner, off);
    const int64_t begin = c * kChunk;
    const int64_t n = std::min(kChunk, inner - begin);
    for (int k = 0; k < N; ++k) off[k] += begin * inner_strides[k];
    piece(off, inner_strides, n);
  };
  parallel_for(items, parallel, chunk);
}

// Note [Broadcast pieces]: within a piece an input's stride is usually 1 or 0 (a scalar, or
// a row broadcast such as batch norm's [1, C, 1, 1] against [N, C, H, W], whose coalesced
// inner dim has stride 0). A stride-0 input is constant over the whole piece, so it is copied
// once into a small block buffer and the loop runs on unit strides in blocks of kBlock
// elements, which the compiler vectorises; only truly strided pieces take the generic loop.
inline constexpr int64_t kBlock = 256;

// out[i] = f(in[i]...) over typed operands; `base` holds the N base pointers (output first).
template <typename Out, typename... In, typename F>
void elementwise(const StridedLayout<1 + sizeof...(In)>& L, void* out_base,
                 const void* const* in_base, F f) {
  constexpr int N = 1 + sizeof...(In);
  for_each_piece<N>(L, [&](const int64_t* off, const int64_t* st, int64_t n) {
    Out* o = static_cast<Out*>(out_base) + off[0];
    bool unit = st[0] == 1, unit_or_const = st[0] == 1;
    for (int k = 1; k < N; ++k) {
      unit = unit && st[k] == 1;
      unit_or_const = unit_or_const && (st[k] == 1 || st[k] == 0);
    }
    [&]<size_t... I>(std::index_sequence<I...>) {
      const std::tuple<const In*...> ins{static_cast<const In*>(in_base[I]) + off[I + 1]...};
      if (unit) {
        for (int64_t i = 0; i < n; ++i) o[i] = static_cast<Out>(f(std::get<I>(ins)[i]...));
      } else if (unit_or_const) {
        // Note [Broadcast pieces]
        const int64_t fill = std::min(n, kBlock);
        std::tuple<std::array<In, kBlock>...> consts;
        ((st[I + 1] == 0 ? (void)std::fill_n(std::get<I>(consts).data(), fill, std::get<I>(ins)[0])
                         : (void)0),
         ...);
        for (int64_t b = 0; b < n; b += kBlock) {
          const int64_t m = std::min(kBlock, n - b);
          const std::tuple<const In*...> p{
              (st[I + 1] == 0 ? std::get<I>(consts).data() : std::get<I>(ins) + b)...};
          Out* ob = o + b;
          for (int64_t i = 0; i < m; ++i) ob[i] = static_cast<Out>(f(std::get<I>(p)[i]...));
        }
      } else {
        for (int64_t i = 0; i < n; ++i)
          o[i * st[0]] = static_cast<Out>(f(std::get<I>(ins)[i * st[I + 1]]...));
      }
    }
    (std::index_sequence_for<In...>{});
  });
}

}  // namespace metagrad::kernels::cpu
