// Elementwise kernels on the CPU: bytes moved per second for contiguous, broadcast and
// transposed operands, against a plain C++ loop over the same data as the reference.
#include <benchmark/benchmark.h>

#include <metagrad/metagrad.h>

#include <cmath>
#include <vector>

using namespace metagrad;

static void BM_AddContiguous(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a = ones({n}), b = ones({n});
  for (auto _ : state) benchmark::DoNotOptimize(add(a, b).raw_data());
  state.SetBytesProcessed(state.iterations() * n * 3 * 4);
}
BENCHMARK(BM_AddContiguous)->Arg(1 << 12)->Arg(1 << 16)->Arg(1 << 20)->Arg(1 << 24);

// Reference: the same add as a plain loop into a preallocated buffer (no allocation).
static void BM_AddReferenceLoop(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<float> a(n, 1.f), b(n, 1.f), c(n);
  for (auto _ : state) {
    for (int64_t i = 0; i < n; ++i) c[i] = a[i] + b[i];
    benchmark::DoNotOptimize(c.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 3 * 4);
}
BENCHMARK(BM_AddReferenceLoop)->Arg(1 << 12)->Arg(1 << 16)->Arg(1 << 20)->Arg(1 << 24);

static void BM_MulBroadcastRow(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a = ones({n, n}), b = ones({n});
  for (auto _ : state) benchmark::DoNotOptimize(mul(a, b).raw_data());
  state.SetBytesProcessed(state.iterations() * n * n * 2 * 4);
}
BENCHMARK(BM_MulBroadcastRow)->Arg(256)->Arg(1024)->Arg(4096);

static void BM_AddTransposed(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a = ones({n, n}), b = ones({n, n}).t();
  for (auto _ : state) benchmark::DoNotOptimize(add(a, b).raw_data());
  state.SetBytesProcessed(state.iterations() * n * n * 3 * 4);
}
BENCHMARK(BM_AddTransposed)->Arg(256)->Arg(1024)->Arg(4096);

static void BM_Exp(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a = ones({n});
  for (auto _ : state) benchmark::DoNotOptimize(exp(a).raw_data());
  state.SetBytesProcessed(state.iterations() * n * 2 * 4);
}
BENCHMARK(BM_Exp)->Arg(1 << 16)->Arg(1 << 20)->Arg(1 << 24);

static void BM_Where(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor c = ones({n}) > 0.5, a = ones({n}), b = zeros({n});
  for (auto _ : state) benchmark::DoNotOptimize(where(c, a, b).raw_data());
  state.SetBytesProcessed(state.iterations() * n * (1 + 4 + 4 + 4));
}
BENCHMARK(BM_Where)->Arg(1 << 20);

// Batch norm's pattern: [N, C, H, W] against a per-channel [1, C, 1, 1] (the coalesced inner
// dim of the second operand has stride 0: Note [Broadcast pieces]), and ReLU's backward
// where(x > 0, g, 0) with a scalar. Shapes of the max-pool conv-4's first block, 75 images.
static void BM_MulPerChannel(benchmark::State& state) {
  const int64_t hw = state.range(0);
  Tensor a = ones({75, 64, hw, hw}), b = ones({1, 64, 1, 1});
  for (auto _ : state) benchmark::DoNotOptimize(mul(a, b).raw_data());
  state.SetBytesProcessed(state.iterations() * a.numel() * 2 * 4);
}
BENCHMARK(BM_MulPerChannel)->Arg(28)->Arg(7)->Arg(2);

static void BM_WhereScalar(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor c = ones({n}) > 0.5, g = ones({n});
  for (auto _ : state) benchmark::DoNotOptimize(where(c, g, 0.0).raw_data());
  state.SetBytesProcessed(state.iterations() * n * (1 + 4 + 4));
}
BENCHMARK(BM_WhereScalar)->Arg(1 << 20);

static void BM_ContiguousCopyOfTranspose(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a = ones({n, n}).t();
  for (auto _ : state) benchmark::DoNotOptimize(a.contiguous().raw_data());
  state.SetBytesProcessed(state.iterations() * n * n * 2 * 4);
}
BENCHMARK(BM_ContiguousCopyOfTranspose)->Arg(1024)->Arg(4096);

// The host cost of one op, which decides a meta-step of small tensors on the CPU and its launch
// rate on the GPU: an add of two 4-element tensors, without and with the autograd node that
// recording adds (an input requires grad); ns per op.
static void BM_AddTinyOverhead(benchmark::State& state) {
  const bool recorded = state.range(0) != 0;
  Tensor a = ones({4}), b = ones({4});
  if (recorded) a.requires_grad_(true);
  for (auto _ : state) benchmark::DoNotOptimize(add(a, b).raw_data());
}
BENCHMARK(BM_AddTinyOverhead)->ArgName("recorded")->Arg(0)->Arg(1);

// The same with a Scalar operand (x * 0.5, as in every lr * grad of an inner step): the scalar
// becomes a 0-d tensor first (Note [Scalar constants] in tensor/elementwise.cpp).
static void BM_MulScalarTinyOverhead(benchmark::State& state) {
  const bool recorded = state.range(0) != 0;
  Tensor a = ones({4});
  if (recorded) a.requires_grad_(true);
  for (auto _ : state) benchmark::DoNotOptimize(mul(a, 0.5).raw_data());
}
BENCHMARK(BM_MulScalarTinyOverhead)->ArgName("recorded")->Arg(0)->Arg(1);

BENCHMARK_MAIN();
