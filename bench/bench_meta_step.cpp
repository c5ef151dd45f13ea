// Benchmarks of one meta-training step (issue 7), the workloads bench/compare/ times in
// PyTorch: sinusoid MAML (meta-batch 25, K = 10 support + 10 query, 1 inner step, lr 0.01)
// and Omniglot-shaped 5-way 1-shot conv-4 MAML (meta-batch 32, 1 support + 15 query images
// per class, random 28x28 inputs, 1 inner step, lr 0.4), both conv-4 variants, second and
// first order. Each step includes the Adam update (lr 1e-3).
//
// Counters: peak_MB is the resident-set high-water mark during the timed loop above the RSS
// before it (VmHWM reset through /proc/self/clear_refs); maxrss_delta_MB is the getrusage
// ru_maxrss delta, which stays 0 when an earlier benchmark already reached a higher peak.
//
// MG_BENCH_EXPORT=<dir>: before timing, each workload writes its initial weights and tasks
// (.npy), then the first step's mean query loss (loss.txt) and the weights after it
// (after.<name>.npy), so bench/compare/torch_meta_step.py can check it computes the same.
//
// MG_BENCH_DEVICE=cuda: the same weights and tasks (made on the CPU from the same seeds) are
// moved to the GPU and every step runs there. Each timed iteration ends with
// cuda::synchronize(), so the time is the step's, not its launches'; the counter
// peak_device_MB is the caching allocator's peak of live device memory during the timed loop
// (weights, Adam state and tasks included, as torch.cuda.max_memory_allocated). Unset or
// "cpu": the CPU, unchanged.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "kernels/cuda/runtime.h"
#include "meta/learner.h"
#include "meta/models.h"
#include "meta/tasks.h"
#include "nn/checkpoint.h"
#include "nn/functional.h"
#include "tensor/creation.h"
#include "tensor/elementwise.h"
#include "tensor/profiler.h"
#include "tensor/random.h"

namespace fs = std::filesystem;
using namespace metagrad;
using meta::Task;

namespace {

struct Workload {
  std::string name;
  std::shared_ptr<nn::Module> net;
  std::vector<Task> tasks;
  meta::LossFn loss;
  meta::MetaOptions opts;
};

Tensor mse(const Tensor& a, const Tensor& b) {
  return nn::functional::mse_loss(a, b);
}
Tensor ce(const Tensor& a, const Tensor& y) {
  return nn::functional::cross_entropy(a, y);
}

// How the meta-batch runs: the per-task loop (MetaOptions defaults), task-batched
// (MetaOptions::batch_tasks), or the loop with its tasks on all OpenMP threads at once
// (MetaOptions::task_threads, Note [Tasks on threads]). Same tasks and weights in every mode.
enum class Mode { Loop = 0, Batched = 1, Threaded = 2 };
const char* suffix(Mode m) {
  return m == Mode::Batched ? "_batched" : m == Mode::Threaded ? "_threaded" : "";
}
void set_mode(meta::MetaOptions& o, Mode m) {
  o.batch_tasks = m == Mode::Batched;
  if (m == Mode::Threaded) o.task_threads = omp_get_max_threads();
}

Workload sinusoid(bool first_order, Mode mode) {
  Generator gen(7);
  Workload w;
  w.name = std::string("sinusoid_") + (first_order ? "fo" : "so") + suffix(mode);
  w.net = meta::sinusoid_mlp(40, &gen).ptr();
  meta::SinusoidTasks dist;
  for (int t = 0; t < 25; ++t) {
    auto task = dist.sample_task(gen);
    auto [xs, ys] = task.sample(10, gen, DType::Float32);
    auto [xq, yq] = task.sample(10, gen, DType::Float32);
    w.tasks.push_back({xs, ys, xq, yq});
  }
  w.loss = mse;
  w.opts.inner_lr = 0.01;
  w.opts.first_order = first_order;
  set_mode(w.opts, mode);
  return w;
}

// Batched: the 32 tasks' convolutions as one grouped convolution (Note [Task-batched
// convolution]). The batch norms keep no running statistics in every mode, as PyTorch's side
// (F.batch_norm without them) and as the batched and threaded steps require.
Workload omniglot(bool strided, bool first_order, Mode mode) {
  Generator gen(11);
  Workload w;
  w.name = std::string("omniglot_") + (strided ? "strided_" : "maxpool_") +
           (first_order ? "fo" : "so") + suffix(mode);
  meta::Conv4Options co;
  co.strided = strided;
  co.track_running_stats = false;
  w.net = meta::conv4(co, &gen).ptr();
  const int64_t n_way = 5, k_query = 15;
  std::vector<int64_t> ys_v, yq_v;
  for (int64_t c = 0; c < n_way; ++c) {
    ys_v.push_back(c);
    for (int64_t q = 0; q < k_query; ++q) yq_v.push_back(c);
  }
  const Tensor ys = tensor(ys_v), yq = tensor(yq_v);
  // MG_BENCH_OMNIGLOT_TASKS shortens the meta-batch for profiling runs.
  const char* nt = std::getenv("MG_BENCH_OMNIGLOT_TASKS");
  const int n_tasks = nt && *nt ? std::atoi(nt) : 32;
  for (int t = 0; t < n_tasks; ++t) {
    Tensor xs = randn({n_way, 1, 28, 28}, {}, &gen);
    Tensor xq = randn({n_way * k_query, 1, 28, 28}, {}, &gen);
    w.tasks.push_back({xs, ys, xq, yq});
  }
  w.loss = ce;
  w.opts.inner_lr = 0.4;
  w.opts.first_order = first_order;
  w.opts.classification = true;
  set_mode(w.opts, mode);
  return w;
}

// Resident set and its high-water mark, in MiB, from /proc/self/status.
double proc_status_mb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(f, line))
    if (line.rfind(k, 0) == 0) return std::atof(line.c_str() + k.size()) / 1024.0;
  return 0;
}

