// Meta-learners: the exact MAML meta-gradient against central differences of the unrolled
// meta-loss (1 and 2 inner steps, an MLP and a conv net with batch norm), first-order MAML as
// exact minus the Hessian term, Reptile's update against its definition, Meta-SGD and ANIL,
// the evaluation summary, and a short sinusoid run that learns.
#include <gtest/gtest.h>

#include "test_util.h"

#include <metagrad/metagrad.h>

#include <omp.h>

#include <cmath>
#include <thread>

using namespace metagrad;
using meta::Task;

namespace {

Tensor mse(const Tensor& a, const Tensor& b) { return mean(square(a - b)); }

// A smooth model (tanh, no kinks) so finite differences are trustworthy.
nn::Sequential tanh_mlp(Generator& gen) {
  nn::Sequential net;
  net->push_back("0", std::make_shared<nn::LinearImpl>(nn::LinearOptions(1, 6), &gen));
  net->push_back("1", std::make_shared<nn::TanhImpl>());
  net->push_back("head", std::make_shared<nn::LinearImpl>(nn::LinearOptions(6, 1), &gen));
  net->to(DType::Float64);
  return net;
}

// conv -> batch norm (batch statistics) -> tanh -> spatial mean -> linear.
class SmallConvNet : public nn::Module {
 public:
  explicit SmallConvNet(Generator& gen) {
    conv = register_module("conv", std::make_shared<nn::Conv2dImpl>(
                                       nn::Conv2dOptions(1, 3, 3).padding(1).stride(2), &gen));
    bn = register_module("bn", std::make_shared<nn::BatchNorm2dImpl>(
                                   nn::BatchNorm2dOptions(3).mode(nn::BNMode::BatchStats)));
    head = register_module("head",
                           std::make_shared<nn::LinearImpl>(nn::LinearOptions(3, 2), &gen));
    to(DType::Float64);
  }
  using Module::forward;
  Tensor forward(const Tensor& x, const nn::ParamMap& p) override {
    Tensor h = tanh(bn->forward(conv->forward(x, child_params(p, "conv")), child_params(p, "bn")));
    return head->forward(mean(h, {2, 3}), child_params(p, "head"));
  }
  std::shared_ptr<nn::Conv2dImpl> conv;
  std::shared_ptr<nn::BatchNorm2dImpl> bn;
  std::shared_ptr<nn::LinearImpl> head;
};

Tensor ce(const Tensor& logits, const Tensor& y) { return nn::functional::cross_entropy(logits, y); }

// The unrolled meta-loss at the model's current parameters, no graph kept.
double meta_loss(nn::Module& model, const Task& t, const meta::LossFn& loss, int steps,
                 double lr) {
  nn::ParamMap start;
  for (const auto& [n, p] : nn::params_of(model)) start[n] = p.detach().requires_grad_(true);
  nn::ParamMap fast =
      meta::inner_loop(model, start, t.support_x, t.support_y, loss, {steps, lr, false});
  NoGradGuard ng;
  return loss(model.forward(t.query_x, fast), t.query_y).item<double>();
}

// Exact meta-gradient (create_graph through every inner step) vs central differences.
void check_meta_gradient(nn::Module& model, const Task& t, const meta::LossFn& loss, int steps,
                         double lr) {
  nn::ParamMap params = nn::params_of(model);
  nn::ParamMap fast =
      meta::inner_loop(model, params, t.support_x, t.support_y, loss, {steps, lr, true});
  Tensor l = loss(model.forward(t.query_x, fast), t.query_y);
  nn::ParamMap g = nn::grad(l, params);
  const double eps = 1e-6;
  for (auto& [name, p] : params) {
    Tensor flat = p.detach().view({-1});
    auto gv = g.at(name).to_vector<double>();
    for (int64_t i = 0; i < flat.numel(); ++i) {
      double* v = flat.data_ptr<double>() + i;
      const double orig = *v;
      *v = orig + eps;
      const double plus = meta_loss(model, t, loss, steps, lr);
      *v = orig - eps;
      const double minus = meta_loss(model, t, loss, steps, lr);
      *v = orig;
      const double num = (plus - minus) / (2 * eps);
      EXPECT_NEAR(gv[i], num, 1e-6 + 1e-4 * std::fabs(num))
          << name << "[" << i << "] with " << steps << " inner steps";
    }
  }
}

Task sinusoid_task(Generator& gen, DType dtype = DType::Float64) {
  meta::SinusoidTasks tasks;
  auto task = tasks.sample_task(gen);
  auto [xs, ys] = task.sample(5, gen, dtype);
  auto [xq, yq] = task.sample(5, gen, dtype);
  return {xs, ys, xq, yq};
}

// A 3-way task for the small conv-4 nets (16 x 16 images): 2 support and 3 query images a class.
Task conv_task(Generator& gen, DType dtype) {
  Task k;
  k.support_x = randn({6, 1, 16, 16}, dtype, &gen);
  k.support_y = tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 2}, {6});
  k.query_x = randn({9, 1, 16, 16}, dtype, &gen);
  k.query_y = tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0, 1, 2}, {9});
  return k;
}

}  // namespace

