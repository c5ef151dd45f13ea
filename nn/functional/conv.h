// nn::functional::conv2d, as torch.nn.functional.conv2d: the options struct of the shared nn
// contract and a thin wrapper over the conv2d primitive (tensor/conv.h), which also accepts an
// unbatched [C, H, W] input as libtorch does. Beyond PyTorch, the weight may be a stack of B
// weights [B, O, C/groups, kH, kW] (bias [B, O], or [O] shared), for a task-batched meta-step:
// the input is then [B, N, C, H, W], entry b convolved with weight b, and the result is
// [B, N, O, OH, OW], computed as one grouped convolution (Note [Task-batched convolution]).
#pragma once
#include <array>
#include <cstdint>

#include "tensor/conv.h"
#include "tensor/tensor.h"

namespace metagrad::nn::functional {

// Chainable, as torch::nn::functional::Conv2dFuncOptions:
//   conv2d(x, w, b, Conv2dFuncOptions().stride(2).padding(1).groups(4))
struct Conv2dFuncOptions {
  std::array<int64_t, 2> stride_{1, 1}, padding_{0, 0}, dilation_{1, 1};
  int64_t groups_ = 1;

  Conv2dFuncOptions& stride(int64_t s) {
    stride_ = {s, s};
    return *this;
  }
  Conv2dFuncOptions& stride(std::array<int64_t, 2> s) {
    stride_ = s;
    return *this;
  }
  Conv2dFuncOptions& padding(int64_t p) {
    padding_ = {p, p};
    return *this;
  }
  Conv2dFuncOptions& padding(std::array<int64_t, 2> p) {
    padding_ = p;
    return *this;
  }
  Conv2dFuncOptions& dilation(int64_t d) {
    dilation_ = {d, d};
    return *this;
  }
  Conv2dFuncOptions& dilation(std::array<int64_t, 2> d) {
    dilation_ = d;
    return *this;
  }
  Conv2dFuncOptions& groups(int64_t g) {
    groups_ = g;
    return *this;
  }
  const std::array<int64_t, 2>& stride() const { return stride_; }
  const std::array<int64_t, 2>& padding() const { return padding_; }
  const std::array<int64_t, 2>& dilation() const { return dilation_; }
  int64_t groups() const { return groups_; }
};

// input [N, C, H, W] (or [C, H, W]), weight [O, C / groups, kH, kW], bias [O] or undefined.
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = {},
              const Conv2dFuncOptions& opts = {});

}  // namespace metagrad::nn::functional
