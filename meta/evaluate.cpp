#include "meta/evaluate.h"

#include <cmath>

namespace metagrad::meta {

Summary summarize(const std::vector<double>& values) {
  Summary s;
  s.n = static_cast<int>(values.size());
  // Fewer than two values have no spread to measure: NaN, not a confident-looking 0 (and no
  // value has no mean either).
  s.std = s.ci95 = std::nan("");
  if (s.n == 0) {
    s.mean = std::nan("");
    return s;
  }
  for (double v : values) s.mean += v;
  s.mean /= s.n;
  if (s.n > 1) {
    double ss = 0;
    for (double v : values) ss += (v - s.mean) * (v - s.mean);
    s.std = std::sqrt(ss / (s.n - 1));
    s.ci95 = 1.96 * s.std / std::sqrt(static_cast<double>(s.n));
  }
  return s;
}

namespace {
// The model in eval mode for one evaluation, back in the mode it had after (also when a task
// throws): PyTorch's model.eval() ... model.train() around a test loop.
class EvalMode {
 public:
  explicit EvalMode(nn::Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;
  ~EvalMode() { m_.train(was_training_); }

 private:
  nn::Module& m_;
  bool was_training_;
};
}  // namespace

EvalResult evaluate(MetaLearner& learner, const std::function<Task(int)>& next_task,
                    int n_tasks, int steps) {
  MG_CHECK(n_tasks > 0, "evaluate", "n_tasks must be positive, got ", n_tasks);
  MG_CHECK(next_task != nullptr, "evaluate", "no task source given (next_task is empty)");
  // In train mode a test task would update the batch norms' running statistics (the model
  // would change by being evaluated), and BNMode::RunningStats would never normalise with them.
  const EvalMode mode(learner.model());
  std::vector<double> losses, accs;
  for (int i = 0; i < n_tasks; ++i) {
    StepResult r = learner.adapt_and_evaluate(next_task(i), steps);
    losses.push_back(r.loss);
    if (!std::isnan(r.accuracy)) accs.push_back(r.accuracy);
  }
  return {summarize(losses), summarize(accs)};
}

}  // namespace metagrad::meta