TEST(MetaLearners, MamlMetaGradientOfMlpMatchesFiniteDifferences) {
  Generator gen(11);
  auto net = tanh_mlp(gen);
  Task t = sinusoid_task(gen);
  for (int steps : {1, 2}) check_meta_gradient(*net, t, mse, steps, 0.05);
}

TEST(MetaLearners, MamlMetaGradientOfConvNetWithBatchNormMatchesFiniteDifferences) {
  Generator gen(12);
  auto net = std::make_shared<SmallConvNet>(gen);
  Task t{randn({4, 1, 5, 5}, DType::Float64, &gen), tensor<int64_t>({0, 1, 0, 1}),
         randn({4, 1, 5, 5}, DType::Float64, &gen), tensor<int64_t>({1, 0, 1, 0})};
  for (int steps : {1, 2}) check_meta_gradient(*net, t, ce, steps, 0.1);
}

TEST(MetaLearners, FirstOrderIsExactMinusTheHessianTerm) {
  // One inner step theta' = theta - a grad L_s(theta):
  //   exact = (I - a H_s(theta)) grad L_q(theta'),  first order = grad L_q(theta').
  Generator gen(13);
  auto net = tanh_mlp(gen);
  Task t = sinusoid_task(gen);
  const double a = 0.05;
  nn::ParamMap params = nn::params_of(*net);
  std::vector<std::string> names;
  for (const auto& [n, p] : params) names.push_back(n);
  auto meta_grad = [&](bool create_graph) {
    nn::ParamMap fast =
        meta::inner_loop(*net, params, t.support_x, t.support_y, mse, {1, a, create_graph});
    return nn::grad(mse(net->forward(t.query_x, fast), t.query_y), params);
  };
  nn::ParamMap exact = meta_grad(true), first = meta_grad(false);
  std::vector<Tensor> theta, v;
  for (const auto& n : names) {
    theta.push_back(params.at(n));
    v.push_back(first.at(n));
  }
  auto support_loss = [&](const func::Tensors& ws) {
    nn::ParamMap m;
    for (size_t i = 0; i < names.size(); ++i) m[names[i]] = ws[i];
    return mse(net->forward(t.support_x, m), t.support_y);
  };
  auto [y, hv] = func::hvp(support_loss, theta, v);
  for (size_t i = 0; i < names.size(); ++i) {
    auto want = (first.at(names[i]) - hv[i] * a).to_vector<double>();
    auto got = exact.at(names[i]).to_vector<double>();
    for (size_t k = 0; k < got.size(); ++k) EXPECT_NEAR(got[k], want[k], 1e-10) << names[i];
  }
}

TEST(MetaLearners, ReptileUpdateMatchesItsDefinition) {
  Generator gen(14);
  auto net = tanh_mlp(gen);
  std::vector<Task> tasks = {sinusoid_task(gen), sinusoid_task(gen)};
  meta::MetaOptions o;
  o.inner_steps = 3;
  o.inner_lr = 0.02;
  const double eps = 0.5;
  nn::ParamMap before = net->state_dict();
  // phi_i: 3 plain SGD steps on support + query of task i, from theta.
  std::vector<nn::ParamMap> phis;
  for (const Task& t : tasks) {
    nn::ParamMap w;
    for (const auto& [n, p] : before) w[n] = p.clone().requires_grad_(true);
    Tensor x = cat({t.support_x, t.query_x}), y = cat({t.support_y, t.query_y});
    for (int s = 0; s < 3; ++s) {
      nn::ParamMap g = nn::grad(mse(net->forward(x, w), y), w);
      for (auto& [n, p] : w) p = (p - g.at(n) * 0.02).detach().requires_grad_(true);
    }
    phis.push_back(w);
  }
  meta::Reptile reptile(net.ptr(), mse, o, eps);
  reptile.meta_step(tasks);
  for (const auto& [n, p] : nn::params_of(*net)) {
    Tensor want = before.at(n) + ((phis[0].at(n) - before.at(n)) + (phis[1].at(n) - before.at(n))) * (eps / 2);
    auto a = p.to_vector<double>(), b = want.to_vector<double>();
    for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-12) << n;
  }
}

TEST(MetaLearners, AnilAdaptsOnlyTheHead) {
  Generator gen(15);
  auto net = tanh_mlp(gen);
  Task t = sinusoid_task(gen);
  nn::ParamMap params = nn::params_of(*net);
  nn::ParamMap fast = meta::inner_loop(
      *net, params, t.support_x, t.support_y, mse, {2, 0.1, false},
      [](const std::string& n) { return n.rfind("head", 0) == 0; });
  for (const auto& [n, p] : fast) {
    const bool moved = (p - params.at(n)).to_vector<double>() !=
                       std::vector<double>(static_cast<size_t>(p.numel()), 0.0);
    EXPECT_EQ(moved, n.rfind("head", 0) == 0) << n;
  }
  meta::MetaOptions o;
  EXPECT_MG_ERROR(meta::ANIL(net.ptr(), mse, o, "nohead"), "[anil]");
  // A module path, not a string prefix: "he" is no module ("1" would not take "10.weight").
  EXPECT_MG_ERROR_HAS(meta::ANIL(net.ptr(), mse, o, "he"), "[anil]", "module path");
  EXPECT_NO_THROW(meta::ANIL(net.ptr(), mse, o, "head.weight"));  // one parameter
  EXPECT_NO_THROW(meta::ANIL(net.ptr(), mse, o, "head."));        // a plain prefix
}

