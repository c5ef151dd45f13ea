// Tests of nn::functional's norm, activation and loss layers (nn/functional/{norm,activation,
// loss}.h): values against float64 references computed here with plain loops over
// std::vector (batch norm in training and eval mode with its running statistics, layer norm,
// activations, softmax and log_softmax, every loss with each reduction), numerical stability
// at large inputs, dropout's statistics, non-contiguous inputs, gradcheck AND gradgradcheck of
// every function in float64 (they are compositions of differentiable ops, so every order must
// be exact), and each error.
#include <gtest/gtest.h>

#include "test_util.h"

#include <metagrad/metagrad.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace metagrad;
namespace F = metagrad::nn::functional;
using F::Reduction;

namespace {

using Vec = std::vector<double>;
using Tensors = std::vector<Tensor>;

// Throws metagrad::Error whose message starts with `prefix` and contains `part`.
void expect_error(const std::function<void()>& fn, const std::string& prefix,
                  const std::string& part = "") {
  try {
    fn();
    ADD_FAILURE() << "expected metagrad::Error starting with " << prefix;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(prefix, 0), 0u) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << msg << "\n  should contain: " << part;
  }
}

Vec uniform(size_t n, double lo, double hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Vec v(n);
  for (double& e : v) e = u(rng);
  return v;
}

Tensor t64(const Vec& v, const Shape& s) {
  return tensor(v, s);
}

void expect_close(const Tensor& got, const Vec& want, double tol, const std::string& what = "") {
  const Vec g = got.to_vector<double>();
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_NEAR(g[i], want[i], tol * (1 + std::abs(want[i]))) << what << " at " << i;
}

// The same values as a non-contiguous tensor: stored transposed, viewed back.
Tensor noncontig(const Vec& v, const Shape& s) {
  Tensor t = t64(v, s);
  Shape rev(s.rbegin(), s.rend());
  std::vector<int64_t> perm(s.size());
  for (size_t i = 0; i < s.size(); ++i) perm[i] = static_cast<int64_t>(s.size() - 1 - i);
  Tensor store = t.permute(perm).contiguous();  // shape rev
  Tensor view = store.permute(perm);            // shape s again, strides reversed
  EXPECT_FALSE(view.is_contiguous());
  return view;
}

// gradcheck and gradgradcheck of f at float64 inputs (those that require grad are checked).
void check_grads(const std::string& name, const std::function<Tensor(const Tensors&)>& fn,
                 const Tensors& inputs, double atol = 1e-5) {
  TensorsFn f = [&](const Tensors& x) { return Tensors{fn(x)}; };
  GradcheckResult r = gradcheck(f, inputs, {.atol = atol, .raise = false});
  EXPECT_TRUE(r.ok) << name << ": " << r.message;
  GradcheckResult r2 = gradgradcheck(f, inputs, {}, {.atol = atol, .raise = false});
  EXPECT_TRUE(r2.ok) << name << " second order: " << r2.message;
}

Tensor leaf(const Vec& v, const Shape& s) {
  return t64(v, s).requires_grad_(true);
}

// ---- batch norm reference ---------------------------------------------------------------

// x as [N, C, S] (S = product of the spatial dims), row-major.
struct BnRef {
  Vec y, mean, var_biased, var_unbiased;
};
BnRef bn_ref(const Vec& x, int64_t n, int64_t c, int64_t s, const Vec* w, const Vec* b,
             const Vec* rm, const Vec* rv, bool training, double eps) {
  BnRef r;
  r.y.resize(x.size());
  for (int64_t ch = 0; ch < c; ++ch) {
    double m = 0, v = 0;
    const double cnt = static_cast<double>(n * s);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) m += x[static_cast<size_t>((i * c + ch) * s + k)];
    m /= cnt;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) {
        const double d = x[static_cast<size_t>((i * c + ch) * s + k)] - m;
        v += d * d;
      }
    r.mean.push_back(m);
    r.var_biased.push_back(v / cnt);
    r.var_unbiased.push_back(v / (cnt - 1));
    const double mu = training ? m : (*rm)[static_cast<size_t>(ch)];
    const double va = training ? v / cnt : (*rv)[static_cast<size_t>(ch)];
    const double wc = w ? (*w)[static_cast<size_t>(ch)] : 1.0;
    const double bc = b ? (*b)[static_cast<size_t>(ch)] : 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) {
        const size_t at = static_cast<size_t>((i * c + ch) * s + k);
        r.y[at] = (x[at] - mu) / std::sqrt(va + eps) * wc + bc;
      }
  }
  return r;
}

}  // namespace

// ======================================= batch_norm =======================================

TEST(BatchNorm, TrainingMatchesFormula) {
  const int64_t n = 4, c = 3, h = 2, w = 5;
  const Vec x = uniform(static_cast<size_t>(n * c * h * w), -2, 3, 1);
  const Vec wt = uniform(3, 0.5, 1.5, 2), bs = uniform(3, -1, 1, 3);
  const BnRef ref = bn_ref(x, n, c, h * w, &wt, &bs, nullptr, nullptr, true, 1e-5);
  Tensor y = F::batch_norm(t64(x, {n, c, h, w}), {}, {}, t64(wt, {3}), t64(bs, {3}), true);
  EXPECT_EQ(y.shape(), (Shape{n, c, h, w}));
  expect_close(y, ref.y, 1e-12, "affine");
  // Non-contiguous input gives the same values.
  expect_close(F::batch_norm(noncontig(x, {n, c, h, w}), {}, {}, t64(wt, {3}), t64(bs, {3}), true),
               ref.y, 1e-12, "non-contiguous");
  // No affine.
  const BnRef plain = bn_ref(x, n, c, h * w, nullptr, nullptr, nullptr, nullptr, true, 1e-3);
  expect_close(F::batch_norm(t64(x, {n, c, h, w}), {}, {}, {}, {}, true, 0.1, 1e-3), plain.y, 1e-12,
               "no affine");
  // NC input: spatial size 1.
  const Vec x2 = uniform(6 * 3, -1, 1, 4);
  const BnRef ref2 = bn_ref(x2, 6, 3, 1, &wt, nullptr, nullptr, nullptr, true, 1e-5);
  expect_close(F::batch_norm(t64(x2, {6, 3}), {}, {}, t64(wt, {3}), {}, true), ref2.y, 1e-12, "NC");
  // float32 agrees to float32 precision.
  Tensor y32 =
      F::batch_norm(t64(x, {n, c, h, w}).to(DType::Float32), {}, {},
                    t64(wt, {3}).to(DType::Float32), t64(bs, {3}).to(DType::Float32), true);
  EXPECT_EQ(y32.dtype(), DType::Float32);
  expect_close(y32, ref.y, 1e-5, "float32");
}

TEST(BatchNorm, RunningStatisticsAfterTwoCalls) {
  const int64_t n = 3, c = 2, s = 4;
  const double m = 0.3;
  const Vec x1 = uniform(static_cast<size_t>(n * c * s), -1, 2, 5);
  const Vec x2 = uniform(static_cast<size_t>(n * c * s), 0, 4, 6);
  Vec rm = {0.5, -0.25}, rv = {2.0, 0.75};  // the reference's copies
  Tensor running_mean = t64(rm, {c}), running_var = t64(rv, {c});
  for (const Vec* x : {&x1, &x2}) {
    const BnRef ref = bn_ref(*x, n, c, s, nullptr, nullptr, nullptr, nullptr, true, 1e-5);
    Tensor y = F::batch_norm(t64(*x, {n, c, 2, 2}), running_mean, running_var, {}, {}, true, m);
    expect_close(y, ref.y, 1e-12, "output uses the batch statistics");
    for (size_t ch = 0; ch < 2; ++ch) {
      rm[ch] = (1 - m) * rm[ch] + m * ref.mean[ch];
      rv[ch] = (1 - m) * rv[ch] + m * ref.var_unbiased[ch];  // unbiased, as PyTorch
    }
  }
  expect_close(running_mean, rm, 1e-13, "running_mean");
  expect_close(running_var, rv, 1e-13, "running_var");
  EXPECT_FALSE(running_mean.requires_grad());

  // float32 running statistics with a float32 input, updated in place through a view (a
  // slice of a larger buffer) too.
  Tensor buf = zeros({2 * c}, DType::Float32);
  Tensor rm32 = buf.slice(0, 0, 2 * c, 2), rv32 = ones({c}, DType::Float32);
  F::batch_norm(t64(x1, {n, c, s}).to(DType::Float32), rm32, rv32, {}, {}, true, m);
  const BnRef ref1 = bn_ref(x1, n, c, s, nullptr, nullptr, nullptr, nullptr, true, 1e-5);
  expect_close(buf, {m * ref1.mean[0], 0, m * ref1.mean[1], 0}, 1e-6, "float32 running_mean");
  expect_close(rv32, {(1 - m) + m * ref1.var_unbiased[0], (1 - m) + m * ref1.var_unbiased[1]}, 1e-6,
               "float32 running_var");
}

