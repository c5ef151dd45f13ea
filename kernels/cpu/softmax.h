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

// The first derivative of either (Note [Fused softmax backward] in softmax.cpp): g (the
// gradient reaching y) and y (the forward's output) contiguous, seen as x was. Writes
// dx = y (g - sum(g y)), or for log_softmax dx = g - exp(y) sum(g), the sums over n.
void softmax_backward(DType dtype, bool log, int64_t outer, int64_t n, int64_t inner,
                      const void* g, const void* y, void* dx);

// Fused cross-entropy (Note [Fused cross-entropy] in softmax.cpp): x contiguous [rows, n]
// float32/float64 logits, target contiguous [rows] int64. loss[r] = -log_softmax(x[r])[t[r]]
// (same special values as log_softmax). Returns false, with *bad the first target outside
// [0, n) and nothing written, when there is one (the CUDA twin raises it at the next wait
// instead, Note [Deferred device errors], and returns true). n >= 1.
bool cross_entropy_forward(DType dtype, int64_t rows, int64_t n, const void* x,
                           const int64_t* target, void* loss, int64_t* bad);
// dx[r, c] = g[r] (softmax(x[r])[c] - [c == t[r]]), g contiguous [rows]. The op is public, so
// its targets are checked as the forward's: false, *bad and nothing written for a bad one.
bool cross_entropy_backward(DType dtype, int64_t rows, int64_t n, const void* g, const void* x,
                            const int64_t* target, void* dx, int64_t* bad);

}  // namespace metagrad::kernels::cpu
