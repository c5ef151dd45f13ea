// Normalisation layers as functions of explicit tensors (torch.nn.functional.batch_norm,
// layer_norm).
//
// batch_norm in training mode runs the fused op native_batch_norm (tensor/norm.h): one kernel
// forward, one fused kernel for first derivatives, and its plain-ops twin in the derivative
// table for higher orders (DESIGN principle 4, Note [Fused batch norm]). batch_norm in eval
// mode and layer_norm are compositions of differentiable tensor ops (mean, var, rsqrt, mul,
// add). Either way every order of derivative is exact (second-order MAML through a normalised
// network included).
#pragma once
#include "tensor/tensor.h"

namespace metagrad::nn::functional {

// Batch normalisation of x [N, C, ...] (NC, NCL, NCHW, ...) over every dim but the channel
// dim 1: y = (x - mean) / sqrt(var + eps) * weight + bias, weight and bias [C] each optional.
//
// training: mean and (biased) var are the batch statistics, and the gradient flows through
// them. When running_mean / running_var [C] are defined they are updated in place, outside
// autograd: running = (1 - momentum) running + momentum stat, with the unbiased batch
// variance for running_var (as PyTorch). Needs more than one value per channel.
// eval (!training): normalises with running_mean / running_var, which must be defined.
// The handles are taken by value: a Tensor shares its data, so the caller sees the update.
// Beyond PyTorch, weight and bias may be stacks [B, C] (either may stay [C], shared) for a
// task-batched meta-step: x is then [B, N, C, ...], each entry b normalised with its own batch
// statistics and weight b, as B separate calls would; training only, without running
// statistics (vmap over batch norm has the same restriction). One op: the B * C channels side
// by side ([N, B * C, ...], Note [Task-batched convolution] in nn/functional/conv.cpp).
Tensor batch_norm(const Tensor& x, Tensor running_mean, Tensor running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);

// Layer normalisation over the trailing dims given by normalized_shape (x.shape ends with it):
// y = (x - mean) / sqrt(var + eps) * weight + bias, biased var over those dims per leading
// index; weight and bias (shape normalized_shape) optional.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);

}  // namespace metagrad::nn::functional
