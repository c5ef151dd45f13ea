// nn::functional::conv2d (nn/functional/conv.h): options to Conv2dParams, unbatched inputs.
#include "nn/functional/conv.h"

namespace metagrad::nn::functional {

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias,
              const Conv2dFuncOptions& opts) {
  const Conv2dParams p{.stride = opts.stride_,
                       .padding = opts.padding_,
                       .dilation = opts.dilation_,
                       .groups = opts.groups_};
  if (input.defined() && input.dim() == 3)  // unbatched: a batch of one
    return metagrad::conv2d(input.unsqueeze(0), weight, bias, p).squeeze(0);
  return metagrad::conv2d(input, weight, bias, p);
}

}  // namespace metagrad::nn::functional
