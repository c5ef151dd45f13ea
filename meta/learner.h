// Meta-learners built directly on metagrad's higher-order autograd: MAML (exact second
// order), first-order MAML, Meta-SGD, ANIL and Reptile. Each is a small class over a Module
// and one shared inner loop (inner_loop below): adaptation is gradient descent on "fast
// weights", a name->Tensor map that is a differentiable function of the model's parameters
// (DESIGN principle 11), so the meta-gradient is plain reverse-mode through the inner steps.
#pragma once
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"
#include "nn/optim.h"

namespace metagrad::meta {

// loss(model output, target) -> a one-element tensor.
using LossFn = std::function<Tensor(const Tensor& output, const Tensor& target)>;
// Which parameters the inner loop adapts, by dotted name (ANIL: the head only).
using ParamFilter = std::function<bool(const std::string& name)>;

// One task: adapt on the support set, measure on the query set.
struct Task {
  Tensor support_x, support_y, query_x, query_y;
};

struct InnerLoopOptions {
  int steps = 1;
  double lr = 0.01;
  // true: keep the graph of every inner step, so the meta-gradient is exact (second order);
  // false: the inner gradients are constants (first-order MAML).
  bool create_graph = true;
};

// `steps` steps of gradient descent on loss(model(x; params), y) starting from `params`;
// returns the adapted weights. Parameters `adapt` rejects stay as they are. With `lrs`
// (Meta-SGD) each parameter moves by lrs[name] * grad (elementwise) instead of lr * grad.
nn::ParamMap inner_loop(nn::Module& model, const nn::ParamMap& params, const Tensor& x,
                        const Tensor& y, const LossFn& loss, const InnerLoopOptions& opts,
                        const ParamFilter& adapt = {}, const nn::ParamMap* lrs = nullptr);

// The fraction of rows whose argmax matches the integer label.
double accuracy(const Tensor& logits, const Tensor& labels);

struct StepResult {
  double loss = 0;                                             // mean query loss after adaptation
  double accuracy = std::numeric_limits<double>::quiet_NaN();  // classification only
};

struct MetaOptions {
  int inner_steps = 1;  // during meta-training
  double inner_lr = 0.01;
  bool first_order = false;  // first-order MAML (and first-order Meta-SGD / ANIL)
  double meta_lr = 1e-3;     // Adam, as in the MAML paper
  bool classification = false;
  // MAML family only (MAML, FOMAML, ANIL, Meta-SGD): run the task batch as one batched
  // computation, as torch.func.vmap would. The tasks are stacked along a new leading dim and
  // each parameter gets one copy per task (an expand of the shared parameter, whose
  // backward sums the copies' gradients). Same meta-gradient as the per-task loop, with the
  // op count of one task (Note [Task-batched meta-step]). Needs tasks of equal shapes, a loss
  // that is the mean over examples (MSE, cross-entropy), and a model whose layers accept
  // [B, n, ...] inputs with stacked parameters: Linear, Conv2d (the B tasks' convolutions as
  // one grouped convolution, Note [Task-batched convolution]), BatchNorm2d without running
  // statistics (track_running_stats(false)), LayerNorm, pooling, Flatten over trailing dims and
  // elementwise activations: the sinusoid MLP and the conv-4 nets
  // (Conv4Options::track_running_stats = false).
  bool batch_tasks = false;
  // CPU only: how many tasks of the batch run at once, each on one thread
  // with single-threaded kernels (Note [Tasks on threads] in tensor/parallel.h); 1 = one task
  // at a time, every kernel on all OpenMP threads. The per-task meta-gradients are summed in
  // task order, so the result does not depend on the count (>= 2) and equals the one-task-at-
  // a-time loop run on one thread. Needs a model whose forward writes no shared state: in
  // training mode no buffers (BatchNorm2d with track_running_stats(false)) and no dropout,
  // and a loss function that may be called from several threads at once (the built-in ones
  // can). Reptile too (its tasks' moves summed in task order). Ignored by batch_tasks, which
  // runs the batch as one computation.
  int task_threads = 1;
};

class MetaLearner {
 public:
  virtual ~MetaLearner() = default;
  // One meta-update from a batch of tasks; returns the batch's mean query metrics.
  virtual StepResult meta_step(const std::vector<Task>& tasks) = 0;
  // Adapts to `task` with `steps` inner steps (no meta-update, no graph kept) and measures the
  // query set.
  virtual StepResult adapt_and_evaluate(const Task& task, int steps);
  nn::Module& model() { return *model_; }
  const MetaOptions& options() const { return opts_; }
  virtual std::string name() const = 0;
  // Everything to checkpoint beyond the model (Meta-SGD's learning rates, optimizer state).
  virtual nn::ParamMap extra_state() const { return {}; }
  virtual void load_extra_state(const nn::ParamMap&) {}
  optim::Optimizer* meta_optimizer() { return meta_opt_.get(); }

