// Benchmarks of the nn layer's hot paths on the CPU: one optimizer step (SGD with momentum,
// Adam) over n float32 parameters, with a plain fused loop of the same update as the
// reference; a Linear-ReLU-Linear MLP forward + backward; and the cost of the functional
// form (forward(x, params), Note [Functional form of a Module]) against forward(x) on a
// small model, the regime of MAML's inner loop. bytes/s counts the minimum traffic of an
// update (SGD: read p, g, b, write p, b; Adam: read p, g, m, v, write p, m, v); FLOP/s
// counts 2 * in * out per sample and Linear for the MLP (forward + 2x for backward).
#include <benchmark/benchmark.h>
#include <metagrad/metagrad.h>

#include <cmath>
#include <cstdlib>
#include <vector>

using namespace metagrad;

namespace {

std::vector<Tensor> make_params(int64_t n) {
  manual_seed(0);
  Tensor p = randn({n}).requires_grad_(true);
  p.set_grad(randn({n}));
  return {p};
}

void BM_SGDMomentumStep(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto params = make_params(n);
  optim::SGD opt(params, optim::SGDOptions(1e-3).momentum(0.9));
  for (auto _ : state) opt.step();
  state.SetBytesProcessed(state.iterations() * n * 5 * static_cast<int64_t>(sizeof(float)));
}

void BM_AdamStep(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto params = make_params(n);
  optim::Adam opt(params, optim::AdamOptions(1e-3));
  for (auto _ : state) opt.step();
  state.SetBytesProcessed(state.iterations() * n * 7 * static_cast<int64_t>(sizeof(float)));
}

// The same Adam update as one fused single-threaded loop: the bound a fused kernel could
// approach. Checked against optim::Adam on the first step.
void BM_AdamStepFusedLoopReference(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto params = make_params(n);
  std::vector<float> p = params[0].detach().to_vector<float>();
  const std::vector<float> g = params[0].grad().to_vector<float>();
  std::vector<float> m(p.size(), 0.f), v(p.size(), 0.f);
  int t = 0;
  auto step = [&] {
    ++t;
    const float b1 = 0.9f, b2 = 0.999f, lr = 1e-3f, eps = 1e-8f;
    const float bc1 = 1 - std::pow(b1, static_cast<float>(t));
    const float bc2s = std::sqrt(1 - std::pow(b2, static_cast<float>(t)));
    for (size_t i = 0; i < p.size(); ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      p[i] -= lr / bc1 * m[i] / (std::sqrt(v[i]) / bc2s + eps);
    }
  };
  {
    optim::Adam opt(params, optim::AdamOptions(1e-3));
    opt.step();
    step();
    const std::vector<float> got = params[0].detach().to_vector<float>();
    for (size_t i = 0; i < p.size(); ++i)
      if (std::abs(got[i] - p[i]) > 1e-5f * (1 + std::abs(p[i]))) {
        state.SkipWithError("optim::Adam does not match the reference loop");
        return;
      }
  }
  for (auto _ : state) {
    step();
    benchmark::DoNotOptimize(p.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 7 * static_cast<int64_t>(sizeof(float)));
}

void BM_MlpForwardBackward(benchmark::State& state) {
  const int64_t batch = state.range(0), in = 256, hidden = 512, out = 10;
  manual_seed(0);
  auto model = nn::Sequential(nn::Linear(in, hidden), nn::ReLU(), nn::Linear(hidden, out));
  Tensor x = randn({batch, in});
  for (auto _ : state) {
    model->zero_grad();
    sum(model(x)).backward();
  }
  const double flops = 3.0 * 2.0 * static_cast<double>(batch) * (in * hidden + hidden * out);
  state.counters["FLOP/s"] = benchmark::Counter(flops * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
}

// A 4-layer MLP of width 32 on 25 samples (a 5-way 5-shot task's size).
nn::Sequential small_model() {
  manual_seed(0);
  return nn::Sequential(nn::Linear(32, 32), nn::ReLU(), nn::Linear(32, 32), nn::ReLU(),
                        nn::Linear(32, 32), nn::ReLU(), nn::Linear(32, 5));
}

void BM_SmallModelForward(benchmark::State& state) {
  auto model = small_model();
  Tensor x = randn({25, 32});
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(model(x));
}

void BM_SmallModelForwardFunctional(benchmark::State& state) {
  auto model = small_model();
  Tensor x = randn({25, 32});
  nn::ParamMap fast;
  for (auto& [k, p] : nn::params_of(*model)) fast[k] = p.detach().clone();
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(model->forward(x, fast));
}

}  // namespace

BENCHMARK(BM_SGDMomentumStep)
    ->Arg(1 << 16)
    ->Arg(1 << 22)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_AdamStep)->Arg(1 << 16)->Arg(1 << 22)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_AdamStepFusedLoopReference)
    ->Arg(1 << 16)
    ->Arg(1 << 22)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_MlpForwardBackward)->Arg(64)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_SmallModelForward)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_SmallModelForwardFunctional)->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
