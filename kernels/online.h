// One-pass ("online") statistics of a row, as states that a thread extends element by element
// and that merge in any tree: logsumexp's (max, sum of exps) and var's shifted moments. Shared
// by the CUDA softmax and reductions, which read their input once with them, and tested on the
// host like every MG_HD function (DESIGN principle 6).
//
// Note [Online logsumexp]: the state is the largest element m and s = sum exp(x - m) over the
// elements seen (Milakov and Gimelshein 2018). A larger x rescales s by exp(m - x); two states
// merge as m = max(m1, m2), s = s1 exp(m1 - m) + s2 exp(m2 - m), written symmetrically so that
// an xor butterfly leaves every lane the bitwise same state. Special values follow the
// two-pass rule of the CPU (shift by the max, or by 0 where the max is infinite): a row of
// -inf gives s = 0, a row holding +inf gives s = +inf with shift 0, and a NaN anywhere makes s
// NaN. s is kept in double; float32 exps use expf, so float32 results may differ from the
// CPU's (exp_f32, two passes) in the last bits.
//
// Note [Shifted moments]: var needs the sum of squared deviations from the mean, which two
// passes get stably (the mean, then the deviations) at twice the memory traffic. One pass keeps
// n, a shift k (the first element the state saw), s1 = sum (x - k) and s2 = sum (x - k)^2, in
// double; then sum (x - mean)^2 = s2 - s1^2 / n. The cancellation in that difference is about
// (mean - k)^2 / var units of rounding, small because k is one of the row's own elements (the
// naive sum x^2 - (sum x)^2 / n has mean^2 / var instead, hopeless for data far from 0). Two
// states merge by moving the second one's sums to the first one's shift d = k2 - k1:
// sum (y + d) = s1 + n d and sum (y + d)^2 = s2 + 2 d s1 + n d^2, exact algebra, no division.
// An infinite or NaN element makes the result NaN, as two passes do.
#pragma once
#include <cmath>
#include <limits>
#include <type_traits>

#include "kernels/hd.h"

namespace metagrad::kernels::online {

// ---- logsumexp -------------------------------------------------------------------------------

template <typename T>
MG_HD inline T exp_t(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return ::expf(x);
  } else {
    return ::exp(x);
  }
}

template <typename T>
struct LseState {
  T m;       // the largest element seen (-inf: none yet); NaN never enters it
  double s;  // sum of exp(x - m) over the elements seen; NaN once a NaN was seen
};

// exp(v - m) for v <= m in double, 1 where they are equal (also for m = +-inf, which finish()
// overrides), so that no inf - inf makes a NaN out of nothing.
template <typename T>
MG_HD inline double lse_rescale(T v, T m) {
  return v == m ? 1.0 : ::exp(static_cast<double>(v) - static_cast<double>(m));
}

template <typename T>
MG_HD inline LseState<T> lse_init() {
  return {-std::numeric_limits<T>::infinity(), 0.0};
}

template <typename T>
MG_HD inline LseState<T> lse_step(LseState<T> a, T x) {
  if (x > a.m) return {x, a.s * lse_rescale(a.m, x) + 1.0};
  // x <= m, or x NaN (exp(NaN) = NaN then spreads); x == m also when both are infinite
  a.s += x == a.m ? 1.0 : static_cast<double>(exp_t<T>(x - a.m));
  return a;
}

// Symmetric in a and b (max, then a sum of two products), bitwise.
template <typename T>
MG_HD inline LseState<T> lse_merge(LseState<T> a, LseState<T> b) {
  const T m = a.m > b.m ? a.m : b.m;
  return {m, a.s * lse_rescale(a.m, m) + b.s * lse_rescale(b.m, m)};
}

// A row's shift and sum as the CPU's two passes have them: shift 0 where the max is infinite
// (the sum of exp(x) is then +inf, or 0 for a row of -inf); a NaN sum stays NaN.
template <typename T>
struct LseFinal {
  T shift;
  double s;
  double log_s;
  MG_HD double logsumexp() const { return log_s + static_cast<double>(shift); }
};

template <typename T>
MG_HD inline LseFinal<T> lse_finish(LseState<T> a) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  T shift = a.m;
  double s = a.s;
  if (s == s && (a.m == inf || a.m == -inf)) {
    shift = T(0);
    s = a.m > T(0) ? std::numeric_limits<double>::infinity() : 0.0;
  }
  return {shift, s, ::log(s)};
}

// softmax, log_softmax and cross-entropy differ from logsumexp at a +inf max: PyTorch shifts by
// it (inf - inf = NaN), so the whole row is NaN, where logsumexp gives +inf. The CPU's two
// passes get this from shifting by the +inf max (kernels/cpu/softmax.cpp, shift_of).
template <typename T>
MG_HD inline LseFinal<T> softmax_finish(LseState<T> a) {
  if (a.m == std::numeric_limits<T>::infinity()) {
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    return {a.m, nan, nan};
  }
  return lse_finish(a);
}

// ---- variance ---------------------------------------------------------------------------------

struct Moments {
  double n;   // elements seen
  double k;   // the shift: the first element seen (0 while n == 0)
  double s1;  // sum (x - k)
  double s2;  // sum (x - k)^2
};

MG_HD inline Moments moments_init() {
  return {0.0, 0.0, 0.0, 0.0};
}

MG_HD inline Moments moments_step(Moments a, double x) {
  if (a.n == 0.0) a.k = x;
  const double d = x - a.k;
  return {a.n + 1.0, a.k, a.s1 + d, a.s2 + d * d};
}

// The second state's sums moved to the first one's shift (Note [Shifted moments]).
MG_HD inline Moments moments_merge(Moments a, Moments b) {
  if (b.n == 0.0) return a;
  if (a.n == 0.0) return b;
  const double d = b.k - a.k;
  return {a.n + b.n, a.k, a.s1 + (b.s1 + b.n * d), a.s2 + (b.s2 + (2.0 * d * b.s1 + b.n * d * d))};
}

// The sum of squared deviations from the mean: 0 for no element, never negative (rounding
// could take it below 0 for a nearly constant row), NaN when the row held inf or NaN, +inf
// when finite values deviate beyond the double range (|x| ~ 1e154 and up: s2 and s1^2/n both
// overflow and their difference is inf - inf), as the two-pass CPU rule gives.
MG_HD inline double moments_m2(Moments a) {
  if (a.n == 0.0) return 0.0;
  const double m2 = a.s2 - a.s1 * (a.s1 / a.n);
  const bool s1_finite = a.s1 - a.s1 == 0.0;
  if (m2 != m2 && s1_finite) return std::numeric_limits<double>::infinity();
  return m2 < 0.0 ? 0.0 : m2;
}

}  // namespace metagrad::kernels::online
