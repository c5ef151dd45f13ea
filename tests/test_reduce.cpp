// Tests of the reductions (tensor/reduce.h) against float64 references computed here with
// plain loops: every op over many dim sets, keepdim on and off, contiguous, transposed,
// step-sliced and expanded inputs, float32 and float64; then dtypes, NaN and infinity rules,
// indices and ties, 0-d and empty tensors, large inputs (every loop order and the threads),
// numerical soundness, and each error.
#include <gtest/gtest.h>
#include <metagrad/metagrad.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace metagrad;

namespace {

using Vec = std::vector<double>;
using Dims = std::vector<int64_t>;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- the reference ----------------------------------------------------------------------

std::vector<bool> reduced_mask(size_t nd, const Dims& dims) {
  std::vector<bool> r(nd, dims.empty());
  for (int64_t d : dims) r[static_cast<size_t>(d < 0 ? d + static_cast<int64_t>(nd) : d)] = true;
  return r;
}

Shape ref_shape(const Shape& shape, const Dims& dims, bool keepdim) {
  const auto red = reduced_mask(shape.size(), dims);
  Shape out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!red[d])
      out.push_back(shape[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

// Groups the values `v` of a tensor of `shape` (row-major) by output: out[o] lists the reduced
// elements of output o (outputs row-major over the kept dims), in row-major order of the
// reduced dims.
std::vector<Vec> group(const Shape& shape, const Vec& v, const Dims& dims) {
  const auto red = reduced_mask(shape.size(), dims);
  int64_t n_out = 1;
  for (size_t d = 0; d < shape.size(); ++d)
    if (!red[d]) n_out *= shape[d];
  std::vector<Vec> out(static_cast<size_t>(n_out));
  std::vector<int64_t> idx(shape.size(), 0);
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t o = 0;
    for (size_t d = 0; d < shape.size(); ++d)
      if (!red[d]) o = o * shape[d] + idx[d];
    out[static_cast<size_t>(o)].push_back(v[i]);
    for (size_t d = shape.size(); d-- > 0;) {  // next row-major multi-index
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

using RefFn = std::function<double(const Vec&)>;

Vec ref_reduce(const Shape& shape, const Vec& v, const Dims& dims, const RefFn& f) {
  Vec r;
  for (const Vec& g : group(shape, v, dims)) r.push_back(f(g));
  return r;
}

double r_sum(const Vec& g) {
  double s = 0;
  for (double x : g) s += x;
  return s;
}
double r_mean(const Vec& g) {
  return g.empty() ? kNaN : r_sum(g) / static_cast<double>(g.size());
}
double r_prod(const Vec& g) {
  double s = 1;
  for (double x : g) s *= x;
  return s;
}
double r_max(const Vec& g) {
  double m = -kInf;
  for (double x : g) {
    if (std::isnan(x)) return x;
    if (x > m) m = x;
  }
  return m;
}
double r_min(const Vec& g) {
  double m = kInf;
  for (double x : g) {
    if (std::isnan(x)) return x;
    if (x < m) m = x;
  }
  return m;
}
RefFn r_var(double correction, bool root) {
  return [=](const Vec& g) {
    const double m = r_mean(g);
    double s = 0;
    for (double x : g) s += (x - m) * (x - m);
    const double v = s / std::max(0.0, static_cast<double>(g.size()) - correction);
    return root ? std::sqrt(v) : v;
  };
}
double r_logsumexp_direct(const Vec& g) {  // fine for the moderate values used with it
  double s = 0;
  for (double x : g) s += std::exp(x);
  return std::log(s);
}
RefFn r_norm(double p) {
  return [=](const Vec& g) {
    if (p == kInf || p == -kInf) {
      double m = p > 0 ? 0 : kInf;
      for (double x : g) {
        if (std::isnan(x)) return x;
        m = p > 0 ? std::max(m, std::abs(x)) : std::min(m, std::abs(x));
      }
      return m;
    }
    double s = 0;
    for (double x : g) s += p == 0 ? (x != 0 ? 1.0 : 0.0) : std::pow(std::abs(x), p);
    return p == 0 || p == 1 ? s : std::pow(s, 1.0 / p);
  };
}
// First index of the max (or min); the first NaN wins.
int64_t r_argext(const Vec& g, bool is_max) {
  int64_t best = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(g[i])) return static_cast<int64_t>(i);
    if (is_max ? g[i] > g[static_cast<size_t>(best)] : g[i] < g[static_cast<size_t>(best)])
      best = static_cast<int64_t>(i);
  }
  return best;
}

::testing::AssertionResult close(const Tensor& got, const Vec& want, double rtol, double atol) {
  const Vec g = got.to_vector<double>();
  if (g.size() != want.size())
    return ::testing::AssertionFailure() << "size " << g.size() << " vs " << want.size();
  for (size_t i = 0; i < g.size(); ++i) {
    const bool both_nan = std::isnan(g[i]) && std::isnan(want[i]);
    const bool same_inf = std::isinf(want[i]) && g[i] == want[i];
    if (both_nan || same_inf) continue;
    if (!(std::abs(g[i] - want[i]) <= atol + rtol * std::abs(want[i])))
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << g[i] << ", want " << want[i];
  }
  return ::testing::AssertionSuccess();
}

template <typename F>
void expect_error(F f, const std::string& prefix) {
  try {
    f();
    ADD_FAILURE() << "expected a metagrad::Error starting with " << prefix;
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(prefix, 0), 0u) << e.what();
  }
}

// ---- inputs of shape [3, 4, 5] in four layouts --------------------------------------------

const Shape kShape = {3, 4, 5};

struct Layout {
  std::string name;
  Shape base_shape;
  std::function<Tensor(const Tensor&)> view;             // base -> [3, 4, 5] view
  std::function<int64_t(int64_t, int64_t, int64_t)> at;  // (i, j, k) -> base element
};

std::vector<Layout> layouts() {
  return {
      {"contiguous",
       {3, 4, 5},
       [](const Tensor& b) { return b; },
       [](int64_t i, int64_t j, int64_t k) { return i * 20 + j * 5 + k; }},
      {"transposed",
       {5, 4, 3},
       [](const Tensor& b) {
         return b.permute({2, 1, 0});
       },
       [](int64_t i, int64_t j, int64_t k) { return k * 12 + j * 3 + i; }},
      {"step-sliced",
       {6, 4, 10},
       [](const Tensor& b) { return b.slice(0, 0, 6, 2).slice(2, 1, 10, 2); },
       [](int64_t i, int64_t j, int64_t k) { return 2 * i * 40 + j * 10 + 1 + 2 * k; }},
      {"expanded",
       {3, 1, 5},
       [](const Tensor& b) {
         return b.expand({3, 4, 5});
       },
       [](int64_t i, int64_t, int64_t k) { return i * 5 + k; }},
  };
}

// Random base data in [-2, 2]; with_zeros sets some elements to exactly 0 (for the p = 0 norm),
// otherwise values keep |x| >= 0.25 (products stay informative).
Vec base_data(size_t n, bool with_zeros, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.25, 2.0);
  Vec v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = u(rng) * ((rng() & 1) ? 1 : -1);
    if (with_zeros && i % 7 == 3) v[i] = 0;
  }
  return v;
}