double maxrss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// The device MG_BENCH_DEVICE asks for; false, with the benchmark skipped, when it names
// neither "cpu" nor "cuda", or names "cuda" in a build or on a machine without a GPU.
bool bench_device(benchmark::State& state, Device* d) {
  const char* env = std::getenv("MG_BENCH_DEVICE");
  const std::string s = env ? env : "";
  if (s.empty() || s == "cpu") {
    *d = Device::cpu();
    return true;
  }
  if (s != "cuda") {
    state.SkipWithError(("MG_BENCH_DEVICE=" + s + ": expected cpu or cuda").c_str());
    return false;
  }
  if (!cuda_is_available()) {
    state.SkipWithError(
        "MG_BENCH_DEVICE=cuda, but CUDA is not available (a build without CUDA, or no GPU "
        "visible)");
    return false;
  }
  *d = Device::cuda();
  return true;
}

// Moves the model (its parameters, in place) and the tasks to `d`.
void to_device(Workload& w, Device d) {
  if (d.is_cpu()) return;
  w.net->to(d);
  for (Task& t : w.tasks) {
    t.support_x = t.support_x.to(d);
    t.support_y = t.support_y.to(d);
    t.query_x = t.query_x.to(d);
    t.query_y = t.query_y.to(d);
  }
}

void export_workload(const Workload& w, const fs::path& dir) {
  fs::create_directories(dir);
  for (const auto& [n, p] : nn::params_of(*w.net))
    nn::save_npy((dir / ("param." + n + ".npy")).string(), p.detach());
  for (size_t i = 0; i < w.tasks.size(); ++i) {
    const Task& t = w.tasks[i];
    const std::string s = "task" + std::to_string(i) + ".";
    nn::save_npy((dir / (s + "sx.npy")).string(), t.support_x);
    nn::save_npy((dir / (s + "sy.npy")).string(), t.support_y);
    nn::save_npy((dir / (s + "qx.npy")).string(), t.query_x);
    nn::save_npy((dir / (s + "qy.npy")).string(), t.query_y);
  }
}

