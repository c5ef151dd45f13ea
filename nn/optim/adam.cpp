// optim::Adam and optim::AdamW (see nn/optim/adam.h for the update).
#include "nn/optim/adam.h"

#include <cmath>

#include "kernels/cpu/optim.h"
#include "tensor/creation.h"
#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"

namespace metagrad::optim::detail {

namespace {
template <typename Options>
Options from_map(const std::map<std::string, double>& h) {
  return Options(h.at("lr"))
      .betas({h.at("beta1"), h.at("beta2")})
      .eps(h.at("eps"))
      .weight_decay(h.at("weight_decay"))
      .amsgrad(h.at("amsgrad") != 0);
}

template <typename Options>
void check(const char* name, const Options& o) {
  const auto [b1, b2] = o.betas_;
  MG_CHECK(std::isfinite(o.lr_) && o.lr_ >= 0, name, "invalid learning rate ", o.lr_);
  MG_CHECK(std::isfinite(o.eps_) && o.eps_ >= 0, name, "invalid epsilon ", o.eps_);
  MG_CHECK(b1 >= 0 && b1 < 1, name, "invalid beta1 ", b1, " (must lie in [0, 1))");
  MG_CHECK(b2 >= 0 && b2 < 1, name, "invalid beta2 ", b2, " (must lie in [0, 1))");
  MG_CHECK(o.weight_decay_ >= 0, name, "invalid weight_decay ", o.weight_decay_);
}
}  // namespace

template <typename Options, bool kDecoupled>
AdamBase<Options, kDecoupled>::AdamBase(const char* name, std::vector<ParamGroup<Options>> groups)
    : OptimizerWithOptions<Options>(name, std::move(groups)) {
  for (const auto& o : this->options_) check(name, o);
}

template <typename Options, bool kDecoupled>
void AdamBase<Options, kDecoupled>::step() {
  // options() hands out the groups' options for changes (lr schedules): check them here too.
  for (const auto& o : this->options_) check(this->name_, o);
  this->check_grads();
  NoGradGuard no_grad;
  // p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (Note [Multi-tensor updates])
  FusedBatch batch(5);
  kernels::AdamStepArgs args{};
  auto flush = [&] {
    if (batch.empty()) return;
    MG_KERNEL(batch.device(), adam_step_multi, batch.dtype(), batch.count(), batch.sizes(),
              batch.data(0), batch.data(1), batch.data(2), batch.data(3), batch.data(4), args);
    batch.clear();
  };
  for (size_t g = 0; g < this->groups_.size(); ++g) {
    const Options& o = this->options_[g];
    const auto [b1, b2] = o.betas_;
    for (size_t i = 0; i < this->groups_[g].size(); ++i) {
      Tensor& p = this->groups_[g][i];
      Tensor d = this->grad_of(p);
      if (!d.defined()) continue;
      auto& st = this->state(g, i);
      if (st.tensors.empty()) {
        st.step = 0;
        st.tensors["exp_avg"] = zeros_like(p);
        st.tensors["exp_avg_sq"] = zeros_like(p);
        if (o.amsgrad_) st.tensors["max_exp_avg_sq"] = zeros_like(p);
      }
      const int64_t t = ++st.step;
      Tensor& m = st.tensors["exp_avg"];
      Tensor& v = st.tensors["exp_avg_sq"];
      Tensor* vmax = nullptr;
      if (o.amsgrad_) {
        vmax = &st.tensors["max_exp_avg_sq"];
        if (!vmax->defined()) *vmax = zeros_like(p);  // amsgrad turned on after the first step
      }
      const double bc1 = 1 - std::pow(b1, static_cast<double>(t));
      const double bc2_sqrt = std::sqrt(1 - std::pow(b2, static_cast<double>(t)));
      if (p.is_contiguous() && this->fusable_with(d, p) && this->fusable_with(m, p) &&
          this->fusable_with(v, p) && (!vmax || this->fusable_with(*vmax, p))) {
        // The fused kernel (kernels/cpu/optim.h, kernels/cuda/optim.cu): one pass, same
        // arithmetic as below. The step count decides the bias corrections: part of the key.
        if (!batch.accepts(p, t)) flush();
        args = {o.lr_,      b1,         b2,          o.eps_,  o.weight_decay_,
                o.amsgrad_, kDecoupled, o.lr_ / bc1, bc2_sqrt};
        batch.add(p, t, {&p, &d, &m, &v, vmax});
        for (const Tensor* t2 : {&p, &m, &v}) t2->bump_version();
        if (vmax) vmax->bump_version();
        continue;
      }
      // The composed twin, for other layouts.
      if (o.weight_decay_ != 0) {
        if constexpr (kDecoupled)
          p *= 1 - o.lr_ * o.weight_decay_;
        else
          d = d + p * o.weight_decay_;
      }
      m *= b1;
      m += d * (1 - b1);
      v *= b2;
      v += d * d * (1 - b2);
      Tensor second = v;
      if (vmax) {
        vmax->copy_(maximum(*vmax, v));
        second = *vmax;
      }
      Tensor denom = sqrt(second) / bc2_sqrt + o.eps_;
      p -= m / denom * (o.lr_ / bc1);
    }
    flush();  // the next group has its own hyper-parameters
  }
}

template <typename Options, bool kDecoupled>
std::map<std::string, double> AdamBase<Options, kDecoupled>::group_hyper(size_t group) const {
  const Options& o = this->options_[group];
  return {{"lr", o.lr_},   {"beta1", std::get<0>(o.betas_)},  {"beta2", std::get<1>(o.betas_)},
          {"eps", o.eps_}, {"weight_decay", o.weight_decay_}, {"amsgrad", o.amsgrad_ ? 1.0 : 0.0}};
}

template <typename Options, bool kDecoupled>
void AdamBase<Options, kDecoupled>::check_hyper(const std::map<std::string, double>& h) const {
  const double a = h.at("amsgrad");
  MG_CHECK(a == 0 || a == 1, this->name_, "amsgrad must be 0 or 1 in a state dict, got ", a);
  check(this->name_, from_map<Options>(h));
}

template <typename Options, bool kDecoupled>
void AdamBase<Options, kDecoupled>::set_group_hyper(size_t group,
                                                    const std::map<std::string, double>& h) {
  this->options_[group] = from_map<Options>(h);
}

template <typename Options, bool kDecoupled>
std::set<std::string> AdamBase<Options, kDecoupled>::state_names(
    const std::map<std::string, double>& h) const {
  if (h.at("amsgrad") != 0) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  return {"exp_avg", "exp_avg_sq"};
}

template <typename Options, bool kDecoupled>
std::set<std::string> AdamBase<Options, kDecoupled>::all_state_names() const {
  return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
}

template class AdamBase<AdamOptions, false>;
template class AdamBase<AdamWOptions, true>;

}  // namespace metagrad::optim::detail

namespace metagrad::optim {

Adam::Adam(std::vector<Tensor> params, AdamOptions options)
    : Adam(std::vector<ParamGroup<AdamOptions>>{{std::move(params), options}}) {}
Adam::Adam(std::vector<ParamGroup<AdamOptions>> groups) : AdamBase("Adam", std::move(groups)) {}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options)
    : AdamW(std::vector<ParamGroup<AdamWOptions>>{{std::move(params), options}}) {}
AdamW::AdamW(std::vector<ParamGroup<AdamWOptions>> groups) : AdamBase("AdamW", std::move(groups)) {}

}  // namespace metagrad::optim
