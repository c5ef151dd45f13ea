// Matrix product benchmarks: square sgemm/dgemm through metagrad::matmul next to the same
// product calling cblas_sgemm/cblas_dgemm directly (the ceiling: metagrad adds shape checks,
// output allocation and dispatch), plus a batch of small products (spread over OpenMP
// threads). Each metagrad result is validated against the direct CBLAS result before timing.
//
// Run (see docs/performance.md for the recorded numbers):
//   OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 build/h/bench/bench_matmul
//     --benchmark_repetitions=5 --benchmark_report_aggregates_only=true   (one line)
#include <benchmark/benchmark.h>
#include <cblas.h>  // the benchmark's reference; the library itself includes it in blas.cpp only
#include <metagrad/metagrad.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/blas.h"

using namespace metagrad;

namespace {

// Deterministic values in [-1, 1) (a small LCG: the benchmark needs no statistical quality).
template <typename T>
std::vector<T> values(int64_t n, uint64_t seed) {
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<T>(static_cast<double>(seed >> 11) / 9007199254740992.0 * 2 - 1);
  }
  return v;
}

template <typename T>
void blas_gemm(int64_t n, const T* a, const T* b, T* c) {
  const int N = static_cast<int>(n);
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.f, a, N, b, N, 0.f, c, N);
  else
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0, a, N, b, N, 0.0, c, N);
}

void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["FLOP/s"] = benchmark::Counter(
      flops_per_iter * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

template <typename T>
void BM_matmul(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto av = values<T>(n * n, 1), bv = values<T>(n * n, 2);
  const Tensor a = tensor(av, {n, n}), b = tensor(bv, {n, n});
  // Validation: metagrad's result against the direct CBLAS call.
  std::vector<T> ref(static_cast<size_t>(n * n));
  blas_gemm<T>(n, av.data(), bv.data(), ref.data());
  const auto got = matmul(a, b).template to_vector<T>();
  double err = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    err = std::max(err, std::abs(static_cast<double>(got[i]) - static_cast<double>(ref[i])));
  if (err > 1e-3 * static_cast<double>(n)) {
    state.SkipWithError("metagrad::matmul disagrees with cblas");
    return;
  }
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_flops(state, 2.0 * static_cast<double>(n * n * n));
}

template <typename T>
void BM_cblas(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto a = values<T>(n * n, 1), b = values<T>(n * n, 2);
  std::vector<T> c(static_cast<size_t>(n * n));
  for (auto _ : state) {
    blas_gemm<T>(n, a.data(), b.data(), c.data());
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(state, 2.0 * static_cast<double>(n * n * n));
}

// A meta-batch of small products, as in MAML's per-task layers: [B, 32, 32] @ [B, 32, 32].
void BM_matmul_batched_small(benchmark::State& state) {
  const int64_t B = state.range(0), n = 32;
  const Tensor a = tensor(values<float>(B * n * n, 3), {B, n, n});
  const Tensor b = tensor(values<float>(B * n * n, 4), {B, n, n});
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_flops(state, 2.0 * static_cast<double>(B * n * n * n));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Each metagrad size runs right next to the same CBLAS call, so that load from other
  // processes drifting during the run hits both sides of a ratio alike.
  for (int64_t n : {64, 128, 256, 512, 1024}) {
    benchmark::RegisterBenchmark("matmul_f32", BM_matmul<float>)->Arg(n)->UseRealTime();
    benchmark::RegisterBenchmark("cblas_sgemm", BM_cblas<float>)->Arg(n)->UseRealTime();
  }
  for (int64_t n : {64, 128, 256, 512, 1024}) {
    benchmark::RegisterBenchmark("matmul_f64", BM_matmul<double>)->Arg(n)->UseRealTime();
    benchmark::RegisterBenchmark("cblas_dgemm", BM_cblas<double>)->Arg(n)->UseRealTime();
  }
  benchmark::RegisterBenchmark("matmul_f32_batch_32x32", BM_matmul_batched_small)
      ->Arg(128)
      ->UseRealTime();
  benchmark::AddCustomContext("blas", kernels::cpu::blas_vendor());
  benchmark::AddCustomContext("blas_threads", std::to_string(get_blas_num_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
