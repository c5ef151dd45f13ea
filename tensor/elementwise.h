// Elementwise ops: unary math, binary arithmetic and comparisons with NumPy broadcasting and
// PyTorch type promotion, where, clamp, and the operators. Kernels: kernels/cpu/{unary,
// binary,ternary}.cpp over the functors in kernels/functors.h.
#pragma once
#include <optional>

#include "tensor/scalar.h"
#include "tensor/tensor.h"

namespace metagrad {

// ---- unary (integer inputs of the float-only ones are promoted to float32) ------------
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);
Tensor expm1(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tan(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor reciprocal(const Tensor& x);
Tensor square(const Tensor& x);
Tensor floor(const Tensor& x);
Tensor ceil(const Tensor& x);
Tensor round(const Tensor& x);  // half to even, as torch.round
Tensor trunc(const Tensor& x);
Tensor erf(const Tensor& x);
Tensor logical_not(const Tensor& x);  // -> bool

Tensor pow(const Tensor& x, const Scalar& exponent);
Tensor pow(const Tensor& x, const Tensor& exponent);
Tensor pow(const Scalar& base, const Tensor& exponent);
// Bounds left out are open; NaN stays NaN.
Tensor clamp(const Tensor& x, std::optional<Scalar> min, std::optional<Scalar> max);
Tensor clamp_min(const Tensor& x, const Scalar& min);
Tensor clamp_max(const Tensor& x, const Scalar& max);

// ---- binary ------------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);  // true division: ints give float32
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor fmod(const Tensor& a, const Tensor& b);
// Integer fmod by 0 is an error (PyTorch's ZeroDivisionError); a scalar divisor is checked on
// the host.
Tensor fmod(const Tensor& a, const Scalar& b);
Tensor fmod(const Scalar& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_xor(const Tensor& a, const Tensor& b);
// ReLU's backward in one pass: grad where x > 0, else 0 (broadcast as a binary op; floating
// point only). An op with a derivative of its own (DESIGN principle 3).
Tensor threshold_backward(const Tensor& grad, const Tensor& x);

// A scalar operand becomes a 0-d tensor of the promoted type (see type_promotion.h).
Tensor scalar_tensor(const Scalar& s, DType dtype);
Tensor scalar_like(const Tensor& t, const Scalar& s);  // 0-d tensor, dtype result_type(t, s)
namespace detail {
// What an op with a Scalar operand computes with: scalar_like's value, but shared and never to
// be written (Note [Scalar constants] in tensor/elementwise.cpp).
Tensor scalar_operand(const Tensor& like, const Scalar& s);
}  // namespace detail
#define MG_SCALAR_OVERLOADS(name)                                                \
  inline Tensor name(const Tensor& a, const Scalar& b) {                         \
    return name(a, detail::scalar_operand(a, b));                                \
  }                                                                              \
  inline Tensor name(const Scalar& a, const Tensor& b) {                         \
    return name(detail::scalar_operand(b, a), b);                                \
  }
MG_SCALAR_OVERLOADS(add)
MG_SCALAR_OVERLOADS(sub)
MG_SCALAR_OVERLOADS(mul)
MG_SCALAR_OVERLOADS(div)
MG_SCALAR_OVERLOADS(maximum)
MG_SCALAR_OVERLOADS(minimum)
MG_SCALAR_OVERLOADS(eq)
MG_SCALAR_OVERLOADS(ne)
MG_SCALAR_OVERLOADS(lt)
MG_SCALAR_OVERLOADS(le)
MG_SCALAR_OVERLOADS(gt)
MG_SCALAR_OVERLOADS(ge)
#undef MG_SCALAR_OVERLOADS

// cond ? a : b, all three broadcast together; cond must be bool.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Scalar& b);
Tensor where(const Tensor& cond, const Scalar& a, const Tensor& b);

// ---- in place: the result is cast to self's dtype and broadcast to self's shape ------
Tensor& add_(Tensor& self, const Tensor& other);
Tensor& sub_(Tensor& self, const Tensor& other);
Tensor& mul_(Tensor& self, const Tensor& other);
Tensor& div_(Tensor& self, const Tensor& other);

// ---- operators -----------------------------------------------------------------
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, const Scalar& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Scalar& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Scalar& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Scalar& b) { return div(a, b); }
inline Tensor operator+(const Scalar& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Scalar& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Scalar& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Scalar& a, const Tensor& b) { return div(a, b); }
inline Tensor& operator+=(Tensor& a, const Tensor& b) { return add_(a, b); }
inline Tensor& operator-=(Tensor& a, const Tensor& b) { return sub_(a, b); }
inline Tensor& operator*=(Tensor& a, const Tensor& b) { return mul_(a, b); }
inline Tensor& operator/=(Tensor& a, const Tensor& b) { return div_(a, b); }
inline Tensor& operator+=(Tensor& a, const Scalar& b) { return add_(a, detail::scalar_operand(a, b)); }
inline Tensor& operator-=(Tensor& a, const Scalar& b) { return sub_(a, detail::scalar_operand(a, b)); }
inline Tensor& operator*=(Tensor& a, const Scalar& b) { return mul_(a, detail::scalar_operand(a, b)); }
inline Tensor& operator/=(Tensor& a, const Scalar& b) { return div_(a, detail::scalar_operand(a, b)); }
// Comparison operators return bool tensors, as in PyTorch.
inline Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
inline Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
inline Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
inline Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
inline Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
inline Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
inline Tensor operator==(const Tensor& a, const Scalar& b) { return eq(a, b); }
inline Tensor operator!=(const Tensor& a, const Scalar& b) { return ne(a, b); }
inline Tensor operator<(const Tensor& a, const Scalar& b) { return lt(a, b); }
inline Tensor operator<=(const Tensor& a, const Scalar& b) { return le(a, b); }
inline Tensor operator>(const Tensor& a, const Scalar& b) { return gt(a, b); }
inline Tensor operator>=(const Tensor& a, const Scalar& b) { return ge(a, b); }

}  // namespace metagrad