struct Input {
  std::string name;
  Tensor x;    // [3, 4, 5]
  Vec values;  // its elements in row-major order, as float64 (after rounding to its dtype)
  DType dtype;
};

std::vector<Input> inputs(bool with_zeros) {
  std::vector<Input> r;
  uint64_t seed = 1;
  for (const Layout& L : layouts()) {
    for (DType t : {DType::Float32, DType::Float64}) {
      Vec b = base_data(static_cast<size_t>(numel_of(L.base_shape)), with_zeros, seed++);
      Tensor base;
      if (t == DType::Float32) {
        std::vector<float> f(b.begin(), b.end());
        for (size_t i = 0; i < b.size(); ++i) b[i] = f[i];
        base = tensor(f, L.base_shape);
      } else {
        base = tensor(b, L.base_shape);
      }
      Vec v;
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j)
          for (int64_t k = 0; k < 5; ++k) v.push_back(b[static_cast<size_t>(L.at(i, j, k))]);
      r.push_back({L.name + "/" + dtype_name(t), L.view(base), v, t});
    }
  }
  return r;
}

const std::vector<Dims> kDimSets = {{},     {0},      {1},    {2},    {-1},     {0, 2},
                                    {2, 0}, {-1, -3}, {0, 1}, {1, 2}, {0, 1, 2}};

struct OpCase {
  std::string name;
  std::function<Tensor(const Tensor&, const Dims&, bool)> run;
  RefFn ref;
};

