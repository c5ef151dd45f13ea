// The CPU convolution kernels (kernels/cpu/conv.h): im2col / col2im and the GEMMs around them.
//
// Note [Convolution threading]: OpenMP spreads chunks of images (Note [Convolution GEMM
// width]) over threads, each thread with buffers of its own (grown once per call, never in
// an inner loop), and each (chunk, group) pair is one GEMM. A single chunk runs outside any
// parallel region, so BLAS may thread its GEMM.
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
#include <cstdlib>
#include <utility>
#include <vector>

#include <unistd.h>  // sysconf: the L2 size (Note [Convolution GEMM width])

#include "kernels/cpu/blas.h"
#include "kernels/cpu/parallel.h"

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
//
// Note [Same-width im2col]: with unit strides and an output as wide as the input (a "same"
// convolution: 3 x 3, padding 1), the entry (oh, ow) of row (i, j) reads the input pixel at
// linear index oh * w + ow + shift, one shift per row. The valid part of such a row is then
// one contiguous copy of the plane, from its first valid pixel to its last; the few entries
// that copy wraps in from the neighbouring row (the columns that fall in the padding) are
// zeroed after it, as are the rows above and below. One long copy in place of one short copy
// per output row: 14-float rows made im2col's memmove calls a tenth of the conv-4 step.
template <typename T>
void im2col_channel(const Conv2dGeometry& g, const T* xc, T* rows, int64_t ld) {
  const bool same_width = g.sh == 1 && g.sw == 1 && g.ow == g.w;
  for (int64_t i = 0; i < g.kh; ++i) {
    int64_t hlo, hhi;
    valid_range(i * g.dh - g.ph, g.sh, g.h, g.oh, hlo, hhi);
    for (int64_t j = 0; j < g.kw; ++j) {
      T* row = rows + (i * g.kw + j) * ld;
      const int64_t woff = j * g.dw - g.pw;
      int64_t wlo, whi;
      valid_range(woff, g.sw, g.w, g.ow, wlo, whi);
      if (same_width) {
        std::fill(row, row + hlo * g.ow, T(0));
        std::fill(row + hhi * g.ow, row + g.oh * g.ow, T(0));
        if (hlo >= hhi || wlo >= whi) {
          std::fill(row + hlo * g.ow, row + hhi * g.ow, T(0));
          continue;
        }
        const int64_t first = hlo * g.ow + wlo, last = (hhi - 1) * g.ow + whi;  // [first, last)
        const T* src = xc + (i * g.dh - g.ph) * g.w + woff;  // src[e] feeds row[e]
        std::copy(src + first, src + last, row + first);
        for (int64_t oh = hlo; oh < hhi; ++oh) {  // the wrapped-in padding columns
          T* r = row + oh * g.ow;
          std::fill(r, r + wlo, T(0));
          std::fill(r + whi, r + g.ow, T(0));
        }
        continue;
      }
      // Padding entries are zero: one fill of the row when it has any (small feature maps
      // made three fills per output row the cost of im2col), then only the valid copies.
      if (hlo > 0 || hhi < g.oh || wlo > 0 || whi < g.ow) std::fill(row, row + g.oh * g.ow, T(0));
      for (int64_t oh = hlo; oh < hhi; ++oh) {
        const T* xr = xc + (oh * g.sh + i * g.dh - g.ph) * g.w + woff;  // + ow * sw, ow >= wlo
        T* r = row + oh * g.ow;
        if (g.sw == 1) {
          std::copy(xr + wlo, xr + whi, r + wlo);
        } else {
          for (int64_t ow = wlo; ow < whi; ++ow) r[ow] = xr[ow * g.sw];
        }
      }
    }
  }
}

