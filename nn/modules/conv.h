// Conv2d: 2-d convolution over NCHW input, as torch::nn::Conv2d, on nn::functional::conv2d.
#pragma once
#include <array>
#include <cstdint>

#include "nn/module.h"

namespace metagrad::nn {

struct Conv2dOptions {
  Conv2dOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : Conv2dOptions(in_channels, out_channels, {kernel_size, kernel_size}) {}
  Conv2dOptions(int64_t in_channels, int64_t out_channels, std::array<int64_t, 2> kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  Conv2dOptions& stride(int64_t s) {
    stride_ = {s, s};
    return *this;
  }
  Conv2dOptions& stride(std::array<int64_t, 2> s) {
    stride_ = s;
    return *this;
  }
  Conv2dOptions& padding(int64_t p) {
    padding_ = {p, p};
    return *this;
  }
  Conv2dOptions& padding(std::array<int64_t, 2> p) {
    padding_ = p;
    return *this;
  }
  Conv2dOptions& dilation(int64_t d) {
    dilation_ = {d, d};
    return *this;
  }
  Conv2dOptions& dilation(std::array<int64_t, 2> d) {
    dilation_ = d;
    return *this;
  }
  Conv2dOptions& groups(int64_t g) {
    groups_ = g;
    return *this;
  }
  Conv2dOptions& bias(bool on) {
    bias_ = on;
    return *this;
  }

  int64_t in_channels_, out_channels_;
  std::array<int64_t, 2> kernel_size_;
  std::array<int64_t, 2> stride_{1, 1}, padding_{0, 0}, dilation_{1, 1};
  int64_t groups_ = 1;
  bool bias_ = true;
};

// weight [out, in / groups, kH, kW], bias [out]. Initialised as PyTorch: weight by
// kaiming_uniform_(a = sqrt(5)), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
// fan_in = in / groups * kH * kW.
class Conv2dImpl : public Module {
 public:
  explicit Conv2dImpl(const Conv2dOptions& options, Generator* gen = nullptr);
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  void reset_parameters(Generator* gen = nullptr) override;
  std::string extra_repr() const override;

  Conv2dOptions options;
  Tensor weight, bias;  // bias undefined when options.bias_ is false
};
MG_MODULE(Conv2d);

}  // namespace metagrad::nn
