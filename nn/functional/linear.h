// nn::functional::linear: y = x W^T + b, as torch.nn.functional.linear. A composition of
// matmul and add, so it is differentiable to any order with no derivative entry of its own.
#pragma once
#include "tensor/tensor.h"

namespace metagrad::nn::functional {

// x [..., in], weight [out, in], bias [out] (optional) -> [..., out].
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

}  // namespace metagrad::nn::functional