TEST(MetaLearners, MetaSgdLearnsItsLearningRates) {
  Generator gen(16);
  auto net = tanh_mlp(gen);
  meta::MetaOptions o;
  o.inner_lr = 0.05;
  o.meta_lr = 0.01;
  meta::MetaSGD learner(net.ptr(), mse, o);
  const double lr0 = learner.learning_rates().begin()->second.to_vector<double>()[0];
  EXPECT_DOUBLE_EQ(lr0, 0.05);
  learner.meta_step({sinusoid_task(gen), sinusoid_task(gen)});
  bool changed = false;
  for (const auto& [n, lr] : learner.learning_rates())
    for (double v : lr.to_vector<double>()) changed = changed || v != 0.05;
  EXPECT_TRUE(changed);
  // The learned rates round-trip through extra_state.
  nn::ParamMap st = learner.extra_state();
  meta::MetaSGD other(tanh_mlp(gen).ptr(), mse, o);
  other.load_extra_state(st);
  for (const auto& [n, lr] : learner.learning_rates())
    EXPECT_EQ(lr.to_vector<double>(), other.learning_rates().at(n).to_vector<double>());
}

// The task-batched meta-step (MetaOptions::batch_tasks) computes the per-task loop's
// meta-gradient: MAML (2 inner steps, second order), FOMAML, ANIL and Meta-SGD.
TEST(MetaLearners, TaskBatchedStepEqualsPerTaskLoop) {
  struct Case {
    std::string algo;
    bool first_order;
  };
  for (const Case& c : std::vector<Case>{{"maml", false}, {"fomaml", true}, {"anil", false},
                                         {"metasgd", false}}) {
    Generator gen(17);
    auto a = tanh_mlp(gen);
    auto b = tanh_mlp(gen);
    b->load_state_dict(a->state_dict());
    std::vector<Task> tasks = {sinusoid_task(gen), sinusoid_task(gen), sinusoid_task(gen)};
    meta::MetaOptions o;
    o.inner_steps = 2;
    o.inner_lr = 0.05;
    o.first_order = c.first_order;
    meta::MetaOptions ob = o;
    ob.batch_tasks = true;
    auto make = [&](nn::Sequential& net, const meta::MetaOptions& opts)
        -> std::unique_ptr<meta::MetaLearner> {
      if (c.algo == "anil") return std::make_unique<meta::ANIL>(net.ptr(), mse, opts, "head");
      if (c.algo == "metasgd") return std::make_unique<meta::MetaSGD>(net.ptr(), mse, opts);
      return std::make_unique<meta::MAML>(net.ptr(), mse, opts);
    };
    auto loop = make(a, o);
    auto batched = make(b, ob);
    const meta::StepResult ra = loop->meta_step(tasks), rb = batched->meta_step(tasks);
    EXPECT_NEAR(ra.loss, rb.loss, 1e-12 * (1 + std::fabs(ra.loss))) << c.algo;
    auto pa = a->named_parameters(), pb = b->named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
      ASSERT_TRUE(pa[i].second.grad().defined()) << c.algo << " " << pa[i].first;
      auto ga = pa[i].second.grad().to_vector<double>(), gb = pb[i].second.grad().to_vector<double>();
      for (size_t k = 0; k < ga.size(); ++k)
        EXPECT_NEAR(gb[k], ga[k], 1e-12 * (1 + std::fabs(ga[k]))) << c.algo << " " << pa[i].first;
    }
    if (c.algo == "metasgd") {
      auto& la = static_cast<meta::MetaSGD&>(*loop).learning_rates();
      auto& lb = static_cast<meta::MetaSGD&>(*batched).learning_rates();
      for (const auto& [n, lr] : la) {
        auto ga = lr.grad().to_vector<double>(), gb = lb.at(n).grad().to_vector<double>();
        for (size_t k = 0; k < ga.size(); ++k)
          EXPECT_NEAR(gb[k], ga[k], 1e-12 * (1 + std::fabs(ga[k]))) << "lr of " << n;
      }
    }
  }
}

