// Tests of the matrix products (tensor/linalg.h): every result is compared with an independent
// reference written here (plain triple loops over std::vector, float64 or wrapping uint64),
// over contiguous, transposed, sliced-with-step, narrowed and expanded inputs, broadcast
// batches, the 1-d forms, integer dtypes, promotion, empty dimensions and every error.
#include <gtest/gtest.h>
#include <metagrad/metagrad.h>
#include <omp.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/blas.h"

using namespace metagrad;

namespace {

// ---- the reference ----------------------------------------------------------------------

template <typename Acc>
struct Ref {
  Shape shape;
  std::vector<Acc> v;
};

// torch.matmul semantics on row-major data, written from the definition: 1-d operands get a
// dimension of 1 added and removed, batch dimensions broadcast right-aligned.
template <typename Acc>
Ref<Acc> ref_matmul(const std::vector<Acc>& A, Shape as, const std::vector<Acc>& B, Shape bs) {
  const bool a1 = as.size() == 1, b1 = bs.size() == 1;
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  Shape ba(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  const size_t R = std::max(ba.size(), bb.size());
  while (ba.size() < R) ba.insert(ba.begin(), 1);
  while (bb.size() < R) bb.insert(bb.begin(), 1);
  Shape batch(R);
  int64_t nb = 1;
  for (size_t i = 0; i < R; ++i) {
    batch[i] = ba[i] == 1 ? bb[i] : ba[i];
    nb *= batch[i];
  }
  Ref<Acc> r;
  r.shape = batch;
  if (!a1) r.shape.push_back(m);
  if (!b1) r.shape.push_back(n);
  r.v.assign(static_cast<size_t>(nb * m * n), Acc(0));
  for (int64_t bi = 0; bi < nb; ++bi) {
    // Row-major batch index -> offsets in A's and B's own batch (size-1 dims repeat).
    int64_t rest = bi, oa = 0, ob = 0, sa = 1, sb = 1;
    for (size_t d = R; d-- > 0;) {
      const int64_t i = rest % batch[d];
      rest /= batch[d];
      oa += (ba[d] == 1 ? 0 : i) * sa;
      ob += (bb[d] == 1 ? 0 : i) * sb;
      sa *= ba[d];
      sb *= bb[d];
    }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        Acc s = 0;
        for (int64_t p = 0; p < k; ++p)
          s += A[static_cast<size_t>(oa * m * k + i * k + p)] *
               B[static_cast<size_t>(ob * k * n + p * n + j)];
        r.v[static_cast<size_t>(bi * m * n + i * n + j)] = s;
      }
  }
  return r;
}

// ---- inputs -------------------------------------------------------------------------------

std::mt19937& rng() {
  static std::mt19937 g(1234);
  return g;
}

// Uniform in [-1, 1], stored as `dtype`.
Tensor randu(const Shape& shape, DType dtype = DType::Float64) {
  std::uniform_real_distribution<double> d(-1, 1);
  std::vector<double> v(static_cast<size_t>(numel_of(shape)));
  for (auto& x : v) x = d(rng());
  return tensor(v, shape).to(dtype);
}

// Integers in [lo, hi], stored as `dtype`.
Tensor randi(const Shape& shape, DType dtype, int64_t lo, int64_t hi) {
  std::uniform_int_distribution<int64_t> d(lo, hi);
  std::vector<int64_t> v(static_cast<size_t>(numel_of(shape)));
  for (auto& x : v) x = d(rng());
  return tensor(v, shape).to(dtype);
}

// Checks matmul(a, b) (or `out` when given) against the float64 reference. The tolerance is
// relative to the size of the sum: k * eps(dtype) scaled.
void expect_matches(const Tensor& a, const Tensor& b, const Tensor& out, double rel) {
  const auto r =
      ref_matmul<double>(a.to_vector<double>(), a.shape(), b.to_vector<double>(), b.shape());
  ASSERT_EQ(out.shape(), r.shape) << "shapes " << shape_str(a.shape()) << " @ "
                                  << shape_str(b.shape());
  const auto got = out.to_vector<double>();
  const int64_t k = a.size(-1);
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], r.v[i], rel * static_cast<double>(k + 1) * (1 + std::abs(r.v[i])))
        << "element " << i << " of " << shape_str(a.shape()) << " @ " << shape_str(b.shape());
}

