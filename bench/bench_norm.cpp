// Benchmarks of the nn layers on the CPU: batch_norm on a ResNet-sized activation
// [160, 64, 14, 14] float32 (training forward, forward + backward, eval forward), next to a
// fused two-pass loop written here (the target of a fused kernel); the fused op
// native_batch_norm (tensor/norm.h) against the composition of differentiable ops it replaced,
// on [160, 64, S, S] float32 for S = 14 and 28 (160 = the 32 x 5 support images of an Omniglot
// meta-batch), forward, forward + backward, and forward + backward (create_graph) + double
// backward; and softmax / cross_entropy on [1024, 1000] logits, forward and forward + backward.
//
// bytes/s counts the traffic a fused implementation could not avoid: batch_norm forward reads
// x and writes y (2 tensors); forward + backward also reads dy and x again and writes dx
// (5 tensors); softmax reads and writes the logits (2), cross_entropy reads them (1), its
// backward also writes dlogits (2). The composition moves more than that, which is the point
// of measuring against the minimum. Each benchmark checks its result against a float64 loop
// before timing.
#include <benchmark/benchmark.h>
#include <metagrad/metagrad.h>

#include <cmath>
#include <map>
#include <random>
#include <tuple>
#include <vector>

using namespace metagrad;
namespace F = metagrad::nn::functional;

namespace {

constexpr int64_t kN = 160, kC = 64, kH = 14, kW = 14, kS = kH * kW;
constexpr int64_t kBnNumel = kN * kC * kS;
constexpr int64_t kRows = 1024, kClasses = 1000;

std::vector<float> random_floats(size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& e : v) e = u(rng);
  return v;
}

const std::vector<float>& bn_input() {
  static const std::vector<float> d = random_floats(static_cast<size_t>(kBnNumel), -2, 3, 1);
  return d;
}
const std::vector<float>& bn_weight() {
  static const std::vector<float> d = random_floats(kC, 0.5, 1.5, 2);
  return d;
}
const std::vector<float>& bn_bias() {
  static const std::vector<float> d = random_floats(kC, -1, 1, 3);
  return d;
}

// Training-mode batch norm in float64, per channel: the reference.
std::vector<double> bn_reference() {
  const auto& x = bn_input();
  std::vector<double> y(x.size());
  for (int64_t c = 0; c < kC; ++c) {
    double m = 0, v = 0;
    for (int64_t n = 0; n < kN; ++n)
      for (int64_t s = 0; s < kS; ++s) m += x[static_cast<size_t>((n * kC + c) * kS + s)];
    m /= static_cast<double>(kN * kS);
    for (int64_t n = 0; n < kN; ++n)
      for (int64_t s = 0; s < kS; ++s) {
        const double d = x[static_cast<size_t>((n * kC + c) * kS + s)] - m;
        v += d * d;
      }
    v /= static_cast<double>(kN * kS);
    const double scale = bn_weight()[static_cast<size_t>(c)] / std::sqrt(v + 1e-5);
    for (int64_t n = 0; n < kN; ++n)
      for (int64_t s = 0; s < kS; ++s) {
        const size_t at = static_cast<size_t>((n * kC + c) * kS + s);
        y[at] = (x[at] - m) * scale + bn_bias()[static_cast<size_t>(c)];
      }
  }
  return y;
}

bool matches(const Tensor& got, const std::vector<double>& want, double tol) {
  const std::vector<double> g = got.to_vector<double>();
  if (g.size() != want.size()) return false;
  for (size_t i = 0; i < g.size(); ++i)
    if (!(std::abs(g[i] - want[i]) <= tol * (1 + std::abs(want[i])))) return false;
  return true;
}

void set_bytes(benchmark::State& state, int64_t numel, int64_t tensors) {
  state.SetBytesProcessed(state.iterations() * numel * tensors *
                          static_cast<int64_t>(sizeof(float)));
}

// ---- batch_norm ---------------------------------------------------------------------------

