// Tests of the optimizers, gradient clipping and learning-rate schedulers (nn/optim/*).
//
// SGD, Adam and AdamW run several steps on float64 parameters with gradients drawn here and
// are compared with plain float64 loops that transcribe PyTorch's update formulas
// (torch/optim/sgd.py, adam.py, adamw.py: _single_tensor_*). Also: param groups, zero_grad,
// every constructor and load_state_dict error (nothing changed after a failed load), state
// dict round trips giving identical next steps, clip_grad_norm_ / clip_grad_value_ against
// reference norms, and every scheduler's lr sequence against its closed form.
#include <gtest/gtest.h>

#include <metagrad/metagrad.h>
#include "test_util.h"

#include <cmath>
#include <functional>
#include <memory>
#include <numbers>
#include <random>
#include <string>
#include <vector>

using namespace metagrad;

namespace {

using Vec = std::vector<double>;
const TensorOptions f64(DType::Float64);

Vec values(const Tensor& t) {
  return t.to_vector<double>();
}

void expect_vec_close(const Vec& x, const Vec& y, double tol) {
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_NEAR(x[i], y[i], tol * (1 + std::abs(y[i]))) << "at " << i;
}

// Gradients for `steps` steps of parameters with `sizes` elements, from a fixed seed.
std::vector<std::vector<Vec>> draw_grads(int steps, const std::vector<size_t>& sizes,
                                         unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<std::vector<Vec>> g(static_cast<size_t>(steps));
  for (auto& step : g)
    for (size_t n : sizes) {
      Vec v(n);
      for (double& e : v) e = nd(rng);
      step.push_back(v);
    }
  return g;
}

struct Problem {
  std::vector<Tensor> params;  // float64 leaves
  std::vector<Vec> ref;        // the same values, for the reference loop
};

Problem make_problem(unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> ud(-1.0, 1.0);
  Problem p;
  const std::vector<Shape> shapes = {{3, 4}, {5}};
  for (const Shape& s : shapes) {
    Vec v(static_cast<size_t>(numel_of(s)));
    for (double& e : v) e = ud(rng);
    p.params.push_back(tensor(v, s).requires_grad_(true));
    p.ref.push_back(v);
  }
  return p;
}

void set_grads(std::vector<Tensor>& params, const std::vector<Vec>& g) {
  for (size_t i = 0; i < params.size(); ++i) params[i].set_grad(tensor(g[i], params[i].shape()));
}

// ---- reference updates (PyTorch's formulas, float64) ----------------------------------

struct RefSGD {
  double lr, momentum, dampening, wd;
  bool nesterov;
  std::vector<Vec> buf;
  void step(std::vector<Vec>& ps, const std::vector<Vec>& gs, const std::vector<bool>& has) {
    buf.resize(ps.size());
    for (size_t i = 0; i < ps.size(); ++i) {
      if (!has[i]) continue;
      Vec d = gs[i];
      for (size_t k = 0; k < d.size(); ++k) d[k] += wd * ps[i][k];
      if (momentum != 0) {
        if (buf[i].empty()) {
          buf[i] = d;
        } else {
          for (size_t k = 0; k < d.size(); ++k)
            buf[i][k] = momentum * buf[i][k] + (1 - dampening) * d[k];
        }
        for (size_t k = 0; k < d.size(); ++k)
          d[k] = nesterov ? d[k] + momentum * buf[i][k] : buf[i][k];
      }
      for (size_t k = 0; k < d.size(); ++k) ps[i][k] -= lr * d[k];
    }
  }
};

struct RefAdam {
  double lr, b1, b2, eps, wd;
  bool amsgrad, decoupled;
  std::vector<Vec> m, v, vmax;
  std::vector<int> t;
  void step(std::vector<Vec>& ps, const std::vector<Vec>& gs, const std::vector<bool>& has) {
    m.resize(ps.size());
    v.resize(ps.size());
    vmax.resize(ps.size());
    t.resize(ps.size(), 0);
    for (size_t i = 0; i < ps.size(); ++i) {
      if (!has[i]) continue;
      const size_t n = ps[i].size();
      if (m[i].empty()) m[i] = v[i] = vmax[i] = Vec(n, 0.0);
      const int step = ++t[i];
      Vec g = gs[i];
      if (decoupled) {
        for (double& p : ps[i]) p *= 1 - lr * wd;
      } else {
        for (size_t k = 0; k < n; ++k) g[k] += wd * ps[i][k];
      }
      const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
      for (size_t k = 0; k < n; ++k) {
        m[i][k] = b1 * m[i][k] + (1 - b1) * g[k];
        v[i][k] = b2 * v[i][k] + (1 - b2) * g[k] * g[k];
        vmax[i][k] = std::max(vmax[i][k], v[i][k]);
        const double second = amsgrad ? vmax[i][k] : v[i][k];
        const double denom = std::sqrt(second) / std::sqrt(bc2) + eps;
        ps[i][k] -= lr / bc1 * m[i][k] / denom;
      }
    }
  }
};

template <typename Ref>
void run_against_reference(optim::Optimizer& opt, Problem& pb, Ref& ref, int steps, unsigned seed) {
  auto grads = draw_grads(steps, {12, 5}, seed);
  for (int s = 0; s < steps; ++s) {
    // The second parameter has no gradient on step 2: it is skipped (state untouched).
    std::vector<bool> has = {true, s != 2};
    opt.zero_grad();
    set_grads(pb.params, grads[static_cast<size_t>(s)]);
    if (!has[1]) pb.params[1].set_grad(Tensor());
    opt.step();
    ref.step(pb.ref, grads[static_cast<size_t>(s)], has);
    for (size_t i = 0; i < pb.params.size(); ++i)
      expect_vec_close(values(pb.params[i]), pb.ref[i], 1e-12);
  }
}

}  // namespace

