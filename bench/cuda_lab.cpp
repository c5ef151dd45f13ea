// cuda_lab: the CUDA kernel lab. One plain program (no Google Benchmark: the GPU machine does
// not have it) that measures every CUDA kernel family against the card's own measured copy
// bandwidth and prints one markdown table:
//   family | op | shape | ms | GB/s or TFLOP/s | % of copy BW | check
//
// - The ceiling comes first: a 1 GiB device-to-device copy (cudaMemcpy and Tensor::copy_),
//   bytes read + written.
// - Memory-bound ops report GB/s from the bytes they must move at the least (each input read
//   once, each output written once) and that as a % of the copy ceiling. A two-pass kernel
//   (var, softmax as a composition) therefore shows below 100% by design.
// - Matrix products and convolutions report TFLOP/s (2 M N K, and its analogue).
// - Every row is checked once against the CPU backend before it is timed ("check": the
//   largest relative error, ok when within the row's tolerance), so a fast but wrong kernel
//   is visible. Checks look at both ends of a big result (where tiling and tail bugs show) or
//   at a smaller instance; sums and products are compared against float64 on the CPU.
// - Times are medians over repeated calls, each timed between two cuda::Events on the current
//   stream, after warm-up calls. The host is free to run ahead: only an op that must wait
//   (an index check) pays its host round trip, and that cost is real.
//
// Usage: cuda_lab [--quick]   (--quick: small sizes and few repeats, a smoke run).
// The full run takes well under a minute on an H100 and needs about 8 GiB of GPU memory and
// about 8 GiB of host memory (CPU copies of the two big inputs and a float64 reference sum).
#include <metagrad/metagrad.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/runtime.h"

using namespace metagrad;
namespace F = metagrad::nn::functional;

namespace {

// ---- configuration -----------------------------------------------------------------------

struct Config {
  bool quick = false;
  int warmup = 3;
  int reps = 20;
  // Elementwise, reduction and indexing inputs are [side, side] float32: 16384^2 floats are
  // 1 GiB, enough to fill an H100 and far beyond its 50 MB L2.
  int64_t side = 16384;
  int64_t soft_rows = 16384, soft_cols = 4096;  // softmax / log_softmax input
  int64_t pool_n = 64;                          // pooling input [pool_n, 64, 112, 112]
  int64_t conv_n = 64;                          // conv input [conv_n, 64, 56, 56]
  int64_t mm_n = 8192;                          // float32 [n, n] @ [n, n]
  int64_t mm64_n = 4096;                        // float64 [n, n] @ [n, n]
  int64_t bmm_b = 64, bmm_n = 512;              // float32 [b, n, n] @ [b, n, n]
  int64_t check_rows = 64;                      // rows checked at each end of a big result
};

Config quick_config() {
  Config c;
  c.quick = true;
  c.warmup = 1;
  c.reps = 5;
  c.side = 4096;
  c.soft_rows = 4096;
  c.soft_cols = 1024;
  c.pool_n = 8;
  c.conv_n = 8;
  c.mm_n = 2048;
  c.mm64_n = 1024;
  c.bmm_b = 16;
  c.bmm_n = 256;
  c.check_rows = 16;
  return c;
}

const Device kCuda = Device::cuda();
const Device kCpu = Device::cpu();

// ---- results --------------------------------------------------------------------------------

struct Row {
  std::string family, op, shape;
  double ms = NAN;
  double rate = NAN;     // GB/s, or TFLOP/s when compute
  bool compute = false;  // a FLOP-bound row
  std::string check;
};

std::vector<Row> g_rows;
double g_copy_gbs = NAN;  // the measured ceiling: best device-to-device copy

// A check's outcome: the largest error seen and the most the row allows.
struct CheckResult {
  double err = NAN;
  double tol = 0;
};

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string check_text(const CheckResult& c) {
  if (std::isnan(c.err)) return "n/a";
  if (c.err <= c.tol) return "ok " + fmt("%.1e", c.err);
  return "FAIL " + fmt("%.1e", c.err) + " (tol " + fmt("%.0e", c.tol) + ")";
}

std::string shorten(std::string s, size_t n) {
  for (char& ch : s)
    if (ch == '\n' || ch == '|') ch = ' ';
  if (s.size() > n) s = s.substr(0, n) + "...";
  return s;
}

std::string pct_text(const Row& r) {
  if (r.compute || std::isnan(r.rate) || std::isnan(g_copy_gbs)) return "-";
  return fmt("%.1f", 100.0 * r.rate / g_copy_gbs);
}

std::string rate_text(const Row& r) {
  if (std::isnan(r.rate)) return "-";
  return r.compute ? fmt("%.1f TFLOP/s", r.rate) : fmt("%.0f GB/s", r.rate);
}

// ---- comparison against the CPU -------------------------------------------------------------

// The largest error of `got` against `want` (same shape; any device and dtype). Each element's
// error is taken relative to max(|want_i|, floor * max|want|): floor = 1e-3 judges
// elementwise results by relative error (values near zero against a thousandth of the
// largest); floor = 1 is the normwise error that bounds the rounding of sums and products.
// A NaN or an infinity must be matched exactly.
double max_err(const Tensor& got, const Tensor& want, double floor) {
  if (got.shape() != want.shape())
    throw std::runtime_error("check: result shape " + shape_str(got.shape()) +
                             " but reference shape " + shape_str(want.shape()));
  const std::vector<double> g = got.to_vector<double>();
  const std::vector<double> w = want.to_vector<double>();
  double scale = 0;
  for (double v : w)
    if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
  const double min_denom = std::max(floor * scale, 1e-300);
  double err = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(g[i]) || std::isnan(w[i])) {
      if (!(std::isnan(g[i]) && std::isnan(w[i]))) return INFINITY;
      continue;
    }
    if (std::isinf(g[i]) || std::isinf(w[i])) {
      if (g[i] != w[i]) return INFINITY;
      continue;
    }
    err = std::max(err, std::abs(g[i] - w[i]) / std::max(std::abs(w[i]), min_denom));
  }
  return err;
}