void expect_matmul(const Tensor& a, const Tensor& b) {
  const Tensor out = matmul(a, b);
  EXPECT_EQ(out.dtype(), promote_types(a.dtype(), b.dtype()));
  const bool f32 = out.dtype() == DType::Float32;
  expect_matches(a, b, out, f32 ? 2e-7 : 1e-15);
}

// Integer results: the reference wraps modulo 2^64 and is cast to the dtype, so overflow is
// checked bit for bit.
template <typename T>
void expect_int_matmul(const Tensor& a, const Tensor& b) {
  const Tensor out = matmul(a, b);
  ASSERT_EQ(out.dtype(), dtype_v<T>);
  std::vector<uint64_t> av, bv;
  for (int64_t x : a.to_vector<int64_t>()) av.push_back(static_cast<uint64_t>(x));
  for (int64_t x : b.to_vector<int64_t>()) bv.push_back(static_cast<uint64_t>(x));
  const auto r = ref_matmul<uint64_t>(av, a.shape(), bv, b.shape());
  ASSERT_EQ(out.shape(), r.shape);
  const auto got = out.to_vector<T>();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], static_cast<T>(r.v[i])) << i;
}

template <typename F>
void expect_error(F f, const std::string& prefix, const std::string& exact = "") {
  try {
    f();
    ADD_FAILURE() << "no error thrown; expected " << prefix;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(prefix, 0), 0u) << msg;
    if (!exact.empty()) {
      EXPECT_EQ(msg, exact);
    }
  }
}

}  // namespace

// ---- 2-d ------------------------------------------------------------------------------------

TEST(Matmul, TwoDFloat64Sizes) {
  for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{
           {1, 1, 1}, {1, 5, 1}, {1, 7, 9}, {9, 7, 1}, {3, 4, 5}, {70, 33, 91}, {128, 64, 96}})
    expect_matmul(randu({m, k}), randu({k, n}));
}

TEST(Matmul, TwoDFloat32) {
  for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{
           {1, 9, 1}, {1, 17, 13}, {13, 17, 1}, {31, 47, 29}, {100, 200, 50}})
    expect_matmul(randu({m, k}, DType::Float32), randu({k, n}, DType::Float32));
}

TEST(Matmul, TransposedOperands) {
  // Column-major views go to BLAS with the transpose flag; all four combinations.
  for (DType t : {DType::Float64, DType::Float32}) {
    const Tensor a = randu({6, 5}, t), at = randu({5, 6}, t).t();
    const Tensor b = randu({5, 7}, t), bt = randu({7, 5}, t).t();
    expect_matmul(a, b);
    expect_matmul(at, b);
    expect_matmul(a, bt);
    expect_matmul(at, bt);
    // Single rows and columns through the matrix-vector path, transposed or not.
    expect_matmul(randu({5, 1}, t).t(), bt);
    expect_matmul(at, randu({1, 5}, t).t());
    expect_matmul(randu({5, 1}, t).t(), randu({1, 5}, t).t());
  }
}

TEST(Matmul, SlicedAndNarrowedOperands) {
  const Tensor big = randu({20, 30});
  // A block of a wider matrix: leading dimension 30, no copy needed.
  expect_matmul(big.narrow(0, 2, 7).narrow(1, 3, 9), big.narrow(0, 5, 9).narrow(1, 1, 4));
  // Rows with a step: leading dimension 60.
  expect_matmul(big.slice(0, 0, 20, 2), big.t().narrow(1, 0, 11));
  // Columns with a step: BLAS cannot read it, a copy is made.
  expect_matmul(big.slice(1, 1, 30, 3).narrow(0, 0, 6), big.slice(0, 0, 20, 2).slice(1, 0, 30, 4));
  // Both steps on a transposed view.
  expect_matmul(big.t().slice(0, 0, 30, 2).slice(1, 0, 20, 3), randu({7, 4}));
  // float32 too.
  const Tensor b32 = randu({20, 30}, DType::Float32);
  expect_matmul(b32.slice(1, 0, 30, 2), b32.t().slice(0, 1, 30, 2));
}

