// Tests of 2-d pooling (tensor/pool.h, nn/functional/pool.h): max_pool2d (values and
// indices), max_pool2d_backward, avg_pool2d (with and without count_include_pad),
// avg_pool2d_backward and adaptive_avg_pool2d against nested-loop float64 references written
// here, on non-contiguous inputs and both dtypes, with ties, NaN, -inf, empty batches, the
// gradients autograd computes, and every error case.
#include <gtest/gtest.h>

#include "test_util.h"
#include <metagrad/metagrad.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace metagrad;
namespace F = metagrad::nn::functional;

namespace {

using Vec = std::vector<double>;

struct Case {
  int64_t n, c, h, w;
  Pool2dParams p;  // stride 0 = kernel
};

int64_t stride_of(const Case& k, int d) {
  return k.p.stride[d] == 0 ? k.p.kernel[d] : k.p.stride[d];
}
int64_t out_h(const Case& k) {
  return (k.h + 2 * k.p.padding[0] - k.p.kernel[0]) / stride_of(k, 0) + 1;
}
int64_t out_w(const Case& k) {
  return (k.w + 2 * k.p.padding[1] - k.p.kernel[1]) / stride_of(k, 1) + 1;
}

// Calls f(plane, oh, ow, window) where the window lists the in-input (h, w) positions of that
// output (row-major), and `padded` counts the positions inside the padded input.
struct Window {
  std::vector<std::pair<int64_t, int64_t>> at;
  int64_t padded = 0;
};
template <typename F>
void for_each_window(const Case& k, F f) {
  for (int64_t pl = 0; pl < k.n * k.c; ++pl)
    for (int64_t oh = 0; oh < out_h(k); ++oh)
      for (int64_t ow = 0; ow < out_w(k); ++ow) {
        Window win;
        for (int64_t i = 0; i < k.p.kernel[0]; ++i)
          for (int64_t j = 0; j < k.p.kernel[1]; ++j) {
            const int64_t h = oh * stride_of(k, 0) - k.p.padding[0] + i;
            const int64_t w = ow * stride_of(k, 1) - k.p.padding[1] + j;
            if (h < k.h + k.p.padding[0] && w < k.w + k.p.padding[1]) ++win.padded;
            if (h >= 0 && h < k.h && w >= 0 && w < k.w) win.at.emplace_back(h, w);
          }
        f(pl, oh, ow, win);
      }
}

void ref_max(const Case& k, const Vec& x, Vec& y, std::vector<int64_t>& idx) {
  const int64_t oh_n = out_h(k), ow_n = out_w(k);
  y.assign(static_cast<size_t>(k.n * k.c * oh_n * ow_n), 0);
  idx.assign(y.size(), 0);
  for_each_window(k, [&](int64_t pl, int64_t oh, int64_t ow, const Window& win) {
    double best = -std::numeric_limits<double>::infinity();
    int64_t at = win.at[0].first * k.w + win.at[0].second;
    for (auto [h, w] : win.at) {
      const double v = x[static_cast<size_t>(pl * k.h * k.w + h * k.w + w)];
      if (v > best || std::isnan(v)) best = v, at = h * k.w + w;
    }
    y[static_cast<size_t>((pl * oh_n + oh) * ow_n + ow)] = best;
    idx[static_cast<size_t>((pl * oh_n + oh) * ow_n + ow)] = at;
  });
}

Vec ref_avg(const Case& k, bool include_pad, const Vec& x) {
  const int64_t oh_n = out_h(k), ow_n = out_w(k);
  Vec y(static_cast<size_t>(k.n * k.c * oh_n * ow_n), 0);
  for_each_window(k, [&](int64_t pl, int64_t oh, int64_t ow, const Window& win) {
    double s = 0;
    for (auto [h, w] : win.at) s += x[static_cast<size_t>(pl * k.h * k.w + h * k.w + w)];
    const double div =
        include_pad ? static_cast<double>(win.padded) : static_cast<double>(win.at.size());
    y[static_cast<size_t>((pl * oh_n + oh) * ow_n + ow)] = s / div;
  });
  return y;
}

// The adjoint of ref_avg: each output spreads g / divisor over its window.
Vec ref_avg_backward(const Case& k, bool include_pad, const Vec& g) {
  const int64_t oh_n = out_h(k), ow_n = out_w(k);
  Vec gx(static_cast<size_t>(k.n * k.c * k.h * k.w), 0);
  for_each_window(k, [&](int64_t pl, int64_t oh, int64_t ow, const Window& win) {
    const double div =
        include_pad ? static_cast<double>(win.padded) : static_cast<double>(win.at.size());
    for (auto [h, w] : win.at)
      gx[static_cast<size_t>(pl * k.h * k.w + h * k.w + w)] +=
          g[static_cast<size_t>((pl * oh_n + oh) * ow_n + ow)] / div;
  });
  return gx;
}

void expect_close(const Tensor& got, const Vec& want, const Shape& shape, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.shape(), shape) << what;
  const Vec g = got.to(DType::Float64).to_vector<double>();
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(g[i])) << what << " element " << i;
      continue;
    }
    if (std::isinf(want[i])) {
      EXPECT_EQ(g[i], want[i]) << what << " element " << i;
      continue;
    }
    ASSERT_NEAR(g[i], want[i], tol * (1 + std::abs(want[i]))) << what << " element " << i;
  }
}

