// The CPU pooling kernels (kernels/cpu/pool.h): one thread per group of planes, a window loop
// per output element. A window is clipped to the input once per output row and column, so the
// inner loops carry no bounds tests.
#include "kernels/cpu/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace metagrad::kernels::cpu {

namespace {

constexpr int64_t kParallelWork = int64_t{1} << 15;  // elements touched before threads pay

// The window of output position o along one dim: [start, end) in input coordinates, clipped
// to the input, and `padded` = its size clipped to the padded input (count_include_pad).
struct Window {
  int64_t start, end, padded;
};
Window window(int64_t o, int64_t k, int64_t s, int64_t p, int64_t n) {
  const int64_t lo = o * s - p;
  const int64_t hi_padded = std::min(lo + k, n + p);
  return {std::max<int64_t>(lo, 0), std::min(lo + k, n), hi_padded - lo};
}

bool parallel_over_planes(const Pool2dGeometry& g) {
  return g.planes > 1 && g.planes * std::max(g.h * g.w, g.oh * g.ow * g.kh * g.kw) >= kParallelWork;
}

// Output positions o in [0, n_out) whose input coordinate o * s + off lies in [0, n_in).
void valid_range(int64_t off, int64_t s, int64_t n_in, int64_t n_out, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + s - 1) / s;
  hi = off >= n_in ? 0 : (n_in - 1 - off) / s + 1;
  lo = std::min(lo, n_out);
  hi = std::clamp(hi, lo, n_out);
}

// Note [Max pooling loop order]: a window-at-a-time loop compares each element with the
// running maximum, a branch that random data mispredicts about half the time, or a chain of
// dependent selects. Instead a whole output row is done at once: for each window offset
// (h, j), in the window's row-major order (so ties keep the first position), the elements at
// that offset of every window of the row are copied into a contiguous buffer, and each
// output takes its element if it is larger (or NaN, which propagates as in PyTorch). That
// loop over the row is branch-free and independent from output to output, so it vectorises
// (the running index uses an integer type as wide as T for that: int32 for float when the
// plane has fewer than 2^31 elements). Measured: 160 x 64 planes of 28 x 28, 2 x 2 windows,
// float32, one thread: 37 ms window-at-a-time, 13 to 17 ms this way.
// b[i], a[i] = v[i], q[i] where v[i] > b[i] or v[i] is NaN (Note [Max pooling loop order]).
template <typename T, typename I>
void take_larger(int64_t n, const T* __restrict v, const I* __restrict q, T* __restrict b,
                 I* __restrict a) {
  for (int64_t i = 0; i < n; ++i) {
    // every load unconditional: a select of two loaded values is all the vectoriser accepts
    const T vi = v[i], bi = b[i];
    const I qi = q[i], ai = a[i];
    const bool take = (vi > bi) | (vi != vi);
    b[i] = take ? vi : bi;
    a[i] = take ? qi : ai;
  }
}

// Note [2 x 2 max pooling]: the window of most CNNs (kernel 2, stride 2, no padding, every
// window inside the input) gets a loop of its own: each output reads its four elements
// straight from the two input rows, in the window's row-major order, with the take rule of
// take_larger, and writes its value and index directly; no buffers, no per-row copies. Same
// values and indices as the general loop. Measured: [160, 64, 28, 28] float32, one thread,
// 11.2 ms the general loop, 3.5 ms this one.
bool is_2x2_window(const Pool2dGeometry& g) {
  return g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 &&
         2 * g.oh <= g.h && 2 * g.ow <= g.w;
}

// One output row of the 2 x 2 window: rows r0, r1 of the input, n outputs; `top` is the
// index of r0[0] in its plane, w the plane's width. A function of its own so that the
// restrict-qualified parameters let the loop vectorise (and read n and w once).
template <typename T>
void max_row_2x2(const T* __restrict r0, const T* __restrict r1, int64_t n, int64_t top, int64_t w,
                 T* __restrict y, int64_t* __restrict idx) {
  for (int64_t o = 0; o < n; ++o) {
    // k = the position in the window (0..3), 32-bit so that it vectorises beside float
    const T v0 = r0[2 * o], v1 = r0[2 * o + 1], v2 = r1[2 * o], v3 = r1[2 * o + 1];
    T m = v0;
    int32_t k = 0;
    bool take = (v1 > m) | (v1 != v1);  // NaN propagates, ties keep the first
    m = take ? v1 : m;
    k = take ? 1 : k;
    take = (v2 > m) | (v2 != v2);
    m = take ? v2 : m;
    k = take ? 2 : k;
    take = (v3 > m) | (v3 != v3);
    m = take ? v3 : m;
    k = take ? 3 : k;
    y[o] = m;
    idx[o] = top + 2 * o + (k & 1) + (k >> 1) * w;
  }
}

