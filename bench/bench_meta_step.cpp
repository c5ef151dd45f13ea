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
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "meta/learner.h"
#include "meta/models.h"
#include "meta/tasks.h"
#include "nn/checkpoint.h"
#include "nn/functional.h"
#include "tensor/creation.h"
#include "tensor/elementwise.h"
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

// batched: the task-batched step (MetaOptions::batch_tasks), same tasks and weights.
Workload sinusoid(bool first_order, bool batched) {
  Generator gen(7);
  Workload w;
  w.name = std::string("sinusoid_") + (first_order ? "fo" : "so") + (batched ? "_batched" : "");
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
  w.opts.batch_tasks = batched;
  return w;
}

Workload omniglot(bool strided, bool first_order) {
  Generator gen(11);
  Workload w;
  w.name =
      std::string("omniglot_") + (strided ? "strided_" : "maxpool_") + (first_order ? "fo" : "so");
  meta::Conv4Options co;
  co.strided = strided;
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

void run_meta_step(benchmark::State& state, Workload w) {
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
  const double rss0 = proc_status_mb("VmRSS"), maxrss0 = maxrss_mb();
  // "5" resets VmHWM to the current RSS (Linux >= 4.0), so the peak is this loop's own.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  double loss = 0;
  for (auto _ : state) {
    const meta::StepResult r = maml.meta_step(w.tasks);
    loss = r.loss;
  }
  state.counters["peak_MB"] = proc_status_mb("VmHWM") - rss0;
  state.counters["maxrss_delta_MB"] = maxrss_mb() - maxrss0;
  state.counters["loss"] = loss;
  state.SetLabel(w.name);
}

void BM_SinusoidMetaStep(benchmark::State& state) {
  run_meta_step(state, sinusoid(state.range(0) == 0, state.range(1) == 1));
}
void BM_OmniglotConv4MetaStep(benchmark::State& state) {
  run_meta_step(state, omniglot(state.range(0) == 1, state.range(1) == 0));
}

// The Omniglot MAML step of the max-pool conv-4 (second order unless range(0) = 0) taken
// apart with timers: support forward + loss, inner gradient (create_graph), fast weights,
// query forward + loss, meta-backward, Adam. Counters are ms per meta-step. Not part of the
// comparison (run.py filters it out); it says where the time goes.
void BM_OmniglotConv4Phases(benchmark::State& state) {
  Workload w = omniglot(false, state.range(0) == 0);
  meta::MAML maml(w.net, w.loss, w.opts);
  maml.meta_step(w.tasks);  // warm-up
  using clk = std::chrono::steady_clock;
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
      auto t0 = clk::now();
      Tensor l = w.loss(w.net->forward(t.support_x, params), t.support_y);
      auto t1 = clk::now();
      std::vector<Tensor> gs = grad({l}, ws, {}, std::nullopt, create_graph, true);
      auto t2 = clk::now();
      nn::ParamMap fast = params;
      for (size_t i = 0; i < names.size(); ++i) fast[names[i]] = ws[i] - gs[i] * w.opts.inner_lr;
      auto t3 = clk::now();
      Tensor lq = w.loss(w.net->forward(t.query_x, fast), t.query_y);
      auto t4 = clk::now();
      (lq * wt).backward();
      auto t5 = clk::now();
      t_fwd += ms(t0, t1);
      t_grad += ms(t1, t2);
      t_fast += ms(t2, t3);
      t_qfwd += ms(t3, t4);
      t_back += ms(t4, t5);
    }
    auto t6 = clk::now();
    maml.meta_optimizer()->step();
    t_opt += ms(t6, clk::now());
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["support_fwd_ms"] = t_fwd / n;
  state.counters["inner_grad_ms"] = t_grad / n;
  state.counters["fast_weights_ms"] = t_fast / n;
  state.counters["query_fwd_ms"] = t_qfwd / n;
  state.counters["meta_backward_ms"] = t_back / n;
  state.counters["adam_ms"] = t_opt / n;
}
BENCHMARK(BM_OmniglotConv4Phases)
    ->ArgName("second_order")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Sinusoid: range(0) = 1: second order, range(1) = 1: task-batched. Omniglot: range(0) = 1:
// strided, range(1) = 1: second order.
BENCHMARK(BM_SinusoidMetaStep)
    ->ArgNames({"second_order", "batched"})
    ->Args({1, 0})
    ->Args({0, 0})
    ->Args({1, 1})
    ->Args({0, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_OmniglotConv4MetaStep)
    ->ArgNames({"strided", "second_order"})
    ->Args({0, 1})
    ->Args({0, 0})
    ->Args({1, 1})
    ->Args({1, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
