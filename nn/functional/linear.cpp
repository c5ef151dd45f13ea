// nn::functional::linear (see nn/functional/linear.h).
#include "nn/functional/linear.h"

#include "tensor/elementwise.h"
#include "tensor/linalg.h"

namespace metagrad::nn::functional {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  MG_CHECK(x.defined() && weight.defined(), "linear", "input and weight must be defined");
  MG_CHECK(weight.dim() == 2, "linear", "weight must be 2-d [out, in], got shape ",
           shape_str(weight.shape()));
  MG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear", "input of shape ",
           shape_str(x.shape()), " does not end in in_features = ", weight.size(1),
           " (weight of shape ", shape_str(weight.shape()), ")");
  MG_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), "linear",
           "bias of shape ", shape_str(bias.shape()),
           " does not match out_features = ", weight.size(0));
  Tensor y = matmul(x, weight.t());
  return bias.defined() ? y + bias : y;
}

}  // namespace metagrad::nn::functional
