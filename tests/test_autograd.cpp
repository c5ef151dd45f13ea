// The engine and the transforms: accumulation, graph freeing, version counters, hooks,
// grad modes, errors; closed-form Hessians; an SGD step differentiated exactly; graph export.
#include <gtest/gtest.h>

#include "test_util.h"

#include <metagrad/metagrad.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

using namespace metagrad;


namespace {
Tensor leaf(std::vector<double> v) { return tensor(v).requires_grad_(true); }
void expect_close(const Tensor& a, const Tensor& b, double tol = 1e-10) {
  ASSERT_EQ(a.shape(), b.shape());
  auto x = a.to_vector<double>(), y = b.to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], tol) << "at " << i;
}
}  // namespace

TEST(Autograd, BackwardAccumulatesIntoLeaves) {
  Tensor x = leaf({1.0, 2.0, 3.0});
  Tensor y = sum(x * x);  // dy/dx = 2x
  y.backward();
  expect_close(x.grad(), tensor({2.0, 4.0, 6.0}));
  EXPECT_FALSE(x.grad().requires_grad());
  sum(x * 3).backward();  // accumulates: 2x + 3
  expect_close(x.grad(), tensor({5.0, 7.0, 9.0}));
  EXPECT_TRUE(x.is_leaf());
  EXPECT_FALSE(y.is_leaf());
  EXPECT_EQ(y.grad_fn()->name(), "SumBackward");
}

TEST(Autograd, TensorUsedTwiceSumsGradients) {
  Tensor x = leaf({0.5});
  Tensor y = x * x * x + sin(x);  // 3x^2 + cos x
  auto g = grad({y}, {x});
  EXPECT_NEAR(g[0].item<double>(), 3 * 0.25 + std::cos(0.5), 1e-12);
}

TEST(Autograd, SecondBackwardThroughFreedGraphFails) {
  Tensor x = leaf({1.0, 2.0});
  Tensor y = sum(exp(x));
  y.backward();
  EXPECT_MG_ERROR(y.backward(), "[autograd] trying to backward through the graph a second time");
  Tensor z = sum(exp(x));
  z.backward({}, /*retain_graph=*/true);
  z.backward();  // allowed: the graph was retained
  expect_close(x.grad(), exp(x.detach()) * 3);
}

TEST(Autograd, InPlaceModificationOfSavedTensorIsDetected) {
  Tensor x = leaf({1.0, 2.0});
  Tensor a = x * 2;
  Tensor b = exp(a);       // saves its output b
  Tensor c = sum(a * a);   // saves a
  b += 1;                  // modifies a saved output
  EXPECT_MG_ERROR(sum(b).backward(), "[autograd] a tensor of shape [2] needed to compute the gradient of exp");
  a *= 3;                  // modifies a saved input of `a * a`
  EXPECT_MG_ERROR(c.backward(), "[autograd] a tensor of shape [2] needed to compute the gradient of mul");
}

TEST(Autograd, InPlaceOpsAreDifferentiable) {
  Tensor x = leaf({1.0, 2.0, 3.0});
  Tensor y = x * 1.0;   // non-leaf
  y *= x;               // y = x^2
  y += x;               // y = x^2 + x
  auto g = grad({sum(y)}, {x});
  expect_close(g[0], x.detach() * 2 + 1);
  EXPECT_MG_ERROR(x += 1, "[add_] a leaf tensor that requires grad");
}

TEST(Autograd, GradOfAnIntermediateRunsOnlyWhatIsNeeded) {
  // h comes from an op without a derivative: grad w.r.t. h must not run h's own node.
  Tensor x = leaf({1.0, 2.0});
  Tensor h = as_strided(x * 1.0, {2}, {1}, 0);
  auto g = grad({sum(h * h)}, {h});
  expect_close(g[0], h.detach() * 2);
}

TEST(Autograd, GradModes) {
  Tensor x = leaf({1.0});
  {
    NoGradGuard ng;
    Tensor y = x * 2;
    EXPECT_FALSE(y.requires_grad());
    {
      EnableGradGuard eg;
      EXPECT_TRUE((x * 2).requires_grad());
    }
  }
  EXPECT_TRUE(GradMode::is_enabled());
  Tensor d = (x * 2).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  EXPECT_MG_ERROR(zeros({2}, DType::Int64).requires_grad_(true), "[requires_grad_]");
}

