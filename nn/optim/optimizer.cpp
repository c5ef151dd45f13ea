// optim::Optimizer: groups, gradients, and the state dict with its checks.
#include "nn/optim/optimizer.h"

#include <cmath>
#include <unordered_set>

#include "tensor/grad_mode.h"

namespace metagrad::optim {

Optimizer::Optimizer(const char* name, std::vector<std::vector<Tensor>> groups) : name_(name) {
  MG_CHECK(!groups.empty(), name_, "needs at least one param group");
  std::unordered_set<const TensorImpl*> seen;
  for (size_t g = 0; g < groups.size(); ++g) {
    std::vector<Tensor> kept;
    std::unordered_set<const TensorImpl*> in_group;
    for (const Tensor& p : groups[g]) {
      MG_CHECK(p.defined(), name_, "param group ", g, " holds an undefined tensor");
      MG_CHECK(p.is_floating_point(), name_, "can only optimize floating-point tensors, got ",
               dtype_name(p.dtype()), " in param group ", g);
      MG_CHECK(p.is_leaf(), name_, "can't optimize a non-leaf tensor (param group ", g, ", shape ",
               shape_str(p.shape()), ")");
      if (!in_group.insert(p.impl()).second) continue;  // repeated in this group: once
      MG_CHECK(seen.insert(p.impl()).second, name_,
               "some parameters appear in more than one param group");
      kept.push_back(p);
    }
    offsets_.push_back(state_.size());
    state_.resize(state_.size() + kept.size());
    groups_.push_back(std::move(kept));
  }
  MG_CHECK(!state_.empty(), name_, "got an empty parameter list");
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (auto& group : groups_)
    for (Tensor& p : group) {
      if (!p.grad().defined()) continue;
      if (set_to_none) {
        p.set_grad(Tensor());
      } else {
        Tensor g = p.grad().detach();  // a grad with history (create_graph) loses it
        g.zero_();
        p.set_grad(g);
      }
    }
}

const std::vector<Tensor>& Optimizer::params(size_t group) const {
  MG_CHECK(group < groups_.size(), name_, "param group ", group, " does not exist (",
           groups_.size(), " groups)");
  return groups_[group];
}

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> out;
  for (const auto& g : groups_) out.insert(out.end(), g.begin(), g.end());
  return out;
}

void Optimizer::set_lr(double lr) {
  for (size_t g = 0; g < groups_.size(); ++g) set_lr(g, lr);
}

void Optimizer::check_grad(const Tensor& p) const {
  const Tensor& g = p.grad();
  if (!g.defined()) return;
  MG_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(), name_,
           "the gradient (", shape_str(g.shape()), ", ", dtype_name(g.dtype()), ", ",
           g.device().str(), ") does not match its parameter (", shape_str(p.shape()), ", ",
           dtype_name(p.dtype()), ", ", p.device().str(), ")");
}

void Optimizer::check_grads() const {
  for (const auto& group : groups_)
    for (const Tensor& p : group) check_grad(p);
}

Tensor Optimizer::grad_of(const Tensor& p) const {
  check_grad(p);
  const Tensor& g = p.grad();
  return g.defined() ? g.detach() : g;
}

// ---- state dict --------------------------------------------------------------------------

OptimizerState Optimizer::state_dict() const {
  OptimizerState s;
  NoGradGuard no_grad;
  s.scalars["param_groups"] = static_cast<double>(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string pre = "group." + std::to_string(g) + ".";
    s.scalars[pre + "params"] = static_cast<double>(groups_[g].size());
    for (const auto& [k, v] : group_hyper(g)) s.scalars[pre + k] = v;
  }
  for (size_t i = 0; i < state_.size(); ++i) {
    const ParamState& ps = state_[i];
    for (const auto& [k, t] : ps.tensors) s.tensors[std::to_string(i) + "." + k] = t.clone();
    if (counts_steps() && !ps.tensors.empty())
      s.scalars[std::to_string(i) + ".step"] = static_cast<double>(ps.step);
  }
  return s;
}

namespace {
// "12.exp_avg" -> (12, "exp_avg"); false unless the key has that form.
bool split_key(const std::string& key, size_t& index, std::string& name) {
  const size_t dot = key.find('.');
  if (dot == 0 || dot == std::string::npos || dot + 1 == key.size()) return false;
  for (size_t i = 0; i < dot; ++i)
    if (key[i] < '0' || key[i] > '9') return false;
  if (dot > 9) return false;  // no real optimizer has a billion parameters
  index = std::stoul(key.substr(0, dot));
  name = key.substr(dot + 1);
  return true;
}

bool is_count(double v) {
  return std::isfinite(v) && v >= 0 && v == std::floor(v) && v < 1e15;
}
}  // namespace

