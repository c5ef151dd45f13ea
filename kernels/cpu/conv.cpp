// The CPU convolution kernels (kernels/cpu/conv.h): im2col / col2im and the GEMMs around them.
//
// Note [Convolution threading]: OpenMP spreads the (image, group) pairs over threads, each
// thread with one column buffer of its own (allocated once per call, never in an inner loop),
// and each pair is one GEMM that reads and writes the tensors in place. A single pair (one
// image, one group) runs outside any parallel region, so BLAS may thread its GEMM.
// Why not one large GEMM over a chunk of images, threaded by BLAS, with OpenMP loops for
// im2col in between? With Debian's pthread OpenBLAS the two thread pools then alternate, and
// each pool's idle threads spin while the other works: on the shared 2-core machine the
// conv-4 inner layer forward (bench/bench_conv.cpp, 2 threads) took 576 ms that way against
// 43 ms per pair. The price: a GEMM called inside the loop still wakes BLAS's own threads
// when it is above OpenBLAS's threading threshold (4 * 65536 multiply-adds, the conv-4 inner
// layer's 7.2M among them). With BLAS on one thread (OPENBLAS_NUM_THREADS=1) the same forward
// took 14 ms against 32 ms; a scope in kernels/cpu/blas.h that drops BLAS to one thread around
// the loop would make that the default.
#include "kernels/cpu/conv.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/blas.h"

