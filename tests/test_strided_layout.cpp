// The layout analysis shared by the CPU loops and the CUDA kernels (kernels/strided.h), tested
// on the host: division by multiplication (which the CUDA elementwise kernels use for every
// element's offsets), the divided layout's offsets against plain division, the inner-dim
// exchange and the transposed-operand test.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "kernels/strided.h"

namespace {

using metagrad::kernels::DividedLayout;
using metagrad::kernels::Divider;
using metagrad::kernels::StridedLayout;
using metagrad::kernels::transposed_inner;

void expect_divides(uint64_t d, uint64_t n) {
  const Divider v = Divider::make(d);
  ASSERT_EQ(v.div(n), n / d) << n << " / " << d;
}

TEST(Divider, SmallDivisorsAndNumeratorsExhaustively) {
  for (uint64_t d = 1; d <= 300; ++d)
    for (uint64_t n = 0; n <= 5000; ++n) expect_divides(d, n);
}

TEST(Divider, EdgesOfTheRange) {
  constexpr uint64_t kMaxN = (uint64_t{1} << 63) - 1;
  std::vector<uint64_t> ds = {1,           2,           3,     7,         28,
                              784,         65535,       65536, 65537,     4294967295u,
                              4294967296u, 4294967297u, kMaxN, kMaxN - 1, uint64_t{1} << 62};
  for (int s = 1; s < 63; ++s) {
    const uint64_t p = uint64_t{1} << s;
    ds.push_back(p - 1);
    ds.push_back(p + 1);
  }
  for (uint64_t d : ds) {
    for (uint64_t n : {uint64_t{0}, uint64_t{1}, d - 1, d, d + 1, 2 * d - 1, 2 * d, kMaxN,
                       kMaxN - 1, kMaxN / d * d, kMaxN / d * d - 1}) {
      if (n > kMaxN) continue;
      expect_divides(d, n);
    }
  }
}

TEST(Divider, RandomDivisorsAndNumerators) {
  std::mt19937_64 gen(42);
  for (int i = 0; i < 200000; ++i) {
    const int dbits = static_cast<int>(gen() % 63) + 1, nbits = static_cast<int>(gen() % 63) + 1;
    const uint64_t d = (gen() >> (64 - dbits)) | 1u;
    const uint64_t n = gen() >> (64 - nbits);
    expect_divides(d, n);
  }
}

// A random layout of rank r with (possibly broadcast) strides for three operands.
StridedLayout<3> random_layout(std::mt19937& gen, std::vector<int64_t>& shape,
                               std::vector<std::vector<int64_t>>& strides) {
  const int rank = static_cast<int>(gen() % 6);
  shape.assign(static_cast<size_t>(rank), 0);
  strides.assign(3, std::vector<int64_t>(static_cast<size_t>(rank)));
  for (int d = 0; d < rank; ++d) {
    shape[static_cast<size_t>(d)] = 1 + static_cast<int64_t>(gen() % 9);
    for (int k = 0; k < 3; ++k)
      strides[static_cast<size_t>(k)][static_cast<size_t>(d)] =
          static_cast<int64_t>(gen() % 4) == 0 ? 0 : static_cast<int64_t>(gen() % 200) - 50;
  }
  return StridedLayout<3>::make(rank, shape.data(),
                                {strides[0].data(), strides[1].data(), strides[2].data()});
}

TEST(DividedLayout, OffsetsEqualPlainDivision) {
  std::mt19937 gen(1);
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> strides;
  for (int rep = 0; rep < 500; ++rep) {
    const StridedLayout<3> L = random_layout(gen, shape, strides);
    const auto D = DividedLayout<3>::make(L);
    ASSERT_EQ(D.numel, L.numel);
    for (int64_t i = 0; i < L.numel; ++i) {
      int64_t want[3], got[3];
      L.offsets(i, want);
      D.offsets(i, got);
      for (int k = 0; k < 3; ++k) ASSERT_EQ(got[k], want[k]) << "element " << i;
    }
  }
}

TEST(StridedLayoutTest, SwapInnerVisitsTheSameElementPairs) {
  std::mt19937 gen(2);
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> strides;
  for (int rep = 0; rep < 300; ++rep) {
    const StridedLayout<3> L = random_layout(gen, shape, strides);
    if (L.ndim < 2) continue;
    StridedLayout<3> S = L;
    S.swap_inner();
    std::multiset<std::vector<int64_t>> a, b;
    for (int64_t i = 0; i < L.numel; ++i) {
      int64_t o[3];
      L.offsets(i, o);
      a.insert({o[0], o[1], o[2]});
      S.offsets(i, o);
      b.insert({o[0], o[1], o[2]});
    }
    EXPECT_EQ(a, b);  // every element keeps its operands together, in another order
  }
}

TEST(StridedLayoutTest, TransposedInnerFindsAnOperandReadThroughATranspose) {
  const int64_t shape[2] = {64, 48};
  const int64_t row[2] = {48, 1}, col[2] = {1, 64}, bcast[2] = {0, 1};
  EXPECT_TRUE(transposed_inner(StridedLayout<2>::make(2, shape, {row, col})));     // x.t() read
  EXPECT_TRUE(transposed_inner(StridedLayout<2>::make(2, shape, {col, row})));     // written
  EXPECT_FALSE(transposed_inner(StridedLayout<2>::make(2, shape, {row, bcast})));  // a row
  const int64_t small[2] = {8, 48}, small_col[2] = {1, 8};
  EXPECT_FALSE(transposed_inner(StridedLayout<2>::make(2, small, {row, small_col})));
}

}  // namespace
