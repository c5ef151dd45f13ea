#include "meta/learner.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include "autograd/engine.h"
#include "autograd/node.h"
#include "nn/modules/dropout.h"
#include "tensor/creation.h"
#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"
#include "tensor/indexing.h"
#include "tensor/parallel.h"
#include "tensor/reduce.h"

namespace metagrad::meta {

nn::ParamMap inner_loop(nn::Module& model, const nn::ParamMap& params, const Tensor& x,
                        const Tensor& y, const LossFn& loss, const InnerLoopOptions& opts,
                        const ParamFilter& adapt, const nn::ParamMap* lrs) {
  MG_CHECK(opts.steps >= 0, "inner_loop", "steps must be non-negative, got ", opts.steps);
  MG_CHECK(loss != nullptr, "inner_loop", "no loss function given");
  nn::ParamMap fast = params;
  std::vector<std::string> names;
  for (const auto& [name, p] : fast)
    if ((!adapt || adapt(name)) && p.requires_grad()) names.push_back(name);
  // A tensor tied across names is one parameter: adapted in one place, it moves in all.
  for (const auto& [name, p] : fast) {
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    for (size_t i = 0, n = names.size(); i < n; ++i)
      if (fast.at(names[i]).is_same(p)) {
        names.push_back(name);
        break;
      }
  }
  MG_CHECK(opts.steps == 0 || !names.empty(), "inner_loop",
           "no parameter to adapt (none requires grad, or the filter rejects all)");
  if (lrs)
    for (const auto& n : names)
      MG_CHECK(lrs->count(n), "inner_loop", "no learning rate for parameter '", n,
               "' in the per-parameter rates (", lrs->size(), " given)");
  for (int s = 0; s < opts.steps; ++s) {
    Tensor l = loss(model.forward(x, fast), y);
    // One entry per distinct tensor: names that share one (a module used twice, tied weights)
    // take one step with the sum of their places' gradients and keep sharing the result, so
    // they stay tied through every step (torch.func.functional_call's tie_weights).
    std::vector<Tensor> ws;
    std::vector<size_t> slot(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      const Tensor& w = fast.at(names[i]);
      size_t k = 0;
      while (k < ws.size() && !ws[k].is_same(w)) ++k;
      if (k == ws.size()) ws.push_back(w);
      slot[i] = k;
    }
    // create_graph keeps d(grad)/d(params), which the exact meta-gradient needs.
    std::vector<Tensor> gs =
        grad({l}, ws, {}, std::nullopt, opts.create_graph, /*allow_unused=*/true);
    std::vector<Tensor> moved(ws.size());
    for (size_t i = 0; i < names.size(); ++i) {
      const size_t k = slot[i];
      if (!gs[k].defined()) continue;
      // The first name of a tied group steps (with its rate); the others share the result.
      if (!moved[k].defined())
        moved[k] = ws[k] - (lrs ? lrs->at(names[i]) * gs[k] : gs[k] * opts.lr);
      fast[names[i]] = moved[k];
    }
  }
  return fast;
}

namespace {

// A detached leaf per distinct tensor of `params`; tied names (one tensor) share theirs.
nn::ParamMap fresh_leaves(const nn::ParamMap& params) {
  nn::ParamMap out;
  std::vector<std::pair<Tensor, Tensor>> leaf_of;
  for (const auto& [n, p] : params) {
    auto it = std::find_if(leaf_of.begin(), leaf_of.end(),
                           [&](const auto& e) { return e.first.is_same(p); });
    if (it == leaf_of.end()) {
      leaf_of.emplace_back(p, p.detach().requires_grad_(true));
      it = std::prev(leaf_of.end());
    }
    out[n] = it->second;
  }
  return out;
}

// The fraction of rows whose largest logit is at the label, as a 0-d float64 tensor.
Tensor hit_rate(const Tensor& logits, const Tensor& labels) {
  NoGradGuard ng;
  MG_CHECK(logits.dim() == 2 && labels.dim() == 1 && logits.size(0) == labels.size(0), "accuracy",
           "expects logits [N, C] and labels [N], got ", shape_str(logits.shape()), " and ",
           shape_str(labels.shape()));
  Tensor hit = eq(argmax(logits, 1), labels.to(DType::Int64));
  return mean(hit.to(DType::Float64));
}

}  // namespace

double accuracy(const Tensor& logits, const Tensor& labels) {
  return hit_rate(logits, labels).item<double>();
}

MetaLearner::MetaLearner(std::shared_ptr<nn::Module> model, LossFn loss, MetaOptions opts)
    : model_(std::move(model)), loss_(std::move(loss)), opts_(opts) {
  MG_CHECK(model_ != nullptr, "meta", "no model given");
  MG_CHECK(loss_ != nullptr, "meta", "no loss function given");
  MG_CHECK(opts_.inner_steps >= 0 && opts_.inner_lr >= 0 && opts_.meta_lr > 0, "meta",
           "invalid options: inner_steps ", opts_.inner_steps, ", inner_lr ", opts_.inner_lr,
           ", meta_lr ", opts_.meta_lr);
  MG_CHECK(opts_.task_threads >= 1, "meta", "task_threads must be at least 1, got ",
           opts_.task_threads);
}

MetaLearner::TaskMetrics MetaLearner::metrics(const Tensor& output, const Tensor& target,
                                              const Tensor& loss) const {
  NoGradGuard ng;
  TaskMetrics m;
  m.loss = loss.detach().to(DType::Float64);  // exact, as item<double>() of the loss
  if (opts_.classification) m.accuracy = hit_rate(output, target);
  return m;
}

StepResult MetaLearner::mean_metrics(const std::vector<TaskMetrics>& tasks, double weight) const {
  NoGradGuard ng;
  std::vector<Tensor> scalars;
  for (const TaskMetrics& m : tasks) {
    scalars.push_back(m.loss);
    if (opts_.classification) scalars.push_back(m.accuracy);
  }
  const std::vector<double> v = stack(scalars).to_vector<double>();  // the one host wait
  StepResult r{0, opts_.classification ? 0.0 : std::nan("")};
  size_t k = 0;
  for (size_t i = 0; i < tasks.size(); ++i) {
    r.loss += v[k++] * weight;
    if (opts_.classification) r.accuracy += v[k++] * weight;
  }
  return r;
}

StepResult MetaLearner::adapt_and_evaluate(const Task& task, int steps) {
  nn::ParamMap fast = inner_loop(*model_, nn::params_of(*model_), task.support_x, task.support_y,
                                 loss_, {steps, opts_.inner_lr, false});
  NoGradGuard ng;
  Tensor out = model_->forward(task.query_x, fast);
  return measure(out, task.query_y, loss_(out, task.query_y));
}

void MetaLearner::check_tasks_can_share_threads() {
  const std::string me = name();
  const char* who = me.c_str();
  for (const Tensor& p : model_->parameters())
    MG_CHECK(p.device().is_cpu(), who,
             "task_threads > 1 runs tasks on CPU threads; a parameter "
             "of shape ",
             shape_str(p.shape()), " is on ", p.device().str());
  if (!model_->is_training()) return;
  const auto buffers = model_->named_buffers();
  MG_CHECK(buffers.empty(), who,
           "task_threads > 1 needs a model whose training forward updates "
           "no buffers, but it has '",
           buffers.empty() ? "" : buffers.front().first,
           "' (build batch norms with track_running_stats(false), or use task_threads = 1)");
  for (const auto& [n, m] : model_->named_modules()) {
    const auto* d = dynamic_cast<const nn::DropoutImpl*>(m.get());
    MG_CHECK(d == nullptr || !d->is_training() || d->options.p_ == 0, who,
             "task_threads > 1 cannot run dropout ('", n,
             "'): its draws from the shared "
             "generator would depend on the threads' timing; use task_threads = 1");
  }
}

// ---- MAML / FOMAML / ANIL ---------------------------------------------------------------

MAML::MAML(std::shared_ptr<nn::Module> model, LossFn loss, MetaOptions opts, ParamFilter adapt)
    : MetaLearner(std::move(model), std::move(loss), opts), filter_(std::move(adapt)) {
  meta_opt_ =
      std::make_unique<optim::Adam>(model_->parameters(), optim::AdamOptions(opts_.meta_lr));
}

nn::ParamMap MAML::adapt(const nn::ParamMap& params, const Tensor& x, const Tensor& y,
                         const LossFn& loss, int steps, bool create_graph) {
  return inner_loop(*model_, params, x, y, loss, {steps, opts_.inner_lr, create_graph}, filter_);
}

StepResult MAML::meta_step(const std::vector<Task>& tasks) {
  MG_CHECK(!tasks.empty(), "maml", "empty task batch");
  if (opts_.batch_tasks) return meta_step_batched(tasks);
  if (opts_.task_threads > 1 && tasks.size() > 1) return meta_step_threaded(tasks);
  meta_opt_->zero_grad();
  std::vector<TaskMetrics> per_task;
  const double w = 1.0 / static_cast<double>(tasks.size());
  for (const Task& t : tasks) {
    // The meta-objective: the query loss of the adapted weights, as a function of the
    // model's own parameters through every inner step.
    nn::ParamMap fast = adapt(nn::params_of(*model_), t.support_x, t.support_y, loss_,
                              opts_.inner_steps, !opts_.first_order);
    Tensor out = model_->forward(t.query_x, fast);
    Tensor l = loss_(out, t.query_y);
    (l * w).backward();  // accumulates the task's meta-gradient; frees its graph
    per_task.push_back(metrics(out.detach(), t.query_y, l.detach()));
  }
  meta_opt_->step();
  return mean_metrics(per_task, w);
}

// The per-task loop above with its tasks on threads (Note [Tasks on threads] in
// tensor/parallel.h): each task's meta-gradient is taken with grad() rather than accumulated by
// backward(), and the task gradients are summed in task order afterwards, the order in which
// the loop's backward() calls accumulate them.
StepResult MAML::meta_step_threaded(const std::vector<Task>& tasks) {
  const std::vector<Tensor> params = meta_opt_->parameters();
  check_tasks_can_share_threads();
  meta_opt_->zero_grad();
  // The leaves' gradient accumulators, made here so that the threads only read them.
  std::vector<autograd::Edge> leaf_edges;
  for (const Tensor& p : params) leaf_edges.push_back(autograd::gradient_edge(p));

  const size_t n = tasks.size();
  const double w = 1.0 / static_cast<double>(n);
  std::vector<std::vector<Tensor>> grads(n);
  std::vector<TaskMetrics> results(n);
  parallel_for_each(static_cast<int64_t>(n), opts_.task_threads, [&](int64_t i) {
    const Task& t = tasks[static_cast<size_t>(i)];
    nn::ParamMap fast = adapt(nn::params_of(*model_), t.support_x, t.support_y, loss_,
                              opts_.inner_steps, !opts_.first_order);
    Tensor out = model_->forward(t.query_x, fast);
    Tensor l = loss_(out, t.query_y);
    grads[static_cast<size_t>(i)] =
        grad({l * w}, params, {}, std::nullopt, /*create_graph=*/false, /*allow_unused=*/true);
    results[static_cast<size_t>(i)] = metrics(out.detach(), t.query_y, l.detach());
  });
  const StepResult mean_r = mean_metrics(results, w);
  {
    NoGradGuard ng;
    for (size_t j = 0; j < params.size(); ++j) {
      Tensor sum_g;
      for (size_t i = 0; i < n; ++i) {
        const Tensor& g = grads[i][j];
        if (g.defined()) sum_g = sum_g.defined() ? sum_g + g : g;
      }
      if (sum_g.defined()) Tensor(params[j]).set_grad(sum_g);
    }
  }
  meta_opt_->step();
  return mean_r;
}

// Note [Task-batched meta-step]
// With the B tasks stacked ([B, n, ...]) and theta_b = expand(theta) one copy of the weights
// per task, the batched inner loss is the *sum* of the task losses,
//   L_in(theta_1..theta_B) = sum_b L_b(theta_b) = B * loss(all rows)   (loss = mean over rows),
// so dL_in/dtheta_b = dL_b/dtheta_b: each copy takes exactly its own task's inner step. The
// meta-objective is the mean of the query losses, loss(all query rows) = (1/B) sum_b L_b(phi_b),
// and its backward through expand sums the B per-task meta-gradients: the per-task loop's
// result, with the op count of one task instead of B (the sinusoid step is per-op bound).
StepResult MAML::meta_step_batched(const std::vector<Task>& tasks) {
  const auto& t0 = tasks.front();
  std::vector<Tensor> sx, sy, qx, qy;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const Task& t = tasks[i];
    MG_CHECK(t.support_x.shape() == t0.support_x.shape() &&
                 t.support_y.shape() == t0.support_y.shape() &&
                 t.query_x.shape() == t0.query_x.shape() && t.query_y.shape() == t0.query_y.shape(),
             name().c_str(), "batch_tasks needs tasks of equal shapes: task ", i, " has support ",
             shape_str(t.support_x.shape()), " / ", shape_str(t.support_y.shape()), ", query ",
             shape_str(t.query_x.shape()), " / ", shape_str(t.query_y.shape()), "; task 0 has ",
             shape_str(t0.support_x.shape()), " / ", shape_str(t0.support_y.shape()), ", ",
             shape_str(t0.query_x.shape()), " / ", shape_str(t0.query_y.shape()));
    sx.push_back(t.support_x);
    sy.push_back(t.support_y);
    qx.push_back(t.query_x);
    qy.push_back(t.query_y);
  }
  const int64_t b = static_cast<int64_t>(tasks.size());
  meta_opt_->zero_grad();
  nn::ParamMap stacked;
  std::vector<std::pair<Tensor, Tensor>> stack_of;  // tied names share one stack
  for (const auto& [n, p] : nn::params_of(*model_)) {
    // Every parameter, adapted or not (ANIL's body): a layer given a stacked input takes stacked
    // weights (Conv2d and BatchNorm2d need them to tell the task dim from the batch dim).
    auto it = std::find_if(stack_of.begin(), stack_of.end(),
                           [&](const auto& e) { return e.first.is_same(p); });
    if (it == stack_of.end()) {
      Shape s = p.shape();
      s.insert(s.begin(), b);
      stack_of.emplace_back(p, p.unsqueeze(0).expand(s));
      it = std::prev(stack_of.end());
    }
    stacked[n] = it->second;
  }
  const double scale = static_cast<double>(b);
  LossFn task_sum = [this, scale](const Tensor& out, const Tensor& y) {
    return loss_(out.flatten(0, 1), y.flatten(0, 1)) * scale;
  };
  nn::ParamMap fast =
      adapt(stacked, stack(sx), stack(sy), task_sum, opts_.inner_steps, !opts_.first_order);
  const Tensor query_y = stack(qy).flatten(0, 1);
  Tensor out = model_->forward(stack(qx), fast).flatten(0, 1);
  Tensor l = loss_(out, query_y);
  l.backward();
  StepResult r = measure(out.detach(), query_y, l.detach());
  meta_opt_->step();
  return r;
}

