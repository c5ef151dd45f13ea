// Activations, softmax, dropout and flatten: compositions of differentiable tensor ops, and
// forwards to the primitives (relu, tanh, sigmoid, softmax, log_softmax).
#include "nn/functional/activation.h"

#include <algorithm>
#include <cmath>

#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"
#include "tensor/reduce.h"
#include "tensor/softmax.h"

namespace metagrad::nn::functional {

namespace {
void check_floating(const char* op, const Tensor& x) {
  MG_CHECK(x.defined(), op, "the input is undefined");
  MG_CHECK(x.is_floating_point(), op, "expected a floating-point input, got ",
           dtype_name(x.dtype()));
}
}  // namespace

Tensor relu(const Tensor& x) {
  return metagrad::relu(x);
}

Tensor leaky_relu(const Tensor& x, double negative_slope) {
  check_floating("leaky_relu", x);
  return where(x > 0, x, x * negative_slope);
}

Tensor elu(const Tensor& x, double alpha) {
  check_floating("elu", x);
  // expm1 sees min(x, 0) only: for large positive x the unused branch would overflow. At x = 0
  // the clamp passes the gradient, so the derivative there is alpha (PyTorch's convention).
  return where(x > 0, x, expm1(clamp_max(x, 0.0)) * alpha);
}

Tensor gelu(const Tensor& x) {
  check_floating("gelu", x);
  return x * (erf(x * M_SQRT1_2) + 1) * 0.5;
}

Tensor tanh(const Tensor& x) {
  return metagrad::tanh(x);
}
Tensor sigmoid(const Tensor& x) {
  return metagrad::sigmoid(x);
}

Tensor softplus(const Tensor& x, double beta, double threshold) {
  check_floating("softplus", x);
  Tensor bx = x * beta;
  // exp sees beta x clamped at the threshold, so the branch not taken never overflows.
  return where(bx > threshold, x, log1p(exp(clamp_max(bx, threshold))) / beta);
}

// The fused primitives of tensor/softmax.h (a 0-d input takes dim 0 or -1).
Tensor log_softmax(const Tensor& x, int64_t dim) {
  check_floating("log_softmax", x);
  return metagrad::log_softmax(x, dim);
}

Tensor softmax(const Tensor& x, int64_t dim) {
  check_floating("softmax", x);
  return metagrad::softmax(x, dim);
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  MG_CHECK(x.defined(), "dropout", "the input is undefined");
  MG_CHECK(p >= 0 && p <= 1, "dropout", "dropout probability has to be between 0 and 1, but got ",
           p);
  if (!training || p == 0) return x;
  check_floating("dropout", x);
  if (p == 1) return x * 0.0;  // all dropped; still in the graph (a zero gradient), as PyTorch
  Tensor mask = bernoulli(x.shape(), 1 - p, x.options(), gen);  // 1 = kept
  {
    NoGradGuard no_grad;
    mask *= 1 / (1 - p);  // the mask carries the scale: one full-size multiply on x
  }
  return x * mask;
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  MG_CHECK(x.defined(), "flatten", "the input is undefined");
  return x.flatten(start_dim, end_dim);
}

}  // namespace metagrad::nn::functional
