// Tests of the fused softmax / log_softmax primitives (tensor/softmax.h, kernels/cpu/softmax.cpp)
// and of threshold_backward, ReLU's fused backward: values against float64 loops over
// std::vector and against the plain-ops twin x - logsumexp(x) (DESIGN principle 4) for the
// kernel's row and column shapes (softmax over the last dim or another one, rows longer than
// the summation block, several column blocks), float32 and float64, contiguous and strided
// inputs; the special values (-inf entries, rows of -inf, +inf, NaN, magnitudes of 1000); 0-d
// and empty inputs; the derivatives (the op table runs gradcheck and gradgradcheck on them);
// and the errors.
#include <gtest/gtest.h>

#include <metagrad/metagrad.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "test_util.h"

using namespace metagrad;

namespace {

using mg_cuda_test::allclose;
using Vec = std::vector<double>;
constexpr double kInf = std::numeric_limits<double>::infinity();

// log_softmax of x (row-major, shape [outer, n, inner]) over the middle dim, in float64.
Vec ref_log_softmax(const Vec& x, int64_t outer, int64_t n, int64_t inner) {
  Vec r(x.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j) {
      auto at = [&](int64_t i) { return static_cast<size_t>((o * n + i) * inner + j); };
      double m = -kInf;
      for (int64_t i = 0; i < n; ++i) m = std::max(m, x[at(i)]);
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += std::exp(x[at(i)] - m);
      for (int64_t i = 0; i < n; ++i) r[at(i)] = x[at(i)] - m - std::log(s);
    }
  return r;
}

void expect_close(const Tensor& got, const Vec& want, double tol, const char* what) {
  const Vec g = got.to_vector<double>();
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(g[i], want[i], tol * (1 + std::abs(want[i]))) << what << " at " << i;
}

Vec exp_of(Vec v) {
  for (double& e : v) e = std::exp(e);
  return v;
}

struct Case {
  Shape shape;
  int64_t dim;
};

}  // namespace

// Rows (dim last), columns (dim not last), long rows (beyond the 4096-term summation block),
// many columns (beyond a 256-column block), big enough to run in parallel.
TEST(Softmax, MatchesFloat64Loops) {
  const std::vector<Case> cases = {{{3, 5}, 1},      {{3, 5}, 0},       {{2, 3, 4}, 1},
                                   {{2, 3, 4}, -1},  {{1, 9000}, 1},    {{4, 3, 600}, 1},
                                   {{64, 1000}, -1}, {{50, 40, 30}, 0}, {{7}, 0}};
  unsigned seed = 1;
  for (const Case& c : cases) {
    const int64_t d = c.dim < 0 ? c.dim + static_cast<int64_t>(c.shape.size()) : c.dim;
    int64_t outer = 1, n = c.shape[static_cast<size_t>(d)], inner = 1;
    for (int64_t k = 0; k < static_cast<int64_t>(c.shape.size()); ++k) {
      if (k < d) outer *= c.shape[static_cast<size_t>(k)];
      if (k > d) inner *= c.shape[static_cast<size_t>(k)];
    }
    Vec x = random_values(outer * n * inner, seed++);
    for (double& v : x) v *= 5;
    const Vec want = ref_log_softmax(x, outer, n, inner);
    const Tensor t = tensor(x, c.shape);
    expect_close(log_softmax(t, c.dim), want, 1e-13, "log_softmax float64");
    expect_close(softmax(t, c.dim), exp_of(want), 1e-13, "softmax float64");
    const Tensor t32 = t.to(DType::Float32);
    EXPECT_EQ(log_softmax(t32, c.dim).dtype(), DType::Float32);
    expect_close(log_softmax(t32, c.dim), ref_log_softmax(t32.to_vector<double>(), outer, n, inner),
                 1e-6, "log_softmax float32");
    expect_close(softmax(t32, c.dim),
                 exp_of(ref_log_softmax(t32.to_vector<double>(), outer, n, inner)), 1e-6,
                 "softmax float32");
  }
}

// The plain-ops twin, on strided inputs (a transpose and a step-2 slice).
TEST(Softmax, MatchesTheCompositionOnStridedInputs) {
  const Tensor base = tensor(random_values(6 * 8 * 2, 11), {6, 8 * 2}) * 3;
  const Tensor views[] = {base.t(), base.slice(1, 0, 16, 2), base.t().slice(0, 1, 16, 3)};
  for (const Tensor& v : views) {
    ASSERT_FALSE(v.is_contiguous());
    for (int64_t dim : {0, 1}) {
      const Tensor twin = v - logsumexp(v, {dim}, /*keepdim=*/true);
      expect_close(log_softmax(v, dim), twin.contiguous().to_vector<double>(), 1e-14, "log");
      expect_close(softmax(v, dim), exp(twin).contiguous().to_vector<double>(), 1e-14, "soft");
    }
  }
}