StepResult MAML::adapt_and_evaluate(const Task& task, int steps) {
  nn::ParamMap fast = adapt(nn::params_of(*model_), task.support_x, task.support_y, loss_, steps,
                            /*create_graph=*/false);
  NoGradGuard ng;
  Tensor out = model_->forward(task.query_x, fast);
  return measure(out, task.query_y, loss_(out, task.query_y));
}

namespace {
// Whether parameter `name` lies under module path `p`: "head" takes "head.weight" (and a
// parameter named "head"), not "header.weight"; "1" takes "1.bias", not "10.bias" (a Sequential's
// eleventh child). A path ending in '.' is a plain prefix.
bool under_path(const std::string& name, const std::string& p) {
  if (name.rfind(p, 0) != 0) return false;
  return p.empty() || name.size() == p.size() || p.back() == '.' || name[p.size()] == '.';
}
}  // namespace

ANIL::ANIL(std::shared_ptr<nn::Module> model, LossFn loss, MetaOptions opts,
           std::string head_prefix)
    : MAML(std::move(model), std::move(loss), opts,
           [p = head_prefix](const std::string& n) { return under_path(n, p); }) {
  bool any = false;
  for (const auto& [n, t] : model_->named_parameters()) any = any || filter_(n);
  MG_CHECK(any, "anil", "no parameter lies under the head's module path \"", head_prefix,
           "\" (parameters are named like \"head.weight\")");
}