TEST(Autograd, RetainGradAndHooks) {
  Tensor x = leaf({1.0, -2.0});
  Tensor h = x * 3;
  h.retain_grad();
  int calls = 0;
  h.register_hook([&](const Tensor& g) {
    ++calls;
    return g * 2;  // doubles the gradient flowing on
  });
  x.register_hook([&](const Tensor&) {
    ++calls;
    return Tensor();  // observe only
  });
  sum(h * h).backward();
  EXPECT_EQ(calls, 2);
  expect_close(h.grad(), h.detach() * 4);        // 2h, doubled by the hook
  expect_close(x.grad(), h.detach() * 4 * 3);    // the doubled gradient went on
}

TEST(Autograd, GradErrorsAndAllowUnused) {
  Tensor x = leaf({1.0}), y = leaf({2.0});
  Tensor z = x * 2;
  EXPECT_MG_ERROR(grad({z}, {y}), "[grad] input 0 (shape [1]) is not part of the graph");
  auto g = grad({z}, {x, y}, {}, std::nullopt, false, /*allow_unused=*/true);
  EXPECT_FALSE(g[1].defined());
  EXPECT_MG_ERROR(grad({z * tensor({1.0, 1.0})}, {x}), "[grad] a gradient can be implied only");
  EXPECT_MG_ERROR(grad({tensor({1.0})}, {x}), "[grad] output 0");
  EXPECT_MG_ERROR(grad({z}, {tensor({1.0})}), "[grad] input 0");
  // Ops without a derivative rule run forward but refuse to differentiate.
  Tensor a = as_strided(x * 1.0, {1}, {1}, 0);
  EXPECT_MG_ERROR(a.backward(), "[autograd] the derivative of 'as_strided' is not implemented");
}

TEST(Autograd, AnomalyModeNamesTheOp) {
  Tensor x = leaf({0.0, 1.0});
  Tensor y = sum(sqrt(x));  // d sqrt at 0 is infinite
  {
    DetectAnomalyGuard guard;
    EXPECT_MG_ERROR(y.backward(), "[autograd] anomaly: SqrtBackward produced an infinite value");
  }
}

TEST(Autograd, HessianOfQuadraticForm) {
  // f(x) = x^T A x has Hessian A + A^T.
  Generator gen(5);
  Tensor A = randn({4, 4}, DType::Float64, &gen);
  Tensor x0 = randn({4}, DType::Float64, &gen);
  func::ScalarFn f = [&](const func::Tensors& x) { return matmul(x[0], matmul(A, x[0])); };
  auto H = func::hessian(f, {x0});
  expect_close(H[0][0], A + A.t(), 1e-10);
  // hvp equals H v.
  Tensor v = randn({4}, DType::Float64, &gen);
  auto [y, hv] = func::hvp(f, {x0}, {v});
  expect_close(hv[0], matmul(A + A.t(), v), 1e-10);
  EXPECT_NEAR(y.item<double>(), matmul(x0, matmul(A, x0)).item<double>(), 1e-12);
}

TEST(Autograd, JacobianOfElementwiseIsDiagonal) {
  Tensor x0 = tensor({0.1, 0.2, 0.3});
  auto J = func::jacobian([](const func::Tensors& x) { return func::Tensors{exp(x[0])}; }, {x0});
  Tensor want = zeros({3, 3}, DType::Float64);
  for (int i = 0; i < 3; ++i) want.select(0, i).select(0, i).fill_(std::exp(0.1 * (i + 1)));
  expect_close(J[0][0], want, 1e-12);
}

