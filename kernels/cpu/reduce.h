// Entry point of the CPU reduction kernels (sum, mean, prod, max/min with or without indices,
// var/std, logsumexp, norms). Like cpu_kernels.h it sees raw pointers, shapes and strides and
// nothing of Tensor: tensor/reduce.cpp checks the arguments, allocates the outputs and calls in.
#pragma once
#include <cstdint>

#include "kernels/args.h"

namespace metagrad::kernels::cpu {

// Reduces `in` into `values` (contiguous, reduce_out_dtype(op, in.dtype)) and, for ArgMax and
// ArgMin, `indices` (contiguous int64); either of those two may be null there. `param` is the
// norm's p or Var/Std's correction. An empty reduction writes the op's identity (Sum 0, Prod 1,
// LogSumExp -inf, Norm 0 for finite p >= 0 but -inf for p = +inf and +inf for p = -inf or
// p < 0: the identities of the max, min and the power sum's reciprocal; Mean, Var and Std NaN);
// the caller refuses it for Max/Min/Arg*. The CUDA twin (kernels/cuda/reduce.cu) writes the same.
void reduce(ReduceOp op, const ReduceInput& in, void* values, int64_t* indices, double param = 0);

}  // namespace metagrad::kernels::cpu