void Optimizer::load_state_dict(const OptimizerState& st) {
  const char* op = "load_state_dict";
  auto scalar = [&](const std::string& key) {
    auto it = st.scalars.find(key);
    MG_CHECK(it != st.scalars.end(), op, name_, ": the state dict has no '", key, "'");
    return it->second;
  };
  // Groups: counts and hyper-parameters.
  MG_CHECK(scalar("param_groups") == static_cast<double>(groups_.size()), op, name_,
           ": the state dict has ", scalar("param_groups"), " param groups, the optimizer ",
           groups_.size());
  std::set<std::string> known = {"param_groups"};
  std::vector<std::map<std::string, double>> hypers(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string pre = "group." + std::to_string(g) + ".";
    known.insert(pre + "params");
    MG_CHECK(scalar(pre + "params") == static_cast<double>(groups_[g].size()), op, name_,
             ": param group ", g, " has ", scalar(pre + "params"),
             " parameters in the state dict, ", groups_[g].size(), " in the optimizer");
    for (const auto& [k, v] : group_hyper(g)) {
      hypers[g][k] = scalar(pre + k);
      known.insert(pre + k);
    }
    try {
      check_hyper(hypers[g]);
    } catch (const Error& e) {
      detail::fail(op, name_, ": param group ", g, " of the state dict: ", e.what());
    }
  }
  // Per-parameter entries.
  std::vector<size_t> group_of(state_.size());
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t j = 0; j < groups_[g].size(); ++j) group_of[offsets_[g] + j] = g;
  auto param_at = [&](size_t i) -> const Tensor& {
    return groups_[group_of[i]][i - offsets_[group_of[i]]];
  };
  std::vector<std::set<std::string>> names(state_.size());
  std::vector<int64_t> steps(state_.size(), -1);
  for (const auto& [key, v] : st.scalars) {
    if (known.count(key)) continue;
    size_t i = 0;
    std::string n;
    MG_CHECK(split_key(key, i, n) && n == "step" && counts_steps() && i < state_.size(), op, name_,
             ": unexpected entry '", key, "' in the state dict's scalars");
    MG_CHECK(is_count(v), op, name_, ": '", key, "' = ", v, " is not a step count");
    steps[i] = static_cast<int64_t>(v);
  }
  for (const auto& [key, t] : st.tensors) {
    size_t i = 0;
    std::string n;
    MG_CHECK(split_key(key, i, n) && i < state_.size(), op, name_, ": unexpected tensor '", key,
             "' in the state dict (", state_.size(), " parameters)");
    // Any state this optimizer keeps, not only what the saved hyper-parameters need: a buffer
    // stays after its option is turned off (momentum 0, amsgrad false), as in PyTorch.
    MG_CHECK(all_state_names().count(n), op, name_, ": unexpected tensor '", key,
             "' in the state dict");
    MG_CHECK(t.defined(), op, name_, ": '", key, "' is an undefined tensor");
    MG_CHECK(t.is_floating_point(), op, name_, ": '", key, "' has dtype ", dtype_name(t.dtype()),
             ", expected a floating-point tensor");
    MG_CHECK(t.shape() == param_at(i).shape(), op, name_, ": '", key, "' has shape ",
             shape_str(t.shape()), ", its parameter has shape ", shape_str(param_at(i).shape()));
    names[i].insert(n);
  }
  for (size_t i = 0; i < state_.size(); ++i) {
    if (names[i].empty()) {
      MG_CHECK(steps[i] < 0, op, name_, ": '", i, ".step' is given without state tensors");
      continue;
    }
    const std::set<std::string> want = state_names(hypers[group_of[i]]);
    for (const auto& w : want)
      MG_CHECK(names[i].count(w), op, name_, ": parameter ", i, " has state but no '", i, ".", w,
               "' in the state dict");
    MG_CHECK(!counts_steps() || steps[i] >= 0, op, name_, ": parameter ", i, " has state but no '",
             i, ".step' in the state dict");
  }
  // Everything checked: apply.
  NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) set_group_hyper(g, hypers[g]);
  for (size_t i = 0; i < state_.size(); ++i) {
    ParamState ps;
    for (const auto& n : names[i]) {
      const Tensor& src = st.tensors.at(std::to_string(i) + "." + n);
      // On the parameter's dtype and device, as PyTorch's Optimizer.load_state_dict.
      ps.tensors[n] = src.to(param_at(i).dtype()).to(param_at(i).device()).clone();
    }
    ps.step = steps[i] < 0 ? 0 : steps[i];
    state_[i] = std::move(ps);
  }
}

}  // namespace metagrad::optim