TEST(Autograd, GradTransformComposes) {
  // d/dx sin(x) = cos(x); d^2/dx^2 = -sin(x); d^3 = -cos(x)
  func::ScalarFn f = [](const func::Tensors& x) { return sum(sin(x[0])); };
  auto g1 = func::grad(f, /*create_graph=*/true);
  func::ScalarFn g1s = [&](const func::Tensors& x) { return sum(g1(x)[0]); };
  auto g2 = func::grad(g1s, true);
  func::ScalarFn g2s = [&](const func::Tensors& x) { return sum(g2(x)[0]); };
  auto g3 = func::grad(g2s);
  Tensor x = tensor({0.3, 1.1});
  expect_close(g1({x})[0], cos(x), 1e-12);
  expect_close(g2({x})[0], -sin(x), 1e-12);
  expect_close(g3({x})[0], -cos(x), 1e-12);
  auto [val, gr] = func::value_and_grad(f)({x});
  EXPECT_NEAR(val.item<double>(), std::sin(0.3) + std::sin(1.1), 1e-12);
  expect_close(gr[0], cos(x), 1e-12);
}

// The transforms differentiate w.r.t. their own copies of the inputs, with create_graph as
// without: a use of the caller's tensor in a closure, or the same tensor passed twice, is not
// counted (as torch.autograd.functional's view_as). Constant functions have zero Hessians;
// missing or misshapen vectors are errors, not ones.
TEST(Autograd, TransformsCountOnlyUsesThroughTheirInputs) {
  Tensor x = tensor({1.0, 2.0}).requires_grad_(true);
  func::ScalarFn f = [&](const func::Tensors& xs) { return sum(xs[0] * x); };
  for (bool cg : {false, true}) {
    expect_close(func::grad(f, cg)({x})[0], tensor({1.0, 2.0}), 0);
    auto [out, g] = func::vjp([&](const func::Tensors& xs) { return func::Tensors{xs[0] * x}; },
                              {x}, {ones({2}, DType::Float64)}, cg);
    expect_close(g[0], tensor({1.0, 2.0}), 0);
    auto J = func::jacobian([&](const func::Tensors& xs) { return func::Tensors{xs[0] * x}; },
                            {x}, cg);
    expect_close(J[0][0], tensor({1.0, 0.0, 0.0, 2.0}, {2, 2}), 0);
    auto two = func::grad([](const func::Tensors& xs) { return sum(xs[0] * xs[1]); }, cg)({x, x});
    expect_close(two[0], tensor({1.0, 2.0}), 0);
  }
  // With create_graph the result still depends on x (a further derivative exists).
  Tensor g = func::grad([](const func::Tensors& xs) { return sum(xs[0] * xs[0] * xs[0]); },
                        true)({x})[0];
  ASSERT_TRUE(g.requires_grad());
  expect_close(grad({sum(g)}, {x})[0], tensor({6.0, 12.0}), 1e-12);
  // A constant function: zero Hessian and hvp.
  func::ScalarFn c = [](const func::Tensors&) { return tensor({3.0}).reshape({}); };
  expect_close(func::hessian(c, {x})[0][0], zeros({2, 2}, DType::Float64), 0);
  expect_close(func::hvp(c, {x}, {ones({2}, DType::Float64)}).second[0],
               zeros({2}, DType::Float64), 0);
  // An undefined or misshapen tangent / vector is an error.
  Tensor one = tensor({1.0});
  func::Fn prod2 = [](const func::Tensors& xs) { return func::Tensors{xs[0] * xs[1]}; };
  EXPECT_MG_ERROR_HAS(func::jvp(prod2, {one, one}, {Tensor(), one}), "[jvp]", "tangent 0");
  EXPECT_MG_ERROR_HAS(func::vjp(prod2, {one, one}, {ones({2}, DType::Float64)}), "[vjp]",
                      "vector 0 has shape [2]");
  EXPECT_MG_ERROR_HAS(func::hvp(c, {x}, {Tensor()}), "[hvp]", "(undefined)");
}

