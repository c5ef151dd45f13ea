// batch_norm (the fused native_batch_norm when training, a composition in eval mode) and
// layer_norm (a composition of differentiable ops); see norm.h.
#include "nn/functional/norm.h"

#include <cmath>

#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"
#include "tensor/norm.h"
#include "tensor/reduce.h"

namespace metagrad::nn::functional {

namespace {

// A per-channel tensor (weight, bias, running stats) must be 1-d with one value per channel.
void check_per_channel(const char* what, const Tensor& t, const Tensor& x) {
  if (!t.defined()) return;
  MG_CHECK(t.dim() == 1 && t.size(0) == x.size(1), "batch_norm", what, " has shape ",
           shape_str(t.shape()), " but the input of shape ", shape_str(x.shape()), " has ",
           x.size(1), " channels");
  MG_CHECK(t.is_floating_point(), "batch_norm", what, " must be floating point, got ",
           dtype_name(t.dtype()));
}

// The fused op takes float32/float64 operands of one dtype on one device; anything else
// (a float32 input with float64 weights, say) keeps the composition, which promotes.
bool fused_applies(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (!is_floating(x.dtype())) return false;
  for (const Tensor* t : {&weight, &bias})
    if (t->defined() && (t->dtype() != x.dtype() || t->device() != x.device())) return false;
  return true;
}

// weight / bias for the B * C channels of a stacked batch norm: [B, C] flattened, [C]
// repeated for every entry of the stack, undefined left so.
Tensor per_stacked_channel(const char* what, const Tensor& t, int64_t b, int64_t c,
                           const Tensor& x) {
  if (!t.defined()) return t;
  const bool ok = t.shape() == Shape({b, c}) || t.shape() == Shape({c});
  MG_CHECK(ok, "batch_norm", what, " of shape ", shape_str(t.shape()),
           " for the stacked input of shape ", shape_str(x.shape()), ": expected [", b, ", ", c,
           "] or [", c, "]");
  return (t.dim() == 1 ? t.unsqueeze(0).expand({b, c}) : t).reshape({b * c});
}

// batch_norm with a stack of B weights / biases (norm.h): one batch norm over the tasks'
// channels side by side.
Tensor stacked_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& weight,
                          const Tensor& bias, bool training, double momentum, double eps) {
  const Tensor& stacked = weight.defined() && weight.dim() == 2 ? weight : bias;
  const int64_t b = stacked.size(0);
  MG_CHECK(training && !running_mean.defined(), "batch_norm",
           "a stack of weights / biases of shape ", shape_str(stacked.shape()),
           " needs batch statistics (training = true) and no running_mean / running_var");
  MG_CHECK(x.dim() >= 3 && x.size(0) == b, "batch_norm", "a stack of weights / biases of shape ",
           shape_str(stacked.shape()), " needs a stacked input [", b, ", N, C, ...], got shape ",
           shape_str(x.shape()));
  const int64_t n = x.size(1), c = x.size(2);
  Shape side{n, b * c}, back{n, b, c};  // [N, B * C, ...] and [N, B, C, ...]
  for (int64_t d = 3; d < x.dim(); ++d) {
    side.push_back(x.size(d));
    back.push_back(x.size(d));
  }
  const Tensor y = batch_norm(x.transpose(0, 1).reshape(side), {}, {},
                              per_stacked_channel("weight", weight, b, c, x),
                              per_stacked_channel("bias", bias, b, c, x), true, momentum, eps);
  return y.reshape(back).transpose(0, 1);
}

}  // namespace

