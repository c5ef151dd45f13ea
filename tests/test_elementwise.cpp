// Elementwise ops: values against float64 references computed here with <cmath>,
// broadcasting, non-contiguous operands, 0-d and empty tensors, type promotion, errors.
#include <gtest/gtest.h>

#include "test_util.h"

#include <metagrad/metagrad.h>

#include <cmath>
#include <functional>
#include <limits>

using namespace metagrad;


namespace {

// Deterministic values spread over [lo, hi] without a random generator.
std::vector<double> spread(int64_t n, double lo, double hi) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * std::fmod(0.618033988749 * (i + 1), 1.0);
  return v;
}

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo, hi;
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](auto& x) { return neg(x); }, [](double x) { return -x; }, -3, 3},
      {"abs", [](auto& x) { return abs(x); }, [](double x) { return std::fabs(x); }, -3, 3},
      {"sign", [](auto& x) { return sign(x); }, [](double x) { return double((x > 0) - (x < 0)); }, -3, 3},
      {"exp", [](auto& x) { return exp(x); }, [](double x) { return std::exp(x); }, -3, 3},
      {"log", [](auto& x) { return log(x); }, [](double x) { return std::log(x); }, 0.1, 5},
      {"log1p", [](auto& x) { return log1p(x); }, [](double x) { return std::log1p(x); }, -0.5, 5},
      {"expm1", [](auto& x) { return expm1(x); }, [](double x) { return std::expm1(x); }, -2, 2},
      {"sqrt", [](auto& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, 0, 9},
      {"rsqrt", [](auto& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); }, 0.1, 9},
      {"sin", [](auto& x) { return sin(x); }, [](double x) { return std::sin(x); }, -4, 4},
      {"cos", [](auto& x) { return cos(x); }, [](double x) { return std::cos(x); }, -4, 4},
      {"tan", [](auto& x) { return tan(x); }, [](double x) { return std::tan(x); }, -1.2, 1.2},
      {"tanh", [](auto& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, -4, 4},
      {"sigmoid", [](auto& x) { return sigmoid(x); }, [](double x) { return 1 / (1 + std::exp(-x)); }, -30, 30},
      {"relu", [](auto& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0; }, -3, 3},
      {"reciprocal", [](auto& x) { return reciprocal(x); }, [](double x) { return 1 / x; }, 0.5, 3},
      {"square", [](auto& x) { return square(x); }, [](double x) { return x * x; }, -3, 3},
      {"floor", [](auto& x) { return floor(x); }, [](double x) { return std::floor(x); }, -3, 3},
      {"ceil", [](auto& x) { return ceil(x); }, [](double x) { return std::ceil(x); }, -3, 3},
      {"round", [](auto& x) { return round(x); }, [](double x) { return std::nearbyint(x); }, -3, 3},
      {"trunc", [](auto& x) { return trunc(x); }, [](double x) { return std::trunc(x); }, -3, 3},
      {"erf", [](auto& x) { return erf(x); }, [](double x) { return std::erf(x); }, -3, 3},
      {"pow2.5", [](auto& x) { return pow(x, 2.5); }, [](double x) { return std::pow(x, 2.5); }, 0, 3},
      {"pow-1", [](auto& x) { return pow(x, -1); }, [](double x) { return 1 / x; }, 0.5, 3},
      {"clamp", [](auto& x) { return clamp(x, -1.0, 0.5); }, [](double x) { return std::min(std::max(x, -1.0), 0.5); }, -3, 3},
      {"clamp_min", [](auto& x) { return clamp_min(x, 0.25); }, [](double x) { return std::max(x, 0.25); }, -3, 3},
  };
}

}  // namespace

TEST(Elementwise, UnaryMatchesReferenceFloat64AndFloat32) {
  for (const auto& c : unary_cases()) {
    auto data = spread(37, c.lo, c.hi);
    for (DType t : {DType::Float64, DType::Float32}) {
      Tensor x = tensor(data).to(t);
      Tensor y = c.op(x);
      ASSERT_EQ(y.dtype(), t) << c.name;
      auto got = y.to_vector<double>();
      for (size_t i = 0; i < data.size(); ++i) {
        const double xin = t == DType::Float32 ? double(float(data[i])) : data[i];
        const double want = c.ref(xin);
        const double tol = t == DType::Float64 ? 1e-12 : 2e-6;
        EXPECT_NEAR(got[i], want, tol * (1 + std::fabs(want))) << c.name << " at x=" << xin;
      }
    }
  }
}

