// Vectorisable elementary functions for the CPU kernels: exp for float32 that GCC vectorises
// (std::exp is a libm call per element), and exp_of<T>, which picks it for float and std::exp
// for double. Shared by the reductions (logsumexp, kernels/cpu/reduce.cpp) and the fused
// softmax (kernels/cpu/softmax.cpp), so that both round alike.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace metagrad::kernels::cpu::vec {

// c ? a : b through integer masks. Written so, the select never stands for a branch around
// floating-point work, which GCC (under the default -ftrapping-math) refuses to if-convert
// and so to vectorise.
inline float select(bool c, float a, float b) {
  const int32_t m = -static_cast<int32_t>(c);
  return std::bit_cast<float>((std::bit_cast<int32_t>(a) & m) | (std::bit_cast<int32_t>(b) & ~m));
}

// An integer that orders like the float x (for non-NaN x): comparing keys cannot trap.
inline int32_t order_key(float x) {
  const int32_t b = std::bit_cast<int32_t>(x);
  return b ^ ((b >> 31) & 0x7fffffff);
}

// exp for float that vectorises (std::exp is a libm call per element). Cephes' expf:
// x = n ln2 + r with |r| <= ln2 / 2, a polynomial for e^r (relative error within 1.5 ulp over
// the whole range), times 2^n built from its bits in two halves, so that n from -150
// (subnormal results) to 128 stays in range. Overflow gives +inf, NaN stays NaN.
inline float exp_f32(float x) {
  constexpr float lo = -104.0f, hi = 88.72283935546875f;  // e^lo rounds to 0, e^hi ~ FLT_MAX
  const bool nan = (std::bit_cast<int32_t>(x) & 0x7fffffff) > 0x7f800000;
  const int32_t k = order_key(x);
  const bool under = k < order_key(lo);
  const bool over = k > order_key(hi);
  const float xc = select(nan || under, lo, select(over, hi, x));
  const float t = xc * 1.44269504088896341f;  // log2(e)
  const float half =
      std::bit_cast<float>(std::bit_cast<int32_t>(0.5f) | (std::bit_cast<int32_t>(t) & INT32_MIN));
  const int32_t n = static_cast<int32_t>(t + half);  // round half away from zero
  const float fn = static_cast<float>(n);
  const float r = (xc - fn * 0.693359375f) - fn * -2.12194440e-4f;  // ln2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t h = n / 2;
  const float y =
      p * std::bit_cast<float>((h + 127) << 23) * std::bit_cast<float>((n - h + 127) << 23);
  return select(nan, x, select(over, std::numeric_limits<float>::infinity(), y));
}

template <typename T>
inline T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return exp_f32(x);
  } else {
    return std::exp(x);
  }
}

}  // namespace metagrad::kernels::cpu::vec