constexpr double kElem = 1e-3;  // floor for elementwise comparisons
constexpr double kNorm = 1.0;   // floor for normwise comparisons

// The first and last k entries of t along dim, as one contiguous CPU tensor (all of t when it
// has no more than 2k there).
Tensor ends(const Tensor& t, int64_t dim, int64_t k) {
  const int64_t n = t.size(dim);
  if (n <= 2 * k) return t.to(kCpu).contiguous();
  return cat({t.narrow(dim, 0, k).to(kCpu), t.narrow(dim, n - k, k).to(kCpu)}, dim);
}

Tensor f64(const Tensor& t) {
  return t.to(DType::Float64);
}

// ---- timing ---------------------------------------------------------------------------------

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The median device time of one call of `op`, in ms. A slow op (a kernel far off its mark)
// gets fewer calls, so that one bad row cannot blow the lab's time budget: the repeats are
// capped at about kRowBudgetMs of device time, with at least 3.
constexpr double kRowBudgetMs = 1000;

double time_ms(const Config& cfg, const std::function<void()>& op) {
  cuda::Event first_start, first_stop;
  first_start.record();
  op();  // the first warm-up call, timed to size the rest
  first_stop.record();
  first_stop.synchronize();
  const double first = first_start.elapsed_ms(first_stop);
  const int budget_reps = static_cast<int>(kRowBudgetMs / std::max(first, 1e-3));
  const int reps = std::clamp(budget_reps, 3, cfg.reps);
  const int warmup = first > 100 ? 0 : cfg.warmup - 1;
  for (int i = 0; i < warmup; ++i) op();
  std::vector<cuda::Event> start(static_cast<size_t>(reps));
  std::vector<cuda::Event> stop(static_cast<size_t>(reps));
  for (size_t i = 0; i < start.size(); ++i) {
    start[i].record();
    op();
    stop[i].record();
  }
  stop.back().synchronize();
  std::vector<double> ms;
  for (size_t i = 0; i < start.size(); ++i) ms.push_back(start[i].elapsed_ms(stop[i]));
  return median(ms);
}

// One row: the check once (which also warms the op up: cuDNN's algorithm choice, the
// allocator's cache), then the timing. `amount` is the bytes the op must move, or its FLOPs
// when `compute`. An exception becomes the row's note and the lab goes on.
void measure(const Config& cfg, Row row, double amount, const std::function<CheckResult()>& check,
             const std::function<void()>& op) {
  std::string error;
  try {
    row.check = check_text(check());
  } catch (const std::exception& e) {
    error = e.what();
    row.check = "ERROR " + shorten(error, 70);
  }
  try {
    row.ms = time_ms(cfg, op);
    row.rate = row.compute ? amount / (row.ms * 1e-3) / 1e12 : amount / (row.ms * 1e-3) / 1e9;
  } catch (const std::exception& e) {
    if (error.empty()) row.check = "ERROR " + shorten(e.what(), 70);
    if (error != e.what()) error += (error.empty() ? "" : " / ") + std::string(e.what());
  }
  std::printf("  %-8s %-26s %-34s %9.3f ms %16s %6s%%  %s\n", row.family.c_str(), row.op.c_str(),
              row.shape.c_str(), row.ms, rate_text(row).c_str(), pct_text(row).c_str(),
              row.check.c_str());
  if (!error.empty()) std::printf("           error: %s\n", error.c_str());
  std::fflush(stdout);
  g_rows.push_back(std::move(row));
}