TEST(BatchNorm, TrainingWithGradUpdatesRunningStatsOutsideTheGraph) {
  Tensor x = leaf(uniform(12, -1, 1, 7), {4, 3});
  Tensor rm = zeros({3}, DType::Float64), rv = ones({3}, DType::Float64);
  Tensor y = F::batch_norm(x, rm, rv, {}, {}, true);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_FALSE(rm.requires_grad());
  EXPECT_FALSE(rv.requires_grad());
  EXPECT_TRUE(y.grad_fn() != nullptr);
  // Each channel of the output has zero mean whatever x is, so sum(y) is constant in x: the
  // gradient flows through the batch statistics and cancels exactly. (Through running
  // statistics instead, it would be 1 / sqrt(var + eps) per element.)
  Tensor g = grad({sum(y)}, {x})[0];
  expect_close(g, Vec(12, 0.0), 1e-12, "d sum(y) / dx");
  // Backward did not touch the running statistics; they hold one update.
  const Vec rmv = rm.to_vector<double>();
  const Vec xv = x.to_vector<double>();
  for (int64_t ch = 0; ch < 3; ++ch) {
    double m = 0;
    for (int64_t i = 0; i < 4; ++i) m += xv[static_cast<size_t>(i * 3 + ch)];
    EXPECT_NEAR(rmv[static_cast<size_t>(ch)], 0.1 * m / 4, 1e-15);
  }
}

TEST(BatchNorm, EvalUsesRunningStatistics) {
  const int64_t n = 2, c = 3, h = 3, w = 2;
  const Vec x = uniform(static_cast<size_t>(n * c * h * w), -2, 2, 8);
  const Vec rm = uniform(3, -1, 1, 9), rv = uniform(3, 0.5, 2, 10);
  const Vec wt = uniform(3, 0.5, 1.5, 11), bs = uniform(3, -1, 1, 12);
  Tensor running_mean = t64(rm, {c}), running_var = t64(rv, {c});
  const BnRef ref = bn_ref(x, n, c, h * w, &wt, &bs, &rm, &rv, false, 1e-5);
  Tensor y = F::batch_norm(t64(x, {n, c, h, w}), running_mean, running_var, t64(wt, {3}),
                           t64(bs, {3}), false);
  expect_close(y, ref.y, 1e-12, "eval");
  expect_close(running_mean, rm, 0, "running_mean unchanged");
  expect_close(running_var, rv, 0, "running_var unchanged");
  // One value per channel is fine in eval mode.
  const Vec one = {0.5, -1.0, 2.0};
  const BnRef ref1 = bn_ref(one, 1, 3, 1, nullptr, nullptr, &rm, &rv, false, 1e-5);
  expect_close(F::batch_norm(t64(one, {1, 3}), running_mean, running_var, {}, {}, false), ref1.y,
               1e-12, "eval with one value per channel");
}

TEST(BatchNorm, EmptyBatchLeavesRunningStatistics) {
  Tensor rm = zeros({3}, DType::Float64), rv = ones({3}, DType::Float64);
  Tensor y = F::batch_norm(zeros({0, 3, 2}, DType::Float64), rm, rv, {}, {}, true);
  EXPECT_EQ(y.shape(), (Shape{0, 3, 2}));
  expect_close(rm, {0, 0, 0}, 0);
  expect_close(rv, {1, 1, 1}, 0);
}

TEST(BatchNorm, GradcheckAndGradgradcheck) {
  const Tensor x = leaf(uniform(3 * 2 * 2 * 2, -1, 1, 13), {3, 2, 2, 2});
  const Tensor w = leaf(uniform(2, 0.5, 1.5, 14), {2});
  const Tensor b = leaf(uniform(2, -1, 1, 15), {2});
  // Training mode with running statistics: the in-place update must not disturb the graph.
  Tensor rm = zeros({2}, DType::Float64), rv = ones({2}, DType::Float64);
  check_grads("batch_norm training",
              [&](const Tensors& a) { return F::batch_norm(a[0], rm, rv, a[1], a[2], true); },
              {x, w, b});
  check_grads("batch_norm training, no affine, NC",
              [](const Tensors& a) { return F::batch_norm(a[0], {}, {}, {}, {}, true); },
              {leaf(uniform(10, -1, 1, 16), {5, 2})});
  const Tensor erm = t64({0.2, -0.3}, {2}), erv = t64({0.8, 1.7}, {2});
  check_grads("batch_norm eval",
              [&](const Tensors& a) { return F::batch_norm(a[0], erm, erv, a[1], a[2], false); },
              {x, w, b});
  check_grads("batch_norm training, non-contiguous",
              [&](const Tensors& a) { return F::batch_norm(a[0], {}, {}, a[1], {}, true); },
              {noncontig(uniform(24, -1, 1, 17), {3, 2, 2, 2}).requires_grad_(true), w});
}

// ---- the fused op against its plain-ops twin (Note [Fused batch norm] in tensor/norm.h) ----

// Training-mode batch norm as the composition of differentiable ops it replaced: y, and the
// statistics native_batch_norm returns.
struct Composed {
  Tensor y, mean, invstd;
};
Composed composed_batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  std::vector<int64_t> dims = {0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  Shape bshape(static_cast<size_t>(x.dim()), 1);
  bshape[1] = x.size(1);
  const Tensor mu = mean(x, dims, true);
  const Tensor invstd = rsqrt(var(x, dims, 0, true) + eps);
  Tensor y = (x - mu) * invstd;
  if (w.defined()) y = y * w.reshape(bshape);
  if (b.defined()) y = y + b.reshape(bshape);
  return {y, mu.reshape({x.size(1)}), invstd.reshape({x.size(1)})};
}

void expect_tensors_close(const Tensor& got, const Tensor& want, double tol,
                          const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  expect_close(got, want.to_vector<double>(), tol, what);
}

// The fused forward, its first derivatives by the fused kernel (no create_graph) and by the
// recorded closed form (create_graph), and its second derivatives, all against the composed
// formula to 1e-12 in float64: through y alone (nn::functional::batch_norm) and through all
// three outputs (native_batch_norm, with gradients reaching mean and invstd).
TEST(BatchNorm, FusedMatchesComposedTwin) {
  struct Case {
    Shape shape;
    bool weight, bias, strided, stats;
    double eps;
  };
  const std::vector<Case> cases = {
      {{6, 3, 5, 7}, true, true, false, false, 1e-5},
      {{6, 3, 5, 7}, true, true, false, true, 1e-5},
      {{5, 4}, false, false, false, true, 1e-3},        // [N, C]: one value per row
      {{4, 2, 3}, true, false, true, true, 1e-5},       // strided input, weight only
      {{3, 2, 65, 70}, false, true, false, true, 0.1},  // rows longer than a statistics block
  };
  unsigned seed = 100;
  for (const Case& k : cases) {
    const std::string name = shape_str(k.shape) + (k.stats ? " with statistics" : "");
    int64_t numel = 1;
    for (int64_t s : k.shape) numel *= s;
    const int64_t c = k.shape[1];
    Vec xv = uniform(static_cast<size_t>(numel), -2, 3, seed++);
    const Tensor x = (k.strided ? noncontig(xv, k.shape) : t64(xv, k.shape)).requires_grad_(true);
    const Tensor w =
        k.weight ? leaf(uniform(static_cast<size_t>(c), 0.5, 1.5, seed++), {c}) : Tensor();
    const Tensor b = k.bias ? leaf(uniform(static_cast<size_t>(c), -1, 1, seed++), {c}) : Tensor();
    const Tensor gy = t64(uniform(static_cast<size_t>(numel), -1, 1, seed++), k.shape);
    const Tensor gm = t64(uniform(static_cast<size_t>(c), -1, 1, seed++), {c});
    const Tensor gi = t64(uniform(static_cast<size_t>(c), -1, 1, seed++), {c});
    Tensors params = {x};
    if (w.defined()) params.push_back(w);
    if (b.defined()) params.push_back(b);
    // <g, y> (+ <gm, mean> + <gi, invstd>): a scalar whose gradient is the vjp
    auto objective = [&](const Tensor& y, const Tensor& mu, const Tensor& is) {
      Tensor l = sum(y * gy);
      if (k.stats) l = l + sum(mu * gm) + sum(is * gi);
      return l;
    };
    auto fused = [&] {
      if (!k.stats) return objective(F::batch_norm(x, {}, {}, w, b, true, 0.1, k.eps), {}, {});
      auto [y, mu, is] = native_batch_norm(x, w, b, k.eps);
      return objective(y, mu, is);
    };
    const Composed ref = composed_batch_norm(x, w, b, k.eps);
    const Tensor ref_l = objective(ref.y, ref.mean, ref.invstd);
    {
      // training mode goes through the fused op
      EXPECT_EQ(F::batch_norm(x, {}, {}, w, b, true).grad_fn()->name(), "NativeBatchNormBackward");
      auto [y, mu, is] = native_batch_norm(x, w, b, k.eps);
      expect_tensors_close(y, ref.y, 1e-12, name + ": y");
      expect_tensors_close(mu, ref.mean, 1e-12, name + ": mean");
      expect_tensors_close(is, ref.invstd, 1e-12, name + ": invstd");
    }
    // first derivatives: the fused kernel, then the recorded closed form
    const Tensors want = grad({ref_l}, params, {}, true, /*create_graph=*/true);
    const Tensors by_kernel = grad({fused()}, params);
    const Tensors by_formula = grad({fused()}, params, {}, true, /*create_graph=*/true);
    for (size_t i = 0; i < params.size(); ++i) {
      const std::string what = name + ": d/d input " + std::to_string(i);
      expect_tensors_close(by_kernel[i], want[i], 1e-12, what + " (fused kernel)");
      expect_tensors_close(by_formula[i], want[i], 1e-12, what + " (closed form)");
    }
    // second derivatives: the gradient of <v, first derivatives> w.r.t. every input
    Tensor want2 = zeros({}, DType::Float64), got2 = zeros({}, DType::Float64);
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor v =
          t64(uniform(static_cast<size_t>(params[i].numel()), -1, 1, seed++), params[i].shape());
      want2 = want2 + sum(want[i] * v);
      got2 = got2 + sum(by_formula[i] * v);
    }
    // (the bias enters no first derivative: an unused input, zero)
    const Tensors h_want = grad({want2}, params, {}, std::nullopt, false, /*allow_unused=*/true);
    const Tensors h_got = grad({got2}, params, {}, std::nullopt, false, /*allow_unused=*/true);
    for (size_t i = 0; i < params.size(); ++i) {
      auto or_zero = [&](const Tensor& t) { return t.defined() ? t : zeros_like(params[i]); };
      expect_tensors_close(or_zero(h_got[i]), or_zero(h_want[i]), 1e-11,
                           name + ": second derivative w.r.t. input " + std::to_string(i));
    }
  }
}

