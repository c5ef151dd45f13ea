// The backward engine and its user-facing entry points, shaped like libtorch:
// Tensor::backward() accumulates into leaves' .grad(); grad() returns gradients instead.
#pragma once
#include <optional>
#include <vector>

#include "tensor/tensor.h"

namespace metagrad {

// Gradients of sum_i <outputs[i], grad_outputs[i]> w.r.t. each of `inputs`.
// grad_outputs may be empty (or hold undefined tensors) for one-element outputs: ones.
// retain_graph defaults to create_graph. With create_graph=true the results are
// differentiable (grad of grad). An input the outputs do not depend on gets an undefined
// tensor when allow_unused, else an error.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {},
                         std::optional<bool> retain_graph = std::nullopt,
                         bool create_graph = false, bool allow_unused = false);

// Accumulates into .grad() of every leaf that `outputs` depend on (Tensor::backward for
// several outputs at once).
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs = {},
              std::optional<bool> retain_graph = std::nullopt, bool create_graph = false);

// Anomaly mode: after every backward step, check the gradients it produced and name the op
// whose derivative made a NaN or an infinity. Slow; for debugging. Process-wide, as PyTorch's
// (backward passes on other threads check too); grad mode, by contrast, is per thread.
class AnomalyMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

class DetectAnomalyGuard {
 public:
  DetectAnomalyGuard() : prev_(AnomalyMode::is_enabled()) { AnomalyMode::set_enabled(true); }
  ~DetectAnomalyGuard() { AnomalyMode::set_enabled(prev_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace metagrad
