// The command-line meta-trainer behind metagrad-train: its configuration (flags, presets that
// reproduce the papers' setups, JSON round trip for checkpoints), the training loop with
// validation, metrics, checkpoints and exact resume, and the papers' style of evaluation.
// main() is a thin wrapper around run_cli so that tests can drive the whole program in-process.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <vector>

namespace metagrad::trainer {

// A bad flag, preset or path: the program prints the message and exits with code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Config {
  std::string preset;                    // the preset these values started from ("" = none)
  std::string algo = "maml";             // maml | fomaml | reptile | metasgd | anil
  std::string dataset = "sinusoid";      // sinusoid | omniglot
  std::string data_path;                 // Omniglot root; "" = $METAGRAD_OMNIGLOT or the default
  int ways = 5, shots = 10, query = 10;  // shots/query: points per task for sinusoid
  int inner_steps = 1, inner_steps_test = 10;
  double inner_lr = 0.01;
  int meta_batch = 25;
  double meta_lr = 1e-3;  // Adam's lr; Reptile: the outer step size epsilon
  int64_t iterations = 70000;
  std::string device = "cpu";
  uint64_t seed = 0;
  int threads = 0;                // 0: OpenMP's default
  std::string model = "strided";  // conv-4 variant: strided | maxpool
  std::string bn = "batch";       // batch norm: batch (batch statistics) | running
  int64_t val_every = 1000;       // 0: no validation
  int val_tasks = 100;
  int eval_tasks = 600;  // 0: no final evaluation
  std::string out = "runs/metagrad";
  int64_t log_every = 100;
  int64_t checkpoint_every = 5000;  // 0: only at the end
  std::string resume;               // checkpoint file or a run directory holding last.safetensors
  std::string format = "csv";       // csv | jsonl
  std::string dtype = "float32";    // float32 | float64
  int max_alphabets = -1;           // Omniglot: keep only the first alphabets (quick runs)
  bool batch_tasks = false;         // MAML family on sinusoids: one batched step for all tasks
  int task_threads = 1;             // MAML family on the CPU: tasks run this many at once
  bool profile = false;             // count and time the meta-steps' kernels (tensor/profiler.h)
};

// The presets, by name, and the configuration each one gives (library defaults + preset).
std::vector<std::string> preset_names();
Config preset(const std::string& name);  // throws UsageError for an unknown name
// Checks every value (algo, dataset, ranges, ...); throws UsageError naming the flag.
void validate(const Config& c);

std::string to_json(const Config& c);
Config config_from_json(const std::string& json);

// The whole program: `metagrad-train [flags]` trains, `metagrad-train eval --checkpoint F`
// evaluates. args excludes the program name. Progress and diagnostics go to err, results to
// out. Returns the exit code: 0, 2 (usage), 1 (runtime error), 130 (interrupted by SIGINT).
int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace metagrad::trainer