// Note [Saved batch-norm statistics]: the fused backward on the forward's mean and invstd equals
// the one that recomputes them (float64: the same values, so exactly; float32: to its
// rounding), the two go together, and autograd keeps them (an in-place change is caught).
TEST(BatchNorm, BackwardOnSavedStatisticsEqualsRecomputing) {
  for (DType dt : {DType::Float64, DType::Float32}) {
    const Shape s = {7, 3, 9, 10};
    const Tensor x = t64(uniform(7 * 3 * 90, -2, 3, 50), s).to(dt);
    const Tensor w = t64(uniform(3, 0.5, 1.5, 51), {3}).to(dt);
    const Tensor gy = t64(uniform(7 * 3 * 90, -1, 1, 52), s).to(dt);
    auto [y, mu, is] = native_batch_norm(x, w, {}, 1e-5);
    auto [gx0, gw0, gb0] = native_batch_norm_backward(gy, x, w, 1e-5);
    auto [gx1, gw1, gb1] =
        native_batch_norm_backward(gy, x, w, 1e-5, {}, {}, {true, true, true}, mu, is);
    const double tol = dt == DType::Float64 ? 0.0 : 1e-5;
    expect_tensors_close(gx1, gx0, tol, std::string(dtype_name(dt)) + " grad_x");
    expect_tensors_close(gw1, gw0, tol, std::string(dtype_name(dt)) + " grad_weight");
    expect_tensors_close(gb1, gb0, tol, std::string(dtype_name(dt)) + " grad_bias");
    EXPECT_MG_ERROR_HAS(native_batch_norm_backward(gy, x, w, 1e-5, {}, {}, {true, true, true}, mu),
                        "[native_batch_norm_backward]", "give both or neither");
    EXPECT_MG_ERROR_HAS(native_batch_norm_backward(gy, x, w, 1e-5, {}, {}, {true, true, true},
                                                   mu, ones({4}, dt)),
                        "[native_batch_norm_backward]", "saved_invstd has shape [4]");
  }
  const Tensor x = t64(uniform(4 * 2 * 3, -1, 1, 53), {4, 2, 3}).requires_grad_(true);
  auto [y, mu, is] = native_batch_norm(x, {}, {}, 1e-5);
  {
    NoGradGuard ng;
    mu += 1.0;
  }
  EXPECT_MG_ERROR_HAS(sum(y).backward(), "[autograd]", "modified by an in-place operation");
}

TEST(BatchNorm, FusedBackwardFloat32AndDegenerateShapes) {
  // float32: the fused kernels against the float64 composition, to float32 precision.
  const Shape s = {8, 4, 6, 6};
  const Vec xv = uniform(8 * 4 * 36, -2, 3, 40), gv = uniform(8 * 4 * 36, -1, 1, 41);
  const Vec wv = uniform(4, 0.5, 1.5, 42), bv = uniform(4, -1, 1, 43);
  const Tensor x64 = leaf(xv, s), w64 = leaf(wv, {4}), b64 = leaf(bv, {4});
  const Composed ref = composed_batch_norm(x64, w64, b64, 1e-5);
  const Tensors want = grad({sum(ref.y * t64(gv, s))}, {x64, w64, b64});
  const Tensor x32 = t64(xv, s).to(DType::Float32).requires_grad_(true);
  const Tensor w32 = t64(wv, {4}).to(DType::Float32).requires_grad_(true);
  const Tensor b32 = t64(bv, {4}).to(DType::Float32).requires_grad_(true);
  auto [y, mu, is] = native_batch_norm(x32, w32, b32, 1e-5);
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_EQ(mu.dtype(), DType::Float32);
  expect_tensors_close(y, ref.y, 1e-5, "float32 y");
  expect_tensors_close(is, ref.invstd, 1e-5, "float32 invstd");
  const Tensors got = grad({sum(y * t64(gv, s).to(DType::Float32))}, {x32, w32, b32});
  for (size_t i = 0; i < 3; ++i)
    expect_tensors_close(got[i], want[i], 1e-4, "float32 gradient " + std::to_string(i));

  // No value per channel: NaN statistics, an empty output, zero parameter gradients.
  const Tensor e = zeros({0, 3, 2}, DType::Float64).requires_grad_(true);
  const Tensor ew = ones({3}, DType::Float64).requires_grad_(true);
  auto [ey, em, ei] = native_batch_norm(e, ew, {}, 1e-5);
  EXPECT_EQ(ey.shape(), (Shape{0, 3, 2}));
  EXPECT_TRUE(std::isnan(em.to_vector<double>()[0]));
  EXPECT_TRUE(std::isnan(ei.to_vector<double>()[2]));
  const Tensors eg = grad({sum(ey)}, {e, ew});
  EXPECT_EQ(eg[0].shape(), (Shape{0, 3, 2}));
  expect_close(eg[1], {0, 0, 0}, 0, "empty batch: d/dweight");

  // The backward kernel is a first derivative only: a graph through it refuses to go on.
  const Tensor x = leaf(uniform(12, -1, 1, 44), {4, 3});
  auto [gx, gw, gb] = native_batch_norm_backward(ones({4, 3}, DType::Float64), x, {}, 1e-5);
  EXPECT_FALSE(gw.defined());
  EXPECT_TRUE(gx.requires_grad());
  expect_error([&] { grad({sum(gx * gx)}, {x}); }, "[autograd]", "native_batch_norm_backward");
  expect_error([&] { native_batch_norm(zeros({4}, DType::Float64), {}, {}, 1e-5); },
               "[native_batch_norm]", "[N, C, ...]");
  expect_error(
      [&] {
        native_batch_norm(zeros({4, 3}), ones({3}, DType::Float64), {}, 1e-5);
      },
      "[native_batch_norm]", "dtype");
}

TEST(BatchNorm, Errors) {
  const Tensor x = zeros({4, 3, 2, 2}, DType::Float64);
  const Tensor c3 = ones({3}, DType::Float64), c4 = ones({4}, DType::Float64);
  expect_error([&] { F::batch_norm(x, c4, c3, {}, {}, true); }, "[batch_norm]",
               "running_mean has shape [4]");
  expect_error([&] { F::batch_norm(x, c3, c4, {}, {}, false); }, "[batch_norm]",
               "running_var has shape [4]");
  expect_error([&] { F::batch_norm(x, {}, {}, c4, {}, true); }, "[batch_norm]",
               "weight has shape [4] but the input of shape [4, 3, 2, 2] has 3 channels");
  expect_error([&] { F::batch_norm(x, {}, {}, {}, c4, true); }, "[batch_norm]", "bias");
  expect_error(
      [&] {
        F::batch_norm(x, {}, {}, ones({1, 3}, DType::Float64), {}, true);
      },
      "[batch_norm]", "weight has shape [1, 3]");
  expect_error([&] { F::batch_norm(x, c3, {}, {}, {}, true); }, "[batch_norm]", "both");
  expect_error([&] { F::batch_norm(x, {}, {}, {}, {}, false); }, "[batch_norm]", "eval mode");
  expect_error([&] { F::batch_norm(zeros({3}, DType::Float64), {}, {}, {}, {}, true); },
               "[batch_norm]", "got shape [3]");
  expect_error(
      [&] {
        F::batch_norm(zeros({4, 3}, DType::Int64), {}, {}, {}, {}, true);
      },
      "[batch_norm]", "floating-point");
  expect_error(
      [&] {
        F::batch_norm(zeros({1, 3}, DType::Float64), {}, {}, {}, {}, true);
      },
      "[batch_norm] expected more than 1 value per channel when training, got input of "
      "shape [1, 3]");
  expect_error(
      [&] {
        F::batch_norm(zeros({1, 3, 1, 1}), c3, c3, {}, {}, true);
      },
      "[batch_norm] expected more than 1 value per channel when training, got input of "
      "shape [1, 3, 1, 1]");
}

// ======================================= layer_norm =======================================

namespace {
// x as [rows, k] normalised per row; w, b of length k (or null).
Vec ln_ref(const Vec& x, int64_t rows, int64_t k, const Vec* w, const Vec* b, double eps) {
  Vec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    for (int64_t j = 0; j < k; ++j) m += x[static_cast<size_t>(r * k + j)];
    m /= static_cast<double>(k);
    for (int64_t j = 0; j < k; ++j) {
      const double d = x[static_cast<size_t>(r * k + j)] - m;
      v += d * d;
    }
    v /= static_cast<double>(k);
    for (int64_t j = 0; j < k; ++j) {
      const size_t at = static_cast<size_t>(r * k + j);
      y[at] = (x[at] - m) / std::sqrt(v + eps) * (w ? (*w)[static_cast<size_t>(j)] : 1.0) +
              (b ? (*b)[static_cast<size_t>(j)] : 0.0);
    }
  }
  return y;
}
}  // namespace

