// parallel_for_each (tensor/parallel.h, Note [Tasks on threads]): every index once, kernels on
// one thread inside, results independent of the thread count, the lowest index's exception
// rethrown after the others ran, nesting, and argument errors.
#include <gtest/gtest.h>
#include <omp.h>

#include "test_util.h"

#include <metagrad/metagrad.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace metagrad;

TEST(ParallelForEach, RunsEveryIndexOnce) {
  for (int threads : {1, 2, 3, 8}) {
    std::vector<std::atomic<int>> seen(17);
    parallel_for_each(17, threads, [&](int64_t i) { seen[static_cast<size_t>(i)]++; });
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].load(), 1) << threads << " " << i;
  }
  parallel_for_each(0, 2, [](int64_t) { FAIL() << "no index to run"; });
}

// Inside, kernels see one OpenMP thread; outside, the count is what it was.
TEST(ParallelForEach, KernelsInsideRunOnOneThread) {
  const int before = omp_get_max_threads();
  std::vector<int> inside(6, -1);
  parallel_for_each(6, 2,
                    [&](int64_t i) { inside[static_cast<size_t>(i)] = omp_get_max_threads(); });
  for (int t : inside) EXPECT_EQ(t, 1);
  EXPECT_EQ(omp_get_max_threads(), before);
}

// What each index computes (here a matmul and a reduction large enough for the kernels to
// thread outside) is the same whichever thread count ran it, and equals a one-thread run.
TEST(ParallelForEach, ResultsDoNotDependOnTheThreadCount) {
  Generator gen(3);
  std::vector<Tensor> a, b;
  for (int i = 0; i < 5; ++i) {
    a.push_back(randn({96, 200}, {}, &gen));
    b.push_back(randn({200, 300}, {}, &gen));
  }
  auto run = [&](int threads) {
    std::vector<std::vector<float>> out(5);
    parallel_for_each(5, threads, [&](int64_t i) {
      const size_t k = static_cast<size_t>(i);
      Tensor y = sum(relu(matmul(a[k], b[k])), {1});
      out[k] = y.to_vector<float>();
    });
    return out;
  };
  const auto two = run(2), three = run(3);
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = run(1);
  omp_set_num_threads(before);
  EXPECT_EQ(two, three);
  EXPECT_EQ(two, one);
}

TEST(ParallelForEach, RethrowsTheLowestIndexAfterAllRan) {
  std::atomic<int> ran{0};
  try {
    parallel_for_each(9, 2, [&](int64_t i) {
      ran++;
      if (i == 5 || i == 3) throw std::runtime_error("index " + std::to_string(i));
    });
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "index 3");
  }
  EXPECT_EQ(ran.load(), 9);
  // metagrad errors come back as they were thrown
  EXPECT_MG_ERROR_HAS(parallel_for_each(3, 2,
                                        [](int64_t i) {
                                          if (i == 1) (void)matmul(ones({2, 3}), ones({2, 3}));
                                        }),
                      "[matmul]", "[2, 3]");
}

// Called from inside a parallel region it runs its indices in order on the calling thread.
TEST(ParallelForEach, NestedRunsInOrder) {
  std::vector<int64_t> order;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    parallel_for_each(4, 2, [&](int64_t i) { order.push_back(i); });
  }
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3}));
}

// The workers take the caller's grad mode: under a NoGradGuard no task records, on whichever
// thread it runs, and each worker's own mode is back after.
TEST(ParallelForEach, WorkersTakeTheCallersGradMode) {
  Tensor x = ones({2}, DType::Float64).requires_grad_(true);
  std::vector<int> recorded(8, -1);
  parallel_for_each(8, 2, [&](int64_t i) {
    recorded[static_cast<size_t>(i)] = (x * 2.0).requires_grad() ? 1 : 0;
  });
  EXPECT_EQ(recorded, std::vector<int>(8, 1));
  std::atomic<int> started{0}, off_main{0};
  {
    NoGradGuard ng;
    parallel_for_each(8, 2, [&](int64_t i) {
      // The first item waits (up to 2 s) for a second one to start, so that both threads run
      // items and the worker's mode is what is tested.
      ++started;
      for (int k = 0; k < 2000 && started.load() < 2; ++k)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (omp_get_thread_num() != 0) ++off_main;
      recorded[static_cast<size_t>(i)] = (x * 2.0).requires_grad() ? 1 : 0;
    });
  }
  if (off_main.load() == 0) GTEST_SKIP() << "OpenMP ran every item on the calling thread";
  EXPECT_EQ(recorded, std::vector<int>(8, 0));
}

TEST(ParallelForEach, RejectsBadArguments) {
  EXPECT_MG_ERROR_HAS(parallel_for_each(-1, 2, [](int64_t) {}), "[parallel_for_each]", "-1");
  EXPECT_MG_ERROR_HAS(parallel_for_each(3, 0, [](int64_t) {}), "[parallel_for_each]",
                      "at least 1 thread");
}
