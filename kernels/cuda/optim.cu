// Fused SGD and Adam/AdamW updates on the GPU: the twin of kernels/cpu/optim.cpp, one thread
// per element, and the multi-tensor variants (Note [Multi-tensor tables]) that update many
// tensors in one launch, which the optimizers use.
//
// Note [Bit-identical optimizer updates]: each element gets exactly the CPU's arithmetic, in
// the same order and in the parameter's dtype, with every scalar cast to that dtype on the
// host by the same expression as the CPU. nvcc contracts a * b + c into one FMA (one rounding
// instead of the CPU's two, which the CPU build never contracts), so every operation below is
// written with a correctly rounded intrinsic that nvcc never fuses (__fmul_rn, __fadd_rn,
// __fsub_rn, __fdiv_rn, __fsqrt_rn and their double twins); they also keep IEEE division and
// square root should the build ever turn on fast math. std::max(a, b) is (a < b ? b : a),
// NaN and signed-zero behaviour included, so amsgrad's maximum is written that way, not fmax.
#include <cstdint>

#include "kernels/args.h"
#include "kernels/cuda/common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "kernels/error.h"

namespace metagrad::kernels::cuda {

namespace {

using metagrad::cuda::grid_for;
using metagrad::cuda::kThreads;
using metagrad::cuda::stream;

// ---- correctly rounded, never contracted (Note [Bit-identical optimizer updates]) -------
__device__ __forceinline__ float mul(float a, float b) {
  return __fmul_rn(a, b);
}
__device__ __forceinline__ float add(float a, float b) {
  return __fadd_rn(a, b);
}
__device__ __forceinline__ float sub(float a, float b) {
  return __fsub_rn(a, b);
}
__device__ __forceinline__ float div(float a, float b) {
  return __fdiv_rn(a, b);
}
__device__ __forceinline__ float sqrt_rn(float a) {
  return __fsqrt_rn(a);
}
__device__ __forceinline__ double mul(double a, double b) {
  return __dmul_rn(a, b);
}
__device__ __forceinline__ double add(double a, double b) {
  return __dadd_rn(a, b);
}
__device__ __forceinline__ double sub(double a, double b) {
  return __dsub_rn(a, b);
}
__device__ __forceinline__ double div(double a, double b) {
  return __ddiv_rn(a, b);
}
__device__ __forceinline__ double sqrt_rn(double a) {
  return __dsqrt_rn(a);
}

// ---- SGD ------------------------------------------------------------------------------

// The update's scalars in T, computed on the host by the CPU's expressions.
template <typename T>
struct SGDConsts {
  T lr, mom, wd, keep;
  bool use_wd, use_mom, first, nesterov;
};

template <typename T>
SGDConsts<T> sgd_consts(const SGDStepArgs& a) {
  return SGDConsts<T>{static_cast<T>(a.lr),
                      static_cast<T>(a.momentum),
                      static_cast<T>(a.weight_decay),
                      static_cast<T>(1 - a.dampening),
                      a.weight_decay != 0,
                      a.momentum != 0,
                      a.first_step,
                      a.nesterov};
}

// Element i, as the body of the CPU's sgd_loop.
template <typename T>
__device__ __forceinline__ void sgd_elem(int64_t i, T* p, const T* g, T* buf,
                                         const SGDConsts<T>& c) {
  T d = g[i];
  if (c.use_wd) d = add(d, mul(p[i], c.wd));
  if (c.use_mom) {
    const T b = c.first ? d : add(mul(buf[i], c.mom), mul(d, c.keep));
    buf[i] = b;
    d = c.nesterov ? add(d, mul(b, c.mom)) : b;
  }
  p[i] = sub(p[i], mul(d, c.lr));
}

template <typename T>
__global__ void sgd_kernel(int64_t n, T* p, const T* g, T* buf, const SGDConsts<T> c) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    sgd_elem(i, p, g, buf, c);
}

// ---- Adam / AdamW ---------------------------------------------------------------------

template <typename T>
struct AdamConsts {
  T b1, b2, one_b1, one_b2, wd, decay, eps, step_size, bc2;
  bool use_wd, decoupled, amsgrad;
};

template <typename T>
AdamConsts<T> adam_consts(const AdamStepArgs& a) {
  return AdamConsts<T>{static_cast<T>(a.beta1),
                       static_cast<T>(a.beta2),
                       static_cast<T>(1 - a.beta1),
                       static_cast<T>(1 - a.beta2),
                       static_cast<T>(a.weight_decay),
                       static_cast<T>(1 - a.lr * a.weight_decay),
                       static_cast<T>(a.eps),
                       static_cast<T>(a.step_size),
                       static_cast<T>(a.bias_correction2_sqrt),
                       a.weight_decay != 0,
                       a.decoupled,
                       a.amsgrad};
}

// Element i, as the body of the CPU's adam_loop.
template <typename T>
__device__ __forceinline__ void adam_elem(int64_t i, T* p, const T* g, T* m, T* v, T* vmax,
                                          const AdamConsts<T>& c) {
  T d = g[i];
  T pi = p[i];
  if (c.use_wd) {
    if (c.decoupled)
      pi = mul(pi, c.decay);
    else
      d = add(d, mul(pi, c.wd));
  }
  const T mi = add(mul(m[i], c.b1), mul(d, c.one_b1));
  const T vi = add(mul(v[i], c.b2), mul(mul(d, d), c.one_b2));
  m[i] = mi;
  v[i] = vi;
  T second = vi;
  if (c.amsgrad) {
    const T old = vmax[i];
    second = old < vi ? vi : old;  // std::max(old, vi), NaN rules included
    vmax[i] = second;
  }
  const T denom = add(div(sqrt_rn(second), c.bc2), c.eps);
  p[i] = sub(pi, mul(div(mi, denom), c.step_size));
}

template <typename T>
__global__ void adam_kernel(int64_t n, T* p, const T* g, T* m, T* v, T* vmax,
                            const AdamConsts<T> c) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    adam_elem(i, p, g, m, v, vmax, c);
}