TEST(LayerNorm, MatchesFormula) {
  const Vec x = uniform(2 * 3 * 4, -3, 2, 20);
  const Vec w = uniform(12, 0.5, 1.5, 21), b = uniform(12, -1, 1, 22);
  expect_close(F::layer_norm(t64(x, {2, 3, 4}), {3, 4}, t64(w, {3, 4}), t64(b, {3, 4})),
               ln_ref(x, 2, 12, &w, &b, 1e-5), 1e-12, "over [3, 4], affine");
  expect_close(F::layer_norm(t64(x, {2, 3, 4}), {4}), ln_ref(x, 6, 4, nullptr, nullptr, 1e-5),
               1e-12, "over [4]");
  expect_close(F::layer_norm(noncontig(x, {2, 3, 4}), {4}, {}, {}, 0.1),
               ln_ref(x, 6, 4, nullptr, nullptr, 0.1), 1e-12, "non-contiguous, eps 0.1");
  const Vec w4(w.begin(), w.begin() + 4);
  expect_close(F::layer_norm(t64(x, {2, 3, 4}), {4}, t64(w4, {4})),
               ln_ref(x, 6, 4, &w4, nullptr, 1e-5), 1e-12, "weight only");
  expect_close(F::layer_norm(t64(x, {24}), {24}), ln_ref(x, 1, 24, nullptr, nullptr, 1e-5), 1e-12,
               "1-d over everything");
}

TEST(LayerNorm, GradcheckAndGradgradcheck) {
  check_grads("layer_norm affine",
              [](const Tensors& a) {
                return F::layer_norm(a[0], {2, 3}, a[1], a[2]);
              },
              {leaf(uniform(12, -1, 1, 23), {2, 2, 3}), leaf(uniform(6, 0.5, 1.5, 24), {2, 3}),
               leaf(uniform(6, -1, 1, 25), {2, 3})});
  check_grads("layer_norm plain", [](const Tensors& a) { return F::layer_norm(a[0], {4}); },
              {noncontig(uniform(12, -1, 1, 26), {3, 4}).requires_grad_(true)});
}

TEST(LayerNorm, Errors) {
  const Tensor x = zeros({2, 3, 4}, DType::Float64);
  expect_error([&] { F::layer_norm(x, {3}); }, "[layer_norm]",
               "normalized_shape [3] does not match the trailing dims of the input of shape "
               "[2, 3, 4]");
  expect_error([&] { F::layer_norm(x, {1, 2, 3, 4}); }, "[layer_norm]", "[1, 2, 3, 4]");
  expect_error([&] { F::layer_norm(x, {}); }, "[layer_norm]", "at least one dim");
  expect_error([&] { F::layer_norm(x, {4}, ones({3}, DType::Float64)); }, "[layer_norm]",
               "weight has shape [3]");
  expect_error(
      [&] {
        F::layer_norm(x, {3, 4}, {}, ones({12}, DType::Float64));
      },
      "[layer_norm]", "bias has shape [12]");
  expect_error(
      [&] {
        F::layer_norm(zeros({2, 4}, DType::Int64), {4});
      },
      "[layer_norm]", "floating-point");
}

// ======================================= activations ======================================

namespace {
using ScalarFn = std::function<double(double)>;
Vec map(const Vec& x, const ScalarFn& f) {
  Vec y(x.size());
  std::transform(x.begin(), x.end(), y.begin(), f);
  return y;
}
double ref_gelu(double v) {
  return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
}
double ref_sigmoid(double v) {
  return 1 / (1 + std::exp(-v));
}
double ref_elu(double v, double a) {
  return v > 0 ? v : a * (std::exp(v) - 1);
}
double ref_softplus(double v, double beta, double thr) {
  return beta * v > thr ? v : std::log(1 + std::exp(beta * v)) / beta;
}
}  // namespace

TEST(Activation, ValuesMatchLoops) {
  const Vec x = uniform(30, -4, 4, 30);
  const Shape s = {5, 6};
  for (bool nc : {false, true}) {
    const Tensor xt = nc ? noncontig(x, s) : t64(x, s);
    const std::string tag = nc ? " (non-contiguous)" : "";
    expect_close(F::relu(xt), map(x, [](double v) { return v > 0 ? v : 0; }), 1e-15, "relu" + tag);
    expect_close(F::leaky_relu(xt), map(x, [](double v) { return v > 0 ? v : 0.01 * v; }), 1e-15,
                 "leaky_relu" + tag);
    expect_close(F::leaky_relu(xt, 0.2), map(x, [](double v) { return v > 0 ? v : 0.2 * v; }),
                 1e-15, "leaky_relu 0.2" + tag);
    expect_close(F::elu(xt), map(x, [](double v) { return ref_elu(v, 1.0); }), 1e-14, "elu" + tag);
    expect_close(F::elu(xt, 0.7), map(x, [](double v) { return ref_elu(v, 0.7); }), 1e-14,
                 "elu 0.7" + tag);
    expect_close(F::gelu(xt), map(x, ref_gelu), 1e-14, "gelu" + tag);
    expect_close(F::tanh(xt), map(x, [](double v) { return std::tanh(v); }), 1e-14, "tanh" + tag);
    expect_close(F::sigmoid(xt), map(x, ref_sigmoid), 1e-14, "sigmoid" + tag);
    expect_close(F::softplus(xt), map(x, [](double v) { return ref_softplus(v, 1, 20); }), 1e-14,
                 "softplus" + tag);
    // beta 2, threshold 3: inputs on both sides of the switch at x = 1.5
    expect_close(F::softplus(xt, 2, 3), map(x, [](double v) { return ref_softplus(v, 2, 3); }),
                 1e-14, "softplus beta 2 threshold 3" + tag);
  }
  // float32 stays float32
  Tensor x32 = t64(x, s).to(DType::Float32);
  for (const Tensor& y : {F::relu(x32), F::leaky_relu(x32), F::elu(x32), F::gelu(x32),
                          F::softplus(x32), F::softmax(x32, 1), F::log_softmax(x32, 0)})
    EXPECT_EQ(y.dtype(), DType::Float32);
  expect_close(F::gelu(x32), map(x, ref_gelu), 1e-6, "gelu float32");
}

TEST(Activation, LargeInputsStayFinite) {
  const Vec x = {-1000, -100, -30, 30, 100, 1000};
  Tensor xt = leaf(x, {6});
  Tensor y = F::elu(xt) + F::softplus(xt) + F::gelu(xt);
  const Vec want = map(x, [](double v) {
    return ref_elu(v, 1) + (v > 20 ? v : std::log1p(std::exp(v))) + (v > 0 ? v : 0.0);
  });
  expect_close(y, want, 1e-12, "values");
  // The unused branches are clamped: no 0 * inf = NaN in the gradient.
  Tensor g = grad({sum(y)}, {xt})[0];
  const Vec want_g = map(x, [](double v) {
    const double elu_d = v > 0 ? 1 : std::exp(v);
    const double sp_d = v > 20 ? 1 : ref_sigmoid(v);
    const double gelu_d = v > 0 ? 1 : 0;  // Phi(x) + x phi(x) at |x| >= 30
    return elu_d + sp_d + gelu_d;
  });
  expect_close(g, want_g, 1e-12, "gradient");
  // float32: e^(beta x) would overflow above x = 88.7
  Tensor y32 = F::softplus(t64(x, {6}).to(DType::Float32)) + F::elu(t64(x, {6}).to(DType::Float32));
  for (double v : y32.to_vector<double>()) EXPECT_TRUE(std::isfinite(v));
}

TEST(Activation, SoftmaxMatchesLoops) {
  const int64_t r = 4, c = 7;
  const Vec x = uniform(static_cast<size_t>(r * c), -5, 5, 31);
  // Reference over dim 1 (rows) and dim 0 (columns), exp and sum in plain loops.
  Vec sm1(x.size()), lsm1(x.size()), sm0(x.size());
  for (int64_t i = 0; i < r; ++i) {
    double z = 0;
    for (int64_t j = 0; j < c; ++j) z += std::exp(x[static_cast<size_t>(i * c + j)]);
    for (int64_t j = 0; j < c; ++j) {
      sm1[static_cast<size_t>(i * c + j)] = std::exp(x[static_cast<size_t>(i * c + j)]) / z;
      lsm1[static_cast<size_t>(i * c + j)] = x[static_cast<size_t>(i * c + j)] - std::log(z);
    }
  }
  for (int64_t j = 0; j < c; ++j) {
    double z = 0;
    for (int64_t i = 0; i < r; ++i) z += std::exp(x[static_cast<size_t>(i * c + j)]);
    for (int64_t i = 0; i < r; ++i)
      sm0[static_cast<size_t>(i * c + j)] = std::exp(x[static_cast<size_t>(i * c + j)]) / z;
  }
  for (bool nc : {false, true}) {
    const Tensor xt = nc ? noncontig(x, {r, c}) : t64(x, {r, c});
    expect_close(F::softmax(xt, 1), sm1, 1e-13, "softmax dim 1");
    expect_close(F::softmax(xt, -1), sm1, 1e-13, "softmax dim -1");
    expect_close(F::log_softmax(xt, 1), lsm1, 1e-13, "log_softmax dim 1");
    expect_close(F::softmax(xt, 0), sm0, 1e-13, "softmax dim 0");
    expect_close(F::log_softmax(xt, -2), map(sm0, [](double v) { return std::log(v); }), 1e-12,
                 "log_softmax dim -2");
  }
  // Rows sum to one.
  expect_close(sum(F::softmax(t64(x, {r, c}), 1), {1}), Vec(static_cast<size_t>(r), 1.0), 1e-14,
               "row sums");
  // 0-d: a single element has probability 1.
  expect_close(F::softmax(t64({3.5}, {}), 0), {1.0}, 0, "0-d softmax");
  expect_close(F::log_softmax(t64({3.5}, {}), -1), {0.0}, 0, "0-d log_softmax");
  // Empty rows.
  EXPECT_EQ(F::softmax(zeros({0, 3}, DType::Float64), 1).shape(), (Shape{0, 3}));
}