TEST(Softmax, SpecialValues) {
  // Row 0: a -inf entry. Row 1: all -inf. Row 2: +inf. Row 3: NaN. Row 4: magnitudes of 1000.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Vec x = {-kInf, 0.0, 1.0, -kInf, -kInf, -kInf, kInf, 0.0,
                 1.0,   nan, 0.0, 1.0,   1000,  1001,  -1000};
  for (DType dt : {DType::Float64, DType::Float32}) {
    const Tensor t = tensor(x, {5, 3}).to(dt);
    const Vec lsm = log_softmax(t, 1).to_vector<double>();
    const Vec sm = softmax(t, 1).to_vector<double>();
    const double z = std::log(1 + std::exp(1.0));
    // a -inf entry: probability 0, log -inf; the others as if it were absent
    EXPECT_EQ(lsm[0], -kInf);
    EXPECT_EQ(sm[0], 0.0);
    EXPECT_NEAR(lsm[1], -z, 1e-6);
    EXPECT_NEAR(lsm[2], 1 - z, 1e-6);
    EXPECT_NEAR(sm[1] + sm[2], 1.0, 1e-6);
    for (int k = 3; k < 6; ++k) EXPECT_TRUE(std::isnan(lsm[k]) && std::isnan(sm[k])) << k;
    // +inf: the whole row is NaN (shifted by the max, inf - inf), as PyTorch's
    for (int k = 6; k < 9; ++k) EXPECT_TRUE(std::isnan(lsm[k]) && std::isnan(sm[k])) << k;
    for (int k = 9; k < 12; ++k) EXPECT_TRUE(std::isnan(lsm[k]) && std::isnan(sm[k])) << k;
    // 1000, 1001, -1000: e^1001 overflows, the shifted form does not. float32 rounds once, at
    // the output: within an ulp of 2 and of 2001.
    const double z2 = std::log(std::exp(-1.0) + 1);
    EXPECT_NEAR(lsm[12], -1 - z2, dt == DType::Float32 ? 3e-7 : 1e-15);
    EXPECT_NEAR(lsm[13], -z2, dt == DType::Float32 ? 3e-8 : 1e-15);
    EXPECT_NEAR(lsm[14], -2001 - z2, dt == DType::Float32 ? 2e-4 : 1e-12);
    EXPECT_NEAR(sm[12] + sm[13], 1.0, 1e-7);
    EXPECT_EQ(sm[14], 0.0);
  }
  // The gradient through a -inf entry is finite: d lsm / dx = g - softmax * sum(g).
  Tensor t = tensor(Vec{-kInf, 0.0, 1.0}, {3}).requires_grad_(true);
  const Vec g =
      grad({log_softmax(t, 0)}, {t}, {tensor(Vec{1.0, 2.0, 3.0}, {3})})[0].to_vector<double>();
  const double p1 = 1 / (1 + std::exp(1.0));
  EXPECT_EQ(g[0], 1.0);
  EXPECT_NEAR(g[1], 2 - 6 * p1, 1e-15);
  EXPECT_NEAR(g[2], 3 - 6 * (1 - p1), 1e-15);
}

TEST(Softmax, ZeroDimAndEmpty) {
  const Tensor s = tensor(Vec{3.5}, {}).reshape({});
  EXPECT_EQ(softmax(s, 0).item<double>(), 1.0);
  EXPECT_EQ(log_softmax(s, -1).item<double>(), 0.0);
  EXPECT_EQ(softmax(zeros({0, 3}, DType::Float64), 1).shape(), (Shape{0, 3}));
  EXPECT_EQ(log_softmax(zeros({3, 0}), 1).shape(), (Shape{3, 0}));
  // gradient of a 0-d log_softmax: g - 1 * g = 0
  Tensor x = tensor(Vec{2.0}, {}).reshape({}).requires_grad_(true);
  EXPECT_EQ(grad({log_softmax(x, 0)}, {x})[0].item<double>(), 0.0);
}

