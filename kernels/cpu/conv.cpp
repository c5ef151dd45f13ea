// The CPU convolution kernels (kernels/cpu/conv.h): im2col / col2im and the GEMMs around them.
//
// Note [Convolution threading]: OpenBLAS threads a GEMM only above 4 * 65536 multiply-adds
// (see kernels/cpu/matmul.cpp), and it must not be asked to thread from inside an OpenMP
// region (the pthread build would run several pools at once). So there are two schedules:
//  - per-image: when one image's GEMM is small (or BLAS runs on one thread), OpenMP spreads
//    the (image, group) pairs over threads, each with its own column buffer, and every GEMM
//    runs on its calling thread;
//  - chunked: otherwise the GEMMs run one after the other, each threaded by BLAS, and OpenMP
//    threads only im2col / col2im, a chunk of images at a time (their columns side by side,
//    [K, chunk * L], about kColBudget elements, so a chunk is still in cache when its GEMMs
//    read it and the OpenMP loops are few).
// Each image's GEMM reads or writes the tensors in place (no copies in or out). The buffers
// are allocated once per call (per thread), never in an inner loop.
//
// With many cores the per-image schedule would scale better for large GEMMs too, but it needs
// BLAS on one thread inside the parallel region, which blas.h cannot yet ask for without
// changing the user's thread setting; until then OMP_NUM_THREADS=1 (or OPENBLAS_NUM_THREADS=1)
// selects it.
#include "kernels/cpu/conv.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/blas.h"

namespace metagrad::kernels::cpu {

namespace {

constexpr int64_t kSmallGemm = 64 * 64 * 64;      // OpenBLAS's single-thread limit, as matmul.cpp
constexpr int64_t kColBudget = int64_t{1} << 18;  // elements of a chunk's column buffer
constexpr int64_t kParallelWork = int64_t{1} << 15;  // elements moved before threads pay

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

// Note [Convolution threading]: true for the per-image schedule.
bool per_image(int64_t gemm_work) {
  return gemm_work < kSmallGemm || blas_get_num_threads() == 1;
}

// Images per chunk in the chunked schedule.
int64_t chunk_of(const Conv2dGeometry& g, const Dims& d) {
  if (pointwise(g)) return 1;
  return std::clamp<int64_t>(kColBudget / (d.k * d.l), 1, g.n);
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

// Columns of the `nb` images from image n0 on, group gr, side by side: col [k, nb * l].
template <typename T>
void im2col_chunk(const Conv2dGeometry& g, const Dims& d, const T* x, int64_t n0, int64_t nb,
                  int64_t gr, T* col) {
  const int64_t ld = nb * d.l, items = nb * d.cg;
#pragma omp parallel for schedule(static) if (items > 1 && \
                                              items * g.kh * g.kw * d.l >= kParallelWork)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t b = it / d.cg, c = it % d.cg;
    const T* xc = x + ((n0 + b) * g.c + gr * d.cg + c) * d.hw;
    im2col_channel(g, xc, col + c * g.kh * g.kw * ld + b * d.l, ld);
  }
}

// y[r, :] = b[r] for `rows` rows of l values (stride ld): the GEMM then adds into it.
template <typename T>
void fill_bias(T* y, const T* b, int64_t rows, int64_t l, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) std::fill(y + r * ld, y + r * ld + l, b[r]);
}

// ---- forward --------------------------------------------------------------------------------

template <typename T>
void forward(const Conv2dGeometry& g, const T* x, const T* w, const T* b, T* y) {
  const Dims d = dims_of(g);
  const bool direct = pointwise(g);
  const int64_t work = d.og * d.k * d.l;
  blas_sync_num_threads();
  if (per_image(work)) {
    const int64_t items = g.n * g.groups;
#pragma omp parallel if (items > 1 && items * work >= kParallelWork)
    {
      std::vector<T> col(direct ? 0 : static_cast<size_t>(d.k * d.l));
#pragma omp for schedule(static)
      for (int64_t it = 0; it < items; ++it) {
        const int64_t n = it / g.groups, gr = it % g.groups;
        const T* xg = x + (n * g.c + gr * d.cg) * d.hw;
        if (!direct) im2col_image(g, d, xg, col.data(), d.l);
        T* yg = y + (n * g.o + gr * d.og) * d.l;
        if (b) fill_bias(yg, b + gr * d.og, d.og, d.l, d.l);
        gemm<T>(false, false, d.og, d.l, d.k, T(1), w + gr * d.og * d.k, d.k,
                direct ? xg : col.data(), d.l, b ? T(1) : T(0), yg, d.l);
      }
    }
    return;
  }
  const int64_t chunk = chunk_of(g, d);
  std::vector<T> col(direct ? 0 : static_cast<size_t>(d.k * chunk * d.l));
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.n - n0), ld = nb * d.l;
    for (int64_t gr = 0; gr < g.groups; ++gr) {
      const T* wg = w + gr * d.og * d.k;
      const T* bg = b ? b + gr * d.og : nullptr;
      if (!direct) im2col_chunk(g, d, x, n0, nb, gr, col.data());
      for (int64_t bi = 0; bi < nb; ++bi) {  // y[n][g] = W[g] @ (image bi's columns)
        const T* cp = direct ? x + ((n0 + bi) * g.c + gr * d.cg) * d.hw : col.data() + bi * d.l;
        T* yg = y + ((n0 + bi) * g.o + gr * d.og) * d.l;
        if (bg) fill_bias(yg, bg, d.og, d.l, d.l);
        gemm<T>(false, false, d.og, d.l, d.k, T(1), wg, d.k, cp, direct ? d.l : ld,
                bg ? T(1) : T(0), yg, d.l);
      }
    }
  }
}