Tensor batch_norm(const Tensor& x, Tensor running_mean, Tensor running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  constexpr const char* op = "batch_norm";
  MG_CHECK(x.defined(), op, "the input is undefined");
  MG_CHECK(x.dim() >= 2, op, "expected an input of shape (N, C, ...), got shape ",
           shape_str(x.shape()));
  MG_CHECK(x.is_floating_point(), op, "expected a floating-point input, got ",
           dtype_name(x.dtype()));
  MG_CHECK(std::isfinite(eps) && eps >= 0, op, "eps must be finite and non-negative, got ", eps);
  MG_CHECK(momentum >= 0 && momentum <= 1, op, "momentum must lie in [0, 1], got ", momentum);
  // A stack [B, C] of weights (or biases) for an input [B, N, C, ...] (norm.h); any other
  // shape gets the per-channel checks' errors.
  for (const Tensor* t : {&weight, &bias})
    if (t->defined() && t->dim() == 2 && x.dim() >= 3 && x.size(0) == t->size(0) &&
        x.size(2) == t->size(1))
      return stacked_batch_norm(x, running_mean, weight, bias, training, momentum, eps);
  check_per_channel("weight", weight, x);
  check_per_channel("bias", bias, x);
  check_per_channel("running_mean", running_mean, x);
  check_per_channel("running_var", running_var, x);
  MG_CHECK(running_mean.defined() == running_var.defined(), op,
           "running_mean and running_var must both be given or both be left out");

  const int64_t channels = x.size(1);
  DimVector dims = {0};             // every dim but the channel dim
  int64_t per_channel = x.size(0);  // values per channel
  for (int64_t d = 2; d < x.dim(); ++d) {
    dims.push_back(d);
    per_channel *= x.size(d);
  }
  Shape bshape(static_cast<size_t>(x.dim()), 1);  // [1, C, 1, ...]: broadcasts per channel
  bshape[1] = channels;

  Tensor mu, var_;
  if (training) {
    MG_CHECK(per_channel != 1, op,
             "expected more than 1 value per channel when training, got input of shape ",
             shape_str(x.shape()));
    if (fused_applies(x, weight, bias)) {
      // Note [Fused batch norm] (tensor/norm.h): one op, exact at every order like the
      // composition below, which stays for eval mode and for mixed dtypes.
      auto [y, batch_mean, invstd] = native_batch_norm(x, weight, bias, eps);
      if (running_mean.defined() && per_channel > 0) {
        NoGradGuard no_grad;
        const double unbias =
            static_cast<double>(per_channel) / static_cast<double>(per_channel - 1);
        // the biased variance back from invstd = 1 / sqrt(var + eps), in double; rounding can
        // leave a constant channel's 0 a hair below zero
        const Tensor var_b = clamp_min(reciprocal(square(invstd.to(DType::Float64))) - eps, 0.0);
        running_mean.copy_(running_mean * (1 - momentum) +
                           batch_mean.to(running_mean.dtype()) * momentum);
        running_var.copy_(running_var * (1 - momentum) +
                          var_b.to(running_var.dtype()) * (momentum * unbias));
      }
      return y;
    }
    mu = mean(x, dims, /*keepdim=*/true);
    var_ = var(x, dims, /*correction=*/0, /*keepdim=*/true);  // biased, for normalisation
    if (running_mean.defined() && per_channel > 0) {
      // The running statistics are buffers, not part of the function being differentiated.
      NoGradGuard no_grad;
      const double unbias = static_cast<double>(per_channel) / static_cast<double>(per_channel - 1);
      running_mean.copy_(running_mean * (1 - momentum) +
                         mu.detach().reshape({channels}) * momentum);
      running_var.copy_(running_var * (1 - momentum) +
                        var_.detach().reshape({channels}) * (momentum * unbias));
    }
  } else {
    MG_CHECK(running_mean.defined(), op,
             "running_mean and running_var must be given in eval mode (training = false)");
    mu = running_mean.reshape(bshape);
    var_ = running_var.reshape(bshape);
  }
  // y = (x - mean) * invstd * weight + bias, evaluated as x * scale + shift with the
  // per-channel scale = invstd * weight and shift = bias - mean * scale (the form of PyTorch's
  // CPU kernel): one full-size multiply and add forward, and fewer full-size terms in the
  // backward pass than the textbook form. Still a composition, so still exact at every order.
  Tensor scale = rsqrt(var_ + eps);
  if (weight.defined()) scale = scale * weight.reshape(bshape);
  Tensor shift = -(mu * scale);
  if (bias.defined()) shift = shift + bias.reshape(bshape);
  return x * scale + shift;
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                  const Tensor& bias, double eps) {
  constexpr const char* op = "layer_norm";
  MG_CHECK(x.defined(), op, "the input is undefined");
  MG_CHECK(std::isfinite(eps) && eps >= 0, op, "eps must be finite and non-negative, got ", eps);
  MG_CHECK(x.is_floating_point(), op, "expected a floating-point input, got ",
           dtype_name(x.dtype()));
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  MG_CHECK(k >= 1, op, "normalized_shape must have at least one dim");
  const bool matches =
      k <= x.dim() && Shape(x.shape().end() - k, x.shape().end()) == normalized_shape;
  MG_CHECK(matches, op, "normalized_shape ", shape_str(normalized_shape),
           " does not match the trailing dims of the input of shape ", shape_str(x.shape()));
  for (const auto& [what, t] : {std::pair<const char*, const Tensor&>{"weight", weight},
                                std::pair<const char*, const Tensor&>{"bias", bias}}) {
    if (!t.defined()) continue;
    MG_CHECK(t.shape() == normalized_shape, op, what, " has shape ", shape_str(t.shape()),
             " but normalized_shape is ", shape_str(normalized_shape));
  }
  DimVector dims;
  for (int64_t d = x.dim() - k; d < x.dim(); ++d) dims.push_back(d);
  Tensor y = (x - mean(x, dims, /*keepdim=*/true)) *
             rsqrt(var(x, dims, /*correction=*/0, /*keepdim=*/true) + eps);
  if (weight.defined()) y = y * weight;  // weight and bias align with the trailing dims
  if (bias.defined()) y = y + bias;
  return y;
}

}  // namespace metagrad::nn::functional