// ---- SGD ----------------------------------------------------------------------------------

TEST(Optim, SGDMatchesPyTorchFormulas) {
  struct Case {
    double lr, momentum, dampening, wd;
    bool nesterov;
  };
  const std::vector<Case> cases = {{0.1, 0, 0, 0, false},      {0.05, 0.9, 0, 0, false},
                                   {0.05, 0.9, 0.3, 0, false}, {0.05, 0.9, 0, 0, true},
                                   {0.1, 0.5, 0, 0.01, true},  {0.1, 0, 0, 0.1, false}};
  unsigned seed = 1;
  for (const Case& c : cases) {
    SCOPED_TRACE("momentum " + std::to_string(c.momentum) + " dampening " +
                 std::to_string(c.dampening) + " wd " + std::to_string(c.wd) + " nesterov " +
                 std::to_string(c.nesterov));
    Problem pb = make_problem(seed);
    optim::SGD opt(pb.params, optim::SGDOptions(c.lr)
                                  .momentum(c.momentum)
                                  .dampening(c.dampening)
                                  .weight_decay(c.wd)
                                  .nesterov(c.nesterov));
    RefSGD ref{c.lr, c.momentum, c.dampening, c.wd, c.nesterov, {}};
    run_against_reference(opt, pb, ref, 6, seed++);
  }
}

// ---- Adam / AdamW ---------------------------------------------------------------------------

TEST(Optim, AdamMatchesPyTorchFormulas) {
  struct Case {
    double lr, b1, b2, eps, wd;
    bool amsgrad;
  };
  const std::vector<Case> cases = {{1e-2, 0.9, 0.999, 1e-8, 0, false},
                                   {1e-2, 0.9, 0.999, 1e-8, 0.1, false},
                                   {5e-2, 0.8, 0.9, 1e-6, 0, true},
                                   {1e-2, 0.9, 0.99, 1e-8, 0.05, true}};
  unsigned seed = 10;
  for (const Case& c : cases) {
    SCOPED_TRACE("wd " + std::to_string(c.wd) + " amsgrad " + std::to_string(c.amsgrad));
    Problem pb = make_problem(seed);
    optim::Adam opt(pb.params, optim::AdamOptions(c.lr)
                                   .betas({c.b1, c.b2})
                                   .eps(c.eps)
                                   .weight_decay(c.wd)
                                   .amsgrad(c.amsgrad));
    RefAdam ref{c.lr, c.b1, c.b2, c.eps, c.wd, c.amsgrad, false, {}, {}, {}, {}};
    run_against_reference(opt, pb, ref, 7, seed++);
  }
}

TEST(Optim, AdamWMatchesPyTorchFormulas) {
  {
    Problem pb = make_problem(20);
    optim::AdamW opt(pb.params, optim::AdamWOptions(1e-2));  // weight_decay 1e-2 by default
    EXPECT_DOUBLE_EQ(opt.options().weight_decay_, 1e-2);
    RefAdam ref{1e-2, 0.9, 0.999, 1e-8, 1e-2, false, true, {}, {}, {}, {}};
    run_against_reference(opt, pb, ref, 7, 20);
  }
  {
    Problem pb = make_problem(21);
    optim::AdamW opt(pb.params, optim::AdamWOptions(3e-2).weight_decay(0.2).amsgrad(true));
    RefAdam ref{3e-2, 0.9, 0.999, 1e-8, 0.2, true, true, {}, {}, {}, {}};
    run_against_reference(opt, pb, ref, 7, 21);
  }
}

TEST(Optim, Float32ParametersStayFloat32) {
  Tensor p = ones({4}).requires_grad_(true);
  optim::Adam opt({p}, optim::AdamOptions(0.1));
  p.set_grad(full({4}, 2.0));
  opt.step();
  EXPECT_EQ(p.dtype(), DType::Float32);
  // First Adam step moves each element by lr * sign(g) (up to eps).
  for (double v : values(p)) EXPECT_NEAR(v, 0.9, 1e-6);
  EXPECT_FALSE(p.grad().requires_grad());
  EXPECT_TRUE(p.is_leaf());
}