TEST(Autograd, ThroughOneSgdStepOfLeastSquares) {
  // L(w) = 1/2 |X w - y|^2, one step w' = w - lr X^T (X w - y), meta-loss M = 1/2 |X w' - y|^2.
  // With B = I - lr X^T X: w' = B w + lr X^T y and dM/dw = B^T X^T (X w' - y).
  Generator gen(9);
  Tensor X = randn({6, 3}, DType::Float64, &gen);
  Tensor yv = randn({6}, DType::Float64, &gen);
  Tensor w = randn({3}, DType::Float64, &gen).requires_grad_(true);
  const double lr = 0.05;
  Tensor inner = sum(square(matmul(X, w) - yv)) * 0.5;
  Tensor g = grad({inner}, {w}, {}, std::nullopt, /*create_graph=*/true)[0];
  Tensor w1 = w - g * lr;
  Tensor meta = sum(square(matmul(X, w1) - yv)) * 0.5;
  Tensor dm = grad({meta}, {w})[0];
  Tensor B = eye(3, 3, DType::Float64) - matmul(X.t(), X) * lr;
  Tensor w1v = matmul(B, w.detach()) + matmul(X.t(), yv) * lr;
  Tensor want = matmul(B.t(), matmul(X.t(), matmul(X, w1v) - yv));
  expect_close(dm, want, 1e-10);
}

TEST(Autograd, ToDotDescribesTheGraph) {
  Tensor x = leaf({1.0, 2.0});
  Tensor y = sum(exp(x) * x);
  std::string dot = to_dot(y);
  EXPECT_NE(dot.find("digraph autograd"), std::string::npos);
  EXPECT_NE(dot.find("SumBackward"), std::string::npos);
  EXPECT_NE(dot.find("ExpBackward"), std::string::npos);
  EXPECT_NE(dot.find("MulBackward"), std::string::npos);
  EXPECT_NE(dot.find("leaf [2]"), std::string::npos);
  EXPECT_NE(dot.find("saved output 0 [2]"), std::string::npos);
  // Second order: the graph of the gradient itself reaches back to the leaf.
  Tensor g = grad({y}, {x}, {}, std::nullopt, true)[0];
  std::string dot2 = to_dot(g);
  EXPECT_NE(dot2.find("ExpBackward"), std::string::npos);
  EXPECT_NE(dot2.find("leaf [2]"), std::string::npos);
}

namespace {
long rss_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}
}  // namespace

TEST(Autograd, NoGraphLeakOverManyIterations) {
  // 10,000 forward+backward steps of a small model: resident memory stays flat.
  Generator gen(1);
  Tensor W = randn({16, 8}, DType::Float32, &gen).requires_grad_(true);
  Tensor b = zeros({16}).requires_grad_(true);
  Tensor x = randn({4, 8}, DType::Float32, &gen);
  auto step = [&] {
    Tensor h = tanh(matmul(x, W.t()) + b);
    Tensor loss = mean(square(h));
    auto g = grad({loss}, {W, b}, {}, std::nullopt, /*create_graph=*/true);
    Tensor meta = sum(square(g[0])) + sum(square(g[1]));
    meta.backward();
  };
  for (int i = 0; i < 500; ++i) step();  // warm up allocator pools
  const long before = rss_kb();
  const int64_t nodes_before = autograd::Node::live_count();
  for (int i = 0; i < 10000; ++i) step();
  const long after = rss_kb();
  // Every graph is freed: no node outlives its step.
  EXPECT_EQ(autograd::Node::live_count(), nodes_before);
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer keeps freed memory in quarantine, so RSS says nothing there.
  (void)before;
  (void)after;
#else
  EXPECT_LT(after - before, 2048) << "RSS grew from " << before << " kB to " << after << " kB";
#endif
}