TEST(Elementwise, UnaryOnNonContiguousAndEmptyAnd0d) {
  auto data = spread(60, -2, 2);
  Tensor base = tensor(data, {6, 10});
  // A transposed, step-sliced view: elements (j, i) for i in 0..6, j in 1,4,7.
  Tensor v = base.t().slice(0, 1, 10, 3);
  ASSERT_FALSE(v.is_contiguous());
  auto got = exp(v).to_vector<double>();
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 6; ++c)
      EXPECT_DOUBLE_EQ(got[r * 6 + c], std::exp(data[c * 10 + 1 + 3 * r]));
  // Expanded (stride 0) input.
  Tensor e = tensor({0.5}).expand({4, 3});
  for (double g : sin(e).to_vector<double>()) EXPECT_DOUBLE_EQ(g, std::sin(0.5));
  EXPECT_EQ(exp(zeros({0, 4})).shape(), (Shape{0, 4}));
  EXPECT_DOUBLE_EQ(tanh(full({}, 0.3, DType::Float64)).item<double>(), std::tanh(0.3));
}

TEST(Elementwise, LargeTensorsUseEveryElement) {
  // Big enough to take the parallel, chunked path; also a strided one.
  const int64_t n = 300000;
  Tensor x = arange(0.0, double(n), 1.0, TensorOptions(DType::Float64));
  auto y = (x * 2 + 1).to_vector<double>();
  for (int64_t i = 0; i < n; i += 997) EXPECT_EQ(y[i], 2.0 * i + 1);
  EXPECT_EQ(y[n - 1], 2.0 * (n - 1) + 1);
  Tensor m = x.view({600, 500}).t();
  auto z = neg(m).to_vector<double>();
  for (int64_t i = 0; i < 500; i += 37)
    for (int64_t j = 0; j < 600; j += 41) EXPECT_EQ(z[i * 600 + j], -double(j * 500 + i));
}

TEST(Elementwise, IntegerInputsOfFloatOpsPromote) {
  Tensor i = tensor<int64_t>({1, 4, 9});
  Tensor s = sqrt(i);
  EXPECT_EQ(s.dtype(), DType::Float32);
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(abs(tensor<int32_t>({-3, 2})).dtype(), DType::Int32);
  EXPECT_EQ(abs(tensor<int32_t>({-3, 2})).to_vector<int32_t>(), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(pow(tensor<int64_t>({2, 3}), 3).to_vector<int64_t>(), (std::vector<int64_t>{8, 27}));
  EXPECT_EQ(pow(tensor<int64_t>({2}), 0.5).dtype(), DType::Float32);
  EXPECT_EQ(clamp(tensor<int64_t>({-5, 5}), -2, 3).to_vector<int64_t>(), (std::vector<int64_t>{-2, 3}));
  EXPECT_MG_ERROR(pow(tensor<int64_t>({2}), -1), "[pow]");
  EXPECT_MG_ERROR(neg(tensor({true})), "[neg]");
  EXPECT_MG_ERROR(clamp(zeros({2}), std::nullopt, std::nullopt), "[clamp]");
}

// Rounding an integer is the identity (not a trip through double, which rounds int64 beyond
// 2^53 and overflows at its ends); clamp is min(max(x, lo), hi), so lo > hi gives hi; abs(-0.0)
// is +0.0; int64 clamp bounds beyond 2^53 stay exact. All as PyTorch.
TEST(Elementwise, IntegerRoundingClampOrderAndSignedZero) {
  const int64_t big = (int64_t{1} << 53) + 1, mx = std::numeric_limits<int64_t>::max();
  for (auto f : {+[](const Tensor& t) { return floor(t); }, +[](const Tensor& t) { return ceil(t); },
                 +[](const Tensor& t) { return round(t); }, +[](const Tensor& t) { return trunc(t); }}) {
    Tensor r = f(tensor({big, mx, -mx}));
    EXPECT_EQ(r.dtype(), DType::Int64);
    EXPECT_EQ(r.to_vector<int64_t>(), (std::vector<int64_t>{big, mx, -mx}));
  }
  EXPECT_EQ(clamp(tensor({5.0, -1.0}), 10.0, 3.0).to_vector<double>(), (std::vector<double>{3, 3}));
  EXPECT_EQ(clamp(tensor({int64_t{5}}), 10, 3).item<int64_t>(), 3);
  EXPECT_EQ(clamp(tensor({int64_t{5}}), big + 2, big).item<int64_t>(), big);
  EXPECT_EQ(clamp(tensor({int64_t{0}, mx}), big, std::nullopt).to_vector<int64_t>(),
            (std::vector<int64_t>{big, mx}));
  EXPECT_EQ(clamp(tensor({mx}), std::nullopt, big).item<int64_t>(), big);
  EXPECT_FALSE(std::signbit(abs(tensor({-0.0})).item<double>()));
  EXPECT_FALSE(std::signbit(abs(tensor({-0.0f})).item<float>()));
  EXPECT_EQ(reciprocal(abs(tensor({-0.0}))).item<double>(), INFINITY);
  // The clamp derivative passes nothing where lo > hi (no x lies in [lo, hi]).
  Tensor x = tensor({5.0, 1.0}).requires_grad_(true);
  sum(clamp(x, 10.0, 3.0)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0}));
}

