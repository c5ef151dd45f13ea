// Entry points of the CPU batch-normalisation kernels (training mode, float32/float64): the
// fused forward (per-channel statistics, then y = x * scale + shift) and the fused backward.
// Like cpu_kernels.h they see raw pointers and sizes, never a Tensor; every array is
// contiguous (the tensor layer copies strided operands first). Channels are independent, so
// both kernels run in parallel over channels and no two threads write the same element.
#pragma once
#include <cstdint>

#include "kernels/args.h"

namespace metagrad::kernels::cpu {

// x [n, c, inner] -> y (same shape), mean [c] and invstd [c] = 1 / sqrt(var + eps) with the
// biased variance; weight and bias [c] may be nullptr (1 and 0). Statistics in double.
void batch_norm_forward(DType dtype, const BatchNormGeometry& g, const void* x, const void* weight,
                        const void* bias, void* y, void* mean, void* invstd);

// The gradient of native_batch_norm (tensor/norm.h) for the incoming gradient grad_y of y and
// those of mean and invstd in `a`. The statistics are the forward's saved ones in `a` where
// given, else recomputed from x exactly as the forward computes them (same code, same order).
void batch_norm_backward(DType dtype, const BatchNormGeometry& g, const void* grad_y, const void* x,
                         const BatchNormBackwardArgs& a);

}  // namespace metagrad::kernels::cpu