// ---- multi-tensor ---------------------------------------------------------------------

// Tensors per launch: the table of pointers travels as a kernel parameter, which must stay
// under the classic 4 KB limit; longer lists are split into several launches.
constexpr int kMultiTensorChunk = 64;

// Note [Multi-tensor tables]: the tensors of one launch are laid end to end in one flat index
// space: tensor k covers [start[k], start[k + 1]). The table travels as a __grid_constant__
// kernel parameter (no copy to device memory, no host buffer to keep alive, read through the
// constant cache) and must fit the classic 4 KB parameter limit. A thread's indices grow along
// its grid-stride loop, so it finds each index's tensor by stepping its cursor k forward:
// at most `count` steps in all, and empty tensors (start[k] == start[k + 1]) are skipped.

template <typename T>
struct SGDTable {
  int count;
  int64_t start[kMultiTensorChunk + 1];
  T* p[kMultiTensorChunk];
  const T* g[kMultiTensorChunk];
  T* buf[kMultiTensorChunk];
};

template <typename T>
struct AdamTable {
  int count;
  int64_t start[kMultiTensorChunk + 1];
  T* p[kMultiTensorChunk];
  const T* g[kMultiTensorChunk];
  T* m[kMultiTensorChunk];
  T* v[kMultiTensorChunk];
  T* vmax[kMultiTensorChunk];
};

// Kernel parameters beyond 4 KB need CUDA 12.1 and Volta or later; stay portable.
static_assert(sizeof(AdamTable<double>) + sizeof(AdamConsts<double>) <= 4000,
              "multi-tensor table exceeds the 4 KB kernel parameter limit");
static_assert(sizeof(SGDTable<double>) + sizeof(SGDConsts<double>) <= 4000,
              "multi-tensor table exceeds the 4 KB kernel parameter limit");

template <typename T>
__global__ void sgd_multi_kernel(const __grid_constant__ SGDTable<T> t, const SGDConsts<T> c) {
  const int64_t total = t.start[t.count];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int k = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    while (i >= t.start[k + 1]) ++k;  // i < start[count], so k stays < count
    sgd_elem(i - t.start[k], t.p[k], t.g[k], t.buf[k], c);
  }
}

template <typename T>
__global__ void adam_multi_kernel(const __grid_constant__ AdamTable<T> t, const AdamConsts<T> c) {
  const int64_t total = t.start[t.count];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int k = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    while (i >= t.start[k + 1]) ++k;  // i < start[count], so k stays < count
    adam_elem(i - t.start[k], t.p[k], t.g[k], t.m[k], t.v[k], t.vmax[k], c);
  }
}

void check_dtype(const char* op, DType dtype) {
  if (!is_floating(dtype)) detail::fail(op, "needs a floating dtype, got ", dtype_name(dtype));
}

