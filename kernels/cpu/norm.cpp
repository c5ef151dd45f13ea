// The CPU batch-normalisation kernels (kernels/cpu/norm.h): one OpenMP thread per group of
// channels; a channel's values are n rows of `inner` contiguous elements (one HxW plane per
// image), visited row by row so that every inner loop runs over contiguous memory.
//
// Note [Batch-norm statistics]: mean and biased variance per channel in double, in one read of
// the channel from memory. The values are cut into blocks of about kBlock elements (a chunk of
// a long row, or several short rows); within a block, small enough to stay in L1, two passes
// give its mean m_b and M2_b = sum (x - m_b)^2 (no E[x^2] - E[x]^2 cancellation), and blocks
// are merged by Chan et al.'s pairwise update (the parallel form of Welford's algorithm):
//   delta = m_b - m,  n' = n + n_b,  m += delta n_b / n',  M2 += M2_b + delta^2 n n_b / n'.
// Each sum runs kLanes independent accumulators, which the compiler vectorises without
// reassociating anything, as in kernels/cpu/reduce.cpp (Note [Reduction accuracy]).
//
// Note [Batch-norm kernel passes]: forward = the statistics pass over x, then one pass
// y = x * scale + shift with per-channel scale = w invstd, shift = b - mean scale. Backward =
// the forward's statistics (Note [Saved batch-norm statistics] in tensor/norm.h; recomputed
// from x when not given), one pass for sum(g) and sum(g (x - mean)), and one pass
//   gx = k1 g + k2 x + k3   (per-channel k1, k2, k3: Note [Batch-norm backward coefficients] in
//   kernels/norm_math.h).
// A channel of a conv-4 query batch ([75, 64, 28, 28] float32: 235 KB) stays in L2 between the
// passes, so memory sees about one read of each input and one write of each output.
#include "kernels/cpu/norm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/norm_math.h"

namespace metagrad::kernels::cpu {

namespace {

// 32 double lanes = four AVX-512 (eight AVX2) accumulator registers: a sum with one register
// waits on the add latency every 8 elements, which kept the statistics of an L2-resident
// channel at a quarter of the rate the loads allow.
constexpr int kLanes = 32;
constexpr int64_t kBlock = 4096;                     // elements per statistics block
constexpr int64_t kParallelWork = int64_t{1} << 15;  // elements touched before threads pay

bool parallel_over_channels(const BatchNormGeometry& g) {
  return g.c > 1 && g.n * g.c * g.inner >= kParallelWork;
}

// Adds lanes pairwise, in a fixed order (a tree: lane l + lane l + half, halving).
inline double fold(const double (&acc)[kLanes]) {
  double t[kLanes];
  std::copy(acc, acc + kLanes, t);
  for (int half = kLanes / 2; half >= 1; half /= 2)
    for (int l = 0; l < half; ++l) t[l] += t[l + half];
  return t[0];
}

// sum p[i]
template <typename T>
double sum_run(const T* __restrict p, int64_t len) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += static_cast<double>(p[i + l]);
  double tail = 0;
  for (; i < len; ++i) tail += static_cast<double>(p[i]);
  return fold(acc) + tail;
}

// sum (p[i] - m)^2
template <typename T>
double sq_dev_run(const T* __restrict p, int64_t len, double m) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double d = static_cast<double>(p[i + l]) - m;
      acc[l] += d * d;
    }
  double tail = 0;
  for (; i < len; ++i) {
    const double d = static_cast<double>(p[i]) - m;
    tail += d * d;
  }
  return fold(acc) + tail;
}

// *sg += sum g[i], *sgx += sum g[i] (x[i] - m)
template <typename T>
void grad_sums_run(const T* __restrict g, const T* __restrict x, int64_t len, double m, double* sg,
                   double* sgx) {
  double a[kLanes] = {}, b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double gi = static_cast<double>(g[i + l]);
      a[l] += gi;
      b[l] += gi * (static_cast<double>(x[i + l]) - m);
    }
  double ta = 0, tb = 0;
  for (; i < len; ++i) {
    const double gi = static_cast<double>(g[i]);
    ta += gi;
    tb += gi * (static_cast<double>(x[i]) - m);
  }
  *sg += fold(a) + ta;
  *sgx += fold(b) + tb;
}

struct Moments {
  double mean = 0, m2 = 0;  // m2 = sum (x - mean)^2
  double count = 0;
  // Chan et al.'s merge (Note [Batch-norm statistics]).
  void merge(double mean_b, double m2_b, double n_b) {
    const double delta = mean_b - mean, total = count + n_b;
    mean += delta * (n_b / total);
    m2 += m2_b + delta * delta * (count * n_b / total);
    count = total;
  }
};

// Channel k's mean and biased variance (Note [Batch-norm statistics]); x points at the
// channel's first element, rows are `stride` apart.
template <typename T>
Moments channel_moments(const T* x, int64_t rows, int64_t inner, int64_t stride) {
  Moments mo;
  if (inner >= kBlock) {  // chunks of each row
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t off = 0; off < inner; off += kBlock) {
        const T* p = x + r * stride + off;
        const int64_t len = std::min(kBlock, inner - off);
        const double m = sum_run(p, len) / static_cast<double>(len);
        mo.merge(m, sq_dev_run(p, len, m), static_cast<double>(len));
      }
  } else {  // several whole rows per block
    const int64_t per_block = std::max<int64_t>(1, kBlock / inner);
    for (int64_t r0 = 0; r0 < rows; r0 += per_block) {
      const int64_t r1 = std::min(rows, r0 + per_block);
      double s = 0;
      for (int64_t r = r0; r < r1; ++r) s += sum_run(x + r * stride, inner);
      const double n_b = static_cast<double>((r1 - r0) * inner);
      const double m = s / n_b;
      double m2 = 0;
      for (int64_t r = r0; r < r1; ++r) m2 += sq_dev_run(x + r * stride, inner, m);
      mo.merge(m, m2, n_b);
    }
  }
  return mo;
}