// dst[i] += src[i]: a function of its own so that restrict lets the loop vectorise.
template <typename T>
void add_run(T* __restrict dst, const T* __restrict src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

// The adjoint of im2col_channel: every column entry is added to the pixel of `xc` it was read
// from (padding entries are dropped). `xc` must be zeroed by the caller. `rows` is scratch:
// with the same-width layout (Note [Same-width im2col]) its padding entries are zeroed so that
// each row adds back as one contiguous run.
template <typename T>
void col2im_channel(const Conv2dGeometry& g, T* rows, int64_t ld, T* xc) {
  const bool same_width = g.sh == 1 && g.sw == 1 && g.ow == g.w;
  for (int64_t i = 0; i < g.kh; ++i) {
    int64_t hlo, hhi;
    valid_range(i * g.dh - g.ph, g.sh, g.h, g.oh, hlo, hhi);
    for (int64_t j = 0; j < g.kw; ++j) {
      T* row = rows + (i * g.kw + j) * ld;
      const int64_t woff = j * g.dw - g.pw;
      int64_t wlo, whi;
      valid_range(woff, g.sw, g.w, g.ow, wlo, whi);
      if (same_width) {
        if (hlo >= hhi || wlo >= whi) continue;
        for (int64_t oh = hlo; oh < hhi; ++oh) {
          T* r = row + oh * g.ow;
          std::fill(r, r + wlo, T(0));
          std::fill(r + whi, r + g.ow, T(0));
        }
        const int64_t first = hlo * g.ow + wlo, last = (hhi - 1) * g.ow + whi;
        add_run(xc + (i * g.dh - g.ph) * g.w + woff + first, row + first, last - first);
        continue;
      }
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

// Note [Small-plane im2col]: where the output plane is small (the conv-4 net's 7 x 7 and 3 x 3
// layers), a row of the column matrix is a handful of short runs, and the copies and fills of
// im2col_channel cost more than the GEMM (two thirds of the 3 x 3 layer's time, perf).
// There, one table per op call maps each column-matrix entry of a channel, (r = i * kw + j,
// e = oh * ow + ow), to the pixel it reads, or to none (padding): im2col is then one
// branch-free gather per entry, and col2im a gather too, run the other way: each pixel sums
// the entries that read it (a list per pixel), so that gx is written once, with no zero fill
// and no scatter. Measured in docs/performance.md (session 6).
// Output pixels per plane at most: measured on the conv-4 layers (2 threads, 75 images), the
// gathering im2col wins on 7 x 7 and 3 x 3 planes, the gathering col2im on 3 x 3 only (on 7 x 7
// its short, uneven sums per pixel lose to the contiguous runs of col2im_channel).
constexpr int64_t kSmallPlaneIm2col = 64, kSmallPlaneCol2im = 16;

struct PlaneMap {
  // src[r * l + e]: the pixel entry (r, e) reads, or h * w in the padding.
  std::vector<int32_t> src;
  // The entries (r, e) that read pixel p: readers[first[p] .. first[p + 1]).
  std::vector<int32_t> first;
  std::vector<std::pair<int32_t, int32_t>> readers;
};

PlaneMap plane_map(const Conv2dGeometry& g) {
  const int64_t l = g.oh * g.ow, kk = g.kh * g.kw, hw = g.h * g.w;
  PlaneMap m;
  m.src.assign(static_cast<size_t>(kk * l), static_cast<int32_t>(hw));
  std::vector<int32_t> count(static_cast<size_t>(hw), 0);
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j)
      for (int64_t oh = 0; oh < g.oh; ++oh)
        for (int64_t ow = 0; ow < g.ow; ++ow) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh, iw = ow * g.sw - g.pw + j * g.dw;
          if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
          const int64_t p = ih * g.w + iw;
          m.src[static_cast<size_t>((i * g.kw + j) * l + oh * g.ow + ow)] = static_cast<int32_t>(p);
          ++count[static_cast<size_t>(p)];
        }
  m.first.assign(static_cast<size_t>(hw + 1), 0);
  for (int64_t p = 0; p < hw; ++p)
    m.first[static_cast<size_t>(p + 1)] =
        m.first[static_cast<size_t>(p)] + count[static_cast<size_t>(p)];
  m.readers.resize(static_cast<size_t>(m.first.back()));
  std::vector<int32_t> next(m.first.begin(), m.first.end() - 1);
  for (int64_t r = 0; r < kk; ++r)
    for (int64_t e = 0; e < l; ++e) {
      const int32_t p = m.src[static_cast<size_t>(r * l + e)];
      if (p < hw)
        m.readers[static_cast<size_t>(next[static_cast<size_t>(p)]++)] = {static_cast<int32_t>(r),
                                                                          static_cast<int32_t>(e)};
    }
  return m;
}

// The kh * kw rows of channel `xc` through the map. `plane` is scratch of hw + 1 values whose
// last is 0: the channel is copied in first, so that every entry, padding included, is one
// indexed load (a vector gather), with no branch.
template <typename T>
void im2col_channel_mapped(const PlaneMap& m, int64_t kk, int64_t l, int64_t hw, const T* xc,
                           T* __restrict plane, T* __restrict rows, int64_t ld) {
  std::copy(xc, xc + hw, plane);
  for (int64_t r = 0; r < kk; ++r) {
    const int32_t* __restrict src = m.src.data() + r * l;
    T* __restrict row = rows + r * ld;
    for (int64_t e = 0; e < l; ++e) row[e] = plane[src[e]];
  }
}

// The adjoint: pixel p of `xc` is the sum of the entries that read it (0 if none), in entry
// order, so gx is written once, not zero-filled and scattered into.
template <typename T>
void col2im_channel_mapped(const PlaneMap& m, int64_t hw, const T* rows, int64_t ld, T* xc) {
  const int32_t* first = m.first.data();
  const auto* readers = m.readers.data();
  for (int64_t p = 0; p < hw; ++p) {
    T s = T(0);
    for (int32_t q = first[p]; q < first[p + 1]; ++q)
      s += rows[readers[q].first * ld + readers[q].second];
    xc[p] = s;
  }
}

// The column matrix [k, l] of one image's group (channels from `xg` on), row stride ld; through
// `map` when the plane is small (Note [Small-plane im2col]).
template <typename T>
void im2col_image(const Conv2dGeometry& g, const Dims& d, const PlaneMap* map, T* plane,
                  const T* xg, T* col, int64_t ld) {
  const int64_t kk = g.kh * g.kw;
  for (int64_t c = 0; c < d.cg; ++c) {
    if (map) {
      im2col_channel_mapped(*map, kk, d.l, d.hw, xg + c * d.hw, plane, col + c * kk * ld, ld);
    } else {
      im2col_channel(g, xg + c * d.hw, col + c * kk * ld, ld);
    }
  }
}

// y[r, :] += b[r] for `rows` rows of l values.
template <typename T>
void add_bias(T* y, const T* b, int64_t rows, int64_t l) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < l; ++j) y[r * l + j] += b[r];
}

