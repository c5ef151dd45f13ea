// Fused CPU kernels of the optimizer updates (nn/optim): one pass over contiguous parameter,
// gradient and state buffers instead of the several passes and temporaries of the composed
// tensor ops. Each applies exactly the arithmetic, in the same order and the same precision
// (the parameter's dtype, scalars cast to it), as the composed twin in nn/optim/*.cpp, which
// runs for layouts the kernels do not take and serves as their test oracle.
#pragma once
#include <cstdint>

#include "kernels/args.h"

namespace metagrad::kernels::cpu {

// p, g, buf: n contiguous elements of `dtype` (buf unused and may be null when momentum == 0).
void sgd_step(DType dtype, int64_t n, void* p, const void* g, void* buf, const SGDStepArgs& a);

// p, g, m, v (and vmax when amsgrad): n contiguous elements of `dtype`.
void adam_step(DType dtype, int64_t n, void* p, const void* g, void* m, void* v, void* vmax,
               const AdamStepArgs& a);

// The twins of the CUDA multi-tensor updates (kernels/cuda/cuda_kernels.h), so that the
// optimizers take one path on both devices: here tensor by tensor, as the single-tensor
// updates, since the CPU has no launch cost to save. buf may be null when momentum == 0, vmax
// when !amsgrad.
void sgd_step_multi(DType dtype, int count, const int64_t* n, void* const* p, const void* const* g,
                    void* const* buf, const SGDStepArgs& a);
void adam_step_multi(DType dtype, int count, const int64_t* n, void* const* p, const void* const* g,
                     void* const* m, void* const* v, void* const* vmax, const AdamStepArgs& a);

}  // namespace metagrad::kernels::cpu