TEST(Matmul, ExpandedOperands) {
  // Rows that repeat (stride 0 inside the matrix) are copied; the values must still match.
  expect_matmul(randu({1, 6}).expand({4, 6}), randu({6, 3}));
  expect_matmul(randu({4, 6}), randu({6, 1}).expand({6, 5}));
  expect_matmul(randu({1, 1}).expand({3, 4}), randu({4, 2}));
}

// ---- batches ------------------------------------------------------------------------------

TEST(Matmul, BatchBroadcast) {
  expect_matmul(randu({2, 1, 3, 4}), randu({5, 4, 6}));
  EXPECT_EQ(matmul(randu({2, 1, 3, 4}), randu({5, 4, 6})).shape(), (Shape{2, 5, 3, 6}));
  expect_matmul(randu({3, 4}), randu({2, 4, 5}));     // 2-d @ batch
  expect_matmul(randu({2, 3, 4}), randu({4, 5}));     // batch @ 2-d: folded into one gemm
  expect_matmul(randu({2, 3, 3, 4}), randu({4, 5}));  // two batch dims folded
  expect_matmul(randu({4, 1, 2, 3}), randu({1, 3, 3, 2}));
  expect_matmul(randu({1, 3, 4}), randu({1, 4, 2}));
  expect_matmul(randu({2, 3, 4}, DType::Float32), randu({2, 4, 5}, DType::Float32));
}

TEST(Matmul, BatchLayouts) {
  // Batch dims that cannot fold into rows (permuted), transposed inner matrices, a batch
  // taken with a step, and batches of transposed matrices.
  const Tensor a = randu({3, 2, 4}).permute({1, 0, 2});  // [2, 3, 4], batch stride 4
  expect_matmul(a, randu({4, 5}));
  expect_matmul(a, randu({2, 4, 5}));
  expect_matmul(randu({2, 4, 3}).transpose(1, 2), randu({2, 5, 4}).transpose(1, 2));
  expect_matmul(randu({6, 3, 4}).slice(0, 0, 6, 2), randu({3, 4, 2}));
  expect_matmul(randu({2, 5, 8}).slice(2, 0, 8, 2), randu({4, 3}));  // column step, folded
  // A batch operand whose own batch is broadcast inside it (stride 0) and whose matrices
  // need a copy: the copy stays compact.
  const Tensor e = randu({1, 8, 6}).slice(2, 0, 6, 2).expand({5, 8, 3});
  expect_matmul(e, randu({5, 3, 2}));
  expect_matmul(randu({5, 2, 8}), e);
}

TEST(Matmul, ExpandedBatchIsNotMaterialised) {
  // b is one matrix broadcast over a batch of 4 (stride 0); a is a batch of 4.
  const Tensor b = randu({3, 2}).unsqueeze(0).expand({4, 3, 2});
  EXPECT_EQ(b.stride(0), 0);
  expect_matmul(randu({4, 5, 3}), b);
  expect_matmul(b.transpose(1, 2), randu({4, 3, 7}));
  expect_matmul(randu({2, 1, 5, 3}).expand({2, 4, 5, 3}), b);
}

TEST(Matmul, ManySmallProducts) {
  // Enough small products to be spread over OpenMP threads, and large ones that are not.
  expect_matmul(randu({256, 8, 8}), randu({256, 8, 8}));
  expect_matmul(randu({300, 5, 7}, DType::Float32), randu({7, 6}, DType::Float32).t().t());
  expect_matmul(randu({64, 1, 9}), randu({64, 9, 1}));  // batched dot products (gemv)
  expect_matmul(randu({3, 70, 80}), randu({3, 80, 90}));
}

// ---- 1-d ----------------------------------------------------------------------------------

TEST(Matmul, OneDimensional) {
  expect_matmul(randu({7}), randu({7}));  // dot -> 0-d
  EXPECT_EQ(matmul(randu({7}), randu({7})).dim(), 0);
  expect_matmul(randu({4}), randu({4, 6}));
  expect_matmul(randu({6, 4}), randu({4}));
  expect_matmul(randu({4}), randu({3, 4, 6}));
  expect_matmul(randu({2, 3, 6, 4}), randu({4}));
  expect_matmul(randu({2, 3, 6, 4}).transpose(0, 1), randu({4}));
  expect_matmul(randu({1}), randu({1, 5}));
  // Strided and expanded vectors.
  const Tensor v = randu({12});
  expect_matmul(v.slice(0, 0, 12, 3), v.slice(0, 1, 12, 3));
  expect_matmul(randu({5, 4}), v.slice(0, 1, 12, 3));
  expect_matmul(v.slice(0, 0, 12, 2), randu({6, 3}));
  expect_matmul(randu({1}).expand({5}), randu({5, 2}));
  expect_matmul(randu({3, 5}), randu({1}).expand({5}));
  expect_matmul(randu({9}, DType::Float32), randu({9}, DType::Float32));
}

