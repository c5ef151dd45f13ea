// End-to-end agreement of the CPU and the GPU in float64: a few optimizer steps of a small
// conv -> batch-norm -> ReLU -> max-pool -> linear network (the max-pool conv-4 of
// meta/models.h), and exact second-order MAML meta-gradients, hand-written and through
// meta::MAML. Both devices start from the same weights (one generator seed, then
// Module::to(Device)) and see the same data, so losses, gradients, weights and batch-norm
// statistics must agree to rounding. Every test skips without a GPU.
#include <gtest/gtest.h>

#include <metagrad/metagrad.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda_test_util.h"

using namespace metagrad;
namespace F = metagrad::nn::functional;
using mg_cuda_test::allclose;

namespace {

constexpr double kRtol = 1e-8;   // float64 on two devices: summation order only
constexpr double kAtol = 1e-12;  // for values that are (nearly) zero
// Note [Adam amplifies noise]: a conv bias followed by batch norm (batch statistics) has an
// exactly zero gradient in exact arithmetic, so both devices compute rounding noise (~1e-15)
// for it, each its own. Adam's step lr * g / (|g| + eps) turns noise g << eps into
// lr * g / eps: with the default eps = 1e-8 the two devices' weights would part by ~1e-9
// after one step, a true difference of nothing. An eps of 1e-3 keeps the noise below 1e-13
// and leaves the steps of real gradients (1e-3 .. 1e-1 here) Adam-like.
constexpr double kAdamEps = 1e-3;

// The max-pool conv-4 on 16x16 inputs (16 -> 8 -> 4 -> 2 -> 1), 8 channels, 5 classes, in
// float64 on `device`; the same weights for the same `seed` on every device.
nn::Sequential small_conv4(Device device, nn::BNMode bn_mode, uint64_t seed = 1234,
                           bool track_running_stats = true) {
  meta::Conv4Options o;
  o.track_running_stats = track_running_stats;
  o.n_way = 5;
  o.in_channels = 1;
  o.hidden = 8;
  o.strided = false;
  o.image_size = 16;
  o.bn_mode = bn_mode;
  Generator gen(seed);
  nn::Sequential m = meta::conv4(o, &gen);
  m->to(DType::Float64);
  m->to(device);
  return m;
}

// Every parameter and buffer of the two models agree (`gpu_model`'s are on the GPU).
void expect_same_state(const nn::Module& gpu_model, const nn::Module& cpu_model,
                       const std::string& when) {
  const nn::ParamMap g = gpu_model.state_dict(), c = cpu_model.state_dict();
  ASSERT_EQ(g.size(), c.size()) << when;
  for (const auto& [name, ct] : c) {
    ASSERT_TRUE(g.count(name)) << when << ": " << name << " missing on the GPU model";
    const Tensor& gt = g.at(name);
    EXPECT_TRUE(gt.device().is_cuda()) << when << ": " << name << " is on " << gt.device().str();
    EXPECT_EQ(gt.dtype(), ct.dtype()) << when << ": " << name;
    EXPECT_TRUE(allclose(gt, ct, kRtol, kAtol)) << when << ": " << name;
  }
}

void expect_near_rel(double got, double want, const std::string& what) {
  EXPECT_NEAR(got, want, kRtol * std::abs(want) + kAtol) << what;
}

class CudaTraining : public mg_cuda_test::CudaTest {};

enum class Opt { SGD, Adam };

// Three steps on a fixed batch, the same on both devices; losses compared at every step,
// weights and running statistics after the last, and an eval-mode forward (running
// statistics) at the end.
void train_and_compare(Opt which) {
  const Device gpu = Device::cuda();
  nn::Sequential mc = small_conv4(Device::cpu(), nn::BNMode::RunningStats);
  nn::Sequential mg = small_conv4(gpu, nn::BNMode::RunningStats);
  for (const Tensor& p : mg->parameters()) ASSERT_TRUE(p.device().is_cuda());
  expect_same_state(*mg, *mc, "at the start");

  Generator dgen(99);
  const Tensor xc = randn({8, 1, 16, 16}, TensorOptions(DType::Float64), &dgen);
  const Tensor yc = randint(0, 5, {8}, TensorOptions(DType::Int64), &dgen);
  const Tensor xg = xc.to(gpu), yg = yc.to(gpu);

  auto make_opt = [which](const nn::Sequential& m) -> std::unique_ptr<optim::Optimizer> {
    if (which == Opt::SGD)
      return std::make_unique<optim::SGD>(m->parameters(),
                                          optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-3));
    return std::make_unique<optim::Adam>(m->parameters(), optim::AdamOptions(1e-2).eps(kAdamEps));
  };
  std::unique_ptr<optim::Optimizer> oc = make_opt(mc), og = make_opt(mg);