// A hook may register hooks (they run from the next backward on); what a hook returns must
// have the gradient's shape, dtype and device, at leaves as at inner tensors.
TEST(Autograd, HooksThatRegisterHooksAndHooksThatReturnWrongShapes) {
  Tensor x = tensor({1.0, 2.0, 3.0}).requires_grad_();
  Tensor h = mul(x, 2.0);
  int late = 0;
  for (Tensor* t : {&h, &x}) {
    Tensor& tt = *t;
    tt.register_hook([&late, &tt](const Tensor& g) {
      for (int i = 0; i < 4; ++i)
        tt.register_hook([&late](const Tensor&) {
          ++late;
          return Tensor();
        });
      return g;
    });
    tt.register_hook([](const Tensor& g) { return g; });
  }
  sum(h).backward({}, true);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 2, 2}));
  EXPECT_EQ(late, 0);
  auto gs = grad({sum(h)}, {x});
  EXPECT_EQ(gs[0].to_vector<double>(), (std::vector<double>{2, 2, 2}));
  EXPECT_GT(late, 0);

  Tensor y = tensor({1.0, 2.0, 3.0}).requires_grad_();
  y.register_hook([](const Tensor&) { return ones({5}); });
  EXPECT_MG_ERROR_HAS(grad({sum(mul(y, 2.0))}, {y}), "[hook]", "shape [5]");
  EXPECT_MG_ERROR_HAS(sum(mul(y, 2.0)).backward(), "[hook]", "shape [5]");
  Tensor z = tensor({1.0, 2.0}).requires_grad_();
  Tensor hz = mul(z, 2.0);
  hz.register_hook([](const Tensor&) { return ones({2}, DType::Int64); });
  EXPECT_MG_ERROR_HAS(sum(hz).backward(), "[hook]", "int64");
  EXPECT_MG_ERROR_HAS(z.set_grad(ones({2, 2})), "[grad]", "shape [2, 2]");
}

// Note [In-place writes into views]: a write into a view while recording would leave the
// viewed tensor's history stale (silently wrong gradients), so it is refused; under
// NoGradGuard, or with nothing requiring grad, views are written as usual. fill_ and copy_
// refuse leaves that require grad, as the arithmetic in-place ops do.
TEST(Autograd, InPlaceWritesIntoViewsWhileRecordingAreRefused) {
  Tensor x = tensor({1.0, 2.0, 3.0}).requires_grad_();
  Tensor h = mul(x, 1.0);
  Tensor v = h.slice(0, 0, 2);
  EXPECT_MG_ERROR_HAS(mul_(v, tensor({3.0})), "[mul_]", "in-place write into a view");
  EXPECT_MG_ERROR(h.select(0, 1).fill_(0), "[fill_]");
  EXPECT_MG_ERROR(zeros({3}).slice(0, 0, 2).copy_(mul(x.slice(0, 0, 2), 2.0)), "[copy_]");
  EXPECT_MG_ERROR(h.detach().copy_(x), "[copy_]");
  // Nothing was written: the gradient is the untouched graph's.
  grad({sum(h)}, {x});
  EXPECT_EQ(h.to_vector<double>(), (std::vector<double>{1, 2, 3}));
  {
    NoGradGuard no_grad;
    h.slice(0, 0, 2).fill_(7);
  }
  Tensor plain = zeros({3});
  plain.slice(0, 1, 3).fill_(1);
  Tensor head = plain.slice(0, 0, 1);
  add_(head, tensor({5.0}));
  EXPECT_EQ(plain.to_vector<double>(), (std::vector<double>{5, 1, 1}));
  // An in-place write into a whole non-leaf tensor is still recorded.
  Tensor w = mul(x, 1.0);
  mul_(w, tensor({3.0}));
  EXPECT_EQ(grad({sum(w)}, {x})[0].to_vector<double>(), (std::vector<double>{3, 3, 3}));
  EXPECT_MG_ERROR(x.fill_(0), "[fill_]");
  EXPECT_MG_ERROR(x.copy_(ones({3})), "[copy_]");
  EXPECT_MG_ERROR(x.zero_(), "[fill_]");
}

// Note [Iterative graph release]: a chain far deeper than the stack allows recursion for (an
// unrolled loop of 200,000 steps) is freed, and differentiated, without overflowing it.
TEST(Autograd, VeryLongChainsAreFreedAndDifferentiatedWithoutRecursion) {
  constexpr int kSteps = 200000;
  const int64_t before = autograd::Node::live_count();
  Tensor x = tensor({1.0}).requires_grad_();
  {
    Tensor y = x;
    for (int i = 0; i < kSteps; ++i) y = mul(y, 1.0);
    EXPECT_GE(autograd::Node::live_count() - before, kSteps);
  }  // the whole chain dies with y
  EXPECT_EQ(autograd::Node::live_count(), before);
  Tensor y = x;
  for (int i = 0; i < kSteps; ++i) y = add(y, 1e-6);
  sum(y).backward();
  EXPECT_DOUBLE_EQ(x.grad().item<double>(), 1.0);
  y = Tensor();
  EXPECT_EQ(autograd::Node::live_count(), before);
}

