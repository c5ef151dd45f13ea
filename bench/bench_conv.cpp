// Convolution and pooling benchmarks on the MAML Omniglot conv-4 shapes (a meta-batch of 32
// tasks x 5 images = 160): conv2d forward, and forward + backward through autograd, for the
// first layer [160, 1, 28, 28] x [64, 1, 3, 3] and the inner layers [160, 64, H, H] x
// [64, 64, 3, 3] (H = 14, 7, 3; stride 1, padding 1), with FLOP/s counters; next to each, the
// one sgemm of the same size ([O, C kH kW] x [C kH kW, N OH OW]) through CBLAS, the ceiling
// im2col + GEMM can reach. max_pool2d (2 x 2) forward and backward with bytes/s counters. Each
// conv2d is validated against a direct loop over its first image before timing.
//
// Run: OMP_NUM_THREADS=2 build/default/bench/bench_conv --benchmark_repetitions=3
//        --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <cblas.h>  // the ceiling; the library itself includes it in blas.cpp only
#include <metagrad/metagrad.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/blas.h"

using namespace metagrad;

namespace {

// Deterministic values in [-1, 1) (a small LCG: the benchmark needs no statistical quality).
std::vector<float> values(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<double>(seed >> 11) / 9007199254740992.0 * 2 - 1);
  }
  return v;
}

struct ConvShape {
  int64_t n, c, h, w, o, k;  // k x k kernel, stride 1, padding k / 2
};
// The max-pool conv-4's layers: the first, then the inner ones at 14 x 14, 7 x 7 and 3 x 3
// (the last two take the pixel-map im2col of Note [Small-plane im2col]).
const ConvShape kLayers[] = {{160, 1, 28, 28, 64, 3},
                             {160, 64, 14, 14, 64, 3},
                             {160, 64, 7, 7, 64, 3},
                             {160, 64, 3, 3, 64, 3}};

// Multiply-adds x 2 of one convolution.
double conv_flops(const ConvShape& s) {
  return 2.0 * static_cast<double>(s.n * s.o * s.h * s.w * s.c * s.k * s.k);
}

// y[0] by the definition, compared with metagrad's first image; false if they disagree.
bool validate(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
              const Tensor& y) {
  const auto got = y.select(0, 0).contiguous().to_vector<float>();
  const int64_t p = s.k / 2;
  double worst = 0;
  for (int64_t o = 0; o < s.o; ++o)
    for (int64_t i = 0; i < s.h; ++i)
      for (int64_t j = 0; j < s.w; ++j) {
        double acc = 0;
        for (int64_t c = 0; c < s.c; ++c)
          for (int64_t a = 0; a < s.k; ++a)
            for (int64_t b = 0; b < s.k; ++b) {
              const int64_t ih = i - p + a, iw = j - p + b;
              if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
              acc += static_cast<double>(x[static_cast<size_t>((c * s.h + ih) * s.w + iw)]) *
                     w[static_cast<size_t>(((o * s.c + c) * s.k + a) * s.k + b)];
            }
        worst = std::max(worst, std::abs(acc - got[static_cast<size_t>((o * s.h + i) * s.w + j)]));
      }
  return worst < 1e-3;
}

