// Pooling modules: MaxPool2d, AvgPool2d and AdaptiveAvgPool2d over NCHW input, on
// nn::functional's pooling functions. No parameters.
#pragma once
#include <array>
#include <cstdint>

#include "nn/module.h"

namespace metagrad::nn {

struct MaxPool2dOptions {
  MaxPool2dOptions(int64_t kernel_size)  // NOLINT: implicit, as libtorch
      : MaxPool2dOptions(std::array<int64_t, 2>{kernel_size, kernel_size}) {}
  MaxPool2dOptions(std::array<int64_t, 2> kernel_size)  // NOLINT
      : kernel_size_(kernel_size), stride_(kernel_size) {}
  MaxPool2dOptions& stride(int64_t s) {
    stride_ = {s, s};
    return *this;
  }
  MaxPool2dOptions& stride(std::array<int64_t, 2> s) {
    stride_ = s;
    return *this;
  }
  MaxPool2dOptions& padding(int64_t p) {
    padding_ = {p, p};
    return *this;
  }
  MaxPool2dOptions& padding(std::array<int64_t, 2> p) {
    padding_ = p;
    return *this;
  }

  std::array<int64_t, 2> kernel_size_, stride_ /* = kernel_size */, padding_{0, 0};
};

class MaxPool2dImpl : public Module {
 public:
  explicit MaxPool2dImpl(const MaxPool2dOptions& options);
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  std::string extra_repr() const override;
  MaxPool2dOptions options;
};
MG_MODULE(MaxPool2d);

struct AvgPool2dOptions {
  AvgPool2dOptions(int64_t kernel_size)  // NOLINT: implicit, as libtorch
      : AvgPool2dOptions(std::array<int64_t, 2>{kernel_size, kernel_size}) {}
  AvgPool2dOptions(std::array<int64_t, 2> kernel_size)  // NOLINT
      : kernel_size_(kernel_size), stride_(kernel_size) {}
  AvgPool2dOptions& stride(int64_t s) {
    stride_ = {s, s};
    return *this;
  }
  AvgPool2dOptions& stride(std::array<int64_t, 2> s) {
    stride_ = s;
    return *this;
  }
  AvgPool2dOptions& padding(int64_t p) {
    padding_ = {p, p};
    return *this;
  }
  AvgPool2dOptions& padding(std::array<int64_t, 2> p) {
    padding_ = p;
    return *this;
  }
  AvgPool2dOptions& count_include_pad(bool on) {
    count_include_pad_ = on;
    return *this;
  }

  std::array<int64_t, 2> kernel_size_, stride_ /* = kernel_size */, padding_{0, 0};
  bool count_include_pad_ = true;
};

class AvgPool2dImpl : public Module {
 public:
  explicit AvgPool2dImpl(const AvgPool2dOptions& options);
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  std::string extra_repr() const override;
  AvgPool2dOptions options;
};
MG_MODULE(AvgPool2d);

// Averages each of output_size[0] x output_size[1] regions: [N, C, H, W] -> [N, C, oh, ow].
class AdaptiveAvgPool2dImpl : public Module {
 public:
  explicit AdaptiveAvgPool2dImpl(int64_t output_size)
      : AdaptiveAvgPool2dImpl(std::array<int64_t, 2>{output_size, output_size}) {}
  explicit AdaptiveAvgPool2dImpl(std::array<int64_t, 2> output_size);
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  std::string extra_repr() const override;
  std::array<int64_t, 2> output_size;
};
MG_MODULE(AdaptiveAvgPool2d);

}  // namespace metagrad::nn
