// Normalisation modules: BatchNorm2d (with a statistics mode for meta-learning) and
// LayerNorm, on nn::functional::batch_norm and layer_norm.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "nn/module.h"

namespace metagrad::nn {

// Which statistics BatchNorm2d normalises with.
enum class BNMode {
  // Batch statistics always, in train and eval mode, as the MAML reference code
  // (Finn et al.) and torchmeta: at meta-test time each task is normalised by its own batch.
  // Running statistics, when tracked, are still updated in train mode (never in eval).
  BatchStats,
  // PyTorch's default: batch statistics in train mode (updating the running ones), running
  // statistics in eval mode (batch statistics when they are not tracked).
  RunningStats,
  // No normalisation: forward returns its input (for ablations). The parameters and
  // buffers stay registered so that checkpoints remain interchangeable between modes.
  Identity,
};

struct BatchNorm2dOptions {
  explicit BatchNorm2dOptions(int64_t num_features) : num_features_(num_features) {}
  BatchNorm2dOptions& eps(double e) {
    eps_ = e;
    return *this;
  }
  // std::nullopt: a cumulative average over the batches seen (num_batches_tracked).
  BatchNorm2dOptions& momentum(std::optional<double> m) {
    momentum_ = m;
    return *this;
  }
  BatchNorm2dOptions& affine(bool on) {
    affine_ = on;
    return *this;
  }
  BatchNorm2dOptions& track_running_stats(bool on) {
    track_running_stats_ = on;
    return *this;
  }
  BatchNorm2dOptions& mode(BNMode m) {
    mode_ = m;
    return *this;
  }

  int64_t num_features_;
  double eps_ = 1e-5;
  std::optional<double> momentum_ = 0.1;
  bool affine_ = true;
  bool track_running_stats_ = true;
  BNMode mode_ = BNMode::RunningStats;
};

// Input [N, C, H, W]. Parameters weight (ones) and bias (zeros) of shape [C] when affine;
// buffers running_mean (zeros), running_var (ones) and num_batches_tracked (int64 0-d)
// when track_running_stats. running_var is updated with the unbiased batch variance.
class BatchNorm2dImpl : public Module {
 public:
  explicit BatchNorm2dImpl(int64_t num_features)
      : BatchNorm2dImpl(BatchNorm2dOptions(num_features)) {}
  explicit BatchNorm2dImpl(const BatchNorm2dOptions& options);
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  // weight = 1, bias = 0 (no randomness), and the running statistics reset.
  void reset_parameters(Generator* gen = nullptr) override;
  void reset_running_stats();
  std::string extra_repr() const override;

  BatchNorm2dOptions options;
  Tensor weight, bias;                                    // undefined unless affine
  Tensor running_mean, running_var, num_batches_tracked;  // undefined unless tracked
};
MG_MODULE(BatchNorm2d);

struct LayerNormOptions {
  LayerNormOptions(std::vector<int64_t> normalized_shape)  // NOLINT: implicit, as libtorch
      : normalized_shape_(std::move(normalized_shape)) {}
  LayerNormOptions& eps(double e) {
    eps_ = e;
    return *this;
  }
  LayerNormOptions& elementwise_affine(bool on) {
    elementwise_affine_ = on;
    return *this;
  }

  std::vector<int64_t> normalized_shape_;
  double eps_ = 1e-5;
  bool elementwise_affine_ = true;
};

// Normalises over the trailing dims given by normalized_shape; weight (ones) and bias
// (zeros) of that shape when elementwise_affine.
class LayerNormImpl : public Module {
 public:
  explicit LayerNormImpl(const LayerNormOptions& options);
  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;
  void reset_parameters(Generator* gen = nullptr) override;
  std::string extra_repr() const override;

  LayerNormOptions options;
  Tensor weight, bias;
};
MG_MODULE(LayerNorm);

}  // namespace metagrad::nn
