// LeakyReLU, ELU, GELU and Softplus, on nn::functional.
#include "nn/modules/activation.h"

#include "nn/functional.h"
#include "nn/modules/repr.h"

namespace metagrad::nn {

Tensor LeakyReLUImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  return functional::leaky_relu(x, options.negative_slope_);
}
std::string LeakyReLUImpl::extra_repr() const {
  return "negative_slope=" + detail::py_float(options.negative_slope_);
}

Tensor ELUImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  return functional::elu(x, options.alpha_);
}
std::string ELUImpl::extra_repr() const {
  return "alpha=" + detail::py_float(options.alpha_);
}

Tensor GELUImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  return functional::gelu(x);
}
std::string GELUImpl::extra_repr() const {
  return "approximate='none'";
}

Tensor SoftplusImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  return functional::softplus(x, options.beta_, options.threshold_);
}
std::string SoftplusImpl::extra_repr() const {
  return "beta=" + detail::py_float(options.beta_) +
         ", threshold=" + detail::py_float(options.threshold_);
}

}  // namespace metagrad::nn