TEST(Optim, ComposedTwinMatchesFusedKernel) {
  // Contiguous parameters take the fused kernels (kernels/cpu/optim.h); a transposed view
  // takes the composed tensor-op twin. Both must give the same numbers.
  for (DType dt : {DType::Float64, DType::Float32}) {
    const double tol = dt == DType::Float64 ? 1e-13 : 2e-6;
    auto run = [&](auto make_opt) {
      manual_seed(50);
      Tensor base = randn({3, 4}, TensorOptions(dt));
      Tensor fused = base.t().contiguous().requires_grad_(true);  // [4, 3], contiguous
      Tensor twin = base.clone().t();                             // [4, 3], transposed view
      twin.requires_grad_(true);
      ASSERT_FALSE(twin.is_contiguous());
      auto opt_f = make_opt(std::vector<Tensor>{fused});
      auto opt_t = make_opt(std::vector<Tensor>{twin});
      for (int s = 0; s < 5; ++s) {
        Tensor g = randn({4, 3}, TensorOptions(dt));
        fused.set_grad(g.clone());
        twin.set_grad(g.clone());
        opt_f->step();
        opt_t->step();
      }
      expect_vec_close(values(twin), values(fused), tol);
      EXPECT_NE(values(fused), values(base.t()));
    };
    run([](std::vector<Tensor> ps) {
      return std::make_unique<optim::SGD>(
          ps, optim::SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(0.01));
    });
    run([](std::vector<Tensor> ps) {
      return std::make_unique<optim::SGD>(ps, optim::SGDOptions(0.1).momentum(0.8).dampening(0.2));
    });
    run([](std::vector<Tensor> ps) {
      return std::make_unique<optim::Adam>(
          ps, optim::AdamOptions(0.05).amsgrad(true).weight_decay(0.1));
    });
    run([](std::vector<Tensor> ps) {
      return std::make_unique<optim::AdamW>(ps, optim::AdamWOptions(0.05).weight_decay(0.3));
    });
  }
}

// One optimizer over many parameters gathers them into multi-tensor batches (Note
// [Multi-tensor updates]); one optimizer per parameter updates each alone. They must agree
// bit for bit, across dtype changes, an empty tensor, a non-contiguous parameter (the composed
// twin between batched ones) and parameters whose first gradient comes a step late (their
// SGD buffers start later, their Adam step counts differ: different batches).
TEST(Optim, BatchedUpdatesEqualOneOptimizerPerParameter) {
  using Make = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>;
  const std::vector<Make> makers = {
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::SGD>(ps, optim::SGDOptions(0.1).momentum(0.9));
      },
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::SGD>(ps, optim::SGDOptions(0.1).weight_decay(0.01));
      },
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::Adam>(ps, optim::AdamOptions(0.05).amsgrad(true));
      },
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::AdamW>(ps, optim::AdamWOptions(0.05).weight_decay(0.3));
      }};
  for (size_t mk = 0; mk < makers.size(); ++mk) {
    SCOPED_TRACE("optimizer " + std::to_string(mk));
    manual_seed(60);
    std::vector<Tensor> all, alone;
    for (int i = 0; i < 70; ++i) {
      const DType dt = i % 7 == 3 ? DType::Float32 : DType::Float64;
      const Shape shape = i == 5 ? Shape{0} : Shape{1 + i % 4, 1 + i % 3};
      Tensor base = randn(shape, TensorOptions(dt));
      if (i == 9) base = randn({3, 4}, TensorOptions(dt)).t();  // not contiguous
      all.push_back(base.clone().requires_grad_(true));
      Tensor a = i == 9 ? base.t().clone().t() : base.clone();
      alone.push_back(a.requires_grad_(true));
    }
    auto batched = makers[mk](all);
    std::vector<std::unique_ptr<optim::Optimizer>> singles;
    for (const Tensor& p : alone) singles.push_back(makers[mk]({p}));
    for (int step = 0; step < 3; ++step) {
      for (size_t i = 0; i < all.size(); ++i) {
        const bool late = step == 0 && i % 5 == 1;  // no gradient yet
        Tensor g = randn(all[i].shape(), TensorOptions(all[i].dtype()));
        all[i].set_grad(late ? Tensor() : g.clone());
        alone[i].set_grad(late ? Tensor() : g.clone());
      }
      batched->step();
      for (auto& o : singles) o->step();
    }
    for (size_t i = 0; i < all.size(); ++i)
      EXPECT_EQ(values(all[i]), values(alone[i])) << "parameter " << i;
  }
}

// ---- groups, zero_grad, errors --------------------------------------------------------------

TEST(Optim, ParamGroupsHaveTheirOwnHyperParameters) {
  Tensor a = ones({2}, f64).requires_grad_(true), b = ones({3}, f64).requires_grad_(true);
  optim::SGD opt(std::vector<optim::ParamGroup<optim::SGDOptions>>{
      {{a}, optim::SGDOptions(0.1)}, {{b}, optim::SGDOptions(0.01).momentum(0.9)}});
  EXPECT_EQ(opt.num_param_groups(), 2u);
  EXPECT_DOUBLE_EQ(opt.lr(0), 0.1);
  EXPECT_DOUBLE_EQ(opt.lr(1), 0.01);
  EXPECT_EQ(opt.parameters().size(), 2u);
  EXPECT_TRUE(opt.params(1)[0].is_same(b));
  a.set_grad(ones({2}, f64));
  b.set_grad(ones({3}, f64));
  opt.step();
  expect_vec_close(values(a), Vec(2, 0.9), 1e-15);
  expect_vec_close(values(b), Vec(3, 0.99), 1e-15);
  opt.set_lr(1, 0.5);
  opt.step();
  expect_vec_close(values(b), Vec(3, 0.99 - 0.5 * (0.9 * 1 + 1)), 1e-15);
  opt.set_lr(0.0);
  EXPECT_DOUBLE_EQ(opt.lr(0), 0.0);
  EXPECT_DOUBLE_EQ(opt.lr(1), 0.0);
  EXPECT_MG_ERROR_HAS(opt.lr(2), "[SGD]", "param group 2");
  EXPECT_MG_ERROR_HAS(opt.set_lr(0, -1.0), "[SGD]", "learning rate");
  // A parameter repeated within a group is kept once.
  optim::SGD twice({a, a, b}, optim::SGDOptions(0.1));
  EXPECT_EQ(twice.parameters().size(), 2u);
}

