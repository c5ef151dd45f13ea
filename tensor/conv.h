// 2-d convolution, as torch.conv2d: NCHW input, weight [O, C / groups, kH, kW], optional bias
// [O], stride, zero padding, dilation and groups; float32 or float64 (input, weight and bias
// of one dtype). CPU kernels: kernels/cpu/conv.cpp (im2col + GEMM).
//
// The two backward ops are public ops of their own (DESIGN principle 3). Convolution is
// bilinear: with T(x, w, gy) = <gy, conv2d(x, w)>, each of the three ops is the gradient of T
// w.r.t. one argument,
//   conv2d(x, w)                     = dT/dgy
//   conv2d_input_backward(gy, w)     = dT/dx    (the transposed convolution, col2im)
//   conv2d_weight_backward(gy, x)    = dT/dw
// so the derivative of each w.r.t. each argument is one of the others (autograd/derivatives.cpp),
// and convolution is differentiable to any order exactly.
#pragma once
#include <array>
#include <cstdint>

#include "tensor/tensor.h"

namespace metagrad {

struct Conv2dParams {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};  // zeros on both sides
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};

// Output size along one dim: floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1.
int64_t conv2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dil);

// [N, C, H, W] x [O, C / groups, kH, kW] (+ [O]) -> [N, O, OH, OW].
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = {},
              const Conv2dParams& params = {});

// The gradient w.r.t. the input: grad_out [N, O, OH, OW] -> [N, C, H, W] = input_shape (the
// shape is needed because several input sizes give the same output size under a stride).
Tensor conv2d_input_backward(const Tensor& grad_out, const Tensor& weight, const Shape& input_shape,
                             const Conv2dParams& params = {});

// The gradient w.r.t. the weight: grad_out [N, O, OH, OW] -> weight_shape, summed over images.
Tensor conv2d_weight_backward(const Tensor& grad_out, const Tensor& input,
                              const Shape& weight_shape, const Conv2dParams& params = {});

}  // namespace metagrad