  for (int step = 0; step < 3; ++step) {
    const std::string when = "step " + std::to_string(step);
    oc->zero_grad();
    og->zero_grad();
    const Tensor lc = F::cross_entropy(mc->forward(xc), yc);
    const Tensor lg = F::cross_entropy(mg->forward(xg), yg);
    ASSERT_TRUE(lg.device().is_cuda());
    lc.backward();
    lg.backward();
    expect_near_rel(lg.item<double>(), lc.item<double>(), when + ": loss");
    const auto pc = mc->named_parameters(), pg = mg->named_parameters();
    for (size_t i = 0; i < pc.size(); ++i) {
      ASSERT_TRUE(pg[i].second.grad().defined()) << when << ": " << pg[i].first;
      EXPECT_TRUE(pg[i].second.grad().device().is_cuda()) << when << ": " << pg[i].first;
      EXPECT_TRUE(allclose(pg[i].second.grad(), pc[i].second.grad(), kRtol, kAtol))
          << when << ": gradient of " << pc[i].first;
    }
    oc->step();
    og->step();
  }
  expect_same_state(*mg, *mc, "after three steps");

  mc->eval();
  mg->eval();
  NoGradGuard ng;
  EXPECT_TRUE(allclose(mg->forward(xg), mc->forward(xc), kRtol, kAtol)) << "eval forward";
}

TEST_F(CudaTraining, SgdStepsMatchCpu) {
  train_and_compare(Opt::SGD);
}

TEST_F(CudaTraining, AdamStepsMatchCpu) {
  train_and_compare(Opt::Adam);
}

// 0, 1, 2, 3, 4, 0, 1, ... (n labels, int64).
Tensor labels(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i % 5;
  return tensor(v);
}

// A 5-way task: `shots` examples per class, labels 0..4 repeated, images from `gen`.
meta::Task make_task(Generator& gen, int64_t shots, int64_t queries) {
  meta::Task t;
  t.support_x = randn({5 * shots, 1, 16, 16}, TensorOptions(DType::Float64), &gen);
  t.support_y = labels(5 * shots);
  t.query_x = randn({5 * queries, 1, 16, 16}, TensorOptions(DType::Float64), &gen);
  t.query_y = labels(5 * queries);
  return t;
}

meta::Task task_to(const meta::Task& t, Device d) {
  return {t.support_x.to(d), t.support_y.to(d), t.query_x.to(d), t.query_y.to(d)};
}

// The exact second-order MAML meta-gradient written out: one inner step
//   phi = theta - lr * dL_support(theta)/dtheta     (create_graph: phi is a function of theta)
// and the gradient of L_query(phi) w.r.t. theta, through the inner gradient (Hessian terms of
// conv, batch norm, ReLU and max-pool included).
struct MetaGrad {
  double inner_loss = 0, outer_loss = 0;
  nn::ParamMap grads;
};

MetaGrad meta_gradient(nn::Module& model, const meta::Task& t, double lr) {
  const nn::ParamMap theta = nn::params_of(model);
  const Tensor inner = F::cross_entropy(model.forward(t.support_x, theta), t.support_y);
  const nn::ParamMap g = nn::grad(inner, theta, /*create_graph=*/true);
  nn::ParamMap phi;
  for (const auto& [name, p] : theta) phi[name] = p - g.at(name) * lr;
  const Tensor outer = F::cross_entropy(model.forward(t.query_x, phi), t.query_y);
  MetaGrad r;
  r.inner_loss = inner.item<double>();
  r.outer_loss = outer.item<double>();
  r.grads = nn::grad(outer, theta);
  return r;
}

