// Benchmarks of the indexing ops on ~1M-element float32 tensors: gather, index_select
// (embedding-style rows and column picks), scatter_add, cat, pad. Bytes/s counts the bytes
// the op must move at least: every element read (input and index) plus every element written.
// Each benchmark first checks its result against a plain loop (a wrong fast kernel is no
// result) and skips with an error if it disagrees.
#include <benchmark/benchmark.h>
#include <metagrad/metagrad.h>

#include <random>
#include <vector>

using namespace metagrad;

namespace {

Tensor random_floats(const Shape& shape) {
  std::mt19937 g(7);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> v(static_cast<size_t>(numel_of(shape)));
  for (float& x : v) x = d(g);
  return tensor(v, shape);
}

Tensor random_index(const Shape& shape, int64_t bound) {
  std::mt19937 g(11);
  std::uniform_int_distribution<int64_t> d(0, bound - 1);
  std::vector<int64_t> v(static_cast<size_t>(numel_of(shape)));
  for (int64_t& x : v) x = d(g);
  return tensor(v, shape);
}

constexpr int64_t kRows = 1024, kCols = 1024;  // 1M elements

// gather along dim (0: rows picked per column, 1: columns picked per row).
void BM_Gather(benchmark::State& state) {
  const int64_t dim = state.range(0);
  Tensor x = random_floats({kRows, kCols});
  Tensor idx = random_index({kRows, kCols}, dim == 0 ? kRows : kCols);
  {
    Tensor out = gather(x, dim, idx);
    const auto xv = x.to_vector<float>(), ov = out.to_vector<float>();
    const auto iv = idx.to_vector<int64_t>();
    for (int64_t i = 0; i < kRows; ++i)
      for (int64_t j = 0; j < kCols; ++j) {
        const int64_t k = iv[i * kCols + j];
        const float want = dim == 0 ? xv[k * kCols + j] : xv[i * kCols + k];
        if (ov[i * kCols + j] != want) return state.SkipWithError("gather: wrong result");
      }
  }
  for (auto _ : state) benchmark::DoNotOptimize(gather(x, dim, idx));
  state.SetBytesProcessed(state.iterations() * kRows * kCols * (4 + 8 + 4));
}
BENCHMARK(BM_Gather)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

// index_select of rows (an embedding lookup: 16384 ids into a 4096 x 64 table) and of
// columns (1024 picks along the last dim of a 1024 x 1024 tensor).
void BM_IndexSelect(benchmark::State& state) {
  const int64_t dim = state.range(0);
  const int64_t width = state.range(1);
  const int64_t n = dim == 0 ? (1 << 20) / width : kCols;
  Tensor x = dim == 0 ? random_floats({4096, width}) : random_floats({kRows, kCols});
  Tensor idx = random_index({n}, x.size(dim));
  {
    Tensor out = index_select(x, dim, idx);
    const auto xv = x.to_vector<float>(), ov = out.to_vector<float>();
    const auto iv = idx.to_vector<int64_t>();
    const int64_t R = out.size(0), C = out.size(1);
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < C; ++j) {
        const float want = dim == 0 ? xv[iv[i] * C + j] : xv[i * x.size(1) + iv[j]];
        if (ov[i * C + j] != want) return state.SkipWithError("index_select: wrong result");
      }
  }
  const int64_t out_elems = dim == 0 ? n * width : kRows * n;
  for (auto _ : state) benchmark::DoNotOptimize(index_select(x, dim, idx));
  state.SetBytesProcessed(state.iterations() * (out_elems * (4 + 4) + n * 8));
}
BENCHMARK(BM_IndexSelect)
    ->Args({0, 64})
    ->Args({0, 8})
    ->Args({1, 0})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// scatter_add (out of place: includes the copy of x) along dim.
void BM_ScatterAdd(benchmark::State& state) {
  const int64_t dim = state.range(0);
  Tensor x = random_floats({kRows, kCols});
  Tensor src = random_floats({kRows, kCols});
  Tensor idx = random_index({kRows, kCols}, dim == 0 ? kRows : kCols);
  for (auto _ : state) benchmark::DoNotOptimize(scatter_add(x, dim, idx, src));
  // read x, write out, read src and index, read-modify-write out
  state.SetBytesProcessed(state.iterations() * kRows * kCols * (4 + 4 + 4 + 8 + 8));
}
BENCHMARK(BM_ScatterAdd)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

// cat of 4 tensors of 256K elements along dim 0 (contiguous blocks) or dim 1 (interleaved rows).
void BM_Cat(benchmark::State& state) {
  const int64_t dim = state.range(0);
  std::vector<Tensor> parts;
  for (int k = 0; k < 4; ++k)
    parts.push_back(dim == 0 ? random_floats({kRows / 4, kCols})
                             : random_floats({kRows, kCols / 4}));
  {
    Tensor out = cat(parts, dim);
    const auto ov = out.to_vector<float>();
    for (int k = 0; k < 4; ++k) {
      const auto pv = parts[k].to_vector<float>();
      const int64_t R = parts[k].size(0), C = parts[k].size(1);
      for (int64_t i = 0; i < R; ++i)
        for (int64_t j = 0; j < C; ++j) {
          const int64_t at = dim == 0 ? (k * R + i) * kCols + j : i * kCols + k * C + j;
          if (ov[at] != pv[i * C + j]) return state.SkipWithError("cat: wrong result");
        }
    }
  }
  for (auto _ : state) benchmark::DoNotOptimize(cat(parts, dim));
  state.SetBytesProcessed(state.iterations() * kRows * kCols * (4 + 4));
}
BENCHMARK(BM_Cat)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

// pad of a batch of images [64, 16, 32, 32] (1M elements) by 2 on each side of H and W,
// in each mode; state.range(1) = 1 pads a transposed (non-contiguous) view instead.
void BM_Pad(benchmark::State& state) {
  const auto mode = static_cast<PadMode>(state.range(0));
  Tensor x = random_floats({64, 16, 32, 32});
  if (state.range(1)) x = x.transpose(2, 3);
  const std::vector<int64_t> p{2, 2, 2, 2};
  {
    Tensor out = pad(x, p, mode);
    Tensor inner = out.slice(2, 2, 34).slice(3, 2, 34);
    if (inner.to_vector<float>() != x.to_vector<float>())
      return state.SkipWithError("pad: wrong result");
  }
  for (auto _ : state) benchmark::DoNotOptimize(pad(x, p, mode));
  state.SetBytesProcessed(state.iterations() * 64 * 16 * (32 * 32 + 36 * 36) * 4);
}
BENCHMARK(BM_Pad)
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({2, 0})
    ->Args({0, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