Row bw_row(std::string family, std::string op, std::string shape) {
  return Row{std::move(family), std::move(op), std::move(shape)};
}

Row flop_row(std::string family, std::string op, std::string shape) {
  Row r{std::move(family), std::move(op), std::move(shape)};
  r.compute = true;
  return r;
}

Tensor uniform_cuda(const Shape& shape, DType dtype = DType::Float32) {
  Tensor t = empty(shape, TensorOptions(dtype).device(kCuda));
  uniform_(t, -1.0, 1.0);
  return t;
}

// Frees what the previous family cached, so each starts from the same memory state.
void between_families() {
  cuda::synchronize();
  cuda::empty_cache();
}

// TF32 on or off for a scope.
class Tf32Scope {
 public:
  explicit Tf32Scope(bool on) : prev_(cuda::allow_tf32()) { cuda::set_allow_tf32(on); }
  ~Tf32Scope() { cuda::set_allow_tf32(prev_); }
  Tf32Scope(const Tf32Scope&) = delete;
  Tf32Scope& operator=(const Tf32Scope&) = delete;

 private:
  bool prev_;
};

constexpr double kF32 = 4, kF64 = 8, kI64 = 8, kBool = 1;  // bytes per element

// ---- the ceiling: device-to-device copy --------------------------------------------------------

void run_copy(const Config& cfg) {
  const int64_t n = cfg.side * cfg.side;
  const std::string shape = shape_str({n}) + " f32";
  Tensor src = uniform_cuda({n});
  Tensor dst = empty({n}, TensorOptions().device(kCuda));
  const double bytes = 2 * kF32 * static_cast<double>(n);
  const int64_t k = cfg.check_rows * 1024;
  auto same = [&]() -> CheckResult {
    return {max_err(ends(dst, 0, k), ends(src, 0, k), kElem), 0};
  };
  measure(
      cfg, bw_row("copy", "memcpy_device_to_device", shape), bytes,
      [&] {
        dst.zero_();
        cuda::memcpy_device_to_device(dst.raw_data(), src.raw_data(), static_cast<size_t>(n) * 4);
        return same();
      },
      [&] {
        cuda::memcpy_device_to_device(dst.raw_data(), src.raw_data(), static_cast<size_t>(n) * 4);
      });
  measure(
      cfg, bw_row("copy", "copy_", shape), bytes,
      [&] {
        dst.zero_();
        dst.copy_(src);
        return same();
      },
      [&] { dst.copy_(src); });
  for (const Row& r : g_rows)
    if (r.family == "copy" && !std::isnan(r.rate))
      g_copy_gbs = std::isnan(g_copy_gbs) ? r.rate : std::max(g_copy_gbs, r.rate);
  std::printf("  copy ceiling: %.0f GB/s\n", g_copy_gbs);
}

// ---- elementwise, cast, fill, reductions, indexing on [side, side] --------------------------

