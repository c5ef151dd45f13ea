// metagrad-train: flags and presets, the training loop (validation, metrics, progress,
// checkpoints, exact resume, SIGINT) and evaluation with 95% confidence intervals.
#include "tools/trainer/trainer.h"

#include <fcntl.h>
#include <metagrad/metagrad.h>
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <type_traits>

namespace metagrad::trainer {
namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- presets ------------------------------------------------------------------------------

namespace {

Config sinusoid_preset(const std::string& name, const std::string& algo) {
  // Finn et al. 2017, section 5.1: K = 10 support points (and 10 query), one inner step of
  // lr 0.01, 25 tasks per meta-batch, Adam 1e-3, 70,000 iterations, a 1-40-40-1 ReLU MLP;
  // evaluated after 1 and 10 steps.
  Config c;
  c.preset = name;
  c.algo = algo;
  c.dataset = "sinusoid";
  c.shots = 10;
  c.query = 10;
  c.inner_steps = 1;
  c.inner_steps_test = 10;
  c.inner_lr = 0.01;
  c.meta_batch = 25;
  c.meta_lr = 1e-3;
  c.iterations = 70000;
  c.batch_tasks = true;  // the same meta-gradient as the per-task loop, several times faster
  // Meta-SGD (Li et al. 2017) learns its rates for the one step it trains and is evaluated
  // after one step: its rates, far above MAML's 0.01, diverge over 10 steps.
  if (algo == "metasgd") c.inner_steps_test = 1;
  return c;
}

Config omniglot_preset(const std::string& name, const std::string& algo, int ways) {
  Config c;
  c.preset = name;
  c.algo = algo;
  c.dataset = "omniglot";
  c.ways = ways;
  c.shots = 1;
  c.query = 15;
  c.meta_lr = 1e-3;
  c.iterations = 60000;
  c.model = "strided";
  c.bn = "batch";
  c.val_every = 1000;
  c.val_tasks = 100;
  if (ways == 5) {
    // MAML paper, Omniglot 5-way: 1 inner step of lr 0.4 in training, 3 at test, 32 tasks.
    c.inner_steps = 1;
    c.inner_steps_test = 3;
    c.inner_lr = 0.4;
    c.meta_batch = 32;
  } else {
    // 20-way: 5 inner steps of lr 0.1 (train and test), 16 tasks.
    c.inner_steps = 5;
    c.inner_steps_test = 5;
    c.inner_lr = 0.1;
    c.meta_batch = 16;
  }
  return c;
}

}  // namespace

std::vector<std::string> preset_names() {
  return {"maml-sinusoid",        "anil-sinusoid",        "metasgd-sinusoid",
          "maml-omniglot-5w1s",   "fomaml-omniglot-5w1s", "maml-omniglot-20w1s",
          "reptile-omniglot-5w1s"};
}

Config preset(const std::string& name) {
  if (name.empty()) return Config{};
  if (name == "maml-sinusoid") return sinusoid_preset(name, "maml");
  if (name == "anil-sinusoid") return sinusoid_preset(name, "anil");
  if (name == "metasgd-sinusoid") return sinusoid_preset(name, "metasgd");
  if (name == "maml-omniglot-5w1s") return omniglot_preset(name, "maml", 5);
  if (name == "fomaml-omniglot-5w1s") return omniglot_preset(name, "fomaml", 5);
  if (name == "maml-omniglot-20w1s") return omniglot_preset(name, "maml", 20);
  if (name == "reptile-omniglot-5w1s") {
    // Reptile (Nichol et al. 2018), Omniglot 5-way 1-shot, as far as our Reptile matches it:
    // 5 inner steps (paper: 5 with Adam lr 1e-3 on minibatches of 10; ours: plain SGD on the
    // whole task, lr 0.1), meta-batch 5, outer step 1.0 (paper: annealed linearly to 0; ours
    // constant), 100,000 iterations, 50 inner steps at test.
    Config c = omniglot_preset(name, "reptile", 5);
    c.inner_steps = 5;
    c.inner_steps_test = 50;
    c.inner_lr = 0.1;
    c.meta_batch = 5;
    c.meta_lr = 1.0;
    c.iterations = 100000;
    return c;
  }
  std::string all;
  for (const auto& n : preset_names()) all += (all.empty() ? "" : ", ") + n;
  throw UsageError("--preset: unknown preset '" + name + "' (known: " + all + ")");
}

namespace {
void check_choice(const std::string& flag, const std::string& v,
                  const std::vector<std::string>& ok) {
  for (const auto& o : ok)
    if (v == o) return;
  std::string all;
  for (const auto& o : ok) all += (all.empty() ? "" : "|") + o;
  throw UsageError(flag + ": invalid value '" + v + "' (expected " + all + ")");
}
void check_positive(const std::string& flag, int64_t v, bool allow_zero = false) {
  if (!(allow_zero ? v >= 0 : v > 0))
    throw UsageError(flag + ": must be " + (allow_zero ? "non-negative" : "positive") + ", got " +
                     std::to_string(v));
}
// Rates: inf or nan would pass a plain comparison (inf > 0) and only show up as a diverged run.
void check_positive_real(const std::string& flag, double v, bool allow_zero = false) {
  std::ostringstream got;
  got << std::setprecision(17) << v;
  if (!std::isfinite(v)) throw UsageError(flag + ": must be a finite number, got " + got.str());
  if (!(allow_zero ? v >= 0 : v > 0))
    throw UsageError(flag + ": must be " + (allow_zero ? "non-negative" : "positive") + ", got " +
                     got.str());
}
}  // namespace

void validate(const Config& c) {
  check_choice("--algo", c.algo, {"maml", "fomaml", "reptile", "metasgd", "anil"});
  check_choice("--dataset", c.dataset, {"sinusoid", "omniglot"});
  check_choice("--model", c.model, {"strided", "maxpool"});
  check_choice("--bn", c.bn, {"batch", "running"});
  check_choice("--format", c.format, {"csv", "jsonl"});
  check_choice("--dtype", c.dtype, {"float32", "float64"});
  check_choice("--device", c.device, {"cpu", "cuda"});
  if (c.device == "cuda" && !cuda_is_available())
    throw UsageError(
        "--device cuda: no CUDA device is visible (or this build has no CUDA support); use "
        "--device cpu");
  check_positive("--ways", c.ways);
  check_positive("--shots", c.shots);
  check_positive("--query", c.query);
  check_positive("--inner-steps", c.inner_steps, c.algo != "reptile");
  check_positive("--inner-steps-test", c.inner_steps_test, true);
  check_positive_real("--inner-lr", c.inner_lr, true);
  check_positive("--meta-batch", c.meta_batch);
  check_positive_real("--meta-lr", c.meta_lr);
  check_positive("--iterations", c.iterations, true);
  check_positive("--threads", c.threads, true);
  check_positive("--task-threads", c.task_threads);
  check_positive("--val-every", c.val_every, true);
  check_positive("--val-tasks", c.val_tasks);
  check_positive("--eval-tasks", c.eval_tasks, true);
  check_positive("--log-every", c.log_every);
  check_positive("--checkpoint-every", c.checkpoint_every, true);
  // -1 (the default) keeps every alphabet; 0 or another negative value is a typo, not "all".
  if (c.max_alphabets != -1 && c.max_alphabets <= 0)
    throw UsageError("--max-alphabets: must be positive (or -1: all), got " +
                     std::to_string(c.max_alphabets));
  if (c.out.empty()) throw UsageError("--out: must not be empty");
}

std::string to_json(const Config& c) {
  json j = {{"preset", c.preset},
            {"algo", c.algo},
            {"dataset", c.dataset},
            {"data_path", c.data_path},
            {"ways", c.ways},
            {"shots", c.shots},
            {"query", c.query},
            {"inner_steps", c.inner_steps},
            {"inner_steps_test", c.inner_steps_test},
            {"inner_lr", c.inner_lr},
            {"meta_batch", c.meta_batch},
            {"meta_lr", c.meta_lr},
            {"iterations", c.iterations},
            {"device", c.device},
            {"seed", c.seed},
            {"threads", c.threads},
            {"model", c.model},
            {"bn", c.bn},
            {"val_every", c.val_every},
            {"val_tasks", c.val_tasks},
            {"eval_tasks", c.eval_tasks},
            {"out", c.out},
            {"log_every", c.log_every},
            {"checkpoint_every", c.checkpoint_every},
            {"format", c.format},
            {"dtype", c.dtype},
            {"max_alphabets", c.max_alphabets},
            {"batch_tasks", c.batch_tasks},
            {"task_threads", c.task_threads},
            {"profile", c.profile}};
  return j.dump();
}

Config config_from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw UsageError(std::string("checkpoint: its config is not valid JSON: ") + e.what());
  }
  if (!j.is_object())
    throw UsageError("checkpoint: its config is not a JSON object: " + j.dump().substr(0, 80));
  Config c;
  // Each key, when present, must hold its field's JSON type: an integer within the field's
  // range for the counts (1e10 or 3.7 for "ways" is corruption, not a value to convert), a
  // string, a boolean; a missing key keeps the default (configs of older versions).
  auto get = [&](const char* k, auto& field) {
    if (!j.contains(k)) return;
    const json& v = j.at(k);
    using T = std::remove_reference_t<decltype(field)>;
    auto bad = [&](const std::string& expected) {
      throw UsageError(std::string("checkpoint: config key '") + k + "' is " + v.dump() +
                       ", expected " + expected);
    };
    if constexpr (std::is_same_v<T, std::string>) {
      if (!v.is_string()) bad("a string");
      field = v.get<std::string>();
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) bad("true or false");
      field = v.get<bool>();
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) bad("a number");
      field = v.get<T>();
    } else {
      static_assert(std::is_integral_v<T>);
      const std::string range = "an integer in [" + std::to_string(std::numeric_limits<T>::min()) +
                                ", " + std::to_string(std::numeric_limits<T>::max()) + "]";
      if (v.is_number_unsigned()) {
        const auto u = v.get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) bad(range);
        field = static_cast<T>(u);
      } else if (v.is_number_integer()) {
        const auto i = v.get<int64_t>();
        if (std::is_unsigned_v<T> ? i < 0
                                  : (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                                     i > static_cast<int64_t>(std::numeric_limits<T>::max())))
          bad(range);
        field = static_cast<T>(i);
      } else {
        bad(range);
      }
    }
  };
  get("preset", c.preset);
  get("algo", c.algo);
  get("dataset", c.dataset);
  get("data_path", c.data_path);
  get("ways", c.ways);
  get("shots", c.shots);
  get("query", c.query);
  get("inner_steps", c.inner_steps);
  get("inner_steps_test", c.inner_steps_test);
  get("inner_lr", c.inner_lr);
  get("meta_batch", c.meta_batch);
  get("meta_lr", c.meta_lr);
  get("iterations", c.iterations);
  get("device", c.device);
  get("seed", c.seed);
  get("threads", c.threads);
  get("model", c.model);
  get("bn", c.bn);
  get("val_every", c.val_every);
  get("val_tasks", c.val_tasks);
  get("eval_tasks", c.eval_tasks);
  get("out", c.out);
  get("log_every", c.log_every);
  get("checkpoint_every", c.checkpoint_every);
  get("format", c.format);
  get("dtype", c.dtype);
  get("max_alphabets", c.max_alphabets);
  get("batch_tasks", c.batch_tasks);
  get("task_threads", c.task_threads);
  get("profile", c.profile);
  return c;
}