// ---- chunks of images ------------------------------------------------------------------------
// Note [Convolution GEMM width]: one GEMM per image is narrow where the output is small (the
// conv-4 net's inner layers: l = 49, 16 or 4 columns, against k = 576 rows), and BLAS runs
// far below its peak there. So images are taken in chunks: the column matrices of a chunk's
// images sit side by side ([k, nb * l]) and one GEMM covers the chunk, at the price of a
// transposing copy of the output (or of gy) between [og, nb * l] and the NCHW layout. A chunk
// aims at kTargetCols columns, but no wider than lets its two buffers ([k, nb * l] columns and
// [og, nb * l] outputs) fill half of the core's L2 cache, so that the GEMM reads what im2col
// just wrote from L2, not from memory; and chunks are never fewer than the threads when the
// images allow, so that every thread has one. Measured on the 2 MiB-L2 machine of
// docs/performance.md, conv-4 inner layer [160, 64, 14, 14], one thread, forward + backward:
// 85 ms with 1024 columns (6 images, 3.8 MB of buffers), 74-76 ms with 2 images (1 MB).

constexpr int64_t kTargetCols = 512;

// Half the L2 cache of this machine (1 MiB where the system does not say).
int64_t chunk_budget_bytes() {
  static const int64_t budget = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return l2 > 0 ? static_cast<int64_t>(l2) / 2 : int64_t{1} << 20;
  }();
  return budget;
}

struct Chunks {
  int64_t per;    // images per chunk
  int64_t count;  // chunks
};
Chunks chunks_of(const Conv2dGeometry& g, const Dims& d, int threads, int64_t elem_bytes) {
  int64_t most = std::max<int64_t>(1, chunk_budget_bytes() / (elem_bytes * (d.k + d.og) * d.l));
  most = std::min(most, (kTargetCols + d.l - 1) / d.l);
  most = std::min(most, std::max<int64_t>(1, (g.n + threads - 1) / threads));
  most = std::min(most, g.n);
  // The busiest thread gets ceil(count / threads) chunks of `per` images: take the chunk size
  // (at most `most`) that makes that smallest, the widest on ties. A 5-image support set on 2
  // threads in chunks of 2 gives one thread 4 images and the other 1; chunks of 1 give 3 and 2.
  const auto busiest = [&](int64_t per) {
    const int64_t count = (g.n + per - 1) / per;
    return (count + threads - 1) / threads * per;
  };
  int64_t per = most;
  for (int64_t p = most - 1; p >= 1; --p)
    if (busiest(p) < busiest(per)) per = p;
  return {per, (g.n + per - 1) / per};
}

