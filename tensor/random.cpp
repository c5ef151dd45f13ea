// Random factories and in-place fills: argument checks, the generator's reservation of Philox
// blocks, allocation and the kernel call (kernels/cpu/random.h). None reports to autograd
// (tensor/random.h says why).
#include "tensor/random.h"

#include <cmath>
#include <limits>
#include <utility>

#include "kernels/cpu/random.h"
#include "kernels/cuda/runtime.h"
#include "kernels/philox.h"
#include "kernels/strided.h"
#include "tensor/grad_mode.h"
#include "tensor/dispatch.h"
#include "tensor/tensor_iter.h"

namespace metagrad {

namespace philox = kernels::philox;

Generator& default_generator() {
  static Generator gen;
  return gen;
}

void manual_seed(uint64_t seed) {
  default_generator().manual_seed(seed);
}

namespace {

Generator& pick(Generator* gen) {
  return gen ? *gen : default_generator();
}

// Only a real device gets this far: Tensor::empty checks CUDA devices too, but randperm
// builds on the CPU first and must fail before drawing.
void check_device(const char* op, Device d) {
  if (d.is_cuda()) cuda::check_device(op, d.index);
}

void check_shape(const char* op, const Shape& shape) {
  for (int64_t s : shape) MG_CHECK(s >= 0, op, "negative dimension in shape ", shape_str(shape));
  MG_CHECK(shape.size() <= static_cast<size_t>(kernels::kMaxDims), op, "shape ", shape_str(shape),
           " has more than ", kernels::kMaxDims, " dimensions");
}

void check_floating(const char* op, DType t) {
  MG_CHECK(is_floating(t), op, "expected a floating-point dtype, got ", dtype_name(t));
}

// In-place fills write over whatever the tensor held; autograd cannot see through them.
void check_inplace(const char* op, const Tensor& self) {
  MG_CHECK(self.defined(), op, "called on an undefined tensor");
  check_device(op, self.device());
  check_floating(op, self.dtype());
  detail::check_no_internal_overlap(op, self);
  MG_CHECK(!detail::should_record({&self}), op, "cannot fill a tensor of shape ",
           shape_str(self.shape()),
           " that requires grad while grad mode is on; do it under NoGradGuard");
}

Tensor make(const char* op, const Shape& shape, const TensorOptions& opts) {
  check_shape(op, shape);
  check_device(op, opts.device_);
  return Tensor::empty(shape, opts.requires_grad(false));
}

Tensor finish(Tensor t, const TensorOptions& opts) {
  if (opts.requires_grad_) t.requires_grad_(true);
  return t;
}

// The (seed, first block) of a draw of `numel` elements at `per_block` elements per block.
GeneratorState reserve(Generator* gen, int64_t numel, int64_t per_block) {
  return pick(gen).reserve_state(
      philox::blocks_for(static_cast<uint64_t>(numel), static_cast<uint64_t>(per_block)));
}

void fill_uniform(Tensor& t, double from, double to, Generator* gen) {
  const GeneratorState s =
      reserve(gen, t.numel(), philox::uniform_per_block(t.dtype() == DType::Float64));
  MG_KERNEL(t.device(), random_uniform, t.dtype(), detail::extent(t.shape()),
                               {t.raw_data(), t.strides().data()}, s.seed, s.offset, from, to);
}

void fill_normal(Tensor& t, double mean, double std, Generator* gen) {
  const GeneratorState s =
      reserve(gen, t.numel(), philox::normal_per_block(t.dtype() == DType::Float64));
  MG_KERNEL(t.device(), random_normal, t.dtype(), detail::extent(t.shape()),
                              {t.raw_data(), t.strides().data()}, s.seed, s.offset, mean, std);
}

// The integers a dtype holds exactly, {lowest, highest}: randint's bounds must lie within.
std::pair<double, double> int_limits(DType t) {
  const double f24 = std::ldexp(1.0, 24), f53 = std::ldexp(1.0, 53), i63 = std::ldexp(1.0, 63);
  switch (t) {
    case DType::Bool:
      return {0, 1};
    case DType::UInt8:
      return {0, 255};
    case DType::Int32:
      return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
    case DType::Int64:
      return {-i63, i63};
    case DType::Float32:
      return {-f24, f24};
    case DType::Float64:
      return {-f53, f53};
  }
  return {0, 0};
}

}  // namespace

Tensor rand(const Shape& shape, TensorOptions opts, Generator* gen) {
  check_floating("rand", opts.dtype_);
  Tensor t = make("rand", shape, opts);
  fill_uniform(t, 0.0, 1.0, gen);
  return finish(t, opts);
}

Tensor randn(const Shape& shape, TensorOptions opts, Generator* gen) {
  check_floating("randn", opts.dtype_);
  Tensor t = make("randn", shape, opts);
  fill_normal(t, 0.0, 1.0, gen);
  return finish(t, opts);
}

Tensor rand_like(const Tensor& t, Generator* gen) {
  MG_CHECK(t.defined(), "rand_like", "called on an undefined tensor");
  return rand(t.shape(), t.options(), gen);
}

Tensor randn_like(const Tensor& t, Generator* gen) {
  MG_CHECK(t.defined(), "randn_like", "called on an undefined tensor");
  return randn(t.shape(), t.options(), gen);
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions opts, Generator* gen) {
  MG_CHECK(low < high, "randint", "expects low < high, got low=", low, ", high=", high);
  const auto [lo, hi] = int_limits(opts.dtype_);
  // In double: exact for every bound that passes (|x| <= 2^53) or is compared with 2^63.
  MG_CHECK(static_cast<double>(low) >= lo && static_cast<double>(high) - 1.0 <= hi, "randint",
           "range [", low, ", ", high, ") is not representable in dtype ", dtype_name(opts.dtype_));
  Tensor t = make("randint", shape, opts);
  const uint64_t range = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
  const GeneratorState s = reserve(gen, t.numel(), philox::randint_per_block(range));
  MG_KERNEL(t.device(), random_int, t.dtype(), detail::extent(t.shape()), {t.raw_data(), t.strides().data()},
                           s.seed, s.offset, low, range);
  return finish(t, opts);
}

Tensor randint(int64_t high, const Shape& shape, TensorOptions opts, Generator* gen) {
  return randint(0, high, shape, opts, gen);
}

Tensor bernoulli(const Tensor& p, Generator* gen) {
  MG_CHECK(p.defined(), "bernoulli", "called on an undefined tensor");
  check_device("bernoulli", p.device());
  MG_CHECK(is_floating(p.dtype()), "bernoulli",
           "expected a floating-point probability tensor, got ", dtype_name(p.dtype()),
           " of shape ", shape_str(p.shape()));
  Tensor t = Tensor::empty(p.shape(), p.options());
  const GeneratorState s = reserve(gen, t.numel(), philox::kBernoulliPerBlock);
  const bool ok = MG_KERNEL(t.device(), random_bernoulli_tensor,
      t.dtype(), detail::extent(t.shape()), {t.raw_data(), t.strides().data()},
      {p.raw_data(), p.strides().data()}, s.seed, s.offset);
  MG_CHECK(ok, "bernoulli", "probabilities must lie in [0, 1]; the tensor of shape ",
           shape_str(p.shape()), " has an element outside (or NaN)");
  return t;
}

Tensor bernoulli(const Shape& shape, double p, TensorOptions opts, Generator* gen) {
  MG_CHECK(p >= 0.0 && p <= 1.0, "bernoulli", "probability must lie in [0, 1], got ", p);
  Tensor t = make("bernoulli", shape, opts);
  const GeneratorState s = reserve(gen, t.numel(), philox::kBernoulliPerBlock);
  MG_KERNEL(t.device(), random_bernoulli, t.dtype(), detail::extent(t.shape()),
                                 {t.raw_data(), t.strides().data()}, s.seed, s.offset, p);
  return finish(t, opts);
}

Tensor randperm(int64_t n, TensorOptions opts, Generator* gen) {
  MG_CHECK(n >= 0, "randperm", "n must be non-negative, got ", n);
  const double hi = int_limits(opts.dtype_).second;
  MG_CHECK(static_cast<double>(n) - 1.0 <= hi, "randperm", "n = ", n, " is too large for dtype ",
           dtype_name(opts.dtype_));
  check_device("randperm", opts.device_);
  Tensor idx = Tensor::empty({n}, TensorOptions(DType::Int64).device(opts.device_));
  const GeneratorState s = reserve(gen, n, philox::kRandpermPerBlock);
  MG_KERNEL(idx.device(), random_perm, n, idx.data_ptr<int64_t>(), s.seed, s.offset);
  if (opts.dtype_ != DType::Int64) {
    NoGradGuard g;
    idx = idx.to(opts.dtype_);
  }
  return finish(idx, opts);
}

Tensor& uniform_(Tensor& self, double from, double to, Generator* gen) {
  check_inplace("uniform_", self);
  MG_CHECK(std::isfinite(from) && std::isfinite(to) && from <= to, "uniform_",
           "expects a finite range from <= to, got from=", from, ", to=", to);
  const double width = self.dtype() == DType::Float32
                           ? static_cast<double>(static_cast<float>(to) - static_cast<float>(from))
                           : to - from;
  MG_CHECK(std::isfinite(width), "uniform_", "range [", from, ", ", to, ") is too wide for dtype ",
           dtype_name(self.dtype()));
  fill_uniform(self, from, to, gen);
  self.bump_version();
  return self;
}

Tensor& normal_(Tensor& self, double mean, double std, Generator* gen) {
  check_inplace("normal_", self);
  MG_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0.0, "normal_",
           "expects a finite mean and std >= 0, got mean=", mean, ", std=", std);
  fill_normal(self, mean, std, gen);
  self.bump_version();
  return self;
}

}  // namespace metagrad