// The derivatives are ops on the saved output (checked to every order by the op table); here a
// Hessian-vector product of a cross-entropy-like loss against the composition.
TEST(Softmax, SecondDerivativeMatchesComposition) {
  const Tensor x0 = tensor(random_values(12, 5), {3, 4}) * 2;
  const Tensor w = tensor(random_values(12, 6), {3, 4});
  const Tensor v = tensor(random_values(12, 7), {3, 4});
  auto hvp = [&](auto lsm) {
    Tensor x = x0.clone().requires_grad_(true);
    Tensor loss = sum(lsm(x) * w) + sum(square(exp(lsm(x))));
    Tensor g = grad({loss}, {x}, {}, true, /*create_graph=*/true)[0];
    return grad({sum(g * v)}, {x})[0].to_vector<double>();
  };
  const Vec fused = hvp([](const Tensor& x) { return log_softmax(x, 1); });
  const Vec twin = hvp([](const Tensor& x) { return x - logsumexp(x, {1}, true); });
  for (size_t i = 0; i < fused.size(); ++i) EXPECT_NEAR(fused[i], twin[i], 1e-13) << i;
}

TEST(Softmax, Errors) {
  EXPECT_MG_ERROR_HAS(softmax(zeros({2, 3}, DType::Int64), 1), "[softmax]", "floating-point");
  EXPECT_MG_ERROR_HAS(log_softmax(zeros({2, 3}, DType::Int32), 0), "[log_softmax]",
                      "floating-point");
  EXPECT_MG_ERROR_HAS(softmax(zeros({2, 3}), 2), "[softmax]", "out of range");
  EXPECT_MG_ERROR_HAS(log_softmax(Tensor(), 0), "[log_softmax]", "undefined");
}

// The fused first derivatives (Note [Fused softmax backward]) against their formulas in ops,
// in both loop shapes (the last dim; a middle dim, several column blocks), float32 and float64,
// strided gradients, and as the rule a backward pass without create_graph runs.
TEST(SoftmaxBackward, MatchesTheFormulaInOps) {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const double tol = dtype == DType::Float64 ? 1e-14 : 2e-6;
    for (const auto& [shape, dim] : std::vector<std::pair<Shape, int64_t>>{
             {{5, 7}, 1}, {{3, 5000}, -1}, {{4, 6, 300}, 1}, {{2, 3, 4}, 0}, {{9}, 0}}) {
      SCOPED_TRACE(shape_str(shape) + " dim " + std::to_string(dim));
      const int64_t numel = numel_of(shape);
      const Tensor x = (tensor(random_values(numel, 3), shape) * 4.0).to(dtype);
      // a transposed gradient: the op takes any strides
      Shape rev(shape.rbegin(), shape.rend());
      std::vector<int64_t> perm;
      for (int64_t k = static_cast<int64_t>(shape.size()) - 1; k >= 0; --k) perm.push_back(k);
      const Tensor g = tensor(random_values(numel, 4), rev).to(dtype).permute(perm);
      const Tensor y = softmax(x, dim), ly = log_softmax(x, dim);
      const Tensor want = y * (g - sum(g * y, {dim}, true));
      const Tensor lwant = g - exp(ly) * sum(g, {dim}, true);
      EXPECT_TRUE(allclose(softmax_backward(g, y, dim), want, tol, tol));
      EXPECT_TRUE(allclose(log_softmax_backward(g, ly, dim), lwant, tol, tol));
      // through autograd (no create_graph: the fused kernels)
      Tensor xa = x.clone().requires_grad_(true);
      EXPECT_TRUE(allclose(grad({softmax(xa, dim)}, {xa}, {g})[0], want, tol, tol));
      EXPECT_TRUE(allclose(grad({log_softmax(xa, dim)}, {xa}, {g})[0], lwant, tol, tol));
    }
  }
  // empty and 0-d
  EXPECT_EQ(softmax_backward(zeros({0, 3}), zeros({0, 3}), 1).shape(), (Shape{0, 3}));
  const Tensor one = ones({});
  EXPECT_EQ(log_softmax_backward(one, zeros({}), 0).item<double>(), 0.0);  // 1 - e^0 * 1
}

TEST(SoftmaxBackward, ErrorsAndNotDifferentiable) {
  const Tensor y = softmax(randn({2, 3}), 1);
  EXPECT_MG_ERROR_HAS(softmax_backward(zeros({3, 2}), y, 1), "[softmax_backward]",
                      "expected a gradient of the output's shape [2, 3]");
  EXPECT_MG_ERROR_HAS(log_softmax_backward(zeros({2, 3}, DType::Float64), y, 1),
                      "[log_softmax_backward]", "dtype float32");
  EXPECT_MG_ERROR_HAS(softmax_backward(zeros({2, 3}), y, 2), "[softmax_backward]", "out of range");
  EXPECT_MG_ERROR_HAS(softmax_backward(zeros({2, 3}, DType::Int64), zeros({2, 3}, DType::Int64), 1),
                      "[softmax_backward]", "floating-point");
  Tensor g = ones({2, 3}).requires_grad_(true);
  const Tensor dx = softmax_backward(g, y, 1);
  EXPECT_MG_ERROR_HAS(sum(dx).backward(), "[autograd]", "not differentiable");
}