TEST(Matmul, Wrappers) {
  const Tensor a = randu({4, 5}), b = randu({5, 3}), v = randu({5}), w = randu({4});
  expect_matches(a, b, mm(a, b), 1e-15);
  expect_matches(a.t().t(), b.t().contiguous().t(), mm(a, b.t().contiguous().t()), 1e-15);
  const Tensor ba = randu({3, 4, 5}), bb = randu({3, 5, 2});
  expect_matches(ba, bb, bmm(ba, bb), 1e-15);
  expect_matches(v, v, dot(v, v), 1e-15);
  EXPECT_EQ(dot(v, v).dim(), 0);
  expect_matches(a, v, mv(a, v), 1e-15);
  // outer against its definition.
  const Tensor o = outer(w, v);
  ASSERT_EQ(o.shape(), (Shape{4, 5}));
  const auto ov = o.to_vector<double>(), wv = w.to_vector<double>(), vv = v.to_vector<double>();
  for (size_t i = 0; i < 4; ++i)
    for (size_t j = 0; j < 5; ++j) EXPECT_DOUBLE_EQ(ov[i * 5 + j], wv[i] * vv[j]);
  const Tensor os = outer(randu({8}).slice(0, 0, 8, 2), v);  // strided vector
  EXPECT_EQ(os.shape(), (Shape{4, 5}));
  EXPECT_EQ(outer(randi({3}, DType::Int64, -5, 5), randi({2}, DType::Int64, -5, 5)).dtype(),
            DType::Int64);
}

// ---- integers and promotion ---------------------------------------------------------------

TEST(Matmul, Int64) {
  expect_int_matmul<int64_t>(randi({5, 7}, DType::Int64, -100, 100),
                             randi({7, 3}, DType::Int64, -100, 100));
  expect_int_matmul<int64_t>(randi({2, 1, 17, 40}, DType::Int64, -1000, 1000),
                             randi({3, 40, 600}, DType::Int64, -1000, 1000));  // > one block
  expect_int_matmul<int64_t>(randi({9, 6}, DType::Int64, -9, 9).t(),
                             randi({8, 18}, DType::Int64, -9, 9).slice(1, 0, 18, 2).t());
  expect_int_matmul<int64_t>(randi({6}, DType::Int64, -9, 9), randi({6}, DType::Int64, -9, 9));
  expect_int_matmul<int64_t>(randi({4, 6}, DType::Int64, -9, 9), randi({6}, DType::Int64, -9, 9));
  expect_int_matmul<int64_t>(
      randi({1, 6, 2}, DType::Int64, -9, 9).expand({3, 6, 2}).transpose(1, 2),
      randi({3, 6, 4}, DType::Int64, -9, 9));
  // Wrap-around on overflow, as two's complement.
  expect_int_matmul<int64_t>(randi({3, 4}, DType::Int64, 1ll << 40, 1ll << 41),
                             randi({4, 2}, DType::Int64, 1ll << 40, 1ll << 41));
}

TEST(Matmul, SmallIntegerTypes) {
  expect_int_matmul<int32_t>(randi({5, 6}, DType::Int32, -100000, 100000),
                             randi({6, 4}, DType::Int32, -100000, 100000));  // overflows
  expect_int_matmul<uint8_t>(randi({4, 9}, DType::UInt8, 0, 255),
                             randi({9, 3}, DType::UInt8, 0, 255));
  // int32 with int64 promotes to int64.
  expect_int_matmul<int64_t>(randi({3, 4}, DType::Int32, -50, 50),
                             randi({4, 2}, DType::Int64, -50, 50));
}

