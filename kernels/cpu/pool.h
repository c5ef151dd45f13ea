// Entry points of the CPU pooling kernels (NCHW, float32/float64): max and average pooling
// and their backward ops. Like cpu_kernels.h they see raw pointers and sizes, never a Tensor;
// every array is contiguous (the tensor layer copies strided inputs first). Planes (one per
// image and channel) are independent, so every kernel runs in parallel over planes and no two
// threads ever write the same element.
#pragma once
#include <cstdint>

#include "kernels/args.h"

namespace metagrad::kernels::cpu {

// y = the maximum of each window (the padding counts as -inf; NaN wins, as in PyTorch),
// idx = its position h * w_size + w in the plane (the first one on ties).
void max_pool2d_forward(DType dtype, const Pool2dGeometry& g, const void* x, void* y, int64_t* idx);
// Checks every index against [0, h * w); returns false (writing nothing) if one is out of
// range, storing it in *bad. Otherwise gx (zeroed here) gets gy added at the indices.
bool max_pool2d_backward(DType dtype, const Pool2dGeometry& g, const void* gy, const int64_t* idx,
                         void* gx, int64_t* bad);

// y = the mean of each window; the divisor is the window's size clipped to the padded input
// (count_include_pad) or to the input itself.
void avg_pool2d_forward(DType dtype, const Pool2dGeometry& g, bool count_include_pad, const void* x,
                        void* y);
// gx (zeroed here) = the adjoint of avg_pool2d applied to gy.
void avg_pool2d_backward(DType dtype, const Pool2dGeometry& g, bool count_include_pad,
                         const void* gy, void* gx);

}  // namespace metagrad::kernels::cpu