// Note [Stale views]: a view made before a recorded in-place write into the tensor it views
// would carry that tensor's old history into a graph (a gradient without the write's factor);
// it is refused, while a view made after the write, or one of a tensor written under
// NoGradGuard (an optimizer step), is fine.
TEST(Autograd, ViewsMadeBeforeAnInPlaceWriteIntoTheirBaseAreRefused) {
  Tensor x = tensor({1.0, 2.0, 3.0}).requires_grad_();
  Tensor h = mul(x, 1.0);
  Tensor before = h.slice(0, 0, 2);
  mul_(h, tensor({3.0}));
  EXPECT_MG_ERROR_HAS(sum(before), "[sum]", "view made before an in-place operation");
  EXPECT_MG_ERROR(before.slice(0, 0, 1), "[slice]");
  Tensor after = h.slice(0, 0, 2);
  EXPECT_EQ(grad({sum(after)}, {x})[0].to_vector<double>(), (std::vector<double>{3, 3, 0}));
  // A plain tensor written with a value that requires grad gains a history: same rule.
  Tensor plain = zeros({3});
  Tensor pv = plain.slice(0, 1, 3);
  add_(plain, x);
  EXPECT_MG_ERROR(sum(pv), "[sum]");
  // Parameters updated without recording keep their views usable.
  Tensor w = tensor({1.0, 2.0}).requires_grad_();
  Tensor wt = w.view({2, 1});
  {
    NoGradGuard no_grad;
    sub_(w, tensor({0.5, 0.5}));
  }
  EXPECT_EQ(grad({sum(mul(wt, wt))}, {w})[0].to_vector<double>(), (std::vector<double>{1, 3}));
}

// Found against PyTorch 2.15 in session 13 (each gave a wrong gradient, a NaN or a shared .grad).
TEST(Autograd, InPlaceOpWithItselfAsOperandUsesTheOldValue) {
  Tensor x = leaf({1.0, 2.0, 3.0});
  Tensor y = x * 1.0;
  mul_(y, y);  // y = y^2: dy/dx = 2x
  sum(y).backward();
  expect_close(x.grad(), tensor(std::vector<double>{2, 4, 6}));
  Tensor z = leaf({1.0, 2.0, 3.0});
  Tensor w = z * 1.0;
  div_(w, w);  // 1 everywhere: no gradient
  sum(w).backward();
  expect_close(z.grad(), tensor(std::vector<double>{0, 0, 0}));
  Tensor a = leaf({1.0, 2.0});
  Tensor b = a * 1.0;
  add_(b, b.slice(0, 0, 1));  // a view of itself: b = [b0 + b0, b1 + b0]
  sum(b * tensor(std::vector<double>{1.0, 10.0})).backward();
  expect_close(a.grad(), tensor(std::vector<double>{12, 10}));
}

// As PyTorch: retain_grad follows the tensor to its new value, hooks registered before the
// in-place op see the gradient w.r.t. the value before it (and may change what flows on).
TEST(Autograd, RetainGradFollowsAnInPlaceOpAndEarlierHooksStayWithTheOldValue) {
  Tensor x = leaf({1.0, 2.0, 3.0});
  Tensor y = x * 2.0;
  y.retain_grad();
  std::vector<std::string> seen;
  y.register_hook([&](const Tensor& g) {
    seen.push_back("before " + std::to_string(g.to_vector<double>()[0]));
    return g * 10.0;
  });
  mul_(y, tensor(std::vector<double>{3.0}));
  y.register_hook([&](const Tensor& g) {
    seen.push_back("after " + std::to_string(g.to_vector<double>()[0]));
    return Tensor();
  });
  sum(y).backward(Tensor(), /*retain_graph=*/true);
  EXPECT_EQ(seen, (std::vector<std::string>{"after 1.000000", "before 3.000000"}));
  expect_close(y.grad(), tensor(std::vector<double>{1, 1, 1}));
  expect_close(x.grad(), tensor(std::vector<double>{60, 60, 60}));
  // A second in-place op: the hook registered after the first stays with that value.
  mul_(y, tensor(std::vector<double>{5.0}));
  seen.clear();
  x.set_grad(Tensor());
  sum(y).backward();
  EXPECT_EQ(seen, (std::vector<std::string>{"after 5.000000", "before 15.000000"}));
  expect_close(x.grad(), tensor(std::vector<double>{300, 300, 300}));
}

