// The kernel profiler (tensor/profiler.h): what it counts, when, and from which threads.
#include <gtest/gtest.h>
#include <metagrad/metagrad.h>

#include <thread>
#include <vector>

using namespace metagrad;

namespace {

// The recorded entry of a CPU kernel, or calls = 0 when there is none.
profiler::KernelStat cpu_entry(const std::string& name) {
  for (const auto& s : profiler::stats())
    if (s.name == name && s.device == DeviceType::CPU) return s;
  return {name, DeviceType::CPU, 0, 0};
}

}  // namespace

TEST(Profiler, CountsEveryDispatchWhileEnabled) {
  profiler::reset();
  Tensor a = randn({64, 64}), b = randn({64, 64});
  {
    profiler::Scope on;
    Tensor c = a + b;         // one binary kernel
    Tensor d = c * b;         // another
    Tensor e = matmul(d, a);  // one matmul
    Tensor s = sum(e);        // one reduction
    EXPECT_TRUE(profiler::enabled());
  }
  EXPECT_FALSE(profiler::enabled());
  EXPECT_EQ(cpu_entry("binary").calls, 2);
  EXPECT_EQ(cpu_entry("matmul").calls, 1);
  EXPECT_EQ(cpu_entry("reduce").calls, 1);
  EXPECT_GE(cpu_entry("matmul").total_ms, 0.0);
  // Off again: nothing more is recorded.
  Tensor f = a + b;
  EXPECT_EQ(cpu_entry("binary").calls, 2);
  EXPECT_EQ(profiler::total_calls(), 4);
  profiler::reset();
  EXPECT_EQ(profiler::total_calls(), 0);
  EXPECT_TRUE(profiler::stats().empty());
}

TEST(Profiler, ScopesNestAndRestore) {
  profiler::reset();
  {
    profiler::Scope on;
    {
      profiler::Scope off(false);
      EXPECT_FALSE(profiler::enabled());
      Tensor x = ones({3}) + 1.0;
    }
    EXPECT_TRUE(profiler::enabled());
  }
  EXPECT_FALSE(profiler::enabled());
  EXPECT_EQ(profiler::total_calls(), 0);
}

TEST(Profiler, CountsTheBackwardPassAndEveryThread) {
  profiler::reset();
  Tensor w = randn({8, 8}).requires_grad_();
  Tensor x = randn({4, 8});
  {
    profiler::Scope on;
    sum(relu(matmul(x, w))).backward();
  }
  // forward: matmul, relu (unary), sum; backward: at least the matmul for w's gradient
  EXPECT_GE(cpu_entry("matmul").calls, 2);
  EXPECT_GE(cpu_entry("unary").calls, 1);
  const int64_t one_thread = profiler::total_calls();
  EXPECT_GT(one_thread, 0);

  // The same work from two threads at once: twice the dispatches, none lost.
  profiler::reset();
  {
    profiler::Scope on;
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t)
      threads.emplace_back([&] {
        Tensor wt = w.detach().requires_grad_();
        sum(relu(matmul(x, wt))).backward();
      });
    for (auto& th : threads) th.join();
  }
  EXPECT_EQ(profiler::total_calls(), 2 * one_thread);
}

TEST(Profiler, TablePrintsNamesCountsAndTotals) {
  profiler::reset();
  {
    profiler::Scope on;
    Tensor y = conv2d(randn({2, 3, 8, 8}), randn({4, 3, 3, 3}), {}, {.padding = {1, 1}});
  }
  const std::string t = profiler::table();
  EXPECT_NE(t.find("kernel"), std::string::npos) << t;
  EXPECT_NE(t.find("conv2d_forward"), std::string::npos) << t;
  EXPECT_NE(t.find("total"), std::string::npos) << t;
  // top = 1 keeps the largest entry and says how many were left out
  const auto all = profiler::stats();
  ASSERT_FALSE(all.empty());
  const std::string one = profiler::table(1);
  EXPECT_NE(one.find(all.front().name), std::string::npos) << one;
  if (all.size() > 1) {
    EXPECT_NE(one.find("more)"), std::string::npos) << one;
  }
  profiler::reset();
}
