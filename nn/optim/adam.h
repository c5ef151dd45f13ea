// optim::Adam and optim::AdamW with PyTorch's exact update (torch.optim.Adam / AdamW), per
// parameter p with gradient g at step t (counted from 1):
//   Adam:  g = g + weight_decay * p          AdamW:  p = p * (1 - lr * weight_decay)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   v_max = max(v_max, v)                    (amsgrad; the denominator then uses v_max)
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
#pragma once
#include <tuple>

#include "nn/optim/optimizer.h"

namespace metagrad::optim {

struct AdamOptions {
  AdamOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT: implicit, as libtorch
  AdamOptions& lr(double v) {
    lr_ = v;
    return *this;
  }
  AdamOptions& betas(std::tuple<double, double> b) {
    betas_ = b;
    return *this;
  }
  AdamOptions& eps(double v) {
    eps_ = v;
    return *this;
  }
  AdamOptions& weight_decay(double v) {
    weight_decay_ = v;
    return *this;
  }
  AdamOptions& amsgrad(bool on) {
    amsgrad_ = on;
    return *this;
  }
  double lr_;
  std::tuple<double, double> betas_{0.9, 0.999};
  double eps_ = 1e-8, weight_decay_ = 0;
  bool amsgrad_ = false;
};

// As AdamOptions, with PyTorch's AdamW default weight_decay = 1e-2.
struct AdamWOptions {
  AdamWOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT
  AdamWOptions& lr(double v) {
    lr_ = v;
    return *this;
  }
  AdamWOptions& betas(std::tuple<double, double> b) {
    betas_ = b;
    return *this;
  }
  AdamWOptions& eps(double v) {
    eps_ = v;
    return *this;
  }
  AdamWOptions& weight_decay(double v) {
    weight_decay_ = v;
    return *this;
  }
  AdamWOptions& amsgrad(bool on) {
    amsgrad_ = on;
    return *this;
  }
  double lr_;
  std::tuple<double, double> betas_{0.9, 0.999};
  double eps_ = 1e-8, weight_decay_ = 1e-2;
  bool amsgrad_ = false;
};

namespace detail {
// Adam and AdamW share everything but the options type and how weight decay is applied.
template <typename Options, bool kDecoupled>
class AdamBase : public OptimizerWithOptions<Options> {
 public:
  void step() override;

 protected:
  AdamBase(const char* name, std::vector<ParamGroup<Options>> groups);
  std::map<std::string, double> group_hyper(size_t group) const override;
  void check_hyper(const std::map<std::string, double>& hyper) const override;
  void set_group_hyper(size_t group, const std::map<std::string, double>& hyper) override;
  std::set<std::string> state_names(const std::map<std::string, double>& hyper) const override;
  std::set<std::string> all_state_names() const override;
  bool counts_steps() const override { return true; }
};
}  // namespace detail

class Adam : public detail::AdamBase<AdamOptions, false> {
 public:
  Adam(std::vector<Tensor> params, AdamOptions options = {});
  explicit Adam(std::vector<ParamGroup<AdamOptions>> groups);
};

class AdamW : public detail::AdamBase<AdamWOptions, true> {
 public:
  AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  explicit AdamW(std::vector<ParamGroup<AdamWOptions>> groups);
};

}  // namespace metagrad::optim