// ---- Meta-SGD -----------------------------------------------------------------------------

MetaSGD::MetaSGD(std::shared_ptr<nn::Module> model, LossFn loss, MetaOptions opts)
    : MAML(std::move(model), std::move(loss), opts) {
  std::vector<Tensor> meta_params = model_->parameters();
  // A rate per name, as the fast weights (params_of) have; tied names share their tensor's.
  std::vector<std::pair<Tensor, Tensor>> rate_of;  // (parameter, its rate)
  for (const auto& [n, p] : model_->named_parameters(true, false)) {
    auto it = std::find_if(rate_of.begin(), rate_of.end(),
                           [&](const auto& e) { return e.first.is_same(p); });
    if (it == rate_of.end()) {
      Tensor lr = full(p.shape(), opts_.inner_lr, p.options()).requires_grad_(true);
      rate_of.emplace_back(p, lr);
      meta_params.push_back(lr);
      it = std::prev(rate_of.end());
    }
    lrs_[n] = it->second;
  }
  meta_opt_ = std::make_unique<optim::Adam>(meta_params, optim::AdamOptions(opts_.meta_lr));
}

nn::ParamMap MetaSGD::adapt(const nn::ParamMap& params, const Tensor& x, const Tensor& y,
                            const LossFn& loss, int steps, bool create_graph) {
  return inner_loop(*model_, params, x, y, loss, {steps, opts_.inner_lr, create_graph}, filter_,
                    &lrs_);
}

