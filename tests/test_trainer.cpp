// metagrad-train driven in-process (trainer::run_cli): presets and overrides, a tiny sinusoid
// run's files, resume equal bit for bit to an uninterrupted run, Ctrl-C, evaluation of a
// checkpoint with a confidence interval, usage errors (exit 2), and an Omniglot smoke run.
#include <gtest/gtest.h>

#include <metagrad/metagrad.h>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "tools/trainer/trainer.h"

using namespace metagrad;
namespace fs = std::filesystem;

namespace {

struct CliRun {
  int rc;
  std::string out, err;
};

CliRun run(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int rc = trainer::run_cli(args, out, err);
  return {rc, out.str(), err.str()};
}

fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("metagrad_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

// A tiny sinusoid run: 3 tasks of 5 + 5 points per meta-batch.
std::vector<std::string> tiny(const fs::path& out, int64_t iterations) {
  return {"--preset",     "maml-sinusoid",
          "--iterations", std::to_string(iterations),
          "--meta-batch", "3",
          "--shots",      "5",
          "--query",      "5",
          "--val-every",  "5",
          "--val-tasks",  "4",
          "--eval-tasks", "0",
          "--log-every",  "2",
          "--seed",       "7",
          "--out",        out.string()};
}

}  // namespace

TEST(Trainer, PresetsGiveThePapersSettings) {
  auto s = trainer::preset("maml-sinusoid");
  EXPECT_EQ(s.algo, "maml");
  EXPECT_EQ(s.shots, 10);
  EXPECT_EQ(s.meta_batch, 25);
  EXPECT_EQ(s.iterations, 70000);
  EXPECT_DOUBLE_EQ(s.inner_lr, 0.01);
  EXPECT_TRUE(s.batch_tasks);  // the task-batched step: same meta-gradient, fewer ops
  auto o = trainer::preset("maml-omniglot-5w1s");
  EXPECT_EQ(o.dataset, "omniglot");
  EXPECT_EQ(o.ways, 5);
  EXPECT_EQ(o.inner_steps, 1);
  EXPECT_EQ(o.inner_steps_test, 3);
  EXPECT_DOUBLE_EQ(o.inner_lr, 0.4);
  EXPECT_EQ(o.meta_batch, 32);
  auto t = trainer::preset("maml-omniglot-20w1s");
  EXPECT_EQ(t.ways, 20);
  EXPECT_EQ(t.inner_steps, 5);
  EXPECT_EQ(t.meta_batch, 16);
  EXPECT_EQ(trainer::preset("fomaml-omniglot-5w1s").algo, "fomaml");
  EXPECT_EQ(trainer::preset("reptile-omniglot-5w1s").algo, "reptile");
  EXPECT_EQ(s.inner_steps_test, 10);
  EXPECT_EQ(trainer::preset("metasgd-sinusoid").inner_steps_test, 1);  // Li et al.: one step
  for (const auto& n : trainer::preset_names())
    EXPECT_NO_THROW(trainer::validate(trainer::preset(n)));
  EXPECT_THROW(trainer::preset("nope"), trainer::UsageError);
  // The config survives its JSON round trip (checkpoints store it).
  auto back = trainer::config_from_json(trainer::to_json(o));
  EXPECT_EQ(trainer::to_json(back), trainer::to_json(o));
}

TEST(Trainer, BadValuesExitWithCode2) {
  const std::string out = temp_dir("bad").string();
  std::vector<std::vector<std::string>> bad = {
      {"--preset", "nope", "--out", out},
      {"--algo", "sgd", "--out", out},
      {"--dataset", "mnist", "--out", out},
      {"--no-such-flag"},
      {"--ways", "many"},
      {"--device", "tpu", "--out", out},
      {"--iterations", "-3", "--out", out},
      {"--task-threads", "0", "--out", out},
      {"--dataset", "omniglot", "--data-path", "/nonexistent/omniglot", "--out", out},
      {"--resume", "/nonexistent/run"},
      {"eval"}};
  // Without a GPU, --device cuda is refused up front (with one, it trains: test below).
  if (!cuda_is_available()) bad.push_back({"--device", "cuda", "--out", out});
  for (const auto& args : bad) {
    CliRun r = run(args);
    EXPECT_EQ(r.rc, 2) << args[0] << " " << (args.size() > 1 ? args[1] : "") << "\n" << r.err;
    EXPECT_FALSE(r.err.empty());
  }
  EXPECT_NE(run({"--preset", "nope"}).err.find("unknown preset 'nope'"), std::string::npos);
  if (!cuda_is_available()) {
    EXPECT_NE(run({"--device", "cuda"}).err.find("--device cuda"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(out));  // nothing was trained
}

TEST(Trainer, TinySinusoidRunWritesConfigMetricsCheckpointAndPlot) {
  const fs::path dir = temp_dir("tiny");
  auto args = tiny(dir, 10000);
  args.insert(args.end(), {"--iterations", "10"});  // a repeated flag: the last one wins
  CliRun r = run(args);
  ASSERT_EQ(r.rc, 0) << r.err;
  // Preset values stay where no flag overrides them; the flags win elsewhere.
  std::ifstream cf(dir / "config.json");
  nlohmann::json cfg = nlohmann::json::parse(cf);
  EXPECT_EQ(cfg["preset"], "maml-sinusoid");
  EXPECT_DOUBLE_EQ(cfg["inner_lr"].get<double>(), 0.01);
  EXPECT_EQ(cfg["iterations"], 10);
  EXPECT_EQ(cfg["meta_batch"], 3);
  EXPECT_EQ(cfg["shots"], 5);
  // A header and one row every 2 iterations; validation at 5 and 10.
  std::ifstream mf(dir / "metrics.csv");
  std::vector<std::string> lines;
  for (std::string s; std::getline(mf, s);) lines.push_back(s);
  ASSERT_EQ(lines.size(), 1u + 6u);
  EXPECT_EQ(lines[0], "iteration,time,train_loss,train_acc,val_loss,val_acc");
  EXPECT_EQ(lines.back().substr(0, 3), "10,");
  EXPECT_NE(lines.back().find(",,"), std::string::npos);  // no accuracy for regression
  nn::Checkpoint ck = nn::load_checkpoint((dir / "last.safetensors").string());
  EXPECT_EQ(ck.metadata.at("iteration"), "10");
  EXPECT_FALSE(ck.groups.at("model").empty());
  EXPECT_FALSE(ck.groups.at("optim").empty());
  EXPECT_TRUE(fs::exists(dir / "curve.gp"));
  fs::remove_all(dir);
}

TEST(Trainer, ProfileWritesTheKernelTableOfTheMetaSteps) {
  const fs::path dir = temp_dir("profile");
  auto args = tiny(dir, 4);
  args.insert(args.end(), {"--profile", "true"});
  CliRun r = run(args);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("kernels of 4 meta-steps"), std::string::npos) << r.err;
  std::ifstream kf(dir / "kernels.txt");
  const std::string table((std::istreambuf_iterator<char>(kf)), std::istreambuf_iterator<char>());
  // the sinusoid MLP's step: matrix products and Adam's updates, then the totals
  EXPECT_NE(table.find("matmul"), std::string::npos) << table;
  EXPECT_NE(table.find("adam_step"), std::string::npos) << table;
  EXPECT_NE(table.find("total"), std::string::npos) << table;
  EXPECT_FALSE(profiler::enabled());  // the trainer's scope is closed again
  std::ifstream cf(dir / "config.json");
  EXPECT_EQ(nlohmann::json::parse(cf)["profile"], true);
  fs::remove_all(dir);
  // Without the flag: no table, no file.
  const fs::path plain = temp_dir("no_profile");
  CliRun q = run(tiny(plain, 2));
  ASSERT_EQ(q.rc, 0) << q.err;
  EXPECT_EQ(q.err.find("kernels of"), std::string::npos);
  EXPECT_FALSE(fs::exists(plain / "kernels.txt"));
  fs::remove_all(plain);
}

// --device cuda trains the same function: a float64 run logs the same losses as on the CPU.
TEST(Trainer, CudaRunMatchesCpuRun) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: nothing to compare with the CPU";
  std::vector<std::vector<std::string>> rows;
  for (const char* device : {"cpu", "cuda"}) {
    const fs::path dir = temp_dir(std::string("device-") + device);
    auto args = tiny(dir, 6);
    args.insert(args.end(), {"--device", device, "--dtype", "float64"});
    CliRun r = run(args);
    ASSERT_EQ(r.rc, 0) << device << ": " << r.err;
    std::ifstream mf(dir / "metrics.csv");
    std::vector<std::string> lines;
    for (std::string s; std::getline(mf, s);) lines.push_back(s);
    rows.push_back(lines);
    fs::remove_all(dir);
  }
  ASSERT_EQ(rows[0].size(), rows[1].size());
  // Column 2 is the train loss; the time column differs, so compare the losses as numbers.
  for (size_t i = 1; i < rows[0].size(); ++i) {
    auto loss = [](const std::string& line) {
      std::stringstream ss(line);
      std::string cell;
      for (int k = 0; k < 3; ++k) std::getline(ss, cell, ',');
      return std::stod(cell);
    };
    EXPECT_NEAR(loss(rows[0][i]), loss(rows[1][i]), 1e-9 * std::abs(loss(rows[0][i])))
        << "row " << i;
  }
}

TEST(Trainer, ResumeEqualsUninterruptedRunBitForBit) {
  for (const std::string algo : {"maml", "metasgd", "reptile"}) {
    const fs::path a = temp_dir("straight_" + algo), b = temp_dir("halves_" + algo);
    auto args_a = tiny(a, 12), args_b = tiny(b, 6);
    args_a.insert(args_a.end(), {"--algo", algo, "--format", "jsonl"});
    args_b.insert(args_b.end(), {"--algo", algo, "--format", "jsonl"});
    ASSERT_EQ(run(args_a).rc, 0);
    ASSERT_EQ(run(args_b).rc, 0);
    CliRun r = run({"--resume", b.string(), "--iterations", "12"});
    ASSERT_EQ(r.rc, 0) << r.err;
    nn::Checkpoint ca = nn::load_checkpoint((a / "last.safetensors").string());
    nn::Checkpoint cb = nn::load_checkpoint((b / "last.safetensors").string());
    EXPECT_EQ(cb.metadata.at("iteration"), "12");
    EXPECT_EQ(ca.metadata.at("train_generator"), cb.metadata.at("train_generator"));
    EXPECT_EQ(ca.metadata.at("optim_scalars"), cb.metadata.at("optim_scalars"));
    for (const char* g : {"model", "optim", "extra"}) {
      ASSERT_EQ(ca.groups.at(g).size(), cb.groups.at(g).size()) << g;
      for (const auto& [n, t] : ca.groups.at(g)) {
        const Tensor u = cb.groups.at(g).at(n);
        ASSERT_EQ(t.numel(), u.numel()) << g << "." << n;
        EXPECT_EQ(std::memcmp(t.contiguous().data_ptr<float>(), u.contiguous().data_ptr<float>(),
                              static_cast<size_t>(t.numel()) * sizeof(float)),
                  0)
            << algo << ": " << g << "." << n << " differs after resume";
      }
    }
    // The metrics of both halves form one file with the straight run's rows (times differ).
    auto iterations = [](const fs::path& f) {
      std::ifstream in(f);
      std::vector<int64_t> its;
      for (std::string s; std::getline(in, s);)
        its.push_back(nlohmann::json::parse(s).at("iteration").get<int64_t>());
      return its;
    };
    EXPECT_EQ(iterations(b / "metrics.jsonl"), iterations(a / "metrics.jsonl"));
    EXPECT_EQ(iterations(a / "metrics.jsonl"), (std::vector<int64_t>{2, 4, 5, 6, 8, 10, 12}));
    fs::remove_all(a);
    fs::remove_all(b);
  }
}

TEST(Trainer, EvalOfACheckpointPrintsConfidenceIntervals) {
  const fs::path dir = temp_dir("eval");
  ASSERT_EQ(run(tiny(dir, 4)).rc, 0);
  CliRun r =
      run({"eval", "--checkpoint", (dir / "last.safetensors").string(), "--eval-tasks", "20"});
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* want : {"test MSE before adaptation (0 steps): ", "after 1 step: ",
                           "after 10 steps: ", "+- ", "(20 tasks)"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << " not in\n" << r.out;
  // Repeatable: the test tasks come from the run's seed.
  const std::string again = run({"eval", "--checkpoint", dir.string(), "--eval-tasks", "20"}).out;
  EXPECT_EQ(again.substr(again.find('\n')), r.out.substr(r.out.find('\n')));
  fs::remove_all(dir);
}

// eval takes the run's settings, each overridable: a run trained with --eval-tasks 0 is
// evaluated on 600 tasks, and a GPU run's checkpoint on the CPU with --device cpu.
TEST(Trainer, EvalDefaultsToSixHundredTasksAndTakesADevice) {
  const fs::path dir = temp_dir("eval_defaults");
  ASSERT_EQ(run(tiny(dir, 2)).rc, 0);  // --eval-tasks 0
  CliRun r = run({"eval", "--checkpoint", dir.string(), "--inner-steps-test", "1"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("(600 tasks)"), std::string::npos) << r.out;
  const std::string file = (dir / "last.safetensors").string();
  nn::Checkpoint ck = nn::load_checkpoint(file);
  nlohmann::json cfg = nlohmann::json::parse(ck.metadata.at("config"));
  cfg["device"] = "cuda";
  ck.metadata["config"] = cfg.dump();
  nn::save_checkpoint(file, ck.groups, ck.metadata);
  CliRun c = run({"eval", "--checkpoint", dir.string(), "--eval-tasks", "3", "--device", "cpu"});
  EXPECT_EQ(c.rc, 0) << c.err;
  EXPECT_NE(c.out.find("(3 tasks)"), std::string::npos) << c.out;
  CliRun bad = run({"eval", "--checkpoint", dir.string(), "--device", "tpu"});
  EXPECT_EQ(bad.rc, 2) << bad.err;
  EXPECT_NE(bad.err.find("--device"), std::string::npos) << bad.err;
  fs::remove_all(dir);
}

// Adapted models that diverge give a plain "nan"/"inf" line saying so, not "-nan +- n/a".
TEST(Trainer, DivergedEvaluationIsSaidPlainly) {
  const fs::path dir = temp_dir("diverged_eval");
  ASSERT_EQ(run(tiny(dir, 2)).rc, 0);
  const std::string file = (dir / "last.safetensors").string();
  nn::Checkpoint ck = nn::load_checkpoint(file);
  for (auto& [n, t] : ck.groups.at("model")) t = t * 1e30f;  // float32: outputs overflow
  nn::save_checkpoint(file, ck.groups, ck.metadata);
  CliRun r = run({"eval", "--checkpoint", dir.string(), "--eval-tasks", "3"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("the adapted models diverged"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("-nan"), std::string::npos) << r.out;
  fs::remove_all(dir);
}

// A damaged checkpoint is a usage error (exit 2) naming the flag and the file.
TEST(Trainer, DamagedCheckpointExitsWithCode2) {
  const fs::path dir = temp_dir("damaged");
  ASSERT_EQ(run(tiny(dir, 2)).rc, 0);
  const fs::path file = dir / "last.safetensors";
  fs::resize_file(file, fs::file_size(file) / 2);
  CliRun r = run({"--resume", dir.string(), "--iterations", "4"});
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("--resume: cannot read '" + file.string() + "'"), std::string::npos)
      << r.err;
  CliRun e = run({"eval", "--checkpoint", file.string()});
  EXPECT_EQ(e.rc, 2) << e.err;
  EXPECT_NE(e.err.find("--checkpoint: cannot read"), std::string::npos) << e.err;
  CliRun missing = run({"--resume", (dir / "nope").string()});
  EXPECT_EQ(missing.rc, 2) << missing.err;
  EXPECT_NE(missing.err.find("error: --resume: no checkpoint at"), std::string::npos)
      << missing.err;
  fs::remove_all(dir);
}

// A killed run can leave half a metrics row; resuming drops it rather than keep a bogus row.
TEST(Trainer, ResumeDropsATornMetricsRow) {
  const fs::path dir = temp_dir("torn_row");
  ASSERT_EQ(run(tiny(dir, 4)).rc, 0);
  std::ofstream(dir / "metrics.csv", std::ios::app) << "2,0.0";
  CliRun r = run({"--resume", dir.string(), "--iterations", "6"});
  ASSERT_EQ(r.rc, 0) << r.err;
  std::ifstream in(dir / "metrics.csv");
  std::vector<int64_t> its;
  for (std::string s; std::getline(in, s);)
    if (!s.empty() && s[0] != 'i') its.push_back(std::stoll(s));
  EXPECT_EQ(its, (std::vector<int64_t>{2, 4, 5, 6}));
  fs::remove_all(dir);
}

TEST(Trainer, SigintFinishesTheIterationSavesAndExits130) {
  const fs::path dir = temp_dir("sigint");
  auto args = tiny(dir, 1000000);
  // Until the trainer's handler is in place SIGINT is ignored (not fatal to the test), so
  // the signal is repeated until the run stops.
  auto previous = std::signal(SIGINT, SIG_IGN);
  std::atomic<bool> done{false};
  std::thread killer([&] {
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!done && fs::exists(dir / "config.json")) std::raise(SIGINT);
    }
  });
  CliRun r = run(args);
  done = true;
  killer.join();
  std::signal(SIGINT, previous);
  EXPECT_EQ(r.rc, 130) << r.err;
  nn::Checkpoint ck = nn::load_checkpoint((dir / "last.safetensors").string());
  const int64_t it = std::stoll(ck.metadata.at("iteration"));
  EXPECT_GT(it, 0);
  EXPECT_LT(it, 1000000);
  EXPECT_NE(r.err.find("--resume"), std::string::npos);
  fs::remove_all(dir);
}

// --batch-tasks on Omniglot (batch-statistics batch norm): the task-batched step logs the
// per-task loop's training loss (float32 rounding apart) and writes no running statistics.
// The per-task loop, the task-batched step (--batch-tasks) and the loop with its tasks on 2
// threads (--task-threads) log the same first loss, and the last two build the conv-4 without
// running statistics.
TEST(Trainer, OmniglotBatchTasksAndTaskThreadsLogTheLoopsLoss) {
  const char* env = std::getenv("METAGRAD_OMNIGLOT");
  const std::string root = env && *env ? env : MG_OMNIGLOT_DIR;
  if (!fs::is_directory(fs::path(root) / "images_background"))
    GTEST_SKIP() << "Omniglot not found at " << root << " (set METAGRAD_OMNIGLOT)";
  std::vector<double> first_loss;
  struct Mode {
    const char* name;
    std::vector<std::string> flags;
    bool running_stats;
  };
  // --bn batch never reads running statistics, so the conv-4 keeps none in every mode, and a
  // run resumes with any of them.
  for (const Mode& m : {Mode{"loop", {}, false}, Mode{"batched", {"--batch-tasks", "true"}, false},
                        Mode{"threaded", {"--task-threads", "2"}, false}}) {
    const fs::path dir = temp_dir(std::string("omniglot_mode_") + m.name);
    std::vector<std::string> args = {"--preset", "maml-omniglot-5w1s", "--data-path", root,
                                     "--iterations", "1", "--meta-batch", "3", "--query", "2",
                                     "--val-every", "0", "--eval-tasks", "0",
                                     "--max-alphabets", "2", "--log-every", "1",
                                     "--out", dir.string()};
    args.insert(args.end(), m.flags.begin(), m.flags.end());
    CliRun r = run(args);
    ASSERT_EQ(r.rc, 0) << m.name << ": " << r.err;
    std::ifstream mf(dir / "metrics.csv");
    std::string header, row;
    std::getline(mf, header);
    std::getline(mf, row);
    const size_t a = row.find(',', row.find(',') + 1);  // iteration,time,train_loss,...
    first_loss.push_back(std::stod(row.substr(a + 1)));
    nn::Checkpoint ck = nn::load_checkpoint((dir / "last.safetensors").string());
    bool running = false;
    for (const auto& [name, t] : ck.groups.at("model"))
      running = running || name.find("running_mean") != std::string::npos;
    EXPECT_EQ(running, m.running_stats) << m.name;
    CliRun resumed = run({"--resume", dir.string(), "--iterations", "2", "--task-threads",
                          m.flags.empty() ? "2" : "1", "--batch-tasks", "false"});
    EXPECT_EQ(resumed.rc, 0) << m.name << ": " << resumed.err;
    fs::remove_all(dir);
  }
  EXPECT_NEAR(first_loss[1], first_loss[0], 1e-5 * first_loss[0]);
  EXPECT_NEAR(first_loss[2], first_loss[0], 1e-5 * first_loss[0]);
}

TEST(Trainer, OmniglotSmokeRun) {
  const char* env = std::getenv("METAGRAD_OMNIGLOT");
  const std::string root = env && *env ? env : MG_OMNIGLOT_DIR;
  if (!fs::is_directory(fs::path(root) / "images_background"))
    GTEST_SKIP() << "Omniglot not found at " << root << " (set METAGRAD_OMNIGLOT)";
  const fs::path dir = temp_dir("omniglot");
  CliRun r = run({"--preset",        "maml-omniglot-5w1s",
                  "--data-path",     root,
                  "--iterations",    "3",
                  "--meta-batch",    "1",
                  "--query",         "1",
                  "--val-every",     "3",
                  "--val-tasks",     "1",
                  "--eval-tasks",    "3",
                  "--max-alphabets", "2",
                  "--out",           dir.string()});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("test accuracy after 3 steps: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(3 tasks)"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir / "last.safetensors"));
  std::ifstream ef(dir / "eval.txt");
  std::string first;
  std::getline(ef, first);
  EXPECT_EQ(first.rfind("test accuracy after 3 steps: ", 0), 0u) << first;
  fs::remove_all(dir);
  // More ways than the (trimmed) split has classes: a usage error, not a crash.
  CliRun bad = run({"--dataset", "omniglot", "--data-path", root, "--ways", "5000",
                    "--max-alphabets", "1", "--out", dir.string()});
  EXPECT_EQ(bad.rc, 2) << bad.err;
  EXPECT_NE(bad.err.find("[episodes]"), std::string::npos) << bad.err;
  fs::remove_all(dir);
}

namespace {

std::string slurp(const fs::path& f) {
  std::ifstream in(f);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Sets an environment variable and the working directory for one test, and restores both.
class EnvAndCwd {
 public:
  EnvAndCwd(const char* var, const std::string& value, const fs::path& cwd)
      : var_(var), cwd_(fs::current_path()) {
    const char* old = std::getenv(var);
    if (old) old_ = old;
    ::setenv(var, value.c_str(), 1);
    fs::current_path(cwd);
  }
  ~EnvAndCwd() {
    if (old_)
      ::setenv(var_, old_->c_str(), 1);
    else
      ::unsetenv(var_);
    fs::current_path(cwd_);
  }

 private:
  const char* var_;
  fs::path cwd_;
  std::optional<std::string> old_;
};

}  // namespace

// --out is a path, never a command: gnuplot runs without a shell, in the run directory.
TEST(Trainer, GnuplotRunsWithoutAShellInTheRunDirectory) {
  const fs::path base = temp_dir("shell");
  fs::create_directories(base / "bin");
  // A stand-in gnuplot that proves where it ran: it renders "curve.png" next to curve.gp.
  {
    std::ofstream g(base / "bin" / "gnuplot");
    g << "#!/bin/sh\n[ -f \"$1\" ] && echo png > curve.png\n";
  }
  fs::permissions(base / "bin" / "gnuplot", fs::perms::owner_all);
  const char* path = std::getenv("PATH");
  EnvAndCwd env("PATH", (base / "bin").string() + ":" + (path ? path : "/usr/bin:/bin"), base);
  const fs::path out = base / "inj'; touch PWNED; echo '";
  CliRun r = run(tiny(out, 2));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_FALSE(fs::exists(base / "PWNED")) << "the --out path ran as a shell command";
  EXPECT_EQ(slurp(out / "curve.png"), "png\n");
  EXPECT_NE(r.err.find("plot: " + (out / "curve.png").string()), std::string::npos) << r.err;
  // A failing gnuplot is reported as before.
  {
    std::ofstream g(base / "bin" / "gnuplot");
    g << "#!/bin/sh\nexit 3\n";
  }
  CliRun f = run([&] {
    auto a = tiny(out, 2);
    a.push_back("--overwrite");
    return a;
  }());
  ASSERT_EQ(f.rc, 0) << f.err;
  EXPECT_NE(f.err.find("plot: gnuplot failed"), std::string::npos) << f.err;
  fs::remove_all(base);
}

// A run that cannot write its files fails, naming the file (exit 1), not silently.
TEST(Trainer, WriteErrorsOfRunFilesAreReported) {
  for (const char* name : {"config.json", "eval.txt"}) {
    const fs::path dir = temp_dir("write_error");
    fs::create_directories(dir / name / "x");  // a non-empty folder where the file goes
    auto args = tiny(dir, 2);
    args.insert(args.end(), {"--eval-tasks", "2"});
    CliRun r = run(args);
    EXPECT_EQ(r.rc, 1) << name << "\n" << r.err;
    EXPECT_NE(r.err.find((dir / name).string()), std::string::npos) << r.err;
    fs::remove_all(dir);
  }
  // Rewritten atomically on resume: no temporary file is left, the rows are whole.
  const fs::path dir = temp_dir("metrics_atomic");
  ASSERT_EQ(run(tiny(dir, 4)).rc, 0);
  ASSERT_EQ(run({"--resume", dir.string(), "--iterations", "6"}).rc, 0);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
    ++files;
  }
  EXPECT_GT(files, 0u);
  std::ifstream mf(dir / "metrics.csv");
  std::vector<std::string> lines;
  for (std::string s; std::getline(mf, s);) lines.push_back(s);
  ASSERT_EQ(lines.size(), 1u + 4u);  // rows at 2, 4, 5 (validation), 6
  EXPECT_EQ(lines.back().substr(0, 2), "6,");
  fs::remove_all(dir);
}

// A fresh run does not replace another run's checkpoint unless asked to.
TEST(Trainer, FreshRunIntoAnExistingRunNeedsOverwrite) {
  const fs::path dir = temp_dir("existing");
  ASSERT_EQ(run(tiny(dir, 2)).rc, 0);
  const std::string before = slurp(dir / "last.safetensors");
  CliRun again = run(tiny(dir, 4));
  EXPECT_EQ(again.rc, 2) << again.err;
  EXPECT_NE(again.err.find("metagrad-train: error: --out: '" + dir.string() + "' already holds"),
            std::string::npos)
      << again.err;
  EXPECT_NE(again.err.find("--resume"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;
  EXPECT_EQ(slurp(dir / "last.safetensors"), before);  // untouched
  auto args = tiny(dir, 4);
  args.push_back("--overwrite");
  CliRun over = run(args);
  ASSERT_EQ(over.rc, 0) << over.err;
  EXPECT_EQ(nn::load_checkpoint((dir / "last.safetensors").string()).metadata.at("iteration"),
            "4");
  fs::remove_all(dir);
}

// inf and nan are not rates; a meta-step whose loss is not finite stops the run (exit 1)
// without saving the diverged weights.
TEST(Trainer, NonFiniteRatesAndDivergenceAreErrors) {
  const fs::path dir = temp_dir("diverge");
  for (const auto& [flag, value] :
       std::vector<std::pair<std::string, std::string>>{{"--meta-lr", "inf"},
                                                        {"--meta-lr", "1e400"},
                                                        {"--inner-lr", "inf"},
                                                        {"--inner-lr", "nan"}}) {
    auto args = tiny(dir, 2);
    args.insert(args.end(), {flag, value});
    CliRun r = run(args);
    EXPECT_EQ(r.rc, 2) << flag << " " << value << "\n" << r.err;
    EXPECT_NE(r.err.find(flag), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir));
  auto args = tiny(dir, 20);
  args.insert(args.end(), {"--inner-lr", "1e6", "--eval-tasks", "5"});
  CliRun r = run(args);
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_NE(r.err.find("diverged: its loss is "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("meta-step "), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("nan"), std::string::npos) << r.out;  // no evaluation of a diverged model
  EXPECT_FALSE(fs::exists(dir / "last.safetensors"));
  fs::remove_all(dir);
}

// --algo, --dataset, --dtype, --ways, --model and --bn describe the checkpoint's weights.
TEST(Trainer, ResumeRefusesToChangeWhatTheWeightsMean) {
  const fs::path dir = temp_dir("resume_change");
  ASSERT_EQ(run(tiny(dir, 2)).rc, 0);
  const std::string before = slurp(dir / "last.safetensors");
  for (const auto& [flag, value, saved] : std::vector<std::array<std::string, 3>>{
           {"--algo", "reptile", "maml"},
           {"--dataset", "omniglot", "sinusoid"},
           {"--dtype", "float64", "float32"},
           {"--ways", "3", "5"},
           {"--model", "maxpool", "strided"},
           {"--bn", "running", "batch"}}) {
    CliRun r = run({"--resume", dir.string(), "--iterations", "4", flag, value});
    EXPECT_EQ(r.rc, 2) << flag << "\n" << r.err;
    EXPECT_NE(r.err.find(flag + ": cannot change on --resume"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(saved), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(value), std::string::npos) << r.err;
  }
  EXPECT_EQ(slurp(dir / "last.safetensors"), before);
  // The same value again is no change.
  EXPECT_EQ(run({"--resume", dir.string(), "--iterations", "4", "--algo", "maml"}).rc, 0);
  fs::remove_all(dir);
}

// A checkpoint's metadata and config are parsed whole: damage is reported, not half-read.
TEST(Trainer, CheckpointMetadataAndConfigAreParsedStrictly) {
  const fs::path dir = temp_dir("strict");
  ASSERT_EQ(run(tiny(dir, 2)).rc, 0);
  const std::string file = (dir / "last.safetensors").string();
  const nn::Checkpoint good = nn::load_checkpoint(file);
  for (const std::string it : {"12abc", "-50", "", " 3", "99999999999999999999"}) {
    nn::Checkpoint ck = good;
    ck.metadata["iteration"] = it;
    nn::save_checkpoint(file, ck.groups, ck.metadata);
    CliRun r = run({"--resume", dir.string(), "--iterations", "100"});
    EXPECT_EQ(r.rc, 2) << it << "\n" << r.err;
    EXPECT_NE(r.err.find("metadata 'iteration' is '" + it + "'"), std::string::npos) << r.err;
  }
  const nlohmann::json cfg = nlohmann::json::parse(good.metadata.at("config"));
  for (const std::string v : {"1e10", "3.7", "null", "[1,2]", "\"5\"", "-3000000000"}) {
    nlohmann::json bad = cfg;
    bad["ways"] = nlohmann::json::parse(v);
    try {
      trainer::config_from_json(bad.dump());
      ADD_FAILURE() << v << " accepted";
    } catch (const trainer::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("config key 'ways' is "), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("expected an integer"), std::string::npos) << e.what();
    }
  }
  nlohmann::json neg = cfg;
  neg["seed"] = -1;
  EXPECT_THROW(trainer::config_from_json(neg.dump()), trainer::UsageError);
  nlohmann::json lr = cfg;
  lr["inner_lr"] = "0.1";
  EXPECT_THROW(trainer::config_from_json(lr.dump()), trainer::UsageError);
  EXPECT_THROW(trainer::config_from_json("[1]"), trainer::UsageError);
  fs::remove_all(dir);
}

TEST(Trainer, OneEvaluationTaskHasNoConfidenceInterval) {
  const fs::path dir = temp_dir("one_task");
  auto args = tiny(dir, 2);
  args.insert(args.end(), {"--eval-tasks", "1"});
  CliRun r = run(args);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("+- n/a (1 task)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("+- 0.0000"), std::string::npos) << r.out;
  fs::remove_all(dir);
}

// --out that is a file, or lies under one, is a usage error before anything is loaded.
TEST(Trainer, OutThatIsAFileIsAUsageError) {
  const fs::path base = temp_dir("out_file");
  fs::create_directories(base);
  std::ofstream(base / "file") << "x";
  for (const fs::path& out : {base / "file", base / "file" / "run"}) {
    CliRun r = run(tiny(out, 2));
    EXPECT_EQ(r.rc, 2) << out << "\n" << r.err;
    EXPECT_NE(r.err.find("metagrad-train: error: --out: '" + out.string() + "' is not a directory"),
              std::string::npos)
        << r.err;
  }
  fs::remove_all(base);
}

TEST(Trainer, SmallUsageErrorsSayWhatWasGiven) {
  const fs::path dir = temp_dir("small_usage");
  auto with = [&](std::vector<std::string> extra) {
    auto a = tiny(dir, 2);
    a.insert(a.end(), extra.begin(), extra.end());
    return run(a);
  };
  CliRun t = with({"--threads", "-1"});
  EXPECT_EQ(t.rc, 2);
  EXPECT_NE(t.err.find("--threads: must be non-negative, got -1\n"), std::string::npos) << t.err;
  CliRun s = with({"--seed", "-1"});
  EXPECT_EQ(s.rc, 2);
  EXPECT_NE(s.err.find("--seed"), std::string::npos) << s.err;
  for (const char* n : {"0", "-2"}) {
    CliRun m = with({"--max-alphabets", n});
    EXPECT_EQ(m.rc, 2) << n;
    EXPECT_NE(m.err.find("--max-alphabets"), std::string::npos) << m.err;
  }
  EXPECT_FALSE(fs::exists(dir));
  ASSERT_EQ(with({}).rc, 0);
  CliRun e = run({"eval", "--checkpoint", dir.string(), "--threads", "-4"});
  EXPECT_EQ(e.rc, 2) << e.err;
  EXPECT_NE(e.err.find("--threads: must be non-negative, got -4"), std::string::npos) << e.err;
  // Resuming a run that already reached --iterations says so (and changes nothing).
  const std::string before = slurp(dir / "last.safetensors");
  CliRun done = run({"--resume", dir.string(), "--iterations", "1"});
  EXPECT_EQ(done.rc, 0) << done.err;
  EXPECT_NE(done.err.find("nothing to train"), std::string::npos) << done.err;
  EXPECT_EQ(slurp(dir / "last.safetensors"), before);
  fs::remove_all(dir);
}

// The val and test splits must fit --ways before training starts, not after it.
TEST(Trainer, OmniglotSplitsTooSmallForWaysFailBeforeTraining) {
  const char* env = std::getenv("METAGRAD_OMNIGLOT");
  const std::string root = env && *env ? env : MG_OMNIGLOT_DIR;
  if (!fs::is_directory(fs::path(root) / "images_background"))
    GTEST_SKIP() << "Omniglot not found at " << root << " (set METAGRAD_OMNIGLOT)";
  const fs::path dir = temp_dir("omniglot_small_split");
  // With one alphabet, train (Alphabet_of_the_Magi, 80 rotation classes) fits 20 ways but
  // test (Gurmukhi, 16) does not.
  CliRun r = run({"--preset", "maml-omniglot-20w1s", "--data-path", root, "--iterations", "1",
                  "--meta-batch", "1", "--query", "1", "--val-every", "0", "--eval-tasks", "1",
                  "--max-alphabets", "1", "--out", dir.string()});
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("do not fit the test split"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("n_way = 20"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "last.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "eval.txt"));
  fs::remove_all(dir);
}
