// Benchmarks of the fused softmax / log_softmax and cross-entropy kernels
// (kernels/cpu/softmax.cpp) and of ReLU's backward (threshold_backward), through the public API
// only: F::log_softmax and F::softmax forward, forward + backward (the backward formulas are
// compositions of ops), cross-entropy fused against composed, and relu's
// backward node alone (the graph built once, grad() called with retain_graph). bytes/s counts
// what a fused kernel must move: the input read once and the output written once (forward),
// and for relu backward g and x read, the gradient written. Each forward is checked against
// a float64 loop before timing.
#include <benchmark/benchmark.h>
#include <metagrad/metagrad.h>

#include <cmath>
#include <random>
#include <vector>

using namespace metagrad;
namespace F = metagrad::nn::functional;

namespace {

constexpr int64_t kRows = 4096, kCols = 1024;

std::vector<float> uniform(size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& e : v) e = u(rng);
  return v;
}

const std::vector<float>& logits() {
  static const std::vector<float> d = uniform(static_cast<size_t>(kRows * kCols), -4, 4, 0);
  return d;
}

// log_softmax of row i of logits() in float64 (checked on the first rows only: cheap).
std::vector<double> ref_log_softmax_rows(int64_t rows) {
  std::vector<double> r(static_cast<size_t>(rows * kCols));
  for (int64_t i = 0; i < rows; ++i) {
    const float* x = logits().data() + i * kCols;
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < kCols; ++j) m = std::max(m, double(x[j]));
    for (int64_t j = 0; j < kCols; ++j) s += std::exp(double(x[j]) - m);
    for (int64_t j = 0; j < kCols; ++j)
      r[static_cast<size_t>(i * kCols + j)] = double(x[j]) - m - std::log(s);
  }
  return r;
}

bool check_forward(benchmark::State& state, const Tensor& out, bool soft) {
  constexpr int64_t kCheckRows = 8;
  const std::vector<double> want = ref_log_softmax_rows(kCheckRows);
  const std::vector<float> got = out.slice(0, 0, kCheckRows).contiguous().to_vector<float>();
  for (size_t i = 0; i < want.size(); ++i) {
    const double w = soft ? std::exp(want[i]) : want[i];
    if (!(std::abs(got[i] - w) <= 1e-5 * (1 + std::abs(w)))) {
      state.SkipWithError("result does not match the float64 reference");
      return false;
    }
  }
  return true;
}

void BM_LogSoftmaxForward(benchmark::State& state) {
  const Tensor x = tensor(logits(), {kRows, kCols});
  if (!check_forward(state, F::log_softmax(x, 1), false)) return;
  for (auto _ : state) benchmark::DoNotOptimize(F::log_softmax(x, 1).raw_data());
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 2 * 4);
}

void BM_SoftmaxForward(benchmark::State& state) {
  const Tensor x = tensor(logits(), {kRows, kCols});
  if (!check_forward(state, F::softmax(x, 1), true)) return;
  for (auto _ : state) benchmark::DoNotOptimize(F::softmax(x, 1).raw_data());
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 2 * 4);
}

// Forward and backward: x and g read, y and gx written at least (4 tensors' worth).
void BM_LogSoftmaxForwardBackward(benchmark::State& state) {
  const Tensor x = tensor(logits(), {kRows, kCols}).requires_grad_(true);
  const Tensor g = tensor(uniform(static_cast<size_t>(kRows * kCols), -1, 1, 1), {kRows, kCols});
  if (!check_forward(state, F::log_softmax(x, 1), false)) return;
  for (auto _ : state) {
    Tensor y = F::log_softmax(x, 1);
    benchmark::DoNotOptimize(grad({y}, {x}, {g})[0].raw_data());
  }
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 4 * 4);
}

void BM_SoftmaxForwardBackward(benchmark::State& state) {
  const Tensor x = tensor(logits(), {kRows, kCols}).requires_grad_(true);
  const Tensor g = tensor(uniform(static_cast<size_t>(kRows * kCols), -1, 1, 1), {kRows, kCols});
  if (!check_forward(state, F::softmax(x, 1), true)) return;
  for (auto _ : state) {
    Tensor y = F::softmax(x, 1);
    benchmark::DoNotOptimize(grad({y}, {x}, {g})[0].raw_data());
  }
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 4 * 4);
}

