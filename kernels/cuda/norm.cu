// The CUDA batch-normalisation kernels (training mode, contiguous, float32/float64): the twin of
// kernels/cpu/norm.cpp, sharing its per-channel math (kernels/norm_math.h).
//
// Note [CUDA batch-norm layout]: two launches per op.
//   * A channel kernel, one block of kChannelThreads per channel: its threads walk the
//     channel's n * inner values (value j at row j / inner, column j % inner) in a fixed
//     interleaving, accumulating in double, and the block merges the partial sums with warp
//     shuffles and shared memory in a fixed tree order, so every result is deterministic.
//     Statistics take one pass (shifted moments, Note [Shifted moments] in kernels/online.h;
//     the CPU takes two). The backward's channel kernel takes the forward's saved mean and
//     invstd when it is given them (Note [Saved batch-norm statistics] in tensor/norm.h), else
//     recomputes them, and adds a pass for sum(g) and sum(g (x - mean)). One thread per channel
//     then turns the
//     sums into the per-channel coefficients (scale and shift, or k1, k2, k3), written to a
//     Workspace in the tensor's dtype as the CPU rounds them.
//   * An elementwise kernel over the whole tensor, one thread per element (grid-stride):
//     y = x * scale + shift, or gx = k1 g + k2 x + k3, with the channel (e / inner) % c in
//     32-bit arithmetic whenever the tensor has fewer than 2^31 elements (64-bit division costs
//     more than the element's memory traffic).
// The sums differ from the CPU's blocked ones in rounding only. The elementwise passes round
// every product and sum as the CPU does (mul_rn, add_rn): an FMA's single rounding differs from
// the CPU's two by up to half an ulp of x * scale, which for data far from zero (x ~ 1e4, y ~ 1
// in float32) is about 1e-3 in y, not an ulp of y.
#include <cstdint>

#include "kernels/args.h"
#include "kernels/cuda/common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "kernels/norm_math.h"
#include "kernels/online.h"
#include "kernels/philox.h"