// ---- the problem: model, loss and task streams --------------------------------------------

namespace {

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_sigint(int) {
  g_interrupted = 1;
}

// Independent stream seeds from the one --seed (splitmix64).
uint64_t derive_seed(uint64_t seed, uint64_t k) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (k + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
enum Stream : uint64_t { kInit = 0, kTrain = 1, kVal = 2, kTest = 3 };

std::string omniglot_root(const Config& c) {
  std::string root = c.data_path;
  if (root.empty()) {
    const char* env = std::getenv("METAGRAD_OMNIGLOT");
    root = env && *env ? env : MG_DEFAULT_OMNIGLOT;
  }
  if (!fs::is_directory(fs::path(root) / "images_background") ||
      !fs::is_directory(fs::path(root) / "splits"))
    throw UsageError("--data-path: no Omniglot at '" + root +
                     "' (expected images_background/, images_evaluation/ and splits/ there); "
                     "pass --data-path or set METAGRAD_OMNIGLOT");
  return root;
}

// Whether meta-steps run task-batched (MetaOptions::batch_tasks): asked for, the MAML family
// (Reptile adapts task by task), and a model that takes stacked weights: the sinusoid MLP, or
// the conv-4 with batch-statistics batch norm (built then without running statistics).
bool batches_tasks(const Config& c) {
  return c.batch_tasks && c.algo != "reptile" && (c.dataset == "sinusoid" || c.bn == "batch");
}

// The tasks run at once per meta-step (MetaOptions::task_threads, Note [Tasks on threads]):
// asked for, on the CPU, not task-batched, and a model whose training forward writes no
// buffers: the sinusoid MLP, or the conv-4 with batch-statistics batch norm (built then
// without running statistics, as for batches_tasks). 1 otherwise.
int task_threads(const Config& c) {
  const bool applies =
      c.device == "cpu" && !batches_tasks(c) && (c.dataset == "sinusoid" || c.bn == "batch");
  return applies ? c.task_threads : 1;
}

// Everything a run needs besides the learner: the model, the loss and where tasks come from.
class Problem {
 public:
  Problem(const Config& c, bool need_train, bool need_val, bool need_test) : c_(c) {
    dtype_ = c.dtype == "float64" ? DType::Float64 : DType::Float32;
    device_ = c.device == "cuda" ? Device::cuda() : Device::cpu();
    Generator init(derive_seed(c.seed, kInit));
    if (c.dataset == "sinusoid") {
      model_ = meta::sinusoid_mlp(40, &init).ptr();
      loss_ = [](const Tensor& o, const Tensor& y) { return nn::functional::mse_loss(o, y); };
      train_gen_ = std::make_unique<Generator>(derive_seed(c.seed, kTrain));
    } else {
      const std::string root = omniglot_root(c);
      meta::Conv4Options o;
      o.n_way = c.ways;
      o.strided = c.model == "strided";
      o.bn_mode = c.bn == "batch" ? nn::BNMode::BatchStats : nn::BNMode::RunningStats;
      // In batch mode running statistics are never read: none are kept, so that task-batched
      // and task-threaded steps (which refuse layers that write buffers) can take the model,
      // and a run resumes whichever of them it asks for.
      o.track_running_stats = c.bn != "batch";
      model_ = meta::conv4(o, &init).ptr();
      loss_ = [](const Tensor& o, const Tensor& y) { return nn::functional::cross_entropy(o, y); };
      classification_ = true;
      if (need_train)
        train_ds_ =
            std::make_unique<meta::OmniglotDataset>(root, "train", 28, true, c.max_alphabets);
      if (need_val)
        val_ds_ = std::make_unique<meta::OmniglotDataset>(root, "val", 28, true, c.max_alphabets);
      if (need_test)
        test_ds_ = std::make_unique<meta::OmniglotDataset>(root, "test", 28, true, c.max_alphabets);
      // The samplers' checks (enough classes for --ways, enough images for --shots + --query)
      // run now, before training, not when the first validation or the final evaluation
      // would meet them after hours of training; they are usage errors, naming the flags.
      for (const auto& [split, ds] : {std::pair{"train", train_ds_.get()},
                                      {"val", val_ds_.get()},
                                      {"test", test_ds_.get()}}) {
        if (!ds) continue;
        try {
          meta::EpisodeSampler check(*ds, c.ways, c.shots, c.query, 0);
        } catch (const Error& e) {
          throw UsageError(
              std::string("--ways/--shots/--query do not fit the ") + split + " split" +
              (c.max_alphabets > 0 ? " (--max-alphabets " + std::to_string(c.max_alphabets) + ")"
                                   : "") +
              ": " + e.what());
        }
      }
      if (train_ds_)
        train_sampler_ = std::make_unique<meta::EpisodeSampler>(
            *train_ds_, c.ways, c.shots, c.query, derive_seed(c.seed, kTrain));
    }
    model_->to(dtype_);
    model_->to(device_);  // tasks are drawn on the CPU (same numbers) and moved per task
  }

  std::shared_ptr<nn::Module> model() const { return model_; }
  const meta::LossFn& loss() const { return loss_; }
  bool classification() const { return classification_; }

  std::vector<meta::Task> train_batch() {
    std::vector<meta::Task> tasks;
    for (int i = 0; i < c_.meta_batch; ++i)
      tasks.push_back(train_sampler_ ? episode(*train_sampler_) : sinusoid(*train_gen_));
    return tasks;
  }
  GeneratorState train_state() const {
    return train_sampler_ ? train_sampler_->state() : train_gen_->get_state();
  }
  void set_train_state(const GeneratorState& s) {
    if (train_sampler_)
      train_sampler_->set_state(s);
    else
      train_gen_->set_state(s);
  }

  // A fresh stream of validation (or test) tasks: every call replays the same tasks, so
  // validation curves compare like with like and evaluations are repeatable.
  std::function<meta::Task(int)> task_stream(bool test) {
    const uint64_t seed = derive_seed(c_.seed, test ? kTest : kVal);
    if (!classification_) {
      auto gen = std::make_shared<Generator>(seed);
      return [this, gen](int) { return sinusoid(*gen); };
    }
    const meta::ImageDataset& ds = test ? *test_ds_ : *val_ds_;
    auto sampler = std::make_shared<meta::EpisodeSampler>(ds, c_.ways, c_.shots, c_.query, seed);
    return [this, sampler](int) { return episode(*sampler); };
  }

 private:
  meta::Task sinusoid(Generator& g) const {
    auto task = dist_.sample_task(g);
    auto [xs, ys] = task.sample(c_.shots, g, dtype_);
    auto [xq, yq] = task.sample(c_.query, g, dtype_);
    return {xs.to(device_), ys.to(device_), xq.to(device_), yq.to(device_)};
  }
  meta::Task episode(meta::EpisodeSampler& s) const {
    meta::Episode e = s.sample();
    return {e.support_x.to(dtype_).to(device_), e.support_y.to(device_),
            e.query_x.to(dtype_).to(device_), e.query_y.to(device_)};
  }

  Config c_;
  DType dtype_;
  Device device_;
  std::shared_ptr<nn::Module> model_;
  meta::LossFn loss_;
  bool classification_ = false;
  meta::SinusoidTasks dist_;
  std::unique_ptr<Generator> train_gen_;
  std::unique_ptr<meta::OmniglotDataset> train_ds_, val_ds_, test_ds_;
  std::unique_ptr<meta::EpisodeSampler> train_sampler_;
};

std::unique_ptr<meta::MetaLearner> make_learner(const Config& c, const Problem& p) {
  meta::MetaOptions o;
  o.inner_steps = c.inner_steps;
  o.inner_lr = c.inner_lr;
  o.first_order = c.algo == "fomaml";
  o.meta_lr = c.algo == "reptile" ? 1e-3 : c.meta_lr;  // Reptile uses meta_lr as its step
  o.classification = p.classification();
  o.batch_tasks = batches_tasks(c);
  o.task_threads = task_threads(c);
  if (c.algo == "maml" || c.algo == "fomaml")
    return std::make_unique<meta::MAML>(p.model(), p.loss(), o);
  if (c.algo == "anil") return std::make_unique<meta::ANIL>(p.model(), p.loss(), o, "head");
  if (c.algo == "metasgd") return std::make_unique<meta::MetaSGD>(p.model(), p.loss(), o);
  return std::make_unique<meta::Reptile>(p.model(), p.loss(), o, c.meta_lr);
}

// ---- checkpoints ----------------------------------------------------------------------------

std::string resolve_checkpoint(const std::string& path) {
  fs::path p(path);
  if (fs::is_directory(p)) p /= "last.safetensors";
  if (!fs::is_regular_file(p))
    throw UsageError("no checkpoint at '" + p.string() +
                     "' (give a .safetensors file or a run "
                     "directory holding last.safetensors)");
  return p.string();
}

// Reads the checkpoint at `path` (a file or run directory); a missing or damaged file is a
// usage error (exit 2, before anything runs), named after the flag that gave it.
nn::Checkpoint read_checkpoint(const char* flag, const std::string& path) {
  std::string file;
  try {
    file = resolve_checkpoint(path);
  } catch (const UsageError& e) {
    throw UsageError(std::string(flag) + ": " + e.what());
  }
  try {
    return nn::load_checkpoint(file);
  } catch (const Error& e) {
    throw UsageError(std::string(flag) + ": cannot read '" + file + "': " + e.what());
  }
}

struct Resumed {
  int64_t iteration = 0;
  double elapsed = 0;
};

json state_json(const GeneratorState& s) {
  return {{"seed", s.seed}, {"offset", s.offset}};
}
GeneratorState state_from(const json& j) {
  auto field = [&](const char* k) {
    if (!j.is_object() || !j.contains(k) || !j.at(k).is_number_unsigned())
      throw UsageError("checkpoint: generator state " + j.dump() +
                       " needs a non-negative integer '" + k + "'");
    return j.at(k).get<uint64_t>();
  };
  return {field("seed"), field("offset")};
}

// The checkpoint's "iteration": all of the string a non-negative integer ("12abc" or "-50"
// is a damaged file, not iteration 12 or -50).
int64_t parse_iteration(const std::string& s) {
  int64_t v = -1;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < 0)
    throw UsageError("checkpoint: metadata 'iteration' is '" + s +
                     "', expected a non-negative integer");
  return v;
}

void save(const std::string& path, const Config& c, meta::MetaLearner& learner,
          const Problem& problem, int64_t iteration, double elapsed) {
  // Reptile has no meta-optimizer: its update is a plain step toward the adapted weights.
  optim::OptimizerState os;
  if (learner.meta_optimizer()) os = learner.meta_optimizer()->state_dict();
  json scalars = json::object();
  for (const auto& [k, v] : os.scalars) scalars[k] = v;
  nn::Metadata md{{"config", to_json(c)},
                  {"iteration", std::to_string(iteration)},
                  {"elapsed_s", json(elapsed).dump()},
                  {"algo", learner.name()},
                  {"train_generator", state_json(problem.train_state()).dump()},
                  {"default_generator", state_json(default_generator().get_state()).dump()},
                  {"optim_scalars", scalars.dump()},
                  {"format", "metagrad-train 1"}};
  nn::save_checkpoint(path,
                      {{"model", learner.model().state_dict()},
                       {"optim", os.tensors},
                       {"extra", learner.extra_state()}},
                      md);
}

// Loads the learner's state (and, when `problem` is given, the task stream's) from `ck`.
Resumed restore(const nn::Checkpoint& ck, meta::MetaLearner& learner, Problem* problem) {
  auto group = [&](const char* g) {
    auto it = ck.groups.find(g);
    return it == ck.groups.end() ? nn::ParamMap{} : it->second;
  };
  // Checkpoints of batch-mode batch norm written before session 15 may hold running statistics
  // the model no longer keeps (never read in that mode): those alone are left out.
  nn::ParamMap model_state = group("model");
  const nn::ParamMap own = learner.model().state_dict();
  for (auto it = model_state.begin(); it != model_state.end();) {
    const std::string& k = it->first;
    const std::string leaf = k.substr(k.rfind('.') + 1);
    const bool stats =
        leaf == "running_mean" || leaf == "running_var" || leaf == "num_batches_tracked";
    it = stats && !own.count(k) ? model_state.erase(it) : std::next(it);
  }
  learner.model().load_state_dict(model_state);
  const nn::ParamMap extra = group("extra");
  if (!extra.empty()) learner.load_extra_state(extra);
  Resumed r;
  try {
    optim::OptimizerState os;
    os.tensors = group("optim");
    const json scalars = json::parse(ck.metadata.at("optim_scalars"));
    for (auto kv = scalars.begin(); kv != scalars.end(); ++kv)
      os.scalars[kv.key()] = kv.value().get<double>();
    if (learner.meta_optimizer()) learner.meta_optimizer()->load_state_dict(os);
    r.iteration = parse_iteration(ck.metadata.at("iteration"));
    const json elapsed = json::parse(ck.metadata.at("elapsed_s"));
    if (!elapsed.is_number())
      throw UsageError("checkpoint: metadata 'elapsed_s' is " + elapsed.dump() +
                       ", expected a number");
    r.elapsed = elapsed.get<double>();
    if (problem) {
      problem->set_train_state(state_from(json::parse(ck.metadata.at("train_generator"))));
      default_generator().set_state(state_from(json::parse(ck.metadata.at("default_generator"))));
    }
  } catch (const Error&) {
    throw;
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    throw UsageError(std::string("checkpoint: missing or bad metadata: ") + e.what());
  }
  return r;
}

// ---- metrics, progress, plot ----------------------------------------------------------------

// Writes a run file whole or not at all (nn::write_file_atomically: temp file, fsync, rename).
void write_file(const fs::path& path, const std::string& text) {
  nn::write_file_atomically(path.string(), text, "metagrad-train");
}

struct Row {
  int64_t iteration = 0;
  double time = 0, train_loss = NAN, train_acc = NAN, val_loss = NAN, val_acc = NAN;
};

// Empty for NaN (not measured) and for any non-finite value (a diverged validation, which the
// trainer warns about): the metrics file holds finite numbers or nothing.
std::string num(double v) {
  if (!std::isfinite(v)) return "";
  std::ostringstream s;
  s << std::setprecision(8) << v;
  return s.str();
}

class Metrics {
 public:
  Metrics(const fs::path& dir, const std::string& format, int64_t keep_until, bool resume)
      : path_(dir / (format == "csv" ? "metrics.csv" : "metrics.jsonl")), csv_(format == "csv") {
    if (resume) rows_ = read(keep_until);
    // Rewrite what is kept: rows logged after the checkpoint we resume from are replayed.
    // Atomically, so that a failure here leaves the previous file whole.
    std::string text = csv_ ? "iteration,time,train_loss,train_acc,val_loss,val_acc\n" : "";
    for (const Row& r : rows_) text += line(r);
    write_file(path_, text);
  }
  // Appends one row. A row torn by a crash is dropped when the run resumes (read() skips it);
  // an error now (a full disk) stops the run rather than losing rows without a word.
  void add(const Row& r) {
    rows_.push_back(r);
    std::ofstream f(path_, std::ios::app);
    f << line(r);
    f.close();
    if (!f) throw Error("[metagrad-train] cannot append to " + path_.string());
  }
  const std::vector<Row>& rows() const { return rows_; }
  const fs::path& path() const { return path_; }