// Task-batched with a LayerNorm in the body, adapted (MAML) or not (ANIL: the body is stacked
// too): LayerNorm takes stacked weights, its affine part per task; same as the loop.
TEST(MetaLearners, TaskBatchedStepWithLayerNormEqualsPerTaskLoop) {
  for (bool anil : {false, true}) {
    Generator gen(41);
    auto make_net = [&] {
      Generator g(3);
      nn::Sequential net;
      net->push_back("0", std::make_shared<nn::LinearImpl>(nn::LinearOptions(1, 8), &g));
      net->push_back("1", std::make_shared<nn::LayerNormImpl>(nn::LayerNormOptions({8})));
      net->push_back("2", std::make_shared<nn::TanhImpl>());
      net->push_back("head", std::make_shared<nn::LinearImpl>(nn::LinearOptions(8, 1), &g));
      net->to(DType::Float64);
      // LayerNorm starts at weight 1, bias 0: move them so the affine part matters.
      NoGradGuard ng;
      for (auto& [n, p] : net->named_parameters())
        if (n.rfind("1.", 0) == 0) p.copy_(randn(p.shape(), DType::Float64, &g));
      return net;
    };
    nn::Sequential a = make_net(), b = make_net();
    std::vector<Task> tasks = {sinusoid_task(gen), sinusoid_task(gen), sinusoid_task(gen)};
    meta::MetaOptions o;
    o.inner_steps = 2;
    o.inner_lr = 0.05;
    meta::MetaOptions ob = o;
    ob.batch_tasks = true;
    std::unique_ptr<meta::MAML> loop, batched;
    if (anil) {
      loop = std::make_unique<meta::ANIL>(a.ptr(), mse, o, "head");
      batched = std::make_unique<meta::ANIL>(b.ptr(), mse, ob, "head");
    } else {
      loop = std::make_unique<meta::MAML>(a.ptr(), mse, o);
      batched = std::make_unique<meta::MAML>(b.ptr(), mse, ob);
    }
    const meta::StepResult ra = loop->meta_step(tasks), rb = batched->meta_step(tasks);
    EXPECT_NEAR(ra.loss, rb.loss, 1e-12 * (1 + std::fabs(ra.loss))) << anil;
    auto pa = a->named_parameters(), pb = b->named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
      auto ga = pa[i].second.grad().to_vector<double>(), gb = pb[i].second.grad().to_vector<double>();
      for (size_t k = 0; k < ga.size(); ++k)
        EXPECT_NEAR(gb[k], ga[k], 1e-12 * (1 + std::fabs(ga[k]))) << anil << " " << pa[i].first;
    }
  }
}

// Tied weights (one Linear used twice) stay tied through the inner steps, as with
// torch.func.functional_call's tie_weights: MAML's exact meta-gradient equals the one of the
// model written with a single W and b, per task and task-batched; Reptile moves them once.
TEST(MetaLearners, TiedWeightsStayTiedThroughTheInnerLoop) {
  Generator gen(31);
  std::vector<Task> tasks = {sinusoid_task(gen), sinusoid_task(gen)};
  auto tied = [&] {
    Generator g(5);
    nn::Linear lin(std::make_shared<nn::LinearImpl>(nn::LinearOptions(1, 1), &g));
    nn::Sequential net(lin, nn::Tanh(), lin);
    net->to(DType::Float64);
    return net;
  };
  // Reference: f(x) = tanh(x W^T + b) W^T + b with one W and b, inner steps by hand.
  nn::Sequential ref_net = tied();
  const Tensor w0 = ref_net->named_parameters()[0].second.detach().clone();
  const Tensor b0 = ref_net->named_parameters()[1].second.detach().clone();
  Tensor w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
  auto f = [](const Tensor& x, const Tensor& ww, const Tensor& bb) {
    return matmul(tanh(matmul(x, ww.t()) + bb), ww.t()) + bb;
  };
  Tensor total;
  for (const Task& t : tasks) {
    Tensor fw = w, fb = b;
    for (int s = 0; s < 2; ++s) {
      auto g = grad({mse(f(t.support_x, fw, fb), t.support_y)}, {fw, fb}, {}, std::nullopt, true);
      fw = fw - g[0] * 0.1;
      fb = fb - g[1] * 0.1;
    }
    Tensor l = mse(f(t.query_x, fw, fb), t.query_y) * 0.5;
    total = total.defined() ? total + l : l;
  }
  total.backward();
  for (bool batched : {false, true}) {
    nn::Sequential net = tied();
    meta::MetaOptions o;
    o.inner_steps = 2;
    o.inner_lr = 0.1;
    o.batch_tasks = batched;
    meta::MAML maml(net.ptr(), mse, o);
    maml.meta_step(tasks);
    auto ps = net->named_parameters();
    ASSERT_EQ(ps.size(), 2u);
    EXPECT_NEAR(ps[0].second.grad().item<double>(), w.grad().item<double>(), 1e-12) << batched;
    EXPECT_NEAR(ps[1].second.grad().item<double>(), b.grad().item<double>(), 1e-12) << batched;
  }
  // Reptile: the tied weight moves once by outer_step * (phi - theta), phi from tied steps.
  nn::Sequential rnet = tied();
  meta::MetaOptions ro;
  ro.inner_steps = 1;
  ro.inner_lr = 0.1;
  meta::Reptile reptile(rnet.ptr(), mse, ro, 1.0);
  reptile.meta_step({tasks[0]});
  const Task& t = tasks[0];
  Tensor rw = w0.clone().requires_grad_(true), rb = b0.clone().requires_grad_(true);
  Tensor x = cat({t.support_x, t.query_x}, 0), y = cat({t.support_y, t.query_y}, 0);
  auto g = grad({mse(f(x, rw, rb), y)}, {rw, rb});
  EXPECT_NEAR(rnet->named_parameters()[0].second.item<double>(),
              (w0 - g[0] * 0.1).item<double>(), 1e-12);
  // A filter that adapts one place of a tied tensor adapts it everywhere (one parameter).
  nn::Sequential fnet = tied();
  const nn::ParamMap fast = meta::inner_loop(
      *fnet, nn::params_of(*fnet), t.support_x, t.support_y, mse, {2, 0.1, false},
      [](const std::string& n) { return n.rfind("0.", 0) == 0; });
  EXPECT_TRUE(fast.at("0.weight").is_same(fast.at("2.weight")));
  EXPECT_FALSE(fast.at("0.weight").is_same(fnet->named_parameters()[0].second));
  // Meta-SGD: tied names share one rate; a checkpoint whose entries for them differ is refused.
  nn::Sequential mnet = tied();
  meta::MetaSGD msgd(mnet.ptr(), mse, meta::MetaOptions{});
  EXPECT_TRUE(msgd.learning_rates().at("0.bias").is_same(msgd.learning_rates().at("2.bias")));
  nn::ParamMap state = msgd.extra_state();
  msgd.load_extra_state(state);
  state["lr.2.bias"] = state.at("lr.2.bias") + 1.0;
  EXPECT_MG_ERROR_HAS(msgd.load_extra_state(state), "[metasgd]", "differ in the checkpoint");
  {  // a diverged run's NaN rates reload as saved (NaN is not "differing" here)
    NoGradGuard ng;
    Tensor(msgd.learning_rates().at("0.bias")).fill_(std::nan(""));
  }
  msgd.load_extra_state(msgd.extra_state());
}