TEST(Matmul, TypePromotion) {
  expect_matmul(randu({3, 4}, DType::Float32), randu({4, 2}, DType::Float64));
  expect_matmul(randu({2, 3, 4}, DType::Float64), randu({4, 2}, DType::Float32));
  expect_matmul(randi({3, 4}, DType::Int64, -5, 5), randu({4, 2}, DType::Float32));
  expect_matmul(randu({5}, DType::Float32), randi({5}, DType::UInt8, 0, 9));
  // Promotion with an expanded batch: the converted copy stays compact.
  expect_matmul(randu({3, 2}, DType::Float32).unsqueeze(0).expand({6, 3, 2}),
                randu({6, 2, 4}, DType::Float64));
  EXPECT_EQ(matmul(randu({3, 4}, DType::Float32), randu({4, 2}, DType::Float64)).dtype(),
            DType::Float64);
}

// ---- empty dimensions ---------------------------------------------------------------------

TEST(Matmul, EmptyDimensions) {
  // k = 0: sums of nothing are zeros.
  for (DType t : {DType::Float32, DType::Float64, DType::Int64}) {
    const Tensor z = matmul(zeros({3, 0}, t), zeros({0, 4}, t));
    EXPECT_EQ(z.shape(), (Shape{3, 4}));
    for (double x : z.to_vector<double>()) EXPECT_EQ(x, 0.0);
  }
  const Tensor d = matmul(zeros({0}), zeros({0}));
  EXPECT_EQ(d.dim(), 0);
  EXPECT_EQ(d.item<float>(), 0.f);
  EXPECT_EQ(matmul(zeros({2, 3, 0}), zeros({0, 5})).to_vector<float>(),
            std::vector<float>(30, 0.f));
  // m, n or a batch of 0: empty results.
  EXPECT_EQ(matmul(zeros({0, 3}), zeros({3, 4})).shape(), (Shape{0, 4}));
  EXPECT_EQ(matmul(zeros({3, 3}), zeros({3, 0})).shape(), (Shape{3, 0}));
  EXPECT_EQ(matmul(zeros({0, 3, 4}), zeros({4, 2})).shape(), (Shape{0, 3, 2}));
  EXPECT_EQ(matmul(zeros({2, 0, 3, 4}), zeros({1, 4, 2})).shape(), (Shape{2, 0, 3, 2}));
  EXPECT_EQ(matmul(zeros({0, 4}), zeros({4})).shape(), (Shape{0}));
  EXPECT_EQ(matmul(zeros({4}), zeros({4, 0})).shape(), (Shape{0}));
  EXPECT_EQ(mm(zeros({0, 0}), zeros({0, 0})).shape(), (Shape{0, 0}));
  EXPECT_EQ(outer(zeros({0}), zeros({3})).shape(), (Shape{0, 3}));
}

// ---- errors ---------------------------------------------------------------------------------

