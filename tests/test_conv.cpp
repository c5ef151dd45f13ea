// Tests of 2-d convolution (tensor/conv.h, nn/functional/conv.h): conv2d and its two backward
// ops against direct nested-loop float64 references written here (the definition of the
// convolution and of its adjoints, no im2col), over combinations of stride, padding, dilation,
// groups, bias, batch > 1, rectangular kernels, non-contiguous operands, both dtypes, both
// BLAS thread settings (Note [Convolution threading] in kernels/cpu/conv.cpp), empty tensors,
// the gradients autograd computes, and every error case.
#include <gtest/gtest.h>

#include "test_util.h"
#include <metagrad/metagrad.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/blas.h"

using namespace metagrad;
namespace F = metagrad::nn::functional;

namespace {

using Vec = std::vector<double>;

// ---- the reference: the convolution's definition, loop by loop -------------------------

struct Case {
  int64_t n, c, h, w, o, kh, kw;
  Conv2dParams p;
  bool bias = true;
};

int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d) {
  return (in + 2 * pad - d * (k - 1) - 1) / s + 1;
}

struct Sizes {
  int64_t oh, ow, cg, og;
};
Sizes sizes(const Case& k) {
  return {out_size(k.h, k.kh, k.p.stride[0], k.p.padding[0], k.p.dilation[0]),
          out_size(k.w, k.kw, k.p.stride[1], k.p.padding[1], k.p.dilation[1]), k.c / k.p.groups,
          k.o / k.p.groups};
}

// Calls f(n, o, oh, ow, ci, i, j, ih, iw) for every product term x[n, ci, ih, iw] * w[o, ci -
// group offset, i, j] of the convolution that reads inside the input.
template <typename F>
void for_each_term(const Case& k, F f) {
  const Sizes s = sizes(k);
  for (int64_t n = 0; n < k.n; ++n)
    for (int64_t o = 0; o < k.o; ++o) {
      const int64_t g = o / s.og;
      for (int64_t oh = 0; oh < s.oh; ++oh)
        for (int64_t ow = 0; ow < s.ow; ++ow)
          for (int64_t cc = 0; cc < s.cg; ++cc)
            for (int64_t i = 0; i < k.kh; ++i)
              for (int64_t j = 0; j < k.kw; ++j) {
                const int64_t ih = oh * k.p.stride[0] - k.p.padding[0] + i * k.p.dilation[0];
                const int64_t iw = ow * k.p.stride[1] - k.p.padding[1] + j * k.p.dilation[1];
                if (ih < 0 || ih >= k.h || iw < 0 || iw >= k.w) continue;
                f(n, o, oh, ow, g * s.cg + cc, cc, i, j, ih, iw);
              }
    }
}

Vec ref_forward(const Case& k, const Vec& x, const Vec& w, const Vec& b) {
  const Sizes s = sizes(k);
  Vec y(static_cast<size_t>(k.n * k.o * s.oh * s.ow), 0.0);
  auto yat = [&](int64_t n, int64_t o, int64_t oh, int64_t ow) -> double& {
    return y[static_cast<size_t>(((n * k.o + o) * s.oh + oh) * s.ow + ow)];
  };
  for_each_term(k, [&](int64_t n, int64_t o, int64_t oh, int64_t ow, int64_t ci, int64_t cc,
                       int64_t i, int64_t j, int64_t ih, int64_t iw) {
    yat(n, o, oh, ow) += x[static_cast<size_t>(((n * k.c + ci) * k.h + ih) * k.w + iw)] *
                         w[static_cast<size_t>(((o * s.cg + cc) * k.kh + i) * k.kw + j)];
  });
  if (k.bias)
    for (int64_t n = 0; n < k.n; ++n)
      for (int64_t o = 0; o < k.o; ++o)
        for (int64_t e = 0; e < s.oh * s.ow; ++e)
          y[static_cast<size_t>((n * k.o + o) * s.oh * s.ow + e)] += b[static_cast<size_t>(o)];
  return y;
}

// d<gy, y>/dx: each term x * w sends gy * w to x.
Vec ref_input_grad(const Case& k, const Vec& gy, const Vec& w) {
  const Sizes s = sizes(k);
  Vec gx(static_cast<size_t>(k.n * k.c * k.h * k.w), 0.0);
  for_each_term(k, [&](int64_t n, int64_t o, int64_t oh, int64_t ow, int64_t ci, int64_t cc,
                       int64_t i, int64_t j, int64_t ih, int64_t iw) {
    gx[static_cast<size_t>(((n * k.c + ci) * k.h + ih) * k.w + iw)] +=
        gy[static_cast<size_t>(((n * k.o + o) * s.oh + oh) * s.ow + ow)] *
        w[static_cast<size_t>(((o * s.cg + cc) * k.kh + i) * k.kw + j)];
  });
  return gx;
}

