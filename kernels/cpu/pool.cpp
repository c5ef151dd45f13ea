// The CPU pooling kernels (kernels/cpu/pool.h): one thread per group of planes, a window loop
// per output element. A window is clipped to the input once per output row and column, so the
// inner loops carry no bounds tests.
#include "kernels/cpu/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

template <typename T>
void max_forward(const Pool2dGeometry& g, const T* x, T* y, int64_t* idx) {
  const int64_t in = g.h * g.w, out = g.oh * g.ow;
#pragma omp parallel for schedule(static) if (parallel_over_planes(g))
  for (int64_t p = 0; p < g.planes; ++p) {
    const T* xp = x + p * in;
    T* yp = y + p * out;
    int64_t* ip = idx + p * out;
    for (int64_t oh = 0; oh < g.oh; ++oh) {
      const Window wh = window(oh, g.kh, g.sh, g.ph, g.h);
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        const Window ww = window(ow, g.kw, g.sw, g.pw, g.w);
        T best = -std::numeric_limits<T>::infinity();
        int64_t at = wh.start * g.w + ww.start;
        for (int64_t h = wh.start; h < wh.end; ++h)
          for (int64_t w = ww.start; w < ww.end; ++w) {
            const T v = xp[h * g.w + w];
            if (v > best || std::isnan(v)) {  // NaN propagates, as in PyTorch
              best = v;
              at = h * g.w + w;
            }
          }
        yp[oh * g.ow + ow] = best;
        ip[oh * g.ow + ow] = at;
      }
    }
  }
}

template <typename T>
void max_backward(const Pool2dGeometry& g, const T* gy, const int64_t* idx, T* gx) {
  const int64_t in = g.h * g.w, out = g.oh * g.ow;
#pragma omp parallel for schedule(static) if (parallel_over_planes(g))
  for (int64_t p = 0; p < g.planes; ++p) {
    T* gp = gx + p * in;
    const T* yp = gy + p * out;
    const int64_t* ip = idx + p * out;
    std::fill(gp, gp + in, T(0));
    for (int64_t e = 0; e < out; ++e) gp[ip[e]] += yp[e];
  }
}

template <typename T>
void avg_forward(const Pool2dGeometry& g, bool count_include_pad, const T* x, T* y) {
  const int64_t in = g.h * g.w, out = g.oh * g.ow;
#pragma omp parallel for schedule(static) if (parallel_over_planes(g))
  for (int64_t p = 0; p < g.planes; ++p) {
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
  }
}

template <typename T>
void avg_backward(const Pool2dGeometry& g, bool count_include_pad, const T* gy, T* gx) {
  const int64_t in = g.h * g.w, out = g.oh * g.ow;
#pragma omp parallel for schedule(static) if (parallel_over_planes(g))
  for (int64_t p = 0; p < g.planes; ++p) {
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
  }
}

}  // namespace

void max_pool2d_forward(DType dtype, const Pool2dGeometry& g, const void* x, void* y,
                        int64_t* idx) {
  MG_DISPATCH_FLOAT(dtype, [&] {
    max_forward<scalar_t>(g, static_cast<const scalar_t*>(x), static_cast<scalar_t*>(y), idx);
  });
}

bool max_pool2d_backward(DType dtype, const Pool2dGeometry& g, const void* gy, const int64_t* idx,
                         void* gx, int64_t* bad) {
  // Every index is checked before anything is written (the first bad one in memory order).
  const int64_t n = g.planes * g.oh * g.ow, in = g.h * g.w;
  int64_t first = n;
#pragma omp parallel for schedule(static) reduction(min : first) if (n >= kParallelWork)
  for (int64_t e = 0; e < n; ++e)
    if ((idx[e] < 0 || idx[e] >= in) && e < first) first = e;
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