std::vector<OpCase> value_ops() {
  std::vector<OpCase> ops = {
      {"sum", [](const Tensor& x, const Dims& d, bool k) { return sum(x, d, k); }, r_sum},
      {"mean", [](const Tensor& x, const Dims& d, bool k) { return mean(x, d, k); }, r_mean},
      {"prod", [](const Tensor& x, const Dims& d, bool k) { return prod(x, d, k); }, r_prod},
      {"amax", [](const Tensor& x, const Dims& d, bool k) { return amax(x, d, k); }, r_max},
      {"amin", [](const Tensor& x, const Dims& d, bool k) { return amin(x, d, k); }, r_min},
      {"logsumexp", [](const Tensor& x, const Dims& d, bool k) { return logsumexp(x, d, k); },
       r_logsumexp_direct},
  };
  for (double c : {0.0, 1.0, 2.0}) {
    ops.push_back({"var c=" + std::to_string(c),
                   [c](const Tensor& x, const Dims& d, bool k) { return var(x, d, c, k); },
                   r_var(c, false)});
    ops.push_back(
        {"std c=" + std::to_string(c),
         [c](const Tensor& x, const Dims& d, bool k) { return metagrad::std(x, d, c, k); },
         r_var(c, true)});
  }
  for (double p : {2.0, 1.0, kInf, -kInf, 0.0, 3.0, 0.5, -1.0})
    ops.push_back({"norm p=" + std::to_string(p),
                   [p](const Tensor& x, const Dims& d, bool k) { return norm(x, p, d, k); },
                   r_norm(p)});
  return ops;
}

// ---- every value op x layout x dtype x dim set x keepdim ------------------------------------

TEST(Reduce, ValueOpsAgainstReference) {
  for (bool zeros : {false, true}) {
    for (const Input& in : inputs(zeros)) {
      for (const OpCase& op : value_ops()) {
        for (const Dims& dims : kDimSets) {
          for (bool keepdim : {false, true}) {
            SCOPED_TRACE(op.name + " on " + in.name + " dims " + shape_str(dims) +
                         (keepdim ? " keepdim" : "") + (zeros ? " with zeros" : ""));
            Tensor out = op.run(in.x, dims, keepdim);
            EXPECT_EQ(out.shape(), ref_shape(kShape, dims, keepdim));
            EXPECT_EQ(out.dtype(), in.dtype);
            const double rtol = in.dtype == DType::Float32 ? 2e-5 : 1e-12;
            const double atol = in.dtype == DType::Float32 ? 1e-5 : 1e-12;
            EXPECT_TRUE(close(out, ref_reduce(kShape, in.values, dims, op.ref), rtol, atol));
          }
        }
      }
    }
  }
}

// max/min along one dim, argmax/argmin: values and indices, ties resolved to the first.
TEST(Reduce, IndexOpsAgainstReference) {
  // Small integers make ties frequent.
  std::mt19937_64 rng(7);
  for (const Layout& L : layouts()) {
    for (DType t : {DType::Float32, DType::Float64, DType::Int32, DType::UInt8}) {
      Vec b(static_cast<size_t>(numel_of(L.base_shape)));
      for (double& v : b) v = static_cast<double>(rng() % 4);
      Tensor x = L.view(tensor(b, L.base_shape).to(t));
      Vec v;
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j)
          for (int64_t k = 0; k < 5; ++k) v.push_back(b[static_cast<size_t>(L.at(i, j, k))]);
      for (bool is_max : {true, false}) {
        const RefFn value = is_max ? RefFn(r_max) : RefFn(r_min);
        const RefFn index = [is_max](const Vec& g) { return double(r_argext(g, is_max)); };
        for (int64_t dim : {0, 1, 2, -1, -2}) {
          for (bool keepdim : {false, true}) {
            SCOPED_TRACE(L.name + " " + dtype_name(t) + (is_max ? " max" : " min") + " dim " +
                         std::to_string(dim) + (keepdim ? " keepdim" : ""));
            auto [vals, idx] = is_max ? max(x, dim, keepdim) : min(x, dim, keepdim);
            const Shape want_shape = ref_shape(kShape, {dim}, keepdim);
            EXPECT_EQ(vals.shape(), want_shape);
            EXPECT_EQ(idx.shape(), want_shape);
            EXPECT_EQ(vals.dtype(), t);
            EXPECT_EQ(idx.dtype(), DType::Int64);
            EXPECT_TRUE(close(vals, ref_reduce(kShape, v, {dim}, value), 0, 0));
            EXPECT_TRUE(close(idx, ref_reduce(kShape, v, {dim}, index), 0, 0));
            Tensor a = is_max ? argmax(x, dim, keepdim) : argmin(x, dim, keepdim);
            EXPECT_EQ(a.dtype(), DType::Int64);
            EXPECT_EQ(a.shape(), want_shape);
            EXPECT_TRUE(close(a, ref_reduce(kShape, v, {dim}, index), 0, 0));
          }
        }
        SCOPED_TRACE(L.name + " " + dtype_name(t) + " over everything");
        // No dim: an index into the flattened (row-major) tensor.
        Tensor a = is_max ? argmax(x) : argmin(x);
        EXPECT_EQ(a.dim(), 0);
        EXPECT_EQ(a.item<int64_t>(), r_argext(v, is_max));
        Tensor ak = is_max ? argmax(x, std::nullopt, true) : argmin(x, std::nullopt, true);
        EXPECT_EQ(ak.shape(), (Shape{1, 1, 1}));
        EXPECT_EQ(ak.item<int64_t>(), r_argext(v, is_max));
        Tensor m = is_max ? max(x) : min(x);
        EXPECT_EQ(m.dim(), 0);
        EXPECT_EQ(m.dtype(), t);
        EXPECT_EQ(m.item<double>(), value(v));
      }
    }
  }
}