// The fused cross-entropy against log_softmax + pick: the loss bitwise (Note [Fused
// cross-entropy]), its fused first derivative and its recorded second derivative (an HVP)
// within rounding, on contiguous and transposed logits, float32 and float64, with special
// values in a row.
TEST(CrossEntropyLoss, MatchesTheComposition) {
  const Tensor t = tensor<int64_t>({0, 4, 2, 2, 3, 1}, {6});
  for (DType dt : {DType::Float64, DType::Float32}) {
    for (bool transposed : {false, true}) {
      SCOPED_TRACE(std::string(dt == DType::Float64 ? "float64" : "float32") +
                   (transposed ? ", transposed" : ""));
      Tensor base = tensor(random_values(30, 21), {6, 5}) * 4;
      base = base.to(dt);
      Tensor xf = (transposed ? base.t().contiguous().t() : base.clone()).requires_grad_(true);
      Tensor xc = base.clone().requires_grad_(true);
      const Tensor fused = cross_entropy_loss(xf, t);
      const Tensor twin = -gather(log_softmax(xc, 1), 1, t.unsqueeze(1)).squeeze(1);
      EXPECT_EQ(fused.to_vector<double>(), twin.to_vector<double>());
      const Tensor w = tensor(random_values(6, 22), {6}).to(dt);
      const Vec gf = grad({sum(fused * w)}, {xf})[0].to_vector<double>();
      const Vec gc = grad({sum(twin * w)}, {xc})[0].to_vector<double>();
      const double tol = dt == DType::Float64 ? 1e-14 : 1e-6;
      for (size_t i = 0; i < gf.size(); ++i) EXPECT_NEAR(gf[i], gc[i], tol) << i;
      // Hessian-vector products through the recorded first derivative.
      const Tensor v = tensor(random_values(30, 23), {6, 5}).to(dt);
      auto hvp = [&](const Tensor& x, const Tensor& loss) {
        Tensor g = grad({sum(loss * w)}, {x}, {}, true, /*create_graph=*/true)[0];
        return grad({sum(g * v)}, {x})[0].to_vector<double>();
      };
      const Vec hf = hvp(xf, cross_entropy_loss(xf, t));
      const Vec hc = hvp(xc, -gather(log_softmax(xc, 1), 1, t.unsqueeze(1)).squeeze(1));
      for (size_t i = 0; i < hf.size(); ++i) EXPECT_NEAR(hf[i], hc[i], tol) << i;
    }
  }
  // A -inf logit, and a row holding +inf (loss +inf when the target is finite, NaN on it).
  const double inf = std::numeric_limits<double>::infinity();
  const Tensor sx = tensor(Vec{0, -inf, 1, inf, 0, 2, 5, 5, inf}, {3, 3});
  const Tensor st = tensor<int64_t>({0, 1, 2}, {3});
  const Tensor sl = cross_entropy_loss(sx, st);
  const Tensor sc = -gather(log_softmax(sx, 1), 1, st.unsqueeze(1)).squeeze(1);
  for (int64_t i = 0; i < 3; ++i) {
    const double a = sl.to_vector<double>()[static_cast<size_t>(i)];
    const double b = sc.to_vector<double>()[static_cast<size_t>(i)];
    EXPECT_TRUE(a == b || (std::isnan(a) && std::isnan(b))) << i << ": " << a << " vs " << b;
  }
}

// A +inf logit makes its row's loss NaN (shifted by the max: inf - inf), as PyTorch's, where
// logsumexp of the same row is +inf; a -inf logit of another class changes nothing.
TEST(CrossEntropyLoss, InfiniteLogits) {
  for (DType dt : {DType::Float64, DType::Float32}) {
    const Tensor x = tensor(Vec{kInf, 1.0, 0.0, -kInf, 0.0, 1.0}, {2, 3}).to(dt);
    const Vec l = cross_entropy_loss(x, tensor<int64_t>({1, 2}, {2})).to_vector<double>();
    EXPECT_TRUE(std::isnan(l[0]));
    EXPECT_NEAR(l[1], std::log(1 + std::exp(1.0)) - 1, 1e-6);
    EXPECT_EQ(logsumexp(x, {1}, false).to_vector<double>()[0], kInf);
  }
}

