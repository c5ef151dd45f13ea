// Fused batch normalisation in training mode, as torch.native_batch_norm: one op for the
// forward (per-channel statistics and the normalised output) and one fused kernel for its
// first derivative. nn::functional::batch_norm uses it when training (nn/functional/norm.h).
// CPU kernels: kernels/cpu/norm.cpp; CUDA kernels: kernels/cuda/norm.cu.
//
// Note [Fused batch norm]: native_batch_norm is differentiable to every order, and the plain-ops
// twin (DESIGN principle 4) is written into its derivative rule (autograd/derivatives.cpp):
//   * first derivatives (a backward pass without create_graph, so grad mode is off in the rule)
//     run the fused kernel native_batch_norm_backward: two passes over g and x per channel;
//   * when the backward pass itself is recorded (create_graph, for higher derivatives) the rule
//     writes the same closed form in differentiable ops, with mean and invstd recomputed from x
//     by mean() and var(): the recorded expression is then the exact gradient as a function of
//     x, weight and the incoming gradients, and differentiating it gives the exact second
//     derivative (and so on).
// Both forms include the gradients that reach the mean and invstd outputs (zero unless a user
// differentiates through them), so the op is exact for all three outputs.
//
// Note [Saved batch-norm statistics]: the rule saves the inputs and the two [C] statistics,
// not y (kSaveTrailingOutputs: y is activation-sized and would stay alive for the graph's
// lifetime). The fused first derivative hands mean and invstd to the kernel, which on the CPU
// then skips recomputing them: on the CPU one pass over x (in double, the forward's
// per-channel moments) less per backward, 2.5% of the conv-4 meta-step (docs/performance.md,
// session 6); on the GPU likewise one read of x per channel. For float64 the values are those a
// recomputation gives (same code, same order); for float32 they are rounded to float32, as
// PyTorch's saved statistics are.
#pragma once
#include <array>
#include <tuple>

#include "tensor/tensor.h"

namespace metagrad {

// x [N, C, *] (float32 or float64, any strides), weight and bias [C] of x's dtype or undefined
// (1 and 0). Returns
//   y       = (x - mean) * invstd * weight + bias, x's shape (contiguous),
//   mean    [C], the per-channel mean over every dim but dim 1,
//   invstd  [C] = 1 / sqrt(var + eps), var the biased (population) variance,
// mean and invstd in x's dtype, accumulated in double. An input with no value per channel
// gives NaN statistics. Recorded as one op, "native_batch_norm", differentiable to any order
// in all three outputs (Note [Fused batch norm]).
std::tuple<Tensor, Tensor, Tensor> native_batch_norm(const Tensor& x, const Tensor& weight,
                                                     const Tensor& bias, double eps);

// The fused first derivative of native_batch_norm(x, weight, bias, eps): given the gradients
// grad_out of y (x's shape) and, optionally, grad_mean and grad_invstd of the statistics ([C];
// undefined counts as zero), returns {grad_x, grad_weight, grad_bias}; output_mask says which
// to compute (the others come back undefined, as does grad_weight when weight is undefined).
// Not differentiable (recorded without a derivative, so a backward pass through it throws):
// differentiate native_batch_norm instead, whose rule calls this for first derivatives and
// its differentiable twin for higher ones.
// saved_mean and saved_invstd: the forward's mean and invstd outputs, both or neither; given,
// the kernels read them instead of recomputing the statistics from x (Note [Saved batch-norm
// statistics]).
std::tuple<Tensor, Tensor, Tensor> native_batch_norm_backward(
    const Tensor& grad_out, const Tensor& x, const Tensor& weight, double eps,
    const Tensor& grad_mean = {}, const Tensor& grad_invstd = {},
    std::array<bool, 3> output_mask = {true, true, true}, const Tensor& saved_mean = {},
    const Tensor& saved_invstd = {});

}  // namespace metagrad