// Found against PyTorch 2.15 in session 13: relu(NaN) is NaN; a NaN clamp bound gives NaN; a
// float scalar beyond float32's range is +-inf as a float32 operand (not an error); an integer
// power beyond 2^53 keeps its exact exponent (its parity).
TEST(Elementwise, NanReluNanBoundsHugeScalarsAndExponents) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> r = relu(tensor(std::vector<float>{nan, -1, 2}, {3})).to_vector<float>();
  EXPECT_TRUE(std::isnan(r[0]));
  EXPECT_EQ(r[1], 0.f);
  EXPECT_EQ(r[2], 2.f);
  EXPECT_TRUE(std::isnan(clamp(tensor({1.0f}), Scalar(std::nan("")), std::nullopt).item<float>()));
  EXPECT_TRUE(std::isnan(clamp(tensor({1.0}), std::nullopt, Scalar(std::nan(""))).item<double>()));
  const Tensor x = tensor(std::vector<float>{1, -2, 0}, {3});
  const std::vector<float> m = mul(x, 1e300).to_vector<float>();
  EXPECT_EQ(m[0], INFINITY);
  EXPECT_EQ(m[1], -INFINITY);
  EXPECT_TRUE(std::isnan(m[2]));  // 0 * inf, as PyTorch's
  EXPECT_EQ(lt(x, 1e300).to_vector<bool>(), (std::vector<bool>{true, true, true}));
  EXPECT_EQ(mul(x, 1e300).dtype(), DType::Float32);
  EXPECT_MG_ERROR(full({1}, 1e300), "[fill_]");  // full and fill_ still refuse it
  const int64_t big = (int64_t{1} << 53) + 1;
  EXPECT_EQ(pow(tensor({int64_t{-1}, int64_t{3}}), Scalar(big)).to_vector<int64_t>(),
            (std::vector<int64_t>{-1, 6593269854470406147}));
  EXPECT_EQ(pow(tensor(std::vector<int32_t>{-1}, {1}), Scalar(big)).item<int32_t>(), -1);
}

TEST(Elementwise, NanPropagation) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor x = tensor({nan, 1.0});
  EXPECT_TRUE(std::isnan(clamp(x, 0.0, 0.5).to_vector<double>()[0]));
  EXPECT_TRUE(std::isnan(maximum(x, tensor({0.0, 0.0})).to_vector<double>()[0]));
  EXPECT_TRUE(std::isnan(minimum(tensor({0.0, 0.0}), x).to_vector<double>()[0]));
}

TEST(Elementwise, BinaryBroadcastingMatchesLoops) {
  auto da = spread(2 * 3 * 1, -2, 2), db = spread(4, 0.5, 2);
  Tensor a = tensor(da, {2, 3, 1});
  Tensor b = tensor(db, {4});
  struct Case {
    const char* name;
    std::function<Tensor(const Tensor&, const Tensor&)> op;
    std::function<double(double, double)> ref;
  };
  std::vector<Case> cases = {
      {"add", [](auto& x, auto& y) { return x + y; }, [](double x, double y) { return x + y; }},
      {"sub", [](auto& x, auto& y) { return x - y; }, [](double x, double y) { return x - y; }},
      {"mul", [](auto& x, auto& y) { return x * y; }, [](double x, double y) { return x * y; }},
      {"div", [](auto& x, auto& y) { return x / y; }, [](double x, double y) { return x / y; }},
      {"pow", [](auto& x, auto& y) { return pow(abs(x), y); }, [](double x, double y) { return std::pow(std::fabs(x), y); }},
      {"maximum", [](auto& x, auto& y) { return maximum(x, y); }, [](double x, double y) { return std::max(x, y); }},
      {"minimum", [](auto& x, auto& y) { return minimum(x, y); }, [](double x, double y) { return std::min(x, y); }},
      {"fmod", [](auto& x, auto& y) { return fmod(x, y); }, [](double x, double y) { return std::fmod(x, y); }},
  };
  for (const auto& c : cases) {
    Tensor y = c.op(a, b);
    ASSERT_EQ(y.shape(), (Shape{2, 3, 4})) << c.name;
    auto got = y.to_vector<double>();
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 4; ++k)
          EXPECT_NEAR(got[(i * 3 + j) * 4 + k], c.ref(da[i * 3 + j], db[k]), 1e-12) << c.name;
  }
  EXPECT_MG_ERROR(zeros({2, 3}) + zeros({4}), "[add] shapes [2, 3] and [4] cannot be broadcast");
}