// A non-contiguous tensor with t's values: a permuted copy seen through the inverse permutation.
Tensor permuted(const Tensor& t) {
  return t.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
}

std::vector<Case> cases() {
  return {
      {1, 1, 4, 4, {.kernel = {2, 2}}},
      {2, 3, 7, 6, {.kernel = {2, 2}}},  // odd size: last row dropped
      {2, 3, 7, 7, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}}},  // overlapping windows
      {1, 2, 5, 8, {.kernel = {3, 2}, .stride = {1, 3}, .padding = {1, 1}}},
      {3, 2, 6, 6, {.kernel = {1, 1}}},
      {2, 2, 5, 5, {.kernel = {5, 5}}},  // global
      {1, 1, 3, 3, {.kernel = {2, 2}, .stride = {1, 1}, .padding = {1, 1}}},
      {2, 4, 28, 28, {.kernel = {2, 2}}},  // the 2 x 2 loop (Note [2 x 2 max pooling])
  };
}

std::string describe(const Case& k) {
  return "x " + shape_str({k.n, k.c, k.h, k.w}) + " kernel " +
         shape_str({k.p.kernel[0], k.p.kernel[1]}) + " stride " +
         shape_str({stride_of(k, 0), stride_of(k, 1)}) + " pad " +
         shape_str({k.p.padding[0], k.p.padding[1]});
}

}  // namespace

TEST(MaxPool2d, MatchesReference) {
  for (const Case& k : cases())
    for (DType dt : {DType::Float64, DType::Float32})
      for (bool noncontig : {false, true}) {
        const Shape xs{k.n, k.c, k.h, k.w}, ys{k.n, k.c, out_h(k), out_w(k)};
        const Vec x = random_values(numel_of(xs), 3);
        Vec y;
        std::vector<int64_t> idx;
        ref_max(k, x, y, idx);
        Tensor xt = tensor(x, xs).to(dt);
        if (noncontig) xt = permuted(xt);
        auto [yt, it] = max_pool2d_with_indices(xt, k.p);
        const std::string what =
            describe(k) + " " + dtype_name(dt) + (noncontig ? " permuted" : "");
        expect_close(yt, y, ys, dt == DType::Float64 ? 0 : 1e-7, what);
        ASSERT_EQ(it.dtype(), DType::Int64);
        EXPECT_EQ(it.to_vector<int64_t>(), idx) << what;
        // The gradient: each output's g goes to its maximum.
        const Vec g = random_values(numel_of(ys), 4);
        Vec gx(x.size(), 0);
        for (size_t e = 0; e < g.size(); ++e) {
          const int64_t plane = static_cast<int64_t>(e) / (out_h(k) * out_w(k));
          gx[static_cast<size_t>(plane * k.h * k.w + idx[e])] += g[e];
        }
        Tensor gt = tensor(g, ys).to(dt);
        expect_close(max_pool2d_backward(gt, it, xs), gx, xs, dt == DType::Float64 ? 1e-15 : 1e-6,
                     what + " backward");
        Tensor xg = xt.detach().requires_grad_();
        sum(max_pool2d(xg, k.p) * gt).backward();
        expect_close(xg.grad(), gx, xs, dt == DType::Float64 ? 1e-15 : 1e-6, what + " x.grad");
      }
}

