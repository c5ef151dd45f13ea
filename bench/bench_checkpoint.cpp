// Benchmarks of checkpoint I/O: save_safetensors (write + fsync + rename) and
// load_safetensors (validate + read) of a model-like map of 16 float32 tensors sharing the
// given total size (MiB), in the system temporary directory; and save + load of one tensor
// through .npy. bytes/s counts the tensor data once per wall-clock second (I/O waits are the
// point). A plain fwrite/fread of the same bytes (no fsync) is the reference for what the
// disk and page cache give. Each benchmark checks the loaded data against the source first.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <metagrad/metagrad.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

using namespace metagrad;
namespace fs = std::filesystem;

namespace {

constexpr int kTensors = 16;

std::string tmp(const std::string& name) {
  return (fs::temp_directory_path() / ("mg_bench_ckpt_" + std::to_string(::getpid()) + name))
      .string();
}

// kTensors float32 tensors holding `mb` MiB in total.
nn::ParamMap model(int64_t mb) {
  nn::ParamMap m;
  const int64_t per = mb * (1 << 20) / 4 / kTensors;
  for (int i = 0; i < kTensors; ++i)
    m["layer" + std::to_string(i) + ".weight"] =
        arange(0, per, 1, TensorOptions(DType::Float32)).reshape({per / 256, 256});
  return m;
}

bool same(const nn::ParamMap& a, const nn::ParamMap& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, t] : a) {
    const auto it = b.find(k);
    if (it == b.end() || it->second.shape() != t.shape()) return false;
    if (std::memcmp(it->second.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()) * 4))
      return false;
  }
  return true;
}

void BM_SaveSafetensors(benchmark::State& state) {
  const nn::ParamMap m = model(state.range(0));
  const std::string p = tmp("save.safetensors");
  nn::save_safetensors(p, m);
  if (!same(nn::load_safetensors(p), m)) state.SkipWithError("round trip mismatch");
  for (auto _ : state) nn::save_safetensors(p, m);
  state.SetBytesProcessed(state.iterations() * state.range(0) * (1 << 20));
  fs::remove(p);
}

void BM_LoadSafetensors(benchmark::State& state) {
  const nn::ParamMap m = model(state.range(0));
  const std::string p = tmp("load.safetensors");
  nn::save_safetensors(p, m);
  if (!same(nn::load_safetensors(p), m)) state.SkipWithError("round trip mismatch");
  for (auto _ : state) benchmark::DoNotOptimize(nn::load_safetensors(p));
  state.SetBytesProcessed(state.iterations() * state.range(0) * (1 << 20));
  fs::remove(p);
}

void BM_SaveLoadNpy(benchmark::State& state) {
  const Tensor t = arange(0, state.range(0) * (1 << 20) / 4, 1, TensorOptions(DType::Float32));
  const std::string p = tmp("x.npy");
  nn::save_npy(p, t);
  if (!same(nn::ParamMap{{"x", nn::load_npy(p)}}, nn::ParamMap{{"x", t}}))
    state.SkipWithError("round trip mismatch");
  for (auto _ : state) {
    nn::save_npy(p, t);
    benchmark::DoNotOptimize(nn::load_npy(p));
  }
  state.SetBytesProcessed(2 * state.iterations() * state.range(0) * (1 << 20));
  fs::remove(p);
}

// Reference: stdio write then read of the same bytes, no fsync, no validation.
void BM_StdioWriteRead(benchmark::State& state) {
  const Tensor t = arange(0, state.range(0) * (1 << 20) / 4, 1, TensorOptions(DType::Float32));
  const Tensor back = empty_like(t);
  const size_t n = static_cast<size_t>(t.numel()) * 4;
  const std::string p = tmp("raw.bin");
  for (auto _ : state) {
    FILE* f = std::fopen(p.c_str(), "wb");
    std::fwrite(t.raw_data(), 1, n, f);
    std::fclose(f);
    f = std::fopen(p.c_str(), "rb");
    if (std::fread(back.raw_data(), 1, n, f) != n) state.SkipWithError("short read");
    std::fclose(f);
  }
  state.SetBytesProcessed(2 * state.iterations() * state.range(0) * (1 << 20));
  fs::remove(p);
}

}  // namespace

BENCHMARK(BM_SaveSafetensors)->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LoadSafetensors)->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SaveLoadNpy)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_StdioWriteRead)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