// Pieces whose inputs are constant along the inner dim (stride 0) run blocked on unit
// strides (Note [Broadcast pieces] in kernels/cpu/loops.h): rows longer than a block, a
// scalar operand, and the three-input where, against plain loops.
TEST(Elementwise, InnerBroadcastPiecesMatchLoops) {
  const int64_t rows = 3, cols = 1000;  // 1000 > the 256-element block
  Generator gen(3);
  Tensor x = randn({rows, cols}, DType::Float64, &gen), c = randn({rows, 1}, DType::Float64, &gen);
  const auto xv = x.to_vector<double>(), cv = c.to_vector<double>();
  const auto sum = (x * c + 2.5).to_vector<double>();
  const auto sel = where(x > 0, c, 0.0).to_vector<double>();
  const auto low = where(x > 0, 1.5, x).to_vector<double>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const size_t i = static_cast<size_t>(r * cols + j), ri = static_cast<size_t>(r);
      ASSERT_EQ(sum[i], xv[i] * cv[ri] + 2.5) << r << "," << j;
      ASSERT_EQ(sel[i], xv[i] > 0 ? cv[ri] : 0.0) << r << "," << j;
      ASSERT_EQ(low[i], xv[i] > 0 ? 1.5 : xv[i]) << r << "," << j;
    }
  // A float32 row broadcast of [N, C, H, W] against [1, C, 1, 1] (batch norm's pattern).
  Tensor a = randn({2, 3, 17, 19}, DType::Float32, &gen), w = randn({1, 3, 1, 1}, DType::Float32, &gen);
  const auto av = a.to_vector<float>(), wv = w.to_vector<float>(), yv = (a - w).to_vector<float>();
  for (size_t i = 0; i < av.size(); ++i) ASSERT_EQ(yv[i], av[i] - wv[(i / (17 * 19)) % 3]) << i;
}

TEST(Elementwise, BinaryOnNonContiguousOperands) {
  auto d = spread(20, -1, 1);
  Tensor m = tensor(d, {4, 5});
  Tensor t = m.t();                  // [5, 4]
  Tensor s = m.slice(1, 0, 5, 2);    // [4, 3]
  auto got = (t.slice(0, 0, 3) * s.t()).to_vector<double>();  // [3, 4]
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      EXPECT_DOUBLE_EQ(got[i * 4 + j], d[j * 5 + i] * d[j * 5 + 2 * i]);
}

// Operands read through a transpose, large enough for the tiled walk of Note [Transposed
// pieces] (kernels/cpu/loops.h), with sizes that are not multiples of the tile: a copy, a
// binary op with one transposed operand, a dtype-converting copy, an assignment into a
// transposed view, and a where() with a transposed condition, against index arithmetic.
TEST(Elementwise, TransposedOperandsInTiles) {
  Generator gen(12);
  const int64_t p = 3, r = 70, c = 45;  // planes of r x c
  Tensor a = randn({p, r, c}, DType::Float64, &gen), b = randn({p, c, r}, DType::Float64, &gen);
  const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  auto at = [&](const std::vector<double>& v, int64_t i, int64_t j, int64_t k, int64_t cols) {
    return v[static_cast<size_t>((i * (v.size() / static_cast<size_t>(p) / cols) + j) * cols + k)];
  };
  const Tensor bt = b.transpose(1, 2);  // [p, r, c], stride 1 along r
  const auto copied = bt.contiguous().to_vector<double>();
  const auto sum_v = (a + bt).to_vector<double>();
  const auto as_f32 = bt.to(DType::Float32).to_vector<float>();
  Tensor into = zeros({p, c, r}, DType::Float64);
  into.transpose(1, 2).copy_(a);  // writes through the transposed view
  const auto into_v = into.to_vector<double>();
  const auto picked = where(bt > 0, a, bt).to_vector<double>();
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = 0; j < r; ++j)
      for (int64_t k = 0; k < c; ++k) {
        const size_t e = static_cast<size_t>((i * r + j) * c + k);
        const double bv_t = at(bv, i, k, j, r), av_e = at(av, i, j, k, c);
        ASSERT_EQ(copied[e], bv_t) << i << " " << j << " " << k;
        ASSERT_EQ(sum_v[e], av_e + bv_t) << i << " " << j << " " << k;
        ASSERT_EQ(as_f32[e], static_cast<float>(bv_t)) << i << " " << j << " " << k;
        ASSERT_EQ(at(into_v, i, k, j, r), av_e) << i << " " << j << " " << k;
        ASSERT_EQ(picked[e], bv_t > 0 ? av_e : bv_t) << i << " " << j << " " << k;
      }
}

