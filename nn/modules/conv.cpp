// Conv2d.
#include "nn/modules/conv.h"

#include <cmath>

#include "nn/functional.h"
#include "nn/init.h"
#include "nn/modules/repr.h"
#include "tensor/creation.h"

namespace metagrad::nn {

Conv2dImpl::Conv2dImpl(const Conv2dOptions& o, Generator* gen) : options(o) {
  MG_CHECK(o.in_channels_ > 0 && o.out_channels_ > 0, "Conv2d",
           "in_channels and out_channels must be positive, got ", o.in_channels_, " and ",
           o.out_channels_);
  MG_CHECK(o.groups_ > 0, "Conv2d", "groups must be positive, got ", o.groups_);
  MG_CHECK(o.in_channels_ % o.groups_ == 0 && o.out_channels_ % o.groups_ == 0, "Conv2d",
           "in_channels (", o.in_channels_, ") and out_channels (", o.out_channels_,
           ") must both be divisible by groups (", o.groups_, ")");
  for (int i = 0; i < 2; ++i) {
    MG_CHECK(o.kernel_size_[i] > 0 && o.stride_[i] > 0 && o.dilation_[i] > 0, "Conv2d",
             "kernel_size, stride and dilation must be positive, got kernel_size=",
             detail::py_tuple(o.kernel_size_), ", stride=", detail::py_tuple(o.stride_),
             ", dilation=", detail::py_tuple(o.dilation_));
    MG_CHECK(o.padding_[i] >= 0, "Conv2d", "padding must be >= 0, got ",
             detail::py_tuple(o.padding_));
  }
  weight = register_parameter("weight", empty({o.out_channels_, o.in_channels_ / o.groups_,
                                               o.kernel_size_[0], o.kernel_size_[1]}));
  if (o.bias_) bias = register_parameter("bias", empty({o.out_channels_}));
  reset_parameters(gen);
}

void Conv2dImpl::reset_parameters(Generator* gen) {
  // PyTorch's _ConvNd.reset_parameters.
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::FanIn,
                         init::Nonlinearity::LeakyReLU, gen);
  if (bias.defined()) {
    const int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Conv2dImpl::forward(const Tensor& x, const ParamMap& params) {
  if (!params.empty()) check_params(params);
  // [N, C, H, W], unbatched [C, H, W] (as PyTorch's Conv2d), or [B, N, C, H, W] with a stack
  // of B weights in params (a task-batched step)
  const Tensor w = param(params, "weight", weight, /*stackable=*/true);
  const bool stacked = w.dim() == 5;
  const bool ok = x.defined() &&
                  (stacked ? x.dim() == 5 && x.size(2) == options.in_channels_
                           : (x.dim() == 4 || x.dim() == 3) && x.size(-3) == options.in_channels_);
  MG_CHECK(ok, "Conv2d", "expected a 4-d input [N, ", options.in_channels_, ", H, W]",
           stacked ? " stacked as [B, N, C, H, W] for the stack of weights of shape " +
                         shape_str(w.shape())
                   : " (or [" + std::to_string(options.in_channels_) + ", H, W])",
           ", got shape ", x.defined() ? shape_str(x.shape()) : std::string("(undefined)"));
  functional::Conv2dFuncOptions fo;
  fo.stride_ = options.stride_;
  fo.padding_ = options.padding_;
  fo.dilation_ = options.dilation_;
  fo.groups_ = options.groups_;
  return functional::conv2d(x, w, param(params, "bias", bias, /*stackable=*/true), fo);
}

std::string Conv2dImpl::extra_repr() const {
  // PyTorch's _ConvNd.extra_repr.
  const auto& o = options;
  std::string s = std::to_string(o.in_channels_) + ", " + std::to_string(o.out_channels_) +
                  ", kernel_size=" + detail::py_tuple(o.kernel_size_) +
                  ", stride=" + detail::py_tuple(o.stride_);
  if (o.padding_ != std::array<int64_t, 2>{0, 0}) s += ", padding=" + detail::py_tuple(o.padding_);
  if (o.dilation_ != std::array<int64_t, 2>{1, 1})
    s += ", dilation=" + detail::py_tuple(o.dilation_);
  if (o.groups_ != 1) s += ", groups=" + std::to_string(o.groups_);
  if (!o.bias_) s += ", bias=False";
  return s;
}

}  // namespace metagrad::nn