// The [rows, nb * l] matrix `m` (image i's block at columns i * l) to and from the NCHW rows
// of nb images: t[i][r][j] (image stride `img`) <-> m[r][i * l + j].
template <typename T>
void gather_rows(const T* t, int64_t img, int64_t rows, int64_t l, int64_t nb, T* m) {
  for (int64_t i = 0; i < nb; ++i)
    for (int64_t r = 0; r < rows; ++r)
      std::copy(t + i * img + r * l, t + i * img + (r + 1) * l, m + r * nb * l + i * l);
}
template <typename T>
void scatter_rows(const T* m, const T* bias, int64_t rows, int64_t l, int64_t nb, int64_t img,
                  T* t) {
  for (int64_t i = 0; i < nb; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      const T* src = m + r * nb * l + i * l;
      T* dst = t + i * img + r * l;
      if (bias) {
        for (int64_t j = 0; j < l; ++j) dst[j] = src[j] + bias[r];
      } else {
        std::copy(src, src + l, dst);
      }
    }
}

// The threading of every op (Note [Convolution threading]): OpenMP over chunks when there
// are several and the work pays, each thread with buffers of its own.
// The map of Note [Small-plane im2col] is built once per call and shared by the threads.
struct Plan {
  Chunks ch;
  bool parallel;
  PlaneMap map;  // empty unless the plane is small
};
template <typename T>
Plan plan_of(const Conv2dGeometry& g, const Dims& d, int64_t small_plane) {
  const int threads = omp_get_max_threads();
  const Chunks ch = chunks_of(g, d, threads, sizeof(T));
  const int64_t work = g.n * g.groups * d.og * d.k * d.l;
  Plan p{ch, ch.count > 1 && threads > 1 && work >= kParallelWork, {}};
  // A small output of a large plane (a long stride) would copy the whole plane per channel
  // for a few gathers: the map only where the plane is no larger than the column matrix.
  if (d.l <= small_plane && d.hw <= g.kh * g.kw * d.l && !pointwise(g)) p.map = plane_map(g);
  return p;
}
const PlaneMap* map_of(const Plan& p) {
  return p.map.src.empty() ? nullptr : &p.map;
}

// ---- the three ops ----------------------------------------------------------------------------

template <typename T>
void forward(const Conv2dGeometry& g, const T* x, const T* w, const T* b, T* y) {
  const Dims d = dims_of(g);
  const Plan p = plan_of<T>(g, d, kSmallPlaneIm2col);
  const PlaneMap* map = map_of(p);
  blas_sync_num_threads();
  BlasSingleThreadScope one_blas_thread(p.parallel);
#pragma omp parallel if (p.parallel)
  {
    const size_t cols = static_cast<size_t>(p.ch.per * d.l);
    std::vector<T> col, out;
    std::vector<T> plane(map ? static_cast<size_t>(d.hw + 1) : 0, T(0));  // ends with a 0
#pragma omp for schedule(static)
    for (int64_t c = 0; c < p.ch.count; ++c) {
      const int64_t n0 = c * p.ch.per, nb = std::min(p.ch.per, g.n - n0), ld = nb * d.l;
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const T* xg = x + (n0 * g.c + gr * d.cg) * d.hw;
        T* yg = y + (n0 * g.o + gr * d.og) * d.l;
        const T* bg = b ? b + gr * d.og : nullptr;
        const T* wg = w + gr * d.og * d.k;
        if (nb == 1) {
          // One image: the GEMM writes y in place (a 1x1 convolution reads x in place).
          const bool direct = pointwise(g);
          if (!direct) {
            col.resize(static_cast<size_t>(d.k) * cols);
            im2col_image(g, d, map, plane.data(), xg, col.data(), d.l);
          }
          // The bias is added after the product, as in the chunked path, so an image's
          // output does not depend on how the batch was chunked.
          gemm<T>(false, false, d.og, d.l, d.k, T(1), wg, d.k, direct ? xg : col.data(), d.l, T(0),
                  yg, d.l);
          if (bg) add_bias(yg, bg, d.og, d.l);
          continue;
        }
        col.resize(static_cast<size_t>(d.k) * cols);
        out.resize(static_cast<size_t>(d.og) * cols);
        for (int64_t i = 0; i < nb; ++i)
          im2col_image(g, d, map, plane.data(), xg + i * g.c * d.hw, col.data() + i * d.l, ld);
        // out = W[g] col: [og, k] x [k, nb * l], then out + b into the images' NCHW rows
        gemm<T>(false, false, d.og, ld, d.k, T(1), wg, d.k, col.data(), ld, T(0), out.data(), ld);
        scatter_rows(out.data(), bg, d.og, d.l, nb, g.o * d.l, yg);
      }
    }
  }
}