// d<gy, y>/dw: each term x * w sends gy * x to w.
Vec ref_weight_grad(const Case& k, const Vec& gy, const Vec& x) {
  const Sizes s = sizes(k);
  Vec gw(static_cast<size_t>(k.o * s.cg * k.kh * k.kw), 0.0);
  for_each_term(k, [&](int64_t n, int64_t o, int64_t oh, int64_t ow, int64_t ci, int64_t cc,
                       int64_t i, int64_t j, int64_t ih, int64_t iw) {
    gw[static_cast<size_t>(((o * s.cg + cc) * k.kh + i) * k.kw + j)] +=
        gy[static_cast<size_t>(((n * k.o + o) * s.oh + oh) * s.ow + ow)] *
        x[static_cast<size_t>(((n * k.c + ci) * k.h + ih) * k.w + iw)];
  });
  return gw;
}

Vec ref_bias_grad(const Case& k, const Vec& gy) {
  const Sizes s = sizes(k);
  Vec gb(static_cast<size_t>(k.o), 0.0);
  for (int64_t n = 0; n < k.n; ++n)
    for (int64_t o = 0; o < k.o; ++o)
      for (int64_t e = 0; e < s.oh * s.ow; ++e)
        gb[static_cast<size_t>(o)] += gy[static_cast<size_t>((n * k.o + o) * s.oh * s.ow + e)];
  return gb;
}

// ---- comparisons --------------------------------------------------------------------------

void expect_close(const Tensor& got, const Vec& want, const Shape& shape, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.shape(), shape) << what;
  const Vec g = got.to(DType::Float64).to_vector<double>();
  ASSERT_EQ(g.size(), want.size()) << what;
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double e = std::abs(g[i] - want[i]) / (1 + std::abs(want[i]));
    if (!(e <= worst)) worst = e, at = i;
  }
  EXPECT_LE(worst, tol) << what << ": element " << at << " is " << g[at] << ", expected "
                        << want[at];
}

// Three layouts with the same values: contiguous, a permuted copy seen through the inverse
// permutation, and a view sliced with a step out of a larger tensor.
enum class Layout { Contiguous, Permuted, Strided };
Tensor laid_out(const Tensor& t, Layout layout) {
  if (layout == Layout::Contiguous || t.dim() != 4) return t;
  if (layout == Layout::Permuted) return t.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
  Shape big = t.shape();
  big[3] = big[3] * 2 + 1;
  Tensor storage = full(big, 7.0, t.dtype());
  Tensor view = storage.slice(3, 1, big[3], 2);
  view.copy_(t);
  return view;
}

std::string describe(const Case& k) {
  std::ostringstream os;
  os << "x " << shape_str({k.n, k.c, k.h, k.w}) << " w "
     << shape_str({k.o, k.c / k.p.groups, k.kh, k.kw}) << " stride " << k.p.stride[0] << ","
     << k.p.stride[1] << " pad " << k.p.padding[0] << "," << k.p.padding[1] << " dil "
     << k.p.dilation[0] << "," << k.p.dilation[1] << " groups " << k.p.groups
     << (k.bias ? " bias" : "");
  return os.str();
}

