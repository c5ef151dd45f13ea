// nn::functional::linear: y = x W^T + b, as torch.nn.functional.linear. A composition of
// matmul and add, so it is differentiable to any order with no derivative entry of its own.
#pragma once
#include "tensor/tensor.h"

namespace metagrad::nn::functional {

// x [..., in], weight [out, in], bias [out] (optional) -> [..., out].
//
// Beyond torch.nn.functional.linear, the weight may also be a stack of weights
// [B..., out, in] (bias [B..., out], or [out] shared by the stack): then x is [B..., n, in] (batch
// dims broadcasting as in matmul) and row block b of x meets weight b. This is what a task-batched
// meta-step needs (one copy of the fast weights per task, meta::MetaOptions::batch_tasks).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

}  // namespace metagrad::nn::functional
