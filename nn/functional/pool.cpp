// nn::functional pooling (nn/functional/pool.h). adaptive_avg_pool2d is composed of
// differentiable ops, so it needs no derivative of its own: a global mean when the output is
// 1 x 1, avg_pool2d when the windows tile the input exactly, else means of slices, done one
// dim at a time (the mean over a rectangle is the mean over its rows of the means over its
// columns), oh + ow slices in all instead of oh * ow.
#include "nn/functional/pool.h"

#include <type_traits>
#include <vector>

#include "tensor/indexing.h"
#include "tensor/reduce.h"

namespace metagrad::nn::functional {

namespace {

// Runs `f` on a 4-d input: an unbatched [C, H, W] one as a batch of one, and one with more
// leading dims ([B, N, C, H, W]: a task-batched step's stack) with them folded into the batch.
template <typename F>
auto batched(const Tensor& x, F&& f) {
  const bool unbatched = x.defined() && x.dim() == 3;
  const int64_t lead = x.defined() && x.dim() > 4 ? x.dim() - 3 : 0;  // dims before C
  const auto unfold = [&](const Tensor& r) {
    Shape s(x.shape().begin(), x.shape().begin() + lead);
    s.insert(s.end(), r.shape().begin() + 1, r.shape().end());
    return r.reshape(s);
  };
  auto r = f(unbatched ? x.unsqueeze(0) : lead ? x.flatten(0, lead - 1) : x);
  if constexpr (std::is_same_v<decltype(r), Tensor>) {
    return unbatched ? r.squeeze(0) : lead ? unfold(r) : r;
  } else {
    if (unbatched) r = {r.first.squeeze(0), r.second.squeeze(0)};
    if (lead) r = {unfold(r.first), unfold(r.second)};
    return r;
  }
}

// Average over PyTorch's adaptive windows along `dim` (2 or 3) of size n into `out` cells.
Tensor adaptive_mean(const Tensor& x, int64_t dim, int64_t out) {
  const int64_t n = x.size(dim);
  if (n == out) return x;
  if (n % out == 0) {  // equal, disjoint windows: one mean over a split dim
    Shape s = x.shape();
    s[dim] = out;
    s.insert(s.begin() + dim + 1, n / out);
    return mean(x.reshape(s), {dim + 1});
  }
  std::vector<Tensor> cells;
  cells.reserve(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) {
    const int64_t start = i * n / out, end = ((i + 1) * n + out - 1) / out;
    cells.push_back(mean(x.slice(dim, start, end), {dim}, /*keepdim=*/true));
  }
  return cat(cells, dim);
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const MaxPool2dFuncOptions& opts) {
  return max_pool2d_with_indices(x, opts).first;
}

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x,
                                                  const MaxPool2dFuncOptions& opts) {
  const Pool2dParams p{
      .kernel = opts.kernel_size_, .stride = opts.stride_, .padding = opts.padding_};
  return batched(x, [&](const Tensor& x4) { return metagrad::max_pool2d_with_indices(x4, p); });
}

Tensor avg_pool2d(const Tensor& x, const AvgPool2dFuncOptions& opts) {
  const Pool2dParams p{
      .kernel = opts.kernel_size_, .stride = opts.stride_, .padding = opts.padding_};
  return batched(
      x, [&](const Tensor& x4) { return metagrad::avg_pool2d(x4, p, opts.count_include_pad_); });
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size) {
  const char* op = "adaptive_avg_pool2d";
  MG_CHECK(x.defined(), op, "got an undefined input");
  // [C, H, W], [N, C, H, W], or a task-batched step's stack [B, N, C, H, W] (as max and avg
  // pooling: batched() folds the leading dims).
  MG_CHECK(x.dim() >= 3 && x.dim() <= 5, op, "expected a 3-d, 4-d or 5-d input, got shape ",
           shape_str(x.shape()));
  MG_CHECK(output_size[0] >= 1 && output_size[1] >= 1, op, "output size must be positive, got ",
           shape_str({output_size[0], output_size[1]}));
  MG_CHECK(x.size(-1) >= 1 && x.size(-2) >= 1, op,
           "expected an input with non-zero height and width, got shape ", shape_str(x.shape()));
  MG_CHECK(x.is_floating_point(), op, "expected a float32 or float64 input, got ",
           dtype_name(x.dtype()));
  return batched(x, [&](const Tensor& x4) {
    const int64_t h = x4.size(2), w = x4.size(3), oh = output_size[0], ow = output_size[1];
    if (oh == 1 && ow == 1) return mean(x4, {2, 3}, /*keepdim=*/true);
    if (h % oh == 0 && w % ow == 0) {
      const Pool2dParams p{.kernel = {h / oh, w / ow}};
      return metagrad::avg_pool2d(x4, p);
    }
    return adaptive_mean(adaptive_mean(x4, 2, oh), 3, ow);
  });
}

}  // namespace metagrad::nn::functional
