// The adjoints of the indexing views, as ops of their own (DESIGN principle 3): the
// gradient of a slice or select is a zero tensor of the input's shape with the gradient
// written into the viewed region. Each has its own derivative entry (a slice / select of the
// incoming gradient), so higher-order gradients through views stay exact.
#pragma once
#include "tensor/tensor.h"

namespace metagrad {

Tensor slice_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, int64_t start,
                      int64_t end, int64_t step);
Tensor select_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, int64_t index);

}  // namespace metagrad
