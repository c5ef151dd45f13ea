// Benchmarks of the CPU reductions on a [1024, 1024] float32 tensor: sum over everything and
// over each dim, logsumexp over the last dim, a few others, and two plain-loop references (a
// single-threaded sum, and the column sum walked with a stride of 1024 floats, which is what
// the "columns" loop order of kernels/cpu/reduce.cpp avoids). bytes/s counts the input read
// once. Each benchmark checks its result against a float64 loop before timing.
#include <benchmark/benchmark.h>
#include <metagrad/metagrad.h>

#include <cmath>
#include <random>
#include <vector>

using namespace metagrad;

namespace {

constexpr int64_t kN = 1024;

const std::vector<float>& data() {
  static const std::vector<float> d = [] {
    std::mt19937 rng(0);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> v(static_cast<size_t>(kN * kN));
    for (float& e : v) e = u(rng);
    return v;
  }();
  return d;
}

// Column sums (dim 0) and row sums (dim 1) in float64, row-major walk.
std::vector<double> ref_sum(int dim) {
  std::vector<double> r(static_cast<size_t>(kN), 0.0);
  for (int64_t i = 0; i < kN; ++i)
    for (int64_t j = 0; j < kN; ++j)
      r[static_cast<size_t>(dim == 0 ? j : i)] += data()[static_cast<size_t>(i * kN + j)];
  return r;
}

bool matches(const Tensor& got, const std::vector<double>& want, double tol) {
  const std::vector<double> g = got.to_vector<double>();
  if (g.size() != want.size()) return false;
  for (size_t i = 0; i < g.size(); ++i)
    if (!(std::abs(g[i] - want[i]) <= tol * (1 + std::abs(want[i])))) return false;
  return true;
}

void set_bytes(benchmark::State& state) {
  state.SetBytesProcessed(state.iterations() * kN * kN * static_cast<int64_t>(sizeof(float)));
}

template <typename F>
void run(benchmark::State& state, F op, const std::vector<double>& want, double tol) {
  const Tensor x = tensor(data(), {kN, kN});
  if (!matches(op(x), want, tol)) {
    state.SkipWithError("result does not match the float64 reference");
    return;
  }
  for (auto _ : state) {
    Tensor r = op(x);
    benchmark::DoNotOptimize(r.raw_data());
  }
  set_bytes(state);
}

void BM_SumAll(benchmark::State& state) {
  double total = 0;
  for (double v : ref_sum(1)) total += v;
  run(
      state, [](const Tensor& x) { return sum(x); }, {total}, 1e-5);
}
void BM_SumDim0(benchmark::State& state) {
  run(
      state, [](const Tensor& x) { return sum(x, {0}); }, ref_sum(0), 1e-5);
}
void BM_SumDim1(benchmark::State& state) {
  run(
      state, [](const Tensor& x) { return sum(x, {1}); }, ref_sum(1), 1e-5);
}
// dim 0 of the transpose: the row sums again, now over a unit-stride kept dim.
void BM_SumDim0OfTranspose(benchmark::State& state) {
  run(
      state, [](const Tensor& x) { return sum(x.t(), {0}); }, ref_sum(1), 1e-5);
}
void BM_LogSumExpLastDim(benchmark::State& state) {
  std::vector<double> want(static_cast<size_t>(kN));
  for (int64_t i = 0; i < kN; ++i) {
    double s = 0;
    for (int64_t j = 0; j < kN; ++j) s += std::exp(double(data()[static_cast<size_t>(i * kN + j)]));
    want[static_cast<size_t>(i)] = std::log(s);
  }
  run(
      state, [](const Tensor& x) { return logsumexp(x, {-1}); }, want, 1e-5);
}
void BM_MeanDim0(benchmark::State& state) {
  std::vector<double> want = ref_sum(0);
  for (double& v : want) v /= kN;
  run(
      state, [](const Tensor& x) { return mean(x, {0}); }, want, 1e-5);
}
void BM_VarDim1(benchmark::State& state) {
  std::vector<double> want(static_cast<size_t>(kN));
  const std::vector<double> s = ref_sum(1);
  for (int64_t i = 0; i < kN; ++i) {
    const double m = s[static_cast<size_t>(i)] / kN;
    double q = 0;
    for (int64_t j = 0; j < kN; ++j) {
      const double d = data()[static_cast<size_t>(i * kN + j)] - m;
      q += d * d;
    }
    want[static_cast<size_t>(i)] = q / (kN - 1);
  }
  run(
      state, [](const Tensor& x) { return var(x, {1}); }, want, 1e-5);
}
void BM_AmaxDim1(benchmark::State& state) {
  std::vector<double> want(static_cast<size_t>(kN), -1e30);
  for (int64_t i = 0; i < kN; ++i)
    for (int64_t j = 0; j < kN; ++j)
      want[static_cast<size_t>(i)] =
          std::max(want[static_cast<size_t>(i)], double(data()[static_cast<size_t>(i * kN + j)]));
  run(
      state, [](const Tensor& x) { return amax(x, {1}); }, want, 0);
}
void BM_MaxDim0WithIndices(benchmark::State& state) {
  std::vector<double> want(static_cast<size_t>(kN), -1e30);
  for (int64_t i = 0; i < kN; ++i)
    for (int64_t j = 0; j < kN; ++j)
      want[static_cast<size_t>(j)] =
          std::max(want[static_cast<size_t>(j)], double(data()[static_cast<size_t>(i * kN + j)]));
  run(
      state, [](const Tensor& x) { return std::get<0>(max(x, 0)); }, want, 0);
}

// References: plain loops, one thread.
void BM_RefPlainLoopSumAll(benchmark::State& state) {
  const std::vector<float>& d = data();
  for (auto _ : state) {
    double s = 0;
    for (float v : d) s += v;
    benchmark::DoNotOptimize(s);
  }
  set_bytes(state);
}
void BM_RefStridedColumnSum(benchmark::State& state) {
  const std::vector<float>& d = data();
  std::vector<double> r(static_cast<size_t>(kN));
  for (auto _ : state) {
    for (int64_t j = 0; j < kN; ++j) {
      double s = 0;
      for (int64_t i = 0; i < kN; ++i) s += d[static_cast<size_t>(i * kN + j)];
      r[static_cast<size_t>(j)] = s;
    }
    benchmark::DoNotOptimize(r.data());
  }
  set_bytes(state);
}

// Host cost of a small reduction, the bias gradient of a sinusoid MLP layer (sum_to of a
// [10, 40] gradient over its batch dim): no OpenMP region is entered for it (Note [Serial
// loops skip OpenMP] in kernels/cpu/parallel.h), which alone was about 300 ns per call.
void BM_SumTinyOverhead(benchmark::State& state) {
  Tensor g = ones({10, 40});
  for (auto _ : state) {
    Tensor r = sum(g, {0});
    benchmark::DoNotOptimize(r.raw_data());
  }
}

}  // namespace

BENCHMARK(BM_SumTinyOverhead);
BENCHMARK(BM_SumAll);
BENCHMARK(BM_SumDim0);
BENCHMARK(BM_SumDim1);
BENCHMARK(BM_SumDim0OfTranspose);
BENCHMARK(BM_LogSumExpLastDim);
BENCHMARK(BM_MeanDim0);
BENCHMARK(BM_VarDim1);
BENCHMARK(BM_AmaxDim1);
BENCHMARK(BM_MaxDim0WithIndices);
BENCHMARK(BM_RefPlainLoopSumAll);
BENCHMARK(BM_RefStridedColumnSum);
BENCHMARK_MAIN();