TEST_F(CudaTraining, SecondOrderMamlMetaGradientMatchesCpu) {
  const Device gpu = Device::cuda();
  nn::Sequential mc = small_conv4(Device::cpu(), nn::BNMode::BatchStats, 77);
  nn::Sequential mg = small_conv4(gpu, nn::BNMode::BatchStats, 77);
  Generator tgen(5);
  const meta::Task tc = make_task(tgen, 1, 3);
  const meta::Task tg = task_to(tc, gpu);
  const MetaGrad rc = meta_gradient(*mc, tc, 0.4);
  const MetaGrad rg = meta_gradient(*mg, tg, 0.4);
  expect_near_rel(rg.inner_loss, rc.inner_loss, "inner loss");
  expect_near_rel(rg.outer_loss, rc.outer_loss, "outer loss");
  ASSERT_EQ(rg.grads.size(), rc.grads.size());
  for (const auto& [name, gc] : rc.grads) {
    const Tensor& gg = rg.grads.at(name);
    ASSERT_TRUE(gc.defined() && gg.defined()) << name;
    EXPECT_TRUE(gg.device().is_cuda()) << name;
    EXPECT_TRUE(allclose(gg, gc, kRtol, kAtol)) << "meta-gradient of " << name;
  }
  // The second-order terms are not negligible here: the first-order meta-gradient (inner
  // gradient treated as a constant) is measurably different, so the comparison above did
  // test them.
  const nn::ParamMap theta = nn::params_of(*mc);
  const Tensor inner = F::cross_entropy(mc->forward(tc.support_x, theta), tc.support_y);
  const nn::ParamMap g1 = nn::grad(inner, theta);
  nn::ParamMap phi;
  for (const auto& [name, p] : theta) phi[name] = p - g1.at(name).detach() * 0.4;
  const nn::ParamMap fo =
      nn::grad(F::cross_entropy(mc->forward(tc.query_x, phi), tc.query_y), theta);
  double diff = 0;
  for (const auto& [name, gc] : rc.grads)
    diff = std::max(diff, max(abs(gc - fo.at(name))).item<double>());
  EXPECT_GT(diff, 1e-6) << "the second-order terms vanish: the test would not see them";
}

// The task-batched step on the GPU (the tasks' convolutions as one grouped cuDNN convolution,
// Note [Task-batched convolution]) against the per-task loop on the CPU: the same exact
// second-order meta-gradient.
TEST_F(CudaTraining, TaskBatchedMamlMetaGradientMatchesCpuLoop) {
  const Device gpu = Device::cuda();
  meta::MetaOptions opts;
  opts.inner_steps = 2;
  opts.inner_lr = 0.4;
  opts.classification = true;
  meta::MetaOptions batched = opts;
  batched.batch_tasks = true;
  const meta::LossFn loss = [](const Tensor& out, const Tensor& y) {
    return F::cross_entropy(out, y);
  };
  nn::Sequential mc = small_conv4(Device::cpu(), nn::BNMode::BatchStats, 41, false);
  nn::Sequential mg = small_conv4(gpu, nn::BNMode::BatchStats, 41, false);
  meta::MAML lc(mc.ptr(), loss, opts), lg(mg.ptr(), loss, batched);
  Generator tgen(9);
  std::vector<meta::Task> tc, tg;
  for (int k = 0; k < 3; ++k) {
    tc.push_back(make_task(tgen, 1, 2));
    tg.push_back(task_to(tc.back(), gpu));
  }
  const meta::StepResult rc = lc.meta_step(tc);
  const meta::StepResult rg = lg.meta_step(tg);
  expect_near_rel(rg.loss, rc.loss, "loss");
  EXPECT_NEAR(rg.accuracy, rc.accuracy, 1e-12);
  const auto pc = mc->named_parameters(), pg = mg->named_parameters();
  for (size_t i = 0; i < pc.size(); ++i)
    EXPECT_TRUE(allclose(pg[i].second.grad(), pc[i].second.grad(), kRtol, kAtol))
        << "meta-gradient of " << pc[i].first;
}

