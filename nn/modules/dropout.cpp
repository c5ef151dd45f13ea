// Dropout.
#include "nn/modules/dropout.h"

#include "nn/functional.h"
#include "nn/modules/repr.h"

namespace metagrad::nn {

DropoutImpl::DropoutImpl(const DropoutOptions& o) : options(o) {
  MG_CHECK(o.p_ >= 0 && o.p_ <= 1, "Dropout", "p must lie in [0, 1], got ", o.p_);
}

Tensor DropoutImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  return functional::dropout(x, options.p_, is_training(), options.generator_);
}

std::string DropoutImpl::extra_repr() const {
  return "p=" + detail::py_float(options.p_);
}

}  // namespace metagrad::nn
