// Elementwise ops: argument checks, type promotion, output allocation, the kernel call, and
// the report to autograd (Note [Ops report themselves] in tensor.h).
#include "tensor/elementwise.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "kernels/cuda/runtime.h"
#include "tensor/dispatch.h"
#include "tensor/grad_mode.h"
#include "tensor/reduce.h"
#include "tensor/tensor_iter.h"
#include "tensor/type_promotion.h"

namespace metagrad {

using kernels::BinaryOp;
using kernels::UnaryOp;

namespace {

void check_operand(const char* op, const Tensor& t) {
  MG_CHECK(t.defined(), op, "got an undefined tensor");
}

// Casts without recording: the caller reports the whole op, whose derivative accounts for it.
Tensor cast(const Tensor& t, DType d) {
  if (t.dtype() == d) return t;
  NoGradGuard g;
  return t.to(d);
}

Tensor unary_op(const char* name, UnaryOp op, const Tensor& x, double p0 = 0, double p1 = 0,
                detail::OpArgs args = {}) {
  check_operand(name, x);
  DType t = x.dtype();
  if (kernels::unary_needs_float(op) && !is_floating(t)) t = DType::Float32;
  MG_CHECK(t != DType::Bool, name, "not supported for bool tensors (shape ",
           shape_str(x.shape()), ")");
  Tensor xin = cast(x, t);
  Tensor out = Tensor::empty(x.shape(), x.options().dtype(t));
  MG_KERNEL(x.device(), unary, op, p0, p1, t, detail::extent(x.shape()),
            {out.raw_data(), out.strides().data()}, {xin.raw_data(), xin.strides().data()});
  detail::record_op(name, {x}, {out}, args);
  return out;
}

// The dtype the kernel computes in: the promoted type, except that true division and
// bool arithmetic need adjusting.
DType compute_type(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  DType t = result_type(a, b);
  if (op == BinaryOp::Div && !is_floating(t)) t = DType::Float32;
  if (t == DType::Bool)
    MG_CHECK(op != BinaryOp::Sub && op != BinaryOp::Pow && op != BinaryOp::Fmod, name,
             "not supported for bool tensors (shapes ", shape_str(a.shape()), " and ",
             shape_str(b.shape()), "); use logical ops");
  return t;
}

// On bool, + and * are "or" and "and", as in PyTorch.
BinaryOp bool_op(BinaryOp op, DType t) {
  if (t != DType::Bool) return op;
  if (op == BinaryOp::Add) return BinaryOp::LogicalOr;
  if (op == BinaryOp::Mul) return BinaryOp::LogicalAnd;
  return op;
}

Tensor binary_op(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  check_operand(name, a);
  check_operand(name, b);
  const Shape shape = broadcast_shapes(name, a.shape(), b.shape());
  const Device dev = detail::common_device(name, {&a, &b});
  const DType t = compute_type(name, op, a, b);
  Tensor ac = detail::adopt_device(cast(a, t), dev), bc = detail::adopt_device(cast(b, t), dev);
  const DType out_t = kernels::binary_returns_bool(op) ? DType::Bool : t;
  Tensor out = Tensor::empty(shape, a.options().dtype(out_t).device(dev));
  const Shape sa = detail::broadcast_strides(ac, shape), sb = detail::broadcast_strides(bc, shape);
  MG_KERNEL(dev, binary, bool_op(op, t), t, detail::extent(shape),
            {out.raw_data(), out.strides().data()}, {ac.raw_data(), sa.data()},
            {bc.raw_data(), sb.data()});
  if (out_t != DType::Bool) detail::record_op(name, {a, b}, {out});
  return out;
}

Tensor& inplace_op(const char* name, BinaryOp op, Tensor& self, const Tensor& other) {
  check_operand(name, self);
  check_operand(name, other);
  const Shape shape = broadcast_shapes(name, self.shape(), other.shape());
  MG_CHECK(shape == self.shape(), name, "output of shape ", shape_str(self.shape()),
           " does not match the broadcast shape ", shape_str(shape));
  detail::check_no_internal_overlap(name, self);
  const DType t = compute_type(name, op, self, other);
  // PyTorch's can_cast: no float result into an integer tensor, no number into a bool one.
  MG_CHECK(t == self.dtype() ||
               ((is_floating(self.dtype()) || !is_floating(t)) && self.dtype() != DType::Bool),
           name, "result type ", dtype_name(t), " cannot be cast to the output's dtype ",
           dtype_name(self.dtype()));
  detail::check_inplace(name, self, {&self, &other});
  // Note [In-place ops and autograd]: an in-place op is recorded as the out-of-place op
  // applied to a clone of self's old value (the clone carries self's old history), whose
  // result is written back into self. The derivative table then needs no in-place rules,
  // and the old value the rule may need (mul_, div_) is kept safe in the clone.
  Tensor old;
  if (detail::should_record({&self, &other})) old = self.clone();
  // `other` as the derivative must see it: its value before the write. When it shares self's
  // memory (y *= y, y += y[:1]), recording it as is would save the written values (and its
  // version, bumped by this very write, would not tell).
  Tensor other_rec = other;
  if (old.defined() && other.storage() == self.storage())
    other_rec = other.is_same(self) ? old : other.clone();
  const Device dev = detail::common_device(name, {&self, &other});
  MG_CHECK(dev == self.device(), name, "cannot write a result on ", dev.str(),
           " into a tensor on ", self.device().str());
  std::string out_of_place(name);
  out_of_place.pop_back();  // "add_" -> "add"
  if (t != self.dtype()) {
    // A wider compute type (float32 self, float64 other): computed in it and rounded once into
    // self, as PyTorch's; casting `other` to self's type first would round twice.
    NoGradGuard g;
    self.copy_(binary_op(out_of_place.c_str(), op, self, other));
  } else {
    Tensor oc = detail::adopt_device(cast(other, self.dtype()), dev);
    if (oc.storage() == self.storage() && !oc.is_same(self)) oc = oc.clone();  // aliasing
    const Shape so = detail::broadcast_strides(oc, shape);
    MG_KERNEL(dev, binary, bool_op(op, self.dtype()), self.dtype(), detail::extent(shape),
              {self.raw_data(), self.strides().data()}, {self.raw_data(), self.strides().data()},
              {oc.raw_data(), so.data()});
  }
  self.bump_version();
  if (old.defined()) detail::record_op(out_of_place.c_str(), {old, other_rec}, {self});
  return self;
}

}  // namespace

#define MG_UNARY(fn, Op) \
  Tensor fn(const Tensor& x) { return unary_op(#fn, UnaryOp::Op, x); }
MG_UNARY(neg, Neg)
MG_UNARY(abs, Abs)
MG_UNARY(sign, Sign)
MG_UNARY(exp, Exp)
MG_UNARY(log, Log)
MG_UNARY(log1p, Log1p)
MG_UNARY(expm1, Expm1)
MG_UNARY(sqrt, Sqrt)
MG_UNARY(rsqrt, Rsqrt)
MG_UNARY(sin, Sin)
MG_UNARY(cos, Cos)
MG_UNARY(tan, Tan)
MG_UNARY(tanh, Tanh)
MG_UNARY(sigmoid, Sigmoid)
MG_UNARY(relu, Relu)
MG_UNARY(reciprocal, Reciprocal)
MG_UNARY(square, Square)
MG_UNARY(floor, Floor)
MG_UNARY(ceil, Ceil)
MG_UNARY(round, Round)
MG_UNARY(trunc, Trunc)
MG_UNARY(erf, Erf)
#undef MG_UNARY

Tensor logical_not(const Tensor& x) {
  check_operand("logical_not", x);
  return eq(x, scalar_like(x, 0).to(x.dtype()));
}

Tensor pow(const Tensor& x, const Scalar& e) {
  check_operand("pow", x);
  const DType t = result_type(x, e);
  MG_CHECK(is_floating(t) || e.to_double() >= 0, "pow", "integers to negative powers are not allowed (shape ",
           shape_str(x.shape()), ", exponent ", e.to_double(), ")");
  // An integer exponent beyond 2^53 would round as a double (and lose its parity): the exact
  // int64 power of a tensor exponent, wrapped to t. Integer results record nothing.
  if (!is_floating(t) && e.is_integral() && e.to_int64() > (int64_t{1} << 53))
    return cast(pow(cast(x, DType::Int64), scalar_tensor(e, DType::Int64).to(x.device())), t);
  return unary_op("pow_scalar", UnaryOp::PowScalar, cast(x, t), e.to_double(), 0,
                  {.a = e.to_double()});
}
Tensor pow(const Tensor& x, const Tensor& e) { return binary_op("pow", BinaryOp::Pow, x, e); }
Tensor pow(const Scalar& base, const Tensor& e) {
  return pow(detail::scalar_operand(e, base), e);
}

Tensor clamp(const Tensor& x, std::optional<Scalar> lo, std::optional<Scalar> hi) {
  check_operand("clamp", x);
  MG_CHECK(lo || hi, "clamp", "at least one of min and max must be given");
  DType t = x.dtype();
  if (lo) t = promote_types(t, result_type(x, *lo));
  if (hi) t = promote_types(t, result_type(x, *hi));
  // int64 bounds beyond 2^53 would round as doubles: exact int64 operands instead (int32 and
  // uint8 bounds that far out saturate the same either way). Integer results record nothing.
  const auto beyond_double = [](const std::optional<Scalar>& s) {
    if (!s || !s->is_integral()) return false;
    const int64_t i = s->to_int64();
    return i < -(int64_t{1} << 53) || i > (int64_t{1} << 53);
  };
  if (t == DType::Int64 && (beyond_double(lo) || beyond_double(hi))) {
    Tensor r = cast(x, t);
    if (lo) r = maximum(r, detail::scalar_operand(r, *lo));
    if (hi) r = minimum(r, detail::scalar_operand(r, *hi));
    return r;
  }
  // A missing bound is infinite; the kernel saturates bounds beyond an integer type's range
  // (fn::saturate), so no bound is ever converted out of range.
  double l = -std::numeric_limits<double>::infinity(), h = -l;
  if (lo) l = lo->to_double();
  if (hi) h = hi->to_double();
  return unary_op("clamp", UnaryOp::Clamp, cast(x, t), l, h,
                  {.a = l, .b = h, .flag = lo.has_value() && hi.has_value()});
}
Tensor clamp_min(const Tensor& x, const Scalar& lo) { return clamp(x, lo, std::nullopt); }
Tensor clamp_max(const Tensor& x, const Scalar& hi) { return clamp(x, std::nullopt, hi); }

#define MG_BINARY(fn, Op) \
  Tensor fn(const Tensor& a, const Tensor& b) { return binary_op(#fn, BinaryOp::Op, a, b); }
MG_BINARY(add, Add)
MG_BINARY(sub, Sub)
MG_BINARY(mul, Mul)
MG_BINARY(div, Div)
MG_BINARY(maximum, Maximum)
MG_BINARY(minimum, Minimum)
MG_BINARY(eq, Eq)
MG_BINARY(ne, Ne)
MG_BINARY(lt, Lt)
MG_BINARY(le, Le)
MG_BINARY(gt, Gt)
MG_BINARY(ge, Ge)
MG_BINARY(logical_and, LogicalAnd)
MG_BINARY(logical_or, LogicalOr)
MG_BINARY(logical_xor, LogicalXor)
#undef MG_BINARY

namespace {
// Whether fmod(a, b) divides integers into a non-empty result: then a 0 divisor is an error.
bool checks_integer_zero(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return false;
  const DType t = result_type(a, b);
  if (is_floating(t) || t == DType::Bool) return false;
  // Shapes first: a divisor that cannot broadcast gets the broadcast error, not this one.
  return numel_of(broadcast_shapes("fmod", a.shape(), b.shape())) > 0;
}
[[noreturn]] void fail_zero_divisor(const Tensor& b) {
  detail::fail("fmod", "integer division by zero (ZeroDivisionError): the divisor of shape ",
               shape_str(b.shape()), " holds a 0");
}
}  // namespace

// Integer fmod by zero is an error, as PyTorch's ZeroDivisionError. A tensor divisor is checked
// on both devices (a host wait on the GPU, for an integer op that is rare; the kernels' 0 is
// never seen); a scalar one on the host.
Tensor fmod(const Tensor& a, const Tensor& b) {
  if (checks_integer_zero(a, b)) {
    NoGradGuard g;
    if (amax(eq(b, detail::scalar_operand(b, 0)).to(DType::Int64)).item<int64_t>()) {
      fail_zero_divisor(b);
    }
  }
  return binary_op("fmod", BinaryOp::Fmod, a, b);
}
Tensor fmod(const Tensor& a, const Scalar& b) {
  const Tensor bt = detail::scalar_operand(a, b);
  if (b.to_double() == 0 && checks_integer_zero(a, bt)) fail_zero_divisor(bt);
  return binary_op("fmod", BinaryOp::Fmod, a, bt);
}
Tensor fmod(const Scalar& a, const Tensor& b) {
  return fmod(detail::scalar_operand(b, a), b);
}

namespace {
// As PyTorch's where: a scalar branch must fit the result's dtype (arithmetic with a scalar
// wraps instead, as PyTorch's).
void check_where_scalar(const Tensor& t, const Scalar& s) {
  const DType dt = result_type(t, s);
  // PyTorch's overflow check lets an unsigned type take -255..255 (the negatives wrap).
  const int64_t i = s.to_int64();
  if (s.is_integral() && dt == DType::UInt8)
    MG_CHECK(i >= -255 && i <= 255, "where", "value ", i, " cannot be converted to uint8",
             " without overflow");
  else if (s.is_integral() && dt != DType::Bool && !is_floating(dt))
    MG_CHECK(detail::int_fits(i, dt), "where", "value ", i, " cannot be converted to ",
             dtype_name(dt), " without overflow");
  else
    detail::check_fill_value("where", s.to_double(), dt);
}
}  // namespace

Tensor threshold_backward(const Tensor& grad, const Tensor& x) {
  check_operand("threshold_backward", grad);
  check_operand("threshold_backward", x);
  MG_CHECK(is_floating(result_type(grad, x)), "threshold_backward",
           "expected floating-point tensors, got ", dtype_name(grad.dtype()), " (shape ",
           shape_str(grad.shape()), ") and ", dtype_name(x.dtype()), " (shape ",
           shape_str(x.shape()), ")");
  return binary_op("threshold_backward", BinaryOp::ThresholdBackward, grad, x);
}

Tensor& add_(Tensor& s, const Tensor& o) { return inplace_op("add_", BinaryOp::Add, s, o); }
Tensor& sub_(Tensor& s, const Tensor& o) { return inplace_op("sub_", BinaryOp::Sub, s, o); }
Tensor& mul_(Tensor& s, const Tensor& o) { return inplace_op("mul_", BinaryOp::Mul, s, o); }
Tensor& div_(Tensor& s, const Tensor& o) {
  MG_CHECK(is_floating(s.dtype()), "div_", "true division into a ", dtype_name(s.dtype()),
           " tensor is not allowed");
  return inplace_op("div_", BinaryOp::Div, s, o);
}

// An integer Scalar into an integer (or bool) dtype is written from its exact int64 value and
// wraps modulo 2^bits as a cast does (int32_tensor + 2^40, as PyTorch's); everything else goes
// through double.
namespace {
// A float operand beyond float32's range is +-inf in float32, as PyTorch's `x * 1e300` (a plain
// conversion would be undefined, and fill_'s check, right for full and fill_, would refuse it).
double operand_value(double v, DType t) {
  if (t == DType::Float32 && std::isfinite(v) && std::fabs(v) > std::numeric_limits<float>::max())
    return std::copysign(std::numeric_limits<double>::infinity(), v);
  return v;
}
}  // namespace

Tensor scalar_tensor(const Scalar& s, DType dtype) {
  Tensor t = Tensor::empty({}, dtype);
  if (s.is_integral() && !is_floating(dtype)) {
    MG_DISPATCH_ALL(dtype, [&] { *t.data_ptr<scalar_t>() = static_cast<scalar_t>(s.to_int64()); });
    return t;
  }
  NoGradGuard g;
  t.fill_(operand_value(s.to_double(), dtype));
  return t;
}

// Note [Scalar constants]: `x * 0.5` multiplies by a 0-d tensor holding 0.5, made for the call
// and filled by a kernel of its own: on the GPU one more launch and block per op (1,824 of the
// 21,217 dispatches of a 32-task Omniglot meta-step), on the CPU a third of the op's host time
// (bench_elementwise BM_MulScalarTinyOverhead). The learning rates and the 1s, 0s and 2s of the
// derivative formulas repeat, so each thread keeps the constants it made, keyed by device,
// stream (on the GPU the constant's fill is queued on its stream, so only that stream's later
// ops may read it without a wait), dtype and the value's bits (so -0.0 and 0.0, or two NaNs,
// stay apart). Nothing writes a constant: the ops take it as a read-only operand, and an
// autograd node that saves it reads it back unchanged. The cache is small and bounded; the
// public scalar_like still makes a fresh tensor, since its caller owns the result.
Tensor detail::scalar_operand(const Tensor& like, const Scalar& s) {
  MG_CHECK(like.defined(), "scalar", "got an undefined tensor");
  struct Key {
    Device device;
    void* stream;
    DType dtype;
    uint64_t bits;
    bool operator==(const Key& o) const {
      return device == o.device && stream == o.stream && dtype == o.dtype && bits == o.bits;
    }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      uint64_t h = k.bits * 0x9E3779B97F4A7C15ull;
      h ^= reinterpret_cast<uintptr_t>(k.stream) + (static_cast<uint64_t>(k.dtype) << 8) +
           (static_cast<uint64_t>(k.device.index + 1) << 16) + (k.device.is_cuda() ? 1u : 0u);
      return static_cast<size_t>(h ^ (h >> 29));
    }
  };
  constexpr size_t kMaxConstants = 256;  // per thread; past it the cache starts over
  thread_local std::unordered_map<Key, Tensor, KeyHash> constants;

  const double v = s.to_double();
  Key key{like.device(), nullptr, result_type(like, s), 0};
  // An integer keys by its exact value (2^53 and 2^53 + 1 are one double), with the dtype:
  // an integer scalar never gives a float constant of the same bits (result_type promotes
  // int scalars to a tensor's float dtype, so those key by the double).
  if (s.is_integral() && !is_floating(key.dtype))
    key.bits = static_cast<uint64_t>(s.to_int64());
  else
    std::memcpy(&key.bits, &v, sizeof v);
  if (key.device.is_cuda()) key.stream = cuda::current_stream_handle(key.device.index);
  if (auto it = constants.find(key); it != constants.end()) return it->second;
  if (constants.size() >= kMaxConstants) constants.clear();
  Tensor t = scalar_like(like, s);
  constants.emplace(key, t);
  return t;
}

Tensor scalar_like(const Tensor& t, const Scalar& s) {
  MG_CHECK(t.defined(), "scalar", "got an undefined tensor");
  const DType rt = result_type(t, s);
  // Integers a double holds exactly and the dtype holds as they are can be filled on the GPU;
  // the others are made exactly on the host and copied over.
  const int64_t i = s.to_int64();
  const bool exact_fill =
      !s.is_integral() || is_floating(rt) || rt == DType::Bool ||
      (detail::int_fits(i, rt) && i >= -(int64_t{1} << 53) && i <= (int64_t{1} << 53));
  if (t.device().is_cpu() || !exact_fill) return scalar_tensor(s, rt).to(t.device());
  // On the GPU the scalar is filled in place by a kernel: no host-to-device copy, no wait.
  Tensor out = Tensor::empty({}, TensorOptions().dtype(result_type(t, s)).device(t.device()));
  NoGradGuard g;
  out.fill_(operand_value(s.to_double(), out.dtype()));
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_operand("where", cond);
  check_operand("where", a);
  check_operand("where", b);
  MG_CHECK(cond.dtype() == DType::Bool, "where", "condition must be a bool tensor, got ",
           dtype_name(cond.dtype()));
  const Shape shape =
      broadcast_shapes("where", broadcast_shapes("where", cond.shape(), a.shape()), b.shape());
  const Device dev = detail::common_device("where", {&cond, &a, &b});
  const DType t = result_type(a, b);
  Tensor ac = detail::adopt_device(cast(a, t), dev), bc = detail::adopt_device(cast(b, t), dev);
  const Tensor cc = detail::adopt_device(cond, dev);
  Tensor out = Tensor::empty(shape, a.options().dtype(t).device(dev));
  const Shape sc = detail::broadcast_strides(cc, shape), sa = detail::broadcast_strides(ac, shape),
              sb = detail::broadcast_strides(bc, shape);
  MG_KERNEL(dev, where, t, detail::extent(shape), {out.raw_data(), out.strides().data()},
            {cc.raw_data(), sc.data()}, {ac.raw_data(), sa.data()}, {bc.raw_data(), sb.data()});
  detail::record_op("where", {cond, a, b}, {out});
  return out;
}
Tensor where(const Tensor& c, const Tensor& a, const Scalar& b) {
  if (a.defined()) check_where_scalar(a, b);
  return where(c, a, detail::scalar_operand(a, b));
}
Tensor where(const Tensor& c, const Scalar& a, const Tensor& b) {
  if (b.defined()) check_where_scalar(b, a);
  return where(c, detail::scalar_operand(b, a), b);
}

}  // namespace metagrad
