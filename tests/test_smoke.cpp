#include <gtest/gtest.h>
#include <metagrad/metagrad.h>
using namespace metagrad;
TEST(Smoke, Add) {
  Tensor a = tensor({1.f, 2.f, 3.f});
  Tensor b = a + 1;
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{2, 3, 4}));
}