TEST(Elementwise, ComparisonsAndLogical) {
  Tensor a = tensor({1.0, 2.0, 3.0});
  Tensor b = tensor({3.0, 2.0, 1.0});
  EXPECT_EQ((a < b).dtype(), DType::Bool);
  EXPECT_EQ((a < b).to_vector<bool>(), (std::vector<bool>{true, false, false}));
  EXPECT_EQ((a <= b).to_vector<bool>(), (std::vector<bool>{true, true, false}));
  EXPECT_EQ((a == b).to_vector<bool>(), (std::vector<bool>{false, true, false}));
  EXPECT_EQ((a != b).to_vector<bool>(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ((a > 1.5).to_vector<bool>(), (std::vector<bool>{false, true, true}));
  EXPECT_EQ(ge(a, 2).to_vector<bool>(), (std::vector<bool>{false, true, true}));
  Tensor p = tensor({true, true, false, false}), q = tensor({true, false, true, false});
  EXPECT_EQ(logical_and(p, q).to_vector<bool>(), (std::vector<bool>{true, false, false, false}));
  EXPECT_EQ(logical_or(p, q).to_vector<bool>(), (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(logical_xor(p, q).to_vector<bool>(), (std::vector<bool>{false, true, true, false}));
  EXPECT_EQ(logical_not(tensor({0.0, 2.0})).to_vector<bool>(), (std::vector<bool>{true, false}));
  EXPECT_EQ((p + q).to_vector<bool>(), (std::vector<bool>{true, true, true, false}));  // or
  EXPECT_EQ((p * q).to_vector<bool>(), (std::vector<bool>{true, false, false, false}));  // and
  EXPECT_MG_ERROR(p - q, "[sub]");
}

TEST(Elementwise, TypePromotion) {
  Tensor f = zeros({2}), d = zeros({2}, DType::Float64), i = zeros({2}, DType::Int64);
  Tensor i32 = zeros({2}, DType::Int32), u8 = zeros({2}, DType::UInt8), b = zeros({2}, DType::Bool);
  EXPECT_EQ((f + d).dtype(), DType::Float64);
  EXPECT_EQ((i + f).dtype(), DType::Float32);
  EXPECT_EQ((i32 + i).dtype(), DType::Int64);
  EXPECT_EQ((u8 + i32).dtype(), DType::Int32);
  EXPECT_EQ((b + u8).dtype(), DType::UInt8);
  EXPECT_EQ((i / i).dtype(), DType::Float32);  // true division
  EXPECT_EQ((i * 2).dtype(), DType::Int64);
  EXPECT_EQ((i * 2.5).dtype(), DType::Float32);
  EXPECT_EQ((b + 1).dtype(), DType::Int64);
  EXPECT_EQ((f * 2.0).dtype(), DType::Float32);
  // 0-d tensors: same category does not promote, a higher one does.
  EXPECT_EQ((f + full({}, 1.0, DType::Float64)).dtype(), DType::Float32);
  EXPECT_EQ((i + full({}, 1.0, DType::Float64)).dtype(), DType::Float64);
  EXPECT_EQ((full({}, 1, DType::Int32) + full({}, 1, DType::Int64)).dtype(), DType::Int64);
  EXPECT_EQ((tensor<int64_t>({7, -7}) / 2).to_vector<float>(), (std::vector<float>{3.5f, -3.5f}));
}

TEST(Elementwise, WhereBroadcastsAndPromotes) {
  Tensor c = tensor({true, false, true});
  Tensor a = tensor({1.0, 2.0, 3.0});
  Tensor r = where(c, a, 0);
  EXPECT_EQ(r.to_vector<double>(), (std::vector<double>{1, 0, 3}));
  Tensor r2 = where(c.view({3, 1}), a, tensor({-1.f}));
  EXPECT_EQ(r2.shape(), (Shape{3, 3}));
  EXPECT_EQ(r2.dtype(), DType::Float64);
  EXPECT_EQ(r2.to_vector<double>(), (std::vector<double>{1, 2, 3, -1, -1, -1, 1, 2, 3}));
  EXPECT_MG_ERROR(where(a, a, a), "[where]");
}

TEST(Elementwise, InPlace) {
  Tensor x = tensor({1.0, 2.0, 3.0});
  const uint64_t v0 = x.version();
  x += tensor({1.0, 1.0, 1.0});
  x *= 2;
  EXPECT_EQ(x.to_vector<double>(), (std::vector<double>{4, 6, 8}));
  EXPECT_GT(x.version(), v0);
  Tensor m = zeros({2, 3});
  Tensor col = m.select(1, 1);
  col += 5;  // writes through a strided view
  EXPECT_EQ(m.to_vector<float>(), (std::vector<float>{0, 5, 0, 0, 5, 0}));
  Tensor i = zeros({2}, DType::Int64);
  EXPECT_MG_ERROR(i += zeros({2}), "[add_]");
  EXPECT_MG_ERROR(add_(x, zeros({2, 3})), "[add_]");
  Tensor e = zeros({1}).expand({3});
  EXPECT_MG_ERROR(e += 1, "[add_]");
}

// Note [Scalar constants]: the 0-d tensors of scalar operands are shared per thread; nothing a
// caller does may reach them, and values that compare equal but differ (-0.0 and 0.0) or share
// bits across dtypes stay apart.
namespace metagrad {
namespace {

TEST(ScalarConstants, SignedZerosAndDtypesStayApart) {
  const Tensor x = ones({3}, DType::Float64);
  EXPECT_TRUE(std::signbit((x * -0.0).to_vector<double>()[0]));
  EXPECT_FALSE(std::signbit((x * 0.0).to_vector<double>()[0]));
  EXPECT_TRUE(std::signbit((x * -0.0).to_vector<double>()[0]));
  const Tensor i = ones({2}, DType::Int64);
  EXPECT_EQ((i + 2).dtype(), DType::Int64);
  EXPECT_EQ((x + 2).dtype(), DType::Float64);
  EXPECT_EQ((ones({2}) + 2).dtype(), DType::Float32);
  EXPECT_EQ((i + 2).to_vector<int64_t>(), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ((i + 2.5).dtype(), DType::Float32);  // int tensor, float scalar: the default float
}

TEST(ScalarConstants, WritingResultsOrScalarLikeNeverChangesLaterOps) {
  const Tensor x = full({4}, 1.5, DType::Float64);
  Tensor y = x * 3.0;
  y += 100.0;  // writes the result, not the constant
  Tensor z = x;
  z *= 3.0;  // in place into x's storage, reading the constant
  Tensor c = scalar_like(x, 3.0);
  c.fill_(-7.0);  // the caller's own tensor
  for (double v : (full({4}, 2.0, DType::Float64) * 3.0).to_vector<double>()) EXPECT_EQ(v, 6.0);
  for (double v : z.to_vector<double>()) EXPECT_EQ(v, 4.5);
}

TEST(ScalarConstants, GradientsThroughScalarOpsAndManyDistinctValues) {
  const Tensor x = full({3}, 2.0, DType::Float64).requires_grad_(true);
  // d/dx sum(0.5 * x^2 * 3 - 1) = 3x, twice: the saved constants are read back unchanged.
  for (int rep = 0; rep < 2; ++rep) {
    const Tensor loss = sum(0.5 * x * x * 3.0 - 1.0);
    const Tensor g = grad({loss}, {x}, {}, std::nullopt, /*create_graph=*/true)[0];
    for (double v : g.to_vector<double>()) EXPECT_DOUBLE_EQ(v, 6.0);
    const Tensor gg = grad({sum(g)}, {x})[0];
    for (double v : gg.to_vector<double>()) EXPECT_DOUBLE_EQ(v, 3.0);
  }
  // More distinct values than the per-thread cache holds: each op still gets its own value.
  const Tensor o = ones({1}, DType::Float64);
  for (int k = 0; k < 1000; ++k) ASSERT_EQ((o * static_cast<double>(k)).item<double>(), k);
}

}  // namespace
}  // namespace metagrad

// Note [Integer overflow wraps]: integer arithmetic wraps modulo 2^bits as PyTorch's does
// (signed overflow is undefined in C++; the ASan + UBSan build stops on it).
TEST(Elementwise, IntegerOverflowWraps) {
  const int64_t mx = std::numeric_limits<int64_t>::max(), mn = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(add(tensor({mx}), tensor({int64_t{1}})).item<int64_t>(), mn);
  EXPECT_EQ(sub(tensor({mn}), tensor({int64_t{1}})).item<int64_t>(), mx);
  EXPECT_EQ(mul(tensor({mx}), tensor({int64_t{2}})).item<int64_t>(), -2);
  EXPECT_EQ(neg(tensor({mn})).item<int64_t>(), mn);
  EXPECT_EQ(abs(tensor({mn})).item<int64_t>(), mn);
  EXPECT_EQ(square(tensor({int64_t{1} << 40})).item<int64_t>(), 0);
  EXPECT_EQ(pow(tensor({int64_t{3}}), 41).item<int64_t>(), -420491770248316829);  // 3^41 mod 2^64
  const int32_t imx = std::numeric_limits<int32_t>::max();
  EXPECT_EQ(add(tensor({imx}), tensor({int32_t{1}})).item<int64_t>(),
            std::numeric_limits<int32_t>::min());
  // fmod by -1 leaves no remainder, the most negative value included (a % -1 is undefined there).
  EXPECT_EQ(fmod(tensor({mn, int64_t{7}}), tensor({int64_t{-1}, int64_t{-1}})).to_vector<int64_t>(),
            (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(fmod(tensor({std::numeric_limits<int32_t>::min()}), tensor({int32_t{-1}}))
                .item<int64_t>(),
            0);
  EXPECT_EQ(fmod(tensor({int64_t{-7}}), tensor({int64_t{3}})).item<int64_t>(), -1);
  // Integer fmod by zero is PyTorch's ZeroDivisionError; floating fmod by zero is NaN.
  EXPECT_MG_ERROR_HAS(fmod(tensor({int64_t{5}, int64_t{6}}), tensor({int64_t{2}, int64_t{0}})),
                      "[fmod]", "ZeroDivisionError");
  EXPECT_MG_ERROR_HAS(fmod(tensor({int32_t{5}}), 0), "[fmod]", "ZeroDivisionError");
  EXPECT_TRUE(std::isnan(fmod(tensor({5.0}), 0.0).item<double>()));
  // ... but an empty result divides nothing (as PyTorch), and shapes are checked first.
  EXPECT_EQ(fmod(zeros({0, 2}, DType::Int64), tensor({int64_t{1}, int64_t{0}})).shape(),
            (Shape{0, 2}));
  EXPECT_EQ(fmod(zeros({0}, DType::Int64), 0).numel(), 0);
  EXPECT_MG_ERROR_HAS(fmod(zeros({3}, DType::Int64), zeros({2}, DType::Int64)), "[fmod]",
                      "cannot be broadcast");
  // where's scalar branch must fit the result's dtype (arithmetic wraps, as PyTorch's).
  const Tensor u8 = tensor(std::vector<uint8_t>{1, 2});
  const Tensor c = tensor(std::vector<bool>{true, false});
  EXPECT_MG_ERROR_HAS(where(c, u8, 300), "[where]", "cannot be converted to uint8");
  EXPECT_MG_ERROR_HAS(where(c, 300, u8), "[where]", "cannot be converted to uint8");
  EXPECT_EQ(where(c, u8, 255).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 255}));
  // PyTorch's unsigned check takes -255..255, the negatives wrapping.
  EXPECT_EQ(where(c, u8, -1).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 255}));
  EXPECT_MG_ERROR_HAS(where(c, u8, -256), "[where]", "cannot be converted to uint8");
  EXPECT_EQ(where(c, u8, 2.5).dtype(), DType::Float32);  // a float scalar promotes
}

// PyTorch's can_cast for in-place results: nothing but bool goes into a bool tensor.
// An in-place op with a wider operand computes in the wider type and rounds once, as PyTorch's:
// 1 + (2^-24 + 2^-50) is just above the midpoint between 1 and the next float32, so it rounds
// up; rounding the operand to float32 first (2^-24, a tie) would give 1. Recorded as before.
TEST(Elementwise, InPlaceWithAWiderOperandRoundsOnce) {
  Tensor a = tensor({1.0f});
  add_(a, tensor({0x1p-24 + 0x1p-50}));
  EXPECT_EQ(a.dtype(), DType::Float32);
  EXPECT_EQ(a.item<float>(), 1.0f + 0x1p-23f);
  Tensor i = tensor(std::vector<int32_t>{7}, {1});
  mul_(i, tensor({(int64_t{1} << 32) + 3}));  // int64 product, wrapped to int32: 21
  EXPECT_EQ(i.item<int32_t>(), 21);
  Tensor w = tensor({2.0f, 3.0f}).requires_grad_(true);
  Tensor y = w * 1.0f;
  mul_(y, tensor({0.5, 4.0}));
  EXPECT_EQ(y.dtype(), DType::Float32);
  sum(y).backward();
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{0.5f, 4.0f}));
}

TEST(Elementwise, InPlaceIntoBoolTakesOnlyBool) {
  Tensor b = tensor({true, false});
  EXPECT_MG_ERROR_HAS(sub_(b, tensor({int64_t{1}, int64_t{1}})), "[sub_]", "bool");
  EXPECT_MG_ERROR(add_(b, tensor({int64_t{1}, int64_t{1}})), "[add_]");
  EXPECT_MG_ERROR(mul_(b, tensor({2.0, 2.0})), "[mul_]");
  add_(b, tensor({false, true}));  // bool + bool is "or"
  EXPECT_EQ(b.to_vector<bool>(), (std::vector<bool>{true, true}));
}

// Scalars keep integers exactly; full and fill_ refuse values the dtype cannot hold (as
// PyTorch's), while a scalar operand of an integer op wraps as a cast does; clamp bounds
// beyond the dtype saturate, and a missing bound is no bound.
TEST(Elementwise, ScalarsKeepIntegersExactAndFillsCheckTheirRange) {
  const int64_t mx = std::numeric_limits<int64_t>::max(), mn = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(full({2}, mx, DType::Int64).to_vector<int64_t>(), (std::vector<int64_t>{mx, mx}));
  EXPECT_EQ(full({1}, (int64_t{1} << 53) + 1, DType::Int64).item<int64_t>(),
            (int64_t{1} << 53) + 1);
  EXPECT_FALSE(full({1, 1}, mx, DType::Int64).is_view());  // a fresh tensor, as any factory's
  EXPECT_EQ(full({2, 3}, mx, DType::Int64).strides(), (Shape{3, 1}));
  EXPECT_EQ(add(tensor({int64_t{0}}), Scalar((int64_t{1} << 53) + 1)).item<int64_t>(),
            (int64_t{1} << 53) + 1);
  EXPECT_EQ(full({1}, 2.5, DType::Int64).item<int64_t>(), 2);
  EXPECT_MG_ERROR_HAS(full({1}, 300, DType::UInt8), "[full]", "without overflow");
  EXPECT_MG_ERROR(full({1}, int64_t{1} << 40, DType::Int32), "[full]");
  EXPECT_MG_ERROR(full({1}, 1e300, DType::Int64), "[fill_]");
  EXPECT_MG_ERROR(full({1}, std::nan(""), DType::Int32), "[fill_]");
  EXPECT_MG_ERROR(full({1}, 1e300), "[fill_]");  // beyond float32
  EXPECT_TRUE(std::isinf(full({1}, INFINITY).item<double>()));
  Tensor z = zeros({1}, DType::Int64);
  EXPECT_MG_ERROR(z.fill_(1e30), "[fill_]");
  // Scalar operands wrap into the tensor's integer type, as PyTorch's.
  EXPECT_EQ(add(tensor({int32_t{1}}), Scalar(int64_t{1} << 40)).item<int64_t>(), 1);
  EXPECT_EQ(add(tensor<uint8_t>({1}, {1}), Scalar(1000)).item<int64_t>(), 233);
  // clamp on int64 extremes.
  EXPECT_EQ(clamp(tensor({mx}), 0, mx).item<int64_t>(), mx);
  EXPECT_EQ(clamp(tensor({mn}), std::nullopt, 0).item<int64_t>(), mn);
  EXPECT_EQ(clamp(tensor({mn, int64_t{5}}), -1e300, 1e300).to_vector<int64_t>(),
            (std::vector<int64_t>{mn, 5}));
  // Integer powers with negative tensor exponents, and a huge scalar exponent.
  EXPECT_EQ(pow(tensor({int64_t{1}, int64_t{-1}, int64_t{-1}, int64_t{2}}),
                tensor({int64_t{-1}, int64_t{-1}, int64_t{-2}, int64_t{-1}}))
                .to_vector<int64_t>(),
            (std::vector<int64_t>{1, -1, 1, 0}));
  EXPECT_EQ(pow(tensor({int64_t{1}}), mx).item<int64_t>(), 1);
}