namespace metagrad::kernels::cpu {

namespace {

constexpr int64_t kParallelWork = int64_t{1} << 15;  // multiply-adds before threads pay

// Sizes derived from the geometry: per-group channels and filters, and the column matrix
// [k, l] of one image and one group.
struct Dims {
  int64_t cg, og, k, l, hw;
};
Dims dims_of(const Conv2dGeometry& g) {
  const int64_t cg = g.c / g.groups;
  return {cg, g.o / g.groups, cg * g.kh * g.kw, g.oh * g.ow, g.h * g.w};
}

// A 1x1 convolution with unit stride and no padding reads each pixel once, in order: the
// column matrix of an image is its input plane block itself.
bool pointwise(const Conv2dGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

// Output positions o in [0, n_out) whose input coordinate o * s + off lies in [0, n_in):
// the range [lo, hi). Computing it once per kernel row keeps the copies free of branches.
void valid_range(int64_t off, int64_t s, int64_t n_in, int64_t n_out, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + s - 1) / s;
  hi = off >= n_in ? 0 : (n_in - 1 - off) / s + 1;
  lo = std::min(lo, n_out);
  hi = std::clamp(hi, lo, n_out);
}

// The kh * kw rows of the column matrix that one input channel `xc` (an h x w plane)
// produces, written at `rows` with row stride `ld`.
template <typename T>
void im2col_channel(const Conv2dGeometry& g, const T* xc, T* rows, int64_t ld) {
  for (int64_t i = 0; i < g.kh; ++i) {
    int64_t hlo, hhi;
    valid_range(i * g.dh - g.ph, g.sh, g.h, g.oh, hlo, hhi);
    for (int64_t j = 0; j < g.kw; ++j) {
      T* row = rows + (i * g.kw + j) * ld;
      const int64_t woff = j * g.dw - g.pw;
      int64_t wlo, whi;
      valid_range(woff, g.sw, g.w, g.ow, wlo, whi);
      std::fill(row, row + hlo * g.ow, T(0));
      for (int64_t oh = hlo; oh < hhi; ++oh) {
        const T* xr = xc + (oh * g.sh + i * g.dh - g.ph) * g.w + woff;  // + ow * sw, ow >= wlo
        T* r = row + oh * g.ow;
        std::fill(r, r + wlo, T(0));
        if (g.sw == 1) {
          std::copy(xr + wlo, xr + whi, r + wlo);
        } else {
          for (int64_t ow = wlo; ow < whi; ++ow) r[ow] = xr[ow * g.sw];
        }
        std::fill(r + whi, r + g.ow, T(0));
      }
      std::fill(row + hhi * g.ow, row + g.oh * g.ow, T(0));
    }
  }
}

// The adjoint of im2col_channel: every column entry is added to the pixel of `xc` it was read
// from (padding entries are dropped). `xc` must be zeroed by the caller.
template <typename T>
void col2im_channel(const Conv2dGeometry& g, const T* rows, int64_t ld, T* xc) {
  for (int64_t i = 0; i < g.kh; ++i) {
    int64_t hlo, hhi;
    valid_range(i * g.dh - g.ph, g.sh, g.h, g.oh, hlo, hhi);
    for (int64_t j = 0; j < g.kw; ++j) {
      const T* row = rows + (i * g.kw + j) * ld;
      const int64_t woff = j * g.dw - g.pw;
      int64_t wlo, whi;
      valid_range(woff, g.sw, g.w, g.ow, wlo, whi);
      for (int64_t oh = hlo; oh < hhi; ++oh) {
        T* xr = xc + (oh * g.sh + i * g.dh - g.ph) * g.w + woff;
        const T* r = row + oh * g.ow;
        if (g.sw == 1) {
          for (int64_t ow = wlo; ow < whi; ++ow) xr[ow] += r[ow];
        } else {
          for (int64_t ow = wlo; ow < whi; ++ow) xr[ow * g.sw] += r[ow];
        }
      }
    }
  }
}

// The column matrix [k, l] of one image's group (channels from `xg` on), row stride ld.
template <typename T>
void im2col_image(const Conv2dGeometry& g, const Dims& d, const T* xg, T* col, int64_t ld) {
  for (int64_t c = 0; c < d.cg; ++c)
    im2col_channel(g, xg + c * d.hw, col + c * g.kh * g.kw * ld, ld);
}

// y[r, :] = b[r] for `rows` rows of l values (stride ld): the GEMM then adds into it.
template <typename T>
void fill_bias(T* y, const T* b, int64_t rows, int64_t l, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) std::fill(y + r * ld, y + r * ld + l, b[r]);
}

// ---- the three ops ----------------------------------------------------------------------------
// Each runs one GEMM per (image, group) pair (Note [Convolution threading]).

template <typename T>
void forward(const Conv2dGeometry& g, const T* x, const T* w, const T* b, T* y) {
  const Dims d = dims_of(g);
  const bool direct = pointwise(g);
  const int64_t items = g.n * g.groups, work = d.og * d.k * d.l;
  const bool parallel = items > 1 && items * work >= kParallelWork;
  blas_sync_num_threads();
  BlasSingleThreadScope one_blas_thread(parallel && omp_get_max_threads() > 1);
#pragma omp parallel if (parallel)
  {
    std::vector<T> col(direct ? 0 : static_cast<size_t>(d.k * d.l));
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / g.groups, gr = it % g.groups;
      const T* xg = x + (n * g.c + gr * d.cg) * d.hw;
      if (!direct) im2col_image(g, d, xg, col.data(), d.l);
      T* yg = y + (n * g.o + gr * d.og) * d.l;
      if (b) fill_bias(yg, b + gr * d.og, d.og, d.l, d.l);
      // y[n][g] = W[g] col: [og, k] x [k, l], added to the bias
      gemm<T>(false, false, d.og, d.l, d.k, T(1), w + gr * d.og * d.k, d.k,
              direct ? xg : col.data(), d.l, b ? T(1) : T(0), yg, d.l);
    }
  }
}