TEST(MaxPool2d, TiesNanAndInfinity) {
  // Ties pick the first position; NaN propagates (the last NaN of a window is reported, as
  // PyTorch's loop does); -inf inputs still give their index. The 2 x 2 windows run the loop of
  // Note [2 x 2 max pooling]; the constant input's 2 x 3 windows the general one (Note [Max
  // pooling loop order]), vectorised for float32.
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  for (DType dt : {DType::Float64, DType::Float32}) {
    Tensor x = tensor(Vec{1, 1, 0, 2,          //
                          1, 1, 2, 0,          //
                          -inf, -inf, 3, nan,  //
                          -inf, -inf, nan, 5},
                      {1, 1, 4, 4})
                   .to(dt);
    auto [y, i] = max_pool2d_with_indices(x, {.kernel = {2, 2}});
    const Vec yv = y.to(DType::Float64).to_vector<double>();
    EXPECT_EQ(yv[0], 1);
    EXPECT_EQ(yv[1], 2);
    EXPECT_EQ(yv[2], -inf);
    EXPECT_TRUE(std::isnan(yv[3]));
    EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{0, 3, 8, 14}));
    // Padding counts as -inf: a window over padding and -inf keeps a real position.
    auto [yp, ip] =
        max_pool2d_with_indices(x, {.kernel = {2, 2}, .stride = {2, 2}, .padding = {1, 1}});
    EXPECT_EQ(yp.to(DType::Float64).to_vector<double>()[6], -inf);  // rows 3..4, cols -1..0
    EXPECT_EQ(ip.to_vector<int64_t>()[6], 12);
    // A constant input: every window ties everywhere, so each reports its first position.
    auto [yc, ic] =
        max_pool2d_with_indices(full({1, 1, 4, 18}, 0.5, dt), {.kernel = {2, 3}, .stride = {2, 2}});
    std::vector<int64_t> first;
    for (int64_t oh = 0; oh < 2; ++oh)
      for (int64_t ow = 0; ow < 8; ++ow) first.push_back(oh * 2 * 18 + ow * 2);
    EXPECT_EQ(ic.to_vector<int64_t>(), first) << dtype_name(dt);
  }
}

TEST(MaxPool2d, EmptyBatch) {
  auto [y, i] = max_pool2d_with_indices(zeros({0, 3, 4, 4}), {.kernel = {2, 2}});
  EXPECT_EQ(y.shape(), (Shape{0, 3, 2, 2}));
  EXPECT_EQ(i.shape(), (Shape{0, 3, 2, 2}));
  EXPECT_EQ(max_pool2d_backward(zeros({0, 3, 2, 2}), i, {0, 3, 4, 4}).shape(), (Shape{0, 3, 4, 4}));
}

