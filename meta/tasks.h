// Regression task distributions. SinusoidTasks is the benchmark of Finn et al. 2017 (MAML,
// section 5.1): a task is y = amplitude * sin(x - phase) with amplitude ~ U[0.1, 5.0] and
// phase ~ U[0, pi]; its points have x ~ U[-5, 5].
//
// Every draw comes from the caller's Generator (tensor/random.h, via rand()), so a seed fixes
// the tasks and their points. x is drawn in the requested dtype and y computed from that x
// in double, then rounded once to the dtype.
#pragma once
#include <cstdint>
#include <numbers>
#include <utility>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace metagrad::meta {

struct SinusoidTask {
  double amplitude = 1.0;
  double phase = 0.0;
  double x_min = -5.0, x_max = 5.0;

  // k points: (x [k, 1], y [k, 1]) in dtype (float32 or float64).
  std::pair<Tensor, Tensor> sample(int64_t k, Generator& gen, DType dtype = DType::Float32) const;
  // y = amplitude * sin(x - phase) elementwise, for x of any floating shape (in x's dtype).
  Tensor operator()(const Tensor& x) const;
};

// T tasks, each with a support and a query set, stacked on a leading task dim.
struct SinusoidBatch {
  Tensor support_x, support_y;  // [T, k_support, 1]
  Tensor query_x, query_y;      // [T, k_query, 1]
  Tensor amplitude, phase;      // [T], float64
};

class SinusoidTasks {
 public:
  struct Options {
    double amplitude_min = 0.1, amplitude_max = 5.0;
    double phase_min = 0.0, phase_max = std::numbers::pi;
    double x_min = -5.0, x_max = 5.0;
  };
  SinusoidTasks() : SinusoidTasks(Options{}) {}
  explicit SinusoidTasks(const Options& opts);

  SinusoidTask sample_task(Generator& gen) const;
  // T tasks (sample_task T times), then every support x in one draw, then every query x.
  SinusoidBatch sample_batch(int64_t num_tasks, int64_t k_support, int64_t k_query, Generator& gen,
                             DType dtype = DType::Float32) const;
  const Options& options() const { return opts_; }

 private:
  Options opts_;
};

}  // namespace metagrad::meta
