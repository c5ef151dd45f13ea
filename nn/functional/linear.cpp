// nn::functional::linear (see nn/functional/linear.h).
#include "nn/functional/linear.h"

#include "tensor/elementwise.h"
#include "tensor/linalg.h"

namespace metagrad::nn::functional {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  MG_CHECK(x.defined() && weight.defined(), "linear", "input and weight must be defined");
  MG_CHECK(weight.dim() >= 2, "linear",
           "weight must be [out, in] or a stack [B..., out, in], got shape ",
           shape_str(weight.shape()));
  MG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(-1), "linear", "input of shape ",
           shape_str(x.shape()), " does not end in in_features = ", weight.size(-1),
           " (weight of shape ", shape_str(weight.shape()), ")");
  // The bias is [out] (shared by every weight of a stack) or has the weight's shape without
  // its `in` dim, [B..., out].
  const bool shared_bias = bias.defined() && bias.dim() == 1;
  if (bias.defined()) {
    Shape want(weight.shape().begin(), weight.shape().end() - 1);
    MG_CHECK(bias.shape() == want || (shared_bias && bias.size(0) == weight.size(-2)), "linear",
             "bias of shape ", shape_str(bias.shape()), " does not match the weight of shape ",
             shape_str(weight.shape()), " (expected [", weight.size(-2), "] or ", shape_str(want),
             ")");
  }
  MG_CHECK(weight.dim() == 2 || x.dim() >= 2, "linear", "a stacked weight of shape ",
           shape_str(weight.shape()), " needs an input [B..., n, in], got shape ",
           shape_str(x.shape()));
  // [..., n, in] @ [B..., in, out] (for a 2-d weight, x W^T); a stacked bias row broadcasts
  // over its stack entry's n rows.
  Tensor y = matmul(x, weight.transpose(-2, -1));
  if (!bias.defined()) return y;
  return shared_bias ? y + bias : y + bias.unsqueeze(-2);
}

}  // namespace metagrad::nn::functional
