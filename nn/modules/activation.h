// Activation modules: ReLU, LeakyReLU, ELU, GELU, Tanh, Sigmoid, Softplus. None has
// parameters; each applies the nn::functional function of the same name (ReLU, Tanh and
// Sigmoid call the tensor ops directly, so they need nothing beyond tensor/).
#pragma once
#include "nn/module.h"

namespace metagrad::nn {

class ReLUImpl : public Module {
 public:
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
};
MG_MODULE(ReLU);

class TanhImpl : public Module {
 public:
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
};
MG_MODULE(Tanh);

class SigmoidImpl : public Module {
 public:
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
};
MG_MODULE(Sigmoid);

struct LeakyReLUOptions {
  LeakyReLUOptions& negative_slope(double s) {
    negative_slope_ = s;
    return *this;
  }
  double negative_slope_ = 0.01;
};
class LeakyReLUImpl : public Module {
 public:
  explicit LeakyReLUImpl(const LeakyReLUOptions& options = {}) : options(options) {}
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  std::string extra_repr() const override;
  LeakyReLUOptions options;
};
MG_MODULE(LeakyReLU);

struct ELUOptions {
  ELUOptions& alpha(double a) {
    alpha_ = a;
    return *this;
  }
  double alpha_ = 1.0;
};
class ELUImpl : public Module {
 public:
  explicit ELUImpl(const ELUOptions& options = {}) : options(options) {}
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  std::string extra_repr() const override;
  ELUOptions options;
};
MG_MODULE(ELU);

// The exact form x * Phi(x), Phi the standard normal CDF.
class GELUImpl : public Module {
 public:
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  std::string extra_repr() const override;
};
MG_MODULE(GELU);

struct SoftplusOptions {
  SoftplusOptions& beta(double b) {
    beta_ = b;
    return *this;
  }
  SoftplusOptions& threshold(double t) {
    threshold_ = t;
    return *this;
  }
  double beta_ = 1.0, threshold_ = 20.0;
};
class SoftplusImpl : public Module {
 public:
  explicit SoftplusImpl(const SoftplusOptions& options = {}) : options(options) {}
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  std::string extra_repr() const override;
  SoftplusOptions options;
};
MG_MODULE(Softplus);

}  // namespace metagrad::nn
