// optim::SGD: stochastic gradient descent with momentum, dampening, weight decay and
// Nesterov momentum, with PyTorch's exact update (torch.optim.SGD):
//   g = grad + weight_decay * p
//   b = g on the first step, else momentum * b + (1 - dampening) * g   (when momentum != 0)
//   g = g + momentum * b if nesterov, else b
//   p = p - lr * g
#pragma once
#include "nn/optim/optimizer.h"

namespace metagrad::optim {

struct SGDOptions {
  SGDOptions(double lr) : lr_(lr) {}  // NOLINT: implicit, as libtorch
  SGDOptions& lr(double v) {
    lr_ = v;
    return *this;
  }
  SGDOptions& momentum(double v) {
    momentum_ = v;
    return *this;
  }
  SGDOptions& dampening(double v) {
    dampening_ = v;
    return *this;
  }
  SGDOptions& weight_decay(double v) {
    weight_decay_ = v;
    return *this;
  }
  SGDOptions& nesterov(bool on) {
    nesterov_ = on;
    return *this;
  }
  double lr_;
  double momentum_ = 0, dampening_ = 0, weight_decay_ = 0;
  bool nesterov_ = false;
};

class SGD : public OptimizerWithOptions<SGDOptions> {
 public:
  SGD(std::vector<Tensor> params, SGDOptions options);
  explicit SGD(std::vector<ParamGroup<SGDOptions>> groups);
  void step() override;

 protected:
  std::map<std::string, double> group_hyper(size_t group) const override;
  void check_hyper(const std::map<std::string, double>& hyper) const override;
  void set_group_hyper(size_t group, const std::map<std::string, double>& hyper) override;
  std::set<std::string> state_names(const std::map<std::string, double>& hyper) const override;
  std::set<std::string> all_state_names() const override;
};

}  // namespace metagrad::optim
