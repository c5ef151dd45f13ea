// The per-channel scalar math of the fused batch norm, written once for the CPU kernels
// (kernels/cpu/norm.cpp) and the CUDA kernels (kernels/cuda/norm.cu), as DESIGN principle 6
// asks: both backends differ only in how they walk the channel and reduce its sums. All in
// double; the kernels round the results to the tensor's dtype once.
#pragma once
#include <cmath>

#include "kernels/hd.h"

namespace metagrad::kernels {

// 1 / sqrt(var + eps), var = m2 / count the biased variance.
MG_HD inline double bn_invstd(double m2, double count, double eps) {
  return 1.0 / std::sqrt(m2 / count + eps);
}

// y = x * scale + shift: scale = invstd * w, shift = b - mean * scale (the order of the
// composed twin in nn/functional/norm.cpp's eval path), w = 1 and b = 0 when absent.
struct BnAffine {
  double scale, shift;
};
MG_HD inline BnAffine bn_affine(double mean, double invstd, double w, double b) {
  const double scale = invstd * w;
  return {scale, b - mean * scale};
}

// Note [Batch-norm backward coefficients]: with M values per channel, xhat = (x - mean) invstd
// and y = w xhat + b, the gradient of <g, y> + <g_mean, mean> + <g_invstd, invstd> is
//   dx = w invstd (g - sum(g) / M - xhat sum(g xhat) / M)        (through y)
//        + g_mean / M                                              (d mean / dx = 1 / M)
//        - g_invstd invstd^3 (x - mean) / M                        (d invstd / dx, below)
//   dw = sum(g xhat),  db = sum(g)
// since d var / dx = 2 (x - mean) / M and d (var + eps)^(-1/2) = -invstd^3 d var / 2. Per
// channel that is dx = k1 g + k2 (x - mean) + k0 = k1 g + k2 x + k3 with
//   k1 = w invstd,  k2 = -(k1 invstd sum(g xhat) + g_invstd invstd^3) / M,
//   k0 = (g_mean - k1 sum(g)) / M,  k3 = k0 - k2 mean.
struct BnGradCoefficients {
  double k1, k2, k3;
};
MG_HD inline BnGradCoefficients bn_grad_coefficients(double count, double mean, double invstd,
                                                     double sum_g, double sum_g_xhat, double w,
                                                     double g_mean, double g_invstd) {
  const double k1 = w * invstd;
  const double k2 = -(k1 * invstd * sum_g_xhat + g_invstd * invstd * invstd * invstd) / count;
  const double k3 = (g_mean - k1 * sum_g) / count - k2 * mean;
  return {k1, k2, k3};
}

}  // namespace metagrad::kernels