TEST(Optim, ZeroGrad) {
  Tensor a = ones({2}).requires_grad_(true);
  optim::SGD opt({a}, optim::SGDOptions(0.1));
  a.set_grad(ones({2}));
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  a.set_grad(ones({2}));
  opt.zero_grad(/*set_to_none=*/false);
  ASSERT_TRUE(a.grad().defined());
  EXPECT_EQ(values(a.grad()), Vec(2, 0.0));
}

TEST(Optim, ConstructorAndStepErrors) {
  Tensor a = ones({2}).requires_grad_(true);
  EXPECT_MG_ERROR_HAS(optim::SGD({}, optim::SGDOptions(0.1)), "[SGD]", "empty parameter list");
  EXPECT_MG_ERROR_HAS(optim::SGD({a * 2}, optim::SGDOptions(0.1)), "[SGD]", "non-leaf");
  EXPECT_MG_ERROR_HAS(optim::SGD({zeros({2}, TensorOptions(DType::Int64))}, optim::SGDOptions(0.1)),
                      "[SGD]", "floating-point");
  EXPECT_MG_ERROR_HAS(optim::SGD({Tensor()}, optim::SGDOptions(0.1)), "[SGD]", "undefined");
  EXPECT_MG_ERROR_HAS(optim::SGD({a}, optim::SGDOptions(-0.1)), "[SGD]", "learning rate");
  EXPECT_MG_ERROR_HAS(optim::SGD({a}, optim::SGDOptions(0.1).nesterov(true)), "[SGD]", "Nesterov");
  EXPECT_MG_ERROR_HAS(
      optim::SGD({a}, optim::SGDOptions(0.1).momentum(0.9).dampening(0.1).nesterov(true)), "[SGD]",
      "Nesterov");
  EXPECT_MG_ERROR_HAS(optim::SGD({a}, optim::SGDOptions(0.1).weight_decay(-1)), "[SGD]",
                      "weight_decay");
  EXPECT_MG_ERROR_HAS((optim::SGD(std::vector<optim::ParamGroup<optim::SGDOptions>>{
                          {{a}, optim::SGDOptions(0.1)}, {{a}, optim::SGDOptions(0.2)}})),
                      "[SGD]", "more than one param group");
  EXPECT_MG_ERROR_HAS(optim::Adam({a}, optim::AdamOptions().betas({1.0, 0.999})), "[Adam]",
                      "beta1");
  EXPECT_MG_ERROR_HAS(optim::Adam({a}, optim::AdamOptions().betas({0.9, -0.1})), "[Adam]", "beta2");
  EXPECT_MG_ERROR_HAS(optim::AdamW({a}, optim::AdamWOptions().eps(-1)), "[AdamW]", "epsilon");
  optim::Adam opt({a});
  EXPECT_MG_ERROR_HAS(a.set_grad(ones({3})), "[grad]", "to a tensor of shape [2]");
  a.mutable_grad() = ones({3});  // the reference bypasses set_grad's check: step still checks
  EXPECT_MG_ERROR_HAS(opt.step(), "[Adam]", "does not match its parameter");
}

// ---- state dicts ----------------------------------------------------------------------------

namespace {
// Runs `steps` steps of `opt` over `params` with gradients from `seed`.
void run_steps(optim::Optimizer& opt, std::vector<Tensor>& params, int steps, unsigned seed) {
  auto grads = draw_grads(steps, {12, 5}, seed);
  for (int s = 0; s < steps; ++s) {
    set_grads(params, grads[static_cast<size_t>(s)]);
    opt.step();
  }
}

std::vector<Tensor> clone_params(const std::vector<Tensor>& ps) {
  std::vector<Tensor> out;
  for (const Tensor& p : ps) out.push_back(p.detach().clone().requires_grad_(true));
  return out;
}
}  // namespace

