// Entry point of the CPU reduction kernels (sum, mean, prod, max/min with or without indices,
// var/std, logsumexp, norms). Like cpu_kernels.h it sees raw pointers, shapes and strides and
// nothing of Tensor: tensor/reduce.cpp checks the arguments, allocates the outputs and calls in.
#pragma once
#include <cstdint>

#include "kernels/dtype.h"

namespace metagrad::kernels::cpu {

enum class ReduceOp : uint8_t {
  Sum,        // sum; integer and bool inputs sum into int64
  Mean,       // sum / n (floating only); n == 0 gives NaN
  Prod,       // product; integer and bool inputs multiply into int64
  Max,        // largest value, NaN wins (as torch.amax)
  Min,        // smallest value, NaN wins
  ArgMax,     // value and linear index of the largest, first occurrence on ties, first NaN wins
  ArgMin,     // likewise for the smallest
  Var,        // sum((x - mean)^2) / max(0, n - param), two passes (floating only)
  Std,        // sqrt(Var)
  LogSumExp,  // m + log(sum(exp(x - m))), m the row max (0 where it is infinite); floating only
  Norm,       // vector p-norm, p = param: 2, 1, +-inf, 0 (count of nonzeros) or any other p
};

// The input seen as two groups of dimensions, each in the tensor's order: the kept dims (the
// output is contiguous, row-major over them) and the reduced dims. A reduced element's index
// (ArgMax/ArgMin) is its row-major linear index over the reduced dims.
struct ReduceInput {
  const void* data;  // element (0, ..., 0)
  DType dtype;
  int kept_rank;
  const int64_t* kept_shape;
  const int64_t* kept_strides;  // input strides (elements) of the kept dims
  int red_rank;
  const int64_t* red_shape;
  const int64_t* red_strides;  // input strides (elements) of the reduced dims
};

// The dtype `reduce` writes its values in for `op` on an input of dtype `t`: int64 for Sum and
// Prod of integers and bool, otherwise `t`. Mean, Var, Std, LogSumExp and Norm need a floating t.
DType reduce_out_dtype(ReduceOp op, DType t);

// Reduces `in` into `values` (contiguous, reduce_out_dtype(op, in.dtype)) and, for ArgMax and
// ArgMin, `indices` (contiguous int64); either of those two may be null there. `param` is the
// norm's p or Var/Std's correction. An empty reduction writes the op's identity (Sum 0, Prod 1,
// LogSumExp -inf, Norm 0; Mean, Var and Std NaN); the caller refuses it for Max/Min/Arg*.
void reduce(ReduceOp op, const ReduceInput& in, void* values, int64_t* indices, double param = 0);

}  // namespace metagrad::kernels::cpu