void run_pointwise(const Config& cfg, const Tensor& x, const Tensor& y, const Tensor& xc,
                   const Tensor& yc) {
  const int64_t s = cfg.side, k = cfg.check_rows;
  const double n = static_cast<double>(s) * static_cast<double>(s);
  const std::string sq = shape_str({s, s}) + " f32";

  // unary
  measure(
      cfg, bw_row("unary", "exp", sq), 2 * kF32 * n,
      [&]() -> CheckResult {
        return {max_err(ends(exp(x), 0, k), exp(ends(xc, 0, k)), kElem), 1e-5};
      },
      [&] { exp(x); });
  measure(
      cfg, bw_row("unary", "relu", sq), 2 * kF32 * n,
      [&]() -> CheckResult {
        return {max_err(ends(relu(x), 0, k), relu(ends(xc, 0, k)), kElem), 0};
      },
      [&] { relu(x); });

  // binary
  measure(
      cfg, bw_row("binary", "add", sq + " + same"), 3 * kF32 * n,
      [&]() -> CheckResult {
        return {max_err(ends(add(x, y), 0, k), add(ends(xc, 0, k), ends(yc, 0, k)), kElem), 0};
      },
      [&] { add(x, y); });
  const Tensor row = y.select(0, 0), row_c = yc.select(0, 0);
  measure(
      cfg, bw_row("binary", "add (row broadcast)", sq + " + [" + std::to_string(s) + "]"),
      2 * kF32 * n + kF32 * static_cast<double>(s),
      [&]() -> CheckResult {
        return {max_err(ends(add(x, row), 0, k), add(ends(xc, 0, k), row_c), kElem), 0};
      },
      [&] { add(x, row); });
  const Tensor col = y.select(1, 0).unsqueeze(1), col_c = yc.select(1, 0).unsqueeze(1);
  measure(
      cfg, bw_row("binary", "add (column broadcast)", sq + " + [" + std::to_string(s) + ", 1]"),
      2 * kF32 * n + kF32 * static_cast<double>(s),
      [&]() -> CheckResult {
        return {max_err(ends(add(x, col), 0, k), add(ends(xc, 0, k), ends(col_c, 0, k)), kElem), 0};
      },
      [&] { add(x, col); });
  measure(
      cfg, bw_row("binary", "mul (transposed operand)", sq + " * .t()"), 3 * kF32 * n,
      [&]() -> CheckResult {
        return {max_err(ends(mul(x, y.t()), 0, k), mul(ends(xc, 0, k), ends(yc.t(), 0, k)), kElem),
                0};
      },
      [&] { mul(x, y.t()); });

  measure(
      cfg, bw_row("unary", "contiguous() of .t()", sq), 2 * kF32 * n,
      [&]() -> CheckResult {
        return {max_err(ends(y.t().contiguous(), 0, k), ends(yc.t(), 0, k), kElem), 0};
      },
      [&] { y.t().contiguous(); });

  // where
  const Tensor cond = gt(y, 0.0);
  measure(
      cfg, bw_row("ternary", "where", sq + " bool,f32,f32"), (kBool + 3 * kF32) * n,
      [&]() -> CheckResult {
        return {max_err(ends(where(cond, x, y), 0, k),
                        where(ends(cond, 0, k), ends(xc, 0, k), ends(yc, 0, k)), kElem),
                0};
      },
      [&] { where(cond, x, y); });

  // cast and fill
  measure(
      cfg, bw_row("cast", "to(float64)", sq + " -> f64"), (kF32 + kF64) * n,
      [&]() -> CheckResult {
        return {max_err(ends(x.to(DType::Float64), 0, k), f64(ends(xc, 0, k)), kElem), 0};
      },
      [&] { x.to(DType::Float64); });
  {
    Tensor out = empty({s, s}, TensorOptions().device(kCuda));
    measure(
        cfg, bw_row("fill", "fill_", sq), kF32 * n,
        [&]() -> CheckResult {
          out.fill_(0.5);
          const Tensor got = ends(out, 0, k);
          return {max_err(got, full_like(got, 0.5), kElem), 0};
        },
        [&] { out.fill_(0.5); });
  }
  between_families();

  // reductions, against float64 on the CPU
  const double out_row = kF32 * static_cast<double>(s);  // one float per row
  measure(
      cfg, bw_row("reduce", "sum (all)", sq), kF32 * n + kF32,
      [&]() -> CheckResult {
        // Normwise: the rounding error of a sum is bounded relative to sum |x|.
        const Tensor x64 = f64(xc);
        const double want = sum(x64).item<double>();
        const double scale = sum(abs(x64)).item<double>();
        const double got = sum(x).item<double>();
        return {std::abs(got - want) / scale, 1e-6};
      },
      [&] { sum(x); });
  measure(
      cfg, bw_row("reduce", "sum (last dim)", sq), kF32 * n + out_row,
      [&]() -> CheckResult {
        return {max_err(ends(sum(x, {-1}), 0, k), sum(f64(ends(xc, 0, k)), {-1}), kNorm), 1e-5};
      },
      [&] { sum(x, {-1}); });
  measure(
      cfg, bw_row("reduce", "sum (dim 0)", sq), kF32 * n + out_row,
      [&]() -> CheckResult {
        return {max_err(ends(sum(x, {0}), 0, k), sum(f64(ends(xc, 1, k)), {0}), kNorm), 1e-5};
      },
      [&] { sum(x, {0}); });
  measure(
      cfg, bw_row("reduce", "max with indices (last dim)", sq), kF32 * n + (kF32 + kI64) * s,
      [&]() -> CheckResult {
        const auto [v, i] = max(x, -1);
        const auto [vc, ic] = max(ends(xc, 0, k), -1);
        return {std::max(max_err(ends(v, 0, k), vc, kElem), max_err(ends(i, 0, k), ic, kElem)), 0};
      },
      [&] { max(x, -1); });
  measure(
      cfg, bw_row("reduce", "var (last dim)", sq), kF32 * n + out_row,
      [&]() -> CheckResult {
        return {max_err(ends(var(x, {-1}), 0, k), var(f64(ends(xc, 0, k)), {-1}), kNorm), 1e-5};
      },
      [&] { var(x, {-1}); });
  measure(
      cfg, bw_row("reduce", "logsumexp (last dim)", sq), kF32 * n + out_row,
      [&]() -> CheckResult {
        return {
            max_err(ends(logsumexp(x, {-1}), 0, k), logsumexp(f64(ends(xc, 0, k)), {-1}), kNorm),
            1e-5};
      },
      [&] { logsumexp(x, {-1}); });
  between_families();

  // indexing
  {
    const int64_t cols = s / 4;
    const Tensor idx = randint(0, s, {s, cols}, TensorOptions(DType::Int64).device(kCuda));
    // Only the gathered elements need reading: index + value read + value written.
    measure(
        cfg, bw_row("index", "gather (dim 1, random)", sq + " idx " + shape_str({s, cols})),
        (kI64 + 2 * kF32) * static_cast<double>(s * cols),
        [&]() -> CheckResult {
          return {max_err(ends(gather(x, 1, idx), 0, k), gather(ends(xc, 0, k), 1, ends(idx, 0, k)),
                          kElem),
                  0};
        },
        [&] { gather(x, 1, idx); });
  }
  {
    const int64_t rows = s / 2;
    const Tensor idx = randint(0, s, {rows}, TensorOptions(DType::Int64).device(kCuda));
    measure(
        cfg,
        bw_row("index", "index_select (dim 0, random)", sq + " idx [" + std::to_string(rows) + "]"),
        2 * kF32 * static_cast<double>(rows * s) + kI64 * static_cast<double>(rows),
        [&]() -> CheckResult {
          return {max_err(ends(index_select(x, 0, idx), 0, k), index_select(xc, 0, ends(idx, 0, k)),
                          kElem),
                  0};
        },
        [&] { index_select(x, 0, idx); });
  }
  measure(
      cfg, bw_row("index", "pad (constant, 1 each side)", sq),
      kF32 * n + kF32 * (s + 2.0) * (s + 2.0),
      [&]() -> CheckResult {
        // The output's first k rows are the top pad row and x's first k - 1 rows, padded; its
        // last k rows are x's last k - 1 rows and the bottom pad row.
        const Tensor top = pad(xc.narrow(0, 0, k - 1), {1, 1, 1, 0});
        const Tensor bottom = pad(xc.narrow(0, s - k + 1, k - 1), {1, 1, 0, 1});
        return {max_err(ends(pad(x, {1, 1, 1, 1}), 0, k), cat({top, bottom}, 0), kElem), 0};
      },
      [&] {
        pad(x, {1, 1, 1, 1});
      });
  between_families();
}