void BM_conv2d_forward(benchmark::State& state, ConvShape s) {
  const auto xv = values(s.n * s.c * s.h * s.w, 1), wv = values(s.o * s.c * s.k * s.k, 2);
  const Tensor x = tensor(xv, {s.n, s.c, s.h, s.w}), w = tensor(wv, {s.o, s.c, s.k, s.k});
  const Tensor b = tensor(values(s.o, 3), {s.o});
  const Conv2dParams p{.padding = {s.k / 2, s.k / 2}};
  if (!validate(s, xv, wv, conv2d(x, w, {}, p))) {
    state.SkipWithError("conv2d disagrees with the direct loop");
    return;
  }
  for (auto _ : state) {
    Tensor y = conv2d(x, w, b, p);
    benchmark::DoNotOptimize(y.raw_data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(
      conv_flops(s) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// Forward, then the gradients of sum(y * g) w.r.t. the weight and bias, and w.r.t. the input
// where it is a hidden layer (the first layer's input is data): 2 or 3 GEMM-sized products.
void BM_conv2d_forward_backward(benchmark::State& state, ConvShape s) {
  const bool input_grad = s.c > 1;
  Tensor x = tensor(values(s.n * s.c * s.h * s.w, 1), {s.n, s.c, s.h, s.w});
  Tensor w = tensor(values(s.o * s.c * s.k * s.k, 2), {s.o, s.c, s.k, s.k}).requires_grad_();
  Tensor b = tensor(values(s.o, 3), {s.o}).requires_grad_();
  if (input_grad) x.requires_grad_();
  const Tensor g = tensor(values(s.n * s.o * s.h * s.w, 4), {s.n, s.o, s.h, s.w});
  const Conv2dParams p{.padding = {s.k / 2, s.k / 2}};
  std::vector<Tensor> wrt = {w, b};
  if (input_grad) wrt.push_back(x);
  for (auto _ : state) {
    Tensor y = conv2d(x, w, b, p);
    auto grads = grad({y}, wrt, {g});
    benchmark::DoNotOptimize(grads[0].raw_data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(
      conv_flops(s) * (input_grad ? 3 : 2) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

// Note [Task-batched convolution] (nn/functional/conv.cpp): B tasks' convolutions of one
// conv-4 layer ([n, c, hw, hw] * [64, c, 3, 3] each) as one convolution of B groups
// ([n, B * c, hw, hw] * [B * 64, c, 3, 3], groups = B), forward and the weight gradient (and
// the input gradient where the layer is a hidden one, c > 1), against the same B convolutions
// run one after another (the per-task loop). n = 5 is a 5-way 1-shot support set, n = 75 its
// query set.
struct GroupedShape {
  int64_t n, tasks, c, hw;
};
void BM_task_batched_conv(benchmark::State& state, GroupedShape s, bool grouped) {
  constexpr int64_t o = 64;
  const bool input_grad = s.c > 1;
  const Conv2dParams p{.padding = {1, 1}};
  std::vector<Tensor> xs, ws, gs;
  const int64_t copies = grouped ? 1 : s.tasks, per = grouped ? s.tasks : 1, hw2 = s.hw * s.hw;
  for (int64_t t = 0; t < copies; ++t) {
    const uint64_t seed = 10 * static_cast<uint64_t>(t);
    Tensor x = tensor(values(s.n * per * s.c * hw2, seed + 1), {s.n, per * s.c, s.hw, s.hw});
    xs.push_back(input_grad ? x.requires_grad_() : x);
    ws.push_back(
        tensor(values(per * o * s.c * 9, seed + 2), {per * o, s.c, 3, 3}).requires_grad_());
    gs.push_back(tensor(values(s.n * per * o * hw2, seed + 3), {s.n, per * o, s.hw, s.hw}));
  }
  Conv2dParams pg = p;
  pg.groups = per;
  for (auto _ : state) {
    for (int64_t t = 0; t < copies; ++t) {
      const size_t i = static_cast<size_t>(t);
      Tensor y = conv2d(xs[i], ws[i], {}, pg);
      std::vector<Tensor> wrt = {ws[i]};
      if (input_grad) wrt.push_back(xs[i]);
      auto grads = grad({y}, wrt, {gs[i]});
      benchmark::DoNotOptimize(grads[0].raw_data());
    }
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(conv_flops({s.n * s.tasks, s.c, s.hw, s.hw, o, 3}) * (input_grad ? 3 : 2) *
                             static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

// The ceiling: one sgemm [O, C k k] x [C k k, N H W], the product the convolution amounts to.
void BM_sgemm_equivalent(benchmark::State& state, ConvShape s) {
  const int m = static_cast<int>(s.o), k = static_cast<int>(s.c * s.k * s.k),
            n = static_cast<int>(s.n * s.h * s.w);
  const auto a = values(int64_t{m} * k, 1), bm = values(int64_t{k} * n, 2);
  std::vector<float> c(static_cast<size_t>(int64_t{m} * n));
  kernels::cpu::blas_sync_num_threads();
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.f, a.data(), k, bm.data(), n,
                0.f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(
      conv_flops(s) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// 2 x 2 max pooling of the first layer's output [160, 64, 28, 28]: bytes read and written
// (values in, values and int64 indices out; for the backward gradient and indices in, the
// input gradient out).
void BM_max_pool2d(benchmark::State& state) {
  const int64_t n = 160, c = 64, h = 28;
  const Tensor x = tensor(values(n * c * h * h, 5), {n, c, h, h});
  const Pool2dParams p{.kernel = {2, 2}};
  for (auto _ : state) {
    auto [y, i] = max_pool2d_with_indices(x, p);
    benchmark::DoNotOptimize(y.raw_data());
  }
  const int64_t out = n * c * (h / 2) * (h / 2);
  state.SetBytesProcessed(state.iterations() * (x.numel() * 4 + out * (4 + 8)));
}

void BM_max_pool2d_backward(benchmark::State& state) {
  const int64_t n = 160, c = 64, h = 28;
  const Tensor x = tensor(values(n * c * h * h, 5), {n, c, h, h});
  auto [y, i] = max_pool2d_with_indices(x, {.kernel = {2, 2}});
  const Tensor g = ones_like(y);
  for (auto _ : state) {
    Tensor gx = max_pool2d_backward(g, i, x.shape());
    benchmark::DoNotOptimize(gx.raw_data());
  }
  state.SetBytesProcessed(state.iterations() * (x.numel() * 4 + y.numel() * (4 + 8)));
}

// The strided conv-4 (the MAML paper's: 3 x 3, stride 2, padding 1) on a 75-image query set:
// forward and input backward of its hidden layers, the same multiply-adds each (Note [Strided
// input backward by phases] in kernels/cpu/conv.cpp).
struct StridedShape {
  int64_t n, c, h;  // n images of c x h x h, 64 filters
};
const StridedShape kStridedLayers[] = {
    {75, 64, 14}, {75, 64, 7}, {75, 64, 4}, {75, 64, 6}, {5, 64, 14}};
void BM_strided_conv(benchmark::State& state, StridedShape s, bool input_backward) {
  const Conv2dParams p{.stride = {2, 2}, .padding = {1, 1}};
  const Tensor x = tensor(values(s.n * s.c * s.h * s.h, 1), {s.n, s.c, s.h, s.h});
  const Tensor w = tensor(values(64 * s.c * 9, 2), {64, s.c, 3, 3});
  const Tensor y = conv2d(x, w, {}, p);
  const Tensor gy = tensor(values(y.numel(), 3), y.shape());
  for (auto _ : state) {
    Tensor r = input_backward ? conv2d_input_backward(gy, w, x.shape(), p) : conv2d(x, w, {}, p);
    benchmark::DoNotOptimize(r.raw_data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(y.numel() * s.c * 9) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

std::string name_of(const char* what, const ConvShape& s) {
  return std::string(what) + "/" + std::to_string(s.n) + "x" + std::to_string(s.c) + "x" +
         std::to_string(s.h) + "x" + std::to_string(s.w) + "_w" + std::to_string(s.o) + "x" +
         std::to_string(s.c) + "x" + std::to_string(s.k) + "x" + std::to_string(s.k);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  for (const ConvShape& s : kLayers) {
    benchmark::RegisterBenchmark(name_of("conv2d_fwd", s).c_str(), BM_conv2d_forward, s)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(name_of("sgemm_equivalent", s).c_str(), BM_sgemm_equivalent, s)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(name_of("conv2d_fwd_bwd", s).c_str(), BM_conv2d_forward_backward,
                                 s)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (const StridedShape& s : kStridedLayers)
    for (bool ib : {false, true}) {
      const std::string name = std::string(ib ? "strided_input_backward/" : "strided_fwd/") +
                               std::to_string(s.n) + "x" + std::to_string(s.c) + "x" +
                               std::to_string(s.h) + "x" + std::to_string(s.h) + "_s2";
      benchmark::RegisterBenchmark(name.c_str(), BM_strided_conv, s, ib)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  for (const int64_t n : {5, 75})
    for (const auto& [c, hw] : {std::pair<int64_t, int64_t>{1, 28}, {64, 14}, {64, 7}, {64, 3}})
      for (bool grouped : {false, true}) {
        const std::string name =
            std::string(grouped ? "task_batched_conv/grouped/" : "task_batched_conv/per_task/") +
            "32x" + std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(hw) + "x" +
            std::to_string(hw);
        benchmark::RegisterBenchmark(name.c_str(), BM_task_batched_conv, GroupedShape{n, 32, c, hw},
                                     grouped)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
  benchmark::RegisterBenchmark("max_pool2d/160x64x28x28_k2", BM_max_pool2d)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("max_pool2d_backward/160x64x28x28_k2", BM_max_pool2d_backward)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::AddCustomContext("blas", kernels::cpu::blas_vendor());
  benchmark::AddCustomContext("blas_threads", std::to_string(kernels::cpu::blas_get_num_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
