// Entry points of the CPU convolution kernels (NCHW, float32/float64). Like
// cpu_kernels.h they see raw pointers and sizes, never a Tensor: every array here is
// contiguous, the tensor layer has checked every size and copies strided inputs first.
//
// Convolution is im2col + GEMM (kernels/cpu/blas.h): for one image and one group,
//   col[(c * kH + i) * kW + j, oh * OW + ow] = x[c, oh * sh - ph + i * dh, ow * sw - pw + j * dw]
// (0 in the padding), so that y[g] = W[g] @ col with W[g] the [O/groups, C/groups * kH * kW]
// matrix of the group's filters. The two backward ops reuse the same matrices:
//   input backward  col = W[g]^T @ gy[g], then col2im adds every column back to the pixel it
//                   was read from (the transposed convolution);
//   weight backward gW[g] = sum over images of gy[g] @ col^T.
#pragma once
#include <cstdint>

#include "kernels/args.h"

namespace metagrad::kernels::cpu {

// y = conv(x, w) + b; `b` (o values) may be null.
void conv2d_forward(DType dtype, const Conv2dGeometry& g, const void* x, const void* w,
                    const void* b, void* y);
// gx (n, c, h, w) = the adjoint of conv(., w) applied to gy (n, o, oh, ow).
void conv2d_input_backward(DType dtype, const Conv2dGeometry& g, const void* gy, const void* w,
                           void* gx);
// gw (o, c / groups, kh, kw) = the adjoint of conv(x, .) applied to gy.
void conv2d_weight_backward(DType dtype, const Conv2dGeometry& g, const void* gy, const void* x,
                            void* gw);

}  // namespace metagrad::kernels::cpu