// Forward, both backward ops and the autograd gradients of one case, against the reference.
void check_case(const Case& k, DType dtype, Layout layout, unsigned seed = 1) {
  const Sizes s = sizes(k);
  const Shape xs{k.n, k.c, k.h, k.w}, ws{k.o, s.cg, k.kh, k.kw}, ys{k.n, k.o, s.oh, s.ow};
  const Vec x = random_values(numel_of(xs), seed), w = random_values(numel_of(ws), seed + 1),
            b = random_values(k.o, seed + 2), gy = random_values(numel_of(ys), seed + 3);
  // float32 rounding grows with the longest sum (the weight gradient's N * OH * OW terms)
  const double terms = static_cast<double>(std::max(k.n * s.oh * s.ow, s.cg * k.kh * k.kw));
  const double tol = dtype == DType::Float64 ? 1e-12 : 2e-6 * std::max(10.0, std::sqrt(terms));
  const std::string what = describe(k) + " " + dtype_name(dtype) +
                           (layout == Layout::Contiguous ? ""
                            : layout == Layout::Permuted ? " permuted"
                                                         : " strided");
  Tensor xt = laid_out(tensor(x, xs).to(dtype), layout);
  Tensor wt = laid_out(tensor(w, ws).to(dtype), layout);
  Tensor bt = k.bias ? tensor(b, {k.o}).to(dtype) : Tensor();
  Tensor gyt = laid_out(tensor(gy, ys).to(dtype), layout);
  const Vec gx_ref = ref_input_grad(k, gy, w), gw_ref = ref_weight_grad(k, gy, x);
  expect_close(conv2d(xt, wt, bt, k.p), ref_forward(k, x, w, b), ys, tol, what + " forward");
  expect_close(conv2d_input_backward(gyt, wt, xs, k.p), gx_ref, xs, tol, what + " input backward");
  expect_close(conv2d_weight_backward(gyt, xt, ws, k.p), gw_ref, ws, tol,
               what + " weight backward");
  // Through autograd: the gradients of <gy, conv2d(x, w, b)>.
  Tensor xa = xt.detach().requires_grad_(), wa = wt.detach().requires_grad_();
  Tensor ba = k.bias ? bt.detach().requires_grad_() : Tensor();
  sum(conv2d(xa, wa, ba, k.p) * gyt).backward();
  expect_close(xa.grad(), gx_ref, xs, tol * 10, what + " x.grad");
  expect_close(wa.grad(), gw_ref, ws, tol * 10, what + " w.grad");
  if (k.bias) expect_close(ba.grad(), ref_bias_grad(k, gy), {k.o}, tol * 10, what + " b.grad");
}

std::vector<Case> cases() {
  return {
      {1, 1, 5, 5, 1, 3, 3, {}, false},
      {2, 3, 6, 7, 4, 3, 3, {.padding = {1, 1}}},
      {2, 4, 5, 5, 4, 3, 3, {.stride = {2, 2}, .padding = {1, 1}, .groups = 2}},
      {3, 2, 9, 8, 3, 3, 3, {.dilation = {2, 2}}, false},
      {2, 3, 7, 9, 2, 2, 3, {.stride = {2, 1}, .padding = {1, 0}, .dilation = {1, 2}}},
      {2, 6, 6, 6, 6, 3, 3, {.padding = {1, 1}, .groups = 6}},       // depthwise
      {2, 6, 4, 5, 9, 1, 1, {.groups = 3}},                          // pointwise, grouped
      {2, 4, 4, 5, 3, 1, 1, {}},                                     // pointwise
      {2, 3, 5, 5, 2, 1, 1, {.stride = {2, 2}, .padding = {1, 1}}},  // 1x1 but strided
      {2, 2, 4, 4, 3, 4, 4, {}},                                     // kernel = input
      {1, 2, 3, 3, 2, 5, 5, {.padding = {1, 1}}},                    // kernel = padded input
      {2, 2, 8, 8, 4, 3, 2, {.stride = {3, 2}, .padding = {2, 1}, .dilation = {2, 3}, .groups = 2}},
      {4, 3, 10, 10, 8, 5, 5, {.stride = {2, 2}, .padding = {2, 2}}},
      // Chunks of several images per GEMM, the last one shorter (Note [Convolution GEMM
      // width]): 7 images of 3 x 3 outputs, grouped and pointwise too.
      {7, 4, 6, 6, 6, 3, 3, {.stride = {2, 2}, .padding = {1, 1}, .groups = 2}},
      {7, 6, 3, 4, 9, 1, 1, {.groups = 3}},
      // "Same" convolutions (unit stride, output as wide as the input: Note [Same-width
      // im2col]): several images per chunk, dilated, 5 x 5, and a 1-wide input whose outer
      // kernel columns read padding only.
      {7, 4, 6, 5, 6, 3, 3, {.padding = {1, 1}}},
      {2, 3, 7, 6, 2, 3, 3, {.padding = {2, 2}, .dilation = {2, 2}}},
      {2, 2, 6, 7, 3, 5, 5, {.padding = {2, 2}}},
      {2, 2, 3, 1, 2, 3, 3, {.padding = {1, 1}}},
      // A small output of a large plane (stride 15): no pixel map (Note [Small-plane im2col]).
      {2, 2, 40, 40, 3, 3, 3, {.stride = {15, 15}}},
  };
}

}  // namespace

