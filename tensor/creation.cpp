#include "tensor/creation.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"

namespace metagrad {

Tensor empty(const Shape& shape, TensorOptions opts) { return Tensor::empty(shape, opts); }

Tensor full(const Shape& shape, const Scalar& value, TensorOptions opts) {
  // Without a chosen dtype the fill value decides, as libtorch's full: an integer gives int64,
  // a bool gives bool, a floating value the default float32.
  if (!opts.has_dtype_) {
    opts = opts.dtype(value.kind() == DType::Float64 ? DType::Float32 : value.kind());
  }
  const DType dt = opts.dtype_;
  const int64_t i = value.to_int64();
  if (value.is_integral() && (dt == DType::Int64 || dt == DType::Int32 || dt == DType::UInt8)) {
    // Checked and written as the exact integer: beyond 2^53 a double would round it.
    MG_CHECK(detail::int_fits(i, dt), "full", "value ", i, " cannot be converted to ",
             dtype_name(dt), " without overflow");
    if (i < -(int64_t{1} << 53) || i > (int64_t{1} << 53)) {
      NoGradGuard g;
      // A fresh tensor (not an expanded view, which .contiguous() keeps for one element).
      Tensor t = Tensor::empty(shape, opts.requires_grad(false));
      t.copy_(scalar_tensor(value, dt));
      if (opts.requires_grad_) t.requires_grad_(true);
      return t;
    }
  }
  Tensor t = Tensor::empty(shape, opts.requires_grad(false));
  t.fill_(value.to_double());
  if (opts.requires_grad_) t.requires_grad_(true);
  return t;
}
// zeros and ones default to float32 whatever the written 0 or 1 is (as torch.zeros).
Tensor zeros(const Shape& shape, TensorOptions opts) {
  return full(shape, 0, opts.dtype(opts.dtype_));
}
Tensor ones(const Shape& shape, TensorOptions opts) {
  return full(shape, 1, opts.dtype(opts.dtype_));
}
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.options()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.options()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.options()); }
Tensor full_like(const Tensor& t, const Scalar& v) { return full(t.shape(), v, t.options()); }

namespace {
// Factories that compute their values in a host loop (arange, linspace, eye) build on the CPU
// and copy the result over once.
TensorOptions host_options(const TensorOptions& opts) {
  return opts.requires_grad(false).device(Device::cpu());
}
Tensor to_target(const Tensor& t, const TensorOptions& opts) {
  return opts.device_.is_cuda() ? detail::transfer(t, opts.device_) : t;
}
}  // namespace

Tensor arange(const Scalar& end) { return arange(0, end, 1); }

Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step) {
  return arange(start, end, step, TensorOptions());
}

Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step, TensorOptions opts) {
  // Without a dtype in opts (as libtorch): int64 when every argument is an integer.
  if (!opts.has_dtype_) {
    const bool ints = start.kind() != DType::Float64 && end.kind() != DType::Float64 &&
                      step.kind() != DType::Float64;
    opts = opts.dtype(ints ? DType::Int64 : DType::Float32);
  }
  const double s = start.to_double(), e = end.to_double(), d = step.to_double();
  MG_CHECK(d != 0 && std::isfinite(s) && std::isfinite(e) && std::isfinite(d), "arange",
           "invalid range: start ", s, ", end ", e, ", step ", d);
  MG_CHECK((d > 0 && e >= s) || (d < 0 && e <= s), "arange", "upper bound and step sign are",
           " inconsistent: start ", s, ", end ", e, ", step ", d);
  // Integer arguments count and step exactly (in unsigned arithmetic: end - start may not fit
  // int64); the others in double, where the count must fit before it is converted.
  const bool exact = start.is_integral() && end.is_integral() && step.is_integral() &&
                     !is_floating(opts.dtype_);
  int64_t n = 0;
  if (exact) {
    const int64_t a = start.to_int64(), b = end.to_int64(), st = step.to_int64();
    MG_CHECK(st > 0 ? b >= a : b <= a, "arange", "upper bound and step sign are inconsistent: ",
             "start ", a, ", end ", b, ", step ", st);
    const uint64_t span = st > 0 ? static_cast<uint64_t>(b) - static_cast<uint64_t>(a)
                                 : static_cast<uint64_t>(a) - static_cast<uint64_t>(b);
    const uint64_t mag = st > 0 ? static_cast<uint64_t>(st) : uint64_t{0} - static_cast<uint64_t>(st);
    const uint64_t count = span / mag + (span % mag != 0 ? 1 : 0);
    MG_CHECK(count <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "arange",
             "the range start ", a, ", end ", b, ", step ", st, " has too many elements");
    n = static_cast<int64_t>(count);
  } else {
    const double count = std::ceil((e - s) / d);
    MG_CHECK(count < 9.2e18, "arange", "the range start ", s, ", end ", e, ", step ", d,
             " has too many elements");
    n = static_cast<int64_t>(count);
  }
  Tensor t = Tensor::empty({n}, host_options(opts));
  MG_DISPATCH_ALL(t.dtype(), [&] {
    MG_CHECK((!std::is_same_v<scalar_t, bool>), "arange", "bool is not a valid dtype");
    scalar_t* p = t.data_ptr<scalar_t>();
    if (exact) {
      const int64_t s0 = start.to_int64(), st = step.to_int64();
      for (int64_t i = 0; i < n; ++i)  // wraps only where the dtype is narrower than the range
        p[i] = static_cast<scalar_t>(static_cast<int64_t>(static_cast<uint64_t>(s0) +
                                                          static_cast<uint64_t>(i) *
                                                              static_cast<uint64_t>(st)));
    } else {
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<scalar_t>(s + static_cast<double>(i) * d);
    }
  });
  t = to_target(t, opts);
  if (opts.requires_grad_) t.requires_grad_(true);
  return t;
}