template <typename T>
void max_forward_2x2(const Pool2dGeometry& g, const T* x, T* y, int64_t* idx) {
  const int64_t in = g.h * g.w, out = g.oh * g.ow, w = g.w, ow = g.ow, oh_n = g.oh;
  parallel_for(g.planes, parallel_over_planes(g), [&](int64_t p) {
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      const int64_t top = 2 * oh * w;  // the window row's first input pixel, in the plane
      max_row_2x2(x + p * in + top, x + p * in + top + w, ow, top, w, y + p * out + oh * ow,
                  idx + p * out + oh * ow);
    }
  });
}

template <typename T, typename I>
void max_forward(const Pool2dGeometry& g, const T* x, T* y, int64_t* idx) {
  if (is_2x2_window(g)) return max_forward_2x2(g, x, y, idx);
  const int64_t in = g.h * g.w, out = g.oh * g.ow;
  parallel_region(parallel_over_planes(g), [&](int64_t t, int64_t nt) {
    std::vector<T> best(static_cast<size_t>(g.ow)), vals(static_cast<size_t>(g.ow));
    std::vector<I> at(static_cast<size_t>(g.ow)), pos(static_cast<size_t>(g.ow));
    for (int64_t p = g.planes * t / nt; p < g.planes * (t + 1) / nt; ++p) {
      const T* xp = x + p * in;
      for (int64_t oh = 0; oh < g.oh; ++oh) {
        const Window wh = window(oh, g.kh, g.sh, g.ph, g.h);
        for (int64_t ow = 0; ow < g.ow; ++ow) {  // start from each window's first position
          best[ow] = -std::numeric_limits<T>::infinity();
          at[ow] = static_cast<I>(wh.start * g.w + std::max<int64_t>(ow * g.sw - g.pw, 0));
        }
        // Only the offsets j that land inside the row for some output (ow sw + j - pw in
        // [0, w)): a kernel far wider than the input would loop over padding otherwise.
        const int64_t j_lo = std::max<int64_t>(0, g.pw - (g.ow - 1) * g.sw);
        const int64_t j_hi = std::min(g.kw, g.pw + g.w);
        for (int64_t h = wh.start; h < wh.end; ++h) {
          const T* xr = xp + h * g.w;
          for (int64_t j = j_lo; j < j_hi; ++j) {
            const int64_t off = j - g.pw;
            int64_t lo, hi;
            valid_range(off, g.sw, g.w, g.ow, lo, hi);
            for (int64_t ow = lo; ow < hi; ++ow) {
              vals[ow] = xr[ow * g.sw + off];
              pos[ow] = static_cast<I>(h * g.w + ow * g.sw + off);
            }
            take_larger(hi - lo, vals.data() + lo, pos.data() + lo, best.data() + lo,
                        at.data() + lo);
          }
        }
        std::copy(best.begin(), best.end(), y + p * out + oh * g.ow);
        std::copy(at.begin(), at.end(), idx + p * out + oh * g.ow);
      }
    }
  });
}

template <typename T>
void max_backward(const Pool2dGeometry& g, const T* gy, const int64_t* idx, T* gx) {
  const int64_t in = g.h * g.w, out = g.oh * g.ow;
  parallel_for(g.planes, parallel_over_planes(g), [&](int64_t p) {
    T* gp = gx + p * in;
    const T* yp = gy + p * out;
    const int64_t* ip = idx + p * out;
    std::fill(gp, gp + in, T(0));
    for (int64_t e = 0; e < out; ++e) gp[ip[e]] += yp[e];
  });
}

