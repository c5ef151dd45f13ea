// Evaluation as meta-learning papers report it: the mean over many test tasks (600 by
// convention) with the 95% confidence interval 1.96 * std / sqrt(n).
#pragma once
#include <functional>
#include <vector>

#include "meta/learner.h"

namespace metagrad::meta {

// summarize() gives NaN for what the values cannot tell: std and ci95 when n < 2, the mean
// when n = 0.
struct Summary {
  double mean = 0;
  double ci95 = 0;  // 1.96 * std / sqrt(n), std with n - 1 in the denominator
  double std = 0;
  int n = 0;
};

Summary summarize(const std::vector<double>& values);

struct EvalResult {
  Summary loss;      // query loss (MSE for regression) after adaptation
  Summary accuracy;  // query accuracy (classification only; n = 0 otherwise)
};

// Adapts to each of `n_tasks` tasks drawn by `next_task(i)` with `steps` inner steps and
// measures the query set; the model's own weights are left unchanged. The model runs in eval
// mode meanwhile (and returns to the mode it had): no dropout, no update of batch-norm running
// statistics, and batch norms in BNMode::RunningStats normalise with their running statistics
// (BNMode::BatchStats, MAML's, always with the batch's).
EvalResult evaluate(MetaLearner& learner, const std::function<Task(int)>& next_task,
                    int n_tasks = 600, int steps = 10);

}  // namespace metagrad::meta