// ---- softmax / log_softmax -------------------------------------------------------------------

void run_softmax(const Config& cfg) {
  const int64_t r = cfg.soft_rows, c = cfg.soft_cols, k = cfg.check_rows;
  const Tensor x = uniform_cuda({r, c});
  const double bytes = 2 * kF32 * static_cast<double>(r * c);
  const std::string shape = shape_str({r, c}) + " f32, dim -1";
  measure(
      cfg, bw_row("softmax", "softmax", shape), bytes,
      [&]() -> CheckResult {
        return {max_err(ends(F::softmax(x, -1), 0, k), F::softmax(f64(ends(x, 0, k)), -1), kElem),
                1e-5};
      },
      [&] { F::softmax(x, -1); });
  measure(
      cfg, bw_row("softmax", "log_softmax", shape), bytes,
      [&]() -> CheckResult {
        return {max_err(ends(F::log_softmax(x, -1), 0, k), F::log_softmax(f64(ends(x, 0, k)), -1),
                        kElem),
                1e-5};
      },
      [&] { F::log_softmax(x, -1); });
  between_families();
}

// ---- pooling
// -------------------------------------------------------------------------------------

void run_pool(const Config& cfg) {
  const int64_t n = cfg.pool_n, k = 2;  // images checked at each end
  const Shape in_shape{n, 64, 112, 112};
  const Tensor x = uniform_cuda(in_shape);
  const Pool2dParams p{.kernel = {2, 2}};
  const double in = static_cast<double>(x.numel()), out = in / 4;
  const std::string shape = shape_str(in_shape) + " f32, 2x2";
  // The CPU reference's input shape: 2k images (or all of them).
  Shape ref_shape = in_shape;
  ref_shape[0] = std::min(n, 2 * k);

  Tensor idx;
  measure(
      cfg, bw_row("pool", "max_pool2d fwd (+indices)", shape), kF32 * in + (kF32 + kI64) * out,
      [&]() -> CheckResult {
        auto [v, i] = max_pool2d_with_indices(x, p);
        const auto [vc, ic] = max_pool2d_with_indices(ends(x, 0, k), p);
        idx = i;
        return {std::max(max_err(ends(v, 0, k), vc, kElem), max_err(ends(i, 0, k), ic, kElem)), 0};
      },
      [&] { max_pool2d_with_indices(x, p); });
  if (!idx.defined()) idx = max_pool2d_with_indices(x, p).second;  // the check failed early
  const Tensor gout = uniform_cuda({n, 64, 56, 56});
  measure(
      cfg, bw_row("pool", "max_pool2d bwd", shape), (kF32 + kI64) * out + kF32 * in,
      [&]() -> CheckResult {
        return {max_err(ends(max_pool2d_backward(gout, idx, in_shape), 0, k),
                        max_pool2d_backward(ends(gout, 0, k), ends(idx, 0, k), ref_shape), kElem),
                0};
      },
      [&] { max_pool2d_backward(gout, idx, in_shape); });
  measure(
      cfg, bw_row("pool", "avg_pool2d fwd", shape), kF32 * (in + out),
      [&]() -> CheckResult {
        return {max_err(ends(avg_pool2d(x, p), 0, k), avg_pool2d(ends(x, 0, k), p), kElem), 1e-6};
      },
      [&] { avg_pool2d(x, p); });
  measure(
      cfg, bw_row("pool", "avg_pool2d bwd", shape), kF32 * (in + out),
      [&]() -> CheckResult {
        return {max_err(ends(avg_pool2d_backward(gout, in_shape, p), 0, k),
                        avg_pool2d_backward(ends(gout, 0, k), ref_shape, p), kElem),
                1e-6};
      },
      [&] { avg_pool2d_backward(gout, in_shape, p); });
  between_families();
}