// The same for the conv-4 nets (Note [Task-batched convolution]): convolutions as one grouped
// convolution, batch norm per task and channel, pooling and the head on the stack. Both
// variants, second and first order, 2 inner steps, float64, 3 tasks of 3-way 2-shot; MAML,
// and ANIL (whose body, not adapted, is stacked as well: conv and batch norm take a stacked
// input only with stacked weights).
TEST(MetaLearners, TaskBatchedConv4StepEqualsPerTaskLoop) {
  for (bool anil : {false, true})
  for (bool strided : {false, true})
    for (bool first_order : {false, true}) {
      Generator gen(23);
      meta::Conv4Options co;
      co.n_way = 3;
      co.hidden = 4;
      co.image_size = 16;
      co.strided = strided;
      co.track_running_stats = false;
      auto a = meta::conv4(co, &gen);
      auto b = meta::conv4(co, &gen);
      a->to(DType::Float64);
      b->to(DType::Float64);
      b->load_state_dict(a->state_dict());
      std::vector<Task> tasks;
      for (int t = 0; t < 3; ++t) tasks.push_back(conv_task(gen, DType::Float64));
      meta::MetaOptions o;
      o.inner_steps = 2;
      o.inner_lr = 0.1;
      o.first_order = first_order;
      o.classification = true;
      meta::MetaOptions ob = o;
      ob.batch_tasks = true;
      std::unique_ptr<meta::MAML> loop, batched;
      if (anil) {
        loop = std::make_unique<meta::ANIL>(a.ptr(), ce, o, "head");
        batched = std::make_unique<meta::ANIL>(b.ptr(), ce, ob, "head");
      } else {
        loop = std::make_unique<meta::MAML>(a.ptr(), ce, o);
        batched = std::make_unique<meta::MAML>(b.ptr(), ce, ob);
      }
      const std::string what = std::string(anil ? "anil " : "maml ") +
                               (strided ? "strided" : "max-pool") +
                               (first_order ? " first order" : " second order");
      const meta::StepResult ra = loop->meta_step(tasks), rb = batched->meta_step(tasks);
      EXPECT_NEAR(ra.loss, rb.loss, 1e-12 * (1 + std::fabs(ra.loss))) << what;
      EXPECT_NEAR(ra.accuracy, rb.accuracy, 1e-12) << what;
      auto pa = a->named_parameters(), pb = b->named_parameters();
      ASSERT_EQ(pa.size(), pb.size());
      for (size_t i = 0; i < pa.size(); ++i) {
        ASSERT_TRUE(pb[i].second.grad().defined()) << what << " " << pa[i].first;
        auto ga = pa[i].second.grad().to_vector<double>(), gb = pb[i].second.grad().to_vector<double>();
        for (size_t k = 0; k < ga.size(); ++k)
          EXPECT_NEAR(gb[k], ga[k], 1e-10 * (1 + std::fabs(ga[k]))) << what << " " << pa[i].first;
      }
    }
}

TEST(MetaLearners, TaskBatchedConv4NeedsBatchNormWithoutRunningStats) {
  Generator gen(24);
  meta::Conv4Options co;
  co.n_way = 2;
  co.hidden = 2;
  co.image_size = 16;  // running statistics tracked (the default)
  auto net = meta::conv4(co, &gen);
  meta::MetaOptions o;
  o.batch_tasks = true;
  o.classification = true;
  meta::MAML maml(net.ptr(), ce, o);
  Task k;
  k.support_x = randn({2, 1, 16, 16}, DType::Float32, &gen);
  k.support_y = tensor(std::vector<int64_t>{0, 1}, {2});
  k.query_x = k.support_x;
  k.query_y = k.support_y;
  EXPECT_MG_ERROR_HAS(maml.meta_step({k, k}), "[BatchNorm2d]", "track_running_stats(false)");
}

TEST(MetaLearners, TaskBatchedStepRejectsUnequalTasksAndReptile) {
  Generator gen(18);
  auto net = tanh_mlp(gen);
  meta::MetaOptions o;
  o.batch_tasks = true;
  meta::MAML maml(net.ptr(), mse, o);
  Task small = sinusoid_task(gen);
  Task other = small;
  other.query_x = cat({small.query_x, small.query_x});
  other.query_y = cat({small.query_y, small.query_y});
  EXPECT_MG_ERROR_HAS(maml.meta_step({small, other}), "[maml]", "tasks of equal shapes: task 1");
  EXPECT_MG_ERROR_HAS(meta::Reptile(net.ptr(), mse, o), "[reptile]", "batch_tasks");
}