Tensor linspace(double start, double end, int64_t steps, TensorOptions opts) {
  MG_CHECK(steps >= 0, "linspace", "number of steps must be non-negative, got ", steps);
  MG_CHECK(opts.dtype_ != DType::Bool, "linspace", "not implemented for bool (as PyTorch)");
  detail::check_fill_value("linspace", start, opts.dtype_);
  detail::check_fill_value("linspace", end, opts.dtype_);
  Tensor t = Tensor::empty({steps}, host_options(opts));
  // Computed in double and rounded once (within an ulp of PyTorch's float32 values, which
  // depend on its build's FMA contraction and vector width); integer types truncate start and
  // end first, as PyTorch's. Filled from both ends, so the last point is exactly `end`.
  MG_DISPATCH_ALL(t.dtype(), [&] {
    scalar_t* p = t.data_ptr<scalar_t>();
    const double s0 = std::is_integral_v<scalar_t> ? std::trunc(start) : start;
    const double s1 = std::is_integral_v<scalar_t> ? std::trunc(end) : end;
    const double step = steps > 1 ? (s1 - s0) / static_cast<double>(steps - 1) : 0.0;
    const int64_t half = steps / 2;
    if (steps == 1) p[0] = static_cast<scalar_t>(s0);  // a single point is `start`
    for (int64_t i = steps == 1 ? 1 : 0; i < steps; ++i)
      p[i] = static_cast<scalar_t>(i < half ? s0 + step * static_cast<double>(i)
                                            : s1 - step * static_cast<double>(steps - 1 - i));
  });
  t = to_target(t, opts);
  if (opts.requires_grad_) t.requires_grad_(true);
  return t;
}

Tensor eye(int64_t n, int64_t m, TensorOptions opts) {
  MG_CHECK(n >= 0, "eye", "n must be non-negative, got ", n);
  MG_CHECK(m >= -1, "eye", "m must be non-negative (or -1 for m = n), got ", m);
  if (m == -1) m = n;
  Tensor t = zeros({n, m}, host_options(opts));
  MG_DISPATCH_ALL(t.dtype(), [&] {
    scalar_t* p = t.data_ptr<scalar_t>();
    for (int64_t i = 0; i < std::min(n, m); ++i) p[i * m + i] = scalar_t(1);
  });
  t = to_target(t, opts);
  if (opts.requires_grad_) t.requires_grad_(true);
  return t;
}

template <typename T>
Tensor tensor(const std::vector<T>& data, const Shape& shape) {
  MG_CHECK(numel_of(shape) == static_cast<int64_t>(data.size()), "tensor", "shape ",
           shape_str(shape), " holds ", numel_of(shape), " elements, but ", data.size(),
           " values were given");
  Tensor t = Tensor::empty(shape, dtype_v<T>);
  T* p = t.data_ptr<T>();
  for (size_t i = 0; i < data.size(); ++i) p[i] = data[i];  // vector<bool> is not a T[]
  return t;
}

template Tensor tensor(const std::vector<bool>&, const Shape&);
template Tensor tensor(const std::vector<uint8_t>&, const Shape&);
template Tensor tensor(const std::vector<int32_t>&, const Shape&);
template Tensor tensor(const std::vector<int64_t>&, const Shape&);
template Tensor tensor(const std::vector<float>&, const Shape&);
template Tensor tensor(const std::vector<double>&, const Shape&);

}  // namespace metagrad
