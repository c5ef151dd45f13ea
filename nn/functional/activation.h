// Activations and other parameter-free layers as functions (torch.nn.functional): relu,
// leaky_relu, elu, gelu, tanh, sigmoid, softplus, softmax, log_softmax, dropout, flatten.
//
// Each is a composition of differentiable tensor ops (or the tensor op itself), so every order
// of derivative works with no derivative entry of its own. Where a branch of `where` could
// overflow in the branch not taken (elu, softplus), its input is clamped first: otherwise the
// zero gradient of the unused branch times an infinite local derivative would give NaN.
#pragma once
#include <cstdint>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace metagrad::nn::functional {

Tensor relu(const Tensor& x);
// x for x > 0, negative_slope * x otherwise.
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
// x for x > 0, alpha (e^x - 1) otherwise.
Tensor elu(const Tensor& x, double alpha = 1.0);
// The exact form x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
Tensor gelu(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
// log(1 + e^(beta x)) / beta, and x itself where beta x > threshold (as PyTorch).
Tensor softplus(const Tensor& x, double beta = 1.0, double threshold = 20.0);

// Along `dim`, stable for any input size: log_softmax(x) = x - logsumexp(x, dim, keepdim),
// softmax(x) = exp(log_softmax(x)), each one fused kernel (tensor/softmax.h). Floating-point
// inputs only.
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// Inverted dropout: while training, each element is kept with probability 1 - p (a Bernoulli
// mask drawn from `gen`, the default generator when null) and scaled by 1 / (1 - p), so the
// expected value is unchanged. Returns x itself when !training or p == 0; zeros (still in the
// graph) when p == 1. p must lie in [0, 1].
Tensor dropout(const Tensor& x, double p = 0.5, bool training = true, Generator* gen = nullptr);

// Merges dims start_dim..end_dim into one (nn.Flatten's defaults: keep the batch dim).
Tensor flatten(const Tensor& x, int64_t start_dim = 1, int64_t end_dim = -1);

}  // namespace metagrad::nn::functional