TEST(Matmul, Errors) {
  expect_error(
      [] {
        matmul(zeros({3, 4}), zeros({5, 6}));
      },
      "[matmul]", "[matmul] shapes [3, 4] and [5, 6] cannot be multiplied");
  expect_error([] { matmul(zeros({3}), zeros({4})); }, "[matmul]",
               "[matmul] shapes [3] and [4] cannot be multiplied");
  expect_error([] { matmul(zeros({2, 3}), zeros({2})); }, "[matmul] shapes [2, 3] and [2]");
  expect_error([] { matmul(zeros({3}), zeros({2, 4, 5})); }, "[matmul] shapes [3] and [2, 4, 5]");
  expect_error([] { matmul(zeros({}), zeros({3})); }, "[matmul]");
  expect_error([] { matmul(zeros({3, 3}), zeros({})); }, "[matmul]");
  expect_error(
      [] {
        matmul(zeros({2, 2}, DType::Bool), zeros({2, 2}, DType::Bool));
      },
      "[matmul] not supported for bool");
  expect_error(
      [] {
        matmul(zeros({2, 2}), zeros({2, 2}, DType::Bool));
      },
      "[matmul] not supported for bool");
  expect_error(
      [] {
        matmul(zeros({2, 3, 4}), zeros({3, 4, 5}));
      },
      "[matmul] shapes [2, 3, 4] and [3, 4, 5] cannot be multiplied: batch dimensions "
      "[2] and [3] cannot be broadcast");
  expect_error([] { matmul(zeros({2, 2, 3, 4}), zeros({3, 1, 4, 5})); }, "[matmul]");
  expect_error([] { matmul(Tensor(), zeros({3})); }, "[matmul]");

  expect_error([] { mm(zeros({2, 3, 4}), zeros({4, 5})); }, "[mm]");
  expect_error([] { mm(zeros({3}), zeros({3, 5})); }, "[mm]");
  expect_error(
      [] {
        mm(zeros({3, 4}), zeros({5, 6}));
      },
      "[mm]", "[mm] shapes [3, 4] and [5, 6] cannot be multiplied");
  expect_error([] { bmm(zeros({2, 3, 4}), zeros({4, 5})); }, "[bmm]");
  expect_error([] { bmm(zeros({2, 3, 4}), zeros({3, 4, 5})); }, "[bmm]");
  expect_error([] { bmm(zeros({1, 3, 4}), zeros({2, 4, 5})); }, "[bmm]");  // no broadcasting
  expect_error([] { bmm(zeros({2, 3, 4}), zeros({2, 5, 5})); }, "[bmm] shapes");
  expect_error([] { dot(zeros({3}), zeros({4})); },
               "[dot] shapes [3] and [4] cannot be multiplied");
  expect_error([] { dot(zeros({3, 1}), zeros({3})); }, "[dot]");
  expect_error([] { dot(zeros({3}, DType::Bool), zeros({3}, DType::Bool)); },
               "[dot] not supported");
  expect_error([] { mv(zeros({3, 4}), zeros({3})); }, "[mv] shapes");
  expect_error([] { mv(zeros({3, 4}), zeros({4, 1})); }, "[mv]");
  expect_error([] { outer(zeros({3, 1}), zeros({3})); }, "[outer]");
  expect_error([] { outer(zeros({3}), zeros({})); }, "[outer]");
}

// ---- kernels (Note [OpenBLAS core on CPUs it does not know]) --------------------------------

TEST(Blas, CoreRuleReplacesOnlyTheUnknownCpuFallback) {
  using kernels::cpu::blas_core_for;
  EXPECT_STREQ(blas_core_for("Prescott", false, true, true), "SkylakeX");
  EXPECT_STREQ(blas_core_for("Prescott", false, false, true), "Haswell");
  EXPECT_EQ(blas_core_for("Prescott", false, false, false), nullptr);  // a real SSE3-only CPU
  EXPECT_EQ(blas_core_for("Prescott", true, true, true), nullptr);     // OPENBLAS_CORETYPE is set
  EXPECT_EQ(blas_core_for("Zen", false, false, true), nullptr);        // a core it knows
  EXPECT_EQ(blas_core_for("Cooperlake", false, true, true), nullptr);
  EXPECT_EQ(blas_core_for(nullptr, false, true, true), nullptr);
}

TEST(Blas, RunsVectorKernelsOnAVX2Cpus) {
  const std::string core = kernels::cpu::blas_core();
  std::cout << "BLAS core: " << core
            << (kernels::cpu::blas_core_replaced() != nullptr ? " (OpenBLAS had chosen Prescott)"
                                                              : "")
            << "\n";
#if defined(__x86_64__)
  // Where the user set no core, an AVX2 CPU must not be left on the SSE3 kernels.
  if (core != "reference" && std::getenv("OPENBLAS_CORETYPE") == nullptr &&
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_NE(core, "Prescott");
  }
  if (kernels::cpu::blas_core_replaced() != nullptr) {
    EXPECT_NE(core, "Prescott");
  }
#endif
  expect_matmul(randu({200, 150}), randu({150, 170}));
}

// ---- threads ------------------------------------------------------------------------------

TEST(Matmul, BlasThreads) {
  set_blas_num_threads(1);
  EXPECT_EQ(get_blas_num_threads(), 1);
  expect_matmul(randu({200, 150}), randu({150, 170}));
  set_blas_num_threads(0);  // follow OpenMP again (1 with the reference BLAS)
  const int n = get_blas_num_threads();
  EXPECT_TRUE(n == omp_get_max_threads() || n == 1) << n;
  expect_matmul(randu({200, 150}), randu({150, 170}));
  // Following OpenMP: a change of omp_set_num_threads reaches BLAS.
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  EXPECT_EQ(get_blas_num_threads(), 1);
  omp_set_num_threads(before);
  expect_matmul(randu({3, 64, 64}), randu({3, 64, 64}));
}
