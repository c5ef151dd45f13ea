// optim::SGD (see nn/optim/sgd.h for the update).
#include "nn/optim/sgd.h"

#include <cmath>

#include "kernels/cpu/optim.h"
#include "tensor/creation.h"
#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"

namespace metagrad::optim {

namespace {
SGDOptions from_map(const std::map<std::string, double>& h) {
  return SGDOptions(h.at("lr"))
      .momentum(h.at("momentum"))
      .dampening(h.at("dampening"))
      .weight_decay(h.at("weight_decay"))
      .nesterov(h.at("nesterov") != 0);
}

void check(const SGDOptions& o) {
  MG_CHECK(std::isfinite(o.lr_) && o.lr_ >= 0, "SGD", "invalid learning rate ", o.lr_);
  MG_CHECK(o.momentum_ >= 0, "SGD", "invalid momentum ", o.momentum_);
  MG_CHECK(o.weight_decay_ >= 0, "SGD", "invalid weight_decay ", o.weight_decay_);
  MG_CHECK(!o.nesterov_ || (o.momentum_ > 0 && o.dampening_ == 0), "SGD",
           "Nesterov momentum requires a momentum and zero dampening");
}
}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : SGD(std::vector<ParamGroup<SGDOptions>>{{std::move(params), options}}) {}

SGD::SGD(std::vector<ParamGroup<SGDOptions>> groups)
    : OptimizerWithOptions("SGD", std::move(groups)) {
  for (const auto& o : options_) check(o);
}

void SGD::step() {
  // options() hands out the groups' options for changes (lr schedules): check them here too.
  for (const auto& o : options_) check(o);
  check_grads();
  NoGradGuard no_grad;
  FusedBatch batch(3);  // p, grad, momentum buffer (Note [Multi-tensor updates])
  kernels::SGDStepArgs args{};
  auto flush = [&] {
    if (batch.empty()) return;
    MG_KERNEL(batch.device(), sgd_step_multi, batch.dtype(), batch.count(), batch.sizes(),
              batch.data(0), batch.data(1), batch.data(2), args);
    batch.clear();
  };
  for (size_t g = 0; g < groups_.size(); ++g) {
    const SGDOptions& o = options_[g];
    for (size_t i = 0; i < groups_[g].size(); ++i) {
      Tensor& p = groups_[g][i];
      Tensor d = grad_of(p);
      if (!d.defined()) continue;
      Tensor* buf = o.momentum_ != 0 ? &state(g, i).tensors["momentum_buffer"] : nullptr;
      if (p.is_contiguous() && fusable_with(d, p) &&
          (!buf || !buf->defined() || fusable_with(*buf, p))) {
        // The fused kernel (kernels/cpu/optim.h, kernels/cuda/optim.cu): one pass, same arithmetic
        // as below.
        const bool first = buf && !buf->defined();
        if (first) *buf = empty_like(p);
        if (!batch.accepts(p, first)) flush();
        args = {o.lr_, o.momentum_, o.dampening_, o.weight_decay_, o.nesterov_, first};
        batch.add(p, first, {&p, &d, buf});
        p.bump_version();
        if (buf) buf->bump_version();
        continue;
      }
      // The composed twin, for other layouts.
      if (o.weight_decay_ != 0) d = d + p * o.weight_decay_;
      if (buf) {
        if (!buf->defined()) {
          *buf = d.clone();
        } else {
          *buf *= o.momentum_;
          *buf += d * (1 - o.dampening_);
        }
        d = o.nesterov_ ? d + *buf * o.momentum_ : *buf;
      }
      p -= d * o.lr_;
    }
    flush();  // the next group has its own hyper-parameters
  }
}

std::map<std::string, double> SGD::group_hyper(size_t group) const {
  const SGDOptions& o = options_[group];
  return {{"lr", o.lr_},
          {"momentum", o.momentum_},
          {"dampening", o.dampening_},
          {"weight_decay", o.weight_decay_},
          {"nesterov", o.nesterov_ ? 1.0 : 0.0}};
}

void SGD::check_hyper(const std::map<std::string, double>& h) const {
  const double n = h.at("nesterov");
  MG_CHECK(n == 0 || n == 1, "SGD", "nesterov must be 0 or 1 in a state dict, got ", n);
  check(from_map(h));
}

void SGD::set_group_hyper(size_t group, const std::map<std::string, double>& h) {
  options_[group] = from_map(h);
}

std::set<std::string> SGD::state_names(const std::map<std::string, double>& h) const {
  if (h.at("momentum") != 0) return {"momentum_buffer"};
  return {};
}

std::set<std::string> SGD::all_state_names() const {
  return {"momentum_buffer"};
}

}  // namespace metagrad::optim
