// ReLU, Tanh and Sigmoid: tensor ops only (kept apart from activation.cpp so that models
// made of them and Linear need nothing from nn::functional).
#include "nn/modules/activation.h"
#include "tensor/elementwise.h"

namespace metagrad::nn {

Tensor ReLUImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  return relu(x);
}

Tensor TanhImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  return tanh(x);
}

Tensor SigmoidImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  return sigmoid(x);
}

}  // namespace metagrad::nn
