// The op table that drives the derivative tests (DESIGN principle 9): for every op with a
// derivative rule, gradcheck and gradgradcheck in float64 on contiguous, non-contiguous and
// broadcast inputs, and vjp-vs-jvp consistency. A rule added to autograd/derivatives.cpp
// without a case here makes EveryDerivativeIsTested fail.
#include <gtest/gtest.h>

#include <metagrad/metagrad.h>

#include <set>

using namespace metagrad;

namespace {

struct Input {
  Shape shape;
  double lo = -1, hi = 1;  // values drawn uniformly from [lo, hi]
  bool grad = true;        // differentiable input
  DType dtype = DType::Float64;
  Tensor fixed;            // a given tensor (indices, masks) instead of random values
};

struct OpCase {
  std::string name;                 // the op name in the derivative table it exercises
  std::vector<Input> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  bool second_order = true;         // run gradgradcheck
  double eps = 1e-6, atol = 1e-5;   // finite-difference step and tolerance
};

Input in(Shape s, double lo = -1, double hi = 1) { return {std::move(s), lo, hi}; }
Input fixed(Tensor t) {
  Input i;
  i.shape = t.shape();
  i.grad = false;
  i.fixed = std::move(t);
  return i;
}

// Values in [lo, hi]; `transposed` builds them as a permuted view (non-contiguous).
Tensor make(const Input& spec, Generator& gen, bool noncontig) {
  if (spec.fixed.defined()) return spec.fixed;
  Shape s = spec.shape;
  Tensor t;
  if (noncontig && s.size() >= 2) {
    Shape rev(s.rbegin(), s.rend());
    std::vector<int64_t> perm(s.size());
    for (size_t i = 0; i < s.size(); ++i) perm[i] = static_cast<int64_t>(s.size() - 1 - i);
    t = rand(rev, DType::Float64, &gen).permute(perm);
  } else if (noncontig && s.size() == 1) {
    t = rand({s[0] * 2}, DType::Float64, &gen).slice(0, 0, s[0] * 2, 2);
  } else {
    t = rand(s, DType::Float64, &gen);
  }
  Tensor v;
  {
    NoGradGuard ng;
    v = t * (spec.hi - spec.lo) + spec.lo;
    if (noncontig && s.size() >= 2) {
      // keep the permuted layout: write the values back into the strided view
      t.copy_(v);
      v = t;
    }
  }
  if (spec.grad) v.requires_grad_(true);
  return v;
}

Tensor idx(std::vector<int64_t> v) { return tensor(v); }
Tensor idx(std::vector<int64_t> v, Shape s) { return tensor(v, s); }

std::vector<OpCase> cases() {
  using T = const std::vector<Tensor>&;
  std::vector<OpCase> c = {
      // views
      {"reshape", {in({2, 3})}, [](T x) { return x[0].reshape({3, 2}); }},
      {"permute", {in({2, 3, 4})}, [](T x) { return x[0].permute({2, 0, 1}); }},
      {"expand", {in({3, 1})}, [](T x) { return x[0].expand({2, 3, 4}); }},
      {"slice", {in({5, 3})}, [](T x) { return x[0].slice(0, 1, 5, 2); }},
      {"select", {in({4, 3})}, [](T x) { return x[0].select(1, 2); }},
      {"slice_backward", {in({2, 3})}, [](T x) { return slice_backward(x[0], {5, 3}, 0, 1, 5, 2); }},
      {"select_backward", {in({4})}, [](T x) { return select_backward(x[0], {4, 3}, 1, 2); }},
      {"clone", {in({2, 3})}, [](T x) { return x[0].clone() * x[0]; }},
      // a float32 round trip: a coarser step, or rounding swamps the difference
      {"to_dtype", {in({3})}, [](T x) { return x[0].to(DType::Float32).to(DType::Float64) * 2; },
       true, 1e-2, 1e-4},
      {"copy_", {in({3})}, [](T x) { Tensor y = zeros({2, 3}, DType::Float64); y.copy_(x[0]); return y; }},
      {"fill_", {in({3})}, [](T x) { Tensor y = x[0] * 2; y.fill_(1); return y + x[0]; }},
      // unary
      {"neg", {in({2, 3})}, [](T x) { return neg(x[0]); }},
      {"abs", {in({2, 3}, 0.2, 1)}, [](T x) { return abs(x[0] - 0.6); }},
      {"sign", {in({3})}, [](T x) { return sign(x[0]) * x[0]; }},
      {"floor", {in({3})}, [](T x) { return floor(x[0] * 3.3 + 0.01) + x[0]; }},
      {"ceil", {in({3})}, [](T x) { return ceil(x[0] * 3.3 + 0.01) + x[0]; }},
      {"round", {in({3})}, [](T x) { return round(x[0] * 3.3 + 0.01) + x[0]; }},
      {"trunc", {in({3})}, [](T x) { return trunc(x[0] * 3.3 + 0.01) + x[0]; }},
      {"exp", {in({2, 3})}, [](T x) { return exp(x[0]); }},
      {"log", {in({2, 3}, 0.5, 2)}, [](T x) { return log(x[0]); }},
      {"log1p", {in({2, 3}, -0.5, 2)}, [](T x) { return log1p(x[0]); }},
      {"expm1", {in({2, 3})}, [](T x) { return expm1(x[0]); }},
      {"sqrt", {in({2, 3}, 0.5, 2)}, [](T x) { return sqrt(x[0]); }},
      {"rsqrt", {in({2, 3}, 0.5, 2)}, [](T x) { return rsqrt(x[0]); }},
      {"sin", {in({2, 3})}, [](T x) { return sin(x[0]); }},
      {"cos", {in({2, 3})}, [](T x) { return cos(x[0]); }},
      {"tan", {in({2, 3})}, [](T x) { return tan(x[0]); }},
      {"tanh", {in({2, 3})}, [](T x) { return tanh(x[0]); }},
      {"sigmoid", {in({2, 3}, -3, 3)}, [](T x) { return sigmoid(x[0]); }},
      // relu away from its kink: inputs in [0.1, 1] shifted half below zero
      {"relu", {in({2, 3}, 0.1, 1)}, [](T x) { return relu(x[0] * tensor({1.0, -1.0, 1.0})); }},
      {"reciprocal", {in({2, 3}, 0.5, 2)}, [](T x) { return reciprocal(x[0]); }},
      {"square", {in({2, 3})}, [](T x) { return square(x[0]); }},
      {"erf", {in({2, 3})}, [](T x) { return erf(x[0]); }},
      {"pow_scalar", {in({2, 3}, 0.5, 2)}, [](T x) { return pow(x[0], 2.5); }},
      // clamp with bounds kept away from the inputs in [-1, -0.6] u [0.6, 1]... by scaling
      {"clamp", {in({2, 3}, 0.1, 1)}, [](T x) { return clamp(x[0] * tensor({1.0, -1.0, 3.0}), -0.05, 2.0); }},
      // binary, with broadcasting
      {"add", {in({2, 3}), in({3})}, [](T x) { return x[0] + x[1]; }},
      {"sub", {in({2, 1}), in({3})}, [](T x) { return x[0] - x[1]; }},
      {"mul", {in({2, 3}), in({2, 1})}, [](T x) { return x[0] * x[1]; }},
      {"div", {in({2, 3}), in({3}, 0.5, 2)}, [](T x) { return x[0] / x[1]; }},
      {"pow", {in({2, 3}, 0.5, 2), in({3})}, [](T x) { return pow(x[0], x[1]); }},
      {"maximum", {in({2, 3}), in({3})}, [](T x) { return maximum(x[0], x[1] + 0.05); }},
      {"minimum", {in({2, 3}), in({3})}, [](T x) { return minimum(x[0], x[1] + 0.05); }},
      {"fmod", {in({2, 3}, 0.1, 0.9), in({3}, 1.5, 2)}, [](T x) { return fmod(x[0] * 3, x[1]); }},
      {"where", {fixed(tensor({true, false, true})), in({2, 3}), in({3})},
       [](T x) { return where(x[0], x[1], x[2]); }},
      // reductions
      {"sum", {in({2, 3, 4})}, [](T x) { return sum(x[0], {0, 2}); }},
      {"mean", {in({2, 3, 4})}, [](T x) { return mean(x[0], {1}, true); }},
      {"prod", {in({2, 3}, 0.5, 1.5)}, [](T x) { return prod(x[0], {1}); }},
      {"amax", {in({2, 5})}, [](T x) { return amax(x[0], {1}); }},
      {"amin", {in({2, 5})}, [](T x) { return amin(x[0], {0}, true); }},
      {"max_dim", {in({3, 4})}, [](T x) { return max(x[0], 1).first; }},
      {"min_dim", {in({3, 4})}, [](T x) { return min(x[0], 0, true).first; }},
      {"logsumexp", {in({3, 4})}, [](T x) { return logsumexp(x[0], {1}); }},
      {"norm", {in({3, 4})}, [](T x) { return norm(x[0], 2.0, {1}); }},
      {"var", {in({3, 4})}, [](T x) { return var(x[0], {1}); }},
      {"std", {in({3, 4})}, [](T x) { return metagrad::std(x[0], {0}, 1, true); }},
      // linear algebra
      {"matmul", {in({2, 3, 4}), in({4, 5})}, [](T x) { return matmul(x[0], x[1]); }},
      // indexing
      {"gather", {in({3, 4}), fixed(idx({0, 3, 1, 1, 2, 0}, {3, 2}))},
       [](T x) { return gather(x[0], 1, x[1]); }},
      {"scatter_add", {in({3, 4}), fixed(idx({0, 3, 1, 1, 2, 0}, {3, 2})), in({3, 2})},
       [](T x) { return scatter_add(x[0], 1, x[1], x[2]); }},
      {"index_select", {in({4, 3}), fixed(idx({2, 0, 2}))},
       [](T x) { return index_select(x[0], 0, x[1]); }},
      {"cat", {in({2, 3}), in({1, 3})}, [](T x) { return cat({x[0], x[1], x[0]}, 0); }},
      {"pad", {in({2, 3})}, [](T x) { return pad(x[0], {1, 2, 0, 1}, 0.5); }},
      // convolution and pooling. Shapes are small: gradcheck costs (outputs x inputs)
      // evaluations, gradgradcheck (inputs x (inputs + outputs)) backward passes.
      // conv2d: batch 2, stride 2, padding 1, groups 2, with a bias
      {"conv2d", {in({2, 4, 3, 3}), in({2, 2, 2, 2}), in({2})},
       [](T x) { return conv2d(x[0], x[1], x[2], {.stride = {2, 2}, .padding = {1, 1}, .groups = 2}); }},
      // conv2d: dilation 2, rectangular stride and padding, no bias
      {"conv2d", {in({1, 2, 5, 5}), in({2, 2, 2, 2})},
       [](T x) { return conv2d(x[0], x[1], {}, {.stride = {1, 2}, .padding = {0, 1}, .dilation = {2, 2}}); }},
      // the backward ops as functions of (grad_out, weight) and (grad_out, input); with stride
      // 2 and no padding along W, no window reads the input's last column
      {"conv2d_input_backward", {in({2, 2, 2, 1}), in({2, 2, 2, 2})},
       [](T x) {
         return conv2d_input_backward(x[0], x[1], {2, 4, 3, 3}, {.stride = {2, 2}, .padding = {1, 0}, .groups = 2});
       }},
      {"conv2d_weight_backward", {in({2, 2, 2, 1}), in({2, 4, 3, 3})},
       [](T x) {
         return conv2d_weight_backward(x[0], x[1], {2, 2, 2, 2}, {.stride = {2, 2}, .padding = {1, 0}, .groups = 2});
       }},
      // max_pool2d away from ties (DESIGN principle 9): the input is a fixed arrangement of
      // distinct values 0.1 apart plus 0.01 * x with x in [-1, 1], so within every window the
      // maximum leads by at least 0.08, far beyond the finite-difference step
      {"max_pool2d", {in({1, 2, 5, 5})},
       [](T x) {
         std::vector<double> base(50);
         for (size_t i = 0; i < base.size(); ++i) base[i] = 0.1 * static_cast<double>((i * 37) % 50);
         Tensor y = tensor(base, {1, 2, 5, 5}) + x[0] * 0.01;
         return max_pool2d(y, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}});
       }},
      // overlapping windows (kernel 3, stride 2) pick some inputs twice: the scatter adds
      {"max_pool2d_backward",
       {in({1, 2, 3, 3}),
        fixed(max_pool2d_with_indices(randn({1, 2, 5, 5}, DType::Float64),
                                      {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}}).second)},
       [](T x) { return max_pool2d_backward(x[0], x[1], {1, 2, 5, 5}); }},
      {"avg_pool2d", {in({1, 2, 5, 5})},
       [](T x) { return avg_pool2d(x[0], {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}}, false); }},
      {"avg_pool2d", {in({1, 2, 4, 5})},
       [](T x) { return avg_pool2d(x[0], {.kernel = {2, 3}, .padding = {1, 1}}, true); }},
      {"avg_pool2d_backward", {in({1, 2, 3, 3})},
       [](T x) {
         return avg_pool2d_backward(x[0], {1, 2, 5, 5}, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}}, true);
       }},
  };
  return c;
}

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