TEST(Activation, LogSoftmaxIsStableForLargeInputs) {
  // exp(1000) overflows float64; the shifted form does not.
  const Vec x = {1000, 1001, 1002, -1000, 0, 1000};
  Vec want(6);
  for (int row = 0; row < 2; ++row) {
    double m = -1e300;
    for (int j = 0; j < 3; ++j) m = std::max(m, x[static_cast<size_t>(row * 3 + j)]);
    double z = 0;
    for (int j = 0; j < 3; ++j) z += std::exp(x[static_cast<size_t>(row * 3 + j)] - m);
    for (int j = 0; j < 3; ++j)
      want[static_cast<size_t>(row * 3 + j)] =
          x[static_cast<size_t>(row * 3 + j)] - m - std::log(z);
  }
  expect_close(F::log_softmax(t64(x, {2, 3}), 1), want, 1e-12, "float64");
  expect_close(F::softmax(t64(x, {2, 3}), 1), map(want, [](double v) { return std::exp(v); }),
               1e-12, "softmax float64");
  // float32: x - lse rounds at the scale of 1000, whose ulp is 6e-5.
  expect_close(F::log_softmax(t64(x, {2, 3}).to(DType::Float32), 1), want, 3e-5, "float32");
  Tensor xt = leaf(x, {2, 3});
  Tensor g = grad({sum(F::log_softmax(xt, 1) * t64({1, 0, 0, 0, 1, 0}, {2, 3}))}, {xt})[0];
  // d/dx_j of lsm_k = [j == k] - softmax_j
  Vec want_g(6);
  for (size_t i = 0; i < 6; ++i) want_g[i] = (i == 0 || i == 4 ? 1.0 : 0.0) - std::exp(want[i]);
  expect_close(g, want_g, 1e-12, "gradient");
}

TEST(Activation, GradcheckAndGradgradcheck) {
  // Kinked activations (relu, leaky_relu, elu) get inputs with |x| in [0.1, 1]: far from the
  // kink at 0 in units of the finite-difference step (DESIGN principle 9).
  const Vec mag = uniform(12, 0.1, 1, 40);
  Vec away(mag);
  for (size_t i = 0; i < away.size(); i += 2) away[i] = -away[i];
  const Tensor xk = leaf(away, {3, 4});
  const Tensor xs = leaf(uniform(12, -3, 3, 41), {3, 4});  // smooth functions: anywhere
  check_grads("relu", [](const Tensors& a) { return F::relu(a[0]); }, {xk});
  check_grads("leaky_relu", [](const Tensors& a) { return F::leaky_relu(a[0], 0.1); }, {xk});
  check_grads("elu", [](const Tensors& a) { return F::elu(a[0], 0.8); }, {xk});
  check_grads("gelu", [](const Tensors& a) { return F::gelu(a[0]); }, {xs});
  check_grads("tanh", [](const Tensors& a) { return F::tanh(a[0]); }, {xs});
  check_grads("sigmoid", [](const Tensors& a) { return F::sigmoid(a[0]); }, {xs});
  check_grads("softplus", [](const Tensors& a) { return F::softplus(a[0]); }, {xs});
  // beta 2, threshold 4: the switch at x = 2 is a (tiny) kink; inputs stay at |x| <= 1.5 or >= 2.5
  check_grads("softplus beta 2", [](const Tensors& a) { return F::softplus(a[0], 2, 4); },
              {leaf({-1.5, -0.3, 0.4, 1.5, 2.5, 3.0}, {6})});
  check_grads("softmax", [](const Tensors& a) { return F::softmax(a[0], 1); }, {xs});
  check_grads("log_softmax", [](const Tensors& a) { return F::log_softmax(a[0], 0); }, {xs});
  check_grads("softmax non-contiguous", [](const Tensors& a) { return F::softmax(a[0], -1); },
              {noncontig(uniform(12, -2, 2, 42), {4, 3}).requires_grad_(true)});
  check_grads("flatten", [](const Tensors& a) { return F::flatten(a[0]) * F::flatten(a[0]); },
              {leaf(uniform(24, -1, 1, 43), {2, 3, 4})});
  // dropout: the same seed every call, so f is one fixed function of x.
  check_grads("dropout",
              [](const Tensors& a) {
                Generator gen(5);
                return F::dropout(a[0], 0.4, true, &gen) * a[0];
              },
              {xs});
}

TEST(Activation, Dropout) {
  const int64_t n = 200000;
  const double p = 0.3;
  Tensor x = ones({n}, DType::Float64);
  Generator g1(123), g2(123), g3(124);
  Tensor y1 = F::dropout(x, p, true, &g1), y2 = F::dropout(x, p, true, &g2);
  Tensor y3 = F::dropout(x, p, true, &g3);
  const Vec v1 = y1.to_vector<double>(), v2 = y2.to_vector<double>(), v3 = y3.to_vector<double>();
  EXPECT_EQ(v1, v2) << "same seed, same mask";
  EXPECT_NE(v1, v3) << "another seed, another mask";
  int64_t kept = 0;
  for (double v : v1) {
    // Each element is dropped (0) or kept and scaled by 1 / (1 - p).
    EXPECT_TRUE(v == 0 || v == 1 / (1 - p)) << v;
    kept += v != 0;
  }
  const double freq = static_cast<double>(kept) / static_cast<double>(n);
  // binomial std of the frequency: sqrt(p (1 - p) / n) ~ 0.001; 5 sigma
  EXPECT_NEAR(freq, 1 - p, 0.005);
  // The next draw from the same generator gives a new mask.
  EXPECT_NE(F::dropout(x, p, true, &g1).to_vector<double>(), v1);

  // Scaling of actual values, the gradient is the scaled mask, float32 works.
  const Vec xv = uniform(1000, -2, 2, 50);
  Tensor xt = leaf(xv, {10, 100});
  Generator g4(7);
  Tensor y = F::dropout(xt, 0.5, true, &g4);
  const Vec yv = y.to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_TRUE(yv[i] == 0 || yv[i] == xv[i] * 2) << i;
  const Vec gv = grad({sum(y)}, {xt})[0].to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(gv[i], yv[i] == 0 ? 0.0 : 2.0) << i;
  Generator g5(7);
  EXPECT_EQ(F::dropout(ones({8}), 0.5, true, &g5).dtype(), DType::Float32);

  // Identity when not training or p == 0: the same tensor.
  EXPECT_TRUE(F::dropout(xt, 0.5, false).is_same(xt));
  EXPECT_TRUE(F::dropout(xt, 0.0, true).is_same(xt));
  // p == 1 drops everything, still differentiable (a zero gradient).
  Tensor z = F::dropout(xt, 1.0, true);
  expect_close(z, Vec(1000, 0.0), 0, "p = 1");
  expect_close(grad({sum(z)}, {xt})[0], Vec(1000, 0.0), 0, "p = 1 gradient");
  // The default generator is used without one, and reseeding it replays the mask.
  manual_seed(99);
  const Vec d1 = F::dropout(x, p, true).to_vector<double>();
  manual_seed(99);
  EXPECT_EQ(F::dropout(x, p, true).to_vector<double>(), d1);

  expect_error([&] { F::dropout(x, 1.5, true); }, "[dropout]",
               "dropout probability has to be between 0 and 1, but got 1.5");
  expect_error([&] { F::dropout(x, -0.1, false); }, "[dropout]", "-0.1");
  expect_error([&] { F::dropout(x, std::nan(""), true); }, "[dropout]", "between 0 and 1");
  expect_error([&] { F::dropout(zeros({3}, DType::Int64), 0.5, true); }, "[dropout]",
               "floating-point");
}

TEST(Activation, Flatten) {
  const Vec x = uniform(120, -1, 1, 60);
  Tensor xt = t64(x, {2, 3, 4, 5});
  EXPECT_EQ(F::flatten(xt).shape(), (Shape{2, 60}));
  expect_close(F::flatten(xt), x, 0, "values in order");
  EXPECT_EQ(F::flatten(xt, 0, 1).shape(), (Shape{6, 4, 5}));
  EXPECT_EQ(F::flatten(xt, 1, 2).shape(), (Shape{2, 12, 5}));
  EXPECT_EQ(F::flatten(xt, -2).shape(), (Shape{2, 3, 20}));
  expect_close(F::flatten(noncontig(x, {2, 3, 4, 5})), x, 0, "non-contiguous");
  expect_error([&] { F::flatten(t64({1, 2}, {2})); }, "[flatten]");
  expect_error([&] { F::flatten(xt, 3, 1); }, "[flatten]");
}

