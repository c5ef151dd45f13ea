// N-way K-shot episodes (few-shot classification tasks) drawn from an ImageDataset.
//
// An episode picks n_way classes without replacement from the sampler's class pool, in a
// random order that defines its labels 0..n_way-1, then for each class k_shot + n_query
// distinct images (without replacement): the first k_shot are the support set, the next
// n_query the query set, so support and query never share an image. Tensors are ordered
// class-major: support_y = [0]*K + [1]*K + ... (support_x rows likewise), query the same.
//
// Determinism: every draw comes from the sampler's own Generator (tensor/random.h; one rand()
// per episode, Note [Episode draws] in episodes.cpp), so a seed fixes the whole sequence of
// episodes; state() / set_state() save and resume it exactly.
// sample_batch(T) draws the same T episodes as T calls of sample(), stacked.
#pragma once
#include <cstdint>
#include <vector>

#include "meta/datasets.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace metagrad::meta {

struct Episode {
  Tensor support_x;                    // [N*K, C, H, W] float32
  Tensor support_y;                    // [N*K] int64 in 0..N-1
  Tensor query_x;                      // [N*Q, C, H, W] float32
  Tensor query_y;                      // [N*Q] int64
  std::vector<int64_t> classes;        // dataset class of label l = classes[l]
  std::vector<int64_t> support_index;  // image index (within its class) of each support row
  std::vector<int64_t> query_index;    // likewise for the query rows
};

// T episodes stacked on a leading task dim.
struct EpisodeBatch {
  Tensor support_x;                           // [T, N*K, C, H, W]
  Tensor support_y;                           // [T, N*K]
  Tensor query_x;                             // [T, N*Q, C, H, W]
  Tensor query_y;                             // [T, N*Q]
  std::vector<std::vector<int64_t>> classes;  // [T][N]
};

class EpisodeSampler {
 public:
  // The pool is `classes` (dataset class indices, distinct) or, when empty, every class of
  // the dataset. The dataset must outlive the sampler (it is referenced, not copied).
  // Throws when n_way exceeds the pool or a pooled class has fewer than k_shot + n_query
  // images: "[episodes] n_way = 30 is larger than the 20 classes in the pool".
  EpisodeSampler(const ImageDataset& dataset, int64_t n_way, int64_t k_shot, int64_t n_query,
                 uint64_t seed = Generator::kDefaultSeed, std::vector<int64_t> classes = {});
  // A temporary dataset would dangle: keep the dataset in a variable.
  EpisodeSampler(ImageDataset&&, int64_t, int64_t, int64_t, uint64_t = 0,
                 std::vector<int64_t> = {}) = delete;

  Episode sample();
  EpisodeBatch sample_batch(int64_t num_tasks);

  int64_t n_way() const { return n_way_; }
  int64_t k_shot() const { return k_shot_; }
  int64_t n_query() const { return n_query_; }
  const std::vector<int64_t>& pool() const { return pool_; }
  const ImageDataset& dataset() const { return *dataset_; }

  // The generator's (seed, offset): restoring it replays the same episodes.
  GeneratorState state() const { return gen_.get_state(); }
  void set_state(const GeneratorState& s) { gen_.set_state(s); }
  void manual_seed(uint64_t seed) { gen_.manual_seed(seed); }
  Generator& generator() { return gen_; }

 private:
  // Draws one episode's classes and image indices, and writes its images and labels into
  // the given buffers (rows of C*H*W floats).
  void draw(float* support_x, int64_t* support_y, float* query_x, int64_t* query_y,
            std::vector<int64_t>& classes, std::vector<int64_t>* support_index,
            std::vector<int64_t>* query_index);

  const ImageDataset* dataset_;
  int64_t n_way_, k_shot_, n_query_;
  std::vector<int64_t> pool_;
  Generator gen_;
};

}  // namespace metagrad::meta
