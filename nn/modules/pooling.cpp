// MaxPool2d, AvgPool2d and AdaptiveAvgPool2d.
#include "nn/modules/pooling.h"

#include "nn/functional.h"
#include "nn/modules/repr.h"

namespace metagrad::nn {

namespace {
void check_window(const char* op, const std::array<int64_t, 2>& k, const std::array<int64_t, 2>& s,
                  const std::array<int64_t, 2>& p) {
  for (int i = 0; i < 2; ++i) {
    MG_CHECK(k[i] > 0 && s[i] > 0, op,
             "kernel_size and stride must be positive, got kernel_size=", detail::py_tuple(k),
             ", stride=", detail::py_tuple(s));
    // PyTorch's rule: padding at most half the kernel.
    MG_CHECK(p[i] >= 0 && 2 * p[i] <= k[i], op, "padding ", detail::py_tuple(p),
             " must be >= 0 and at most half of kernel_size ", detail::py_tuple(k));
  }
}

// [N, C, H, W], unbatched [C, H, W] (as PyTorch's modules), or [B, N, C, H, W]: a
// task-batched step's stack of B tasks' inputs.
void check_input(const char* op, const Tensor& x) {
  MG_CHECK(x.defined() && x.dim() >= 3 && x.dim() <= 5, op,
           "expected a 4-d input [N, C, H, W] (or [C, H, W], or a 5-d stack [B, N, C, H, W]), "
           "got shape ",
           x.defined() ? shape_str(x.shape()) : std::string("(undefined)"));
}
}  // namespace

MaxPool2dImpl::MaxPool2dImpl(const MaxPool2dOptions& o) : options(o) {
  check_window("MaxPool2d", o.kernel_size_, o.stride_, o.padding_);
}

Tensor MaxPool2dImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  check_input("MaxPool2d", x);
  functional::MaxPool2dFuncOptions fo(options.kernel_size_);
  fo.stride_ = options.stride_;
  fo.padding_ = options.padding_;
  return functional::max_pool2d(x, fo);
}

std::string MaxPool2dImpl::extra_repr() const {
  return "kernel_size=" + detail::py_int_or_tuple(options.kernel_size_) +
         ", stride=" + detail::py_int_or_tuple(options.stride_) +
         ", padding=" + detail::py_int_or_tuple(options.padding_) + ", dilation=1, ceil_mode=False";
}

AvgPool2dImpl::AvgPool2dImpl(const AvgPool2dOptions& o) : options(o) {
  check_window("AvgPool2d", o.kernel_size_, o.stride_, o.padding_);
}

Tensor AvgPool2dImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  check_input("AvgPool2d", x);
  functional::AvgPool2dFuncOptions fo(options.kernel_size_);
  fo.stride_ = options.stride_;
  fo.padding_ = options.padding_;
  fo.count_include_pad_ = options.count_include_pad_;
  return functional::avg_pool2d(x, fo);
}

std::string AvgPool2dImpl::extra_repr() const {
  return "kernel_size=" + detail::py_int_or_tuple(options.kernel_size_) +
         ", stride=" + detail::py_int_or_tuple(options.stride_) +
         ", padding=" + detail::py_int_or_tuple(options.padding_) +
         (options.count_include_pad_ ? "" : ", count_include_pad=False");
}

AdaptiveAvgPool2dImpl::AdaptiveAvgPool2dImpl(std::array<int64_t, 2> os) : output_size(os) {
  MG_CHECK(os[0] > 0 && os[1] > 0, "AdaptiveAvgPool2d", "output_size must be positive, got ",
           detail::py_tuple(os));
}

Tensor AdaptiveAvgPool2dImpl::forward(const Tensor& x, const ParamMap& params) {
  check_params(params);
  check_input("AdaptiveAvgPool2d", x);
  return functional::adaptive_avg_pool2d(x, output_size);
}

std::string AdaptiveAvgPool2dImpl::extra_repr() const {
  return "output_size=" + detail::py_int_or_tuple(output_size);
}

}  // namespace metagrad::nn