// Note [Tasks on threads]: task_threads runs the per-task loop's tasks side by side, each on one
// thread with single-threaded kernels, and sums their meta-gradients (Reptile: their moves) in
// task order: the loop's result on one OpenMP thread, exactly, for any count >= 2. Every
// learner on the MLP, and MAML on the max-pool conv-4 net (batch norm without running
// statistics), second and first order, in float64 and float32.
namespace {
struct ThreadedRun {
  meta::StepResult r;
  // every meta-parameter's gradient (optimizer order), then the parameters after the step
  std::vector<std::vector<double>> grads;
};
ThreadedRun run_step(std::shared_ptr<nn::Module> net, const std::string& algo,
                     const meta::MetaOptions& o, const meta::LossFn& loss,
                     const std::vector<Task>& tasks) {
  std::unique_ptr<meta::MetaLearner> l;
  if (algo == "anil") l = std::make_unique<meta::ANIL>(net, loss, o, "head");
  else if (algo == "metasgd") l = std::make_unique<meta::MetaSGD>(net, loss, o);
  else if (algo == "reptile") l = std::make_unique<meta::Reptile>(net, loss, o, 0.5);
  else l = std::make_unique<meta::MAML>(net, loss, o);
  ThreadedRun out{l->meta_step(tasks), {}};
  if (l->meta_optimizer())
    for (const Tensor& p : l->meta_optimizer()->parameters())
      out.grads.push_back(p.grad().defined() ? p.grad().to(DType::Float64).to_vector<double>()
                                             : std::vector<double>{});
  for (const Tensor& p : net->parameters())  // after the update
    out.grads.push_back(p.to(DType::Float64).to_vector<double>());
  return out;
}
}  // namespace

TEST(MetaLearners, TasksOnThreadsEqualTheLoopOnOneThread) {
  const int before = omp_get_max_threads();
  for (const std::string algo :
       {"maml", "fomaml", "anil", "metasgd", "reptile", "conv4", "conv4_fo"}) {
    const bool conv = algo.rfind("conv4", 0) == 0;
    for (DType dtype : {DType::Float64, DType::Float32}) {
      Generator gen(31);
      meta::Conv4Options co;
      co.n_way = 3;
      co.hidden = 8;
      co.image_size = 16;
      co.track_running_stats = false;
      std::vector<Task> tasks;
      for (int t = 0; t < 5; ++t)
        tasks.push_back(conv ? conv_task(gen, dtype) : sinusoid_task(gen, dtype));
      meta::MetaOptions o;
      o.inner_steps = 2;
      o.inner_lr = conv ? 0.1 : 0.05;
      o.first_order = algo == "fomaml" || algo == "conv4_fo";
      o.classification = conv;
      auto fresh = [&] {
        Generator g(5);
        std::shared_ptr<nn::Module> net = conv ? meta::conv4(co, &g).ptr() : tanh_mlp(g).ptr();
        net->to(dtype);
        return net;
      };
      const meta::LossFn loss = conv ? meta::LossFn(ce) : meta::LossFn(mse);
      const std::string what = algo + " " + dtype_name(dtype);
      omp_set_num_threads(1);
      const ThreadedRun loop = run_step(fresh(), algo, o, loss, tasks);
      omp_set_num_threads(before);
      for (int threads : {2, 3}) {
        meta::MetaOptions ot = o;
        ot.task_threads = threads;
        const ThreadedRun par = run_step(fresh(), algo, ot, loss, tasks);
        EXPECT_EQ(par.r.loss, loop.r.loss) << what << " " << threads;
        if (conv) {
          EXPECT_EQ(par.r.accuracy, loop.r.accuracy) << what;
        }
        ASSERT_EQ(par.grads.size(), loop.grads.size()) << what;
        for (size_t i = 0; i < par.grads.size(); ++i)
          EXPECT_EQ(par.grads[i], loop.grads[i]) << what << " " << threads << " parameter " << i;
      }
    }
  }
}

