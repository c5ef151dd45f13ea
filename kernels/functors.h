// Scalar math, written once for the CPU loops and the CUDA kernels (DESIGN principle 6).
// Every functor is a plain struct whose call operator is __host__ __device__; a kernel
// instantiates its loop with the functor and the scalar type. Parameters (a clamp's bounds,
// a power's exponent) are members, so a functor travels by value into a CUDA kernel.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/strided.h"

namespace metagrad::kernels {

enum class UnaryOp : uint8_t {
  Neg, Abs, Sign, Exp, Log, Log1p, Expm1, Sqrt, Rsqrt, Sin, Cos, Tan, Tanh, Sigmoid, Relu,
  Reciprocal, Square, Floor, Ceil, Round, Trunc, Erf,
  PowScalar,   // x ** p0
  Clamp,       // min(max(x, p0), p1)
};

enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum, Fmod,
  ThresholdBackward,                    // a where b > 0, else 0: ReLU's backward (g, x)
  Eq, Ne, Lt, Le, Gt, Ge,               // -> bool
  LogicalAnd, LogicalOr, LogicalXor,    // -> bool
};

constexpr bool binary_returns_bool(BinaryOp op) { return op >= BinaryOp::Eq; }

// Ops defined only for floating types: the tensor layer promotes integer inputs first.
constexpr bool unary_needs_float(UnaryOp op) {
  return op != UnaryOp::Neg && op != UnaryOp::Abs && op != UnaryOp::Sign &&
         op != UnaryOp::Relu && op != UnaryOp::Square && op != UnaryOp::PowScalar &&
         op != UnaryOp::Clamp && op != UnaryOp::Floor && op != UnaryOp::Ceil &&
         op != UnaryOp::Round && op != UnaryOp::Trunc;
}

namespace fn {

// The unsigned branch gives the same values; it spares nvcc's "pointless comparison" warning.
template <typename T> MG_HD inline T sign(T x) {
  if constexpr (std::is_unsigned_v<T>) return T(x != T(0));
  else return T((T(0) < x) - (x < T(0)));
}

// Note [Integer overflow wraps]: integer +, -, * and negation wrap modulo 2^bits, as PyTorch's
// do. Signed overflow is undefined in C++ (UBSan stops on it, and the optimiser may assume it
// never happens), so int32 and int64 arithmetic runs in the unsigned type of the same width,
// whose overflow is defined; the conversion back is modular since C++20. Narrower types are
// promoted to int by C++ before the arithmetic, where they cannot overflow; floating types are
// left alone (W<T> is T).
template <typename T, bool = std::is_integral_v<T> && std::is_signed_v<T> &&
                              sizeof(T) >= sizeof(int)>
struct Wrapping {
  using type = T;
};
template <typename T>
struct Wrapping<T, true> {
  using type = std::make_unsigned_t<T>;
};
template <typename T>
using W = typename Wrapping<T>::type;
template <typename T> MG_HD inline T wrap_add(T a, T b) { return T(W<T>(a) + W<T>(b)); }
template <typename T> MG_HD inline T wrap_sub(T a, T b) { return T(W<T>(a) - W<T>(b)); }
template <typename T> MG_HD inline T wrap_mul(T a, T b) { return T(W<T>(a) * W<T>(b)); }
template <typename T> MG_HD inline T wrap_neg(T x) {
  if constexpr (std::is_floating_point_v<T>) return -x;
  else return T(W<T>(0) - W<T>(x));
}

// A double parameter (a clamp bound, an integer power's exponent) as integer type T: values
// beyond T's range (infinities included) saturate to its ends, NaN gives 0; converting them
// directly would be undefined.
template <typename T>
MG_HD inline T saturate(double v) {
  if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, bool>) {
    return T(v);
  } else {
    constexpr double lo = static_cast<double>(std::numeric_limits<T>::min());
    constexpr double hi = static_cast<double>(std::numeric_limits<T>::max());  // may round up
    if (v != v) return T(0);
    if (v <= lo) return std::numeric_limits<T>::min();
    if (v >= hi) return std::numeric_limits<T>::max();
    return T(v);
  }
}