TEST(Activation, Errors) {
  const Tensor i = zeros({2, 3}, DType::Int64);
  expect_error([&] { F::softmax(i, 1); }, "[softmax]", "floating-point");
  expect_error([&] { F::log_softmax(i, 1); }, "[log_softmax]", "floating-point");
  expect_error([&] { F::softmax(zeros({2, 3}), 2); }, "[softmax]", "out of range");
  expect_error([&] { F::log_softmax(zeros({2, 3}), -3); }, "[log_softmax]", "out of range");
  expect_error([&] { F::gelu(i); }, "[gelu]");
  expect_error([&] { F::elu(i); }, "[elu]");
  expect_error([&] { F::leaky_relu(i); }, "[leaky_relu]");
  expect_error([&] { F::softplus(i); }, "[softplus]");
}

// ========================================= losses =========================================

namespace {
Vec reduce_ref(const Vec& per, Reduction r) {
  if (r == Reduction::None) return per;
  double s = 0;
  for (double v : per) s += v;
  return {r == Reduction::Sum ? s : s / static_cast<double>(per.size())};
}
constexpr Reduction kReductions[] = {Reduction::None, Reduction::Mean, Reduction::Sum};

// Per-sample cross entropy of logits [N, C] with label smoothing eps, by loops.
Vec ce_ref(const Vec& x, const std::vector<int64_t>& t, int64_t n, int64_t c, double eps) {
  Vec per;
  for (int64_t i = 0; i < n; ++i) {
    double m = -1e300;
    for (int64_t j = 0; j < c; ++j) m = std::max(m, x[static_cast<size_t>(i * c + j)]);
    double z = 0;
    for (int64_t j = 0; j < c; ++j) z += std::exp(x[static_cast<size_t>(i * c + j)] - m);
    const double lse = m + std::log(z);
    double smooth = 0;  // sum over classes of -log p_j, then / C
    for (int64_t j = 0; j < c; ++j) smooth += lse - x[static_cast<size_t>(i * c + j)];
    const double nll = lse - x[static_cast<size_t>(i * c + t[static_cast<size_t>(i)])];
    per.push_back((1 - eps) * nll + eps * smooth / static_cast<double>(c));
  }
  return per;
}
}  // namespace

TEST(Loss, NllLoss) {
  const int64_t n = 5, c = 4;
  const Vec lp = uniform(static_cast<size_t>(n * c), -3, 0, 70);
  const std::vector<int64_t> t = {3, 0, 2, 2, 1};
  Vec per;
  for (int64_t i = 0; i < n; ++i)
    per.push_back(-lp[static_cast<size_t>(i * c + t[static_cast<size_t>(i)])]);
  for (Reduction r : kReductions) {
    expect_close(F::nll_loss(t64(lp, {n, c}), tensor(t), r), reduce_ref(per, r), 1e-15, "nll");
    expect_close(F::nll_loss(noncontig(lp, {n, c}), tensor(t), r), reduce_ref(per, r), 1e-15,
                 "nll non-contiguous");
  }
  EXPECT_EQ(F::nll_loss(t64(lp, {n, c}), tensor(t), Reduction::None).shape(), (Shape{n}));
  EXPECT_EQ(F::nll_loss(t64(lp, {n, c}), tensor(t)).shape(), (Shape{}));
  // Unbatched: [C] with a 0-d target.
  expect_close(F::nll_loss(t64({-1, -2, -3}, {3}), tensor<int64_t>({1}, Shape{})), {2.0}, 0,
               "unbatched");
  check_grads("nll_loss", [&](const Tensors& a) { return F::nll_loss(a[0], tensor(t)); },
              {leaf(lp, {n, c})});
}

TEST(Loss, CrossEntropyMatchesLoops) {
  const int64_t n = 6, c = 5;
  const Vec x = uniform(static_cast<size_t>(n * c), -3, 3, 71);
  const std::vector<int64_t> t = {4, 0, 1, 3, 3, 2};
  for (double eps : {0.0, 0.1, 1.0}) {
    const Vec per = ce_ref(x, t, n, c, eps);
    for (Reduction r : kReductions) {
      const std::string tag =
          "eps " + std::to_string(eps) + " reduction " + std::to_string(static_cast<int>(r));
      expect_close(F::cross_entropy(t64(x, {n, c}), tensor(t), r, eps), reduce_ref(per, r), 1e-13,
                   tag);
      expect_close(F::cross_entropy(noncontig(x, {n, c}), tensor(t), r, eps), reduce_ref(per, r),
                   1e-13, tag + " non-contiguous");
    }
  }
  // Default: Mean, no smoothing.
  expect_close(F::cross_entropy(t64(x, {n, c}), tensor(t)),
               reduce_ref(ce_ref(x, t, n, c, 0), Reduction::Mean), 1e-13, "defaults");
  // float32
  expect_close(F::cross_entropy(t64(x, {n, c}).to(DType::Float32), tensor(t), Reduction::None, 0.2),
               ce_ref(x, t, n, c, 0.2), 1e-5, "float32");
}

TEST(Loss, CrossEntropyHigherDimsAndUnbatched) {
  // [N, C, L] with target [N, L]: each (n, l) is a sample over the C classes.
  const int64_t n = 2, c = 3, l = 4;
  const Vec x = uniform(static_cast<size_t>(n * c * l), -2, 2, 72);
  const std::vector<int64_t> t = {0, 2, 1, 1, 2, 2, 0, 1};
  // Move classes last by hand: xs[(i*l + k)*c + j] = x[(i*c + j)*l + k].
  Vec xs(x.size());
  std::vector<int64_t> ts;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < l; ++k) {
      for (int64_t j = 0; j < c; ++j)
        xs[static_cast<size_t>((i * l + k) * c + j)] = x[static_cast<size_t>((i * c + j) * l + k)];
      ts.push_back(t[static_cast<size_t>(i * l + k)]);
    }
  const Vec per = ce_ref(xs, ts, n * l, c, 0.3);
  expect_close(F::cross_entropy(t64(x, {n, c, l}), tensor(t, {n, l}), Reduction::None, 0.3), per,
               1e-13, "[N, C, L]");
  expect_close(F::cross_entropy(t64(x, {n, c, l}), tensor(t, {n, l}), Reduction::Mean, 0.3),
               reduce_ref(per, Reduction::Mean), 1e-13, "[N, C, L] mean");
  // Unbatched.
  const Vec row = {0.5, -1, 2};
  expect_close(F::cross_entropy(t64(row, {3}), tensor<int64_t>({2}, Shape{}), Reduction::None),
               ce_ref(row, {2}, 1, 3, 0), 1e-14, "unbatched");
}

TEST(Loss, CrossEntropyStableForLargeLogits) {
  const Vec x = {1000, 0, -1000, 1000, 1000, 999};
  const std::vector<int64_t> t = {2, 2};
  const Vec per = ce_ref(x, t, 2, 3, 0.1);
  for (DType dt : {DType::Float64, DType::Float32}) {
    Tensor loss = F::cross_entropy(t64(x, {2, 3}).to(dt), tensor(t), Reduction::None, 0.1);
    for (double v : loss.to_vector<double>()) EXPECT_TRUE(std::isfinite(v));
    // float32 rounds at the scale of the logits (ulp(1000) = 6e-5)
    expect_close(loss, per, dt == DType::Float64 ? 1e-12 : 3e-5, "large logits");
  }
}

TEST(Loss, MseAndL1) {
  const Vec a = uniform(12, -2, 2, 73), b = uniform(12, -2, 2, 74);
  Vec sq, ab;
  for (size_t i = 0; i < a.size(); ++i) {
    sq.push_back((a[i] - b[i]) * (a[i] - b[i]));
    ab.push_back(std::abs(a[i] - b[i]));
  }
  for (Reduction r : kReductions) {
    expect_close(F::mse_loss(t64(a, {3, 4}), t64(b, {3, 4}), r), reduce_ref(sq, r), 1e-14, "mse");
    expect_close(F::l1_loss(noncontig(a, {3, 4}), t64(b, {3, 4}), r), reduce_ref(ab, r), 1e-14,
                 "l1");
  }
  EXPECT_EQ(F::mse_loss(t64(a, {3, 4}), t64(b, {3, 4})).shape(), (Shape{}));
  check_grads("mse_loss", [](const Tensors& x) { return F::mse_loss(x[0], x[1]); },
              {leaf(a, {3, 4}), leaf(b, {3, 4})});
  // l1: |a - b| >= 0.1 everywhere, away from the kink at a == b.
  Vec b2 = b;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::abs(a[i] - b2[i]) < 0.1) b2[i] = a[i] + 0.3;
  check_grads("l1_loss", [](const Tensors& x) { return F::l1_loss(x[0], x[1], Reduction::Sum); },
              {leaf(a, {3, 4}), leaf(b2, {3, 4})});
  expect_error(
      [&] {
        F::mse_loss(t64(a, {12}), t64(a, {12, 1}));
      },
      "[mse_loss]", "input of shape [12] and target of shape [12, 1] differ");
  expect_error([&] { F::l1_loss(t64(a, {3, 4}), t64({1, 2, 3, 4}, {4})); }, "[l1_loss]", "[4]");
  expect_error([&] { F::mse_loss(zeros({2}, DType::Int64), zeros({2}, DType::Int64)); },
               "[mse_loss]", "floating-point");
}

namespace {
// -[pw t log s(x) + (1 - t) log(1 - s(x))], with log s and log(1 - s) formed by branches that
// never overflow: log s(x) = -log1p(e^-x) for x >= 0 and x - log1p(e^x) otherwise.
double bce_ref(double x, double t, double pw) {
  const double log_s = x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
  const double log_1ms = log_s - x;  // log(1 - s(x)) = log s(x) - x
  return -(pw * t * log_s + (1 - t) * log_1ms);
}
}  // namespace

