// Entry point of the fused CPU softmax / log_softmax kernel (kernels/cpu/softmax.cpp). Like
// cpu_kernels.h it sees raw pointers and sizes, nothing of Tensor: tensor/softmax.cpp checks the
// arguments, makes the input contiguous, allocates the output and calls in. The CUDA twin
// (kernels/cuda/softmax.cu, declared in kernels/cuda/cuda_kernels.h) takes the same arguments.
#pragma once
#include <cstdint>

#include "kernels/dtype.h"

namespace metagrad::kernels::cpu {

// x and y are contiguous float32 or float64 tensors seen as [outer, n, inner], the softmax taken
// over the middle dim (a row: n elements `inner` apart). Writes softmax(x) into y, or
// log_softmax(x) when `log`. With m the row max and shift = m (0 where m is infinite, as
// logsumexp): log_softmax = x - (shift + log(sum exp(x - shift))), softmax = exp(x - shift) /
// sum exp(x - shift); so a row of -inf gives NaN, a -inf entry gives -inf (log) or 0, and NaN
// spreads over its row. n >= 1.
void softmax(DType dtype, bool log, int64_t outer, int64_t n, int64_t inner, const void* x,
             void* y);

}  // namespace metagrad::kernels::cpu