template <typename T>
void input_backward(const Conv2dGeometry& g, const T* gy, const T* w, T* gx) {
  const Dims d = dims_of(g);
  const bool direct = pointwise(g);
  const int64_t items = g.n * g.groups, work = d.og * d.k * d.l;
  const bool parallel = items > 1 && items * work >= kParallelWork;
  blas_sync_num_threads();
  BlasSingleThreadScope one_blas_thread(parallel && omp_get_max_threads() > 1);
#pragma omp parallel if (parallel)
  {
    std::vector<T> col(direct ? 0 : static_cast<size_t>(d.k * d.l));
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / g.groups, gr = it % g.groups;
      T* gxg = gx + (n * g.c + gr * d.cg) * d.hw;
      T* cp = direct ? gxg : col.data();
      // col = W[g]^T gy[n][g]: [k, og] x [og, l]; a 1x1 convolution's col is gx itself
      gemm<T>(true, false, d.k, d.l, d.og, T(1), w + gr * d.og * d.k, d.k,
              gy + (n * g.o + gr * d.og) * d.l, d.l, T(0), cp, d.l);
      if (direct) continue;
      std::fill(gxg, gxg + d.cg * d.hw, T(0));
      for (int64_t c = 0; c < d.cg; ++c)
        col2im_channel(g, cp + c * g.kh * g.kw * d.l, d.l, gxg + c * d.hw);
    }
  }
}

template <typename T>
void weight_backward(const Conv2dGeometry& g, const T* gy, const T* x, T* gw) {
  const Dims d = dims_of(g);
  const bool direct = pointwise(g);
  const int64_t items = g.n * g.groups, work = d.og * d.k * d.l, wsize = g.o * d.k;
  blas_sync_num_threads();
  // Each thread sums its images into a private copy of gw; the copies are added after, in
  // thread order (deterministic for a given thread count).
  const bool parallel = items > 1 && items * work >= kParallelWork;
  const int threads = parallel ? omp_get_max_threads() : 1;
  BlasSingleThreadScope one_blas_thread(parallel && threads > 1);  // Note [BLAS inside OpenMP loops]
  std::vector<T> partial(static_cast<size_t>(threads * wsize), T(0));
  int used = 1;
#pragma omp parallel if (parallel)
  {
    std::vector<T> col(direct ? 0 : static_cast<size_t>(d.k * d.l));
    T* mine = partial.data() + omp_get_thread_num() * wsize;
#pragma omp single
    used = omp_get_num_threads();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / g.groups, gr = it % g.groups;
      const T* xg = x + (n * g.c + gr * d.cg) * d.hw;
      if (!direct) im2col_image(g, d, xg, col.data(), d.l);
      // gW[g] += gy[n][g] col^T: [og, l] x [l, k]
      gemm<T>(false, true, d.og, d.k, d.l, T(1), gy + (n * g.o + gr * d.og) * d.l, d.l,
              direct ? xg : col.data(), d.l, T(1), mine + gr * d.og * d.k, d.k);
    }
  }
#pragma omp parallel for schedule(static) if (used > 1 && wsize * used >= kParallelWork)
  for (int64_t e = 0; e < wsize; ++e) {
    T s = partial[static_cast<size_t>(e)];
    for (int t = 1; t < used; ++t) s += partial[static_cast<size_t>(t * wsize + e)];
    gw[e] = s;
  }
}

}  // namespace

void conv2d_forward(DType dtype, const Conv2dGeometry& g, const void* x, const void* w,
                    const void* b, void* y) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    forward<scalar_t>(g, static_cast<const scalar_t*>(x), static_cast<const scalar_t*>(w),
                      static_cast<const scalar_t*>(b), static_cast<scalar_t*>(y));
  });
}

void conv2d_input_backward(DType dtype, const Conv2dGeometry& g, const void* gy, const void* w,
                           void* gx) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    input_backward<scalar_t>(g, static_cast<const scalar_t*>(gy), static_cast<const scalar_t*>(w),
                             static_cast<scalar_t*>(gx));
  });
}

void conv2d_weight_backward(DType dtype, const Conv2dGeometry& g, const void* gy, const void* x,
                            void* gw) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    weight_backward<scalar_t>(g, static_cast<const scalar_t*>(gy), static_cast<const scalar_t*>(x),
                              static_cast<scalar_t*>(gw));
  });
}

}  // namespace metagrad::kernels::cpu