// ---- dtypes -------------------------------------------------------------------------------

TEST(Reduce, SumAndProdOfIntegersGiveInt64) {
  // int32 values whose sum leaves the int32 range.
  Tensor a = tensor(std::vector<int32_t>{2000000000, 2000000000, -7, 2000000000, 5, 6}, {2, 3});
  Tensor s = sum(a);
  EXPECT_EQ(s.dtype(), DType::Int64);
  EXPECT_EQ(s.item<int64_t>(), 3LL * 2000000000 - 7 + 5 + 6);
  Tensor s0 = sum(a, {0});
  EXPECT_EQ(s0.dtype(), DType::Int64);
  EXPECT_EQ(s0.to_vector<int64_t>(), (std::vector<int64_t>{4000000000LL, 2000000005LL, -1}));

  Tensor u = tensor(std::vector<uint8_t>{200, 200, 255}, {3});
  EXPECT_EQ(sum(u).dtype(), DType::Int64);
  EXPECT_EQ(sum(u).item<int64_t>(), 655);
  EXPECT_EQ(prod(u).item<int64_t>(), 200LL * 200 * 255);

  Tensor b = tensor(std::vector<bool>{true, false, true, true}, {2, 2});
  EXPECT_EQ(sum(b).dtype(), DType::Int64);
  EXPECT_EQ(sum(b).item<int64_t>(), 3);
  EXPECT_EQ(sum(b, {1}).to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(prod(b, {1}).to_vector<int64_t>(), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(prod(b, {1}).dtype(), DType::Int64);

  Tensor i64 = tensor(std::vector<int64_t>{3, -4, 5}, {3});
  EXPECT_EQ(prod(i64).item<int64_t>(), -60);
  // amax/amin keep the dtype, bool included.
  EXPECT_EQ(amax(a, {1}).dtype(), DType::Int32);
  EXPECT_EQ(amax(a, {1}).to_vector<int32_t>(), (std::vector<int32_t>{2000000000, 2000000000}));
  EXPECT_EQ(amin(u).item<uint8_t>(), 200);
  EXPECT_EQ(max(b).dtype(), DType::Bool);
  EXPECT_EQ(min(b).item<bool>(), false);
  EXPECT_EQ(amin(b, {1}).to_vector<bool>(), (std::vector<bool>{false, true}));
}

TEST(Reduce, SumWithDtype) {
  std::vector<float> f = {1e8f, 1.f, -1e8f, 1.f};
  Tensor x = tensor(f, {4});
  Tensor d = sum(x, {}, false, DType::Float64);
  EXPECT_EQ(d.dtype(), DType::Float64);
  EXPECT_EQ(d.item<double>(), 2.0);  // exact: the float32 values summed in float64
  Tensor i = tensor(std::vector<int32_t>{1, 2, 3, 4}, {2, 2});
  Tensor i32 = sum(i, {1}, true, DType::Int32);
  EXPECT_EQ(i32.dtype(), DType::Int32);
  EXPECT_EQ(i32.shape(), (Shape{2, 1}));
  EXPECT_EQ(i32.to_vector<int32_t>(), (std::vector<int32_t>{3, 7}));
  Tensor fl = sum(i, {}, false, DType::Float32);
  EXPECT_EQ(fl.dtype(), DType::Float32);
  EXPECT_EQ(fl.item<float>(), 10.f);
}

// A cast copy (sum's dtype, logsumexp of integers) is laid out anew: the reduction must read it
// with its own strides, not the input's (a transposed or sliced input gave wrong sums or read
// past the copy).
TEST(Reduce, CastInputsOfNonContiguousTensors) {
  Tensor i = tensor(std::vector<int32_t>{0, 1, 2, 3, 4, 5}, {2, 3});
  EXPECT_EQ(sum(i.t(), {1}, false, DType::Int64).to_vector<int64_t>(),
            (std::vector<int64_t>{3, 5, 7}));
  EXPECT_EQ(sum(i.t(), {1}, false, DType::Float64).to_vector<double>(),
            (std::vector<double>{3, 5, 7}));
  Tensor v = arange(0, 40, 1, DType::Int32).view({4, 10}).slice(1, 0, 10, 2);  // strides [10, 2]
  EXPECT_EQ(sum(v, {}, false, DType::Int64).item<int64_t>(), 380);
  EXPECT_EQ(sum(v, {1}, false, DType::Int64).to_vector<int64_t>(),
            (std::vector<int64_t>{20, 70, 120, 170}));
  Tensor l = logsumexp(i.t(), {1}, false);
  const std::vector<float> got = l.to_vector<float>();
  const double want[3] = {std::log(std::exp(0.0) + std::exp(3.0)),
                          std::log(std::exp(1.0) + std::exp(4.0)),
                          std::log(std::exp(2.0) + std::exp(5.0))};
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(got[static_cast<size_t>(k)], want[k], 1e-5);
}

TEST(Reduce, FloatOnlyOps) {
  Tensor i = tensor(std::vector<int64_t>{1, 2, 3}, {3});
  expect_error([&] { mean(i); }, "[mean] ");
  expect_error([&] { mean(i, {0}); }, "[mean] ");
  expect_error([&] { var(i); }, "[var] ");
  expect_error([&] { metagrad::std(i, {0}); }, "[std] ");
  expect_error([&] { norm(i); }, "[norm] ");
  // logsumexp promotes integers to float32, as torch.
  Tensor l = logsumexp(i, {0});
  EXPECT_EQ(l.dtype(), DType::Float32);
  EXPECT_NEAR(l.item<float>(), std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)), 1e-6);
}

