// The op table behind the derivative tests (DESIGN principle 9): one case per op with a
// derivative rule (autograd/derivatives.cpp), its inputs (shapes, value ranges, fixed index
// tensors) and a function of them. test_autograd_ops.cpp runs gradcheck and gradgradcheck on
// every case; test_cuda_ops.cpp runs every case on the CPU and on a GPU and compares the
// values and the first and second derivatives.
//
// A case's function must run on inputs of any device and floating dtype: constants it builds
// itself follow its first input there (like() below), so a CUDA run never mixes devices and a
// float32 run stays float32.
#pragma once
#include <metagrad/metagrad.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mg_op_table {

using namespace metagrad;

struct Input {
  Shape shape;
  double lo = -1, hi = 1;  // values drawn uniformly from [lo, hi]
  bool grad = true;        // differentiable input
  DType dtype = DType::Float64;
  Tensor fixed;  // a given tensor (indices, masks) instead of random values
};

struct OpCase {
  std::string name;  // the op name in the derivative table it exercises
  std::vector<Input> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  bool second_order = true;        // run gradgradcheck
  double eps = 1e-6, atol = 1e-5;  // finite-difference step and tolerance
};

inline Input in(Shape s, double lo = -1, double hi = 1) {
  return {std::move(s), lo, hi};
}
inline Input fixed(Tensor t) {
  Input i;
  i.shape = t.shape();
  i.grad = false;
  i.fixed = std::move(t);
  return i;
}