TEST(Optim, StateDictRoundTripGivesIdenticalNextSteps) {
  {  // SGD with momentum
    Problem pb = make_problem(30);
    optim::SGD a(pb.params, optim::SGDOptions(0.05).momentum(0.9).nesterov(true));
    run_steps(a, pb.params, 3, 30);
    optim::OptimizerState sd = a.state_dict();
    EXPECT_EQ(sd.tensors.size(), 2u);
    EXPECT_TRUE(sd.tensors.count("0.momentum_buffer") && sd.tensors.count("1.momentum_buffer"));
    EXPECT_DOUBLE_EQ(sd.scalars.at("group.0.momentum"), 0.9);
    EXPECT_DOUBLE_EQ(sd.scalars.at("group.0.nesterov"), 1.0);
    std::vector<Tensor> copy = clone_params(pb.params);
    optim::SGD b(copy, optim::SGDOptions(0.7).momentum(0.1).nesterov(true));  // overwritten
    b.load_state_dict(sd);
    EXPECT_DOUBLE_EQ(b.lr(), 0.05);
    EXPECT_DOUBLE_EQ(b.options().momentum_, 0.9);
    const Vec saved = values(sd.tensors.at("0.momentum_buffer"));
    run_steps(a, pb.params, 2, 31);
    run_steps(b, copy, 2, 31);
    for (size_t i = 0; i < copy.size(); ++i) EXPECT_EQ(values(copy[i]), values(pb.params[i]));
    EXPECT_EQ(values(sd.tensors.at("0.momentum_buffer")), saved);  // a snapshot
  }
  {  // Adam with amsgrad: moments, maxima and step counts
    Problem pb = make_problem(32);
    optim::Adam a(pb.params, optim::AdamOptions(0.02).amsgrad(true).weight_decay(0.01));
    run_steps(a, pb.params, 4, 32);
    optim::OptimizerState sd = a.state_dict();
    EXPECT_EQ(sd.tensors.size(), 6u);
    EXPECT_DOUBLE_EQ(sd.scalars.at("0.step"), 4.0);
    EXPECT_DOUBLE_EQ(sd.scalars.at("param_groups"), 1.0);
    EXPECT_DOUBLE_EQ(sd.scalars.at("group.0.params"), 2.0);
    std::vector<Tensor> copy = clone_params(pb.params);
    optim::Adam b(copy, optim::AdamOptions(0.02).amsgrad(true).weight_decay(0.01));
    b.load_state_dict(sd);
    run_steps(a, pb.params, 3, 33);
    run_steps(b, copy, 3, 33);
    for (size_t i = 0; i < copy.size(); ++i) EXPECT_EQ(values(copy[i]), values(pb.params[i]));
  }
  {  // float32 state loaded into float64 parameters is converted
    Problem pb = make_problem(34);
    optim::Adam a(pb.params);
    run_steps(a, pb.params, 1, 34);
    optim::OptimizerState sd = a.state_dict();
    for (auto& [k, t] : sd.tensors) t = t.to(DType::Float32);
    optim::Adam b(clone_params(pb.params));
    b.load_state_dict(sd);
    EXPECT_EQ(b.state_dict().tensors.at("0.exp_avg").dtype(), DType::Float64);
  }
}

TEST(Optim, LoadStateDictErrorsChangeNothing) {
  Problem pb = make_problem(40);
  optim::Adam a(pb.params, optim::AdamOptions(0.01));
  run_steps(a, pb.params, 2, 40);
  const optim::OptimizerState good = a.state_dict();

  Problem pb2 = make_problem(41);
  optim::Adam b(pb2.params, optim::AdamOptions(0.5));
  run_steps(b, pb2.params, 1, 41);
  const optim::OptimizerState before = b.state_dict();
  auto expect_unchanged = [&] {
    const optim::OptimizerState now = b.state_dict();
    EXPECT_EQ(now.scalars, before.scalars);
    ASSERT_EQ(now.tensors.size(), before.tensors.size());
    for (auto& [k, t] : now.tensors) EXPECT_EQ(values(t), values(before.tensors.at(k))) << k;
  };
  auto bad = [&](auto edit, const char* part) {
    optim::OptimizerState s = good;
    edit(s);
    EXPECT_MG_ERROR_HAS(b.load_state_dict(s), "[load_state_dict]", part);
    expect_unchanged();
  };
  bad([](auto& s) { s.scalars["param_groups"] = 2; }, "param groups");
  bad([](auto& s) { s.scalars["group.0.params"] = 3; }, "param group 0 has 3 parameters");
  bad([](auto& s) { s.scalars.erase("group.0.beta2"); }, "no 'group.0.beta2'");
  bad([](auto& s) { s.scalars["group.0.beta1"] = 1.5; }, "beta1");
  bad([](auto& s) { s.scalars["group.0.momentum"] = 0.9; }, "unexpected entry 'group.0.momentum'");
  bad([](auto& s) { s.scalars["7.step"] = 1; }, "unexpected entry '7.step'");
  bad([](auto& s) { s.scalars["0.step"] = 1.5; }, "not a step count");
  bad([](auto& s) { s.scalars.erase("1.step"); }, "no '1.step'");
  bad([](auto& s) { s.tensors.erase("0.exp_avg_sq"); }, "no '0.exp_avg_sq'");
  bad(
      [](auto& s) {
        s.tensors["0.exp_avg"] = zeros({4, 3}, f64);
      },
      "'0.exp_avg' has shape [4, 3], its parameter has shape [3, 4]");
  bad(
      [](auto& s) {
        s.tensors["0.momentum_buffer"] = zeros({3, 4}, f64);
      },
      "unexpected tensor '0.momentum_buffer'");
  bad([](auto& s) { s.tensors["2.exp_avg"] = zeros({1}, f64); }, "unexpected tensor '2.exp_avg'");
  bad([](auto& s) { s.tensors["x.exp_avg"] = zeros({1}, f64); }, "unexpected tensor 'x.exp_avg'");
  bad([](auto& s) { s.tensors["1.exp_avg"] = Tensor(); }, "undefined");
  bad([](auto& s) { s.tensors["1.exp_avg"] = zeros({5}, TensorOptions(DType::Int64)); },
      "floating-point");
  // An SGD state does not load into Adam.
  Tensor p = zeros({3, 4}, f64).requires_grad_(true), q = zeros({5}, f64).requires_grad_(true);
  optim::SGD sgd({p, q}, optim::SGDOptions(0.1).momentum(0.9));
  EXPECT_MG_ERROR_HAS(b.load_state_dict(sgd.state_dict()), "[load_state_dict]", "Adam");
  expect_unchanged();
  // And the good one does.
  b.load_state_dict(good);
  EXPECT_EQ(b.state_dict().scalars, good.scalars);
}