// The claim under Note [Tasks on threads], with plain std::threads (which ThreadSanitizer
// follows, unlike libgomp's barriers): MAML task steps on one shared conv-4 from two threads at
// once, after the leaves' accumulators were made, give each task's sequential meta-gradient.
// Built with -fsanitize=thread and run with OMP_NUM_THREADS=1, this test reports no race
// (docs/performance.md, session 6); without the gradient_edge calls it reports the one in
// gradient_edge's lazy accumulator.
TEST(MetaLearners, TaskStepsOnSharedModelFromStdThreads) {
  Generator gen(33);
  meta::Conv4Options co;
  co.n_way = 3;
  co.hidden = 4;
  co.image_size = 16;
  co.track_running_stats = false;
  auto net = meta::conv4(co, &gen);
  net->to(DType::Float64);
  std::vector<Task> tasks;
  for (int t = 0; t < 4; ++t) tasks.push_back(conv_task(gen, DType::Float64));
  const std::vector<Tensor> params = net->parameters();
  std::vector<autograd::Edge> edges;
  for (const Tensor& p : params) edges.push_back(autograd::gradient_edge(p));
  auto task_grad = [&](size_t i) {
    const Task& t = tasks[i];
    nn::ParamMap fast = meta::inner_loop(*net, nn::params_of(*net), t.support_x, t.support_y, ce,
                                         {1, 0.1, /*create_graph=*/true});
    Tensor l = ce(net->forward(t.query_x, fast), t.query_y);
    return grad({l}, params, {}, std::nullopt, false, /*allow_unused=*/true);
  };
  // Kernels and BLAS on one thread everywhere (as parallel_for_each runs them), so that both
  // runs take the same code paths.
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  set_blas_num_threads(1);
  std::vector<std::vector<Tensor>> seq, par(tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) seq.push_back(task_grad(i));
  auto worker = [&](size_t first) {
    omp_set_num_threads(1);  // a new thread starts from the environment's count
    par[first] = task_grad(first);
    par[first + 2] = task_grad(first + 2);
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  set_blas_num_threads(0);
  omp_set_num_threads(before);
  for (size_t i = 0; i < tasks.size(); ++i)
    for (size_t j = 0; j < params.size(); ++j)
      EXPECT_EQ(par[i][j].to_vector<double>(), seq[i][j].to_vector<double>()) << i << " " << j;
}

TEST(MetaLearners, TasksOnThreadsRefuseSharedState) {
  Generator gen(32);
  meta::Conv4Options co;
  co.n_way = 2;
  co.hidden = 2;
  co.image_size = 16;  // running statistics tracked (the default)
  meta::MetaOptions o;
  o.task_threads = 2;
  o.classification = true;
  Task k;
  k.support_x = randn({2, 1, 16, 16}, DType::Float32, &gen);
  k.support_y = tensor(std::vector<int64_t>{0, 1}, {2});
  k.query_x = k.support_x;
  k.query_y = k.support_y;
  meta::MAML tracked(meta::conv4(co, &gen).ptr(), ce, o);
  EXPECT_MG_ERROR_HAS(tracked.meta_step({k, k}), "[maml]", "track_running_stats(false)");

  nn::Sequential dropped;
  dropped->push_back("0", std::make_shared<nn::LinearImpl>(nn::LinearOptions(1, 4), &gen));
  dropped->push_back("1", std::make_shared<nn::DropoutImpl>(0.5));
  dropped->push_back("2", std::make_shared<nn::LinearImpl>(nn::LinearOptions(4, 1), &gen));
  meta::MetaOptions om;
  om.task_threads = 2;
  meta::MAML with_dropout(dropped.ptr(), mse, om);
  Task s = sinusoid_task(gen, DType::Float32);
  EXPECT_MG_ERROR_HAS(with_dropout.meta_step({s, s}), "[maml]", "dropout ('1')");

  // An error in one task comes back from meta_step (here a shape mismatch in task 1).
  auto mlp = tanh_mlp(gen);
  meta::MetaOptions od;
  od.task_threads = 2;
  meta::MAML maml(mlp.ptr(), mse, od);
  Task good = sinusoid_task(gen), bad = good;
  bad.query_x = ones({10, 3}, DType::Float64);
  EXPECT_THROW(maml.meta_step({good, bad, good}), Error);

  meta::Reptile reptile(meta::conv4(co, &gen).ptr(), ce, o, 0.1);
  EXPECT_MG_ERROR_HAS(reptile.meta_step({k, k}), "[reptile]", "track_running_stats(false)");
  meta::MetaOptions zero;
  zero.task_threads = 0;
  EXPECT_MG_ERROR_HAS(meta::MAML(mlp.ptr(), mse, zero), "[meta]", "task_threads must be at least 1");
}

TEST(MetaLearners, SummaryIsMeanWithNormalConfidenceInterval) {
  auto s = meta::summarize({1.0, 2.0, 3.0, 4.0});
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  const double sd = std::sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3);
  EXPECT_NEAR(s.std, sd, 1e-15);
  EXPECT_NEAR(s.ci95, 1.96 * sd / 2, 1e-15);
  EXPECT_EQ(s.n, 4);
}

TEST(MetaLearners, MamlOnSinusoidsLearnsToAdapt) {
  // A short run: after meta-training, one inner step on 10 points fits new sinusoids
  // better than it did at initialisation (measured on the same 50 held-out tasks).
  Generator gen(17);
  auto net = meta::sinusoid_mlp(40, &gen);
  meta::MetaOptions o;
  o.inner_lr = 0.01;
  o.meta_lr = 1e-3;
  meta::MAML maml(net.ptr(), mse, o);
  meta::SinusoidTasks dist;
  auto task_at = [&](Generator& g) {
    auto task = dist.sample_task(g);
    auto [xs, ys] = task.sample(10, g, DType::Float32);
    auto [xq, yq] = task.sample(10, g, DType::Float32);
    return Task{xs, ys, xq, yq};
  };
  Generator eval_a(1234), eval_b(1234);
  auto before = meta::evaluate(maml, [&](int) { return task_at(eval_a); }, 50, 1);
  for (int it = 0; it < 1500; ++it) {
    std::vector<Task> batch;
    for (int k = 0; k < 5; ++k) batch.push_back(task_at(gen));
    maml.meta_step(batch);
  }
  auto after = meta::evaluate(maml, [&](int) { return task_at(eval_b); }, 50, 1);
  EXPECT_LT(after.loss.mean, 0.7 * before.loss.mean)
      << "post-update MSE " << before.loss.mean << " -> " << after.loss.mean;
}