template <typename T>
void avg_forward(const Pool2dGeometry& g, bool count_include_pad, const T* x, T* y) {
  const int64_t in = g.h * g.w, out = g.oh * g.ow;
  parallel_for(g.planes, parallel_over_planes(g), [&](int64_t p) {
    const T* xp = x + p * in;
    T* yp = y + p * out;
    for (int64_t oh = 0; oh < g.oh; ++oh) {
      const Window wh = window(oh, g.kh, g.sh, g.ph, g.h);
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        const Window ww = window(ow, g.kw, g.sw, g.pw, g.w);
        const int64_t div =
            count_include_pad ? wh.padded * ww.padded : (wh.end - wh.start) * (ww.end - ww.start);
        T s = 0;
        for (int64_t h = wh.start; h < wh.end; ++h)
          for (int64_t w = ww.start; w < ww.end; ++w) s += xp[h * g.w + w];
        yp[oh * g.ow + ow] = s / static_cast<T>(div);
      }
    }
  });
}

template <typename T>
void avg_backward(const Pool2dGeometry& g, bool count_include_pad, const T* gy, T* gx) {
  const int64_t in = g.h * g.w, out = g.oh * g.ow;
  parallel_for(g.planes, parallel_over_planes(g), [&](int64_t p) {
    T* gp = gx + p * in;
    const T* yp = gy + p * out;
    std::fill(gp, gp + in, T(0));
    for (int64_t oh = 0; oh < g.oh; ++oh) {
      const Window wh = window(oh, g.kh, g.sh, g.ph, g.h);
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        const Window ww = window(ow, g.kw, g.sw, g.pw, g.w);
        const int64_t div =
            count_include_pad ? wh.padded * ww.padded : (wh.end - wh.start) * (ww.end - ww.start);
        const T v = yp[oh * g.ow + ow] / static_cast<T>(div);
        for (int64_t h = wh.start; h < wh.end; ++h)
          for (int64_t w = ww.start; w < ww.end; ++w) gp[h * g.w + w] += v;
      }
    }
  });
}

}  // namespace

void max_pool2d_forward(DType dtype, const Pool2dGeometry& g, const void* x, void* y,
                        int64_t* idx) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    const auto* xs = static_cast<const scalar_t*>(x);
    auto* ys = static_cast<scalar_t*>(y);
    // Note [Max pooling loop order]: an index as wide as the values, when it fits
    if (sizeof(scalar_t) == 4 && g.h * g.w <= std::numeric_limits<int32_t>::max())
      max_forward<scalar_t, int32_t>(g, xs, ys, idx);
    else
      max_forward<scalar_t, int64_t>(g, xs, ys, idx);
  });
}

bool max_pool2d_backward(DType dtype, const Pool2dGeometry& g, const void* gy, const int64_t* idx,
                         void* gx, int64_t* bad) {
  // Every index is checked before anything is written (the first bad one in memory order).
  const int64_t n = g.planes * g.oh * g.ow, in = g.h * g.w;
  int64_t first = n;
  if (n >= kParallelWork) {  // Note [Serial loops skip OpenMP]
#pragma omp parallel for schedule(static) reduction(min : first)
    for (int64_t e = 0; e < n; ++e)
      if ((idx[e] < 0 || idx[e] >= in) && e < first) first = e;
  } else {
    for (int64_t e = 0; e < n && first == n; ++e)
      if (idx[e] < 0 || idx[e] >= in) first = e;
  }
  if (first < n) {
    *bad = idx[first];
    return false;
  }
  MG_DISPATCH_FLOAT(dtype, [&] {
    max_backward<scalar_t>(g, static_cast<const scalar_t*>(gy), idx, static_cast<scalar_t*>(gx));
  });
  return true;
}

void avg_pool2d_forward(DType dtype, const Pool2dGeometry& g, bool count_include_pad, const void* x,
                        void* y) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    avg_forward<scalar_t>(g, count_include_pad, static_cast<const scalar_t*>(x),
                          static_cast<scalar_t*>(y));
  });
}

void avg_pool2d_backward(DType dtype, const Pool2dGeometry& g, bool count_include_pad,
                         const void* gy, void* gx) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    avg_backward<scalar_t>(g, count_include_pad, static_cast<const scalar_t*>(gy),
                           static_cast<scalar_t*>(gx));
  });
}

}  // namespace metagrad::kernels::cpu
