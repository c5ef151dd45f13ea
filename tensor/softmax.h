// Softmax and log-softmax along one dim as primitives with fused kernels (kernels/cpu/softmax.cpp,
// kernels/cuda/softmax.cu): one read of the input for the statistics and one write, where the
// composition x - logsumexp(x) made several passes. Their derivatives (autograd/derivatives.cpp)
// are written in ops from the saved output, so every order is exact.
//
// Stable for any input: with m the max along `dim` (taken as 0 where it is infinite),
// log_softmax(x) = x - m - log(sum exp(x - m)) and softmax(x) = exp(x - m) / sum exp(x - m).
// A -inf entry gets probability 0 (log: -inf); a row of -inf, or one holding +inf or NaN, gives
// NaN. Floating-point inputs only; a 0-d input takes dim 0 or -1 and gives 1 (log: 0). The
// output is contiguous. nn::functional::softmax / log_softmax forward here.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace metagrad {

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// Their first derivatives in one kernel each (Note [Fused softmax backward] in
// kernels/cpu/softmax.cpp): `grad` the gradient reaching the forward's `output` (same shape),
// dim as in the forward; returns dx = output (grad - sum(grad output, dim)) for softmax and
// grad - exp(output) sum(grad, dim) for log_softmax, contiguous. The derivative rules of
// softmax and log_softmax run these when they need no graph of their own (no create_graph),
// and their formula in ops otherwise. Not differentiable themselves (a backward pass through
// them throws), as PyTorch's _softmax_backward_data is used.
Tensor softmax_backward(const Tensor& grad, const Tensor& output, int64_t dim);
Tensor log_softmax_backward(const Tensor& grad, const Tensor& output, int64_t dim);

// Fused cross-entropy per sample: logits [N, C] (float32/float64, any strides), target [N]
// int64 class indices; returns loss [N] = -log_softmax(logits, 1)[n, target[n]], bitwise the
// composition's value on the CPU, in one kernel (Note [Fused cross-entropy] in
// kernels/cpu/softmax.cpp). A target outside [0, C) raises "[cross_entropy] target ... is out
// of bounds" at the op on the CPU, at the next wait on the GPU (Note [Deferred device errors]).
// Recorded as "cross_entropy_loss", differentiable to any order in the logits: the first
// derivative runs cross_entropy_loss_backward, higher ones differentiate its formula in ops.
// nn::functional::cross_entropy forwards here for (N, C) and (C) inputs.
Tensor cross_entropy_loss(const Tensor& logits, const Tensor& target);

// Its first derivative in one kernel: grad [N] (the loss's gradient) gives
// dx [N, C] = grad[n] (softmax(logits, 1)[n, c] - [c == target[n]]). Not differentiable
// (recorded without a derivative, so a backward pass through it throws): differentiate
// cross_entropy_loss instead.
Tensor cross_entropy_loss_backward(const Tensor& grad, const Tensor& logits, const Tensor& target);

}  // namespace metagrad