nn::ParamMap MetaSGD::extra_state() const {
  nn::ParamMap r;
  for (const auto& [n, t] : lrs_) r["lr." + n] = t.detach();
  return r;
}

void MetaSGD::load_extra_state(const nn::ParamMap& state) {
  for (const auto& [n, t] : lrs_) {
    auto it = state.find("lr." + n);
    MG_CHECK(it != state.end(), "metasgd", "checkpoint lacks the learning rate of ", n);
    MG_CHECK(it->second.shape() == t.shape(), "metasgd", "learning rate of ", n, " has shape ",
             shape_str(it->second.shape()), ", expected ", shape_str(t.shape()));
  }
  // Tied names share one rate tensor: their entries must agree, and it is written once.
  std::vector<std::pair<const TensorImpl*, std::string>> first;
  for (const auto& [n, t] : lrs_) {
    auto it = std::find_if(first.begin(), first.end(),
                           [&](const auto& e) { return e.first == t.impl(); });
    if (it == first.end()) {
      first.emplace_back(t.impl(), n);
      continue;
    }
    auto values = [&](const std::string& k) {
      return state.at("lr." + k)
          .to(Device::cpu())
          .to(DType::Float64)
          .contiguous()
          .to_vector<double>();
    };
    // Equal element by element, NaN equal to NaN (a diverged run's rates reload as saved).
    const std::vector<double> a = values(n), b = values(it->second);
    const bool same = std::equal(a.begin(), a.end(), b.begin(), b.end(), [](double x, double y) {
      return x == y || (std::isnan(x) && std::isnan(y));
    });
    MG_CHECK(same, "metasgd", "the learning rates of ", it->second, " and ", n,
             " (one tied parameter) differ in the checkpoint");
  }
  NoGradGuard ng;
  for (const auto& [impl, n] : first) Tensor(lrs_.at(n)).copy_(state.at("lr." + n));
}