// ---- special values -------------------------------------------------------------------------

TEST(Reduce, NaNPropagates) {
  const Vec v = {1, kNaN, 3, kNaN, 0, 2, 7, -1, 4, kNaN, 5, -3};
  const Shape sh = {4, 3};
  const auto arg = [](bool is_max) {
    return [is_max](const Vec& g) { return double(r_argext(g, is_max)); };
  };
  for (DType t : {DType::Float32, DType::Float64}) {
    SCOPED_TRACE(dtype_name(t));
    Tensor x = tensor(v, sh).to(t);
    EXPECT_TRUE(std::isnan(max(x).item<double>()));
    EXPECT_TRUE(std::isnan(min(x).item<double>()));
    for (int64_t d : {0, 1}) {
      EXPECT_TRUE(close(amax(x, {d}), ref_reduce(sh, v, {d}, r_max), 0, 0));
      EXPECT_TRUE(close(amin(x, {d}), ref_reduce(sh, v, {d}, r_min), 0, 0));
      auto [mv, mi] = max(x, d);
      EXPECT_TRUE(close(mv, ref_reduce(sh, v, {d}, r_max), 0, 0));
      EXPECT_TRUE(close(mi, ref_reduce(sh, v, {d}, arg(true)), 0, 0));
      auto [nv, ni] = min(x, d);
      EXPECT_TRUE(close(nv, ref_reduce(sh, v, {d}, r_min), 0, 0));
      EXPECT_TRUE(close(ni, ref_reduce(sh, v, {d}, arg(false)), 0, 0));
      EXPECT_TRUE(close(argmin(x, d), ref_reduce(sh, v, {d}, arg(false)), 0, 0));
      EXPECT_TRUE(close(sum(x, {d}), ref_reduce(sh, v, {d}, r_sum), 1e-6, 0));
      EXPECT_TRUE(close(norm(x, kInf, {d}), ref_reduce(sh, v, {d}, r_norm(kInf)), 0, 0));
      EXPECT_TRUE(close(logsumexp(x, {d}), ref_reduce(sh, v, {d}, r_logsumexp_direct), 1e-6, 0));
    }
    EXPECT_EQ(argmax(x).item<int64_t>(), r_argext(v, true));  // the first NaN
  }
}