TEST(Conv2d, MatchesReferenceFloat64) {
  for (const Case& k : cases()) check_case(k, DType::Float64, Layout::Contiguous);
}

TEST(Conv2d, MatchesReferenceFloat32) {
  for (const Case& k : cases()) check_case(k, DType::Float32, Layout::Contiguous);
}

// Every case above has at most 64 output pixels per plane, so its im2col and (up to 16) its
// col2im gather through a pixel map (Note [Small-plane im2col] in kernels/cpu/conv.cpp); the
// same cases 8 pixels taller and wider take the run-copying paths instead.
namespace {
std::vector<Case> widened(std::vector<Case> cs) {
  for (Case& k : cs) k.h += 8, k.w += 8;
  return cs;
}
}  // namespace

TEST(Conv2d, LargerPlanesMatchReference) {
  for (const Case& k : widened(cases())) {
    check_case(k, DType::Float64, Layout::Contiguous, 3);
    check_case(k, DType::Float32, Layout::Permuted, 7);
  }
}

// Strided, undilated convolutions with enough output columns take the input backward by
// phases (Note [Strided input backward by phases] in kernels/cpu/conv.cpp: at least 16 output
// pixels and 1024 columns over the batch): square and unequal strides, grouped, a kernel
// smaller than the stride (pixels no tap reaches), 1 x 1, wide padding.
TEST(Conv2d, StridedInputBackwardByPhasesMatchesReference) {
  const std::vector<Case> phased = {
      {32, 3, 12, 12, 4, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}},
      {30, 4, 16, 13, 6, 3, 3, {.stride = {2, 3}, .padding = {1, 1}, .groups = 2}},
      {24, 2, 20, 20, 3, 2, 2, {.stride = {3, 3}}},
      {24, 3, 13, 13, 2, 1, 1, {.stride = {2, 2}, .padding = {1, 1}}},
      {16, 2, 15, 15, 3, 5, 5, {.stride = {2, 2}, .padding = {2, 2}}},
  };
  for (const Case& k : phased) {
    const Sizes s = sizes(k);
    ASSERT_GE(s.oh * s.ow, 16) << describe(k);
    ASSERT_GE(k.n * s.oh * s.ow, 1024) << describe(k);
    check_case(k, DType::Float64, Layout::Contiguous, 11);
    check_case(k, DType::Float32, Layout::Permuted, 13);
  }
}

TEST(Conv2d, NonContiguousOperands) {
  for (const Case& k : cases()) {
    check_case(k, DType::Float64, Layout::Permuted, 5);
    check_case(k, DType::Float32, Layout::Strided, 9);
  }
}

// Note [Convolution threading] under both BLAS settings (one thread, two threads): large
// GEMMs per (chunk, group) pair inside the OpenMP loop, a single chunk (which runs outside any
// parallel region, so BLAS may thread it), several groups, and the 1x1 case.
TEST(Conv2d, ThreadSettings) {
  const std::vector<Case> big = {
      {3, 8, 64, 64, 4, 3, 3, {.padding = {1, 1}}},
      {1, 8, 40, 40, 16, 3, 3, {.padding = {1, 1}}},
      {3,
       8,
       63,
       62,
       16,
       3,
       3,
       {.stride = {2, 2}, .padding = {1, 1}, .dilation = {2, 1}, .groups = 2}},
      {3, 64, 8, 8, 64, 1, 1, {}, false},
  };
  for (int threads : {1, 2}) {
    kernels::cpu::blas_set_num_threads(threads);
    for (const Case& k : big) {
      check_case(k, DType::Float32, Layout::Contiguous, 11);
      check_case(k, DType::Float64, Layout::Contiguous, 12);
    }
  }
  kernels::cpu::blas_set_num_threads(0);
}

