// Gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_. Both change the
// parameters' .grad() in place (under NoGradGuard) and skip parameters without a gradient.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace metagrad::nn::utils {

// Scales every gradient by max_norm / (total + 1e-6) when that is below 1, where total is the
// norm_type-norm of all gradients seen as one vector (norm_type = infinity: the largest
// |element|). Returns total (as libtorch). error_if_nonfinite: throw when total is NaN or
// infinite instead of scaling by it.
double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm,
                       double norm_type = 2.0, bool error_if_nonfinite = false);

// Clamps every gradient element into [-clip_value, clip_value].
void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value);

}  // namespace metagrad::nn::utils