TEST(Reduce, LogSumExpIsStable) {
  for (DType t : {DType::Float32, DType::Float64}) {
    SCOPED_TRACE(dtype_name(t));
    // Rows: huge values (exp overflows), tiny ones (exp underflows), all -inf, a +inf,
    // -inf mixed with finite values, one element.
    Tensor x = tensor(Vec{1000, 1000, 1000,     //
                          -1000, -1000, -1001,  //
                          -kInf, -kInf, -kInf,  //
                          1, kInf, 2,           //
                          -kInf, 0, -kInf,      //
                          88, 89, 90},
                      {6, 3})
                   .to(t);
    const double l3 = std::log(3.0);
    const Vec want = {1000 + l3, -1000 + std::log(2 + std::exp(-1.0)),
                      -kInf,     kInf,
                      0,         90 + std::log(1 + std::exp(-1.0) + std::exp(-2.0))};
    EXPECT_TRUE(close(logsumexp(x, {1}), want, 1e-6, 0));
    // Over dim 0 with keepdim, and over an empty dim: log(0) = -inf.
    EXPECT_EQ(logsumexp(x, {0}, true).shape(), (Shape{1, 3}));
    Tensor e = zeros({4, 0}, t);
    EXPECT_TRUE(close(logsumexp(e, {1}), {-kInf, -kInf, -kInf, -kInf}, 0, 0));
  }
}

// float32 logsumexp has its own vectorised exp: check it over the whole range through rows
// [0, -d], whose logsumexp is log1p(e^-d). Its relative error is that of e^-d until e^-d nears
// the double rounding of the sum 1 + e^-d (absolute 1e-16, inherent to the formula); beyond
// that (d > ~30, subnormal e^-d included) only the absolute bound is checked.
TEST(Reduce, LogSumExpFloat32Accuracy) {
  std::vector<float> v;
  Vec want;
  for (double d = 0; d < 110; d += 0.0917) {
    const float e = static_cast<float>(-d);
    v.push_back(0);
    v.push_back(e);
    want.push_back(std::log1p(std::exp(double(e))));
  }
  const Tensor out = logsumexp(tensor(v, {static_cast<int64_t>(want.size()), 2}), {1});
  EXPECT_TRUE(close(out, want, 3e-7, 4e-16));
}

// Two-pass variance: data far from zero whose E[x^2] - E[x]^2 would cancel catastrophically.
TEST(Reduce, VarIsNumericallySound) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> n(0, 1);
  Vec v(4096);
  for (double& x : v) x = 1e9 + n(rng);
  Tensor x = tensor(v, {64, 64});
  const double want = r_var(1, false)(v);
  EXPECT_NEAR(var(x).item<double>(), want, 1e-6 * want);
  EXPECT_NEAR(metagrad::std(x).item<double>(), std::sqrt(want), 1e-6 * std::sqrt(want));
  // Along each dim too (the "outputs" and "columns" loop orders).
  for (int64_t d : {0, 1})
    EXPECT_TRUE(close(var(x, {d}), ref_reduce({64, 64}, v, {d}, r_var(1, false)), 1e-6, 0));
  // float32 input, offset 1e4: the float32 values themselves are the data.
  std::vector<float> f(v.size());
  Vec fv(v.size());
  for (size_t i = 0; i < v.size(); ++i) fv[i] = f[i] = static_cast<float>(1e4 + n(rng));
  Tensor xf = tensor(f, {64, 64});
  EXPECT_NEAR(var(xf).item<float>(), r_var(1, false)(fv), 1e-5 * r_var(1, false)(fv));
}

// ---- 0-d and empty ---------------------------------------------------------------------------

TEST(Reduce, ZeroDim) {
  Tensor x = scalar_tensor(2.5, DType::Float64);
  for (const Dims& d : {Dims{}, Dims{0}, Dims{-1}}) {
    for (bool k : {false, true}) {
      EXPECT_EQ(sum(x, d, k).dim(), 0);
      EXPECT_EQ(sum(x, d, k).item<double>(), 2.5);
      EXPECT_EQ(mean(x, d, k).item<double>(), 2.5);
      EXPECT_EQ(prod(x, d, k).item<double>(), 2.5);
      EXPECT_EQ(amax(x, d, k).item<double>(), 2.5);
      EXPECT_EQ(logsumexp(x, d, k).item<double>(), 2.5);
      EXPECT_EQ(norm(x, 2, d, k).item<double>(), 2.5);
      EXPECT_TRUE(std::isnan(var(x, d, 1, k).item<double>()));  // 0 / 0
      EXPECT_EQ(var(x, d, 0, k).item<double>(), 0);
    }
  }
  auto [v, i] = max(x, 0);
  EXPECT_EQ(v.dim(), 0);
  EXPECT_EQ(v.item<double>(), 2.5);
  EXPECT_EQ(i.item<int64_t>(), 0);
  EXPECT_EQ(argmin(x, -1).item<int64_t>(), 0);
  EXPECT_EQ(argmax(x).item<int64_t>(), 0);
  EXPECT_EQ(max(x).item<double>(), 2.5);
  expect_error([&] { sum(x, {1}); }, "[sum] ");
  expect_error([&] { sum(x, {0, -1}); }, "[sum] ");
}

