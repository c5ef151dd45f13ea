// Multi-tensor fused optimizer updates on the GPU (kernels/cuda/optim.cu): one launch updates
// up to kMultiTensorChunk parameter tensors, instead of one launch per tensor. A model's many
// small tensors (biases, batch-norm scales) then cost one launch instead of dozens. The
// result is exactly that of calling sgd_step / adam_step (kernels/cuda/cuda_kernels.h) on each
// tensor in turn: the same per-element arithmetic, and the tensors are independent.
#pragma once
#include <cstdint>

#include "kernels/args.h"
#include "kernels/dtype.h"

namespace metagrad::kernels::cuda {

// Tensors per launch: the table of pointers travels as a kernel parameter, which must stay
// under the classic 4 KB limit; longer lists are split into several launches.
inline constexpr int kMultiTensorChunk = 64;

// For k in [0, count): the n[k] contiguous elements of `dtype` (floating) at the device
// pointers p[k], g[k], buf[k] are updated as sgd_step(dtype, n[k], p[k], g[k], buf[k], a).
// n, p, g, buf are host arrays of `count` entries; buf may be null when a.momentum == 0.
// Every tensor shares `a` (so the same first_step flag); distinct k must not overlap.
void sgd_step_multi(DType dtype, int count, const int64_t* n, void* const* p, const void* const* g,
                    void* const* buf, const SGDStepArgs& a);

// Likewise adam_step(dtype, n[k], p[k], g[k], m[k], v[k], vmax[k], a) for every k; vmax may be
// null when !a.amsgrad. Every tensor shares `a`, so its step_size and bias correction: group
// only tensors with the same step count.
void adam_step_multi(DType dtype, int count, const int64_t* n, void* const* p, const void* const* g,
                     void* const* m, void* const* v, void* const* vmax, const AdamStepArgs& a);

}  // namespace metagrad::kernels::cuda
