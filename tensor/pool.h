// 2-d max and average pooling over NCHW inputs (float32/float64), as torch.max_pool2d /
// avg_pool2d, and their backward ops, which are public differentiable ops of their own
// (DESIGN principle 3): max_pool2d_backward scatters a gradient to the chosen positions and is
// differentiated by gathering; avg_pool2d_backward is the adjoint of avg_pool2d, so each is
// the other's derivative. CPU kernels: kernels/cpu/pool.cpp.
#pragma once
#include <array>
#include <cstdint>
#include <utility>

#include "tensor/tensor.h"

namespace metagrad {

struct Pool2dParams {
  std::array<int64_t, 2> kernel{1, 1};
  std::array<int64_t, 2> stride{0, 0};   // 0: the kernel size in that dim (PyTorch's default)
  std::array<int64_t, 2> padding{0, 0};  // at most half the kernel; -inf (max) or 0 (avg)
};

// Output size along one dim: floor((in + 2 pad - kernel) / stride) + 1.
int64_t pool2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad);

// [N, C, H, W] -> values [N, C, OH, OW] and int64 indices of the maxima into each (n, c)
// plane flattened (h * W + w), as PyTorch. NaN propagates; ties pick the first position.
std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, const Pool2dParams& params);
Tensor max_pool2d(const Tensor& input, const Pool2dParams& params);

// The gradient of max_pool2d: grad_out [N, C, OH, OW] added into zeros of input_shape at the
// indices (which must lie in [0, H * W)).
Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Shape& input_shape);

// The mean of each window; count_include_pad divides by the window's size in the padded input
// (else by the number of input elements it covers).
Tensor avg_pool2d(const Tensor& input, const Pool2dParams& params, bool count_include_pad = true);

// The gradient of avg_pool2d (its adjoint): grad_out [N, C, OH, OW] -> input_shape.
Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& input_shape,
                           const Pool2dParams& params, bool count_include_pad = true);

}  // namespace metagrad