TEST(Reduce, Empty) {
  for (DType t : {DType::Float32, DType::Float64}) {
    Tensor x = zeros({0, 3}, t);
    EXPECT_EQ(sum(x).dim(), 0);
    EXPECT_EQ(sum(x).item<double>(), 0);
    EXPECT_TRUE(close(sum(x, {0}), {0, 0, 0}, 0, 0));
    EXPECT_EQ(sum(x, {1}).shape(), (Shape{0}));
    EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{0, 1}));
    EXPECT_TRUE(close(prod(x, {0}), {1, 1, 1}, 0, 0));
    EXPECT_EQ(prod(x).item<double>(), 1);
    EXPECT_TRUE(std::isnan(mean(x).item<double>()));
    EXPECT_TRUE(close(mean(x, {0}), {kNaN, kNaN, kNaN}, 0, 0));
    EXPECT_TRUE(std::isnan(var(x).item<double>()));
    EXPECT_TRUE(std::isnan(metagrad::std(x, {0}).to_vector<double>()[0]));
    EXPECT_EQ(norm(x).item<double>(), 0);
    EXPECT_EQ(norm(x, 0).item<double>(), 0);
    EXPECT_EQ(norm(x, 1, {0}).to_vector<double>(), (Vec{0, 0, 0}));
    EXPECT_EQ(norm(x, 3, {0}).to_vector<double>(), (Vec{0, 0, 0}));
    EXPECT_EQ(logsumexp(x, {}).item<double>(), -kInf);
    // Reducing a non-empty dim of an empty tensor is fine: no outputs.
    EXPECT_EQ(amax(x, {1}).shape(), (Shape{0}));
    EXPECT_EQ(norm(x, kInf, {1}).shape(), (Shape{0}));
    EXPECT_EQ(std::get<1>(max(x, 1)).shape(), (Shape{0}));
    EXPECT_EQ(argmin(x, 1, true).shape(), (Shape{0, 1}));
    // The max of no elements is undefined.
    expect_error([&] { max(x); }, "[max] ");
    expect_error([&] { min(x); }, "[min] ");
    expect_error([&] { amax(x, {0}); }, "[amax] ");
    expect_error([&] { amin(x); }, "[amin] ");
    expect_error([&] { max(x, 0); }, "[max] ");
    expect_error([&] { min(x, -2, true); }, "[min] ");
    expect_error([&] { argmax(x); }, "[argmax] ");
    expect_error([&] { argmin(x, 0); }, "[argmin] ");
    expect_error([&] { norm(x, kInf); }, "[norm] ");
    expect_error([&] { norm(x, -kInf, {0}); }, "[norm] ");
  }
  EXPECT_EQ(sum(zeros({0}, DType::Int32)).item<int64_t>(), 0);
  EXPECT_EQ(prod(zeros({2, 0}, DType::Int32), {1}).to_vector<int64_t>(),
            (std::vector<int64_t>{1, 1}));
}

// ---- errors ----------------------------------------------------------------------------------

TEST(Reduce, Errors) {
  Tensor x = zeros({2, 3, 4});
  expect_error([&] { sum(x, {3}); }, "[sum] dim 3 out of range");
  expect_error([&] { mean(x, {-4}); }, "[mean] dim -4 out of range");
  expect_error([&] { sum(x, {1, 1}); }, "[sum] dim 1 appears more than once");
  expect_error([&] { prod(x, {1, -2}); }, "[prod] dim 1 appears more than once");
  expect_error([&] { var(x, {0, 2, -1}); }, "[var] dim 2 appears more than once");
  expect_error([&] { amax(x, {5}); }, "[amax] ");
  expect_error([&] { logsumexp(x, {2, 2}); }, "[logsumexp] ");
  expect_error([&] { norm(x, 2, {7}); }, "[norm] ");
  expect_error([&] { norm(x, kNaN); }, "[norm] ");
  expect_error([&] { max(x, 3); }, "[max] ");
  expect_error([&] { min(x, -4); }, "[min] ");
  expect_error([&] { argmax(x, 3); }, "[argmax] ");
  expect_error([&] { sum(Tensor()); }, "[sum] ");
  expect_error([&] { max(Tensor()); }, "[max] ");
}

// ---- large inputs: every loop order, the threads, blocked accumulation ----------------------

