// Helpers the tensor layer uses to hand tensors to the kernels: strides of a tensor
// broadcast to an output shape, and the checks for in-place writes.
#pragma once
#include "kernels/args.h"
#include "tensor/tensor.h"

namespace metagrad::detail {

// Strides (in elements) of `t` viewed with `shape` under NumPy broadcasting: 0 where t has
// size 1 or no dimension. `shape` must be a broadcast of t's shape.
Shape broadcast_strides(const Tensor& t, const Shape& shape);

// In-place writes into a tensor whose elements alias (an expanded view) are refused.
void check_no_internal_overlap(const char* op, const Tensor& t);

inline kernels::Extent extent(const Shape& s) {
  return {static_cast<int>(s.size()), s.data()};
}

}  // namespace metagrad::detail