TEST(Conv2d, EmptyTensors) {
  // No image: an empty output; the weight gradient is zero.
  Tensor w = randn({4, 3, 3, 3}, DType::Float64), b = randn({4}, DType::Float64);
  Tensor x0 = zeros({0, 3, 5, 5}, DType::Float64);
  EXPECT_EQ(conv2d(x0, w, b).shape(), (Shape{0, 4, 3, 3}));
  Tensor gw = conv2d_weight_backward(zeros({0, 4, 3, 3}, DType::Float64), x0, w.shape());
  EXPECT_EQ(gw.shape(), w.shape());
  EXPECT_EQ(sum(abs(gw)).item<double>(), 0.0);
  EXPECT_EQ(conv2d_input_backward(zeros({0, 4, 3, 3}, DType::Float64), w, x0.shape()).shape(),
            x0.shape());
  // No input channel: the output is the bias.
  Tensor xc = zeros({2, 0, 5, 5}, DType::Float64), wc = zeros({4, 0, 3, 3}, DType::Float64);
  Tensor y = conv2d(xc, wc, b);
  ASSERT_EQ(y.shape(), (Shape{2, 4, 3, 3}));
  EXPECT_EQ(sum(abs(y - b.reshape({1, 4, 1, 1}))).item<double>(), 0.0);
  EXPECT_EQ(sum(abs(conv2d(xc, wc))).item<double>(), 0.0);
  // No filter: an empty output, and no gradient reaches the input.
  Tensor x = randn({2, 3, 5, 5}, DType::Float64), wo = zeros({0, 3, 3, 3}, DType::Float64);
  EXPECT_EQ(conv2d(x, wo).shape(), (Shape{2, 0, 3, 3}));
  Tensor gx = conv2d_input_backward(zeros({2, 0, 3, 3}, DType::Float64), wo, x.shape());
  EXPECT_EQ(sum(abs(gx)).item<double>(), 0.0);
}

// Second order through a small network: the gradient of a loss of the input gradient (as a
// MAML meta-gradient needs) against central differences.
TEST(Conv2d, DoubleBackwardThroughALoss) {
  Generator gen(3);
  Tensor x = randn({2, 4, 6, 6}, DType::Float64, &gen).requires_grad_();
  Tensor w = randn({6, 2, 3, 3}, DType::Float64, &gen).requires_grad_();
  const Conv2dParams p{.stride = {2, 2}, .padding = {1, 1}, .groups = 2};
  TensorsFn f = [&](const std::vector<Tensor>& in) {
    // gradcheck's finite-difference passes run without grad and on plain copies: the inner
    // gradient still needs a graph and a weight that requires grad.
    EnableGradGuard eg;
    Tensor wi = in[1].requires_grad() ? in[1] : in[1].detach().requires_grad_();
    Tensor y = conv2d(in[0], wi, {}, p);
    Tensor gw = grad({sum(square(y))}, {wi}, {}, true, true)[0];
    return std::vector<Tensor>{sum(square(gw))};
  };
  GradcheckResult r = gradcheck(f, {x, w}, {.raise = false});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Conv2d, Errors) {
  Tensor x = randn({2, 4, 5, 5}), w = randn({6, 2, 3, 3});
  // the weight's input channels must be C / groups
  EXPECT_MG_ERROR(conv2d(x, randn({6, 3, 3, 3}), {}, {.groups = 2}),
               "[conv2d] expected weight of shape [O, 2, kH, kW]");
  EXPECT_MG_ERROR(conv2d(x, w), "[conv2d] expected weight of shape [O, 4, kH, kW]");
  // groups must divide both channel counts
  EXPECT_MG_ERROR(conv2d(x, w, {}, {.groups = 3}), "[conv2d] groups 3 does not divide the 4 input");
  EXPECT_MG_ERROR(conv2d(randn({2, 6, 5, 5}), randn({4, 2, 3, 3}), {}, {.groups = 3}),
               "[conv2d] groups 3 does not divide the 4 output");
  EXPECT_MG_ERROR(conv2d(x, w, {}, {.groups = 0}), "[conv2d] groups must be positive");
  // kernel larger than the padded input (dilation included)
  EXPECT_MG_ERROR(conv2d(x, randn({6, 4, 7, 3})), "[conv2d] kernel of size [7, 3]");
  EXPECT_MG_ERROR(conv2d(x, randn({6, 4, 3, 3}), {}, {.dilation = {3, 1}}),
               "[conv2d] kernel of size [7, 3]");
  EXPECT_NO_THROW(conv2d(x, randn({6, 4, 7, 3}), {}, {.padding = {1, 0}}));
  // shapes of the operands
  EXPECT_MG_ERROR(conv2d(randn({4, 5, 5}), w), "[conv2d] expected a 4-d input");
  EXPECT_MG_ERROR(conv2d(randn({1, 2, 4, 5, 5}), w), "[conv2d] expected a 4-d input");
  EXPECT_MG_ERROR(conv2d(x, randn({6, 4, 3})), "[conv2d] expected a 4-d weight");
  EXPECT_MG_ERROR(conv2d(x, randn({6, 4, 3, 3}), randn({5})), "[conv2d] expected bias of shape [6]");
  EXPECT_MG_ERROR(conv2d(x, randn({6, 4, 3, 3}), randn({6, 1})),
               "[conv2d] expected bias of shape [6]");
  // parameters
  EXPECT_MG_ERROR(conv2d(x, randn({6, 4, 3, 3}), {}, {.stride = {0, 1}}),
               "[conv2d] stride must be positive");
  EXPECT_MG_ERROR(conv2d(x, randn({6, 4, 3, 3}), {}, {.padding = {-1, 0}}),
               "[conv2d] padding must be non-negative");
  EXPECT_MG_ERROR(conv2d(x, randn({6, 4, 3, 3}), {}, {.dilation = {1, 0}}),
               "[conv2d] dilation must be positive");
  // dtypes
  EXPECT_MG_ERROR(conv2d(x.to(DType::Float64), randn({6, 4, 3, 3})),
               "[conv2d] input has dtype float64");
  EXPECT_MG_ERROR(conv2d(x, randn({6, 4, 3, 3}), randn({6}, DType::Float64)),
               "[conv2d] input has dtype float32 but bias");
  EXPECT_MG_ERROR(conv2d(x.to(DType::Int64), randn({6, 4, 3, 3}).to(DType::Int64)),
               "[conv2d] expected a float32 or float64 input");
  EXPECT_MG_ERROR(conv2d(Tensor(), w), "[conv2d] got an undefined input");
  // the backward ops check grad_out against the convolution's output shape
  EXPECT_MG_ERROR(conv2d_input_backward(randn({2, 6, 4, 3}), w, {2, 4, 5, 5}, {.groups = 2}),
               "[conv2d_input_backward] expected grad_out of shape [2, 6, 3, 3]");
  EXPECT_MG_ERROR(conv2d_input_backward(randn({2, 6, 3, 3}), w, {2, 4, 5}, {.groups = 2}),
               "[conv2d_input_backward] expected a 4-d input");
  EXPECT_MG_ERROR(conv2d_weight_backward(randn({2, 6, 3, 3}), x, {6, 2, 3, 3}, {.groups = 3}),
               "[conv2d_weight_backward] groups 3 does not divide");
  EXPECT_MG_ERROR(conv2d_weight_backward(randn({1, 6, 3, 3}), x, {6, 2, 3, 3}, {.groups = 2}),
               "[conv2d_weight_backward] expected grad_out of shape [2, 6, 3, 3]");
  EXPECT_MG_ERROR(
      conv2d_weight_backward(randn({2, 6, 3, 3}, DType::Float64), x, {6, 2, 3, 3}, {.groups = 2}),
      "[conv2d_weight_backward] grad_out has dtype float64 but input has dtype float32");
}