// Values in [lo, hi]; `transposed` builds them as a permuted view (non-contiguous).
inline Tensor make(const Input& spec, Generator& gen, bool noncontig) {
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

// A constant of a case's function on the device and in the dtype of the input `ref`: on a
// float64 CPU input this is `t` itself.
inline Tensor like(const Tensor& t, const Tensor& ref) {
  return t.to(ref.device()).to(ref.dtype());
}

// The device a to(device) case moves `t` to and back from: the GPU for a CPU tensor (when
// there is one), the CPU for a GPU tensor.
inline Device other_device(const Tensor& t) {
  if (t.device().is_cuda()) return Device::cpu();
  return cuda_is_available() ? Device::cuda() : Device::cpu();
}

inline Tensor idx(std::vector<int64_t> v) {
  return tensor(v);
}
inline Tensor idx(std::vector<int64_t> v, Shape s) {
  return tensor(v, s);
}

inline std::vector<OpCase> cases() {
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
      // there and back again: a CPU input visits the GPU, a GPU input the CPU (without a GPU
      // both moves are the identity and nothing is recorded)
      {"to_device", {in({2, 3})}, [](T x) { return x[0].to(other_device(x[0])).to(x[0].device()) * x[0]; }},
      {"copy_", {in({3})}, [](T x) { Tensor y = zeros({2, 3}, x[0].options()); y.copy_(x[0]); return y; }},
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
      {"relu", {in({2, 3}, 0.1, 1)}, [](T x) { return relu(x[0] * like(tensor({1.0, -1.0, 1.0}), x[0])); }},
      {"reciprocal", {in({2, 3}, 0.5, 2)}, [](T x) { return reciprocal(x[0]); }},
      {"square", {in({2, 3})}, [](T x) { return square(x[0]); }},
      {"erf", {in({2, 3})}, [](T x) { return erf(x[0]); }},
      {"pow_scalar", {in({2, 3}, 0.5, 2)}, [](T x) { return pow(x[0], 2.5); }},
      // clamp with bounds kept away from the inputs in [-1, -0.6] u [0.6, 1]... by scaling
      {"clamp", {in({2, 3}, 0.1, 1)}, [](T x) { return clamp(x[0] * like(tensor({1.0, -1.0, 3.0}), x[0]), -0.05, 2.0); }},
      // binary, with broadcasting
      {"add", {in({2, 3}), in({3})}, [](T x) { return x[0] + x[1]; }},
      {"sub", {in({2, 1}), in({3})}, [](T x) { return x[0] - x[1]; }},
      {"mul", {in({2, 3}), in({2, 1})}, [](T x) { return x[0] * x[1]; }},
      {"div", {in({2, 3}), in({3}, 0.5, 2)}, [](T x) { return x[0] / x[1]; }},
      {"pow", {in({2, 3}, 0.5, 2), in({3})}, [](T x) { return pow(x[0], x[1]); }},
      {"maximum", {in({2, 3}), in({3})}, [](T x) { return maximum(x[0], x[1] + 0.05); }},
      {"minimum", {in({2, 3}), in({3})}, [](T x) { return minimum(x[0], x[1] + 0.05); }},
      {"fmod", {in({2, 3}, 0.1, 0.9), in({3}, 1.5, 2)}, [](T x) { return fmod(x[0] * 3, x[1]); }},
      // ReLU's backward as a function of (g, x): x in [0.1, 1] with one column negated, away
      // from the switch at 0 (DESIGN principle 9)
      {"threshold_backward", {in({2, 3}), in({2, 3}, 0.1, 1)},
       [](T x) { return threshold_backward(x[0], x[1] * like(tensor({1.0, -1.0, 1.0}), x[1])); }},
      {"where", {fixed(tensor({true, false, true})), in({2, 3}), in({3})},
       [](T x) { return where(x[0], x[1], x[2]); }},
      // reductions
      {"sum", {in({2, 3, 4})}, [](T x) { return sum(x[0], {0, 2}); }},
      {"mean", {in({2, 3, 4})}, [](T x) { return mean(x[0], {1}, true); }},
      {"prod", {in({2, 3}, 0.5, 1.5)}, [](T x) { return prod(x[0], {1}); }},
      {"amax", {in({2, 5})}, [](T x) { return amax(x[0], {1}); }},
      {"max", {in({2, 5})}, [](T x) { return max(x[0]); }},
      {"min", {in({3, 4})}, [](T x) { return min(x[0]); }},
      {"amin", {in({2, 5})}, [](T x) { return amin(x[0], {0}, true); }},
      {"max_dim", {in({3, 4})}, [](T x) { return max(x[0], 1).first; }},
      {"min_dim", {in({3, 4})}, [](T x) { return min(x[0], 0, true).first; }},
      {"logsumexp", {in({3, 4})}, [](T x) { return logsumexp(x[0], {1}); }},
      // softmax / log_softmax over the last dim (the kernels' rows) and over a dim that is
      // not last (their columns); the non-contiguous runs permute the input
      {"log_softmax", {in({3, 4}, -2, 2)}, [](T x) { return log_softmax(x[0], 1); }},
      {"log_softmax", {in({2, 3, 4}, -2, 2)}, [](T x) { return log_softmax(x[0], 1); }},
      {"softmax", {in({3, 4}, -2, 2)}, [](T x) { return softmax(x[0], -1); }},
      {"softmax", {in({3, 2, 4}, -2, 2)}, [](T x) { return softmax(x[0], 0); }},
      {"norm", {in({3, 4})}, [](T x) { return norm(x[0], 2.0, {1}); }},
      {"var", {in({3, 4})}, [](T x) { return var(x[0], {1}); }},
      {"std", {in({3, 4})}, [](T x) { return metagrad::std(x[0], {0}, 1, true); }},
      // linear algebra
      {"matmul", {in({2, 3, 4}), in({4, 5})}, [](T x) { return matmul(x[0], x[1]); }},
      // indexing
      // the fused cross-entropy per sample (its first derivative is a kernel of its own, the
      // second the formula in ops): classes picked at the row ends and repeated
      {"cross_entropy_loss", {in({4, 5}, -2, 2), fixed(idx({0, 4, 2, 2}, {4}))},
       [](T x) { return cross_entropy_loss(x[0], x[1]); }},
      {"gather", {in({3, 4}), fixed(idx({0, 3, 1, 1, 2, 0}, {3, 2}))},
       [](T x) { return gather(x[0], 1, x[1]); }},
      {"scatter_add", {in({3, 4}), fixed(idx({0, 3, 1, 1, 2, 0}, {3, 2})), in({3, 2})},
       [](T x) { return scatter_add(x[0], 1, x[1], x[2]); }},
      {"index_select", {in({4, 3}), fixed(idx({2, 0, 2}))},
       [](T x) { return index_select(x[0], 0, x[1]); }},
      {"cat", {in({2, 3}), in({1, 3})}, [](T x) { return cat({x[0], x[1], x[0]}, 0); }},
      {"pad", {in({2, 3})}, [](T x) { return pad(x[0], {1, 2, 0, 1}, 0.5); }},
      // reflect / replicate: copies summed back (a scatter_add per padded dim); a crop too
      {"pad", {in({2, 3, 4})}, [](T x) { return pad(x[0], {2, 1, 0, 2}, PadMode::Reflect); }},
      {"pad", {in({3, 4})}, [](T x) { return pad(x[0], {3, -1, 1, 0}, PadMode::Replicate); }},
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
         Tensor y = like(tensor(base, {1, 2, 5, 5}), x[0]) + x[0] * 0.01;
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
      // native_batch_norm: gradcheck runs the fused backward kernel (no create_graph), gradgradcheck
      // its recorded closed form (Note [Fused batch norm]); the second case sends gradients into
      // the mean and invstd outputs too. Values in [-1, 1]: the variances stay near 1/3.
      {"native_batch_norm", {in({3, 2, 2, 2}), in({2}, 0.5, 1.5), in({2})},
       [](T x) { return std::get<0>(native_batch_norm(x[0], x[1], x[2], 1e-5)); }},
      {"native_batch_norm", {in({4, 3, 2}), in({3}, 0.5, 1.5)},
       [](T x) {
         auto [y, mean, invstd] = native_batch_norm(x[0], x[1], {}, 1e-3);
         return y * 0.5 + (mean * 2 - invstd * 0.3).reshape({1, 3, 1});
       }},
  };
  return c;
}

}  // namespace mg_op_table
