// optim::Optimizer: the base of SGD, Adam and AdamW, shaped like torch::optim::Optimizer.
//
// Parameters come in groups, each with its own hyper-parameters (at least one group);
// per-parameter state (momentum buffers, moment estimates, step counts) is kept by the
// parameter's flat index: its position when the groups are laid end to end. Updates run
// under NoGradGuard with in-place ops on the parameters' own storage, so every handle on a
// parameter (the Module's, a ParamMap's) sees the new values.
#pragma once
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "nn/module.h"
#include "tensor/tensor.h"

namespace metagrad::optim {

using nn::ParamMap;

// An optimizer's whole state, as plain data a checkpoint can store.
//   tensors: "<i>.<name>" per parameter i (flat index), e.g. "0.momentum_buffer",
//            "3.exp_avg", "3.exp_avg_sq", "3.max_exp_avg_sq";
//   scalars: "param_groups" (the group count), "group.<g>.params" (its parameter count),
//            "group.<g>.<hyper-parameter>" (lr, momentum, beta1, ...; flags as 0/1) and
//            "<i>.step" per parameter with state (Adam, AdamW).
struct OptimizerState {
  ParamMap tensors;
  std::map<std::string, double> scalars;
};

// A group's parameters with its hyper-parameters.
template <typename Options>
struct ParamGroup {
  std::vector<Tensor> params;
  Options options;
};

// Note [Multi-tensor updates]: the optimizers gather the parameters their fused kernel takes
// (contiguous, state of the same layout) into batches of one device, dtype and update
// arguments, and hand each batch to one multi-tensor kernel call: on the GPU one launch per 64
// tensors instead of one per tensor (a conv-4 has 18 parameter tensors), on the CPU the same
// per-tensor loops as before. Parameters are independent, so the values are exactly those of
// one update after another. A batch keeps every tensor it points into alive until it runs.
class FusedBatch {
 public:
  explicit FusedBatch(size_t operands) : data_(operands), present_(operands, false) {}

  bool empty() const { return sizes_.empty(); }
  // Whether a parameter p with update arguments `key` (equal keys: equal arguments) may join.
  bool accepts(const Tensor& p, int64_t key) const {
    return empty() || (p.device() == device_ && p.dtype() == dtype_ && key == key_);
  }
  // Adds p's operands (p first; null or undefined for an absent state buffer).
  void add(const Tensor& p, int64_t key, std::initializer_list<const Tensor*> operands) {
    if (empty()) {
      device_ = p.device();
      dtype_ = p.dtype();
      key_ = key;
    }
    sizes_.push_back(p.numel());
    size_t k = 0;
    for (const Tensor* t : operands) {
      const bool there = t != nullptr && t->defined();
      data_[k].push_back(there ? t->raw_data() : nullptr);  // null also for an empty tensor
      if (there) {
        present_[k] = true;
        keep_.push_back(*t);
      }
      ++k;
    }
  }
  void clear() {
    sizes_.clear();
    keep_.clear();
    for (auto& d : data_) d.clear();
    present_.assign(present_.size(), false);
  }

  Device device() const { return device_; }
  DType dtype() const { return dtype_; }
  int count() const { return static_cast<int>(sizes_.size()); }
  const int64_t* sizes() const { return sizes_.data(); }
  // Operand k's pointers, or null when no tensor of the batch has that operand.
  void* const* data(size_t k) const { return present_[k] ? data_[k].data() : nullptr; }

 private:
  Device device_ = Device::cpu();
  DType dtype_ = DType::Float32;
  int64_t key_ = 0;
  std::vector<int64_t> sizes_;
  std::vector<std::vector<void*>> data_;
  std::vector<bool> present_;
  std::vector<Tensor> keep_;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (others are skipped).
  virtual void step() = 0;
  // set_to_none: leave the gradients undefined (PyTorch's default); else zero them in place.
  void zero_grad(bool set_to_none = true);

  size_t num_param_groups() const { return groups_.size(); }
  const std::vector<Tensor>& params(size_t group = 0) const;
  std::vector<Tensor> parameters() const;  // every group's, in flat-index order
  virtual double lr(size_t group = 0) const = 0;
  virtual void set_lr(size_t group, double lr) = 0;
  void set_lr(double lr);  // every group

