// Learning-rate schedulers (see nn/optim/lr_scheduler.h for the formulas).
#include "nn/optim/lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace metagrad::optim {

LRScheduler::LRScheduler(Optimizer& optimizer)
    : optimizer_(optimizer), live_(optimizer.schedulers_) {
  MG_CHECK(*live_ == 0, "LRScheduler", "this ", optimizer.name_,
           " optimizer already has a scheduler: schedulers do not chain here (each sets the lr "
           "from its closed form); combine them in one LambdaLR (e.g. warmup_cosine)");
  ++*live_;
  for (size_t g = 0; g < optimizer.num_param_groups(); ++g) base_lrs_.push_back(optimizer.lr(g));
}

void LRScheduler::step() {
  ++last_epoch_;
  last_lr_.clear();
  for (size_t g = 0; g < base_lrs_.size(); ++g) {
    const double lr = lr_at(last_epoch_, base_lrs_[g]);
    optimizer_.set_lr(g, lr);
    last_lr_.push_back(lr);
  }
}

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  MG_CHECK(step_size > 0, "StepLR", "step_size must be positive, got ", step_size);
  initial_step();
}
double StepLR::lr_at(int64_t epoch, double base_lr) const {
  return base_lr * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

ExponentialLR::ExponentialLR(Optimizer& optimizer, double gamma)
    : LRScheduler(optimizer), gamma_(gamma) {
  initial_step();
}
double ExponentialLR::lr_at(int64_t epoch, double base_lr) const {
  return base_lr * std::pow(gamma_, static_cast<double>(epoch));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min)
    : LRScheduler(optimizer), T_max_(T_max), eta_min_(eta_min) {
  MG_CHECK(T_max > 0, "CosineAnnealingLR", "T_max must be positive, got ", T_max);
  initial_step();
}
double CosineAnnealingLR::lr_at(int64_t epoch, double base_lr) const {
  const double c =
      std::cos(std::numbers::pi * static_cast<double>(epoch) / static_cast<double>(T_max_));
  return eta_min_ + (base_lr - eta_min_) * (1 + c) / 2;
}

LambdaLR::LambdaLR(Optimizer& optimizer, std::function<double(int64_t)> lr_lambda)
    : LRScheduler(optimizer), lambda_(std::move(lr_lambda)) {
  MG_CHECK(lambda_ != nullptr, "LambdaLR", "lr_lambda is empty");
  initial_step();
}
double LambdaLR::lr_at(int64_t epoch, double base_lr) const {
  return base_lr * lambda_(epoch);
}

LinearLR::LinearLR(Optimizer& optimizer, double start_factor, double end_factor,
                   int64_t total_iters)
    : LRScheduler(optimizer), start_(start_factor), end_(end_factor), total_(total_iters) {
  MG_CHECK(start_factor > 0 || (start_factor == 0 && total_iters > 0), "LinearLR",
           "start_factor must lie in (0, 1] (0 allowed with a warm-up), got ", start_factor);
  MG_CHECK(start_factor <= 1 && end_factor >= 0 && end_factor <= 1, "LinearLR",
           "start_factor and end_factor must lie in [0, 1], got ", start_factor, " and ",
           end_factor);
  MG_CHECK(total_iters >= 0, "LinearLR", "total_iters must be >= 0, got ", total_iters);
  initial_step();
}
double LinearLR::lr_at(int64_t epoch, double base_lr) const {
  if (total_ == 0) return base_lr * end_;
  const double f = static_cast<double>(std::min(epoch, total_)) / static_cast<double>(total_);
  return base_lr * (start_ + (end_ - start_) * f);
}

std::function<double(int64_t)> warmup_cosine(int64_t warmup_iters, int64_t total_iters,
                                             double start_factor, double min_factor) {
  MG_CHECK(warmup_iters >= 0 && total_iters > warmup_iters, "warmup_cosine",
           "need 0 <= warmup_iters < total_iters, got ", warmup_iters, " and ", total_iters);
  return [=](int64_t e) {
    if (e < warmup_iters)
      return start_factor +
             (1 - start_factor) * static_cast<double>(e) / static_cast<double>(warmup_iters);
    const double t = std::min(1.0, static_cast<double>(e - warmup_iters) /
                                       static_cast<double>(total_iters - warmup_iters));
    return min_factor + (1 - min_factor) * (1 + std::cos(std::numbers::pi * t)) / 2;
  };
}

}  // namespace metagrad::optim