void BM_BatchNormForwardTraining(benchmark::State& state) {
  const Tensor x = tensor(bn_input(), {kN, kC, kH, kW});
  const Tensor w = tensor(bn_weight()), b = tensor(bn_bias());
  Tensor rm = zeros({kC}), rv = ones({kC});
  if (!matches(F::batch_norm(x, rm, rv, w, b, true), bn_reference(), 1e-4)) {
    state.SkipWithError("result does not match the float64 reference");
    return;
  }
  for (auto _ : state) {
    Tensor y = F::batch_norm(x, rm, rv, w, b, true);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_bytes(state, kBnNumel, 2);
}
BENCHMARK(BM_BatchNormForwardTraining)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_BatchNormForwardEval(benchmark::State& state) {
  const Tensor x = tensor(bn_input(), {kN, kC, kH, kW});
  const Tensor w = tensor(bn_weight()), b = tensor(bn_bias());
  const Tensor rm = zeros({kC}), rv = ones({kC});
  for (auto _ : state) {
    Tensor y = F::batch_norm(x, rm, rv, w, b, false);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_bytes(state, kBnNumel, 2);
}
BENCHMARK(BM_BatchNormForwardEval)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_BatchNormForwardBackward(benchmark::State& state) {
  const Tensor x = tensor(bn_input(), {kN, kC, kH, kW}).requires_grad_(true);
  const Tensor w = tensor(bn_weight()).requires_grad_(true);
  const Tensor b = tensor(bn_bias()).requires_grad_(true);
  const Tensor dy = randn({kN, kC, kH, kW});
  Tensor rm = zeros({kC}), rv = ones({kC});
  for (auto _ : state) {
    Tensor y = F::batch_norm(x, rm, rv, w, b, true);
    std::vector<Tensor> g = grad({y}, {x, w, b}, {dy});
    benchmark::DoNotOptimize(g[0].raw_data());
  }
  set_bytes(state, kBnNumel, 5);
}
BENCHMARK(BM_BatchNormForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

// The fused loop a batch-norm kernel would run: per channel, one pass for the mean, one for
// the variance, one writing y (channels in parallel). Not a metagrad op: the target.
void BM_BatchNormForwardFusedLoopReference(benchmark::State& state) {
  const std::vector<float>& x = bn_input();
  std::vector<float> y(x.size());
  for (auto _ : state) {
#pragma omp parallel for
    for (int64_t c = 0; c < kC; ++c) {
      double m = 0, v = 0;
      for (int64_t n = 0; n < kN; ++n) {
        const float* p = x.data() + (n * kC + c) * kS;
        for (int64_t s = 0; s < kS; ++s) m += p[s];
      }
      m /= static_cast<double>(kN * kS);
      for (int64_t n = 0; n < kN; ++n) {
        const float* p = x.data() + (n * kC + c) * kS;
        for (int64_t s = 0; s < kS; ++s) v += (p[s] - m) * (p[s] - m);
      }
      v /= static_cast<double>(kN * kS);
      const float scale =
          static_cast<float>(bn_weight()[static_cast<size_t>(c)] / std::sqrt(v + 1e-5));
      const float shift = static_cast<float>(bn_bias()[static_cast<size_t>(c)] - m * scale);
      for (int64_t n = 0; n < kN; ++n) {
        const float* p = x.data() + (n * kC + c) * kS;
        float* q = y.data() + (n * kC + c) * kS;
        for (int64_t s = 0; s < kS; ++s) q[s] = p[s] * scale + shift;
      }
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, kBnNumel, 2);
}
BENCHMARK(BM_BatchNormForwardFusedLoopReference)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- fused native_batch_norm against the composition it replaced -----------------------------

struct BnData {
  Tensor x, w, b, dy, v;  // v: the direction of the double backward
};
// [160, 64, s, s] float32 inputs, made once per size.
const BnData& bn_data(int64_t s) {
  static std::map<int64_t, BnData> cache;
  auto it = cache.find(s);
  if (it != cache.end()) return it->second;
  const Shape shape = {kN, kC, s, s};
  const size_t numel = static_cast<size_t>(kN * kC * s * s);
  BnData d{tensor(random_floats(numel, -2, 3, 11), shape), tensor(bn_weight()), tensor(bn_bias()),
           tensor(random_floats(numel, -1, 1, 12), shape),
           tensor(random_floats(numel, -1, 1, 13), shape)};
  return cache.emplace(s, std::move(d)).first->second;
}

// Training-mode batch norm as a composition of differentiable ops (what nn::functional::
// batch_norm ran before the fused op): mean, var, rsqrt, then x * scale + shift.
Tensor composed_bn(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  const Tensor mu = mean(x, {0, 2, 3}, true);
  const Tensor scale = rsqrt(var(x, {0, 2, 3}, 0, true) + eps) * w.reshape({1, kC, 1, 1});
  return x * scale + (b.reshape({1, kC, 1, 1}) - mu * scale);
}
Tensor fused_bn(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  return std::get<0>(native_batch_norm(x, w, b, eps));
}
using BnFn = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, double);

// Both forms give the same y and the same first derivatives (float32 tolerance).
bool bn_forms_agree(int64_t s) {
  const BnData& d = bn_data(s);
  const Tensor x = d.x.detach().requires_grad_(true), w = d.w.detach().requires_grad_(true);
  const Tensor b = d.b.detach().requires_grad_(true);
  const Tensor yf = fused_bn(x, w, b, 1e-5), yc = composed_bn(x, w, b, 1e-5);
  const std::vector<Tensor> gf = grad({yf}, {x, w, b}, {d.dy}), gc = grad({yc}, {x, w, b}, {d.dy});
  auto close = [](const Tensor& p, const Tensor& q) {
    return matches(p, q.to_vector<double>(), 1e-3);
  };
  return close(yf, yc) && close(gf[0], gc[0]) && close(gf[1], gc[1]) && close(gf[2], gc[2]);
}

void bn_forward(benchmark::State& state, BnFn f) {
  const int64_t s = state.range(0);
  if (!bn_forms_agree(s)) {
    state.SkipWithError("the fused and composed batch norms disagree");
    return;
  }
  const BnData& d = bn_data(s);
  for (auto _ : state) {
    Tensor y = f(d.x, d.w, d.b, 1e-5);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_bytes(state, d.x.numel(), 2);
}

void bn_forward_backward(benchmark::State& state, BnFn f) {
  const BnData& d = bn_data(state.range(0));
  const Tensor x = d.x.detach().requires_grad_(true), w = d.w.detach().requires_grad_(true);
  const Tensor b = d.b.detach().requires_grad_(true);
  for (auto _ : state) {
    std::vector<Tensor> g = grad({f(x, w, b, 1e-5)}, {x, w, b}, {d.dy});
    benchmark::DoNotOptimize(g[0].raw_data());
  }
  set_bytes(state, d.x.numel(), 5);
}

// As in a second-order MAML step: the gradient with create_graph (the fused op's recorded
// closed form), then the gradient of <v, dx> + sum(dw) w.r.t. x and w.
void bn_double_backward(benchmark::State& state, BnFn f) {
  const BnData& d = bn_data(state.range(0));
  const Tensor x = d.x.detach().requires_grad_(true), w = d.w.detach().requires_grad_(true);
  const Tensor b = d.b.detach().requires_grad_(true);
  for (auto _ : state) {
    std::vector<Tensor> g = grad({f(x, w, b, 1e-5)}, {x, w}, {d.dy}, true, /*create_graph=*/true);
    std::vector<Tensor> h = grad({sum(g[0] * d.v) + sum(g[1])}, {x, w});
    benchmark::DoNotOptimize(h[0].raw_data());
  }
}

// S = 14 and 28, timed in milliseconds of wall-clock time.
void bn_sizes(benchmark::internal::Benchmark* b) {
  b->Arg(14)->Arg(28)->Unit(benchmark::kMillisecond)->UseRealTime();
}

void BM_NativeBatchNormForward(benchmark::State& state) {
  bn_forward(state, fused_bn);
}
void BM_ComposedBatchNormForward(benchmark::State& state) {
  bn_forward(state, composed_bn);
}
void BM_NativeBatchNormForwardBackward(benchmark::State& state) {
  bn_forward_backward(state, fused_bn);
}
void BM_ComposedBatchNormForwardBackward(benchmark::State& state) {
  bn_forward_backward(state, composed_bn);
}
void BM_NativeBatchNormDoubleBackward(benchmark::State& state) {
  bn_double_backward(state, fused_bn);
}
void BM_ComposedBatchNormDoubleBackward(benchmark::State& state) {
  bn_double_backward(state, composed_bn);
}
BENCHMARK(BM_NativeBatchNormForward)->Apply(bn_sizes);
BENCHMARK(BM_ComposedBatchNormForward)->Apply(bn_sizes);
BENCHMARK(BM_NativeBatchNormForwardBackward)->Apply(bn_sizes);
BENCHMARK(BM_ComposedBatchNormForwardBackward)->Apply(bn_sizes);
BENCHMARK(BM_NativeBatchNormDoubleBackward)->Apply(bn_sizes);
BENCHMARK(BM_ComposedBatchNormDoubleBackward)->Apply(bn_sizes);

// ---- softmax and cross_entropy ----------------------------------------------------------------

const std::vector<float>& logits_data() {
  static const std::vector<float> d =
      random_floats(static_cast<size_t>(kRows * kClasses), -5, 5, 4);
  return d;
}
const std::vector<int64_t>& labels() {
  static const std::vector<int64_t> d = [] {
    std::mt19937 rng(5);
    std::uniform_int_distribution<int64_t> u(0, kClasses - 1);
    std::vector<int64_t> v(static_cast<size_t>(kRows));
    for (auto& e : v) e = u(rng);
    return v;
  }();
  return d;
}

// Mean cross entropy in float64 by rows.
double ce_reference() {
  const auto& x = logits_data();
  double total = 0;
  for (int64_t r = 0; r < kRows; ++r) {
    const float* p = x.data() + r * kClasses;
    double m = p[0];
    for (int64_t j = 1; j < kClasses; ++j) m = std::max(m, static_cast<double>(p[j]));
    double z = 0;
    for (int64_t j = 0; j < kClasses; ++j) z += std::exp(p[j] - m);
    total += m + std::log(z) - p[labels()[static_cast<size_t>(r)]];
  }
  return total / static_cast<double>(kRows);
}

void BM_Softmax(benchmark::State& state) {
  const Tensor x = tensor(logits_data(), {kRows, kClasses});
  // Every row of a softmax sums to one.
  if (!matches(sum(F::softmax(x, 1), {1}), std::vector<double>(kRows, 1.0), 1e-5)) {
    state.SkipWithError("softmax rows do not sum to one");
    return;
  }
  for (auto _ : state) {
    Tensor y = F::softmax(x, 1);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_bytes(state, kRows * kClasses, 2);
}
BENCHMARK(BM_Softmax)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CrossEntropyForward(benchmark::State& state) {
  const Tensor x = tensor(logits_data(), {kRows, kClasses});
  const Tensor t = tensor(labels());
  if (!matches(F::cross_entropy(x, t), {ce_reference()}, 1e-5)) {
    state.SkipWithError("result does not match the float64 reference");
    return;
  }
  for (auto _ : state) {
    Tensor loss = F::cross_entropy(x, t);
    benchmark::DoNotOptimize(loss.raw_data());
  }
  set_bytes(state, kRows * kClasses, 1);
}
BENCHMARK(BM_CrossEntropyForward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CrossEntropyForwardBackward(benchmark::State& state) {
  const Tensor x = tensor(logits_data(), {kRows, kClasses}).requires_grad_(true);
  const Tensor t = tensor(labels());
  for (auto _ : state) {
    Tensor loss = F::cross_entropy(x, t, F::Reduction::Mean, 0.1);
    std::vector<Tensor> g = grad({loss}, {x});
    benchmark::DoNotOptimize(g[0].raw_data());
  }
  set_bytes(state, kRows * kClasses, 2);
}
BENCHMARK(BM_CrossEntropyForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

// The usual pair in a classifier step: softmax for the probabilities (accuracy, logging) and
// cross_entropy for the loss, then the gradient.
void BM_SoftmaxPlusCrossEntropyStep(benchmark::State& state) {
  const Tensor x = tensor(logits_data(), {kRows, kClasses}).requires_grad_(true);
  const Tensor t = tensor(labels());
  for (auto _ : state) {
    Tensor probs;
    {
      NoGradGuard ng;
      probs = F::softmax(x, 1);
    }
    Tensor loss = F::cross_entropy(x, t);
    std::vector<Tensor> g = grad({loss}, {x});
    benchmark::DoNotOptimize(probs.raw_data());
    benchmark::DoNotOptimize(g[0].raw_data());
  }
  set_bytes(state, kRows * kClasses, 4);
}
BENCHMARK(BM_SoftmaxPlusCrossEntropyStep)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
