// Learning-rate schedulers, as torch.optim.lr_scheduler. A scheduler remembers each param
// group's lr at construction (base_lr), sets the lr for epoch 0 at once, and on every step()
// advances one epoch (or iteration: whatever the caller counts) and sets
//   lr = f(epoch, base_lr)
// in the closed forms PyTorch documents (_get_closed_form_lr), so the sequence depends on
// nothing but the epoch count. Call optimizer.step() then scheduler.step(), as in PyTorch.
//
// One scheduler per optimizer at a time: closed forms do not chain (PyTorch's chained
// schedulers multiply their recursive updates), so a second live one on the same optimizer is
// an error rather than a schedule where the last one stepped silently wins. For a warm-up and
// a decay together use one LambdaLR (warmup_cosine below, or a lambda of your own).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "nn/optim/optimizer.h"

namespace metagrad::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() { --*live_; }
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;
  void step();
  // The lr of each group as last set by this scheduler.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }

 protected:
  explicit LRScheduler(Optimizer& optimizer);
  // Derived constructors call this last (a base constructor cannot call lr_at).
  void initial_step() { step(); }
  virtual double lr_at(int64_t epoch, double base_lr) const = 0;

 private:
  Optimizer& optimizer_;
  std::shared_ptr<int> live_;  // the optimizer's count of schedulers (Optimizer::schedulers_)
  std::vector<double> base_lrs_, last_lr_;
  int64_t last_epoch_ = -1;
};

// base_lr * gamma^floor(epoch / step_size).
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);

 protected:
  double lr_at(int64_t epoch, double base_lr) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// base_lr * gamma^epoch.
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma);

 protected:
  double lr_at(int64_t epoch, double base_lr) const override;

 private:
  double gamma_;
};

// eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (SGDR without restarts;
// past T_max the cosine carries on, as PyTorch's closed form).
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0);

 protected:
  double lr_at(int64_t epoch, double base_lr) const override;

 private:
  int64_t T_max_;
  double eta_min_;
};

// base_lr * lambda(epoch).
class LambdaLR : public LRScheduler {
 public:
  LambdaLR(Optimizer& optimizer, std::function<double(int64_t)> lr_lambda);

 protected:
  double lr_at(int64_t epoch, double base_lr) const override;

 private:
  std::function<double(int64_t)> lambda_;
};

// base_lr * (start_factor + (end_factor - start_factor) * min(epoch, total_iters) / total_iters):
// a linear warm-up (or decay) over total_iters steps, then constant (torch LinearLR).
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3.0, double end_factor = 1.0,
           int64_t total_iters = 5);

 protected:
  double lr_at(int64_t epoch, double base_lr) const override;

 private:
  double start_, end_;
  int64_t total_;
};

// A linear warm-up from start_factor * base_lr to base_lr over warmup_iters steps, then
// constant: LinearLR(optimizer, start_factor, 1.0, warmup_iters).
class LinearWarmup : public LinearLR {
 public:
  LinearWarmup(Optimizer& optimizer, int64_t warmup_iters, double start_factor = 0.0)
      : LinearLR(optimizer, start_factor, 1.0, warmup_iters) {}
};

// A factor for LambdaLR: linear warm-up from start_factor to 1 over warmup_iters steps, then
// a cosine decay from 1 to min_factor reached at total_iters (min_factor after that).
std::function<double(int64_t)> warmup_cosine(int64_t warmup_iters, int64_t total_iters,
                                             double start_factor = 0.0, double min_factor = 0.0);

}  // namespace metagrad::optim