// ---- Reptile ------------------------------------------------------------------------------

Reptile::Reptile(std::shared_ptr<nn::Module> model, LossFn loss, MetaOptions opts,
                 double outer_step)
    : MetaLearner(std::move(model), std::move(loss), opts), outer_step_(outer_step) {
  MG_CHECK(outer_step > 0, "reptile", "outer step size must be positive, got ", outer_step);
  MG_CHECK(!opts_.batch_tasks, "reptile",
           "batch_tasks is for the MAML family; Reptile adapts its tasks one by one");
}

StepResult Reptile::meta_step(const std::vector<Task>& tasks) {
  MG_CHECK(!tasks.empty(), "reptile", "empty task batch");
  if (opts_.task_threads > 1 && tasks.size() > 1) check_tasks_can_share_threads();
  const nn::ParamMap theta = nn::params_of(*model_);
  const size_t n_tasks = tasks.size();
  // Each task starts from its own detached copy of theta (leaves of its own: nothing shared
  // to accumulate into), so the tasks may run on threads (task_threads; Note [Tasks on
  // threads]); their phi_i - theta and metrics are summed in task order after.
  std::vector<nn::ParamMap> moved(n_tasks);
  std::vector<TaskMetrics> results(n_tasks);
  parallel_for_each(static_cast<int64_t>(n_tasks), opts_.task_threads, [&](int64_t i) {
    const Task& t = tasks[static_cast<size_t>(i)];
    nn::ParamMap start = fresh_leaves(theta);
    // Reptile trains on the whole task (support and query) with plain SGD.
    Tensor x = cat({t.support_x, t.query_x}, 0), y = cat({t.support_y, t.query_y}, 0);
    nn::ParamMap phi =
        inner_loop(*model_, start, x, y, loss_, {opts_.inner_steps, opts_.inner_lr, false});
    NoGradGuard ng;
    Tensor out = model_->forward(t.query_x, phi);
    results[static_cast<size_t>(i)] = metrics(out, t.query_y, loss_(out, t.query_y));
    for (const auto& [n, p] : phi)
      moved[static_cast<size_t>(i)][n] = p.detach() - theta.at(n).detach();
  });
  const double w = 1.0 / static_cast<double>(n_tasks);
  NoGradGuard ng;
  nn::ParamMap delta;  // sum_i (phi_i - theta), in task order
  for (size_t i = 0; i < n_tasks; ++i)
    for (const auto& [n, d] : moved[i]) delta[n] = delta.count(n) ? delta[n] + d : d;
  std::vector<const TensorImpl*> done;  // a tied tensor (several names) moves once
  for (const auto& [n, p] : theta) {
    if (std::find(done.begin(), done.end(), p.impl()) != done.end()) continue;
    done.push_back(p.impl());
    Tensor param = p;
    add_(param, delta.at(n) * (outer_step_ * w));
  }
  return mean_metrics(results, w);
}

}  // namespace metagrad::meta