TEST(Autograd, GradIsNeverSharedOrExpanded) {
  Tensor x = leaf({1.0, 2.0, 3.0}), y = leaf({4.0, 5.0, 6.0});
  add(x, y).backward(ones({3}, DType::Float64), true, /*create_graph=*/true);
  {
    NoGradGuard g;
    Tensor gx = x.grad();
    mul_(gx, tensor(std::vector<double>{2.0}));
  }
  expect_close(y.grad(), ones({3}, DType::Float64));  // not doubled with x's
  Tensor go = ones({3}, DType::Float64);
  Tensor u = leaf({1.0, 2.0, 3.0});
  add(u, 1.0).backward(go, true, true);
  {
    NoGradGuard g;
    mul_(go, tensor(std::vector<double>{5.0}));
  }
  expect_close(u.grad(), ones({3}, DType::Float64));  // not the caller's grad_output
  Tensor m = tensor(std::vector<double>{1, 2, 3, 4}, {2, 2}).requires_grad_(true);
  sum(m).backward({}, true, true);
  EXPECT_EQ(m.grad().strides(), (Shape{2, 1}));  // dense, writable in place
  Tensor h = m * 2.0;
  h.retain_grad();
  sum(h).backward();
  EXPECT_EQ(h.grad().strides(), (Shape{2, 1}));
}

TEST(Autograd, PowAtExponentZeroAndStdOfConstantsHaveZeroGradients) {
  Tensor a = leaf({0.0, 2.0}), b = leaf({0.0, 0.0});
  sum(pow(a, b)).backward();
  expect_close(a.grad(), tensor(std::vector<double>{0, 0}));
  Tensor c = leaf({1.5, 1.5, 1.5});
  metagrad::std(c, {0}, 1).backward();
  expect_close(c.grad(), tensor(std::vector<double>{0, 0, 0}));
  // Their second derivatives there are 0 too, not NaN (no 0 / 0 in the unpicked branch).
  Tensor gc = grad({metagrad::std(c, {0}, 1)}, {c}, {}, std::nullopt, true)[0];
  Tensor hc = grad({sum(gc * tensor(std::vector<double>{1, 2, 3}))}, {c})[0];
  for (double v : hc.to_vector<double>()) EXPECT_EQ(v, 0.0);
  Tensor ga = grad({sum(pow(a, b))}, {a}, {}, std::nullopt, true)[0];
  Tensor ha = grad({sum(ga)}, {a, b})[0];
  for (double v : ha.to_vector<double>()) EXPECT_FALSE(std::isnan(v));
}

TEST(Autograd, RootGradientOfAnotherFloatDtypeIsCast) {
  Tensor x = tensor(std::vector<float>{1, 2, 3}).requires_grad_(true);
  Tensor y = x * 2.0f;
  y.backward(ones({3}, DType::Float64));
  EXPECT_EQ(x.grad().dtype(), DType::Float32);
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{2, 2, 2}));
  // Integer ones too (as PyTorch), also where the rule checks its gradient's dtype (softmax).
  x.set_grad(Tensor());
  x.backward(tensor(std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{1, 2, 3}));
  Tensor s = softmax(x.reshape({1, 3}), 1);
  Tensor gs = grad({s}, {x}, {tensor(std::vector<int64_t>{1, 0, 0}, {1, 3})}, true)[0];
  Tensor want = grad({s}, {x}, {tensor(std::vector<float>{1, 0, 0}, {1, 3})})[0];
  EXPECT_EQ(gs.to_vector<float>(), want.to_vector<float>());
}