// State of an option turned off (momentum 0, amsgrad false) stays, saved and loaded back, as
// in PyTorch.
TEST(Optim, StateOfAnOptionTurnedOffRoundTrips) {
  Tensor p = tensor(std::vector<double>{1, 2}).requires_grad_(true);
  optim::SGD sgd({p}, optim::SGDOptions(0.1).momentum(0.9));
  optim::Adam adam({p}, optim::AdamOptions(0.1).amsgrad(true));
  p.set_grad(tensor(std::vector<double>{1, 1}));
  sgd.step();
  adam.step();
  sgd.options().momentum(0);
  adam.options().amsgrad(false);
  const optim::OptimizerState s = sgd.state_dict(), a = adam.state_dict();
  EXPECT_TRUE(s.tensors.count("0.momentum_buffer"));
  EXPECT_TRUE(a.tensors.count("0.max_exp_avg_sq"));
  sgd.load_state_dict(s);
  adam.load_state_dict(a);
  EXPECT_EQ(sgd.state_dict().tensors.size(), s.tensors.size());
  EXPECT_EQ(adam.state_dict().tensors.size(), a.tensors.size());
}

// A gradient that does not fit its parameter fails the step before anything changes: no
// parameter moved, no momentum buffer made, no Adam step counted.
TEST(Optim, BadGradientFailsTheStepBeforeAnythingChanges) {
  for (const bool adam : {false, true}) {
    Tensor a = zeros({3}, f64).requires_grad_(true), b = zeros({2}, f64).requires_grad_(true);
    std::unique_ptr<optim::Optimizer> opt;
    if (adam)
      opt = std::make_unique<optim::Adam>(std::vector<Tensor>{a, b}, optim::AdamOptions(0.1));
    else
      opt = std::make_unique<optim::SGD>(std::vector<Tensor>{a, b},
                                         optim::SGDOptions(0.1).momentum(0.9));
    a.set_grad(ones({3}, f64));
    {
      NoGradGuard g;
      b.mutable_grad() = ones({5}, f64);  // mutable_grad does not check: step must
    }
    EXPECT_MG_ERROR_HAS(opt->step(), adam ? "[Adam]" : "[SGD]", "does not match its parameter");
    EXPECT_EQ(values(a), (Vec{0, 0, 0}));
    EXPECT_TRUE(opt->state_dict().tensors.empty());
    b.set_grad(ones({2}, f64));
    opt->step();  // the first real step: as if the failed one never happened
    for (double v : values(a)) EXPECT_NEAR(v, -0.1, 1e-8) << (adam ? "Adam" : "SGD");
  }
}

// ---- gradient clipping ----------------------------------------------------------------------

TEST(Optim, ClipGradNorm) {
  auto make = [] {
    std::vector<Tensor> ps = {zeros({2, 2}, f64).requires_grad_(true),
                              zeros({3}, f64).requires_grad_(true),
                              zeros({1}, f64).requires_grad_(true)};
    ps[0].set_grad(tensor({3.0, -4.0, 1.0, 2.0}, {2, 2}));
    ps[1].set_grad(tensor({-1.0, 0.5, 6.0}));
    return ps;  // ps[2] has no gradient: skipped
  };
  const Vec all = {3, -4, 1, 2, -1, 0.5, 6};
  auto pnorm = [&](double p) {
    double s = 0;
    for (double v : all) s += std::pow(std::abs(v), p);
    return std::pow(s, 1 / p);
  };
  for (double p : {2.0, 1.0, 3.0}) {
    auto ps = make();
    const double total = nn::utils::clip_grad_norm_(ps, 2.0, p);
    EXPECT_NEAR(total, pnorm(p), 1e-12);
    const double coef = 2.0 / (pnorm(p) + 1e-6);
    Vec got = values(ps[0].grad()), g1 = values(ps[1].grad());
    got.insert(got.end(), g1.begin(), g1.end());
    for (size_t i = 0; i < all.size(); ++i) EXPECT_NEAR(got[i], all[i] * coef, 1e-12);
    EXPECT_FALSE(ps[2].grad().defined());
  }
  {  // infinity norm
    auto ps = make();
    EXPECT_DOUBLE_EQ(nn::utils::clip_grad_norm_(ps, 3.0, INFINITY), 6.0);
    EXPECT_NEAR(values(ps[1].grad())[2], 6.0 * 3.0 / (6.0 + 1e-6), 1e-12);
  }
  {  // under the limit: unchanged
    auto ps = make();
    nn::utils::clip_grad_norm_(ps, 100.0);
    EXPECT_EQ(values(ps[0].grad()), (Vec{3, -4, 1, 2}));
  }
  {  // after clipping, the total norm is max_norm
    auto ps = make();
    nn::utils::clip_grad_norm_(ps, 1.5);
    EXPECT_NEAR(nn::utils::clip_grad_norm_(ps, 1e9), 1.5, 1e-5);
  }
  std::vector<Tensor> none = {zeros({2}).requires_grad_(true)};
  EXPECT_EQ(nn::utils::clip_grad_norm_(none, 1.0), 0.0);
  auto ps = make();
  ps[1].set_grad(tensor(Vec{1.0, NAN, 0.0}));
  EXPECT_MG_ERROR_HAS(nn::utils::clip_grad_norm_(ps, 1.0, 2.0, true), "[clip_grad_norm_]", "nan");
  // Without the error, a NaN norm scales every gradient by NaN (as PyTorch), in both the
  // 2-norm and the inf-norm (whose max must not drop the NaN).
  for (double type : {2.0, static_cast<double>(INFINITY)}) {
    auto qs = make();
    qs[1].set_grad(tensor(Vec{1.0, NAN, 0.0}));
    EXPECT_TRUE(std::isnan(nn::utils::clip_grad_norm_(qs, 1.0, type))) << type;
    for (const Tensor& q : qs) {
      if (!q.grad().defined()) continue;
      for (double v : values(q.grad())) EXPECT_TRUE(std::isnan(v)) << type;
    }
  }
  EXPECT_MG_ERROR_HAS(nn::utils::clip_grad_norm_(make(), 1.0, -1.0), "[clip_grad_norm_]",
                      "norm_type");
}

