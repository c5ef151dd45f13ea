// nn::functional::conv2d (nn/functional/conv.h): options to Conv2dParams, unbatched inputs.
#include "nn/functional/conv.h"

namespace metagrad::nn::functional {

namespace {

// Note [Task-batched convolution]: B tasks' weights [B, O, C/g, kH, kW] applied each to its
// own images [B, N, C, H, W] are one grouped convolution of B * g groups: the tasks' channels
// side by side ([N, B * C, H, W]), the weights stacked as [B * O, C/g, kH, kW]; its output
// [N, B * O, OH, OW] is the tasks' outputs side by side, returned as the view [B, N, O, OH,
// OW]. One op (and on a GPU one cuDNN call) for the whole meta-batch, differentiable at every
// order like any conv2d, as DESIGN's "tasks stacked as groups of a grouped convolution".
Tensor stacked_conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias,
                      Conv2dParams p) {
  const int64_t b = weight.size(0), o = weight.size(1);
  MG_CHECK(input.defined() && input.dim() == 5, "conv2d", "a stack of weights of shape ",
           shape_str(weight.shape()), " needs a stacked input [B, N, C, H, W], got shape ",
           input.defined() ? shape_str(input.shape()) : std::string("(undefined)"));
  MG_CHECK(input.size(0) == b, "conv2d", "the stacked input of shape ", shape_str(input.shape()),
           " has ", input.size(0), " entries, the stack of weights of shape ",
           shape_str(weight.shape()), " has ", b);
  MG_CHECK(input.size(2) == weight.size(2) * p.groups, "conv2d", "input of shape ",
           shape_str(input.shape()), " has ", input.size(2), " channels, the stack of weights of ",
           "shape ", shape_str(weight.shape()), " expects ", weight.size(2) * p.groups);
  const bool bias_ok =
      !bias.defined() || bias.shape() == Shape({o}) || bias.shape() == Shape({b, o});
  MG_CHECK(bias_ok, "conv2d", "bias of shape ", bias.defined() ? shape_str(bias.shape()) : "",
           " for a stack of ", "weights of shape ", shape_str(weight.shape()), ": expected [", o,
           "] or [", b, ", ", o, "]");
  const int64_t n = input.size(1);
  const Tensor x =
      input.transpose(0, 1).reshape({n, b * input.size(2), input.size(3), input.size(4)});
  const Tensor w = weight.reshape({b * o, weight.size(2), weight.size(3), weight.size(4)});
  Tensor bs;
  if (bias.defined())
    bs = (bias.dim() == 1 ? bias.unsqueeze(0).expand({b, o}) : bias).reshape({b * o});
  p.groups *= b;
  const Tensor y = metagrad::conv2d(x, w, bs, p);
  return y.reshape({n, b, o, y.size(2), y.size(3)}).transpose(0, 1);
}

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias,
              const Conv2dFuncOptions& opts) {
  const Conv2dParams p{.stride = opts.stride_,
                       .padding = opts.padding_,
                       .dilation = opts.dilation_,
                       .groups = opts.groups_};
  if (weight.defined() && weight.dim() == 5) return stacked_conv2d(input, weight, bias, p);
  if (input.defined() && input.dim() == 3)  // unbatched: a batch of one
    return metagrad::conv2d(input.unsqueeze(0), weight, bias, p).squeeze(0);
  return metagrad::conv2d(input, weight, bias, p);
}

}  // namespace metagrad::nn::functional
