// Modules built on tensor ops only: Identity, Linear and Flatten (libtorch keeps them in
// torch/nn/modules/linear.h too).
#pragma once
#include <cstdint>

#include "nn/module.h"

namespace metagrad::nn {

// Returns its input.
class IdentityImpl : public Module {
 public:
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
};
MG_MODULE(Identity);

struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  LinearOptions& bias(bool on) {
    bias_ = on;
    return *this;
  }
  int64_t in_features_, out_features_;
  bool bias_ = true;
};

// y = x W^T + b with W [out, in] and b [out]. Initialised as PyTorch: W by
// kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)), and b from the same range.
class LinearImpl : public Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true)
      : LinearImpl(LinearOptions(in_features, out_features).bias(bias)) {}
  explicit LinearImpl(const LinearOptions& options, Generator* gen = nullptr);
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  void reset_parameters(Generator* gen = nullptr) override;
  std::string extra_repr() const override;

  LinearOptions options;
  Tensor weight, bias;  // bias undefined when options.bias_ is false
};
MG_MODULE(Linear);

struct FlattenOptions {
  FlattenOptions& start_dim(int64_t d) {
    start_dim_ = d;
    return *this;
  }
  FlattenOptions& end_dim(int64_t d) {
    end_dim_ = d;
    return *this;
  }
  int64_t start_dim_ = 1, end_dim_ = -1;
};

// Flattens dims start_dim..end_dim into one (a view when the strides allow).
class FlattenImpl : public Module {
 public:
  explicit FlattenImpl(const FlattenOptions& options = {}) : options(options) {}
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  std::string extra_repr() const override;

  FlattenOptions options;
};
MG_MODULE(Flatten);

}  // namespace metagrad::nn