TEST(Reduce, LargeInputsEveryLoopOrder) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(-1, 1);
  for (const Shape& shape :
       {Shape{4096, 300}, Shape{3, 50000}, Shape{50000, 3}, Shape{2, 513, 70}}) {
    Vec v(static_cast<size_t>(numel_of(shape)));
    for (double& e : v) e = std::round(u(rng) * 64) / 64;  // exact in float32, frequent ties
    for (DType t : {DType::Float32, DType::Float64}) {
      Tensor x = tensor(v, shape).to(t);
      const double tol = t == DType::Float32 ? 1e-5 : 1e-10;
      std::vector<Dims> dim_sets;
      for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) dim_sets.push_back({d});
      dim_sets.push_back({});
      if (shape.size() == 3) dim_sets.push_back({0, 2});
      for (const Dims& d : dim_sets) {
        SCOPED_TRACE(shape_str(shape) + " " + dtype_name(t) + " dims " + shape_str(d));
        EXPECT_TRUE(close(sum(x, d), ref_reduce(shape, v, d, r_sum), tol, tol));
        EXPECT_TRUE(close(var(x, d), ref_reduce(shape, v, d, r_var(1, false)), tol, tol));
        EXPECT_TRUE(close(amax(x, d), ref_reduce(shape, v, d, r_max), 0, 0));
        EXPECT_TRUE(close(logsumexp(x, d), ref_reduce(shape, v, d, r_logsumexp_direct), tol, tol));
        EXPECT_TRUE(close(norm(x, 2, d), ref_reduce(shape, v, d, r_norm(2)), tol, tol));
        if (d.size() == 1) {
          auto [mv, mi] = min(x, d[0]);
          EXPECT_TRUE(close(mv, ref_reduce(shape, v, d, r_min), 0, 0));
          EXPECT_TRUE(close(
              mi, ref_reduce(shape, v, d, [](const Vec& g) { return double(r_argext(g, false)); }),
              0, 0));
        }
        // Transposed: the same reductions over the permuted dims.
        Tensor xt = x.transpose(0, static_cast<int64_t>(shape.size()) - 1);
        Dims dt;
        for (int64_t e : d)
          dt.push_back(e == 0 ? static_cast<int64_t>(shape.size()) - 1
                       : e == static_cast<int64_t>(shape.size()) - 1 ? 0
                                                                     : e);
        Tensor s = sum(xt, dt);
        Tensor sr = sum(x, d);
        if (sr.dim() == 2) sr = sr.t();  // the two kept dims come out swapped
        EXPECT_TRUE(close(s.contiguous(), sr.contiguous().to_vector<double>(), tol, tol));
      }
    }
  }
  // One long row: split across threads; ties and NaN resolved to the first across chunks.
  Vec v(300001, 0.5);
  v[123456] = 9;
  v[200000] = 9;
  Tensor x = tensor(v, {300001});
  EXPECT_EQ(argmax(x).item<int64_t>(), 123456);
  EXPECT_EQ(std::get<1>(max(x, 0)).item<int64_t>(), 123456);
  v[250000] = kNaN;
  v[290000] = kNaN;
  x = tensor(v, {300001});
  EXPECT_EQ(argmax(x).item<int64_t>(), 250000);
  EXPECT_EQ(argmin(x).item<int64_t>(), 250000);
  EXPECT_TRUE(std::isnan(max(x).item<double>()));
  // Blocked accumulation: a float64 sum of many values is close to the exact (Kahan) one.
  Vec w(1 << 20);
  std::uniform_real_distribution<double> pos(0, 1);
  for (double& e : w) e = pos(rng);
  double s = 0, comp = 0;
  for (double e : w) {
    const double y = e - comp, t = s + y;
    comp = (t - s) - y;
    s = t;
  }
  EXPECT_NEAR(sum(tensor(w, {1 << 20})).item<double>(), s, 1e-13 * s);
  EXPECT_NEAR(sum(sum(tensor(w, {1024, 1024}), {0})).item<double>(), s, 1e-12 * s);
}

// The ops report themselves under their own names only for floating outputs; here just check
// that a grad-requiring input goes through every op (the recorder is tested in autograd/).
TEST(Reduce, RequiresGradInputsWork) {
  Tensor x = tensor(Vec{1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  EXPECT_EQ(sum(x, {1}).to_vector<double>(), (Vec{6, 15}));
  EXPECT_EQ(mean(x).item<double>(), 3.5);
  EXPECT_EQ(std::get<0>(max(x, 0)).to_vector<double>(), (Vec{4, 5, 6}));
  EXPECT_EQ(amin(x).item<double>(), 1);
  EXPECT_EQ(max(x).item<double>(), 6);
  EXPECT_NEAR(norm(x, 1).item<double>(), 21, 0);
}

}  // namespace