template <typename T>
void forward(const BatchNormGeometry& g, const T* x, const T* w, const T* b, T* y, T* mean,
             T* invstd) {
  const int64_t stride = g.c * g.inner;
  parallel_for(g.c, parallel_over_channels(g), [&](int64_t k) {
    const Moments mo = channel_moments(x + k * g.inner, g.n, g.inner, stride);
    const double is = bn_invstd(mo.m2, mo.count, g.eps);
    const BnAffine af = bn_affine(mo.mean, is, w ? static_cast<double>(w[k]) : 1.0,
                                  b ? static_cast<double>(b[k]) : 0.0);
    mean[k] = static_cast<T>(mo.mean);
    invstd[k] = static_cast<T>(is);
    const T sc = static_cast<T>(af.scale), sh = static_cast<T>(af.shift);
    for (int64_t r = 0; r < g.n; ++r) {
      const T* __restrict p = x + r * stride + k * g.inner;
      T* __restrict q = y + r * stride + k * g.inner;
      for (int64_t i = 0; i < g.inner; ++i) q[i] = p[i] * sc + sh;
    }
  });
}

// Note [Batch-norm backward coefficients] (kernels/norm_math.h) gives k1, k2, k3.
template <typename T>
void backward(const BatchNormGeometry& g, const T* gy, const T* x, const BatchNormBackwardArgs& a) {
  const int64_t stride = g.c * g.inner;
  const auto* w = static_cast<const T*>(a.weight);
  const auto* g_mean = static_cast<const T*>(a.grad_mean);
  const auto* g_invstd = static_cast<const T*>(a.grad_invstd);
  auto* gx = static_cast<T*>(a.grad_x);
  auto* gw = static_cast<T*>(a.grad_weight);
  auto* gb = static_cast<T*>(a.grad_bias);
  const auto* saved_mean = static_cast<const T*>(a.saved_mean);
  const auto* saved_invstd = static_cast<const T*>(a.saved_invstd);
  parallel_for(g.c, parallel_over_channels(g), [&](int64_t k) {
    const int64_t at = k * g.inner;
    Moments mo;
    double is;
    if (saved_mean && saved_invstd) {  // the forward's (Note [Saved batch-norm statistics])
      mo.mean = static_cast<double>(saved_mean[k]);
      mo.count = static_cast<double>(g.n * g.inner);
      is = static_cast<double>(saved_invstd[k]);
    } else {
      mo = channel_moments(x + at, g.n, g.inner, stride);
      is = bn_invstd(mo.m2, mo.count, g.eps);
    }
    double sg = 0, sgx = 0;  // sum(g), sum(g (x - mean))
    for (int64_t r = 0; r < g.n; ++r)
      grad_sums_run(gy + r * stride + at, x + r * stride + at, g.inner, mo.mean, &sg, &sgx);
    const double sg_xhat = sgx * is;  // sum(g xhat)
    if (gw) gw[k] = static_cast<T>(sg_xhat);
    if (gb) gb[k] = static_cast<T>(sg);
    if (!gx) return;
    const BnGradCoefficients co = bn_grad_coefficients(
        mo.count, mo.mean, is, sg, sg_xhat, w ? static_cast<double>(w[k]) : 1.0,
        g_mean ? static_cast<double>(g_mean[k]) : 0.0,
        g_invstd ? static_cast<double>(g_invstd[k]) : 0.0);
    const T c1 = static_cast<T>(co.k1), c2 = static_cast<T>(co.k2), c3 = static_cast<T>(co.k3);
    for (int64_t r = 0; r < g.n; ++r) {
      const T* __restrict gp = gy + r * stride + at;
      const T* __restrict xp = x + r * stride + at;
      T* __restrict q = gx + r * stride + at;
      for (int64_t i = 0; i < g.inner; ++i) q[i] = gp[i] * c1 + xp[i] * c2 + c3;
    }
  });
}

}  // namespace

void batch_norm_forward(DType dtype, const BatchNormGeometry& g, const void* x, const void* weight,
                        const void* bias, void* y, void* mean, void* invstd) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    forward<scalar_t>(g, static_cast<const scalar_t*>(x), static_cast<const scalar_t*>(weight),
                      static_cast<const scalar_t*>(bias), static_cast<scalar_t*>(y),
                      static_cast<scalar_t*>(mean), static_cast<scalar_t*>(invstd));
  });
}

void batch_norm_backward(DType dtype, const BatchNormGeometry& g, const void* grad_y, const void* x,
                         const BatchNormBackwardArgs& a) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    backward<scalar_t>(g, static_cast<const scalar_t*>(grad_y), static_cast<const scalar_t*>(x), a);
  });
}

}  // namespace metagrad::kernels::cpu