// Note [Strided input backward by phases]: with stride s > 1, the column route (col = W^T gy,
// then col2im) writes a column matrix kh * kw times the size of gy, from a GEMM whose
// reduction is only og long, and reads it back to scatter it: the strided conv-4's input
// backward took 1.65x its forward. But the pixels of gx fall into sh * sw phases by
// (ih + ph) mod sh and (iw + pw) mod sw, and in one phase (rh, rw) only the taps
// i = rh + t sh, j = rw + u sw reach a pixel, each from gy at (m - t, n - u), where
// ih = m sh + rh - ph, iw = n sw + rw - pw (unit dilation). So each phase is a unit-stride
// convolution of gy by a small kernel (th x tw taps):
//   gx[c, m, n] = sum over (o, t, u) of W[o, c, rh + t sh, rw + u sw] gy[o, m - t, n - u],
// one GEMM [cg, og th tw] x [og th tw, pixels of the phase], written straight into gx's pixels
// of that phase. Same multiply-adds as the forward, no kh * kw blow-up, every pixel written
// once (those no tap reaches, kernel smaller than the stride, get 0).
struct Phase {
  int64_t rh, rw;  // the residues
  int64_t th, tw;  // taps along h and w
  int64_t m0, mh;  // first m and how many (ih = m * sh + rh - ph in [0, h))
  int64_t n0, nw;  // first n and how many
  int64_t kp() const { return th * tw; }
  int64_t pixels() const { return mh * nw; }
};
int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
std::vector<Phase> phases_of(const Conv2dGeometry& g) {
  std::vector<Phase> r;
  for (int64_t rh = 0; rh < g.sh; ++rh)
    for (int64_t rw = 0; rw < g.sw; ++rw) {
      Phase p{rh, rw, 0, 0, 0, 0, 0, 0};
      p.th = rh < g.kh ? (g.kh - rh + g.sh - 1) / g.sh : 0;
      p.tw = rw < g.kw ? (g.kw - rw + g.sw - 1) / g.sw : 0;
      p.m0 = -floor_div(rh - g.ph, g.sh);  // the least m with m * sh + rh - ph >= 0
      p.mh = floor_div(g.h - 1 + g.ph - rh, g.sh) - p.m0 + 1;
      p.n0 = -floor_div(rw - g.pw, g.sw);
      p.nw = floor_div(g.w - 1 + g.pw - rw, g.sw) - p.n0 + 1;
      if (p.mh > 0 && p.nw > 0) r.push_back(p);
    }
  return r;
}

// Index tables of one phase: for each tap (t, u) and pixel e = (m, n) of the phase, the gy
// entry it reads (oh * ow + ow) or l (a zero appended to the plane); and the gx pixel of e.
struct PhaseMaps {
  std::vector<int32_t> src;  // [th * tw][pixels]
  std::vector<int32_t> dst;  // [pixels]
};
PhaseMaps phase_maps(const Conv2dGeometry& g, const Phase& p) {
  const int64_t l = g.oh * g.ow, px = p.pixels();
  PhaseMaps r;
  r.src.resize(static_cast<size_t>(p.kp() * px));
  r.dst.resize(static_cast<size_t>(px));
  for (int64_t m = 0; m < p.mh; ++m)
    for (int64_t n = 0; n < p.nw; ++n) {
      const int64_t e = m * p.nw + n;
      r.dst[static_cast<size_t>(e)] = static_cast<int32_t>(((p.m0 + m) * g.sh + p.rh - g.ph) * g.w +
                                                           (p.n0 + n) * g.sw + p.rw - g.pw);
      for (int64_t t = 0; t < p.th; ++t)
        for (int64_t u = 0; u < p.tw; ++u) {
          const int64_t oh = p.m0 + m - t, ow = p.n0 + n - u;
          const bool in = oh >= 0 && oh < g.oh && ow >= 0 && ow < g.ow;
          r.src[static_cast<size_t>((t * p.tw + u) * px + e)] =
              static_cast<int32_t>(in ? oh * g.ow + ow : l);
        }
    }
  return r;
}

