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

#include "kernels/hd.h"

namespace metagrad::kernels {

// Tensors with more dimensions than this are rejected by the tensor layer with a clear error;
// a fixed bound lets the layout travel by value into a CUDA kernel.
inline constexpr int kMaxDims = 16;

template <int N>
struct StridedLayout {
  int ndim = 0;                                   // after coalescing; 0 means a single element
  int64_t numel = 1;
  int64_t shape[kMaxDims] = {};                   // outermost first
  int64_t strides[N][kMaxDims] = {};              // in elements

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

  // True when every operand walks memory with unit stride (or is a broadcast scalar with
  // stride 0, for operands listed in `allow_scalar`): the vectorisable fast path.
  MG_HD bool contiguous(int k) const {
    return ndim == 0 || (ndim == 1 && strides[k][0] == 1);
  }
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

}  // namespace metagrad::kernels
