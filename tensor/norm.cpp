// Fused batch-norm ops (tensor/norm.h): argument checks, contiguous copies of strided operands,
// output allocation, the kernel call (kernels/cpu/norm.cpp, kernels/cuda/norm.cu) and the
// report to autograd. Empty tensors are handled here; the kernels see c >= 1 and at least one
// value per channel.
#include "tensor/norm.h"

#include <limits>

#include "kernels/cpu/norm.h"
#include "tensor/creation.h"
#include "tensor/dispatch.h"
#include "tensor/grad_mode.h"

namespace metagrad {

namespace {

using kernels::BatchNormGeometry;

// The operand as the kernels want it: contiguous. The copy is not part of the op's math, so
// it is not recorded (the op reports itself with its original inputs).
Tensor dense(const Tensor& t) {
  if (!t.defined() || t.is_contiguous()) return t;
  NoGradGuard g;
  return t.contiguous();
}

void check_input(const char* op, const Tensor& x) {
  MG_CHECK(x.defined(), op, "the input is undefined");
  MG_CHECK(x.dim() >= 2, op, "expected an input of shape [N, C, ...], got shape ",
           shape_str(x.shape()));
  MG_CHECK(is_floating(x.dtype()), op, "expected a float32 or float64 input, got ",
           dtype_name(x.dtype()));
}

// A per-channel operand: undefined, or [C] in x's dtype.
void check_per_channel(const char* op, const Tensor& t, const char* what, const Tensor& x) {
  if (!t.defined()) return;
  MG_CHECK(t.dim() == 1 && t.size(0) == x.size(1), op, what, " has shape ", shape_str(t.shape()),
           " but the input of shape ", shape_str(x.shape()), " has ", x.size(1), " channels");
  MG_CHECK(t.dtype() == x.dtype(), op, what, " has dtype ", dtype_name(t.dtype()),
           " but the input has dtype ", dtype_name(x.dtype()));
}

BatchNormGeometry geometry(const Tensor& x, double eps) {
  BatchNormGeometry g{};
  g.n = x.size(0), g.c = x.size(1), g.inner = 1, g.eps = eps;
  for (int64_t d = 2; d < x.dim(); ++d) g.inner *= x.size(d);
  return g;
}

const void* data_or_null(const Tensor& t) {
  return t.defined() ? t.raw_data() : nullptr;
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> native_batch_norm(const Tensor& x, const Tensor& weight,
                                                     const Tensor& bias, double eps) {
  const char* op = "native_batch_norm";
  check_input(op, x);
  check_per_channel(op, weight, "weight", x);
  check_per_channel(op, bias, "bias", x);
  detail::check_same_device(op, {&x, &weight, &bias});
  const BatchNormGeometry g = geometry(x, eps);
  Tensor y = Tensor::empty(x.shape(), x.options());
  Tensor mean = Tensor::empty({g.c}, x.options()), invstd = Tensor::empty({g.c}, x.options());
  if (g.c > 0) {
    if (g.n * g.inner == 0) {  // no value per channel: statistics of nothing
      NoGradGuard ng;
      mean.fill_(std::numeric_limits<double>::quiet_NaN());
      invstd.fill_(std::numeric_limits<double>::quiet_NaN());
    } else {
      const Tensor xd = dense(x), w = dense(weight), b = dense(bias);
      MG_KERNEL(x.device(), batch_norm_forward, x.dtype(), g, xd.raw_data(), data_or_null(w),
                data_or_null(b), y.raw_data(), mean.raw_data(), invstd.raw_data());
    }
  }
  // autograd args: a = eps, i = 1 (weight given) | 2 (bias given); inputs {x[, weight][, bias]}
  // (the given ones), outputs {y, mean, invstd}
  std::vector<Tensor> inputs = {x};
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  detail::record_op(op, inputs, {y, mean, invstd},
                    {.a = eps, .i = (weight.defined() ? 1 : 0) | (bias.defined() ? 2 : 0)});
  return {y, mean, invstd};
}

std::tuple<Tensor, Tensor, Tensor> native_batch_norm_backward(const Tensor& grad_out,
                                                              const Tensor& x, const Tensor& weight,
                                                              double eps, const Tensor& grad_mean,
                                                              const Tensor& grad_invstd,
                                                              std::array<bool, 3> output_mask,
                                                              const Tensor& saved_mean,
                                                              const Tensor& saved_invstd) {
  const char* op = "native_batch_norm_backward";
  check_input(op, x);
  MG_CHECK(grad_out.defined(), op, "grad_out is undefined");
  MG_CHECK(grad_out.shape() == x.shape() && grad_out.dtype() == x.dtype(), op, "grad_out of shape ",
           shape_str(grad_out.shape()), " and dtype ", dtype_name(grad_out.dtype()),
           " does not match the input of shape ", shape_str(x.shape()), " and dtype ",
           dtype_name(x.dtype()));
  check_per_channel(op, weight, "weight", x);
  check_per_channel(op, grad_mean, "grad_mean", x);
  check_per_channel(op, grad_invstd, "grad_invstd", x);
  check_per_channel(op, saved_mean, "saved_mean", x);
  check_per_channel(op, saved_invstd, "saved_invstd", x);
  MG_CHECK(saved_mean.defined() == saved_invstd.defined(), op,
           "saved_mean and saved_invstd go together: give both or neither");
  detail::check_same_device(op, {&grad_out, &x, &weight, &grad_mean, &grad_invstd, &saved_mean,
                                 &saved_invstd});
  const BatchNormGeometry g = geometry(x, eps);
  Tensor gx, gw, gb;
  if (output_mask[0]) gx = Tensor::empty(x.shape(), x.options());
  if (output_mask[1] && weight.defined()) gw = Tensor::empty({g.c}, x.options());
  if (output_mask[2]) gb = Tensor::empty({g.c}, x.options());
  if (g.c > 0 && (gx.defined() || gw.defined() || gb.defined())) {
    if (g.n * g.inner == 0) {  // sums over no value; gx is empty
      NoGradGuard ng;
      if (gw.defined()) gw.zero_();
      if (gb.defined()) gb.zero_();
    } else {
      const Tensor gy = dense(grad_out), xd = dense(x), w = dense(weight);
      const Tensor gm = dense(grad_mean), gi = dense(grad_invstd);
      const Tensor sm = dense(saved_mean), si = dense(saved_invstd);
      const kernels::BatchNormBackwardArgs a{.weight = data_or_null(w),
                                             .grad_mean = data_or_null(gm),
                                             .grad_invstd = data_or_null(gi),
                                             .grad_x = gx.defined() ? gx.raw_data() : nullptr,
                                             .grad_weight = gw.defined() ? gw.raw_data() : nullptr,
                                             .grad_bias = gb.defined() ? gb.raw_data() : nullptr,
                                             .saved_mean = data_or_null(sm),
                                             .saved_invstd = data_or_null(si)};
      MG_KERNEL(x.device(), batch_norm_backward, x.dtype(), g, gy.raw_data(), xd.raw_data(), a);
    }
  }
  // No derivative entry: a graph through this op throws when differentiated (tensor/norm.h).
  std::vector<Tensor> inputs = {grad_out, x};
  for (const Tensor* t : {&weight, &grad_mean, &grad_invstd, &saved_mean, &saved_invstd})
    if (t->defined()) inputs.push_back(*t);
  std::vector<Tensor> outputs;
  for (const Tensor* t : {&gx, &gw, &gb})
    if (t->defined()) outputs.push_back(*t);
  detail::record_op(op, inputs, outputs, {.a = eps});
  return {gx, gw, gb};
}

}  // namespace metagrad
