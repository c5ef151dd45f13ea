// BatchNorm2d and LayerNorm.
#include "nn/modules/norm.h"

#include <algorithm>

#include "nn/functional.h"
#include "nn/init.h"
#include "nn/modules/repr.h"
#include "tensor/creation.h"
#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"

namespace metagrad::nn {

namespace {
const char* mode_name(BNMode m) {
  switch (m) {
    case BNMode::BatchStats:
      return "BatchStats";
    case BNMode::RunningStats:
      return "RunningStats";
    case BNMode::Identity:
      return "Identity";
  }
  return "?";
}
}  // namespace

BatchNorm2dImpl::BatchNorm2dImpl(const BatchNorm2dOptions& o) : options(o) {
  MG_CHECK(o.num_features_ > 0, "BatchNorm2d", "num_features must be positive, got ",
           o.num_features_);
  MG_CHECK(o.eps_ > 0, "BatchNorm2d", "eps must be positive, got ", o.eps_);
  MG_CHECK(!o.momentum_ || (*o.momentum_ >= 0 && *o.momentum_ <= 1), "BatchNorm2d",
           "momentum must lie in [0, 1], got ", o.momentum_.value_or(0));
  const int64_t C = o.num_features_;
  if (o.affine_) {
    weight = register_parameter("weight", empty({C}));
    bias = register_parameter("bias", empty({C}));
  }
  if (o.track_running_stats_) {
    running_mean = register_buffer("running_mean", empty({C}));
    running_var = register_buffer("running_var", empty({C}));
    num_batches_tracked =
        register_buffer("num_batches_tracked", empty({}, TensorOptions(DType::Int64)));
  }
  reset_parameters();
}

void BatchNorm2dImpl::reset_running_stats() {
  if (!options.track_running_stats_) return;
  init::zeros_(running_mean);
  init::ones_(running_var);
  init::zeros_(num_batches_tracked);
}

void BatchNorm2dImpl::reset_parameters(Generator*) {
  reset_running_stats();
  if (options.affine_) {
    init::ones_(weight);
    init::zeros_(bias);
  }
}

Tensor BatchNorm2dImpl::forward(const Tensor& x, const ParamMap& params) {
  if (!params.empty()) check_params(params);
  // [N, C, H, W], or [B, N, C, H, W] with stacks of B weights / biases in params
  const Tensor w = param(params, "weight", weight, /*stackable=*/true),
               b = param(params, "bias", bias, /*stackable=*/true);
  const bool stacked = (w.defined() && w.dim() == 2) || (b.defined() && b.dim() == 2);
  const int64_t cdim = stacked ? 2 : 1;
  MG_CHECK(x.defined() && x.dim() == cdim + 3 && x.size(cdim) == options.num_features_,
           "BatchNorm2d", "expected a 4-d input [N, ", options.num_features_, ", H, W]",
           stacked ? " stacked as [B, N, C, H, W] for stacked weights" : "", ", got shape ",
           x.defined() ? shape_str(x.shape()) : std::string("(undefined)"));
  if (options.mode_ == BNMode::Identity) return x;
  const bool tracked = options.track_running_stats_;
  const bool use_batch = options.mode_ == BNMode::BatchStats || is_training() || !tracked;
  const bool update = tracked && is_training();
  MG_CHECK(!stacked || (use_batch && !update), "BatchNorm2d",
           "stacked (task-batched) weights need batch statistics without running statistics to "
           "update: build the layer with track_running_stats(false), or run it in eval mode "
           "with mode(BNMode::BatchStats)");
  double factor = 0.0;
  if (update) {
    {
      NoGradGuard no_grad;
      num_batches_tracked += 1;
    }
    factor = options.momentum_ ? *options.momentum_
                               : 1.0 / static_cast<double>(num_batches_tracked.item<int64_t>());
  }
  // Running statistics go to batch_norm when it updates them (training) or reads them (eval);
  // in batch mode outside training they are left alone.
  const bool pass_running = update || !use_batch;
  return functional::batch_norm(x, pass_running ? running_mean : Tensor(),
                                pass_running ? running_var : Tensor(), w, b, use_batch, factor,
                                options.eps_);
}

std::string BatchNorm2dImpl::extra_repr() const {
  const auto& o = options;
  std::string s = std::to_string(o.num_features_) + ", eps=" + detail::py_float(o.eps_) +
                  ", momentum=" + (o.momentum_ ? detail::py_float(*o.momentum_) : "None") +
                  ", affine=" + detail::py_bool(o.affine_) +
                  ", track_running_stats=" + detail::py_bool(o.track_running_stats_);
  if (o.mode_ != BNMode::RunningStats) s += std::string(", mode=") + mode_name(o.mode_);
  return s;
}

LayerNormImpl::LayerNormImpl(const LayerNormOptions& o) : options(o) {
  MG_CHECK(!o.normalized_shape_.empty(), "LayerNorm", "normalized_shape must not be empty");
  for (int64_t d : o.normalized_shape_)
    MG_CHECK(d > 0, "LayerNorm", "normalized_shape ", shape_str(o.normalized_shape_),
             " must have positive sizes");
  MG_CHECK(o.eps_ > 0, "LayerNorm", "eps must be positive, got ", o.eps_);
  if (o.elementwise_affine_) {
    weight = register_parameter("weight", empty(Shape(o.normalized_shape_)));
    bias = register_parameter("bias", empty(Shape(o.normalized_shape_)));
  }
  reset_parameters();
}

void LayerNormImpl::reset_parameters(Generator*) {
  if (!options.elementwise_affine_) return;
  init::ones_(weight);
  init::zeros_(bias);
}

Tensor LayerNormImpl::forward(const Tensor& x, const ParamMap& params) {
  if (!params.empty()) check_params(params);
  const auto& ns = options.normalized_shape_;
  const int64_t k = static_cast<int64_t>(ns.size());
  bool ok = x.defined() && x.dim() >= k;
  for (int64_t i = 0; ok && i < k; ++i) ok = x.size(x.dim() - k + i) == ns[static_cast<size_t>(i)];
  MG_CHECK(ok, "LayerNorm", "expected an input whose trailing dims are ", shape_str(ns),
           ", got shape ", x.defined() ? shape_str(x.shape()) : std::string("(undefined)"));
  const Tensor w = param(params, "weight", weight, /*stackable=*/true),
               b = param(params, "bias", bias, /*stackable=*/true);
  const auto stack_dims = [&](const Tensor& t) { return t.defined() ? t.dim() - k : 0; };
  const int64_t lead = std::max(stack_dims(w), stack_dims(b));
  if (lead == 0) return functional::layer_norm(x, ns, w, b, options.eps_);
  // A task-batched step's stacks [B..., normalized_shape] for an input [B..., N, ...,
  // normalized_shape]: the normalization is per row as ever, the affine part per task.
  const Tensor& ref = stack_dims(w) == lead ? w : b;
  const Shape stack(ref.shape().begin(), ref.shape().begin() + lead);
  MG_CHECK(x.dim() >= lead + k && Shape(x.shape().begin(), x.shape().begin() + lead) == stack,
           "LayerNorm", "a stack of weights of shape ", shape_str(ref.shape()),
           " needs an input whose leading dims are ", shape_str(stack), ", got shape ",
           shape_str(x.shape()));
  const auto per_task = [&](const Tensor& t) {
    if (t.dim() == k) return t;  // one copy for every task (broadcasts)
    MG_CHECK(stack_dims(t) == lead && Shape(t.shape().begin(), t.shape().begin() + lead) == stack,
             "LayerNorm", "weight and bias stacks differ: ", shape_str(w.shape()), " and ",
             shape_str(b.shape()));
    Shape s(t.shape().begin(), t.shape().begin() + lead);
    s.insert(s.end(), static_cast<size_t>(x.dim() - lead - k), 1);
    s.insert(s.end(), ns.begin(), ns.end());
    return t.reshape(s);
  };
  Tensor y = functional::layer_norm(x, ns, Tensor(), Tensor(), options.eps_);
  if (w.defined()) y = y * per_task(w);
  if (b.defined()) y = y + per_task(b);
  return y;
}

std::string LayerNormImpl::extra_repr() const {
  return detail::py_tuple(options.normalized_shape_) + ", eps=" + detail::py_float(options.eps_) +
         ", elementwise_affine=" + detail::py_bool(options.elementwise_affine_);
}

}  // namespace metagrad::nn