// ---- optimizers -------------------------------------------------------------------------------

using MakeOptimizer = std::function<std::unique_ptr<optim::Optimizer>(const Tensor&)>;

// Three steps on a CPU and a CUDA copy of one parameter (odd length: a vectorised kernel's
// tail runs); the CUDA parameter must end where the CPU one does.
CheckResult check_optimizer(const MakeOptimizer& make) {
  const int64_t n = (int64_t{1} << 20) + 3;
  Tensor p0 = empty({n}), g0 = empty({n});
  uniform_(p0, -1.0, 1.0);
  uniform_(g0, -1.0, 1.0);
  Tensor pc = p0.clone();
  Tensor pg = p0.to(kCuda);
  pc.requires_grad_();
  pg.requires_grad_();
  pc.set_grad(g0.clone());
  pg.set_grad(g0.to(kCuda));
  const auto oc = make(pc);
  const auto og = make(pg);
  for (int i = 0; i < 3; ++i) {
    oc->step();
    og->step();
  }
  return {max_err(pg, pc, kElem), 1e-5};
}

void run_optim(const Config& cfg) {
  const int64_t n = cfg.side * cfg.side;
  const double elems = static_cast<double>(n);
  const std::string shape = shape_str({n}) + " f32";
  Tensor p = uniform_cuda({n});
  p.requires_grad_();
  p.set_grad(uniform_cuda({n}));
  {
    const MakeOptimizer make = [](const Tensor& t) -> std::unique_ptr<optim::Optimizer> {
      return std::make_unique<optim::SGD>(std::vector<Tensor>{t},
                                          optim::SGDOptions(0.01).momentum(0.9));
    };
    const auto opt = make(p);
    // Reads p, g, momentum; writes p, momentum.
    measure(
        cfg, bw_row("optim", "SGD step (momentum)", shape), 5 * kF32 * elems,
        [&] { return check_optimizer(make); }, [&] { opt->step(); });
  }
  {
    const MakeOptimizer make = [](const Tensor& t) -> std::unique_ptr<optim::Optimizer> {
      return std::make_unique<optim::Adam>(std::vector<Tensor>{t}, optim::AdamOptions(1e-3));
    };
    const auto opt = make(p);
    // Reads p, g, m, v; writes p, m, v.
    measure(
        cfg, bw_row("optim", "Adam step", shape), 7 * kF32 * elems,
        [&] { return check_optimizer(make); }, [&] { opt->step(); });
  }
  between_families();
}

// ---- random fills -------------------------------------------------------------------------------

void run_random(const Config& cfg) {
  const int64_t n = cfg.side * cfg.side;  // a multiple of 4: whole Philox blocks
  const std::string shape = shape_str({n}) + " f32";
  Tensor r = empty({n}, TensorOptions().device(kCuda));
  Generator gen(1234);
  // Element i of a float32 draw reads Philox block offset + i / 4 (Note [Philox stream
  // contract]), so a CPU draw of k elements started at offset + start / 4 must reproduce the
  // CUDA draw's elements [start, start + k): checked at both ends.
  auto check = [&](bool normal) -> CheckResult {
    const GeneratorState st = gen.get_state();
    if (normal) {
      normal_(r, 0.0, 1.0, &gen);
    } else {
      uniform_(r, -1.0, 1.0, &gen);
    }
    const int64_t k = 4096;
    double err = 0;
    for (const int64_t start : {int64_t{0}, n - k}) {
      Generator g;
      g.set_state({st.seed, st.offset + static_cast<uint64_t>(start / 4)});
      Tensor ref = empty({k});
      if (normal) {
        normal_(ref, 0.0, 1.0, &g);
      } else {
        uniform_(ref, -1.0, 1.0, &g);
      }
      err = std::max(err, max_err(r.narrow(0, start, k), ref, kElem));
    }
    // uniform is exact by contract; normal goes through double log/cos (libm vs CUDA).
    return {err, normal ? 1e-6 : 0.0};
  };
  measure(
      cfg, bw_row("random", "uniform_", shape), kF32 * static_cast<double>(n),
      [&] { return check(false); }, [&] { uniform_(r, -1.0, 1.0, &gen); });
  measure(
      cfg, bw_row("random", "normal_", shape), kF32 * static_cast<double>(n),
      [&] { return check(true); }, [&] { normal_(r, 0.0, 1.0, &gen); });
  between_families();
}

