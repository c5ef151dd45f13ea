// Loss functions (torch.nn.functional): nll_loss, cross_entropy (with label smoothing),
// mse_loss, l1_loss and binary_cross_entropy_with_logits (with pos_weight), each with a
// Reduction. All are compositions of differentiable tensor ops, so every order of derivative
// works (exact second-order MAML through the loss included).
#pragma once
#include "tensor/tensor.h"

namespace metagrad::nn::functional {

// None keeps one loss per element (per sample for the class losses); Mean averages them and
// Sum adds them (an empty batch: NaN and 0).
enum class Reduction { None, Mean, Sum };

// -log_probs[n, target[n]] for log_probs [N, C] (or [N, C, d1, ...] with target
// [N, d1, ...], or [C] with a 0-d target). target is int64, each label in [0, C).
Tensor nll_loss(const Tensor& log_probs, const Tensor& target,
                Reduction reduction = Reduction::Mean);

// nll_loss(log_softmax(logits, 1), target), shapes as nll_loss. With label smoothing eps in
// [0, 1] the target is (1 - eps) one_hot + eps / C, i.e. per sample
// (1 - eps) nll + eps * mean over the C classes of -log_softmax (PyTorch's formula). Computed
// by the fused cross_entropy_loss op (tensor/softmax.h) on rows of C logits, which checks the
// labels itself: on the GPU without waiting for the device (nll_loss reads them on the host).
Tensor cross_entropy(const Tensor& logits, const Tensor& target,
                     Reduction reduction = Reduction::Mean, double label_smoothing = 0.0);

// (input - target)^2 and |input - target|. The shapes must be equal: PyTorch only warns when
// they broadcast, which usually hides a bug ([N, 1] against [N] gives an [N, N] loss).
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

// -[pos_weight t log s(x) + (1 - t) log(1 - s(x))], s the sigmoid, computed without forming
// s(x): (1 - t) x + (1 + (pos_weight - 1) t) log(1 + e^-x), with log(1 + e^-x) evaluated
// stably for any |x|. logits and target (floating) have the same shape; pos_weight (optional)
// broadcasts against them, typically [C] for the last dim.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction reduction = Reduction::Mean,
                                        const Tensor& pos_weight = {});

}  // namespace metagrad::nn::functional