// Where the phases pay: each phase's GEMM is narrower than the column route's one (pixels / (sh
// sw) columns per image), so they need outputs of at least 16 pixels and GEMMs of at least
// 1024 columns. Measured (bench_conv strided_input_backward, 3 x 3 stride 2, 64 channels, 2
// threads), column route -> phases: 75 images of 14 x 14 1984 -> 1711 us, 7 x 7 654 -> 610,
// 6 x 6 405 -> 479, 4 x 4 193 -> 313; 5 images of 14 x 14 156 -> 247.
bool use_phases(const Conv2dGeometry& g, const Dims& d) {
  return g.dh == 1 && g.dw == 1 && (g.sh > 1 || g.sw > 1) && d.l >= 16 && g.n * d.l >= 1024;
}

template <typename T>
void input_backward_phases(const Conv2dGeometry& g, const T* gy, const T* w, T* gx) {
  const Dims d = dims_of(g);
  std::vector<Phase> phases;  // those with taps; the others' pixels get 0
  int64_t reached = 0;        // gx pixels per plane that some tap reaches
  for (const Phase& p : phases_of(g))
    if (p.kp() > 0) {
      phases.push_back(p);
      reached += p.pixels();
    }
  const bool all_reached = reached == d.hw;
  // Per phase: its tables, its weights as [cg, og * th * tw] per group (gathered once per
  // call), and where its rows start in the shared column buffer.
  std::vector<PhaseMaps> maps;
  std::vector<std::vector<T>> wp(phases.size() * static_cast<size_t>(g.groups));
  std::vector<int64_t> row0;  // first column-buffer row of each phase, in units of taps * og
  int64_t taps = 0, most_pixels = 0;
  for (size_t q = 0; q < phases.size(); ++q) {
    const Phase& p = phases[q];
    maps.push_back(phase_maps(g, p));
    row0.push_back(taps);
    taps += p.kp();
    most_pixels = std::max(most_pixels, p.pixels());
    for (int64_t gr = 0; gr < g.groups; ++gr) {
      std::vector<T>& m = wp[q * static_cast<size_t>(g.groups) + static_cast<size_t>(gr)];
      m.resize(static_cast<size_t>(d.cg * d.og * p.kp()));
      for (int64_t c = 0; c < d.cg; ++c)
        for (int64_t o = 0; o < d.og; ++o)
          for (int64_t t = 0; t < p.th; ++t)
            for (int64_t u = 0; u < p.tw; ++u)
              m[static_cast<size_t>(c * d.og * p.kp() + (o * p.th + t) * p.tw + u)] =
                  w[(((gr * d.og + o) * d.cg + c) * g.kh + p.rh + t * g.sh) * g.kw + p.rw +
                    u * g.sw];
    }
  }
  // Chunks of images as the other ops take them, sized by this op's buffers: og * taps
  // column rows (as many entries as the forward's im2col) and cg output rows per pixel.
  const int threads = omp_get_max_threads();
  const Chunks ch = chunks_of(g, {d.cg, d.cg, d.og * taps, most_pixels, d.hw}, threads, sizeof(T));
  const int64_t work = g.n * g.groups * d.og * d.k * d.l;
  const bool parallel = ch.count > 1 && threads > 1 && work >= kParallelWork;
  blas_sync_num_threads();
  BlasSingleThreadScope one_blas_thread(parallel);
#pragma omp parallel if (parallel)
  {
    std::vector<T> col, out;
    std::vector<T> plane(static_cast<size_t>(d.l + 1), T(0));  // one gy plane, then a 0
#pragma omp for schedule(static)
    for (int64_t c = 0; c < ch.count; ++c) {
      const int64_t n0 = c * ch.per, nb = std::min(ch.per, g.n - n0);
      if (!all_reached) std::fill(gx + n0 * g.c * d.hw, gx + (n0 + nb) * g.c * d.hw, T(0));
      // Phase q's column matrix [og * th * tw, nb * pixels] starts at row og * row0[q]; each
      // phase's ld is its own nb * pixels.
      col.resize(static_cast<size_t>(d.og * taps * nb * most_pixels));
      out.resize(static_cast<size_t>(d.cg * nb * most_pixels));
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        // col[(o, t, u), (i, e)] = gy[i, o] at the entry tap (t, u) of pixel e reads
        for (int64_t i = 0; i < nb; ++i)
          for (int64_t o = 0; o < d.og; ++o) {
            const T* gyo = gy + (((n0 + i) * g.o + gr * d.og + o) * d.l);
            std::copy(gyo, gyo + d.l, plane.data());
            for (size_t q = 0; q < phases.size(); ++q) {
              const Phase& p = phases[q];
              const int64_t px = p.pixels(), ld = nb * px;
              T* base = col.data() + d.og * row0[q] * nb * most_pixels;
              for (int64_t tu = 0; tu < p.kp(); ++tu) {
                const int32_t* __restrict src = maps[q].src.data() + tu * px;
                T* __restrict row = base + (o * p.kp() + tu) * ld + i * px;
                for (int64_t e = 0; e < px; ++e) row[e] = plane[static_cast<size_t>(src[e])];
              }
            }
          }
        for (size_t q = 0; q < phases.size(); ++q) {
          const Phase& p = phases[q];
          const int64_t px = p.pixels(), ld = nb * px, rows = d.og * p.kp();
          const T* cq = col.data() + d.og * row0[q] * nb * most_pixels;
          const std::vector<T>& wm =
              wp[q * static_cast<size_t>(g.groups) + static_cast<size_t>(gr)];
          // out = Wp col: [cg, og th tw] x [og th tw, nb * pixels]
          gemm<T>(false, false, d.cg, ld, rows, T(1), wm.data(), rows, cq, ld, T(0), out.data(),
                  ld);
          // into gx at the phase's pixels
          const int32_t* __restrict dst = maps[q].dst.data();
          for (int64_t i = 0; i < nb; ++i)
            for (int64_t ci = 0; ci < d.cg; ++ci) {
              T* __restrict xp = gx + ((n0 + i) * g.c + gr * d.cg + ci) * d.hw;
              const T* __restrict sr = out.data() + ci * ld + i * px;
              for (int64_t e = 0; e < px; ++e) xp[dst[e]] = sr[e];
            }
        }
      }
    }
  }
}