// Inputs a rule never reads are not saved, so writing into them after the op is no version
// error (as PyTorch): where's branches, gather / index_select's source, scatter_add's self.
TEST(Autograd, InputsARuleDoesNotReadMayBeWrittenAfterTheOp) {
  Tensor x = leaf({1.0, 2.0, 3.0});
  Tensor a = x * 2.0;
  Tensor y = where(tensor({true, false, true}), a, zeros({3}, DType::Float64));
  add_(a, tensor(std::vector<double>{1.0}));
  sum(y).backward();
  expect_close(x.grad(), tensor(std::vector<double>{2, 0, 2}));
  Tensor u = leaf({1.0, 2.0, 3.0});
  Tensor b = u * 1.0;
  Tensor s = index_select(b, 0, tensor({int64_t{0}, int64_t{0}}));
  add_(b, tensor(std::vector<double>{1.0}));
  sum(s).backward();
  expect_close(u.grad(), tensor(std::vector<double>{2, 0, 0}));
  // A saved input that is read still refuses a later write.
  Tensor v = leaf({1.0, 2.0});
  Tensor w = v * 1.0;
  Tensor p = mul(w, w);
  add_(w, tensor(std::vector<double>{1.0}));
  EXPECT_MG_ERROR(sum(p).backward(), "[autograd]");
}

// prod's derivative at zeros is built from product scans (no division, no [n, n] table) and
// is exact to second order with one, two and three zeros, over every dim choice.
TEST(Autograd, ProdAtZerosIsExactToSecondOrder) {
  for (int zeros_n : {1, 2, 3}) {
    std::vector<double> v = {0.7, -1.3, 0.9, 1.1, -0.6, 1.4, 0.8, -1.2, 1.05, 0.95, -0.85, 1.25};
    for (int k = 0; k < zeros_n; ++k) v[static_cast<size_t>(k == 2 ? 5 : k)] = 0;  // row 0, 0, 1
    Tensor x = tensor(v, {3, 4}).requires_grad_(true);
    for (const DimVector& dims : {DimVector{}, DimVector{1}, DimVector{0}, DimVector{0, 1}}) {
      TensorsFn f = [&](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{prod(in[0], dims)};
      };
      GradcheckResult r1 = gradcheck(f, {x}, {.raise = false});
      EXPECT_TRUE(r1.ok) << zeros_n << " zeros, dims " << dims.size() << ": " << r1.message;
      GradcheckResult r2 = gradgradcheck(f, {x}, {}, {.raise = false});
      EXPECT_TRUE(r2.ok) << zeros_n << " zeros, dims " << dims.size() << ": " << r2.message;
    }
  }
  // A long row with one zero: its gradient is the product of the others there, 0 elsewhere
  // (an [n, n] table would need 320 GB here).
  Tensor big = ones({200000}, DType::Float64);
  big.narrow(0, 7, 1).fill_(0.0);
  big.narrow(0, 9, 1).fill_(2.0);
  big.requires_grad_(true);
  prod(big).backward();
  const std::vector<double> g = big.grad().to_vector<double>();
  EXPECT_EQ(g[7], 2.0);
  EXPECT_EQ(g[0], 0.0);
  EXPECT_EQ(g[9], 0.0);
}

// The full max() / min() give a NaN result's gradient to the NaN elements (PyTorch's
// evenly_distribute_backward); amax keeps NaN everywhere, as PyTorch's. A 0-d max(x, 0) passes
// its gradient through.
TEST(Autograd, MaxOfNaNAndZeroDimMaxHaveGradients) {
  Tensor x = tensor(std::vector<double>{1, NAN, 2, NAN}).requires_grad_(true);
  max(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0.5, 0, 0.5}));
  Tensor y = tensor(std::vector<double>{3, 1, 3}).requires_grad_(true);
  min(y * -1.0).backward();
  EXPECT_EQ(y.grad().to_vector<double>(), (std::vector<double>{-0.5, 0, -0.5}));
  Tensor s = tensor(std::vector<double>{4.0}, Shape{}).requires_grad_(true);
  for (bool keepdim : {false, true}) {
    s.set_grad(Tensor());
    max(s * 3.0, 0, keepdim).first.backward();
    EXPECT_EQ(s.grad().item<double>(), 3.0) << keepdim;
  }
}