  // A copy of the state (the tensors are cloned: later steps do not change it).
  OptimizerState state_dict() const;
  // Replaces the state and the groups' hyper-parameters (lr included) by `state`, which must
  // come from an optimizer of the same kind over parameters of the same shapes. Everything is
  // checked before anything changes; the tensors are copied (converted to each parameter's
  // dtype).
  void load_state_dict(const OptimizerState& state);

 protected:
  // `name` prefixes errors ("SGD"). Parameters must be floating leaf tensors; a parameter
  // repeated within a group is kept once, one in two groups is an error.
  Optimizer(const char* name, std::vector<std::vector<Tensor>> groups);

  struct ParamState {
    std::map<std::string, Tensor> tensors;
    int64_t step = 0;
  };
  // The parameter's state, by group and position in the group.
  ParamState& state(size_t group, size_t i) { return state_[offsets_[group] + i]; }
  // Checks p's gradient matches p (shape, dtype, device) and returns it, or undefined when p
  // has none.
  Tensor grad_of(const Tensor& p) const;
  // The same check for every parameter: step() runs it before it changes anything, so a bad
  // gradient leaves parameters and state as they were (not half a step).
  void check_grads() const;
  // Whether a fused kernel can take `t` next to p: contiguous, same dtype and shape.
  static bool fusable_with(const Tensor& t, const Tensor& p) {
    return t.is_contiguous() && t.dtype() == p.dtype() && t.shape() == p.shape() &&
           t.device() == p.device();
  }

  // ---- what each optimizer tells the base about itself --------------------------------
  // A group's hyper-parameters as named numbers (flags as 0/1).
  virtual std::map<std::string, double> group_hyper(size_t group) const = 0;
  // Checks hyper-parameters read from a state dict (every name of group_hyper present);
  // throws with the optimizer's name. Must not change anything.
  virtual void check_hyper(const std::map<std::string, double>& hyper) const = 0;
  virtual void set_group_hyper(size_t group, const std::map<std::string, double>& hyper) = 0;
  // The state tensors a parameter with state has under these hyper-parameters.
  virtual std::set<std::string> state_names(const std::map<std::string, double>& hyper) const = 0;
  // Every state tensor it may have under any hyper-parameters (a state dict may hold them all).
  virtual std::set<std::string> all_state_names() const = 0;
  // Whether a parameter with state also has a step count.
  virtual bool counts_steps() const { return false; }

  const char* name_;
  std::vector<std::vector<Tensor>> groups_;

 private:
  friend class LRScheduler;
  // How many LRSchedulers drive this optimizer now: shared with them, so that one that outlives
  // the optimizer still finds it when it goes.
  std::shared_ptr<int> schedulers_ = std::make_shared<int>(0);
  void check_grad(const Tensor& p) const;
  std::vector<size_t> offsets_;  // flat index of each group's first parameter
  std::vector<ParamState> state_;
};

// Shared by the optimizers: the lr accessors over a vector of typed options.
template <typename Options>
class OptimizerWithOptions : public Optimizer {
 public:
  Options& options(size_t group = 0) {
    MG_CHECK(group < options_.size(), name_, "param group ", group, " does not exist (",
             options_.size(), " groups)");
    return options_[group];
  }
  double lr(size_t group = 0) const override {
    MG_CHECK(group < options_.size(), name_, "param group ", group, " does not exist (",
             options_.size(), " groups)");
    return options_[group].lr_;
  }
  using Optimizer::set_lr;
  void set_lr(size_t group, double lr) override {
    MG_CHECK(std::isfinite(lr) && lr >= 0, name_, "invalid learning rate ", lr);
    options(group).lr_ = lr;
  }

 protected:
  OptimizerWithOptions(const char* name, std::vector<ParamGroup<Options>> groups)
      : Optimizer(name, params_of(groups)) {
    for (auto& g : groups) options_.push_back(g.options);
  }
  static std::vector<std::vector<Tensor>> params_of(const std::vector<ParamGroup<Options>>& gs) {
    std::vector<std::vector<Tensor>> out;
    for (const auto& g : gs) out.push_back(g.params);
    return out;
  }
  std::vector<Options> options_;
};

}  // namespace metagrad::optim
