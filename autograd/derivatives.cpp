// The derivative of every op, in one place. Each entry: the op name its record_op reports,
// what it saves, and the rule, with the identity it implements. Rules use only public,
// differentiable ops, so with create_graph=true they record a graph too (any order).
//
// Conventions: `c.g()` is the incoming gradient (same shape as the output); a rule returns one
// gradient per input, undefined where none flows. The engine reduces a gradient that is
// broadcast over an input (sum_to) and casts it to the input's dtype, so a rule for a
// broadcasting op can stay in the output's shape.
#include "autograd/derivatives.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "tensor/conv.h"
#include "tensor/creation.h"
#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"
#include "tensor/indexing.h"
#include "tensor/linalg.h"
#include "tensor/norm.h"
#include "tensor/pool.h"
#include "tensor/reduce.h"
#include "tensor/softmax.h"
#include "tensor/view_grad.h"

namespace metagrad::autograd {

using Grads = std::vector<Tensor>;

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  DimVector dims;
  for (int64_t d = 0; d < g.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && g.size(d) != 1)) dims.push_back(d);
  Tensor r = sum(g, dims, /*keepdim=*/true);
  if (lead > 0) r = r.reshape(shape);
  return r;
}

namespace {

// ---- helpers for long rules ---------------------------------------------------------

// A gradient reduced with keepdim=false, re-expanded to the input's shape: the adjoint of a
// reduction's "sum over these dims" part.
Tensor expand_reduced(const Tensor& g, const detail::OpArgs& a) {
  Tensor r = g;
  if (!a.flag)
    for (int64_t d : a.dims) r = r.unsqueeze(d);  // dims are sorted ascending
  return r.expand(a.shape);
}

int64_t reduced_count(const detail::OpArgs& a) {
  int64_t n = 1;
  for (int64_t d : a.dims) n *= a.shape[d];
  return n;
}

// Inclusive product scan along the last dim, y_i = prod_{j <= i} x_j, in ceil(log2 n)
// doubling steps (Hillis-Steele) of differentiable ops, so its own derivatives are exact too.
Tensor cumprod_last(Tensor y) {
  const int64_t n = y.size(-1);
  for (int64_t s = 1; s < n; s *= 2)
    y = cat({y.narrow(-1, 0, s), y.narrow(-1, s, n - s) * y.narrow(-1, 0, n - s)}, -1);
  return y;
}

// d/dx_i prod(x) = prod_{j != i} x_j. Dividing out/x fails at zeros, so when any element is
// zero the product of the others is formed directly, as (prod_{j < i} x_j) (prod_{j > i} x_j):
// exclusive product scans from both ends along the reduced dims (moved last and flattened),
// O(n log n) work and memory rather than an [n, n] table, and exact at every order (no
// division anywhere, so a second zero's cross terms stay right).
Tensor prod_backward(const Tensor& g, const Tensor& x, const Tensor& out, const detail::OpArgs& a) {
  Tensor ge = expand_reduced(g, a);
  Tensor oute = expand_reduced(out, a);
  const bool has_zero = (x == 0).to(DType::Int64).to_vector<int64_t>() !=
                        std::vector<int64_t>(static_cast<size_t>(x.numel()), 0);
  if (!has_zero) return ge * oute / x;
  // Move reduced dims last: perm = kept dims then reduced dims.
  DimVector perm, inv(static_cast<size_t>(x.dim()));
  for (int64_t d = 0; d < x.dim(); ++d)
    if (std::find(a.dims.begin(), a.dims.end(), d) == a.dims.end()) perm.push_back(d);
  for (int64_t d : a.dims) perm.push_back(d);
  for (size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = static_cast<int64_t>(i);
  Tensor xp = x.permute(perm);
  const int64_t n = reduced_count(a);
  Shape flat(xp.shape().begin(), xp.shape().end() - static_cast<int64_t>(a.dims.size()));
  Shape one = flat;
  flat.push_back(n);
  one.push_back(1);
  Tensor xf = xp.reshape(flat);  // [..., n]
  const Tensor ones_col = ones(one, TensorOptions(x.dtype()).device(x.device()));
  // before_i = prod_{j < i} x_j: the inclusive scan shifted right by one.
  Tensor before = cat({ones_col, cumprod_last(xf).narrow(-1, 0, n - 1)}, -1);
  // after_i = prod_{j > i} x_j: the same on the reversed row, reversed back.
  const Tensor rev = arange(n - 1, -1, -1, TensorOptions(DType::Int64).device(x.device()));
  Tensor xr = index_select(xf, -1, rev);
  Tensor after = index_select(cat({ones_col, cumprod_last(xr).narrow(-1, 0, n - 1)}, -1), -1, rev);
  Tensor back = (before * after).reshape(xp.shape()).permute(inv);
  return ge * back;
}

// Reflect / replicate padding copies input coordinates to several output coordinates, per
// padded dim (separably: out[o] = x[src(o)] along each), so its derivative sums the copies
// back, one scatter_add per padded dim: d x_i = sum_{o : src(o) = i} d out_o. scatter_add's
// own derivative (a gather) keeps every order exact.
Tensor pad_copies_backward(const Tensor& g, const detail::OpArgs& a) {
  const auto mode = static_cast<PadMode>(a.i);
  const int64_t rank = static_cast<int64_t>(a.shape.size());
  Tensor r = g;
  for (size_t j = 0; j < a.dims.size() / 2; ++j) {
    const int64_t d = rank - 1 - static_cast<int64_t>(j), n = a.shape[static_cast<size_t>(d)];
    const int64_t out_n = r.size(d);
    std::vector<int64_t> src(static_cast<size_t>(out_n));
    for (int64_t o = 0; o < out_n; ++o)
      src[static_cast<size_t>(o)] = detail::pad_source(mode, o, a.dims[2 * j], n);
    Shape along(static_cast<size_t>(rank), 1);
    along[static_cast<size_t>(d)] = out_n;
    const Tensor index = tensor(src, along).to(g.device()).expand(r.shape());
    Shape to = r.shape();
    to[static_cast<size_t>(d)] = n;
    r = scatter_add(zeros(to, r.options()), d, index, r);
  }
  return r;
}

// Routes the gradient of a max/min over `dim` to the chosen index.
Tensor index_reduction_backward(const Tensor& g, const Tensor& indices, const detail::OpArgs& a) {
  if (a.shape.empty()) return g;  // a 0-d input: its one element was chosen
  Tensor gk = a.flag ? g : g.unsqueeze(a.i);
  Tensor ik = a.flag ? indices : indices.unsqueeze(a.i);
  return scatter_add(zeros(a.shape, g.options()), a.i, ik, gk);
}

// amax/amin: the gradient is shared evenly among the elements equal to the extreme value.
// The full max()/min() (nan_chosen) as PyTorch's evenly_distribute_backward: a NaN result
// came from the NaN elements, which share the gradient (amax's rule leaves NaN everywhere).
Tensor extreme_backward(const Tensor& g, const Tensor& x, const Tensor& out,
                        const detail::OpArgs& a, bool nan_chosen = false) {
  Tensor oute = expand_reduced(out, a);
  Tensor mask = (x == oute).to(x.dtype());
  if (nan_chosen) mask = mask + (x != x).to(x.dtype()) * (oute != oute).to(x.dtype());
  Tensor count = sum(mask, a.dims, /*keepdim=*/true).expand(a.shape);
  return expand_reduced(g, a) * mask / count;
}

// matmul with the 1-d conventions: a 1-d left operand is a row, a 1-d right one a column.
// d(A B) = dA B + A dB, so dA = G B^T and dB = A^T G, summed over broadcast batch dims.
Grads matmul_backward(const GradCtx& c) {
  const Tensor& a = c.in[0];
  const Tensor& b = c.in[1];
  Tensor a2 = a.dim() == 1 ? a.unsqueeze(0) : a;
  Tensor b2 = b.dim() == 1 ? b.unsqueeze(-1) : b;
  Tensor g2 = c.g();
  if (a.dim() == 1) g2 = g2.unsqueeze(b.dim() == 1 ? 0 : -2);
  if (b.dim() == 1) g2 = g2.unsqueeze(-1);
  Grads r(2);
  if (c.needs[0]) r[0] = sum_to(matmul(g2, b2.transpose(-1, -2)), a2.shape()).reshape(a.shape());
  if (c.needs[1]) r[1] = sum_to(matmul(a2.transpose(-1, -2), g2), b2.shape()).reshape(b.shape());
  return r;
}

Grads norm_backward(const GradCtx& c) {
  const Tensor& x = c.in[0];
  const Tensor& out = c.out[0];
  const double p = c.args.a;
  Tensor ge = expand_reduced(c.g(), c.args);
  Tensor oe = expand_reduced(out, c.args);
  if (p == 0) return {zeros_like(x)};
  if (p == 1) return {ge * sign(x)};
  if (std::isinf(p)) return {extreme_backward(c.g(), abs(x), out, c.args) * sign(x)};
  // d ||x||_p = x |x|^(p-2) / ||x||_p^(p-1); at ||x|| = 0 the gradient is taken as 0.
  Tensor safe = where(oe == 0, 1.0, oe);
  Tensor num = p == 2 ? x : x * pow(abs(x), p - 2);
  Tensor grad = ge * num / (p == 2 ? safe : pow(safe, p - 1));
  return {where(oe == 0, 0.0, grad)};
}

// ---- convolution and pooling helpers ---------------------------------------------------
// Note [Convolution parameters in OpArgs] (tensor/conv.cpp): dims = {sh, sw, ph, pw, dh, dw,
// groups}.
Conv2dParams conv_params(const detail::OpArgs& a) {
  return {.stride = {a.dims[0], a.dims[1]},
          .padding = {a.dims[2], a.dims[3]},
          .dilation = {a.dims[4], a.dims[5]},
          .groups = a.dims[6]};
}

// Note [Pooling parameters in OpArgs] (tensor/pool.cpp): dims = {kh, kw, sh, sw, ph, pw}.
Pool2dParams pool_params(const detail::OpArgs& a) {
  return {.kernel = {a.dims[0], a.dims[1]},
          .stride = {a.dims[2], a.dims[3]},
          .padding = {a.dims[4], a.dims[5]}};
}

// Note [Convolution is bilinear]: write T(x, w, gy) = <gy, conv2d(x, w)>, a trilinear form.
// The three convolution ops are its partial gradients:
//   conv2d(x, w) = dT/dgy,  conv2d_input_backward(gy, w) = dT/dx,  conv2d_weight_backward(gy, x) =
//   dT/dw.
// For a linear map y = f(a) (the others held fixed) the gradient is gg -> f^T(gg), and every
// such adjoint is again a partial gradient of T, so each op's derivatives are the other ops:
//   y = conv2d(x, w) + b:       dx = conv2d_input_backward(g, w)   dw = conv2d_weight_backward(g,
//   x)
//                               db = sum of g over N, H, W
//   gx = conv2d_input_backward(gy, w):  <gg, gx> = T(gg, w, gy) = <gy, conv2d(gg, w)>, so
//                               dgy = conv2d(gg, w)                dw = conv2d_weight_backward(gy,
//                               gg)
//   gw = conv2d_weight_backward(gy, x): <gg, gw> = T(x, gg, gy) = <gy, conv2d(x, gg)>, so
//                               dgy = conv2d(x, gg)                dx = conv2d_input_backward(gy,
//                               gg)
// Each rule is thus written in differentiable ops and convolution's derivatives of every order
// are exact (PyTorch's _convolution_double_backward rests on the same identities).
Grads conv2d_backward(const GradCtx& c) {
  const Conv2dParams p = conv_params(c.args);
  const Tensor &x = c.in[0], &w = c.in[1];
  Grads r(c.needs.size());
  if (c.needs[0]) r[0] = conv2d_input_backward(c.g(), w, x.shape(), p);
  if (c.needs[1]) r[1] = conv2d_weight_backward(c.g(), x, w.shape(), p);
  if (r.size() > 2 && c.needs[2]) r[2] = sum(c.g(), {0, 2, 3});
  return r;
}

Grads conv2d_input_backward_backward(const GradCtx& c) {
  const Conv2dParams p = conv_params(c.args);
  const Tensor &gy = c.in[0], &w = c.in[1];
  Grads r(2);
  if (c.needs[0]) r[0] = conv2d(c.g(), w, {}, p);
  if (c.needs[1]) r[1] = conv2d_weight_backward(gy, c.g(), w.shape(), p);
  return r;
}

Grads conv2d_weight_backward_backward(const GradCtx& c) {
  const Conv2dParams p = conv_params(c.args);
  const Tensor &gy = c.in[0], &x = c.in[1];
  Grads r(2);
  if (c.needs[0]) r[0] = conv2d(x, c.g(), {}, p);
  if (c.needs[1]) r[1] = conv2d_input_backward(gy, c.g(), x.shape(), p);
  return r;
}

// max_pool2d_backward(g, idx) = S g, with S the scatter of each output position to the input
// position idx picked; its adjoint S^T gathers: d(g) = gather(gg, idx) over each flattened
// (n, c) plane.
Tensor max_pool2d_double_backward(const Tensor& gg, const Tensor& indices) {
  Tensor picked = gather(gg.flatten(2), 2, indices.flatten(2));
  return picked.reshape(indices.shape());
}

// ---- batch normalisation -----------------------------------------------------------------
// Note [Fused batch norm] (tensor/norm.h). native_batch_norm's args: a = eps, i = 1 (weight
// given) | 2 (bias given); inputs {x[, weight][, bias]}, outputs {y, mean, invstd}. With M values
// per channel, xhat = (x - mean) invstd and sums over every dim but 1 (Note [Batch-norm backward
// coefficients] in kernels/norm_math.h):
//   dx = w invstd (g - sum(g) / M - xhat sum(g xhat) / M) + g_mean / M - g_invstd invstd^2 xhat / M
//   dw = sum(g xhat),  db = sum(g)
// A first derivative (grad mode off) runs the fused kernel on the saved mean and invstd (Note
// [Saved batch-norm statistics]); a recorded one (create_graph) the same formula in
// differentiable ops with mean and invstd recomputed from x, so that what is recorded is the
// exact gradient as a function of x and differentiates correctly.
Grads native_batch_norm_backward_rule(const GradCtx& c) {
  const bool has_w = (c.args.i & 1) != 0, has_b = (c.args.i & 2) != 0;
  const size_t wi = 1, bi = has_w ? 2 : 1;  // positions of weight and bias among the inputs
  const bool need_x = c.needs[0], need_w = has_w && c.needs[wi], need_b = has_b && c.needs[bi];
  const Tensor& x = c.in[0];
  const Tensor w = has_w ? c.in[wi] : Tensor();
  const double eps = c.args.a;
  const Tensor &g = c.grads[0], &g_mean = c.grads[1], &g_invstd = c.grads[2];
  Tensor gx, gw, gb;
  if (!GradMode::is_enabled()) {
    // the forward's statistics, saved (Note [Saved batch-norm statistics])
    std::tie(gx, gw, gb) = native_batch_norm_backward(g, x, w, eps, g_mean, g_invstd,
                                                      {need_x, need_w, need_b}, c.out[1], c.out[2]);
  } else {
    DimVector dims = {0};
    Shape bshape(static_cast<size_t>(x.dim()), 1);  // [1, C, 1, ...]
    bshape[1] = x.size(1);
    double m = static_cast<double>(x.size(0));
    for (int64_t d = 2; d < x.dim(); ++d) {
      dims.push_back(d);
      m *= static_cast<double>(x.size(d));
    }
    const Tensor invstd = rsqrt(var(x, dims, /*correction=*/0, /*keepdim=*/true) + eps);
    const Tensor xhat = (x - mean(x, dims, /*keepdim=*/true)) * invstd;
    const Tensor sum_g = sum(g, dims, /*keepdim=*/true);
    const Tensor sum_gxhat = need_x || need_w ? sum(g * xhat, dims, /*keepdim=*/true) : Tensor();
    if (need_x) {
      // dx = k1 g + a xhat + b with per-channel k1 = w invstd and
      //   a = -(k1 sum(g xhat) + g_invstd invstd^2) / M,  b = (g_mean - k1 sum(g)) / M
      const Tensor k1 = has_w ? invstd * w.reshape(bshape) : invstd;
      Tensor a = k1 * sum_gxhat * (-1 / m), b = k1 * sum_g * (-1 / m);
      if (g_invstd.defined()) a = a - g_invstd.reshape(bshape) * square(invstd) * (1 / m);
      if (g_mean.defined()) b = b + g_mean.reshape(bshape) * (1 / m);
      gx = g * k1 + xhat * a + b;
    }
    if (need_w) gw = sum_gxhat.reshape({x.size(1)});
    if (need_b) gb = sum_g.reshape({x.size(1)});
  }
  Grads r(c.needs.size());
  r[0] = gx;
  if (has_w) r[wi] = gw;
  if (has_b) r[bi] = gb;
  return r;
}

using Table = std::unordered_map<std::string_view, Derivative>;

const Table& table() {
  static const Table t = {
      // ---- views ---------------------------------------------------------------------------
      // reshape/view/squeeze/unsqueeze/flatten: the same elements, so g takes the old shape.
      {"reshape",
       {[](const GradCtx& c) -> Grads { return {c.g().reshape(c.args.shape)}; }, kSaveNothing}},
      // permute: apply the inverse permutation.
      {"permute",
       {[](const GradCtx& c) -> Grads {
          DimVector inv(c.args.dims.size());
          for (size_t i = 0; i < inv.size(); ++i) inv[c.args.dims[i]] = static_cast<int64_t>(i);
          return {c.g().permute(inv)};
        },
        kSaveNothing}},
      // expand: every copy of an element contributed, so sum them back.
      {"expand",
       {[](const GradCtx& c) -> Grads { return {sum_to(c.g(), c.args.shape)}; }, kSaveNothing}},
      // slice: the gradient lands in the sliced region of zeros.
      {"slice",
       {[](const GradCtx& c) -> Grads {
          return {slice_backward(c.g(), c.args.shape, c.args.i, c.args.dims[0], c.args.dims[1],
                                 c.args.dims[2])};
        },
        kSaveNothing}},
      {"slice_backward",
       {[](const GradCtx& c) -> Grads {
          return {c.g().slice(c.args.i, c.args.dims[0], c.args.dims[1], c.args.dims[2])};
        },
        kSaveNothing}},
      {"select",
       {[](const GradCtx& c) -> Grads {
          return {select_backward(c.g(), c.args.shape, c.args.i, c.args.j)};
        },
        kSaveNothing}},
      {"select_backward",
       {[](const GradCtx& c) -> Grads { return {c.g().select(c.args.i, c.args.j)}; },
        kSaveNothing}},
      // clone, dtype conversion: identity (the engine casts back to the input's dtype).
      {"clone", {[](const GradCtx& c) -> Grads { return {c.g()}; }, kSaveNothing}},
      {"to_dtype",
       {[](const GradCtx& c) -> Grads { return {c.g().to(c.in_meta[0].dtype)}; }, kSaveNothing}},
      // to(device): a copy across devices; the gradient goes back the same way.
      {"to_device",
       {[](const GradCtx& c) -> Grads { return {c.g().to(c.in_meta[0].device)}; }, kSaveNothing}},
      // copy_(self, src): self's old value is overwritten (no gradient); src arrives broadcast.
      {"copy_",
       {[](const GradCtx& c) -> Grads {
          return {Tensor(), c.g()};
        },
        kSaveNothing}},
      // fill_: the result is a constant.
      {"fill_", {[](const GradCtx&) -> Grads { return {Tensor()}; }, kSaveNothing}},

      // ---- unary -----------------------------------------------------------------------
      {"neg", {[](const GradCtx& c) -> Grads { return {-c.g()}; }, kSaveNothing}},
      // d|x| = sign(x) dx (0 at 0, as PyTorch)
      {"abs", {[](const GradCtx& c) -> Grads { return {c.g() * sign(c.in[0])}; }, kSaveInputs}},
      // piecewise constant: zero derivative almost everywhere
      {"sign", {[](const GradCtx& c) -> Grads { return {zeros_like(c.g())}; }, kSaveNothing}},
      {"floor", {[](const GradCtx& c) -> Grads { return {zeros_like(c.g())}; }, kSaveNothing}},
      {"ceil", {[](const GradCtx& c) -> Grads { return {zeros_like(c.g())}; }, kSaveNothing}},
      {"round", {[](const GradCtx& c) -> Grads { return {zeros_like(c.g())}; }, kSaveNothing}},
      {"trunc", {[](const GradCtx& c) -> Grads { return {zeros_like(c.g())}; }, kSaveNothing}},
      // d e^x = e^x dx
      {"exp", {[](const GradCtx& c) -> Grads { return {c.g() * c.out[0]}; }, kSaveOutputs}},
      // d log x = dx / x
      {"log", {[](const GradCtx& c) -> Grads { return {c.g() / c.in[0]}; }, kSaveInputs}},
      // d log(1+x) = dx / (1+x)
      {"log1p", {[](const GradCtx& c) -> Grads { return {c.g() / (c.in[0] + 1)}; }, kSaveInputs}},
      // d (e^x - 1) = e^x dx = (y + 1) dx
      {"expm1", {[](const GradCtx& c) -> Grads { return {c.g() * (c.out[0] + 1)}; }, kSaveOutputs}},
      // d sqrt(x) = dx / (2 sqrt(x))
      {"sqrt", {[](const GradCtx& c) -> Grads { return {c.g() / (c.out[0] * 2)}; }, kSaveOutputs}},
      // d x^(-1/2) = -1/2 x^(-3/2) dx = -1/2 y^3 dx
      {"rsqrt",
       {[](const GradCtx& c) -> Grads { return {c.g() * pow(c.out[0], 3) * -0.5}; }, kSaveOutputs}},
      // d sin x = cos x dx
      {"sin", {[](const GradCtx& c) -> Grads { return {c.g() * cos(c.in[0])}; }, kSaveInputs}},
      // d cos x = -sin x dx
      {"cos", {[](const GradCtx& c) -> Grads { return {-c.g() * sin(c.in[0])}; }, kSaveInputs}},
      // d tan x = (1 + tan^2 x) dx
      {"tan",
       {[](const GradCtx& c) -> Grads { return {c.g() * (square(c.out[0]) + 1)}; }, kSaveOutputs}},
      // d tanh x = (1 - tanh^2 x) dx
      {"tanh",
       {[](const GradCtx& c) -> Grads { return {c.g() * (1 - square(c.out[0]))}; }, kSaveOutputs}},
      // d s(x) = s(x) (1 - s(x)) dx
      {"sigmoid",
       {[](const GradCtx& c) -> Grads { return {c.g() * c.out[0] * (1 - c.out[0])}; },
        kSaveOutputs}},
      // d relu(x) = [x > 0] dx (0 at the kink, as PyTorch), one fused pass; y = relu(x) > 0
      // exactly where x > 0, so the saved output serves as the mask
      {"relu",
       {[](const GradCtx& c) -> Grads { return {threshold_backward(c.g(), c.out[0])}; },
        kSaveOutputs}},
      // d (1/x) = -1/x^2 dx = -y^2 dx
      {"reciprocal",
       {[](const GradCtx& c) -> Grads { return {-c.g() * square(c.out[0])}; }, kSaveOutputs}},
      // d x^2 = 2x dx
      {"square", {[](const GradCtx& c) -> Grads { return {c.g() * c.in[0] * 2}; }, kSaveInputs}},
      // d erf(x) = 2/sqrt(pi) e^(-x^2) dx
      {"erf",
       {[](const GradCtx& c) -> Grads {
          return {c.g() * exp(-square(c.in[0])) * (2.0 / std::sqrt(M_PI))};
        },
        kSaveInputs}},
      // d x^p = p x^(p-1) dx
      {"pow_scalar",
       {[](const GradCtx& c) -> Grads {
          const double p = c.args.a;
          if (p == 0) return {zeros_like(c.g())};
          return {c.g() * pow(c.in[0], p - 1) * p};
        },
        kSaveInputs}},
      // clamp passes the gradient where lo <= x <= hi
      {"clamp",
       {[](const GradCtx& c) -> Grads {
          const Tensor& x = c.in[0];
          return {where(logical_and(x >= c.args.a, x <= c.args.b), c.g(), 0)};
        },
        kSaveInputs}},

      // ---- binary (broadcast gradients are summed back by the engine) -----------------------
      {"add",
       {[](const GradCtx& c) -> Grads {
          return {c.g(), c.g()};
        },
        kSaveNothing}},
      {"sub",
       {[](const GradCtx& c) -> Grads {
          return {c.g(), c.needs[1] ? -c.g() : Tensor()};
        },
        kSaveNothing}},
      // d(ab) = b da + a db
      {"mul",
       {[](const GradCtx& c) -> Grads {
          return {c.needs[0] ? c.g() * c.in[1] : Tensor(), c.needs[1] ? c.g() * c.in[0] : Tensor()};
        },
        kSaveInputs}},
      // d(a/b) = da / b - a db / b^2
      {"div",
       {[](const GradCtx& c) -> Grads {
          const Tensor &a = c.in[0], &b = c.in[1];
          return {c.needs[0] ? c.g() / b : Tensor(),
                  c.needs[1] ? -c.g() * a / square(b) : Tensor()};
        },
        kSaveInputs}},
      // d a^b = b a^(b-1) da + a^b log(a) db (the db term taken as 0 where a = 0; the da term
      // as 0 where b = 0, since a^0 = 1 for every a, where 0 * 0^-1 would give NaN: PyTorch's)
      {"pow",
       {[](const GradCtx& c) -> Grads {
          const Tensor &a = c.in[0], &b = c.in[1];
          Grads r(2);
          // b = 0 rows use exponent 1 - 1 = 0 in the unpicked branch: 0^-1 there would be
          // inf, and its derivative NaN * 0 in a second derivative
          if (c.needs[0]) r[0] = where(b == 0, 0.0, c.g() * b * pow(a, where(b == 0, 1.0, b) - 1));
          if (c.needs[1]) r[1] = where(a == 0, 0.0, c.g() * pow(a, b) * log(where(a == 0, 1.0, a)));
          return r;
        },
        kSaveInputs}},
      // max(a, b): the larger input gets the gradient; ties split it evenly (PyTorch's rule)
      {"maximum",
       {[](const GradCtx& c) -> Grads {
          const Tensor &a = c.in[0], &b = c.in[1];
          Tensor w = (a > b).to(c.g().dtype()) + (a == b).to(c.g().dtype()) * 0.5;
          return {c.g() * w, c.g() * (1 - w)};
        },
        kSaveInputs}},
      {"minimum",
       {[](const GradCtx& c) -> Grads {
          const Tensor &a = c.in[0], &b = c.in[1];
          Tensor w = (a < b).to(c.g().dtype()) + (a == b).to(c.g().dtype()) * 0.5;
          return {c.g() * w, c.g() * (1 - w)};
        },
        kSaveInputs}},
      // fmod(a, b) = a - trunc(a/b) b
      {"fmod",
       {[](const GradCtx& c) -> Grads {
          return {c.g(), c.needs[1] ? -c.g() * trunc(c.in[0] / c.in[1]) : Tensor()};
        },
        kSaveInputs}},
      // threshold_backward(g, x) = [x > 0] g is linear in g: d/dg = threshold_backward(gg, x);
      // piecewise constant in x: d/dx = 0 almost everywhere (no gradient flows)
      {"threshold_backward",
       {[](const GradCtx& c) -> Grads {
          return {c.needs[0] ? threshold_backward(c.g(), c.in[1]) : Tensor(), Tensor()};
        },
        kSaveInputs, 0b01}},
      // where(cond, a, b): each branch gets the gradient where it was chosen
      {"where",
       {[](const GradCtx& c) -> Grads {
          const Tensor& cond = c.in[0];
          return {Tensor(), c.needs[1] ? where(cond, c.g(), 0) : Tensor(),
                  c.needs[2] ? where(cond, 0, c.g()) : Tensor()};
        },
        kSaveInputs, 0b110}},

      // ---- reductions --------------------------------------------------------------------
      // sum: every summed element gets g
      {"sum",
       {[](const GradCtx& c) -> Grads { return {expand_reduced(c.g(), c.args)}; }, kSaveNothing}},
      // mean = sum / n
      {"mean",
       {[](const GradCtx& c) -> Grads {
          return {expand_reduced(c.g(), c.args) / static_cast<double>(reduced_count(c.args))};
        },
        kSaveNothing}},
      // d prod = prod_{j != i} x_j dx_i
      {"prod",
       {[](const GradCtx& c) -> Grads { return {prod_backward(c.g(), c.in[0], c.out[0], c.args)}; },
        kSaveBoth}},
      {"amax",
       {[](const GradCtx& c) -> Grads {
          return {extreme_backward(c.g(), c.in[0], c.out[0], c.args)};
        },
        kSaveBoth}},
      // the full max() / min(): as amax / amin, except that NaN elements take a NaN result's
      // gradient
      {"max",
       {[](const GradCtx& c) -> Grads {
          return {extreme_backward(c.g(), c.in[0], c.out[0], c.args, /*nan_chosen=*/true)};
        },
        kSaveBoth}},
      {"min",
       {[](const GradCtx& c) -> Grads {
          return {extreme_backward(c.g(), c.in[0], c.out[0], c.args, /*nan_chosen=*/true)};
        },
        kSaveBoth}},
      {"amin",
       {[](const GradCtx& c) -> Grads {
          return {extreme_backward(c.g(), c.in[0], c.out[0], c.args)};
        },
        kSaveBoth}},
      // max/min along a dim: the gradient goes to the index that was chosen
      {"max_dim",
       {[](const GradCtx& c) -> Grads {
          return {index_reduction_backward(c.grads[0], c.out[1], c.args)};
        },
        kSaveOutputs}},
      {"min_dim",
       {[](const GradCtx& c) -> Grads {
          return {index_reduction_backward(c.grads[0], c.out[1], c.args)};
        },
        kSaveOutputs}},
      // d logsumexp(x) = softmax(x) dx = e^(x - lse) dx
      {"logsumexp",
       {[](const GradCtx& c) -> Grads {
          return {expand_reduced(c.g(), c.args) * exp(c.in[0] - expand_reduced(c.out[0], c.args))};
        },
        kSaveBoth}},
      // y = log_softmax(x) along dim i: dy = dx - sum(softmax(x) dx), so with softmax = e^y,
      // dx = g - e^y sum(g). Without create_graph one fused kernel (Note [Fused softmax
      // backward]); with it the formula in ops, which records its own graph.
      {"log_softmax",
       {[](const GradCtx& c) -> Grads {
          if (!GradMode::is_enabled()) return {log_softmax_backward(c.g(), c.out[0], c.args.i)};
          return {c.g() - exp(c.out[0]) * sum(c.g(), {c.args.i}, /*keepdim=*/true)};
        },
        kSaveOutputs}},
      // loss[n] = logsumexp(x[n]) - x[n, t[n]]: dx = g[n] (softmax(x)[n] - onehot(t[n])), the
      // one-hot term being the pick's adjoint, a scatter (Note [Fused cross-entropy] in
      // kernels/cpu/softmax.cpp). A first derivative (grad mode off) is one fused kernel; a
      // recorded one is this formula in ops, softmax recomputed from x, exact to any order.
      {"cross_entropy_loss",
       {[](const GradCtx& c) -> Grads {
          const Tensor &x = c.in[0], &t = c.in[1];
          if (!c.needs[0]) return {Tensor(), Tensor()};
          if (!GradMode::is_enabled()) return {cross_entropy_loss_backward(c.g(), x, t), Tensor()};
          const Tensor g1 = c.g().unsqueeze(1);
          return {g1 * softmax(x, 1) - scatter_add(zeros_like(x), 1, t.unsqueeze(1), g1), Tensor()};
        },
        kSaveInputs}},
      // y = softmax(x) along dim i: dy = y (dx - sum(y dx)), so dx = y (g - sum(g y)); fused
      // without create_graph, as log_softmax's.
      {"softmax",
       {[](const GradCtx& c) -> Grads {
          const Tensor& y = c.out[0];
          if (!GradMode::is_enabled()) return {softmax_backward(c.g(), y, c.args.i)};
          return {y * (c.g() - sum(c.g() * y, {c.args.i}, /*keepdim=*/true))};
        },
        kSaveOutputs}},
      {"norm", {[](const GradCtx& c) -> Grads { return norm_backward(c); }, kSaveBoth}},
      // d var = 2 (x - mean) / (n - correction) dx
      {"var",
       {[](const GradCtx& c) -> Grads {
          const Tensor& x = c.in[0];
          const double n = static_cast<double>(reduced_count(c.args)) - c.args.a;
          Tensor centered = x - mean(x, c.args.dims, /*keepdim=*/true);
          return {expand_reduced(c.g(), c.args) * centered * (2.0 / n)};
        },
        kSaveInputs}},
      // d std = d var / (2 std); 0 where std = 0 (all inputs equal: a subgradient, PyTorch's,
      // where the formula gives 0 / 0). The division is by a safe std (1 there), so that the
      // unpicked branch has no 0 / 0 either: its derivative reaches where() scaled by 0, and
      // NaN * 0 would make the second derivative NaN.
      {"std",
       {[](const GradCtx& c) -> Grads {
          const Tensor& x = c.in[0];
          const double n = static_cast<double>(reduced_count(c.args)) - c.args.a;
          Tensor centered = x - mean(x, c.args.dims, /*keepdim=*/true);
          const Tensor s = expand_reduced(c.out[0], c.args);
          const Tensor zero = s == 0;
          const Tensor safe = where(zero, 1.0, s);
          return {where(zero, 0.0, expand_reduced(c.g(), c.args) * centered / (safe * n))};
        },
        kSaveBoth}},

      // ---- linear algebra ------------------------------------------------------------------
      {"matmul", {[](const GradCtx& c) -> Grads { return matmul_backward(c); }, kSaveInputs}},

      // ---- indexing ----------------------------------------------------------------------
      // gather picks x[idx]: its adjoint adds g back at idx
      {"gather",
       {[](const GradCtx& c) -> Grads {
          return {scatter_add(zeros(c.in_shape(0), c.g().options()), c.args.i, c.in[1], c.g()),
                  Tensor()};
        },
        kSaveInputs, 0b01}},
      // scatter_add(x, idx, src) = x + S src, with S the scatter: d x = g, d src = S^T g = gather
      {"scatter_add",
       {[](const GradCtx& c) -> Grads {
          return {c.g(), Tensor(), c.needs[2] ? gather(c.g(), c.args.i, c.in[1]) : Tensor()};
        },
        kSaveInputs, 0b101}},
      // index_select picks slices: scatter them back (an index repeated gets the sum)
      {"index_select",
       {[](const GradCtx& c) -> Grads {
          const Tensor& idx = c.in[1];
          Shape view(c.g().dim(), 1);
          view[c.args.i] = idx.numel();
          Tensor full_idx = idx.to(DType::Int64).reshape(view).expand(c.g().shape());
          return {scatter_add(zeros(c.in_shape(0), c.g().options()), c.args.i, full_idx, c.g()),
                  Tensor()};
        },
        kSaveInputs, 0b01}},
      // cat: each input gets its own slab of g
      {"cat",
       {[](const GradCtx& c) -> Grads {
          Grads r;
          int64_t start = 0;
          for (size_t k = 0; k < c.args.dims.size(); ++k) {
            const int64_t len = c.args.dims[k];
            if (c.in_shape(k).size() == 1 && c.in_shape(k)[0] == 0) {
              // a skipped empty input: an empty gradient (as PyTorch), not none
              r.push_back(c.needs[k] ? zeros({0}, c.g().options()) : Tensor());
              continue;
            }
            r.push_back(c.needs[k] ? c.g().narrow(c.args.i, start, len) : Tensor());
            start += len;
          }
          return r;
        },
        kSaveNothing}},
      // constant pad: the gradient is g cropped back, i.e. padded by the negated amounts;
      // reflect / replicate: each input element's copies summed
      {"pad",
       {[](const GradCtx& c) -> Grads {
          if (c.args.i != static_cast<int64_t>(PadMode::Constant))
            return {pad_copies_backward(c.g(), c.args)};
          DimVector neg_pad(c.args.dims);
          for (auto& p : neg_pad) p = -p;
          return {pad(c.g(), neg_pad, 0.0)};
        },
        kSaveNothing}},

      // ---- convolution and pooling (nn layers' primitives) ----------------------------------
      // Note [Convolution is bilinear] above: each op's derivatives are the other two ops.
      {"conv2d", {[](const GradCtx& c) -> Grads { return conv2d_backward(c); }, kSaveInputs}},
      {"conv2d_input_backward",
       {[](const GradCtx& c) -> Grads { return conv2d_input_backward_backward(c); }, kSaveInputs}},
      {"conv2d_weight_backward",
       {[](const GradCtx& c) -> Grads { return conv2d_weight_backward_backward(c); }, kSaveInputs}},
      // max pooling picks one input per window: the gradient goes back to it (a scatter)
      {"max_pool2d",
       {[](const GradCtx& c) -> Grads {
          return {max_pool2d_backward(c.grads[0], c.out[1], c.args.shape)};
        },
        kSaveOutputs}},
      // the scatter is linear in g: its adjoint gathers gg at the same indices
      {"max_pool2d_backward",
       {[](const GradCtx& c) -> Grads {
          return {max_pool2d_double_backward(c.g(), c.in[1]), Tensor()};
        },
        kSaveInputs, 0b01}},
      // avg_pool2d is linear, y = A x: dx = A^T g, which is avg_pool2d_backward
      {"avg_pool2d",
       {[](const GradCtx& c) -> Grads {
          return {avg_pool2d_backward(c.g(), c.args.shape, pool_params(c.args), c.args.flag)};
        },
        kSaveNothing}},
      // avg_pool2d_backward(g) = A^T g is linear too: its adjoint is A, avg_pool2d itself
      {"avg_pool2d_backward",
       {[](const GradCtx& c) -> Grads {
          return {avg_pool2d(c.g(), pool_params(c.args), c.args.flag)};
        },
        kSaveNothing}},

      // ---- normalisation ------------------------------------------------------------------
      // Note [Fused batch norm]: the fused kernel for first derivatives, the closed form in
      // differentiable ops when recorded
      {"native_batch_norm",
       {[](const GradCtx& c) -> Grads { return native_batch_norm_backward_rule(c); },
        kSaveInputs | kSaveTrailingOutputs}},
  };
  return t;
}

}  // namespace

const Derivative* find_derivative(std::string_view op) {
  auto it = table().find(op);
  return it == table().end() ? nullptr : &it->second;
}

std::vector<std::string_view> ops_with_derivatives() {
  std::vector<std::string_view> r;
  for (const auto& [k, v] : table()) r.push_back(k);
  std::sort(r.begin(), r.end());
  return r;
}

}  // namespace metagrad::autograd
