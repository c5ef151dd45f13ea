// The models of the papers' setups.
#pragma once
#include <memory>

#include "nn/modules.h"

namespace metagrad::meta {

// The sinusoid regressor of Finn et al. 2017: 1-40-40-1 with ReLU.
nn::Sequential sinusoid_mlp(int64_t hidden = 40, Generator* gen = nullptr);

struct Conv4Options {
  int64_t n_way = 5;
  int64_t in_channels = 1;
  int64_t hidden = 64;
  // true: the MAML paper's Omniglot net (3x3 convs with stride 2, no pooling, spatial mean);
  // false: the max-pool variant most PyTorch code uses (stride 1 convs + 2x2 max-pool,
  // flattened into the head).
  bool strided = true;
  int64_t image_size = 28;  // for the max-pool variant's head width
  nn::BNMode bn_mode = nn::BNMode::BatchStats;  // batch statistics always, as the MAML code
  // false: the batch norms keep no running statistics (needed by task-batched meta-steps,
  // MetaOptions::batch_tasks; in BatchStats mode they are never read anyway).
  bool track_running_stats = true;
};

// Four blocks of conv 3x3 (same padding) -> batch norm -> ReLU (-> max-pool), then a linear
// N-way head named "head" (ANIL adapts parameters whose names start with "head"). Takes
// [N, C, H, W], or [B, N, C, H, W] with stacked parameters (a task-batched meta-step).
nn::Sequential conv4(const Conv4Options& opts = {}, Generator* gen = nullptr);

}  // namespace metagrad::meta