TEST(Optim, ClipGradValue) {
  Tensor a = zeros({5}, f64).requires_grad_(true);
  a.set_grad(tensor({-3.0, -0.5, 0.0, 0.7, 9.0}));
  Tensor g = a.grad();
  nn::utils::clip_grad_value_({a}, 1.0);
  EXPECT_EQ(values(a.grad()), (Vec{-1.0, -0.5, 0.0, 0.7, 1.0}));
  EXPECT_TRUE(a.grad().is_same(g));  // in place
  EXPECT_MG_ERROR_HAS(nn::utils::clip_grad_value_({a}, -1.0), "[clip_grad_value_]", "clip_value");
}

// ---- schedulers -----------------------------------------------------------------------------

namespace {
// Steps `sched` n times and checks every group's lr against f(epoch, base) after each.
template <typename F>
void expect_sequence(optim::LRScheduler& sched, optim::Optimizer& opt, const Vec& base, int n,
                     F f) {
  for (int e = 0; e <= n; ++e) {
    if (e > 0) sched.step();
    EXPECT_EQ(sched.last_epoch(), e);
    ASSERT_EQ(sched.get_last_lr().size(), base.size());
    for (size_t g = 0; g < base.size(); ++g) {
      EXPECT_NEAR(sched.get_last_lr()[g], f(e, base[g]), 1e-15) << "epoch " << e;
      EXPECT_DOUBLE_EQ(opt.lr(g), sched.get_last_lr()[g]);
    }
  }
}

struct TwoGroups {
  Tensor a = ones({1}).requires_grad_(true), b = ones({1}).requires_grad_(true);
  optim::SGD opt{std::vector<optim::ParamGroup<optim::SGDOptions>>{{{a}, optim::SGDOptions(0.1)},
                                                                   {{b}, optim::SGDOptions(0.03)}}};
  Vec base = {0.1, 0.03};
};
}  // namespace

TEST(Optim, StepLRAndExponentialLR) {
  {
    TwoGroups t;
    optim::StepLR s(t.opt, 3, 0.5);
    expect_sequence(s, t.opt, t.base, 10, [](int e, double b) { return b * std::pow(0.5, e / 3); });
  }
  {
    TwoGroups t;
    optim::ExponentialLR s(t.opt, 0.9);
    expect_sequence(s, t.opt, t.base, 10, [](int e, double b) { return b * std::pow(0.9, e); });
  }
  TwoGroups t;
  EXPECT_MG_ERROR_HAS(optim::StepLR(t.opt, 0), "[StepLR]", "step_size");
}

TEST(Optim, CosineAnnealingLR) {
  TwoGroups t;
  optim::CosineAnnealingLR s(t.opt, 8, 0.001);
  expect_sequence(s, t.opt, t.base, 12, [](int e, double b) {
    return 0.001 + (b - 0.001) * (1 + std::cos(std::numbers::pi * e / 8)) / 2;
  });
  EXPECT_NEAR(t.opt.lr(0), 0.001 + (0.1 - 0.001) * (1 + std::cos(std::numbers::pi * 12 / 8)) / 2,
              1e-15);
  TwoGroups t2;
  EXPECT_MG_ERROR_HAS(optim::CosineAnnealingLR(t2.opt, 0), "[CosineAnnealingLR]", "T_max");
}