 protected:
  MetaLearner(std::shared_ptr<nn::Module> model, LossFn loss, MetaOptions opts);
  // A task's query loss and accuracy as 0-d float64 tensors on the model's device, so that a
  // meta-step reads all its tasks' metrics back at once (one host wait per step on the GPU,
  // not two per task, which would drain the queue task by task).
  struct TaskMetrics {
    Tensor loss, accuracy;  // accuracy undefined unless classification
  };
  TaskMetrics metrics(const Tensor& output, const Tensor& target, const Tensor& loss) const;
  // The weighted sum over tasks, in task order, of what metrics() gave: the same doubles as
  // reading each task's values one by one.
  StepResult mean_metrics(const std::vector<TaskMetrics>& tasks, double weight) const;
  StepResult measure(const Tensor& output, const Tensor& target, const Tensor& loss) const {
    return mean_metrics({metrics(output, target, loss)}, 1.0);
  }
  // Throws unless the model may run several tasks at once on CPU threads (task_threads > 1):
  // parameters on the CPU and, in training mode, no buffers and no dropout.
  void check_tasks_can_share_threads();

  std::shared_ptr<nn::Module> model_;
  LossFn loss_;
  MetaOptions opts_;
  std::unique_ptr<optim::Optimizer> meta_opt_;
};

// MAML (Finn et al. 2017). The meta-gradient of the query loss flows through every inner
// step; with first_order the inner gradients are treated as constants (FOMAML). A filter
// restricts adaptation to some parameters: ANIL (Raghu et al. 2020) adapts only the head.
class MAML : public MetaLearner {
 public:
  MAML(std::shared_ptr<nn::Module> model, LossFn loss, MetaOptions opts, ParamFilter adapt = {});
  StepResult meta_step(const std::vector<Task>& tasks) override;
  StepResult adapt_and_evaluate(const Task& task, int steps) override;
  std::string name() const override { return opts_.first_order ? "fomaml" : "maml"; }

 protected:
  // `steps` inner steps on loss(model(x; params), y) (inner_loop with this learner's rule).
  virtual nn::ParamMap adapt(const nn::ParamMap& params, const Tensor& x, const Tensor& y,
                             const LossFn& loss, int steps, bool create_graph);
  StepResult meta_step_batched(const std::vector<Task>& tasks);
  StepResult meta_step_threaded(const std::vector<Task>& tasks);
  ParamFilter filter_;
};

// ANIL: MAML whose inner loop adapts only the parameters under module path `head_prefix`
// ("head": "head.weight", "head.bias", not "header.weight"; a path ending in '.' matches as a
// plain prefix).
class ANIL : public MAML {
 public:
  ANIL(std::shared_ptr<nn::Module> model, LossFn loss, MetaOptions opts, std::string head_prefix);
  std::string name() const override { return "anil"; }
};

// Meta-SGD (Li et al. 2017): a learned learning rate per parameter element, initialised to
// inner_lr and meta-learned with the weights.
class MetaSGD : public MAML {
 public:
  MetaSGD(std::shared_ptr<nn::Module> model, LossFn loss, MetaOptions opts);
  std::string name() const override { return "metasgd"; }
  const nn::ParamMap& learning_rates() const { return lrs_; }
  nn::ParamMap extra_state() const override;
  void load_extra_state(const nn::ParamMap& state) override;

 protected:
  nn::ParamMap adapt(const nn::ParamMap& params, const Tensor& x, const Tensor& y,
                     const LossFn& loss, int steps, bool create_graph) override;

 private:
  nn::ParamMap lrs_;
};

// Reptile (Nichol et al. 2018): adapt a copy with plain SGD for inner_steps steps on each
// task, then move the weights toward the adapted ones:
//   theta <- theta + outer_step * mean_i (phi_i - theta).
// No second derivatives, no meta-optimizer state beyond the step size.
class Reptile : public MetaLearner {
 public:
  Reptile(std::shared_ptr<nn::Module> model, LossFn loss, MetaOptions opts,
          double outer_step = 1.0);
  StepResult meta_step(const std::vector<Task>& tasks) override;
  std::string name() const override { return "reptile"; }
  double outer_step() const { return outer_step_; }

 private:
  double outer_step_;
};

}  // namespace metagrad::meta