namespace metagrad::kernels::cuda {

namespace {

using metagrad::cuda::grid_for;
using metagrad::cuda::kThreads;
using metagrad::cuda::stream;
using metagrad::cuda::Workspace;

constexpr int kChannelThreads = 512;
constexpr int kWarps = kChannelThreads / 32;

// Correctly rounded and never contracted into an FMA (the CPU build does not contract), so the
// elementwise passes give the CPU's values for the same per-channel coefficients.
using metagrad::kernels::philox::add_rn;
using metagrad::kernels::philox::mul_rn;

// The sum of every thread's v, returned to all threads of the block; `smem` holds kWarps
// doubles. Called by every thread (full-mask shuffles).
__device__ double block_sum(double v, double* smem) {
  const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
  for (int d = 16; d > 0; d >>= 1) v += __shfl_down_sync(0xffffffffu, v, d);
  __syncthreads();  // the previous call's readers of smem are done
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? smem[lane] : 0.0;
    for (int d = 16; d > 0; d >>= 1) v += __shfl_down_sync(0xffffffffu, v, d);
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  return smem[0];
}

// Offset of value j of a channel from the channel's first element.
template <typename I>
__device__ __forceinline__ I channel_offset(I j, I inner, I stride) {
  const I row = j / inner;
  return row * stride + (j - row * inner);
}

// The merged moments of every thread's v, returned to all threads of the block; `smem` holds
// kWarps states. Called by every thread (full-mask shuffles); the merge order is fixed.
__device__ online::Moments block_moments(online::Moments v, online::Moments* smem) {
  const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
  auto shfl = [](online::Moments a, int d) {
    return online::Moments{
        __shfl_down_sync(0xffffffffu, a.n, d), __shfl_down_sync(0xffffffffu, a.k, d),
        __shfl_down_sync(0xffffffffu, a.s1, d), __shfl_down_sync(0xffffffffu, a.s2, d)};
  };
  for (int d = 16; d > 0; d >>= 1) v = online::moments_merge(v, shfl(v, d));
  __syncthreads();  // the previous call's readers of smem are done
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? smem[lane] : online::moments_init();
    for (int d = 16; d > 0; d >>= 1) v = online::moments_merge(v, shfl(v, d));
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  return smem[0];
}

struct ChannelStats {
  double mean, invstd;
};

// Mean and invstd of the channel at x (rows `stride` apart, m >= 1 values), one pass.
template <typename T, typename I>
__device__ ChannelStats channel_stats(const T* __restrict__ x, I m, I inner, I stride, double eps,
                                      online::Moments* smem) {
  online::Moments mo = online::moments_init();
  for (I j = threadIdx.x; j < m; j += kChannelThreads)
    mo = online::moments_step(mo, static_cast<double>(x[channel_offset(j, inner, stride)]));
  mo = block_moments(mo, smem);
  return {mo.k + mo.s1 / mo.n, bn_invstd(online::moments_m2(mo), static_cast<double>(m), eps)};
}

// One block per channel: mean, invstd, and coef = {scale [c], shift [c]}.
template <typename T, typename I>
__global__ void __launch_bounds__(kChannelThreads)
    forward_channel_kernel(BatchNormGeometry g, const T* __restrict__ x, const T* __restrict__ w,
                           const T* __restrict__ b, T* __restrict__ mean, T* __restrict__ invstd,
                           T* __restrict__ coef) {
  __shared__ online::Moments smem[kWarps];
  const I c = static_cast<I>(g.c), inner = static_cast<I>(g.inner), k = blockIdx.x;
  const ChannelStats st =
      channel_stats(x + k * inner, static_cast<I>(g.n) * inner, inner, c * inner, g.eps, smem);
  if (threadIdx.x == 0) {
    const BnAffine af = bn_affine(st.mean, st.invstd, w ? static_cast<double>(w[k]) : 1.0,
                                  b ? static_cast<double>(b[k]) : 0.0);
    mean[k] = static_cast<T>(st.mean);
    invstd[k] = static_cast<T>(st.invstd);
    coef[k] = static_cast<T>(af.scale);
    coef[c + k] = static_cast<T>(af.shift);
  }
}

// y = x * scale + shift, one thread per element.
template <typename T, typename I>
__global__ void forward_apply_kernel(I total, I c, I inner, const T* __restrict__ x,
                                     const T* __restrict__ coef, T* __restrict__ y) {
  const I step = static_cast<I>(gridDim.x) * blockDim.x;
  for (I e = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const I k = (e / inner) % c;
    y[e] = add_rn(mul_rn(x[e], coef[k]), coef[c + k]);  // x * scale + shift, as the CPU
  }
}

// One block per channel: the statistics (the forward's saved ones when given, else again),
// sum(g) and sum(g (x - mean)); grad_weight, grad_bias, and coef = {k1 [c], k2 [c], k3 [c]}
// when coef is non-null (grad_x wanted).
template <typename T, typename I>
__global__ void __launch_bounds__(kChannelThreads)
    backward_channel_kernel(BatchNormGeometry g, const T* __restrict__ gy, const T* __restrict__ x,
                            const T* __restrict__ w, const T* __restrict__ g_mean,
                            const T* __restrict__ g_invstd, const T* __restrict__ saved_mean,
                            const T* __restrict__ saved_invstd, T* __restrict__ gw,
                            T* __restrict__ gb, T* __restrict__ coef) {
  __shared__ double smem[kWarps];
  __shared__ online::Moments msmem[kWarps];
  const I c = static_cast<I>(g.c), inner = static_cast<I>(g.inner), k = blockIdx.x;
  const I m = static_cast<I>(g.n) * inner, stride = c * inner;
  const T* xk = x + k * inner;
  const T* gk = gy + k * inner;
  const ChannelStats st =
      saved_mean && saved_invstd
          ? ChannelStats{static_cast<double>(saved_mean[k]), static_cast<double>(saved_invstd[k])}
          : channel_stats(xk, m, inner, stride, g.eps, msmem);
  double sg = 0, sgx = 0;
  for (I j = threadIdx.x; j < m; j += kChannelThreads) {
    const I at = channel_offset(j, inner, stride);
    const double gj = static_cast<double>(gk[at]);
    sg += gj;
    sgx += gj * (static_cast<double>(xk[at]) - st.mean);
  }
  sg = block_sum(sg, smem);
  sgx = block_sum(sgx, smem);
  if (threadIdx.x == 0) {
    const double sg_xhat = sgx * st.invstd;
    if (gw) gw[k] = static_cast<T>(sg_xhat);
    if (gb) gb[k] = static_cast<T>(sg);
    if (coef) {
      const BnGradCoefficients co = bn_grad_coefficients(
          static_cast<double>(m), st.mean, st.invstd, sg, sg_xhat,
          w ? static_cast<double>(w[k]) : 1.0, g_mean ? static_cast<double>(g_mean[k]) : 0.0,
          g_invstd ? static_cast<double>(g_invstd[k]) : 0.0);
      coef[k] = static_cast<T>(co.k1);
      coef[c + k] = static_cast<T>(co.k2);
      coef[2 * c + k] = static_cast<T>(co.k3);
    }
  }
}

// gx = k1 g + k2 x + k3, one thread per element.
template <typename T, typename I>
__global__ void backward_apply_kernel(I total, I c, I inner, const T* __restrict__ gy,
                                      const T* __restrict__ x, const T* __restrict__ coef,
                                      T* __restrict__ gx) {
  const I step = static_cast<I>(gridDim.x) * blockDim.x;
  for (I e = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const I k = (e / inner) % c;
    // g * k1 + x * k2 + k3, rounded as the CPU
    gx[e] = add_rn(add_rn(mul_rn(gy[e], coef[k]), mul_rn(x[e], coef[c + k])), coef[2 * c + k]);
  }
}

// 32-bit indices while every index, and an index plus one grid stride, stays below 2^32. The
// backward's coefficient index 2c + k < 3c counts too: [1, c] with c > 2^32 / 3 has fewer than
// 2^31 elements but would wrap it.
bool small_indices(const BatchNormGeometry& g) {
  return g.n * g.c * g.inner < (int64_t{1} << 31) && 3 * g.c < (int64_t{1} << 32);
}

// Launches both kernels of the forward with index type I.
template <typename T, typename I>
void forward(const BatchNormGeometry& g, const T* x, const T* w, const T* b, T* y, T* mean,
             T* invstd) {
  Workspace ws(sizeof(T) * 2 * static_cast<size_t>(g.c));
  T* coef = ws.as<T>();
  forward_channel_kernel<T, I><<<static_cast<unsigned>(g.c), kChannelThreads, 0, stream()>>>(
      g, x, w, b, mean, invstd, coef);
  MG_CUDA_LAUNCH_CHECK();
  const int64_t total = g.n * g.c * g.inner;
  forward_apply_kernel<T, I><<<grid_for(total), kThreads, 0, stream()>>>(
      static_cast<I>(total), static_cast<I>(g.c), static_cast<I>(g.inner), x, coef, y);
  MG_CUDA_LAUNCH_CHECK();
}

template <typename T, typename I>
void backward(const BatchNormGeometry& g, const T* gy, const T* x, const BatchNormBackwardArgs& a) {
  Workspace ws;  // the coefficients, only when grad_x is wanted
  if (a.grad_x) ws = Workspace(sizeof(T) * 3 * static_cast<size_t>(g.c));
  T* coef = ws.as<T>();
  backward_channel_kernel<T, I><<<static_cast<unsigned>(g.c), kChannelThreads, 0, stream()>>>(
      g, gy, x, static_cast<const T*>(a.weight), static_cast<const T*>(a.grad_mean),
      static_cast<const T*>(a.grad_invstd), static_cast<const T*>(a.saved_mean),
      static_cast<const T*>(a.saved_invstd), static_cast<T*>(a.grad_weight),
      static_cast<T*>(a.grad_bias), coef);
  MG_CUDA_LAUNCH_CHECK();
  if (!a.grad_x) return;
  const int64_t total = g.n * g.c * g.inner;
  backward_apply_kernel<T, I><<<grid_for(total), kThreads, 0, stream()>>>(
      static_cast<I>(total), static_cast<I>(g.c), static_cast<I>(g.inner), gy, x, coef,
      static_cast<T*>(a.grad_x));
  MG_CUDA_LAUNCH_CHECK();
}

}  // namespace

void batch_norm_forward(DType dtype, const BatchNormGeometry& g, const void* x, const void* weight,
                        const void* bias, void* y, void* mean, void* invstd) {
  MG_CHECK(g.c >= 1 && g.c <= int64_t{0x7fffffff} && g.n * g.inner >= 1, "native_batch_norm",
           "expected 1 to 2^31 - 1 channels and a value per channel, got [", g.n, ", ", g.c, ", ",
           g.inner, "]");
  MG_DISPATCH_FLOAT(dtype, [&] {
    const auto* xt = static_cast<const scalar_t*>(x);
    const auto* wt = static_cast<const scalar_t*>(weight);
    const auto* bt = static_cast<const scalar_t*>(bias);
    auto* yt = static_cast<scalar_t*>(y);
    auto* mt = static_cast<scalar_t*>(mean);
    auto* it = static_cast<scalar_t*>(invstd);
    if (small_indices(g))
      forward<scalar_t, uint32_t>(g, xt, wt, bt, yt, mt, it);
    else
      forward<scalar_t, uint64_t>(g, xt, wt, bt, yt, mt, it);
  });
}

void batch_norm_backward(DType dtype, const BatchNormGeometry& g, const void* grad_y, const void* x,
                         const BatchNormBackwardArgs& a) {
  MG_CHECK(g.c >= 1 && g.c <= int64_t{0x7fffffff} && g.n * g.inner >= 1,
           "native_batch_norm_backward",
           "expected 1 to 2^31 - 1 channels and a value per channel, got [", g.n, ", ", g.c, ", ",
           g.inner, "]");
  MG_DISPATCH_FLOAT(dtype, [&] {
    const auto* gt = static_cast<const scalar_t*>(grad_y);
    const auto* xt = static_cast<const scalar_t*>(x);
    if (small_indices(g))
      backward<scalar_t, uint32_t>(g, gt, xt, a);
    else
      backward<scalar_t, uint64_t>(g, gt, xt, a);
  });
}

}  // namespace metagrad::kernels::cuda