TEST(Conv2d, FunctionalOptionsAndUnbatchedInput) {
  Generator gen(5);
  Tensor x = randn({2, 4, 7, 7}, DType::Float64, &gen),
         w = randn({6, 2, 3, 3}, DType::Float64, &gen);
  Tensor b = randn({6}, DType::Float64, &gen);
  auto opts = F::Conv2dFuncOptions().stride(2).padding({1, 2}).dilation(1).groups(2);
  EXPECT_EQ(opts.stride(), (std::array<int64_t, 2>{2, 2}));
  EXPECT_EQ(opts.padding_, (std::array<int64_t, 2>{1, 2}));
  Tensor y = F::conv2d(x, w, b, opts);
  Tensor want = conv2d(x, w, b, {.stride = {2, 2}, .padding = {1, 2}, .groups = 2});
  ASSERT_EQ(y.shape(), want.shape());
  EXPECT_EQ(sum(abs(y - want)).item<double>(), 0.0);
  // [C, H, W]: a batch of one, without the batch dim
  Tensor y1 = F::conv2d(x.select(0, 1), w, b, opts);
  ASSERT_EQ(y1.shape(), (Shape{6, 4, 5}));
  // Not bit-equal: the batch's images share one GEMM (Note [Convolution GEMM width]), whose
  // rounding may differ from a GEMM over one image.
  EXPECT_LT(max(abs(y1 - want.select(0, 1))).item<double>(), 1e-12);
  EXPECT_MG_ERROR(F::conv2d(randn({7, 7}), w), "[conv2d] expected a 4-d input");
}