// `T` is the compute type. For floating types the C math library does the work.
template <UnaryOp Op>
struct Unary {
  double p0 = 0, p1 = 0;
  template <typename T>
  MG_HD T operator()(T x) const {
    using std::abs;
    if constexpr (Op == UnaryOp::Neg) return wrap_neg(x);  // Note [Integer overflow wraps]
    else if constexpr (Op == UnaryOp::Abs) {
      // fabs for floats: abs(-0.0) is +0.0 (a comparison would keep the sign bit).
      if constexpr (std::is_unsigned_v<T>) return x;
      else if constexpr (std::is_floating_point_v<T>) return std::fabs(x);
      else return x < T(0) ? wrap_neg(x) : x;
    }
    else if constexpr (Op == UnaryOp::Sign) return sign(x);
    else if constexpr (Op == UnaryOp::Exp) return std::exp(x);
    else if constexpr (Op == UnaryOp::Log) return std::log(x);
    else if constexpr (Op == UnaryOp::Log1p) return std::log1p(x);
    else if constexpr (Op == UnaryOp::Expm1) return std::expm1(x);
    else if constexpr (Op == UnaryOp::Sqrt) return std::sqrt(x);
    else if constexpr (Op == UnaryOp::Rsqrt) return T(1) / std::sqrt(x);
    else if constexpr (Op == UnaryOp::Sin) return std::sin(x);
    else if constexpr (Op == UnaryOp::Cos) return std::cos(x);
    else if constexpr (Op == UnaryOp::Tan) return std::tan(x);
    else if constexpr (Op == UnaryOp::Tanh) return std::tanh(x);
    else if constexpr (Op == UnaryOp::Sigmoid) {
      // Two branches so that exp never overflows: for x < 0, e^x / (1 + e^x).
      if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
      T e = std::exp(x);
      return e / (T(1) + e);
    }
    // NaN propagates (x != x), as PyTorch's relu.
    else if constexpr (Op == UnaryOp::Relu) return x > T(0) || x != x ? x : T(0);
    else if constexpr (Op == UnaryOp::Reciprocal) return T(1) / x;
    else if constexpr (Op == UnaryOp::Square) return wrap_mul(x, x);
    else if constexpr (Op == UnaryOp::Floor) {
      // An integer is its own floor; through a double, int64 beyond 2^53 would round.
      if constexpr (std::is_integral_v<T>) return x; else return std::floor(x);
    }
    else if constexpr (Op == UnaryOp::Ceil) {
      if constexpr (std::is_integral_v<T>) return x; else return std::ceil(x);
    }
    else if constexpr (Op == UnaryOp::Round) {
      if constexpr (std::is_integral_v<T>) return x; else return std::nearbyint(x);  // half to even
    }
    else if constexpr (Op == UnaryOp::Trunc) {
      if constexpr (std::is_integral_v<T>) return x; else return std::trunc(x);
    }
    else if constexpr (Op == UnaryOp::Erf) return std::erf(x);
    else if constexpr (Op == UnaryOp::PowScalar) {
      if constexpr (std::is_floating_point_v<T>) return std::pow(x, T(p0));
      else return int_pow(x, saturate<int64_t>(p0));
    }
    else if constexpr (Op == UnaryOp::Clamp) {
      T lo = saturate<T>(p0), hi = saturate<T>(p1);
      // NaN propagates, as in PyTorch.
      // A NaN bound gives NaN, as PyTorch's (a missing bound is an infinite one).
      if constexpr (std::is_floating_point_v<T>) {
        if (x != x) return x;
        if (lo != lo) return lo;
        if (hi != hi) return hi;
      }
      // min(max(x, lo), hi): with lo > hi everything becomes hi, as in PyTorch.
      const T m = x < lo ? lo : x;
      return m > hi ? hi : m;
    }
  }

