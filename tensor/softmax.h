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

}  // namespace metagrad