// ReLU's backward on the activations of the max-pool conv-4's first block for a meta-batch of
// 160 images ([160, 64, 28, 28] float32): only the backward node runs in the loop.
void BM_ReluBackward(benchmark::State& state) {
  const Shape s{160, 64, 28, 28};
  const int64_t n = 160 * 64 * 28 * 28;
  const Tensor x = tensor(uniform(static_cast<size_t>(n), -1, 1, 2), s).requires_grad_(true);
  const Tensor g = tensor(uniform(static_cast<size_t>(n), -1, 1, 3), s);
  const Tensor y = relu(x);
  for (auto _ : state)
    benchmark::DoNotOptimize(grad({y}, {x}, {g}, /*retain_graph=*/true)[0].raw_data());
  state.SetBytesProcessed(state.iterations() * n * 3 * 4);
}

// Reference: the fused backward as a plain loop into a preallocated buffer.
void BM_RefReluBackwardLoop(benchmark::State& state) {
  const int64_t n = 160 * 64 * 28 * 28;
  const std::vector<float> x = uniform(static_cast<size_t>(n), -1, 1, 2);
  const std::vector<float> g = uniform(static_cast<size_t>(n), -1, 1, 3);
  std::vector<float> gx(static_cast<size_t>(n));
  for (auto _ : state) {
    for (size_t i = 0; i < gx.size(); ++i) gx[i] = x[i] > 0 ? g[i] : 0.0f;
    benchmark::DoNotOptimize(gx.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 3 * 4);
}

// Cross-entropy forward + backward (mean over rows), the fused op (F::cross_entropy, Note
// [Fused cross-entropy]) against the composition it replaced (log_softmax, gather, mean) in the
// same binary: [4096, 1024] (bandwidth) and [75, 5] (a 5-way Omniglot query set, where the
// count of ops decides). Both losses are checked equal before timing.
Tensor composed_cross_entropy(const Tensor& x, const Tensor& t) {
  return mean(-gather(F::log_softmax(x, 1), 1, t.unsqueeze(1)));
}

void cross_entropy_bench(benchmark::State& state, bool fused) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const Tensor x = tensor(uniform(static_cast<size_t>(rows * cols), -4, 4, 5), {rows, cols})
                       .requires_grad_(true);
  std::vector<int64_t> labels(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) labels[static_cast<size_t>(i)] = (i * 7) % cols;
  const Tensor t = tensor(labels, {rows});
  const float a = F::cross_entropy(x, t).item<float>(),
              b = composed_cross_entropy(x, t).item<float>();
  if (!(std::abs(a - b) <= 1e-6f * (1 + std::abs(b)))) {
    state.SkipWithError("fused and composed cross-entropy differ");
    return;
  }
  for (auto _ : state) {
    Tensor loss = fused ? F::cross_entropy(x, t) : composed_cross_entropy(x, t);
    benchmark::DoNotOptimize(grad({loss}, {x})[0].raw_data());
  }
  state.SetBytesProcessed(state.iterations() * rows * cols * 3 * 4);  // x twice, gx once
}

// The first derivative alone (Note [Fused softmax backward]): the fused kernel against the
// formula in ops it replaces in a backward pass without create_graph. range(0): 1 log_softmax,
// 0 softmax; range(1): 1 fused, 0 the formula. g and y read, dx written.
void BM_SoftmaxBackward(benchmark::State& state) {
  const bool log = state.range(0) != 0, fused = state.range(1) != 0;
  const Tensor x = tensor(logits(), {kRows, kCols});
  const Tensor g = tensor(uniform(static_cast<size_t>(kRows * kCols), -1, 1, 1), {kRows, kCols});
  const Tensor y = log ? log_softmax(x, 1) : softmax(x, 1);
  auto formula = [&] {
    return log ? g - exp(y) * sum(g, {1}, true) : y * (g - sum(g * y, {1}, true));
  };
  auto kernel = [&] { return log ? log_softmax_backward(g, y, 1) : softmax_backward(g, y, 1); };
  const float diff = max(abs(kernel() - formula())).item<float>();
  if (!(diff <= 1e-5f)) {
    state.SkipWithError("fused and formula softmax backward differ");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize((fused ? kernel() : formula()).raw_data());
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 3 * 4);
}

void BM_CrossEntropyFused(benchmark::State& state) {
  cross_entropy_bench(state, true);
}
void BM_CrossEntropyComposed(benchmark::State& state) {
  cross_entropy_bench(state, false);
}

}  // namespace

BENCHMARK(BM_SoftmaxBackward)
    ->ArgNames({"log", "fused"})
    ->Args({0, 1})
    ->Args({0, 0})
    ->Args({1, 1})
    ->Args({1, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CrossEntropyFused)->Args({4096, 1024})->Args({75, 5})->UseRealTime();
BENCHMARK(BM_CrossEntropyComposed)->Args({4096, 1024})->Args({75, 5})->UseRealTime();
BENCHMARK(BM_LogSoftmaxForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SoftmaxForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LogSoftmaxForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SoftmaxForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReluBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_RefReluBackwardLoop)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