TEST(MaxPool2d, BackwardTakesIndicesOutsideTheirBlocks) {
  // The backward op is given indices, not a window: on outputs that tile the input in 2 x 2
  // blocks, indices that point elsewhere (repeated, in other blocks, in the uncovered last row
  // and column) must still give the plain scatter-add, on both dtypes.
  const Vec g{1, 2, 3, 4, 5, 6, 7, 8};  // [1, 2, 2, 2] into planes of 5 x 5
  const std::vector<int64_t> at{0, 24, 24, 6, 4, 20, 12, 12};
  Vec want(50, 0);
  for (size_t e = 0; e < g.size(); ++e) want[(e / 4) * 25 + static_cast<size_t>(at[e])] += g[e];
  for (DType dt : {DType::Float64, DType::Float32}) {
    Tensor gx = max_pool2d_backward(tensor(g, {1, 2, 2, 2}).to(dt),
                                    tensor(at, {1, 2, 2, 2}), {1, 2, 5, 5});
    expect_close(gx, want, {1, 2, 5, 5}, 0, std::string("scatter ") + dtype_name(dt));
  }
  // In-block indices on an odd-sized input: the uncovered last row and column get zeros.
  const std::vector<int64_t> in_block{1, 3, 10, 17, 0, 8, 15, 18};
  Vec want2(50, 0);
  for (size_t e = 0; e < g.size(); ++e)
    want2[(e / 4) * 25 + static_cast<size_t>(in_block[e])] += g[e];
  Tensor gx2 =
      max_pool2d_backward(tensor(g, {1, 2, 2, 2}), tensor(in_block, {1, 2, 2, 2}), {1, 2, 5, 5});
  expect_close(gx2, want2, {1, 2, 5, 5}, 0, "in-block");
}

TEST(MaxPool2d, Errors) {
  Tensor x = randn({2, 3, 6, 6});
  EXPECT_MG_ERROR(max_pool2d(randn({3, 6, 6}), {.kernel = {2, 2}}),
               "[max_pool2d] expected a 4-d input");
  EXPECT_MG_ERROR(max_pool2d(x, {.kernel = {0, 2}}), "[max_pool2d] kernel size must be positive");
  EXPECT_MG_ERROR(max_pool2d(x, {.kernel = {2, 2}, .stride = {-1, 1}}),
               "[max_pool2d] stride must be positive");
  EXPECT_MG_ERROR(max_pool2d(x, {.kernel = {3, 3}, .padding = {2, 0}}),
               "[max_pool2d] padding [2, 0] must be non-negative and at most half");
  EXPECT_MG_ERROR(max_pool2d(x, {.kernel = {7, 2}}), "[max_pool2d] kernel of size [7, 2] is larger");
  EXPECT_MG_ERROR(max_pool2d(zeros({1, 1, 0, 4}), {.kernel = {1, 1}}),
               "[max_pool2d] expected an input with non-zero");
  EXPECT_MG_ERROR(max_pool2d(x.to(DType::Int64), {.kernel = {2, 2}}),
               "[max_pool2d] expected a float32");
  auto [y, i] = max_pool2d_with_indices(x, {.kernel = {2, 2}});
  Tensor bad = i.clone();
  bad.select(3, 1).fill_(36);
  EXPECT_MG_ERROR(max_pool2d_backward(y, bad, x.shape()),
               "[max_pool2d_backward] index 36 is out of range");
  bad.select(3, 1).fill_(-1);
  EXPECT_MG_ERROR(max_pool2d_backward(y, bad, x.shape()),
               "[max_pool2d_backward] index -1 is out of range");
  EXPECT_MG_ERROR(max_pool2d_backward(y, i.to(DType::Int32), x.shape()),
               "[max_pool2d_backward] indices must be an int64");
  EXPECT_MG_ERROR(max_pool2d_backward(y, i.slice(2, 0, 2), x.shape()),
               "[max_pool2d_backward] indices of shape");
  EXPECT_MG_ERROR(max_pool2d_backward(y, i, {2, 4, 6, 6}),
               "[max_pool2d_backward] expected grad_out of shape [2, 4, OH, OW]");
  EXPECT_MG_ERROR(max_pool2d_backward(y, i, {2, 3, 36}),
               "[max_pool2d_backward] expected a 4-d input shape");
}