 private:
  std::string line(const Row& r) const {
    if (csv_)
      return std::to_string(r.iteration) + "," + num(r.time) + "," + num(r.train_loss) + "," +
             num(r.train_acc) + "," + num(r.val_loss) + "," + num(r.val_acc) + "\n";
    auto v = [](double x) { return std::isnan(x) ? json(nullptr) : json(x); };
    json j = {{"iteration", r.iteration},      {"time", r.time},
              {"train_loss", v(r.train_loss)}, {"train_acc", v(r.train_acc)},
              {"val_loss", v(r.val_loss)},     {"val_acc", v(r.val_acc)}};
    return j.dump() + "\n";
  }
  std::vector<Row> read(int64_t keep_until) const {
    std::vector<Row> rows;
    std::ifstream f(path_);
    std::string s;
    auto d = [](const std::string& t) { return t.empty() ? NAN : std::stod(t); };
    while (std::getline(f, s)) {
      if (s.empty() || s[0] == 'i') continue;
      Row r;
      try {
        if (csv_) {
          // Six cells, so five commas (getline drops an empty last cell); fewer: a torn line.
          if (std::count(s.begin(), s.end(), ',') != 5) continue;
          std::vector<std::string> cells;
          std::stringstream ss(s);
          std::string cell;
          while (std::getline(ss, cell, ',')) cells.push_back(cell);
          cells.resize(6);
          r = {std::stoll(cells[0]), d(cells[1]), d(cells[2]),
               d(cells[3]),          d(cells[4]), d(cells[5])};
        } else {
          json j = json::parse(s);
          auto g = [&](const char* k) { return j.at(k).is_null() ? NAN : j.at(k).get<double>(); };
          r = {j.at("iteration").get<int64_t>(),
               g("time"),
               g("train_loss"),
               g("train_acc"),
               g("val_loss"),
               g("val_acc")};
        }
      } catch (const std::exception&) {
        continue;  // a torn last line from a killed run
      }
      if (r.iteration <= keep_until) rows.push_back(r);
    }
    return rows;
  }

