// nn::functional pooling, as torch.nn.functional: max_pool2d (with or without indices),
// avg_pool2d and adaptive_avg_pool2d, with the options structs of the shared nn contract.
// Inputs are [N, C, H, W] or unbatched [C, H, W]. max/avg pooling wrap the primitives of
// tensor/pool.h; adaptive average pooling is a composition (avg_pool2d, or slices and means).
#pragma once
#include <array>
#include <cstdint>
#include <utility>

#include "tensor/pool.h"
#include "tensor/tensor.h"

namespace metagrad::nn::functional {

// MaxPool2dFuncOptions(2) or ({2, 3}); the stride defaults to the kernel size.
struct MaxPool2dFuncOptions {
  std::array<int64_t, 2> kernel_size_, stride_, padding_{0, 0};

  MaxPool2dFuncOptions(int64_t k) : kernel_size_{k, k}, stride_{k, k} {}  // NOLINT: as libtorch
  MaxPool2dFuncOptions(std::array<int64_t, 2> k) : kernel_size_(k), stride_(k) {}  // NOLINT
  MaxPool2dFuncOptions& kernel_size(int64_t k) {
    kernel_size_ = {k, k};
    return *this;
  }
  MaxPool2dFuncOptions& kernel_size(std::array<int64_t, 2> k) {
    kernel_size_ = k;
    return *this;
  }
  MaxPool2dFuncOptions& stride(int64_t s) {
    stride_ = {s, s};
    return *this;
  }
  MaxPool2dFuncOptions& stride(std::array<int64_t, 2> s) {
    stride_ = s;
    return *this;
  }
  MaxPool2dFuncOptions& padding(int64_t p) {
    padding_ = {p, p};
    return *this;
  }
  MaxPool2dFuncOptions& padding(std::array<int64_t, 2> p) {
    padding_ = p;
    return *this;
  }
  const std::array<int64_t, 2>& kernel_size() const { return kernel_size_; }
  const std::array<int64_t, 2>& stride() const { return stride_; }
  const std::array<int64_t, 2>& padding() const { return padding_; }
};

// AvgPool2dFuncOptions(2) or ({2, 3}); the stride defaults to the kernel size.
struct AvgPool2dFuncOptions {
  std::array<int64_t, 2> kernel_size_, stride_, padding_{0, 0};
  bool count_include_pad_ = true;

  AvgPool2dFuncOptions(int64_t k) : kernel_size_{k, k}, stride_{k, k} {}  // NOLINT: as libtorch
  AvgPool2dFuncOptions(std::array<int64_t, 2> k) : kernel_size_(k), stride_(k) {}  // NOLINT
  AvgPool2dFuncOptions& kernel_size(int64_t k) {
    kernel_size_ = {k, k};
    return *this;
  }
  AvgPool2dFuncOptions& kernel_size(std::array<int64_t, 2> k) {
    kernel_size_ = k;
    return *this;
  }
  AvgPool2dFuncOptions& stride(int64_t s) {
    stride_ = {s, s};
    return *this;
  }
  AvgPool2dFuncOptions& stride(std::array<int64_t, 2> s) {
    stride_ = s;
    return *this;
  }
  AvgPool2dFuncOptions& padding(int64_t p) {
    padding_ = {p, p};
    return *this;
  }
  AvgPool2dFuncOptions& padding(std::array<int64_t, 2> p) {
    padding_ = p;
    return *this;
  }
  AvgPool2dFuncOptions& count_include_pad(bool c) {
    count_include_pad_ = c;
    return *this;
  }
  const std::array<int64_t, 2>& kernel_size() const { return kernel_size_; }
  const std::array<int64_t, 2>& stride() const { return stride_; }
  const std::array<int64_t, 2>& padding() const { return padding_; }
  bool count_include_pad() const { return count_include_pad_; }
};

Tensor max_pool2d(const Tensor& x, const MaxPool2dFuncOptions& opts);
// Values and int64 indices into each flattened H * W plane (as torch's return_indices=True).
std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x,
                                                  const MaxPool2dFuncOptions& opts);
Tensor avg_pool2d(const Tensor& x, const AvgPool2dFuncOptions& opts);
// Output cell (i, j) averages rows [floor(i H / oh), ceil((i + 1) H / oh)) and the columns
// likewise (PyTorch's windows, which may overlap or differ in size).
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);

}  // namespace metagrad::nn::functional