TEST(AvgPool2d, MatchesReference) {
  for (const Case& k : cases())
    for (bool include_pad : {true, false})
      for (DType dt : {DType::Float64, DType::Float32}) {
        const Shape xs{k.n, k.c, k.h, k.w}, ys{k.n, k.c, out_h(k), out_w(k)};
        const Vec x = random_values(numel_of(xs), 5), g = random_values(numel_of(ys), 6);
        const std::string what =
            describe(k) + (include_pad ? " count_include_pad " : " ") + dtype_name(dt);
        const double tol = dt == DType::Float64 ? 1e-14 : 1e-6;
        Tensor xt = permuted(tensor(x, xs).to(dt));  // non-contiguous
        expect_close(avg_pool2d(xt, k.p, include_pad), ref_avg(k, include_pad, x), ys, tol, what);
        Tensor gt = permuted(tensor(g, ys).to(dt));
        const Vec gx = ref_avg_backward(k, include_pad, g);
        expect_close(avg_pool2d_backward(gt, xs, k.p, include_pad), gx, xs, tol,
                     what + " backward");
        Tensor xg = xt.detach().requires_grad_();
        sum(avg_pool2d(xg, k.p, include_pad) * gt).backward();
        expect_close(xg.grad(), gx, xs, tol, what + " x.grad");
      }
}

TEST(AvgPool2d, Errors) {
  Tensor x = randn({2, 3, 6, 6});
  EXPECT_MG_ERROR(avg_pool2d(randn({6, 6}), {.kernel = {2, 2}}), "[avg_pool2d] expected a 4-d input");
  EXPECT_MG_ERROR(avg_pool2d(x, {.kernel = {2, 2}, .padding = {0, 2}}), "[avg_pool2d] padding [0, 2]");
  EXPECT_MG_ERROR(avg_pool2d(x, {.kernel = {2, 9}, .padding = {0, 1}}),
               "[avg_pool2d] kernel of size [2, 9]");
  EXPECT_MG_ERROR(avg_pool2d(x.to(DType::Int32), {.kernel = {2, 2}}),
               "[avg_pool2d] expected a float32");
  EXPECT_MG_ERROR(avg_pool2d_backward(randn({2, 3, 2, 3}), {2, 3, 6, 6}, {.kernel = {2, 2}}),
               "[avg_pool2d_backward] expected grad_out of shape [2, 3, 3, 3]");
  EXPECT_MG_ERROR(avg_pool2d_backward(randn({2, 3, 3, 3}), {2, 3, 6}, {.kernel = {2, 2}}),
               "[avg_pool2d_backward] expected a 4-d input");
}

// Windows far larger than the input: the window size must fit int64 (avg's divisor), and max
// pooling visits only the offsets that land in the input (a 10^10-wide kernel took minutes).
TEST(Pool2d, HugeWindowsAreErrorsOrCheap) {
  const Tensor x = arange(0, 16).to(DType::Float32).view({1, 1, 4, 4});
  const int64_t k = int64_t{1} << 62;
  EXPECT_MG_ERROR_HAS(avg_pool2d(x, {.kernel = {k, k}, .padding = {k / 2, k / 2}}), "[avg_pool2d]",
                      "the window size");
  const int64_t wide = 10000000000;  // 1e10
  auto [y, i] = max_pool2d_with_indices(
      x, {.kernel = {1, wide}, .stride = {1, 1}, .padding = {0, wide / 2}});
  ASSERT_EQ(y.shape(), (Shape{1, 1, 4, 5}));
  // Every window covers the whole row: each output is the row's maximum, at its last column.
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 5; ++c) {
      EXPECT_EQ(y.select(2, r).select(2, c).item<double>(), 4.0 * r + 3);
      EXPECT_EQ(i.select(2, r).select(2, c).item<int64_t>(), 4 * r + 3);
    }
}