void check_multi(const char* op, int count, const int64_t* n) {
  if (count < 0) detail::fail(op, "negative tensor count ", count);
  for (int k = 0; k < count; ++k)
    if (n[k] < 0) detail::fail(op, "tensor ", k, " has negative size ", n[k]);
}

}  // namespace

void sgd_step(DType dtype, int64_t n, void* p, const void* g, void* buf, const SGDStepArgs& a) {
  check_dtype("sgd", dtype);
  if (n <= 0) return;
  MG_DISPATCH_FLOAT(dtype, [&] {
    sgd_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream()>>>(
        n, static_cast<scalar_t*>(p), static_cast<const scalar_t*>(g), static_cast<scalar_t*>(buf),
        sgd_consts<scalar_t>(a));
    MG_CUDA_LAUNCH_CHECK();
  });
}

void adam_step(DType dtype, int64_t n, void* p, const void* g, void* m, void* v, void* vmax,
               const AdamStepArgs& a) {
  check_dtype("adam", dtype);
  if (n <= 0) return;
  MG_DISPATCH_FLOAT(dtype, [&] {
    adam_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream()>>>(
        n, static_cast<scalar_t*>(p), static_cast<const scalar_t*>(g), static_cast<scalar_t*>(m),
        static_cast<scalar_t*>(v), static_cast<scalar_t*>(vmax), adam_consts<scalar_t>(a));
    MG_CUDA_LAUNCH_CHECK();
  });
}

void sgd_step_multi(DType dtype, int count, const int64_t* n, void* const* p, const void* const* g,
                    void* const* buf, const SGDStepArgs& a) {
  check_dtype("sgd", dtype);
  check_multi("sgd", count, n);
  if (a.momentum != 0 && count > 0 && buf == nullptr)
    detail::fail("sgd", "momentum buffers are needed when momentum != 0");
  MG_DISPATCH_FLOAT(dtype, [&] {
    using T = scalar_t;
    const SGDConsts<T> c = sgd_consts<T>(a);
    for (int k0 = 0; k0 < count; k0 += kMultiTensorChunk) {
      SGDTable<T> t{};
      t.count = count - k0 < kMultiTensorChunk ? count - k0 : kMultiTensorChunk;
      t.start[0] = 0;
      for (int k = 0; k < t.count; ++k) {
        t.start[k + 1] = t.start[k] + n[k0 + k];
        t.p[k] = static_cast<T*>(p[k0 + k]);
        t.g[k] = static_cast<const T*>(g[k0 + k]);
        t.buf[k] = buf ? static_cast<T*>(buf[k0 + k]) : nullptr;
      }
      const int64_t total = t.start[t.count];
      if (total == 0) continue;
      sgd_multi_kernel<T><<<grid_for(total), kThreads, 0, stream()>>>(t, c);
      MG_CUDA_LAUNCH_CHECK();
    }
  });
}

void adam_step_multi(DType dtype, int count, const int64_t* n, void* const* p, const void* const* g,
                     void* const* m, void* const* v, void* const* vmax, const AdamStepArgs& a) {
  check_dtype("adam", dtype);
  check_multi("adam", count, n);
  if (a.amsgrad && count > 0 && vmax == nullptr)
    detail::fail("adam", "max_exp_avg_sq buffers are needed with amsgrad");
  MG_DISPATCH_FLOAT(dtype, [&] {
    using T = scalar_t;
    const AdamConsts<T> c = adam_consts<T>(a);
    for (int k0 = 0; k0 < count; k0 += kMultiTensorChunk) {
      AdamTable<T> t{};
      t.count = count - k0 < kMultiTensorChunk ? count - k0 : kMultiTensorChunk;
      t.start[0] = 0;
      for (int k = 0; k < t.count; ++k) {
        t.start[k + 1] = t.start[k] + n[k0 + k];
        t.p[k] = static_cast<T*>(p[k0 + k]);
        t.g[k] = static_cast<const T*>(g[k0 + k]);
        t.m[k] = static_cast<T*>(m[k0 + k]);
        t.v[k] = static_cast<T*>(v[k0 + k]);
        t.vmax[k] = vmax ? static_cast<T*>(vmax[k0 + k]) : nullptr;
      }
      const int64_t total = t.start[t.count];
      if (total == 0) continue;
      adam_multi_kernel<T><<<grid_for(total), kThreads, 0, stream()>>>(t, c);
      MG_CUDA_LAUNCH_CHECK();
    }
  });
}

}  // namespace metagrad::kernels::cuda