template <typename T>
void input_backward(const Conv2dGeometry& g, const T* gy, const T* w, T* gx) {
  const Dims d = dims_of(g);
  if (use_phases(g, d)) {
    input_backward_phases(g, gy, w, gx);  // Note [Strided input backward by phases]
    return;
  }
  const Plan p = plan_of<T>(g, d, kSmallPlaneCol2im);
  const PlaneMap* map = map_of(p);
  blas_sync_num_threads();
  BlasSingleThreadScope one_blas_thread(p.parallel);
#pragma omp parallel if (p.parallel)
  {
    const size_t cols = static_cast<size_t>(p.ch.per * d.l);
    std::vector<T> col, gyc;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < p.ch.count; ++c) {
      const int64_t n0 = c * p.ch.per, nb = std::min(p.ch.per, g.n - n0), ld = nb * d.l;
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        T* gxg = gx + (n0 * g.c + gr * d.cg) * d.hw;
        const T* gyg = gy + (n0 * g.o + gr * d.og) * d.l;
        const T* wg = w + gr * d.og * d.k;
        if (nb == 1 && pointwise(g)) {
          // A 1x1 convolution's column matrix is gx itself.
          gemm<T>(true, false, d.k, d.l, d.og, T(1), wg, d.k, gyg, d.l, T(0), gxg, d.l);
          continue;
        }
        col.resize(static_cast<size_t>(d.k) * cols);
        const T* gm = gyg;  // gy of the chunk as [og, nb * l]
        if (nb > 1) {
          gyc.resize(static_cast<size_t>(d.og) * cols);
          gather_rows(gyg, g.o * d.l, d.og, d.l, nb, gyc.data());
          gm = gyc.data();
        }
        // col = W[g]^T gy: [k, og] x [og, nb * l]; col2im adds it back to the pixels
        gemm<T>(true, false, d.k, ld, d.og, T(1), wg, d.k, gm, ld, T(0), col.data(), ld);
        const int64_t kk = g.kh * g.kw;
        for (int64_t i = 0; i < nb; ++i) {
          T* gxi = gxg + i * g.c * d.hw;
          if (map) {
            for (int64_t ci = 0; ci < d.cg; ++ci)
              col2im_channel_mapped(*map, d.hw, col.data() + ci * kk * ld + i * d.l, ld,
                                    gxi + ci * d.hw);
            continue;
          }
          std::fill(gxi, gxi + d.cg * d.hw, T(0));
          for (int64_t ci = 0; ci < d.cg; ++ci)
            col2im_channel(g, col.data() + ci * kk * ld + i * d.l, ld, gxi + ci * d.hw);
        }
      }
    }
  }
}

