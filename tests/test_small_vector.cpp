// autograd::SmallVector: inline up to N, on the heap past it, every element constructed and
// destroyed exactly once either way.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "autograd/node.h"
#include "autograd/small_vector.h"
#include "metagrad.h"

namespace metagrad {
namespace {

using autograd::SmallVector;

TEST(SmallVector, StaysInlineUpToNThenMovesToTheHeapKeepingTheElements) {
  SmallVector<std::string, 2> v;
  EXPECT_TRUE(v.empty());
  v.push_back("a long string that does not fit the small-string buffer, first");
  v.emplace_back("b");
  EXPECT_TRUE(v.is_inline());
  v.push_back("c");
  EXPECT_FALSE(v.is_inline());
  for (int i = 0; i < 20; ++i) v.push_back(std::to_string(i));
  ASSERT_EQ(v.size(), 23u);
  EXPECT_EQ(v[0], "a long string that does not fit the small-string buffer, first");
  EXPECT_EQ(v[1], "b");
  EXPECT_EQ(v[2], "c");
  EXPECT_EQ(v[22], "19");
  std::string joined;
  for (const std::string& s : v) joined += s.substr(0, 1);
  EXPECT_EQ(joined, "abc0123456789" + std::string(10, '1'));  // 10..19 start with 1
}

TEST(SmallVector, DestroysEveryElementOnceInlineOrOnTheHeap) {
  auto token = std::make_shared<int>(7);
  {
    SmallVector<std::shared_ptr<int>, 3> in, out;
    for (int i = 0; i < 2; ++i) in.push_back(token);
    for (int i = 0; i < 9; ++i) out.push_back(token);
    EXPECT_EQ(token.use_count(), 12);
    out.clear();
    EXPECT_EQ(token.use_count(), 3);
    out = {token, token, token, token};  // assigning a list replaces the contents
    EXPECT_EQ(out.size(), 4u);
    EXPECT_EQ(token.use_count(), 7);
  }
  EXPECT_EQ(token.use_count(), 1);
}

TEST(SmallVector, ReserveKeepsElementsAndSmallReservesStayInline) {
  SmallVector<int, 4> v = {1, 2, 3};
  v.reserve(4);
  EXPECT_TRUE(v.is_inline());
  v.reserve(100);
  EXPECT_FALSE(v.is_inline());
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0] + v[1] + v[2], 6);
}

// The graph's lists are inline for the usual ops: a recorded binary op's node holds its
// edges, shapes and output reference without a heap block of their own.
TEST(SmallVector, ANodeOfABinaryOpKeepsItsListsInline) {
  Tensor a = ones({2, 3}).requires_grad_(true), b = ones({3});
  Tensor c = a * b;
  const auto& node = *c.grad_fn();
  EXPECT_EQ(node.next_edges().size(), 2u);
  EXPECT_TRUE(node.next_edges().is_inline());
  EXPECT_TRUE(node.input_meta().is_inline());
  EXPECT_TRUE(node.output_meta().is_inline());
  EXPECT_TRUE(node.outputs().is_inline());
  EXPECT_EQ(node.input_meta()[1].shape, Shape({3}));
  EXPECT_FALSE(node.next_edges()[1].valid());  // b does not require grad
}

}  // namespace
}  // namespace metagrad
