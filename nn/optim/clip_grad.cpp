// clip_grad_norm_ and clip_grad_value_ (see nn/optim/clip_grad.h).
#include "nn/optim/clip_grad.h"

#include <cmath>
#include <limits>

#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"
#include "tensor/reduce.h"

namespace metagrad::nn::utils {

double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  MG_CHECK(norm_type > 0 && !std::isnan(norm_type), "clip_grad_norm_",
           "norm_type must be positive (or infinity), got ", norm_type);
  // 0 zeroes the gradients, as PyTorch's; a negative bound would flip their direction.
  MG_CHECK(max_norm >= 0, "clip_grad_norm_", "max_norm must be >= 0, got ", max_norm);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : parameters) {
    MG_CHECK(p.defined(), "clip_grad_norm_", "a parameter is undefined");
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return 0.0;
  const bool inf = std::isinf(norm_type);
  // Per-tensor norms in double, combined as the norm of the norms.
  double total = 0.0;
  for (const Tensor& g : grads) {
    if (g.numel() == 0) continue;
    const double n = inf ? amax(abs(g)).item<double>() : norm(g, norm_type).item<double>();
    // A NaN norm makes the total NaN (std::max would drop it).
    total = inf ? (std::isnan(n) || std::isnan(total) ? NAN : std::max(total, n))
                : total + std::pow(n, norm_type);
  }
  if (!inf) total = std::pow(total, 1.0 / norm_type);
  MG_CHECK(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm_", "the total norm of ",
           "order ", norm_type, " of the gradients is ", total,
           ", so they cannot be clipped; pass error_if_nonfinite = false to scale by it anyway");
  // min(coef, 1) as PyTorch's clamp: a NaN total makes every gradient NaN (scaled by it
  // anyway, as the error message above says), never leaves them as they were.
  const double coef = max_norm / (total + 1e-6);
  if (!(coef >= 1.0))
    for (const Tensor& g : grads) {
      Tensor gm = g;
      gm *= coef;
    }
  return total;
}

void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value) {
  MG_CHECK(clip_value >= 0, "clip_grad_value_", "clip_value must be >= 0, got ", clip_value);
  NoGradGuard no_grad;
  for (const Tensor& p : parameters) {
    MG_CHECK(p.defined(), "clip_grad_value_", "a parameter is undefined");
    if (!p.grad().defined()) continue;
    Tensor g = p.grad();
    g.copy_(clamp(g, -clip_value, clip_value));
  }
}

}  // namespace metagrad::nn::utils
