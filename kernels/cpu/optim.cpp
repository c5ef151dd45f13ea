// Fused SGD and Adam/AdamW updates (see kernels/cpu/optim.h).
#include "kernels/cpu/optim.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/loops.h"

namespace metagrad::kernels::cpu {

namespace {

template <typename T>
void sgd_loop(int64_t n, T* p, const T* g, T* buf, const SGDStepArgs& a) {
  const T lr = static_cast<T>(a.lr), mom = static_cast<T>(a.momentum);
  const T wd = static_cast<T>(a.weight_decay), keep = static_cast<T>(1 - a.dampening);
  const bool use_wd = a.weight_decay != 0, use_mom = a.momentum != 0;
  const bool first = a.first_step, nesterov = a.nesterov;
  parallel_for(n, n >= kParallelGrain, [&](int64_t i) {
    T d = g[i];
    if (use_wd) d = d + p[i] * wd;
    if (use_mom) {
      const T b = first ? d : buf[i] * mom + d * keep;
      buf[i] = b;
      d = nesterov ? d + b * mom : b;
    }
    p[i] = p[i] - d * lr;
  });
}

template <typename T>
void adam_loop(int64_t n, T* p, const T* g, T* m, T* v, T* vmax, const AdamStepArgs& a) {
  const T b1 = static_cast<T>(a.beta1), b2 = static_cast<T>(a.beta2);
  const T one_b1 = static_cast<T>(1 - a.beta1), one_b2 = static_cast<T>(1 - a.beta2);
  const T wd = static_cast<T>(a.weight_decay), decay = static_cast<T>(1 - a.lr * a.weight_decay);
  const T eps = static_cast<T>(a.eps), step_size = static_cast<T>(a.step_size);
  const T bc2 = static_cast<T>(a.bias_correction2_sqrt);
  const bool use_wd = a.weight_decay != 0, decoupled = a.decoupled, amsgrad = a.amsgrad;
  parallel_for(n, n >= kParallelGrain, [&](int64_t i) {
    T d = g[i];
    T pi = p[i];
    if (use_wd) {
      if (decoupled)
        pi = pi * decay;
      else
        d = d + pi * wd;
    }
    const T mi = m[i] * b1 + d * one_b1;
    const T vi = v[i] * b2 + d * d * one_b2;
    m[i] = mi;
    v[i] = vi;
    T second = vi;
    if (amsgrad) {
      second = std::max(vmax[i], vi);
      vmax[i] = second;
    }
    const T denom = std::sqrt(second) / bc2 + eps;
    p[i] = pi - mi / denom * step_size;
  });
}

}  // namespace

void sgd_step(DType dtype, int64_t n, void* p, const void* g, void* buf, const SGDStepArgs& a) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    sgd_loop<scalar_t>(n, static_cast<scalar_t*>(p), static_cast<const scalar_t*>(g),
                       static_cast<scalar_t*>(buf), a);
  });
}

void adam_step(DType dtype, int64_t n, void* p, const void* g, void* m, void* v, void* vmax,
               const AdamStepArgs& a) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    adam_loop<scalar_t>(n, static_cast<scalar_t*>(p), static_cast<const scalar_t*>(g),
                        static_cast<scalar_t*>(m), static_cast<scalar_t*>(v),
                        static_cast<scalar_t*>(vmax), a);
  });
}

void sgd_step_multi(DType dtype, int count, const int64_t* n, void* const* p, const void* const* g,
                    void* const* buf, const SGDStepArgs& a) {
  for (int k = 0; k < count; ++k) sgd_step(dtype, n[k], p[k], g[k], buf ? buf[k] : nullptr, a);
}

void adam_step_multi(DType dtype, int count, const int64_t* n, void* const* p, const void* const* g,
                     void* const* m, void* const* v, void* const* vmax, const AdamStepArgs& a) {
  for (int k = 0; k < count; ++k)
    adam_step(dtype, n[k], p[k], g[k], m[k], v[k], vmax ? vmax[k] : nullptr, a);
}

}  // namespace metagrad::kernels::cpu