  template <typename T>
  MG_HD static T int_pow(T base, int64_t e) {
    // Integer x ** negative e (a tensor exponent; a scalar one the tensor layer refuses): 1 / x^|e|
    // truncated, as PyTorch's: 1 for x = 1, +-1 for x = -1, else 0.
    if (e < 0) {
      if constexpr (std::is_signed_v<T>)
        if (base == T(-1)) return (e & 1) ? T(-1) : T(1);
      return base == T(1) ? T(1) : T(0);
    }
    T r = T(1);
    while (e) { if (e & 1) r = wrap_mul(r, base); base = wrap_mul(base, base); e >>= 1; }
    return r;
  }
};

template <BinaryOp Op>
struct Binary {
  // Comparisons and logical ops return bool; everything else the compute type.
  template <typename T>
  MG_HD auto operator()(T a, T b) const {
    if constexpr (Op == BinaryOp::Add) return wrap_add(a, b);  // Note [Integer overflow wraps]
    else if constexpr (Op == BinaryOp::Sub) return wrap_sub(a, b);
    else if constexpr (Op == BinaryOp::Mul) return wrap_mul(a, b);
    else if constexpr (Op == BinaryOp::Div) return T(a / b);  // the tensor layer keeps ints out
    else if constexpr (Op == BinaryOp::Pow) {
      if constexpr (std::is_floating_point_v<T>) return T(std::pow(a, b));
      else return Unary<UnaryOp::PowScalar>::int_pow(a, static_cast<int64_t>(b));
    }
    else if constexpr (Op == BinaryOp::Maximum) {
      if constexpr (std::is_floating_point_v<T>) if (a != a || b != b) return T(a + b);  // NaN
      return a > b ? a : b;
    }
    else if constexpr (Op == BinaryOp::Minimum) {
      if constexpr (std::is_floating_point_v<T>) if (a != a || b != b) return T(a + b);
      return a < b ? a : b;
    }
    else if constexpr (Op == BinaryOp::Fmod) {
      if constexpr (std::is_floating_point_v<T>) return T(std::fmod(a, b));
      // b = -1 leaves no remainder; a % -1 itself is undefined for the most negative a.
      else if constexpr (std::is_signed_v<T>) return T(b == T(0) || b == T(-1) ? T(0) : T(a % b));
      else return T(b == T(0) ? T(0) : T(a % b));
    }
    // One pass instead of where(x > 0, g, 0)'s two and its bool temporary. As PyTorch's
    // threshold_backward (x <= 0 ? 0 : g), a NaN x passes the gradient: relu(NaN) = NaN = x.
    else if constexpr (Op == BinaryOp::ThresholdBackward) return b <= T(0) ? T(0) : a;
    else if constexpr (Op == BinaryOp::Eq) return a == b;
    else if constexpr (Op == BinaryOp::Ne) return a != b;
    else if constexpr (Op == BinaryOp::Lt) return a < b;
    else if constexpr (Op == BinaryOp::Le) return a <= b;
    else if constexpr (Op == BinaryOp::Gt) return a > b;
    else if constexpr (Op == BinaryOp::Ge) return a >= b;
    else if constexpr (Op == BinaryOp::LogicalAnd) return bool(a) && bool(b);
    else if constexpr (Op == BinaryOp::LogicalOr) return bool(a) || bool(b);
    else if constexpr (Op == BinaryOp::LogicalXor) return bool(a) != bool(b);
  }
};

}  // namespace fn

// The list of every unary/binary op, so a dispatcher can switch once and instantiate
// the loop with the matching functor.
#define MG_FOR_EACH_UNARY_OP(X)                                                          \
  X(Neg) X(Abs) X(Sign) X(Exp) X(Log) X(Log1p) X(Expm1) X(Sqrt) X(Rsqrt) X(Sin) X(Cos)   \
  X(Tan) X(Tanh) X(Sigmoid) X(Relu) X(Reciprocal) X(Square) X(Floor) X(Ceil) X(Round)    \
  X(Trunc) X(Erf) X(PowScalar) X(Clamp)

#define MG_FOR_EACH_BINARY_OP(X)                                                         \
  X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Maximum) X(Minimum) X(Fmod) X(ThresholdBackward)  \
  X(Eq) X(Ne) X(Lt) X(Le) X(Gt) X(Ge) X(LogicalAnd) X(LogicalOr) X(LogicalXor)

}  // namespace metagrad::kernels