// evaluate runs the model in eval mode, as PyTorch's model.eval() around a test loop: a test
// task updates no running statistic, BNMode::RunningStats normalises with them (the result is
// that of adapt_and_evaluate in eval mode, and differs from train mode's), and the model returns
// to train mode after.
TEST(MetaLearners, EvaluateRunsTheModelInEvalMode) {
  for (nn::BNMode mode : {nn::BNMode::RunningStats, nn::BNMode::BatchStats}) {
    SCOPED_TRACE(mode == nn::BNMode::RunningStats ? "RunningStats" : "BatchStats");
    Generator gen(31);
    meta::Conv4Options co;
    co.n_way = 2;
    co.hidden = 3;
    co.image_size = 16;
    co.bn_mode = mode;
    auto net = meta::conv4(co, &gen);
    meta::MetaOptions o;
    o.classification = true;
    meta::MAML maml(net.ptr(), ce, o);
    Task k;
    k.support_x = randn({4, 1, 16, 16}, DType::Float32, &gen) * 3 + 2;
    k.support_y = tensor(std::vector<int64_t>{0, 1, 0, 1}, {4});
    k.query_x = randn({4, 1, 16, 16}, DType::Float32, &gen) * 3 + 2;
    k.query_y = k.support_y;
    std::vector<std::vector<float>> before;
    for (const auto& [name, b] : net->named_buffers())
      if (b.dtype() == DType::Float32) before.push_back(b.to_vector<float>());
    ASSERT_FALSE(before.empty());
    const meta::EvalResult r = meta::evaluate(maml, [&](int) { return k; }, 3, 2);
    EXPECT_TRUE(net->is_training());
    size_t i = 0;
    for (const auto& [name, b] : net->named_buffers())
      if (b.dtype() == DType::Float32) {
        EXPECT_EQ(b.to_vector<float>(), before[i++]) << name;
      }
    net->eval();
    const double eval_loss = maml.adapt_and_evaluate(k, 2).loss;
    net->train();
    const double train_loss = maml.adapt_and_evaluate(k, 2).loss;
    EXPECT_EQ(r.loss.mean, eval_loss);
    if (mode == nn::BNMode::RunningStats)
      EXPECT_GT(std::fabs(eval_loss - train_loss), 1e-3 * std::fabs(train_loss));
    else
      EXPECT_EQ(eval_loss, train_loss);
  }
}

TEST(MetaLearners, OneTaskHasNoConfidenceInterval) {
  const auto one = meta::summarize({3.0});
  EXPECT_DOUBLE_EQ(one.mean, 3.0);
  EXPECT_EQ(one.n, 1);
  EXPECT_TRUE(std::isnan(one.ci95));
  EXPECT_TRUE(std::isnan(one.std));
  const auto none = meta::summarize({});
  EXPECT_EQ(none.n, 0);
  EXPECT_TRUE(std::isnan(none.mean));
  EXPECT_TRUE(std::isnan(none.ci95));
}

// Missing callables and missing per-parameter rates are metagrad::Errors, not
// std::bad_function_call or std::out_of_range.
TEST(MetaLearners, MissingLossTaskSourceOrRateIsAnError) {
  Generator gen(3);
  auto net = tanh_mlp(gen);
  meta::MetaOptions o;
  EXPECT_MG_ERROR_HAS(meta::MAML(net.ptr(), nullptr, o), "[meta]", "no loss function");
  meta::MAML maml(net.ptr(), mse, o);
  EXPECT_MG_ERROR_HAS(meta::evaluate(maml, nullptr, 2, 1), "[evaluate]", "no task source");
  const Tensor x = randn({4, 1}, DType::Float64, &gen), y = randn({4, 1}, DType::Float64, &gen);
  nn::ParamMap params = nn::params_of(*net);
  EXPECT_MG_ERROR_HAS(meta::inner_loop(*net, params, x, y, nullptr, {1, 0.1, false}),
                      "[inner_loop]", "no loss function");
  nn::ParamMap lrs;
  for (const auto& [name, p] : params) lrs[name] = full_like(p, 0.1);
  lrs.erase("head.bias");
  EXPECT_MG_ERROR_HAS(meta::inner_loop(*net, params, x, y, mse, {1, 0.1, false}, nullptr, &lrs),
                      "[inner_loop]", "no learning rate for parameter 'head.bias'");
}

TEST(MetaLearners, Conv4RefusesImageSizesItCannotTake) {
  Generator gen(1);
  meta::Conv4Options o;
  for (int64_t size : {int64_t{0}, int64_t{-8}}) {
    o.image_size = size;
    EXPECT_MG_ERROR_HAS(meta::conv4(o, &gen), "[conv4]", "image_size " + std::to_string(size));
  }
  o.strided = false;
  o.image_size = 8;
  EXPECT_MG_ERROR_HAS(meta::conv4(o, &gen), "[conv4]", "needs image_size >= 16, got 8");
}
