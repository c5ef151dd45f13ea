// Identity, Linear and Flatten.
#include "nn/modules/linear.h"

#include <cmath>

#include "nn/functional/linear.h"
#include "nn/init.h"
#include "nn/modules/repr.h"
#include "tensor/creation.h"

namespace metagrad::nn {

Tensor IdentityImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  return x;
}

LinearImpl::LinearImpl(const LinearOptions& o, Generator* gen) : options(o) {
  MG_CHECK(o.in_features_ >= 0 && o.out_features_ >= 0, "Linear",
           "in_features and out_features must be >= 0, got ", o.in_features_, " and ",
           o.out_features_);
  weight = register_parameter("weight", empty({o.out_features_, o.in_features_}));
  if (o.bias_) bias = register_parameter("bias", empty({o.out_features_}));
  reset_parameters(gen);
}

void LinearImpl::reset_parameters(Generator* gen) {
  // PyTorch's Linear.reset_parameters.
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::FanIn,
                         init::Nonlinearity::LeakyReLU, gen);
  if (bias.defined()) {
    const int64_t fan_in = options.in_features_;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor LinearImpl::forward(const Tensor& x, const ParamMap& params) {
  if (!params.empty()) check_params(params);
  MG_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == options.in_features_, "Linear",
           "expected an input whose last dim is in_features = ", options.in_features_,
           ", got shape ", x.defined() ? shape_str(x.shape()) : std::string("(undefined)"));
  // Stacks of weights are allowed (functional::linear): a task-batched meta-step's fast weights.
  return functional::linear(x, param(params, "weight", weight, /*stackable=*/true),
                            param(params, "bias", bias, /*stackable=*/true));
}

std::string LinearImpl::extra_repr() const {
  return "in_features=" + std::to_string(options.in_features_) +
         ", out_features=" + std::to_string(options.out_features_) +
         ", bias=" + detail::py_bool(options.bias_);
}

Tensor FlattenImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  MG_CHECK(x.defined(), "Flatten", "the input is undefined");
  return x.flatten(options.start_dim_, options.end_dim_);
}

std::string FlattenImpl::extra_repr() const {
  return "start_dim=" + std::to_string(options.start_dim_) +
         ", end_dim=" + std::to_string(options.end_dim_);
}

}  // namespace metagrad::nn