// Closed forms do not chain: a second live scheduler on one optimizer is refused (PyTorch
// would multiply their updates; here the last stepped would silently win), with the optimizer
// left as it was. Once the first is gone another may take over.
TEST(Optim, SecondLiveSchedulerOnOneOptimizerIsRefused) {
  TwoGroups t;
  {
    optim::LinearLR warm(t.opt, 0.1, 1.0, 5);
    EXPECT_MG_ERROR_HAS(optim::ExponentialLR(t.opt, 0.9), "[LRScheduler]",
                        "already has a scheduler");
    EXPECT_NEAR(t.opt.lr(0), 0.01, 1e-15);  // warm's epoch 0, untouched by the refused one
    for (int e = 0; e < 5; ++e) warm.step();
  }
  optim::ExponentialLR decay(t.opt, 0.5);
  decay.step();
  EXPECT_NEAR(t.opt.lr(0), 0.05, 1e-15);
  // A scheduler that outlives its optimizer's other handle is fine to destroy.
  auto opt = std::make_unique<optim::SGD>(std::vector<Tensor>{t.a}, optim::SGDOptions(0.1));
  auto sched = std::make_unique<optim::StepLR>(*opt, 2);
  opt.reset();
  sched.reset();
}

TEST(Optim, LambdaLinearAndWarmup) {
  {
    TwoGroups t;
    optim::LambdaLR s(t.opt, [](int64_t e) { return 1.0 / (1.0 + static_cast<double>(e)); });
    expect_sequence(s, t.opt, t.base, 6, [](int e, double b) { return b / (1.0 + e); });
  }
  {
    TwoGroups t;
    optim::LinearLR s(t.opt, 0.25, 0.75, 4);
    expect_sequence(s, t.opt, t.base, 8,
                    [](int e, double b) { return b * (0.25 + 0.5 * std::min(e, 4) / 4.0); });
  }
  {
    TwoGroups t;
    optim::LinearWarmup s(t.opt, 5);
    expect_sequence(s, t.opt, t.base, 8, [](int e, double b) { return b * std::min(e, 5) / 5.0; });
  }
  {
    TwoGroups t;
    optim::LambdaLR s(t.opt, optim::warmup_cosine(4, 10, 0.1, 0.05));
    expect_sequence(s, t.opt, t.base, 14, [](int e, double b) {
      if (e < 4) return b * (0.1 + 0.9 * e / 4.0);
      const double x = std::min(1.0, (e - 4) / 6.0);
      return b * (0.05 + 0.95 * (1 + std::cos(std::numbers::pi * x)) / 2);
    });
  }
  TwoGroups t;
  EXPECT_MG_ERROR_HAS(optim::LinearLR(t.opt, 1.5), "[LinearLR]", "start_factor");
  EXPECT_MG_ERROR_HAS(optim::LambdaLR(t.opt, nullptr), "[LambdaLR]", "empty");
  EXPECT_MG_ERROR_HAS(optim::warmup_cosine(5, 5), "[warmup_cosine]", "warmup_iters");
}

TEST(Optim, SchedulerDrivesTheOptimizerStep) {
  Tensor p = zeros({1}, f64).requires_grad_(true);
  optim::SGD opt({p}, optim::SGDOptions(1.0));
  optim::StepLR sched(opt, 1, 0.5);
  double expected = 0, lr = 1.0;
  for (int e = 0; e < 4; ++e) {
    p.set_grad(ones({1}, f64));
    opt.step();
    expected -= lr;
    sched.step();
    lr *= 0.5;
  }
  EXPECT_DOUBLE_EQ(values(p)[0], expected);
}

// Options changed through options() after construction are checked at the next step, and a
// state dict's flags must be 0 or 1; clip_grad_norm_'s bound must not be negative.
TEST(Optim, HyperParametersAreCheckedAtEveryStepAndLoad) {
  Tensor a = tensor({1.0f, 2.0f}).requires_grad_();
  a.mutable_grad() = ones({2});
  optim::SGD sgd({a}, 0.1);
  sgd.options().lr(-5);
  EXPECT_MG_ERROR_HAS(sgd.step(), "[SGD]", "learning rate -5");
  sgd.options().lr(INFINITY);
  EXPECT_MG_ERROR(sgd.step(), "[SGD]");
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{1, 2}));  // nothing was updated
  optim::Adam adam({a});
  adam.options().betas({2.0, 2.0});
  EXPECT_MG_ERROR_HAS(adam.step(), "[Adam]", "beta1");
  EXPECT_MG_ERROR(optim::Adam({a}, optim::AdamOptions().eps(INFINITY)), "[Adam]");

  optim::SGD good({a}, optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
  optim::OptimizerState st = good.state_dict();
  for (auto& [k, v] : st.scalars)
    if (k.find("nesterov") != std::string::npos) v = 7;
  EXPECT_MG_ERROR_HAS(good.load_state_dict(st), "[load_state_dict]", "nesterov must be 0 or 1");
  optim::Adam ams({a}, optim::AdamOptions().amsgrad(true));
  st = ams.state_dict();
  for (auto& [k, v] : st.scalars)
    if (k.find("amsgrad") != std::string::npos) v = 0.5;
  EXPECT_MG_ERROR_HAS(ams.load_state_dict(st), "[load_state_dict]", "amsgrad must be 0 or 1");

  EXPECT_MG_ERROR_HAS(nn::utils::clip_grad_norm_({a}, -1.0), "[clip_grad_norm_]", "max_norm");
  EXPECT_MG_ERROR(nn::utils::clip_grad_norm_({a}, NAN), "[clip_grad_norm_]");
  nn::utils::clip_grad_norm_({a}, 0.0);  // zeroes the gradients, as PyTorch's
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>{0, 0}));
}