// meta::MAML itself (exact second order, two inner steps, a batch of two tasks, Adam on the
// meta-parameters): the same losses, accuracies and weights after each meta-step.
TEST_F(CudaTraining, MamlMetaStepsMatchCpu) {
  const Device gpu = Device::cuda();
  meta::MetaOptions opts;
  opts.inner_steps = 2;
  opts.inner_lr = 0.4;
  opts.first_order = false;
  opts.meta_lr = 1e-2;
  opts.classification = true;
  const meta::LossFn loss = [](const Tensor& out, const Tensor& y) {
    return F::cross_entropy(out, y);
  };
  nn::Sequential mc = small_conv4(Device::cpu(), nn::BNMode::BatchStats, 31);
  nn::Sequential mg = small_conv4(gpu, nn::BNMode::BatchStats, 31);
  meta::MAML lc(mc.ptr(), loss, opts), lg(mg.ptr(), loss, opts);
  for (meta::MAML* l : {&lc, &lg}) {  // Note [Adam amplifies noise]
    auto* adam = dynamic_cast<optim::Adam*>(l->meta_optimizer());
    ASSERT_NE(adam, nullptr);
    adam->options().eps(kAdamEps);
  }
  Generator tgen(8);
  for (int step = 0; step < 2; ++step) {
    const std::string when = "meta-step " + std::to_string(step);
    std::vector<meta::Task> tc, tg;
    for (int k = 0; k < 2; ++k) {
      tc.push_back(make_task(tgen, 1, 2));
      tg.push_back(task_to(tc.back(), gpu));
    }
    const meta::StepResult rc = lc.meta_step(tc);
    const meta::StepResult rg = lg.meta_step(tg);
    expect_near_rel(rg.loss, rc.loss, when + ": loss");
    EXPECT_NEAR(rg.accuracy, rc.accuracy, 1e-12) << when << ": accuracy";
    // the meta-gradients (left in .grad() by the step) and then the updated weights
    const auto pc = mc->named_parameters(), pg = mg->named_parameters();
    for (size_t i = 0; i < pc.size(); ++i)
      EXPECT_TRUE(allclose(pg[i].second.grad(), pc[i].second.grad(), kRtol, kAtol))
          << when << ": meta-gradient of " << pc[i].first;
    expect_same_state(*mg, *mc, when);
  }
}

// A meta-step's hot path never waits for the device (Note [Deferred device errors]): the one
// host wait is the read-back of every task's loss and accuracy at its end (meta::MetaLearner::
// mean_metrics), whatever the number of tasks.
TEST_F(CudaTraining, MamlMetaStepWaitsForTheHostOnce) {
  const Device gpu = Device::cuda();
  meta::MetaOptions opts;
  opts.inner_steps = 2;
  opts.first_order = false;
  opts.classification = true;
  const meta::LossFn loss = [](const Tensor& out, const Tensor& y) {
    return F::cross_entropy(out, y);
  };
  nn::Sequential mg = small_conv4(gpu, nn::BNMode::BatchStats, 32);
  meta::MAML lg(mg.ptr(), loss, opts);
  Generator tgen(9);
  std::vector<meta::Task> tasks;
  for (int k = 0; k < 4; ++k) tasks.push_back(task_to(make_task(tgen, 1, 2), gpu));
  lg.meta_step(tasks);  // warm-up: first-use allocations and cuDNN algorithm searches
  cuda::synchronize();
  cuda::reset_launch_stats();
  const meta::StepResult r = lg.meta_step(tasks);
  EXPECT_EQ(cuda::launch_stats().host_waits, 1u) << "host waits in one 4-task meta-step";
  EXPECT_TRUE(std::isfinite(r.loss));
}

// The meta helpers that loop on the host (sinusoid targets, image resizing and rotation, an
// in-memory image dataset) take GPU tensors too: computed on the CPU, returned on the device.
TEST_F(CudaTraining, HostLoopMetaHelpersTakeGpuTensors) {
  const Device gpu = Device::cuda();
  const Tensor x = randn({2, 3, 6, 6}, DType::Float64);
  const meta::SinusoidTask task{2.0, 0.5};
  const Tensor yg = task(x.to(gpu));
  EXPECT_TRUE(yg.device().is_cuda());
  EXPECT_TRUE(allclose(yg.to(Device::cpu()), task(x), 0, 0));
  const Tensor rg = meta::rot90(x.to(gpu), 1);
  EXPECT_TRUE(rg.device().is_cuda());
  EXPECT_TRUE(allclose(rg.to(Device::cpu()), meta::rot90(x, 1), 0, 0));
  const Tensor sg = meta::resize_area(x.to(gpu), 3, 3);
  EXPECT_TRUE(sg.device().is_cuda());
  EXPECT_TRUE(allclose(sg.to(Device::cpu()), meta::resize_area(x, 3, 3), 0, 0));
  const meta::ImageDataset ds(x.to(gpu), {1, 1});
  EXPECT_TRUE(allclose(ds.image(1, 0), x.select(0, 1).to(DType::Float32), 0, 0));
}

}  // namespace
