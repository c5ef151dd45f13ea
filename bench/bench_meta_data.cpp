// Benchmarks of meta/'s data side: area resize 105 -> 28, PNG decode of an Omniglot file,
// loading an Omniglot split (parallel decode + resize), and episode sampling.
// The Omniglot benchmarks read METAGRAD_OMNIGLOT or <source>/../shared/data/omniglot and
// are skipped (with a message) when neither exists.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "meta/data.h"
#include "tensor/creation.h"
#include "tensor/random.h"

namespace fs = std::filesystem;
using namespace metagrad;
using namespace metagrad::meta;

namespace {

std::string omniglot_root() {
  if (const char* env = std::getenv("METAGRAD_OMNIGLOT"); env && *env) return env;
  const fs::path p =
      fs::path(__FILE__).parent_path().parent_path().parent_path() / "shared" / "data" / "omniglot";
  return fs::is_directory(p / "images_background") ? p.string() : "";
}

void BM_ResizeArea105To28(benchmark::State& state) {
  std::vector<float> in(105 * 105), out(28 * 28);
  Generator g(1);
  const std::vector<float> r = rand({105 * 105}, {}, &g).to_vector<float>();
  in.assign(r.begin(), r.end());
  for (auto _ : state) {
    resize_area(in.data(), 1, 105, 105, out.data(), 28, 28);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(in.size() * sizeof(float)));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResizeArea105To28);

void BM_DecodeOmniglotPng(benchmark::State& state) {
  const std::string root = omniglot_root();
  if (root.empty()) {
    state.SkipWithError("Omniglot not found (set METAGRAD_OMNIGLOT)");
    return;
  }
  const fs::path file =
      fs::path(root) / "images_background" / "Latin" / "character01" / "0683_01.png";
  std::ifstream f(file, std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)),
                                   std::istreambuf_iterator<char>());
  for (auto _ : state) {
    Image8 img = decode_png(bytes.data(), bytes.size(), file.string(), 1);
    benchmark::DoNotOptimize(img.pixels.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_DecodeOmniglotPng);

// A whole split from files (warm page cache after the first iteration); items = images.
void BM_LoadOmniglot(benchmark::State& state, const char* split) {
  const std::string root = omniglot_root();
  if (root.empty()) {
    state.SkipWithError("Omniglot not found (set METAGRAD_OMNIGLOT)");
    return;
  }
  int64_t images = 0;
  for (auto _ : state) {
    OmniglotDataset ds(root, split);
    images = ds.num_base_classes() * 20;
    benchmark::DoNotOptimize(ds.storage().raw_data());
  }
  state.SetItemsProcessed(state.iterations() * images);
}
BENCHMARK_CAPTURE(BM_LoadOmniglot, val, "val")->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_CAPTURE(BM_LoadOmniglot, test, "test")->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK_CAPTURE(BM_LoadOmniglot, train, "train")->Unit(benchmark::kMillisecond)->Iterations(2);

// Episodes from an Omniglot-sized synthetic store (1028 characters x 4 rotations x 20).
// Args: n_way, k_shot, n_query; items = episodes, bytes = images copied.
void BM_SampleEpisode(benchmark::State& state) {
  static const ImageDataset ds = [] {
    Generator g(2);
    return ImageDataset(rand({1028 * 20, 1, 28, 28}, {}, &g), std::vector<int64_t>(1028, 20), {},
                        /*rotations=*/true);
  }();
  const int64_t n = state.range(0), k = state.range(1), q = state.range(2);
  EpisodeSampler sampler(ds, n, k, q, 3);
  for (auto _ : state) {
    Episode e = sampler.sample();
    benchmark::DoNotOptimize(e.support_x.raw_data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * n * (k + q) * 28 * 28 * 4);
}
BENCHMARK(BM_SampleEpisode)->Args({5, 1, 15})->Args({20, 5, 15});

}  // namespace

BENCHMARK_MAIN();