// PyTorch's adaptive windows, written out: rows [floor(i H / oh), ceil((i + 1) H / oh)).
TEST(AdaptiveAvgPool2d, MatchesReference) {
  const std::vector<std::array<int64_t, 4>> shapes = {// h, w, oh, ow
                                                      {6, 6, 1, 1}, {6, 8, 3, 4}, {7, 5, 3, 2},
                                                      {5, 5, 5, 5}, {4, 5, 7, 3}, {10, 9, 4, 1},
                                                      {3, 3, 2, 2}};
  for (const auto& [h, w, oh, ow] : shapes)
    for (bool noncontig : {false, true}) {
      const int64_t n = 2, c = 3;
      const Vec x = random_values(n * c * h * w, 7);
      Vec y(static_cast<size_t>(n * c * oh * ow));
      for (int64_t pl = 0; pl < n * c; ++pl)
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t h0 = (i * h) / oh, h1 = ((i + 1) * h + oh - 1) / oh;
            const int64_t w0 = (j * w) / ow, w1 = ((j + 1) * w + ow - 1) / ow;
            double s = 0;
            for (int64_t a = h0; a < h1; ++a)
              for (int64_t b = w0; b < w1; ++b) s += x[static_cast<size_t>(pl * h * w + a * w + b)];
            y[static_cast<size_t>((pl * oh + i) * ow + j)] =
                s / static_cast<double>((h1 - h0) * (w1 - w0));
          }
      Tensor xt = tensor(x, {n, c, h, w});
      if (noncontig) xt = permuted(xt);
      const std::string what = "adaptive " + shape_str({h, w}) + " -> " + shape_str({oh, ow});
      expect_close(F::adaptive_avg_pool2d(xt, {oh, ow}), y, {n, c, oh, ow}, 1e-14, what);
      // unbatched
      expect_close(F::adaptive_avg_pool2d(xt.select(0, 0), {oh, ow}),
                   Vec(y.begin(), y.begin() + c * oh * ow), {c, oh, ow}, 1e-14,
                   what + " unbatched");
      // differentiable (a composition of differentiable ops), to second order; one plane
      // keeps the finite differences cheap
      Tensor xg = xt.slice(0, 0, 1).slice(1, 0, 1).detach().requires_grad_();
      TensorsFn f = [&](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{square(F::adaptive_avg_pool2d(in[0], {oh, ow}))};
      };
      EXPECT_TRUE(gradcheck(f, {xg}, {.raise = false}).ok) << what;
      if (!noncontig) {
        EXPECT_TRUE(gradgradcheck(f, {xg}, {}, {.raise = false}).ok) << what;
      }
    }
  EXPECT_MG_ERROR(F::adaptive_avg_pool2d(randn({2, 3}), {1, 1}),
               "[adaptive_avg_pool2d] expected a 3-d, 4-d or 5-d");
  EXPECT_MG_ERROR(F::adaptive_avg_pool2d(randn({1, 2, 3, 3}), {0, 1}),
               "[adaptive_avg_pool2d] output size");
  EXPECT_MG_ERROR(F::adaptive_avg_pool2d(randn({1, 2, 3, 3}).to(DType::Int64), {1, 1}),
               "[adaptive_avg_pool2d] expected a float32");
}

TEST(PoolFunctional, OptionsAndUnbatchedInput) {
  Generator gen(2);
  Tensor x = randn({2, 3, 7, 7}, DType::Float64, &gen);
  F::MaxPool2dFuncOptions mo(3);
  EXPECT_EQ(mo.stride_, (std::array<int64_t, 2>{3, 3}));  // defaults to the kernel
  mo.stride(2).padding(1);
  Tensor y = F::max_pool2d(x, mo);
  Tensor want = max_pool2d(x, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}});
  ASSERT_EQ(y.shape(), want.shape());
  EXPECT_EQ(sum(abs(y - want)).item<double>(), 0.0);
  auto [y1, i1] = F::max_pool2d_with_indices(x.select(0, 1), mo);
  EXPECT_EQ(y1.shape(), (Shape{3, 4, 4}));
  EXPECT_EQ(sum(abs(y1 - want.select(0, 1))).item<double>(), 0.0);
  EXPECT_EQ(i1.shape(), (Shape{3, 4, 4}));
  F::AvgPool2dFuncOptions ao({2, 3});
  EXPECT_EQ(ao.stride(), (std::array<int64_t, 2>{2, 3}));
  ao.padding({1, 1}).count_include_pad(false);
  Tensor a = F::avg_pool2d(x, ao);
  Tensor wa = avg_pool2d(x, {.kernel = {2, 3}, .padding = {1, 1}}, false);
  EXPECT_EQ(sum(abs(a - wa)).item<double>(), 0.0);
  EXPECT_EQ(F::avg_pool2d(x.select(0, 0), ao).shape(), (Shape{3, 4, 3}));
}
