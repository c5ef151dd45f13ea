// Checking derivatives against central finite differences, for users' own functions as well
// as metagrad's ops (torch.autograd.gradcheck / gradgradcheck).
//
// gradcheck compares, for every output element and every input element, the gradient the
// engine computes with (f(x + eps e) - f(x - eps e)) / (2 eps). gradgradcheck applies
// gradcheck to x, v -> grad(f(x), x, v, create_graph=true): it checks second derivatives,
// including those w.r.t. v. Inputs must be float64: float32 differences are too coarse.
//
// Finite differences lie at kinks (relu, max, abs at 0, clamp bounds): keep inputs a few
// multiples of eps away from them (DESIGN principle 9).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace metagrad {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  bool raise = true;  // throw metagrad::Error on a mismatch (else return false)
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;  // the worst |analytical - numerical|
  std::string message;       // where the worst mismatch is, with both values
};

using TensorsFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// Inputs that require grad are checked; others are held fixed.
GradcheckResult gradcheck(const TensorsFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opts = {});
// grad_outputs: the v above; random (seeded) when empty.
GradcheckResult gradgradcheck(const TensorsFn& f, const std::vector<Tensor>& inputs,
                              const std::vector<Tensor>& grad_outputs = {},
                              const GradcheckOptions& opts = {});

}  // namespace metagrad