  fs::path path_;
  bool csv_;
  std::vector<Row> rows_;
};

std::string hms(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const auto t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(t / 60),
                  static_cast<long long>(t % 60));
  return buf;
}

bool on_path(const std::string& prog) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && access((fs::path(dir) / prog).c_str(), X_OK) == 0) return true;
  return false;
}

// Runs `argv` (looked up on PATH) in the directory `dir`, stdout and stderr discarded, and
// waits for it; true when it exited with status 0. No shell: --out (or a checkpoint's
// config.out) may hold any character, quotes and semicolons included, and must never be
// read as a command.
bool run_in(const fs::path& dir, const std::vector<std::string>& argv) {
  // Everything the child needs is prepared before fork(): a child of a multi-threaded process
  // may only make async-signal-safe calls until it execs.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string where = dir.string();
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    if (chdir(where.c_str()) == 0) execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Writes curve.dat and curve.gp into the run directory and renders curve.png with gnuplot.
void plot(const fs::path& dir, const std::vector<Row>& rows, bool classification,
          int inner_steps_test, std::ostream& err) {
  {
    // Two blocks (gnuplot's "index"): training rows, then validation rows, so that the
    // validation points join into a line although most rows have none.
    std::ostringstream d;
    auto v = [](double x) { return std::isnan(x) ? std::string("NaN") : num(x); };
    d << "# iteration train_loss train_acc\n";
    for (const Row& r : rows)
      if (!std::isnan(r.train_loss))
        d << r.iteration << " " << v(r.train_loss) << " " << v(r.train_acc) << "\n";
    d << "\n\n# iteration val_loss val_acc\n";
    bool any_val = false;
    for (const Row& r : rows)
      if (!std::isnan(r.val_loss)) {
        d << r.iteration << " " << v(r.val_loss) << " " << v(r.val_acc) << "\n";
        any_val = true;
      }
    if (!any_val) d << "NaN NaN NaN\n";  // keeps index 1 present for the script
    write_file(dir / "curve.dat", d.str());
  }
  {
    std::ostringstream g;
    const std::string val = "'validation (" + std::to_string(inner_steps_test) + " test steps)'";
    g << "# Learning curve of a metagrad-train run: gnuplot curve.gp -> curve.png\n"
      << "set terminal png size 1000," << (classification ? 800 : 500) << "\n"
      << "set output 'curve.png'\nset grid\nset key top right\nset xlabel 'iteration'\n";
    if (classification) g << "set multiplot layout 2,1\n";
    g << "set ylabel 'query loss (after adaptation)'\nset logscale y\n"
      << "plot 'curve.dat' index 0 using 1:2 with lines title 'train', "
      << "'curve.dat' index 1 using 1:2 with linespoints title " << val << "\n";
    if (classification)
      g << "unset logscale y\nset ylabel 'query accuracy'\n"
        << "plot 'curve.dat' index 0 using 1:3 with lines title 'train', "
        << "'curve.dat' index 1 using 1:3 with linespoints title " << val << "\nunset multiplot\n";
    write_file(dir / "curve.gp", g.str());
  }
  if (!on_path("gnuplot")) {
    err << "plot: gnuplot is not on PATH; skipped rendering (curve.gp and curve.dat are in "
        << dir.string() << ")\n";
    return;
  }
  if (run_in(dir, {"gnuplot", "curve.gp"}))
    err << "plot: " << (dir / "curve.png").string() << "\n";
  else
    err << "plot: gnuplot failed; curve.gp and curve.dat are in " << dir.string() << "\n";
}

// ---- evaluation -----------------------------------------------------------------------------

// "+- 0.0123", or "+- n/a" where one task gives no interval (meta::summarize's NaN).
std::string plus_minus(double ci95, double scale, int precision, const char* unit) {
  if (std::isnan(ci95)) return "+- n/a";
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << "+- " << scale * ci95 << unit;
  return s.str();
}

void evaluate_and_print(const Config& c, meta::MetaLearner& learner, Problem& problem,
                        std::ostream& out, std::ostream* also = nullptr) {
  if (c.eval_tasks <= 0) return;
  std::vector<int> steps;
  if (!problem.classification()) steps = {0, 1, 10};
  if (std::find(steps.begin(), steps.end(), c.inner_steps_test) == steps.end())
    steps.push_back(c.inner_steps_test);
  for (int k : steps) {
    auto stream = problem.task_stream(/*test=*/true);  // the same tasks for every k
    meta::EvalResult r = meta::evaluate(learner, stream, c.eval_tasks, k);
    std::ostringstream s;
    s << std::fixed;
    const std::string when = k == 0 ? "before adaptation (0 steps)"
                                    : "after " + std::to_string(k) + (k == 1 ? " step" : " steps");
    if (problem.classification())
      s << "test accuracy " << when << ": " << std::setprecision(1) << 100 * r.accuracy.mean << "% "
        << plus_minus(r.accuracy.ci95, 100, 1, "%") << " (" << r.accuracy.n
        << (r.accuracy.n == 1 ? " task)" : " tasks)");
    else if (std::isfinite(r.loss.mean))
      s << "test MSE " << when << ": " << std::setprecision(4) << r.loss.mean << " "
        << plus_minus(r.loss.ci95, 1, 4, "") << " (" << r.loss.n
        << (r.loss.n == 1 ? " task)" : " tasks)");
    else  // said plainly, not "-nan +- n/a"
      s << "test MSE " << when << ": " << (std::isnan(r.loss.mean) ? "nan" : "inf") << " ("
        << r.loss.n << (r.loss.n == 1 ? " task" : " tasks")
        << "; the adapted models diverged: fewer --inner-steps-test or a smaller --inner-lr)";
    out << s.str() << std::endl;
    if (also) *also << s.str() << std::endl;
  }
}

double validate_now(const Config& c, meta::MetaLearner& learner, Problem& problem, double* acc) {
  meta::EvalResult r =
      meta::evaluate(learner, problem.task_stream(false), c.val_tasks, c.inner_steps_test);
  *acc = r.accuracy.n ? r.accuracy.mean : NAN;
  return r.loss.mean;
}

// ---- train ----------------------------------------------------------------------------------

int train(Config c, const std::optional<nn::Checkpoint>& ck, std::ostream& out, std::ostream& err) {
  if (c.threads > 0) omp_set_num_threads(c.threads);
  const bool classification = c.dataset == "omniglot";
  // Errors while setting up (too many ways for the split, a checkpoint that does not fit the
  // model) are the caller's to fix: usage errors, exit code 2.
  std::unique_ptr<Problem> holder;
  std::unique_ptr<meta::MetaLearner> learner;
  Resumed start;
  try {
    holder = std::make_unique<Problem>(c, true, classification && c.val_every > 0,
                                       classification && c.eval_tasks > 0);
    learner = make_learner(c, *holder);
    if (ck) start = restore(*ck, *learner, holder.get());
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  Problem& problem = *holder;
  if (ck && start.iteration >= c.iterations) {
    err << "metagrad-train: the checkpoint is at iteration " << start.iteration
        << ", already at or past --iterations " << c.iterations
        << ": nothing to train (raise --iterations to continue)\n";
    return 0;
  }
  const fs::path dir(c.out);
  fs::create_directories(dir);
  if (!ck) {
    // A fresh run (here with --overwrite, or into a directory without a run): the previous
    // run's outputs that this one may not rewrite would otherwise stay and mislead.
    for (const char* f : {"last.safetensors", "metrics.csv", "metrics.jsonl", "eval.txt",
                          "kernels.txt", "curve.dat", "curve.gp", "curve.png"}) {
      std::error_code ec;  // whatever cannot be removed is reported when it is written
      fs::remove(dir / f, ec);
    }
  }
  Metrics metrics(dir, c.format, start.iteration, ck.has_value());
  const std::string ckpt = (dir / "last.safetensors").string();
  write_file(dir / "config.json", json::parse(to_json(c)).dump(2) + "\n");
  err << "metagrad-train: " << learner->name() << " on " << c.dataset
      << (classification
              ? " " + std::to_string(c.ways) + "-way " + std::to_string(c.shots) + "-shot"
              : "")
      << ", " << c.iterations << " iterations, meta-batch " << c.meta_batch << ", "
      << omp_get_max_threads() << " threads -> " << dir.string()
      << (ck ? " (resumed at iteration " + std::to_string(start.iteration) + ")" : "") << "\n";

  g_interrupted = 0;
  auto previous = std::signal(SIGINT, on_sigint);
  const bool tty = &err == &std::cerr && isatty(2);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto since = [&](clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
  };
  auto last_draw = t0 - std::chrono::seconds(1);
  double win_loss = 0, win_acc = 0, run_loss = NAN, run_acc = NAN;
  bool warned_val = false;
  int64_t win_n = 0;
  int64_t it = start.iteration;
  bool interrupted = false;
  std::optional<double> diverged;  // the non-finite loss that stopped the run
  if (c.profile) profiler::reset();
  while (it < c.iterations) {
    const std::vector<meta::Task> batch = problem.train_batch();
    meta::StepResult r;
    {
      std::optional<profiler::Scope> on;  // the meta-step only, not sampling or validation
      if (c.profile) on.emplace();
      r = learner->meta_step(batch);
    }
    if (!std::isfinite(r.loss)) {
      // The update made from this loss has already reached the weights: nothing after it is
      // worth saving, so the last checkpoint stays as it is.
      diverged = r.loss;
      ++it;
      break;
    }
    ++it;
    win_loss += r.loss;
    win_acc += r.accuracy;
    ++win_n;
    const double elapsed = start.elapsed + since(t0);
    const bool log = it % c.log_every == 0 || it == c.iterations;
    const bool val = c.val_every > 0 && (it % c.val_every == 0 || it == c.iterations);
    if (log || val) {
      Row row{it, elapsed, win_loss / static_cast<double>(win_n),
              win_acc / static_cast<double>(win_n)};
      run_loss = row.train_loss;
      run_acc = row.train_acc;
      win_loss = win_acc = 0;
      win_n = 0;
      if (val) {
        row.val_loss = validate_now(c, *learner, problem, &row.val_acc);
        // The metrics file leaves a non-finite value empty (as "not measured"): say so, once.
        if (!std::isfinite(row.val_loss) && !warned_val) {
          err << "metagrad-train: warning: validation loss is "
              << (std::isnan(row.val_loss) ? "nan" : "inf") << " at iteration " << it
              << " (the adapted models diverge after " << c.inner_steps_test
              << " inner steps: fewer --inner-steps-test or a smaller --inner-lr)\n";
          warned_val = true;
        }
      }
      metrics.add(row);
      if (!tty || val) {
        if (tty) err << "\r\033[K";
        err << "iter " << it << "/" << c.iterations << "  loss " << num(row.train_loss)
            << (classification ? "  acc " + num(row.train_acc) : "")
            << (val ? "  val loss " + num(row.val_loss) +
                          (classification ? "  val acc " + num(row.val_acc) : "")
                    : "")
            << "  " << hms(elapsed) << "\n";
      }
    }
    if (tty && (since(last_draw) > 0.1 || it == c.iterations)) {
      last_draw = clock::now();
      const double done = static_cast<double>(it - start.iteration), secs = since(t0);
      const double rate = secs > 0 ? done / secs : 0;
      const double frac = static_cast<double>(it) / static_cast<double>(c.iterations);
      const int width = 24, filled = static_cast<int>(frac * width);
      err << "\r\033[K[" << std::string(static_cast<size_t>(filled), '#')
          << std::string(static_cast<size_t>(width - filled), '.') << "] " << it << "/"
          << c.iterations << "  " << std::fixed << std::setprecision(1) << rate << " it/s  ETA "
          << hms(rate > 0 ? static_cast<double>(c.iterations - it) / rate : NAN) << "  loss "
          << num(std::isnan(run_loss) ? r.loss : run_loss)
          << (classification ? "  acc " + num(std::isnan(run_acc) ? r.accuracy : run_acc) : "")
          << std::defaultfloat << std::flush;
    }
    if (c.checkpoint_every > 0 && it % c.checkpoint_every == 0)
      save(ckpt, c, *learner, problem, it, elapsed);
    if (g_interrupted) {
      interrupted = true;
      break;
    }
  }
  std::signal(SIGINT, previous);
  if (tty) err << "\n";
  if (diverged) {
    std::ostringstream loss;
    loss << *diverged;
    const bool saved = fs::exists(ckpt);
    throw Error("[metagrad-train] meta-step " + std::to_string(it) + " diverged: its loss is " +
                loss.str() + " (try a smaller --inner-lr or --meta-lr); " +
                (saved ? "the checkpoint " + ckpt + " holds the last one saved, unchanged"
                       : std::string("no checkpoint was written")));
  }
  if (c.profile) {
    const std::string t = profiler::table();
    err << "kernels of " << it - start.iteration << " meta-steps (tensor/profiler.h):\n" << t;
    write_file(dir / "kernels.txt", t);
  }
  save(ckpt, c, *learner, problem, it, start.elapsed + since(t0));
  if (interrupted) {
    err << "interrupted at iteration " << it << "; checkpoint " << ckpt
        << " (continue with --resume " << c.out << ")\n";
    return 130;
  }
  err << "checkpoint: " << ckpt << "\n";
  plot(dir, metrics.rows(), classification, c.inner_steps_test, err);
  if (c.eval_tasks > 0) {
    std::ostringstream ef;
    evaluate_and_print(c, *learner, problem, out, &ef);
    write_file(dir / "eval.txt", ef.str());
  }
  return 0;
}

int eval_checkpoint(const std::string& path, std::optional<int> tasks, std::optional<int> steps,
                    const std::string& data_path, const std::string& device, int threads,
                    std::ostream& out) {
  nn::Checkpoint ck = read_checkpoint("--checkpoint", path);
  if (!ck.metadata.count("config"))
    throw UsageError("checkpoint '" + path + "' was not written by metagrad-train (no config)");
  Config c = config_from_json(ck.metadata.at("config"));
  // The run's own number of test tasks, or the papers' 600 where it had none (--eval-tasks 0).
  c.eval_tasks = tasks ? *tasks : c.eval_tasks > 0 ? c.eval_tasks : 600;
  if (steps) c.inner_steps_test = *steps;
  if (!data_path.empty()) c.data_path = data_path;
  if (!device.empty()) c.device = device;  // e.g. a GPU run's checkpoint evaluated on the CPU
  if (threads > 0) c.threads = threads;
  validate(c);
  if (c.threads > 0) omp_set_num_threads(c.threads);
  Problem problem(c, false, false, c.dataset == "omniglot");
  auto learner = make_learner(c, problem);
  Resumed r = restore(ck, *learner, nullptr);
  out << "checkpoint " << path << ": " << learner->name() << " on " << c.dataset << ", iteration "
      << r.iteration << std::endl;
  evaluate_and_print(c, *learner, problem, out);
  return 0;
}

// A resumed run continues the checkpoint's model and learner: a flag that would change what
// the weights mean (another algorithm, dataset, number of classes, dtype, architecture) cannot
// apply to them.
void check_unchanged_on_resume(const Config& saved, const Config& now) {
  auto same = [](const char* flag, const auto& a, const auto& b) {
    if (a == b) return;
    std::ostringstream s;
    s << flag << ": cannot change on --resume: the checkpoint's run has " << a << ", the flag says "
      << b << " (start a new run with another --out to train that)";
    throw UsageError(s.str());
  };
  same("--algo", saved.algo, now.algo);
  same("--dataset", saved.dataset, now.dataset);
  same("--dtype", saved.dtype, now.dtype);
  same("--ways", saved.ways, now.ways);
  same("--model", saved.model, now.model);
  same("--bn", saved.bn, now.bn);
}

// --out must be a directory or creatable as one, and a fresh run must not replace another run
// by accident; checked before any dataset is read.
void check_out_dir(const std::string& out, bool resuming, bool overwrite) {
  std::error_code ec;
  for (fs::path p = fs::path(out); !p.empty(); p = p.parent_path()) {
    const fs::file_status st = fs::status(p, ec);
    if (fs::exists(st) && !fs::is_directory(st))
      throw UsageError("--out: '" + out + "' is not a directory" +
                       (p == fs::path(out) ? "" : " ('" + p.string() + "' is a file)"));
    if (p == p.parent_path()) break;
  }
  if (!resuming && !overwrite && fs::exists(fs::path(out) / "last.safetensors", ec))
    throw UsageError("--out: '" + out + "' already holds a run (last.safetensors); pass --resume " +
                     out + " to continue it or --overwrite to replace it");
}

// Registers `--name` for a Config field and remembers how to copy it when given explicitly.
struct Flags {
  CLI::App& app;
  Config& parsed;
  std::vector<std::pair<CLI::Option*, std::function<void(Config&, const Config&)>>> list;
  template <typename T>
  void add(const std::string& name, T Config::*m, const std::string& help) {
    // The last occurrence wins, so a script's defaults can be overridden by appending flags.
    CLI::Option* o = app.add_option(name, parsed.*m, help)
                         ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    list.emplace_back(o, [m](Config& dst, const Config& src) { dst.*m = src.*m; });
  }
  void apply(Config& dst) const {
    for (const auto& [o, copy] : list)
      if (o->count() > 0) copy(dst, parsed);
  }
};

}  // namespace

int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{
      "metagrad-train: meta-learning on sinusoids and Omniglot (MAML, FOMAML, "
      "Reptile, Meta-SGD, ANIL)",
      "metagrad-train"};
  app.set_help_all_flag("--help-all", "every flag, subcommands included");
  Config parsed;
  Flags f{app, parsed, {}};
  f.add("--preset", &Config::preset, "a named setup of the papers (explicit flags override it)");
  f.add("--algo", &Config::algo, "maml|fomaml|reptile|metasgd|anil");
  f.add("--dataset", &Config::dataset, "sinusoid|omniglot");
  f.add("--data-path", &Config::data_path,
        "Omniglot root (default: $METAGRAD_OMNIGLOT, else ../shared/data/omniglot of the repo)");
  f.add("--ways", &Config::ways, "classes per task (N-way)");
  f.add("--shots", &Config::shots, "support examples per class (sinusoid: support points)");
  f.add("--query", &Config::query, "query examples per class (sinusoid: query points)");
  f.add("--inner-steps", &Config::inner_steps, "inner gradient steps in meta-training");
  f.add("--inner-steps-test", &Config::inner_steps_test, "inner steps at validation and test time");
  f.add("--inner-lr", &Config::inner_lr, "inner-loop learning rate (Meta-SGD: initial value)");
  f.add("--meta-batch", &Config::meta_batch, "tasks per meta-update");
  f.add("--meta-lr", &Config::meta_lr,
        "Adam learning rate of the meta-update (Reptile: outer step)");
  f.add("--iterations", &Config::iterations,
        "meta-updates in total (a resumed run continues to it)");
  f.add("--device", &Config::device, "cpu | cuda (every op, second order included, runs there)");
  f.add("--seed", &Config::seed, "seeds the model's initialisation and every task stream");
  f.add("--threads", &Config::threads, "OpenMP threads (0: the default)");
  f.add("--model", &Config::model, "conv-4 variant: strided (MAML's) | maxpool");
  f.add("--bn", &Config::bn, "batch norm: batch (batch statistics, as MAML) | running");
  f.add("--val-every", &Config::val_every, "validate every N iterations (0: never)");
  f.add("--val-tasks", &Config::val_tasks, "tasks per validation");
  f.add("--eval-tasks", &Config::eval_tasks, "test tasks of the final evaluation (0: none)");
  f.add("--out", &Config::out, "run directory: metrics, config, checkpoint, plot");
  f.add("--log-every", &Config::log_every, "metrics row every N iterations");
  f.add("--checkpoint-every", &Config::checkpoint_every,
        "checkpoint every N iterations (always at the end; 0: only then)");
  f.add("--resume", &Config::resume,
        "continue from a checkpoint file or a run directory (its last.safetensors)");
  f.add("--format", &Config::format, "metrics file: csv | jsonl");
  f.add("--dtype", &Config::dtype, "float32 | float64");
  f.add("--batch-tasks", &Config::batch_tasks,
        "true: one task-batched step for the whole meta-batch where it applies (MAML family; "
        "Omniglot with --bn batch, for the GPU: slower on the CPU; same meta-gradient as the "
        "per-task loop, ignored otherwise); false: the per-task loop");
  f.add("--task-threads", &Config::task_threads,
        "per-task loop: run this many tasks at once, each on one CPU thread with single-threaded "
        "kernels (on the CPU; Omniglot with --bn batch; not with --batch-tasks; ignored "
        "otherwise); the meta-gradient of the one-thread loop, bit for bit");
  f.add("--profile", &Config::profile,
        "true: count and time the kernels of every meta-step (tensor/profiler.h); the table goes "
        "to stderr and <out>/kernels.txt at the end");
  f.add("--max-alphabets", &Config::max_alphabets,
        "Omniglot: keep only the first N alphabets of each split (quick runs; -1: all)");

  bool overwrite = false;
  app.add_flag("--overwrite", overwrite,
               "start a fresh run in an --out directory that holds one (its files are replaced)");

  CLI::App* ev = app.add_subcommand("eval", "evaluate a checkpoint on test tasks (95% CI)");
  std::string ev_ckpt, ev_data;
  int ev_tasks = 0, ev_steps = 0, ev_threads = 0;
  ev->add_option("--checkpoint", ev_ckpt, "checkpoint file or run directory")->required();
  auto* ev_tasks_opt = ev->add_option("--eval-tasks", ev_tasks,
                                      "test tasks (default: the run's --eval-tasks, else 600)");
  auto* ev_steps_opt =
      ev->add_option("--inner-steps-test", ev_steps, "inner steps (default: the run's)");
  ev->add_option("--data-path", ev_data, "Omniglot root (default: the run's)");
  std::string ev_device;
  ev->add_option("--device", ev_device, "cpu | cuda (default: the run's)");
  ev->add_option("--threads", ev_threads, "OpenMP threads");

  std::vector<std::string> rev(args.rbegin(), args.rend());
  try {
    app.parse(rev);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e, out, err);
    return rc == 0 ? 0 : 2;
  }
  try {
    if (ev->parsed()) {
      std::optional<int> t, s;
      if (ev_tasks_opt->count()) t = ev_tasks;
      if (ev_steps_opt->count()) s = ev_steps;
      if (t && *t <= 0)
        throw UsageError("--eval-tasks: must be positive, got " + std::to_string(*t));
      if (s && *s < 0)
        throw UsageError("--inner-steps-test: must be non-negative, got " + std::to_string(*s));
      if (ev_threads < 0)
        throw UsageError("--threads: must be non-negative, got " + std::to_string(ev_threads));
      return eval_checkpoint(ev_ckpt, t, s, ev_data, ev_device, ev_threads, out);
    }
    Config c;
    std::optional<nn::Checkpoint> ck;
    if (!parsed.resume.empty()) {
      ck = read_checkpoint("--resume", parsed.resume);
      const std::string path = resolve_checkpoint(parsed.resume);
      if (!ck->metadata.count("config"))
        throw UsageError("--resume: '" + path + "' was not written by metagrad-train");
      c = config_from_json(ck->metadata.at("config"));
    } else {
      c = preset(parsed.preset);
    }
    if (!parsed.resume.empty() && !parsed.preset.empty() && parsed.preset != c.preset)
      throw UsageError("--preset: cannot change the preset of a resumed run (the run's is '" +
                       c.preset + "', got '" + parsed.preset + "')");
    // uint64 parsing wraps "-1" around to 2^64 - 1; a negative seed is a mistake to report.
    if (const CLI::Option* o = app.get_option("--seed");
        o->count() > 0 && !o->results().empty() && o->results().back().find('-') == 0)
      throw UsageError("--seed: must be non-negative, got " + o->results().back());
    const Config base = c;
    f.apply(c);
    if (ck) check_unchanged_on_resume(base, c);
    c.resume.clear();  // not part of the run's identity
    validate(c);
    check_out_dir(c.out, ck.has_value(), overwrite);
    return train(c, ck, out, err);
  } catch (const UsageError& e) {
    err << "metagrad-train: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    err << "metagrad-train: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace metagrad::trainer