TEST(CrossEntropyLoss, Errors) {
  const Tensor x = zeros({3, 5});
  EXPECT_MG_ERROR(cross_entropy_loss(x, tensor<int64_t>({0, 5, 1}, {3})),
                  "[cross_entropy] target 5 is out of bounds for 5 classes");
  EXPECT_MG_ERROR(cross_entropy_loss(x, tensor<int64_t>({0, -1, 1}, {3})),
                  "[cross_entropy] target -1 is out of bounds for 5 classes");
  EXPECT_MG_ERROR_HAS(cross_entropy_loss(x, tensor<int64_t>({0, 1}, {2})), "[cross_entropy]",
                      "does not match logits of shape [3, 5]");
  EXPECT_MG_ERROR_HAS(cross_entropy_loss(x, zeros({3})), "[cross_entropy]", "int64");
  EXPECT_MG_ERROR_HAS(cross_entropy_loss(zeros({3}), tensor<int64_t>({0}, {1})), "[cross_entropy]",
                      "(N, C)");
  // The backward is public too: its targets are checked as the forward's.
  EXPECT_MG_ERROR(cross_entropy_loss_backward(ones({3}), x, tensor<int64_t>({0, 5, 1}, {3})),
                  "[cross_entropy_loss_backward] target 5 is out of bounds for 5 classes");
  EXPECT_MG_ERROR(cross_entropy_loss_backward(ones({3}), x, tensor<int64_t>({0, -5, 1}, {3})),
                  "[cross_entropy_loss_backward] target -5 is out of bounds");
  // The fused backward is a first derivative only.
  Tensor xr = zeros({2, 3}).requires_grad_(true);
  Tensor gx = cross_entropy_loss_backward(ones({2}), xr, tensor<int64_t>({0, 2}, {2}));
  ASSERT_TRUE(gx.requires_grad());
  EXPECT_THROW(grad({sum(gx)}, {xr}), Error);
  EXPECT_EQ(cross_entropy_loss(zeros({0, 4}), tensor<int64_t>(std::vector<int64_t>{}, {0})).numel(),
            0);
}

TEST(ThresholdBackward, ValuesAndBroadcast) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor g = tensor(Vec{1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor x = tensor(Vec{0.5, 0.0, -1, nan, 2, -0.0}, {2, 3});
  // x <= 0 ? 0 : g, as PyTorch's: a NaN x passes its gradient (relu(NaN) = NaN)
  expect_close(threshold_backward(g, x), {1, 0, 0, 4, 5, 0}, 0, "values");
  // x broadcast over rows; a float32 gradient against a float64 x promotes
  const Tensor xr = tensor(Vec{1, -1, 1}, {3});
  expect_close(threshold_backward(g, xr), {1, 0, 3, 4, 0, 6}, 0, "broadcast");
  EXPECT_EQ(threshold_backward(g.to(DType::Float32), xr).dtype(), DType::Float64);
  // strided operands
  expect_close(threshold_backward(g.t(), x.t()), {1, 4, 0, 5, 0, 0}, 0, "transposed");
  EXPECT_MG_ERROR_HAS(threshold_backward(zeros({2}, DType::Int64), zeros({2}, DType::Int64)),
                      "[threshold_backward]", "floating-point");
}

// relu's backward is threshold_backward; its second derivative w.r.t. x is zero (reached, so
// grad() returns zeros), w.r.t. the incoming gradient it is the same mask.
TEST(ThresholdBackward, ReluDerivatives) {
  Tensor x = tensor(Vec{-1.5, 0.5, 2.0, -0.1}, {4}).requires_grad_(true);
  Tensor v = tensor(Vec{1, 2, 3, 4}, {4}).requires_grad_(true);
  Tensor y = relu(x);
  EXPECT_EQ(y.grad_fn()->name(), "ReluBackward");
  Tensor gx = grad({y}, {x}, {v}, true, /*create_graph=*/true)[0];
  expect_close(gx, {0, 2, 3, 0}, 0, "relu grad");
  auto gg = grad({sum(gx * tensor(Vec{5, 6, 7, 8}, {4}))}, {x, v});
  expect_close(gg[0], {0, 0, 0, 0}, 0, "d/dx");
  expect_close(gg[1], {0, 6, 7, 0}, 0, "d/dv");
}