TEST(Loss, BinaryCrossEntropyWithLogits) {
  const int64_t n = 4, c = 3;
  Vec x = uniform(static_cast<size_t>(n * c), -3, 3, 75);
  x[0] = 100;  // stable at |x| = 100 where s(x) rounds to 1 and log(1 - s) to -inf
  x[1] = -100;
  x[2] = 0;
  const Vec t = uniform(static_cast<size_t>(n * c), 0, 1, 76);
  const Vec pw = {0.5, 2.0, 3.0};
  Vec per, per_pw;
  for (int64_t i = 0; i < n * c; ++i) {
    per.push_back(bce_ref(x[static_cast<size_t>(i)], t[static_cast<size_t>(i)], 1.0));
    per_pw.push_back(bce_ref(x[static_cast<size_t>(i)], t[static_cast<size_t>(i)],
                             pw[static_cast<size_t>(i % c)]));
  }
  for (Reduction r : kReductions) {
    expect_close(F::binary_cross_entropy_with_logits(t64(x, {n, c}), t64(t, {n, c}), r),
                 reduce_ref(per, r), 1e-13, "bce");
    expect_close(
        F::binary_cross_entropy_with_logits(noncontig(x, {n, c}), t64(t, {n, c}), r, t64(pw, {c})),
        reduce_ref(per_pw, r), 1e-13, "bce pos_weight");
  }
  Tensor l32 = F::binary_cross_entropy_with_logits(
      t64(x, {n, c}).to(DType::Float32), t64(t, {n, c}).to(DType::Float32), Reduction::None);
  EXPECT_EQ(l32.dtype(), DType::Float32);
  expect_close(l32, per, 1e-5, "float32");

  // Gradient d/dx = (1 - t) - (1 + (pw - 1) t) s(-x), finite at |x| = 100 and exact at x = 0
  // (where max(x, 0) and |x| have kinks whose subgradients would give -t instead of 0.5 - t).
  Tensor xt = leaf(x, {n, c});
  Tensor g =
      grad({F::binary_cross_entropy_with_logits(xt, t64(t, {n, c}), Reduction::Sum, t64(pw, {c}))},
           {xt})[0];
  Vec want_g;
  for (int64_t i = 0; i < n * c; ++i) {
    const double xi = x[static_cast<size_t>(i)], ti = t[static_cast<size_t>(i)];
    const double w = 1 + (pw[static_cast<size_t>(i % c)] - 1) * ti;
    want_g.push_back((1 - ti) - w * ref_sigmoid(-xi));
  }
  expect_close(g, want_g, 1e-13, "gradient");

  // gradcheck / gradgradcheck w.r.t. logits, target and pos_weight; the logits include 0
  // exactly (the formula is smooth there) and nothing else is kinked.
  Vec xs = uniform(6, -3, 3, 77);
  xs[1] = 0;
  check_grads("bce_with_logits",
              [](const Tensors& a) {
                return F::binary_cross_entropy_with_logits(a[0], a[1], Reduction::Mean, a[2]);
              },
              {leaf(xs, {2, 3}), leaf(uniform(6, 0, 1, 78), {2, 3}), leaf(pw, {3})});
  check_grads("bce_with_logits plain",
              [](const Tensors& a) {
                return F::binary_cross_entropy_with_logits(a[0], a[1], Reduction::None);
              },
              {leaf(xs, {6}), leaf(uniform(6, 0, 1, 79), {6})});

  expect_error(
      [&] {
        F::binary_cross_entropy_with_logits(t64(x, {n, c}), t64(t, {n * c}));
      },
      "[binary_cross_entropy_with_logits]", "differ");
  expect_error(
      [&] {
        F::binary_cross_entropy_with_logits(t64(x, {n, c}), t64(t, {n, c}), Reduction::Mean,
                                            t64({1, 2}, {2}));
      },
      "[binary_cross_entropy_with_logits]");
  expect_error(
      [&] {
        F::binary_cross_entropy_with_logits(t64(x, {n, c}), t64(t, {n, c}), Reduction::Mean,
                                            ones({2, n, c}, DType::Float64));
      },
      "[binary_cross_entropy_with_logits]", "pos_weight of shape [2, 4, 3]");
}

TEST(Loss, CrossEntropyGradcheckAndGradgradcheck) {
  const std::vector<int64_t> t = {2, 0, 1, 2};
  const Tensor x = leaf(uniform(12, -2, 2, 80), {4, 3});
  for (Reduction r : kReductions)
    check_grads("cross_entropy smoothing 0.2 reduction " + std::to_string(static_cast<int>(r)),
                [&](const Tensors& a) { return F::cross_entropy(a[0], tensor(t), r, 0.2); }, {x});
  check_grads("cross_entropy", [&](const Tensors& a) { return F::cross_entropy(a[0], tensor(t)); },
              {noncontig(uniform(12, -2, 2, 81), {4, 3}).requires_grad_(true)});
  check_grads("cross_entropy [N, C, L]",
              [&](const Tensors& a) {
                return F::cross_entropy(a[0], tensor(t, {2, 2}), Reduction::Sum, 0.1);
              },
              {leaf(uniform(12, -2, 2, 82), {2, 3, 2})});
}

TEST(Loss, ClassTargetErrors) {
  const Tensor x = zeros({3, 5}, DType::Float64);
  expect_error(
      [&] {
        F::cross_entropy(x, tensor<int64_t>({0, 5, 1}));
      },
      "[cross_entropy]", "target 5 is out of bounds for 5 classes");
  expect_error(
      [&] {
        F::cross_entropy(x, tensor<int64_t>({0, -1, 1}));
      },
      "[cross_entropy]", "target -1 is out of bounds for 5 classes");
  expect_error(
      [&] {
        F::nll_loss(x, tensor<int64_t>({7, 0, 1}));
      },
      "[nll_loss]", "target 7 is out of bounds for 5 classes");
  expect_error(
      [&] {
        F::cross_entropy(x, tensor<int64_t>({0, 1}));
      },
      "[cross_entropy]", "target of shape [2] does not match the input of shape [3, 5]");
  expect_error(
      [&] {
        F::cross_entropy(x, tensor<int32_t>({0, 1, 2}));
      },
      "[cross_entropy]", "int64");
  expect_error(
      [&] {
        F::cross_entropy(x, zeros({3, 5}, DType::Float64));
      },
      "[cross_entropy]", "int64");
  expect_error(
      [&] {
        F::cross_entropy(x, tensor<int64_t>({0, 1, 2}), Reduction::Mean, 1.5);
      },
      "[cross_entropy]", "label_smoothing");
  expect_error(
      [&] {
        F::cross_entropy(zeros({3, 5}, DType::Int64), tensor<int64_t>({0, 1, 2}));
      },
      "[cross_entropy]", "floating-point");
  expect_error([&] { F::cross_entropy(t64({1}, {}), tensor<int64_t>({0}, Shape{})); },
               "[cross_entropy]", "shape []");
  expect_error(
      [&] {
        F::nll_loss(t64({1, 2}, {2}), tensor<int64_t>({0}));
      },
      "[nll_loss]", "0-d target");
}

// A MAML-style check that the pieces compose to second order: the gradient of a loss after
// one inner SGD step through layer_norm, gelu and cross_entropy matches finite differences.
TEST(Functional, SecondOrderThroughAnInnerStep) {
  const std::vector<int64_t> t = {1, 0, 2};
  const Tensor x = t64(uniform(12, -1, 1, 90), {3, 4});
  auto f = [&](const Tensors& a) {
    // gradcheck evaluates f under NoGradGuard for its finite differences; the inner step
    // needs a graph either way.
    EnableGradGuard eg;
    Tensor w = a[0].requires_grad() ? a[0] : a[0].detach().requires_grad_(true);  // [4, 3]
    auto loss = [&](const Tensor& wt) {
      Tensor h = F::gelu(F::layer_norm(x, {4}));
      return F::cross_entropy(matmul(h, wt), tensor(t), Reduction::Mean, 0.1);
    };
    Tensor g = grad({loss(w)}, {w}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
    return Tensors{loss(w - g * 0.5)};
  };
  GradcheckResult r = gradcheck(f, {leaf(uniform(12, -1, 1, 91), {4, 3})}, {.raise = false});
  EXPECT_TRUE(r.ok) << r.message;
}

// ========================================= linear =========================================

// A stack of weights [B, out, in] applies weight b to row block b of x [B, n, in]: the same
// numbers as B separate calls, and differentiable to second order (task-batched meta-steps).
TEST(Linear, StackedWeightsMatchPerSliceCalls) {
  const Tensor x = t64(uniform(3 * 4 * 5, -1, 1, 92), {3, 4, 5});
  const Tensor w = t64(uniform(3 * 2 * 5, -1, 1, 93), {3, 2, 5});
  const Tensor b = t64(uniform(3 * 2, -1, 1, 94), {3, 2});
  const Tensor y = F::linear(x, w, b);
  ASSERT_EQ(y.shape(), (Shape{3, 4, 2}));
  for (int64_t i = 0; i < 3; ++i) {
    const Vec want = F::linear(x.select(0, i), w.select(0, i), b.select(0, i)).to_vector<double>();
    const Vec got = y.select(0, i).contiguous().to_vector<double>();
    for (size_t k = 0; k < want.size(); ++k) EXPECT_NEAR(got[k], want[k], 1e-14) << i;
  }
  check_grads(
      "linear stacked", [](const Tensors& a) { return F::linear(a[0], a[1], a[2]); },
      {leaf(uniform(3 * 4 * 5, -1, 1, 92), {3, 4, 5}),
       leaf(uniform(3 * 2 * 5, -1, 1, 93), {3, 2, 5}), leaf(uniform(6, -1, 1, 94), {3, 2})});
  // A bias [out] is shared by the whole stack.
  const Tensor shared = t64(uniform(2, -1, 1, 98), {2});
  const Tensor ys = F::linear(x, w, shared);
  for (int64_t i = 0; i < 3; ++i) {
    const Vec want = F::linear(x.select(0, i), w.select(0, i), shared).to_vector<double>();
    const Vec got = ys.select(0, i).contiguous().to_vector<double>();
    for (size_t k = 0; k < want.size(); ++k) EXPECT_NEAR(got[k], want[k], 1e-14) << i;
  }
  // Non-contiguous stacked weight (stored [B, in, out], viewed as [B, out, in]).
  const Tensor wt = noncontig(uniform(3 * 2 * 5, -1, 1, 93), {3, 2, 5});
  const Vec a = F::linear(x, wt, b).to_vector<double>(), c = y.to_vector<double>();
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], c[k], 1e-14);
}