// Runs body(device) on the device MG_BENCH_DEVICE names. An exception (an op the GPU lacks,
// say) skips this benchmark with its message instead of aborting the whole program.
template <class Body>
void on_bench_device(benchmark::State& state, Body body) {
  Device dev;
  if (!bench_device(state, &dev)) return;
  try {
    body(dev);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// One untimed step, then the timed loop, on `dev` (counters: the file comment).
void time_meta_step(benchmark::State& state, Workload& w, Device dev) {
  to_device(w, dev);
  const bool gpu = dev.is_cuda();
  meta::MAML maml(w.net, w.loss, w.opts);
  const char* exp = std::getenv("MG_BENCH_EXPORT");
  // One untimed step first: it warms the allocator and, when asked, is the step exported.
  if (exp && *exp) {
    const fs::path dir = fs::path(exp) / w.name;
    export_workload(w, dir);
    const meta::StepResult r = maml.meta_step(w.tasks);
    {
      std::ofstream f(dir / "loss.txt");
      f.precision(17);
      f << r.loss << "\n";
    }
    for (const auto& [n, p] : nn::params_of(*w.net))
      nn::save_npy((dir / ("after." + n + ".npy")).string(), p.detach());
  } else {
    maml.meta_step(w.tasks);
  }
  if (gpu) {
    cuda::synchronize();
    cuda::reset_peak_memory_stats();
    cuda::reset_launch_stats();
  }
  const double rss0 = proc_status_mb("VmRSS"), maxrss0 = maxrss_mb();
  // "5" resets VmHWM to the current RSS (Linux >= 4.0), so the peak is this loop's own.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  double loss = 0;
  // On the GPU, the host's own share: until meta_step returns, before the final wait. Close to
  // the whole step, the step is host-bound (dispatch, launches, its one wait for the metrics);
  // far below it, the GPU's work is the step's time.
  double host_s = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const meta::StepResult r = maml.meta_step(w.tasks);
    host_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    loss = r.loss;
    if (gpu) cuda::synchronize();  // the step's queued kernels (Adam's last) are its time
  }
  state.counters["peak_MB"] = proc_status_mb("VmHWM") - rss0;
  state.counters["maxrss_delta_MB"] = maxrss_mb() - maxrss0;
  if (gpu) {
    state.counters["peak_device_MB"] =
        static_cast<double>(cuda::memory_stats().peak_allocated) / (1024.0 * 1024.0);
    // Per meta-step: what the host asks of the GPU (docs/cuda.md, counters).
    const cuda::LaunchStats ls = cuda::launch_stats();
    const double steps = static_cast<double>(state.iterations());
    state.counters["kernels_per_step"] = static_cast<double>(ls.kernels) / steps;
    state.counters["blas_dnn_calls_per_step"] = static_cast<double>(ls.library_calls) / steps;
    state.counters["host_waits_per_step"] = static_cast<double>(ls.host_waits) / steps;
    state.counters["host_ms_per_step"] = 1e3 * host_s / steps;
  }
  state.counters["loss"] = loss;
  // One more step, untimed, under the kernel profiler (tensor/profiler.h): the kernels the
  // host dispatches per meta-step, on either device (on a GPU, each is at least one launch).
  // MG_BENCH_PROFILE=1 also prints the profiler's table of that step.
  profiler::reset();
  {
    profiler::Scope on;
    maml.meta_step(w.tasks);
    if (gpu) cuda::synchronize();
  }
  state.counters["dispatches_per_step"] = static_cast<double>(profiler::total_calls());
  if (const char* p = std::getenv("MG_BENCH_PROFILE"); p && std::string(p) == "1")
    std::fprintf(stderr, "%s (%s): the kernels of one meta-step\n%s\n", w.name.c_str(),
                 dev.str().c_str(), profiler::table(12).c_str());
  profiler::reset();
}

void run_meta_step(benchmark::State& state, Workload w) {
  state.SetLabel(w.name);  // before any SkipWithError: run.py keys results by label
  on_bench_device(state, [&](Device dev) { time_meta_step(state, w, dev); });
}

Mode mode_of(int64_t batched, int64_t threaded) {
  return batched ? Mode::Batched : threaded ? Mode::Threaded : Mode::Loop;
}
void BM_SinusoidMetaStep(benchmark::State& state) {
  run_meta_step(state, sinusoid(state.range(0) == 0, mode_of(state.range(1), state.range(2))));
}
void BM_OmniglotConv4MetaStep(benchmark::State& state) {
  run_meta_step(state, omniglot(state.range(0) == 1, state.range(1) == 0,
                                mode_of(state.range(2), state.range(3))));
}

// The Omniglot MAML step of the max-pool conv-4 (second order unless range(0) = 0) taken
// apart with timers: support forward + loss, inner gradient (create_graph), fast weights,
// query forward + loss, meta-backward, Adam. Counters are ms per meta-step. Not part of the
// comparison (run.py filters it out); it says where the time goes.
void time_phases(benchmark::State& state, Device dev) {
  Workload w = omniglot(false, state.range(0) == 0, Mode::Loop);
  to_device(w, dev);
  meta::MAML maml(w.net, w.loss, w.opts);
  maml.meta_step(w.tasks);  // warm-up
  using clk = std::chrono::steady_clock;
  // On the GPU every phase boundary waits for the queued work, so each phase gets its own
  // time (the waits add a little to the total).
  auto now = [gpu = dev.is_cuda()] {
    if (gpu) cuda::synchronize();
    return clk::now();
  };
  double t_fwd = 0, t_grad = 0, t_fast = 0, t_qfwd = 0, t_back = 0, t_opt = 0;
  auto ms = [](clk::time_point a, clk::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  const bool create_graph = !w.opts.first_order;
  for (auto _ : state) {
    maml.meta_optimizer()->zero_grad();
    const double wt = 1.0 / static_cast<double>(w.tasks.size());
    for (const Task& t : w.tasks) {
      const nn::ParamMap params = nn::params_of(*w.net);
      std::vector<std::string> names;
      std::vector<Tensor> ws;
      for (const auto& [n, p] : params) {
        names.push_back(n);
        ws.push_back(p);
      }
      auto t0 = now();
      Tensor l = w.loss(w.net->forward(t.support_x, params), t.support_y);
      auto t1 = now();
      std::vector<Tensor> gs = grad({l}, ws, {}, std::nullopt, create_graph, true);
      auto t2 = now();
      nn::ParamMap fast = params;
      for (size_t i = 0; i < names.size(); ++i) fast[names[i]] = ws[i] - gs[i] * w.opts.inner_lr;
      auto t3 = now();
      Tensor lq = w.loss(w.net->forward(t.query_x, fast), t.query_y);
      auto t4 = now();
      (lq * wt).backward();
      auto t5 = now();
      t_fwd += ms(t0, t1);
      t_grad += ms(t1, t2);
      t_fast += ms(t2, t3);
      t_qfwd += ms(t3, t4);
      t_back += ms(t4, t5);
    }
    auto t6 = now();
    maml.meta_optimizer()->step();
    t_opt += ms(t6, now());
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["support_fwd_ms"] = t_fwd / n;
  state.counters["inner_grad_ms"] = t_grad / n;
  state.counters["fast_weights_ms"] = t_fast / n;
  state.counters["query_fwd_ms"] = t_qfwd / n;
  state.counters["meta_backward_ms"] = t_back / n;
  state.counters["adam_ms"] = t_opt / n;
}

void BM_OmniglotConv4Phases(benchmark::State& state) {
  on_bench_device(state, [&](Device dev) { time_phases(state, dev); });
}

BENCHMARK(BM_OmniglotConv4Phases)
    ->ArgName("second_order")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Sinusoid: second_order; batched = 1: task-batched; threaded = 1: tasks on threads. Omniglot:
// strided = 1: the MAML paper's conv-4, else the max-pool one; the rest as for the sinusoid.
BENCHMARK(BM_SinusoidMetaStep)
    ->ArgNames({"second_order", "batched", "threaded"})
    ->Args({1, 0, 0})
    ->Args({0, 0, 0})
    ->Args({1, 1, 0})
    ->Args({0, 1, 0})
    ->Args({1, 0, 1})
    ->Args({0, 0, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_OmniglotConv4MetaStep)
    ->ArgNames({"strided", "second_order", "batched", "threaded"})
    ->Args({0, 1, 0, 0})
    ->Args({0, 0, 0, 0})
    ->Args({1, 1, 0, 0})
    ->Args({1, 0, 0, 0})
    ->Args({0, 1, 1, 0})
    ->Args({0, 0, 1, 0})
    ->Args({1, 1, 1, 0})
    ->Args({1, 0, 1, 0})
    ->Args({0, 1, 0, 1})
    ->Args({0, 0, 0, 1})
    ->Args({1, 1, 0, 1})
    ->Args({1, 0, 0, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