template <typename T>
void weight_backward(const Conv2dGeometry& g, const T* gy, const T* x, T* gw) {
  const Dims d = dims_of(g);
  const Plan p = plan_of<T>(g, d, kSmallPlaneIm2col);
  const PlaneMap* map = map_of(p);
  const int64_t wsize = g.o * d.k;
  blas_sync_num_threads();
  // Each thread sums its chunks into a private copy of gw, kept transposed (each group's
  // [og, k] block as [k, og]); the copies are added after, in thread order (deterministic for a
  // given thread count), and transposed back on the way. Why transposed: gW[g]^T = col gy^T
  // is the product [k, nb * l] x [nb * l, og], which OpenBLAS runs 8-16% faster than gy col^T
  // ([og, nb * l] x [nb * l, k], 123 against 133-139 GFLOP/s on one core for the conv-4 inner
  // layer's chunks); the transposes are of the weight gradient, 37K values per group.
  const int threads = p.parallel ? omp_get_max_threads() : 1;
  BlasSingleThreadScope one_blas_thread(p.parallel);  // Note [BLAS inside OpenMP loops]
  std::vector<T> partial(static_cast<size_t>(threads * wsize), T(0));
  int used = 1;
#pragma omp parallel if (p.parallel)
  {
    const size_t cols = static_cast<size_t>(p.ch.per * d.l);
    std::vector<T> col, gyc;
    std::vector<T> plane(map ? static_cast<size_t>(d.hw + 1) : 0, T(0));  // ends with a 0
    T* mine = partial.data() + omp_get_thread_num() * wsize;
#pragma omp single
    used = omp_get_num_threads();
#pragma omp for schedule(static)
    for (int64_t c = 0; c < p.ch.count; ++c) {
      const int64_t n0 = c * p.ch.per, nb = std::min(p.ch.per, g.n - n0), ld = nb * d.l;
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const T* xg = x + (n0 * g.c + gr * d.cg) * d.hw;
        const T* gyg = gy + (n0 * g.o + gr * d.og) * d.l;
        const T* cm = xg;  // the chunk's column matrix [k, nb * l]
        if (nb > 1 || !pointwise(g)) {
          col.resize(static_cast<size_t>(d.k) * cols);
          for (int64_t i = 0; i < nb; ++i)
            im2col_image(g, d, map, plane.data(), xg + i * g.c * d.hw, col.data() + i * d.l, ld);
          cm = col.data();
        }
        const T* gm = gyg;
        if (nb > 1) {
          gyc.resize(static_cast<size_t>(d.og) * cols);
          gather_rows(gyg, g.o * d.l, d.og, d.l, nb, gyc.data());
          gm = gyc.data();
        }
        // gW[g]^T += col gy^T: [k, nb * l] x [nb * l, og]
        gemm<T>(false, true, d.k, d.og, ld, T(1), cm, ld, gm, ld, T(1), mine + gr * d.og * d.k,
                d.og);
      }
    }
  }
  // Row j of group gr's transposed block, summed over the threads, is column j of its gw block.
  parallel_for(g.groups * d.k, used > 1 && wsize * used >= kParallelWork, [&](int64_t r) {
    const int64_t gr = r / d.k, j = r % d.k;
    const T* src = partial.data() + gr * d.og * d.k + j * d.og;
    T* dst = gw + gr * d.og * d.k + j;
    for (int64_t o = 0; o < d.og; ++o) {
      T s = src[o];
      for (int t = 1; t < used; ++t) s += src[t * wsize + o];
      dst[o * d.k] = s;
    }
  });
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
