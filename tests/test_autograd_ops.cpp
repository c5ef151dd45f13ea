// The derivative tests driven by the op table (tests/op_table.h, DESIGN principle 9): for
// every op with a derivative rule, gradcheck and gradgradcheck in float64 on contiguous,
// non-contiguous and broadcast inputs, and vjp-vs-jvp consistency. A rule added to
// autograd/derivatives.cpp without a case in the table makes EveryDerivativeIsTested fail.
#include <gtest/gtest.h>

#include <metagrad/metagrad.h>

#include <cmath>
#include <set>

#include "op_table.h"
#include "test_util.h"

using namespace metagrad;
using namespace mg_op_table;

namespace {

void run_case(const OpCase& c, bool noncontig) {
  Generator gen(42);
  std::vector<Tensor> xs;
  for (const Input& i : c.inputs) xs.push_back(make(i, gen, noncontig));
  TensorsFn f = [&](const std::vector<Tensor>& x) { return std::vector<Tensor>{c.fn(x)}; };
  GradcheckResult r = gradcheck(f, xs, {.eps = c.eps, .atol = c.atol, .raise = false});
  EXPECT_TRUE(r.ok) << c.name << (noncontig ? " (non-contiguous)" : "") << ": " << r.message;
  if (c.second_order) {
    GradcheckResult r2 = gradgradcheck(f, xs, {}, {.eps = c.eps, .atol = c.atol, .raise = false});
    EXPECT_TRUE(r2.ok) << c.name << (noncontig ? " (non-contiguous)" : "")
                       << " second order: " << r2.message;
  }
}

}  // namespace

TEST(AutogradOps, GradcheckAndGradgradcheckEveryOp) {
  for (const auto& c : cases()) run_case(c, false);
}

TEST(AutogradOps, NonContiguousInputs) {
  for (const auto& c : cases()) run_case(c, true);
}

TEST(AutogradOps, EveryDerivativeIsTested) {
  std::set<std::string> tested;
  for (const auto& c : cases()) tested.insert(c.name);
  for (auto op : autograd::ops_with_derivatives())
    EXPECT_TRUE(tested.count(std::string(op))) << "no test case for the derivative of " << op;
}

// <v, J u> computed by jvp equals <J^T v, u> computed by vjp.
TEST(AutogradOps, VjpMatchesJvp) {
  for (const auto& c : cases()) {
    Generator gen(7);
    std::vector<Tensor> xs, us;
    for (const Input& i : c.inputs) xs.push_back(make(i, gen, false));
    func::Tensors diff;
    std::vector<size_t> pos;
    for (size_t i = 0; i < xs.size(); ++i)
      if (xs[i].requires_grad()) { diff.push_back(xs[i]); pos.push_back(i); }
    func::Fn f = [&](const func::Tensors& d) {
      std::vector<Tensor> all = xs;
      for (size_t k = 0; k < d.size(); ++k) all[pos[k]] = d[k];
      return func::Tensors{c.fn(all)};
    };
    for (const Tensor& d : diff) us.push_back(randn(d.shape(), DType::Float64, &gen));
    auto [out, ju] = func::jvp(f, diff, us);
    Tensor v = randn(out[0].shape(), DType::Float64, &gen);
    auto [out2, jtv] = func::vjp(f, diff, {v});
    const double lhs = sum(v * ju[0]).item<double>();
    double rhs = 0;
    for (size_t k = 0; k < us.size(); ++k) rhs += sum(jtv[k] * us[k]).item<double>();
    EXPECT_NEAR(lhs, rhs, 100 * c.atol * 1e-4 * (1 + std::abs(lhs))) << c.name;
  }
}

// Third derivatives of a handful of ops: gradgradcheck of x, v -> grad(f(x), x, v).
TEST(AutogradOps, ThirdOrder) {
  std::vector<OpCase> picks;
  for (const auto& c : cases())
    if (c.name == "exp" || c.name == "tanh" || c.name == "mul" || c.name == "matmul" ||
        c.name == "logsumexp")
      picks.push_back(c);
  ASSERT_EQ(picks.size(), 5u);
  for (const auto& c : picks) {
    Generator gen(3);
    std::vector<Tensor> xs;
    for (const Input& i : c.inputs) xs.push_back(make(i, gen, false));
    std::vector<Tensor> vs = {randn(c.fn(xs).shape(), DType::Float64, &gen).requires_grad_()};
    const size_t n = xs.size();
    TensorsFn first = [&](const std::vector<Tensor>& a) {
      std::vector<Tensor> x(a.begin(), a.begin() + static_cast<int64_t>(n));
      return grad({c.fn(x)}, x, {a[n]}, true, true, true);
    };
    std::vector<Tensor> all = xs;
    all.push_back(vs[0]);
    GradcheckResult r = gradgradcheck(first, all, {}, {.raise = false});
    EXPECT_TRUE(r.ok) << c.name << " third order: " << r.message;
  }
}

// gradcheck itself: a wrong derivative never passes by way of NaN or a zero step, and an f
// whose outputs change count or shape under perturbation is an error, not a read past them.
TEST(AutogradOps, GradcheckRefusesWhatItCannotCheck) {
  Tensor x = tensor({0.5, 1.5}).requires_grad_();
  // A wrong derivative: d(2 x)/dx reported as 0 (detach) passes no eps.
  Tensor xr = tensor({0.5, 1.5}).requires_grad_();
  const TensorsFn wrong_leaf = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{add(mul(v[0].detach(), 2.0), mul(v[0], 0.0))};
  };
  EXPECT_FALSE(gradcheck(wrong_leaf, {xr}, {.raise = false}).ok);
  for (double eps : {0.0, -1e-6, std::nan("")})
    EXPECT_MG_ERROR_HAS(gradcheck(wrong_leaf, {xr}, {.eps = eps}), "[gradcheck]", "eps");
  EXPECT_MG_ERROR(gradcheck(wrong_leaf, {xr}, {.atol = -1}), "[gradcheck]");
  // An expanded input: one poke moves three elements (PyTorch refuses it too).
  Tensor ex = tensor({0.5}).expand({3});
  ex.requires_grad_(true);
  EXPECT_MG_ERROR_HAS(gradcheck(wrong_leaf, {ex}), "[gradcheck]", "share memory");
  // A NaN analytical derivative (sqrt'(0) * 0) against a finite numerical one is a mismatch.
  Tensor z = tensor({0.0, 1.0}).requires_grad_();
  const TensorsFn nan_grad = [](const std::vector<Tensor>& v) {
    return std::vector<Tensor>{mul(sqrt(v[0]), 0.0)};
  };
  const GradcheckResult r = gradcheck(nan_grad, {z}, {.raise = false});
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(std::isnan(r.max_abs_error));
  // Outputs that change under perturbation, or are missing.
  int calls = 0;
  const TensorsFn shrinking = [&calls](const std::vector<Tensor>& v) {
    return ++calls == 1 ? std::vector<Tensor>{mul(v[0], 2.0), mul(v[0], 3.0)}
                        : std::vector<Tensor>{mul(v[0], 2.0)};
  };
  EXPECT_MG_ERROR_HAS(gradcheck(shrinking, {x}), "[gradcheck]", "1 outputs at a perturbed input");
  EXPECT_MG_ERROR_HAS(gradcheck([](const std::vector<Tensor>&) { return std::vector<Tensor>{}; },
                                {x}),
                      "[gradcheck]", "no outputs");
  EXPECT_MG_ERROR_HAS(
      gradcheck([](const std::vector<Tensor>&) { return std::vector<Tensor>{Tensor()}; }, {x}),
      "[gradcheck]", "undefined");
}
