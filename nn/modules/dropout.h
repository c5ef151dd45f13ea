// Dropout: zeroes each element with probability p in train mode and scales the rest by
// 1 / (1 - p); the identity in eval mode. On nn::functional::dropout.
#pragma once
#include "nn/module.h"
#include "tensor/random.h"

namespace metagrad::nn {

struct DropoutOptions {
  DropoutOptions(double p = 0.5) : p_(p) {}  // NOLINT: implicit, as libtorch
  DropoutOptions& p(double v) {
    p_ = v;
    return *this;
  }
  // The generator the masks are drawn from (the default generator when null); it must
  // outlive the module.
  DropoutOptions& generator(Generator* g) {
    generator_ = g;
    return *this;
  }
  double p_;
  Generator* generator_ = nullptr;
};

class DropoutImpl : public Module {
 public:
  explicit DropoutImpl(const DropoutOptions& options = {});
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  std::string extra_repr() const override;
  DropoutOptions options;
};
MG_MODULE(Dropout);

}  // namespace metagrad::nn