// ---- input backward ---------------------------------------------------------------------------

template <typename T>
void input_backward(const Conv2dGeometry& g, const T* gy, const T* w, T* gx) {
  const Dims d = dims_of(g);
  const bool direct = pointwise(g);
  const int64_t work = d.og * d.k * d.l;
  blas_sync_num_threads();
  if (per_image(work)) {
    const int64_t items = g.n * g.groups;
#pragma omp parallel if (items > 1 && items * work >= kParallelWork)
    {
      std::vector<T> col(direct ? 0 : static_cast<size_t>(d.k * d.l));
#pragma omp for schedule(static)
      for (int64_t it = 0; it < items; ++it) {
        const int64_t n = it / g.groups, gr = it % g.groups;
        T* gxg = gx + (n * g.c + gr * d.cg) * d.hw;
        T* cp = direct ? gxg : col.data();
        // col = W[g]^T gy[g]: [k, og] x [og, l]
        gemm<T>(true, false, d.k, d.l, d.og, T(1), w + gr * d.og * d.k, d.k,
                gy + (n * g.o + gr * d.og) * d.l, d.l, T(0), cp, d.l);
        if (direct) continue;
        std::fill(gxg, gxg + d.cg * d.hw, T(0));
        for (int64_t c = 0; c < d.cg; ++c)
          col2im_channel(g, cp + c * g.kh * g.kw * d.l, d.l, gxg + c * d.hw);
      }
    }
    return;
  }
  const int64_t chunk = chunk_of(g, d);
  std::vector<T> col(direct ? 0 : static_cast<size_t>(d.k * chunk * d.l));
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.n - n0), ld = nb * d.l;
    for (int64_t gr = 0; gr < g.groups; ++gr) {
      for (int64_t bi = 0; bi < nb; ++bi) {  // image bi's columns = W[g]^T @ gy[n][g]
        T* cp = direct ? gx + ((n0 + bi) * g.c + gr * d.cg) * d.hw : col.data() + bi * d.l;
        gemm<T>(true, false, d.k, d.l, d.og, T(1), w + gr * d.og * d.k, d.k,
                gy + ((n0 + bi) * g.o + gr * d.og) * d.l, d.l, T(0), cp, direct ? d.l : ld);
      }
      if (direct) continue;
      const int64_t items = nb * d.cg;
#pragma omp parallel for schedule(static) if (items > 1 && \
                                              items * g.kh * g.kw * d.l >= kParallelWork)
      for (int64_t it = 0; it < items; ++it) {
        const int64_t bi = it / d.cg, c = it % d.cg;
        T* xc = gx + ((n0 + bi) * g.c + gr * d.cg + c) * d.hw;
        std::fill(xc, xc + d.hw, T(0));
        col2im_channel(g, col.data() + c * g.kh * g.kw * ld + bi * d.l, ld, xc);
      }
    }
  }
}

// ---- weight backward --------------------------------------------------------------------------

template <typename T>
void weight_backward(const Conv2dGeometry& g, const T* gy, const T* x, T* gw) {
  const Dims d = dims_of(g);
  const bool direct = pointwise(g);
  const int64_t work = d.og * d.k * d.l, wsize = g.o * d.k;
  blas_sync_num_threads();
  if (per_image(work)) {
    // Each thread sums its images into a private copy of gw; the copies are added after, in
    // thread order (deterministic for a given thread count).
    const int64_t items = g.n * g.groups;
    const bool parallel = items > 1 && items * work >= kParallelWork;
    const int threads = parallel ? omp_get_max_threads() : 1;
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
        // gW[g] += gy[g] col^T: [og, l] x [l, k]
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
    return;
  }
  const int64_t chunk = chunk_of(g, d);
  std::vector<T> col(direct ? 0 : static_cast<size_t>(d.k * chunk * d.l));
  std::fill(gw, gw + wsize, T(0));
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.n - n0), ld = nb * d.l;
    for (int64_t gr = 0; gr < g.groups; ++gr) {
      if (!direct) im2col_chunk(g, d, x, n0, nb, gr, col.data());
      for (int64_t bi = 0; bi < nb; ++bi) {  // gW[g] += gy[n][g] @ (image bi's columns)^T
        const T* cp = direct ? x + ((n0 + bi) * g.c + gr * d.cg) * d.hw : col.data() + bi * d.l;
        gemm<T>(false, true, d.og, d.k, d.l, T(1), gy + ((n0 + bi) * g.o + gr * d.og) * d.l, d.l,
                cp, direct ? d.l : ld, T(1), gw + gr * d.og * d.k, d.k);
      }
    }
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