TEST(Linear, RejectsMismatchedShapes) {
  const Tensor x = t64(uniform(3 * 4 * 5, -1, 1, 95), {3, 4, 5});
  EXPECT_MG_ERROR_HAS(
      F::linear(x, t64(uniform(10, -1, 1, 96), {2, 5}), t64(uniform(3, -1, 1, 97), {3})),
      "[linear]", "does not match the weight");
  EXPECT_MG_ERROR_HAS(
      F::linear(x, t64(uniform(30, -1, 1, 96), {3, 2, 5}), t64(uniform(3, -1, 1, 97), {3})),
      "[linear]", "(expected [2] or [3, 2])");
  EXPECT_MG_ERROR_HAS(
      F::linear(x, t64(uniform(30, -1, 1, 96), {3, 2, 5}), t64(uniform(4, -1, 1, 97), {2, 2})),
      "[linear]", "(expected [2] or [3, 2])");
  EXPECT_MG_ERROR_HAS(F::linear(x, t64(uniform(12, -1, 1, 96), {3, 4})), "[linear]",
                      "does not end in in_features");
  EXPECT_MG_ERROR_HAS(
      F::linear(t64(uniform(5, -1, 1, 95), {5}), t64(uniform(30, -1, 1, 96), {3, 2, 5})),
      "[linear]", "needs an input [B..., n, in]");
  EXPECT_MG_ERROR(F::linear(x, t64({1.0}, {1})), "[linear]");
}

// ---- task-batched (stacked) convolution and batch norm --------------------------------------

// conv2d with a stack of weights is each entry's own conv2d (Note [Task-batched convolution]),
// with a stacked or a shared bias, grouped and strided, and differentiable to second order.
TEST(StackedConv2d, EqualsOneConvPerEntry) {
  const int64_t b = 3;
  for (int64_t groups : {1, 2}) {
    const Tensor x = leaf(uniform(b * 2 * 4 * 5 * 5, -1, 1, 101), {b, 2, 4, 5, 5});
    const Tensor w = leaf(uniform(b * 6 * (4 / groups) * 9, -1, 1, 102), {b, 6, 4 / groups, 3, 3});
    const Tensor bs = leaf(uniform(b * 6, -1, 1, 103), {b, 6});
    const Tensor shared = leaf(uniform(6, -1, 1, 104), {6});
    const auto opts = F::Conv2dFuncOptions().stride(2).padding(1).groups(groups);
    for (const Tensor& bias : {bs, shared}) {
      const Tensor y = F::conv2d(x, w, bias, opts);
      ASSERT_EQ(y.shape(), (Shape{b, 2, 6, 3, 3}));
      for (int64_t i = 0; i < b; ++i) {
        const Tensor want =
            F::conv2d(x.select(0, i), w.select(0, i), bias.dim() == 2 ? bias.select(0, i) : bias,
                      opts);
        EXPECT_EQ(y.select(0, i).contiguous().to_vector<double>(), want.to_vector<double>())
            << "entry " << i << " groups " << groups;
      }
    }
  }
  check_grads(
      "stacked conv2d",
      [](const Tensors& a) { return F::conv2d(a[0], a[1], a[2], F::Conv2dFuncOptions().padding(1)); },
      {leaf(uniform(2 * 2 * 1 * 4 * 4, -1, 1, 105), {2, 2, 1, 4, 4}),
       leaf(uniform(2 * 2 * 9, -1, 1, 106), {2, 2, 1, 3, 3}), leaf(uniform(4, -1, 1, 107), {2, 2})});
}

TEST(StackedConv2d, Errors) {
  const Tensor w = t64(uniform(2 * 3 * 2 * 9, -1, 1, 108), {2, 3, 2, 3, 3});
  EXPECT_MG_ERROR_HAS(F::conv2d(t64(uniform(2 * 2 * 25, -1, 1, 109), {2, 2, 5, 5}), w, {}),
                      "[conv2d]", "needs a stacked input [B, N, C, H, W]");
  EXPECT_MG_ERROR_HAS(F::conv2d(t64(uniform(3 * 2 * 25, -1, 1, 110), {3, 1, 2, 5, 5}), w, {}),
                      "[conv2d]", "has 3 entries, the stack of weights of shape [2, 3, 2, 3, 3] has 2");
  EXPECT_MG_ERROR_HAS(F::conv2d(t64(uniform(2 * 3 * 25, -1, 1, 111), {2, 1, 3, 5, 5}), w, {}),
                      "[conv2d]", "expects 2");
  EXPECT_MG_ERROR_HAS(F::conv2d(t64(uniform(2 * 2 * 25, -1, 1, 112), {2, 1, 2, 5, 5}), w,
                                t64({1, 2}, {2})),
                      "[conv2d]", "expected [3] or [2, 3]");
}

// batch_norm with stacked weights normalises each entry with its own statistics.
TEST(StackedBatchNorm, EqualsOneBatchNormPerEntry) {
  const int64_t b = 3;
  const Tensor x = leaf(uniform(b * 4 * 2 * 3 * 3, -1, 1, 113), {b, 4, 2, 3, 3});
  const Tensor w = leaf(uniform(b * 2, 0.5, 1.5, 114), {b, 2});
  const Tensor shared_bias = leaf(uniform(2, -1, 1, 115), {2});
  const Tensor y = F::batch_norm(x, {}, {}, w, shared_bias, true);
  ASSERT_EQ(y.shape(), x.shape());
  for (int64_t i = 0; i < b; ++i) {
    const Tensor want = F::batch_norm(x.select(0, i), {}, {}, w.select(0, i), shared_bias, true);
    const auto got = y.select(0, i).contiguous().to_vector<double>(), exp = want.to_vector<double>();
    for (size_t k = 0; k < got.size(); ++k) EXPECT_NEAR(got[k], exp[k], 1e-12) << i << "," << k;
  }
  check_grads("stacked batch_norm",
              [](const Tensors& a) { return F::batch_norm(a[0], {}, {}, a[1], a[2], true); },
              {leaf(uniform(2 * 3 * 2 * 2, -1, 1, 116), {2, 3, 2, 2}),
               leaf(uniform(4, 0.5, 1.5, 117), {2, 2}), leaf(uniform(4, -1, 1, 118), {2, 2})});
  // Running statistics and eval mode have no meaning per stack entry: refused.
  Tensor rm = zeros({2}, DType::Float64), rv = ones({2}, DType::Float64);
  EXPECT_MG_ERROR_HAS(F::batch_norm(x, rm, rv, w, {}, true), "[batch_norm]",
                      "needs batch statistics");
  EXPECT_MG_ERROR_HAS(F::batch_norm(x, {}, {}, w, t64(uniform(4, -1, 1, 119), {4}), true),
                      "[batch_norm]", "expected [3, 2] or [2]");
}

// Normalisation constants must be sensible (a negative eps or NaN momentum gave NaN outputs or
// running statistics), and a fast weight must have its parameter's dtype.
TEST(NnFunctional, NormConstantsAndFastWeightDtypesAreChecked) {
  const Tensor x = randn({4, 3, 2, 2});
  EXPECT_MG_ERROR_HAS(F::batch_norm(x, {}, {}, {}, {}, true, 0.1, -1e-5), "[batch_norm]", "eps");
  EXPECT_MG_ERROR(F::batch_norm(x, {}, {}, {}, {}, true, 0.1, std::nan("")), "[batch_norm]");
  EXPECT_MG_ERROR_HAS(F::batch_norm(x, zeros({3}), ones({3}), {}, {}, true, std::nan(""), 1e-5),
                      "[batch_norm]", "momentum");
  EXPECT_MG_ERROR(F::batch_norm(x, zeros({3}), ones({3}), {}, {}, true, 2.0, 1e-5), "[batch_norm]");
  EXPECT_MG_ERROR(F::layer_norm(x, {2, 2}, {}, {}, -1.0), "[layer_norm]");
  nn::Linear fc(3, 2);
  nn::ParamMap p;
  for (const auto& [name, t] : fc->named_parameters()) p[name] = t.detach();
  p["weight"] = p["weight"].to(DType::Float64);
  EXPECT_MG_ERROR_HAS(fc->forward(randn({5, 3}), p), "[Linear]", "dtype float64");
}
