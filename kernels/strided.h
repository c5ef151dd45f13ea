// The layout analysis behind every elementwise kernel, written once for the CPU loops
// and the CUDA launchers (DESIGN principle 6).
//
// An elementwise op over N operands (outputs first) sees one common shape and, per operand,
// strides in elements; a broadcast dimension has stride 0. Before looping we coalesce:
// dimension d merges into d+1 when, for every operand, stride[d] == shape[d+1]*stride[d+1].
// A contiguous tensor then collapses to one dimension, a transposed one stays 2-D, and the
// loop only pays for the structure that is really there. Size-1 dimensions are dropped.
#pragma once
#include <array>
#include <cstdint>
#include <utility>

#include "kernels/hd.h"

namespace metagrad::kernels {

// Tensors with more dimensions than this are rejected by the tensor layer with a clear error;
// a fixed bound lets the layout travel by value into a CUDA kernel.
inline constexpr int kMaxDims = 16;

template <int N>
struct StridedLayout {
  int ndim = 0;  // after coalescing; 0 means a single element
  int64_t numel = 1;
  int64_t shape[kMaxDims] = {};       // outermost first
  int64_t strides[N][kMaxDims] = {};  // in elements

  // Builds the layout from a shape and each operand's strides (same rank as shape).
  static StridedLayout make(int rank, const int64_t* shape_in,
                            const std::array<const int64_t*, N>& strides_in) {
    StridedLayout L;
    for (int d = 0; d < rank; ++d) L.numel *= shape_in[d];
    for (int d = 0; d < rank; ++d) {
      if (shape_in[d] == 1) continue;  // size-1 dims carry no iteration
      if (L.ndim > 0) {
        bool merge = true;
        int last = L.ndim - 1;
        for (int k = 0; k < N; ++k)
          if (L.strides[k][last] != shape_in[d] * strides_in[k][d]) merge = false;
        if (merge) {
          L.shape[last] *= shape_in[d];
          for (int k = 0; k < N; ++k) L.strides[k][last] = strides_in[k][d];
          continue;
        }
      }
      L.shape[L.ndim] = shape_in[d];
      for (int k = 0; k < N; ++k) L.strides[k][L.ndim] = strides_in[k][d];
      ++L.ndim;
    }
    return L;
  }

  // The same elements visited with the two innermost dims exchanged (ndim >= 2): an
  // elementwise op may take its elements in any order, and a kernel prefers the output's
  // unit-stride dim innermost.
  void swap_inner() {
    const int a = ndim - 2, b = ndim - 1;
    std::swap(shape[a], shape[b]);
    for (int k = 0; k < N; ++k) std::swap(strides[k][a], strides[k][b]);
  }

  // True when every operand walks memory with unit stride (or is a broadcast scalar with
  // stride 0, for operands listed in `allow_scalar`): the vectorisable fast path.
  MG_HD bool contiguous(int k) const { return ndim == 0 || (ndim == 1 && strides[k][0] == 1); }
  MG_HD bool scalar(int k) const { return ndim == 0 || (ndim == 1 && strides[k][0] == 0); }

  // Offsets (in elements) of element number `linear` (row-major order) for every operand.
  MG_HD void offsets(int64_t linear, int64_t* out) const {
    for (int k = 0; k < N; ++k) out[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t i = linear % shape[d];
      linear /= shape[d];
      for (int k = 0; k < N; ++k) out[k] += i * strides[k][d];
    }
  }
};

// Note [Transposed pieces] (the CPU's in kernels/cpu/loops.h, the GPU's in
// kernels/cuda/elementwise.cu): an operand that steps by 1 along the second-innermost dim and
// by far more along the innermost one (x.t() in x.t().contiguous() or a + b.t()) is read a
// line per element when the loop runs along the innermost dim; both backends then walk the two
// inner dims in tiles. True when the layout has such an operand and both inner dims are long
// enough for a tile to pay (16).
template <int N>
bool transposed_inner(const StridedLayout<N>& L) {
  if (L.ndim < 2) return false;
  const int b = L.ndim - 1, a = b - 1;
  if (L.shape[a] < 16 || L.shape[b] < 16) return false;  // a tile is all there is
  for (int k = 0; k < N; ++k) {
    const int64_t sa = L.strides[k][a] < 0 ? -L.strides[k][a] : L.strides[k][a];
    const int64_t sb = L.strides[k][b] < 0 ? -L.strides[k][b] : L.strides[k][b];
    if (sa == 1 && sb > 16) return true;
  }
  return false;
}

// Note [Division by multiplication]: finding an element's offsets from its linear index takes
// a division per dimension, and a 64-bit division is dozens of instructions on a GPU (no
// hardware divider), which held a broadcast add to 43% of an H100's copy bandwidth. Dividing
// by a d fixed for the whole launch is a multiplication instead (Granlund and Montgomery 1994):
// with s = ceil(log2 d) and m = floor(2^64 (2^s - d) / d) + 1, n / d = (mulhi(n, m) + n) >> s
// for every n < 2^63 (the sum then cannot overflow). m and s are found once on the host.
struct Divider {
  __extension__ typedef unsigned __int128 U128;  // a GCC extension (-Wpedantic), fine on nvcc
  uint64_t d = 1;
  uint64_t m = 1;
  int s = 0;

  static Divider make(uint64_t d) {  // 1 <= d < 2^63
    Divider r;
    r.d = d;
    while ((uint64_t{1} << r.s) < d) ++r.s;
    const U128 num = static_cast<U128>((uint64_t{1} << r.s) - d) << 64;
    r.m = static_cast<uint64_t>(num / d) + 1;
    return r;
  }

  MG_HD uint64_t div(uint64_t n) const {  // n < 2^63
#ifdef __CUDA_ARCH__
    const uint64_t hi = __umul64hi(n, m);
#else
    const uint64_t hi = static_cast<uint64_t>((static_cast<U128>(n) * m) >> 64);
#endif
    return (hi + n) >> s;
  }
};

// A StridedLayout with a Divider for each dim but the outermost, for kernels that find every
// element's offsets from its linear index (the CUDA elementwise kernels).
template <int N>
struct DividedLayout {
  int ndim = 0;
  int64_t numel = 1;
  Divider dims[kMaxDims];  // dims[d].d is shape[d]
  int64_t strides[N][kMaxDims] = {};

  static DividedLayout make(const StridedLayout<N>& L) {
    DividedLayout r;
    r.ndim = L.ndim;
    r.numel = L.numel;
    for (int d = 0; d < L.ndim; ++d) {
      r.dims[d] = Divider::make(static_cast<uint64_t>(L.shape[d] > 0 ? L.shape[d] : 1));
      for (int k = 0; k < N; ++k) r.strides[k][d] = L.strides[k][d];
    }
    return r;
  }

  // As StridedLayout::offsets, 0 <= linear < numel.
  MG_HD void offsets(int64_t linear, int64_t* out) const {
    for (int k = 0; k < N; ++k) out[k] = 0;
    uint64_t rest = static_cast<uint64_t>(linear);
    for (int d = ndim - 1; d > 0; --d) {
      const uint64_t q = dims[d].div(rest);
      const int64_t i = static_cast<int64_t>(rest - q * dims[d].d);
      rest = q;
      for (int k = 0; k < N; ++k) out[k] += i * strides[k][d];
    }
    if (ndim > 0)
      for (int k = 0; k < N; ++k) out[k] += static_cast<int64_t>(rest) * strides[k][0];
  }
};

}  // namespace metagrad::kernels
