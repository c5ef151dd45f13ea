// Benchmarks of the random fills: bytes written per second and elements per second for rand,
// randn, randint, bernoulli and an in-place fill of a transposed view, against std::mt19937 +
// std::uniform_real_distribution on one thread as a familiar reference.
#include <benchmark/benchmark.h>
#include <metagrad/metagrad.h>

#include <random>
#include <vector>

using namespace metagrad;

namespace {

void report(benchmark::State& state, int64_t n, size_t elem_bytes) {
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * static_cast<int64_t>(elem_bytes));
}

void BM_rand_f32(benchmark::State& state) {
  const int64_t n = state.range(0);
  Generator g(1);
  for (auto _ : state) benchmark::DoNotOptimize(rand({n}, {}, &g).raw_data());
  report(state, n, 4);
}

void BM_rand_f64(benchmark::State& state) {
  const int64_t n = state.range(0);
  Generator g(1);
  for (auto _ : state) benchmark::DoNotOptimize(rand({n}, DType::Float64, &g).raw_data());
  report(state, n, 8);
}

void BM_randn_f32(benchmark::State& state) {
  const int64_t n = state.range(0);
  Generator g(1);
  for (auto _ : state) benchmark::DoNotOptimize(randn({n}, {}, &g).raw_data());
  report(state, n, 4);
}

void BM_randn_f64(benchmark::State& state) {
  const int64_t n = state.range(0);
  Generator g(1);
  for (auto _ : state) benchmark::DoNotOptimize(randn({n}, DType::Float64, &g).raw_data());
  report(state, n, 8);
}

void BM_randint_i64(benchmark::State& state) {
  const int64_t n = state.range(0);
  Generator g(1);
  for (auto _ : state) benchmark::DoNotOptimize(randint(0, 1000, {n}, DType::Int64, &g).raw_data());
  report(state, n, 8);
}

void BM_bernoulli_tensor_f32(benchmark::State& state) {
  const int64_t n = state.range(0);
  Generator g(1);
  Tensor p = full({n}, 0.3);
  for (auto _ : state) benchmark::DoNotOptimize(bernoulli(p, &g).raw_data());
  report(state, n, 8);  // reads p, writes the mask
}

// uniform_ into a transposed view: the strided (cursor) path.
void BM_uniform_transposed_f32(benchmark::State& state) {
  const int64_t n = state.range(0);
  const int64_t rows = 1024, cols = n / rows;
  Generator g(1);
  Tensor t = empty({rows, cols}).t();
  for (auto _ : state) {
    uniform_(t, -1.0, 1.0, &g);
    benchmark::ClobberMemory();
  }
  report(state, rows * cols, 4);
}

// Reference: the standard library's Mersenne twister, one thread.
void BM_std_mt19937_uniform_f32(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto _ : state) {
    for (auto& x : v) x = dist(rng);
    benchmark::DoNotOptimize(v.data());
  }
  report(state, n, 4);
}

}  // namespace

BENCHMARK(BM_rand_f32)->Arg(1 << 12)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();
BENCHMARK(BM_rand_f64)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();
BENCHMARK(BM_randn_f32)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();
BENCHMARK(BM_randn_f64)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();
BENCHMARK(BM_randint_i64)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();
BENCHMARK(BM_bernoulli_tensor_f32)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();
BENCHMARK(BM_uniform_transposed_f32)->Arg(1 << 22)->UseRealTime();
BENCHMARK(BM_std_mt19937_uniform_f32)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();

BENCHMARK_MAIN();
