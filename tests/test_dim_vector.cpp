// DimVector (Shape): std::vector's behaviour, inline up to five entries, on the heap past them.
#include <gtest/gtest.h>

#include <sstream>
#include <utility>
#include <vector>

#include "metagrad.h"

namespace metagrad {
namespace {

std::vector<int64_t> iota_vec(int64_t n) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(i);
  return v;
}

TEST(DimVector, StaysInlineUpToFiveEntriesThenMovesToTheHeapKeepingThem) {
  DimVector v;
  EXPECT_TRUE(v.empty());
  for (int64_t i = 0; i < 5; ++i) v.push_back(i);
  EXPECT_TRUE(v.is_inline());
  v.push_back(5);
  EXPECT_FALSE(v.is_inline());
  for (int64_t i = 6; i < 40; ++i) v.emplace_back(i);
  EXPECT_EQ(v.vec(), iota_vec(40));
  EXPECT_EQ(v.front(), 0);
  EXPECT_EQ(v.back(), 39);
  v.pop_back();
  EXPECT_EQ(v.size(), 39u);
  v.clear();
  EXPECT_TRUE(v.empty());
}

TEST(DimVector, CopiesAndMovesInlineAndOnTheHeap) {
  for (int64_t n : {0, 3, 5, 6, 20}) {
    const DimVector a(iota_vec(n));
    DimVector copy(a);
    EXPECT_EQ(copy.vec(), iota_vec(n));
    DimVector moved(std::move(copy));
    EXPECT_EQ(moved.vec(), iota_vec(n));
    EXPECT_TRUE(copy.empty());  // NOLINT: a moved-from DimVector is empty and usable
    EXPECT_TRUE(copy.is_inline());
    copy.push_back(5);
    EXPECT_EQ(copy.vec(), std::vector<int64_t>{5});
    // Assignment between every pair of sizes, both ways, and onto itself.
    for (int64_t m : {0, 2, 5, 9}) {
      DimVector b(iota_vec(m));
      b = a;
      EXPECT_EQ(b, a);
      DimVector c(iota_vec(m));
      DimVector tmp(a);
      c = std::move(tmp);
      EXPECT_EQ(c, a);
      EXPECT_TRUE(tmp.empty());  // NOLINT
    }
    DimVector self(a);
    const DimVector& alias = self;
    self = alias;
    EXPECT_EQ(self, a);
  }
}

TEST(DimVector, InsertAndEraseAnywhereAcrossTheInlineBoundary) {
  DimVector v = {1, 2, 3, 4};
  auto it = v.insert(v.begin() + 2, 9);
  EXPECT_EQ(*it, 9);
  EXPECT_EQ(v, (DimVector{1, 2, 9, 3, 4}));
  EXPECT_TRUE(v.is_inline());
  v.insert(v.begin(), 2, 0);  // two zeros at the front: past five, onto the heap
  EXPECT_EQ(v, (DimVector{0, 0, 1, 2, 9, 3, 4}));
  EXPECT_FALSE(v.is_inline());
  v.insert(v.end(), {7, 8});
  EXPECT_EQ(v, (DimVector{0, 0, 1, 2, 9, 3, 4, 7, 8}));
  // A range of the vector itself, inserted while the insertion moves its storage.
  DimVector w = {1, 2, 3, 4, 5};
  w.insert(w.begin() + 1, w.begin(), w.end());
  EXPECT_EQ(w, (DimVector{1, 1, 2, 3, 4, 5, 2, 3, 4, 5}));
  it = v.erase(v.begin() + 4);
  EXPECT_EQ(*it, 3);
  EXPECT_EQ(v, (DimVector{0, 0, 1, 2, 3, 4, 7, 8}));
  v.erase(v.begin(), v.begin() + 2);
  EXPECT_EQ(v, (DimVector{1, 2, 3, 4, 7, 8}));
  v.erase(v.end() - 2, v.end());
  EXPECT_EQ(v, (DimVector{1, 2, 3, 4}));
}

TEST(DimVector, ResizeAssignAndCompareAsStdVectorDoes) {
  DimVector v(3, 7);
  EXPECT_EQ(v, (DimVector{7, 7, 7}));
  v.resize(5);
  EXPECT_EQ(v, (DimVector{7, 7, 7, 0, 0}));
  v.resize(9, 1);
  EXPECT_EQ(v, (DimVector{7, 7, 7, 0, 0, 1, 1, 1, 1}));
  v.resize(2);
  EXPECT_EQ(v, (DimVector{7, 7}));
  v.assign(4, 2);
  EXPECT_EQ(v, (DimVector{2, 2, 2, 2}));
  const std::vector<int64_t> src = {4, 5, 6};
  v.assign(src.rbegin(), src.rend());
  EXPECT_EQ(v, (DimVector{6, 5, 4}));
  EXPECT_EQ(DimVector(v.rbegin(), v.rend()), (DimVector{4, 5, 6}));

  EXPECT_EQ(DimVector(), DimVector(std::vector<int64_t>{}));
  EXPECT_NE((DimVector{1, 2}), (DimVector{1, 2, 3}));
  EXPECT_LT((DimVector{1, 2}), (DimVector{1, 2, 3}));
  EXPECT_LT((DimVector{1, 2, 3}), (DimVector{1, 3}));
  EXPECT_EQ((DimVector{2, 3}), (std::vector<int64_t>{2, 3}));  // converts implicitly
  EXPECT_EQ(shape_str(DimVector(iota_vec(8))), "[0, 1, 2, 3, 4, 5, 6, 7]");
}

TEST(DimVector, TensorsOfMoreThanSixDimsKeepTheirGeometry) {
  // Eight dims: shape and strides on the heap, through views, permutes and reductions.
  const Shape shape = {2, 1, 3, 1, 2, 1, 2, 2};
  Tensor x = arange(0, numel_of(shape), 1, TensorOptions().dtype(DType::Float64)).reshape(shape);
  EXPECT_EQ(x.shape(), shape);
  EXPECT_EQ(x.strides(), contiguous_strides(shape));
  const Tensor p = x.permute({7, 6, 5, 4, 3, 2, 1, 0});
  EXPECT_EQ(p.shape(), (Shape{2, 2, 1, 2, 1, 3, 1, 2}));
  EXPECT_EQ(p.contiguous().permute({7, 6, 5, 4, 3, 2, 1, 0}).to_vector<double>(),
            x.to_vector<double>());
  EXPECT_EQ(sum(x, {0, 2, 7}).shape(), (Shape{1, 1, 2, 1, 2}));
  EXPECT_DOUBLE_EQ(sum(x).item<double>(), 47.0 * 48.0 / 2.0);
}

}  // namespace
}  // namespace metagrad