// ---- matrix products --------------------------------------------------------------------------

void run_matmul(const Config& cfg) {
  const int64_t k = 16;  // rows checked at each end
  {
    const int64_t n = cfg.mm_n;
    const Tensor a = uniform_cuda({n, n}), b = uniform_cuda({n, n});
    const Tensor b64 = f64(b.to(kCpu));
    const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * n;
    const std::string shape = shape_str({n, n}) + " @ " + shape_str({n, n});
    auto check = [&](double tol) -> CheckResult {
      return {max_err(ends(mm(a, b), 0, k), mm(f64(ends(a, 0, k)), b64), kNorm), tol};
    };
    {
      Tf32Scope tf32(false);
      measure(
          cfg, flop_row("matmul", "mm f32", shape), flops, [&] { return check(1e-5); },
          [&] { mm(a, b); });
    }
    {
      Tf32Scope tf32(true);
      measure(
          cfg, flop_row("matmul", "mm f32 (TF32)", shape), flops, [&] { return check(2e-3); },
          [&] { mm(a, b); });
    }
  }
  between_families();
  {
    const int64_t n = cfg.mm64_n;
    const Tensor a = uniform_cuda({n, n}, DType::Float64), b = uniform_cuda({n, n}, DType::Float64);
    const Tensor bc = b.to(kCpu);
    measure(
        cfg, flop_row("matmul", "mm f64", shape_str({n, n}) + " @ " + shape_str({n, n})),
        2.0 * static_cast<double>(n) * static_cast<double>(n) * n,
        [&]() -> CheckResult {
          return {max_err(ends(mm(a, b), 0, k), mm(ends(a, 0, k), bc), kNorm), 1e-12};
        },
        [&] { mm(a, b); });
  }
  between_families();
  {
    const int64_t bt = cfg.bmm_b, n = cfg.bmm_n, kb = 2;  // batches checked at each end
    const Tensor a = uniform_cuda({bt, n, n}), b = uniform_cuda({bt, n, n});
    Tf32Scope tf32(false);
    measure(
        cfg, flop_row("matmul", "bmm f32", shape_str({bt, n, n}) + " @ same"),
        2.0 * static_cast<double>(bt) * static_cast<double>(n) * static_cast<double>(n) * n,
        [&]() -> CheckResult {
          return {
              max_err(ends(bmm(a, b), 0, kb), bmm(f64(ends(a, 0, kb)), f64(ends(b, 0, kb))), kNorm),
              1e-5};
        },
        [&] { bmm(a, b); });
  }
  between_families();
}

// ---- convolution --------------------------------------------------------------------------------

void run_conv(const Config& cfg) {
  const int64_t n = cfg.conv_n, k = 2;  // images checked at each end
  const Shape x_shape{n, 64, 56, 56}, w_shape{64, 64, 3, 3};
  const Tensor x = uniform_cuda(x_shape), w = uniform_cuda(w_shape);
  const Tensor gy = uniform_cuda(x_shape);  // padding 1, stride 1: output has x's shape
  const Tensor w64 = f64(w.to(kCpu));
  Conv2dParams p;
  p.padding = {1, 1};
  // Each of the three is a GEMM of (N OH OW) x (C kH kW) x O multiply-adds.
  const double flops = 2.0 * static_cast<double>(n) * 56 * 56 * 64 * 64 * 9;
  const std::string shape = shape_str(x_shape) + " * " + shape_str(w_shape);
  Shape ref_x_shape = x_shape;
  ref_x_shape[0] = std::min(n, 2 * k);

  auto check_fwd = [&](double tol) -> CheckResult {
    return {max_err(ends(conv2d(x, w, {}, p), 0, k), conv2d(f64(ends(x, 0, k)), w64, {}, p), kNorm),
            tol};
  };
  {
    Tf32Scope tf32(false);
    measure(
        cfg, flop_row("conv", "conv2d fwd f32", shape), flops, [&] { return check_fwd(1e-5); },
        [&] { conv2d(x, w, {}, p); });
  }
  {
    Tf32Scope tf32(true);
    measure(
        cfg, flop_row("conv", "conv2d fwd f32 (TF32)", shape), flops,
        [&] { return check_fwd(2e-3); }, [&] { conv2d(x, w, {}, p); });
  }
  Tf32Scope tf32(false);
  measure(
      cfg, flop_row("conv", "conv2d bwd-data f32", shape), flops,
      [&]() -> CheckResult {
        return {max_err(ends(conv2d_input_backward(gy, w, x_shape, p), 0, k),
                        conv2d_input_backward(f64(ends(gy, 0, k)), w64, ref_x_shape, p), kNorm),
                1e-5};
      },
      [&] { conv2d_input_backward(gy, w, x_shape, p); });
  measure(
      cfg, flop_row("conv", "conv2d bwd-filter f32", shape), flops,
      [&]() -> CheckResult {
        // Sums over images: checked on a smaller instance, the first few images.
        const int64_t m = std::min<int64_t>(n, 4);
        const Tensor gys = gy.narrow(0, 0, m), xs = x.narrow(0, 0, m);
        return {
            max_err(conv2d_weight_backward(gys, xs, w_shape, p),
                    conv2d_weight_backward(f64(gys.to(kCpu)), f64(xs.to(kCpu)), w_shape, p), kNorm),
            // Each weight sums 4 x 56 x 56 = 12,544 float32 products (cuDNN, no TF32): 1e-4
            // relative; the first H100 run measured 1.7e-5.
            1e-4};
      },
      [&] { conv2d_weight_backward(gy, x, w_shape, p); });
  between_families();
}

// ---- the table -------------------------------------------------------------------------------

void print_table() {
  std::printf("\n| family | op | shape | ms | GB/s or TFLOP/s | %% of copy BW | check |\n");
  std::printf("|---|---|---|---:|---:|---:|---|\n");
  for (const Row& r : g_rows) {
    const std::string ms = std::isnan(r.ms) ? "-" : fmt("%.3f", r.ms);
    std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", r.family.c_str(), r.op.c_str(),
                r.shape.c_str(), ms.c_str(), rate_text(r).c_str(), pct_text(r).c_str(),
                r.check.c_str());
  }
}

// Runs one family; an error outside any row (setting up its inputs) is reported and the lab
// goes on with the next family.
void family(const char* name, const std::function<void()>& body) {
  std::printf("== %s\n", name);
  std::fflush(stdout);
  try {
    body();
  } catch (const std::exception& e) {
    std::printf("  %s: setup failed: %s\n", name, e.what());
    g_rows.push_back(Row{name, "(setup)", "-", NAN, NAN, false, "ERROR " + shorten(e.what(), 70)});
  }
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      cfg = quick_config();
    } else {
      std::fprintf(stderr, "usage: cuda_lab [--quick]\n");
      return 2;
    }
  }
  if (!cuda_is_available()) {
    std::printf("cuda_lab: no CUDA device\n");
    return 0;
  }
  const auto t0 = std::chrono::steady_clock::now();
  NoGradGuard no_grad;  // nothing here is differentiated
  std::printf("cuda_lab (%s): %d warm-up + median of %d timed calls per row\n",
              cfg.quick ? "quick" : "full", cfg.warmup, cfg.reps);
  try {
    family("copy", [&] { run_copy(cfg); });
    family("elementwise, reductions, indexing", [&] {
      const Tensor x = uniform_cuda({cfg.side, cfg.side});
      const Tensor y = uniform_cuda({cfg.side, cfg.side});
      const Tensor xc = x.to(kCpu), yc = y.to(kCpu);
      run_pointwise(cfg, x, y, xc, yc);
    });
    between_families();
    family("softmax", [&] { run_softmax(cfg); });
    family("pool", [&] { run_pool(cfg); });
    family("optim", [&] { run_optim(cfg); });
    family("random", [&] { run_random(cfg); });
    family("matmul", [&] { run_matmul(cfg); });
    family("conv", [&] { run_conv(cfg); });
    print_table();
    const cuda::MemoryStats m = cuda::memory_stats();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "\ncopy ceiling %.0f GB/s; peak GPU memory allocated %.2f GiB, reserved %.2f GiB; "
        "%.1f s in all\n",
        g_copy_gbs, static_cast<double>(m.peak_allocated) / (1 << 30),
        static_cast<double>(m.peak_reserved) / (1 << 30), secs);
  } catch (const std::exception& e) {
    print_table();
    std::printf("cuda_lab: %s\n", e.what());
    return 1;
  }
  int failed = 0;
  for (const Row& r : g_rows)
    if (r.check.rfind("ok", 0) != 0 && r.check != "n/a") ++failed;
  if (failed) std::printf("cuda_lab: %d row(s) failed their check or did not run\n", failed);
  return failed ? 1 : 0;
}
