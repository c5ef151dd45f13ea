// The CPU caching allocator (Note [CPU caching allocator]): large blocks are reused after
// free, statistics add up, the cache limit and empty_cache hold, small blocks bypass it,
// mid-size ones are kept per thread.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <thread>

#include <unistd.h>

#include "test_util.h"

#include <metagrad/metagrad.h>

using namespace metagrad;

TEST(CpuAllocator, ReusesFreedLargeBlocks) {
  memory::empty_cache();
  const memory::CpuStats s0 = memory::cpu_stats();
  const void* first = nullptr;
  {
    Tensor a = empty({1000, 1000});  // 4 MB
    first = a.data_ptr<float>();
    EXPECT_GE(memory::cpu_stats().allocated, s0.allocated + 4000000);
  }
  const memory::CpuStats s1 = memory::cpu_stats();
  EXPECT_EQ(s1.allocated, s0.allocated);
  EXPECT_GE(s1.cached, 4000000u);
  // A request of the same bin (a little smaller) gets the same block back.
  Tensor b = empty({999, 1000});
  EXPECT_EQ(static_cast<const void*>(b.data_ptr<float>()), first);
  const memory::CpuStats s2 = memory::cpu_stats();
  EXPECT_EQ(s2.hits, s1.hits + 1);
  EXPECT_EQ(s2.cached, s1.cached - (s2.allocated - s1.allocated));
  EXPECT_GE(s2.peak_allocated, s2.allocated);
}

TEST(CpuAllocator, LimitEmptyCacheAndPeak) {
  const size_t limit = memory::cache_limit();
  memory::empty_cache();
  EXPECT_EQ(memory::cpu_stats().cached, 0u);
  memory::set_cache_limit(0);  // nothing is kept
  EXPECT_EQ(memory::cache_limit(), 0u);
  { Tensor a = zeros({500, 500}); }
  EXPECT_EQ(memory::cpu_stats().cached, 0u);
  memory::set_cache_limit(limit);
  { Tensor a = zeros({500, 500}); }
  EXPECT_GT(memory::cpu_stats().cached, 0u);
  memory::empty_cache();
  EXPECT_EQ(memory::cpu_stats().cached, 0u);
  memory::reset_peak_stats();
  const size_t base = memory::cpu_stats().allocated;
  { Tensor a = zeros({2000, 1000}); }
  EXPECT_GE(memory::cpu_stats().peak_allocated, base + 8000000);
  memory::reset_peak_stats();
  EXPECT_EQ(memory::cpu_stats().peak_allocated, memory::cpu_stats().allocated);
}

TEST(CpuAllocator, SmallBlocksBypassTheCache) {
  const memory::CpuStats s0 = memory::cpu_stats();
  { Tensor a = ones({100}); }
  const memory::CpuStats s1 = memory::cpu_stats();
  EXPECT_EQ(s1.cached, s0.cached);
  EXPECT_EQ(s1.hits + s1.misses, s0.hits + s0.misses);
  // A reused block holds whatever was there: creation ops still write every element.
  { Tensor a = full({300, 300}, 7.0); }
  Tensor z = zeros({300, 300});
  EXPECT_EQ(sum(z).item<double>(), 0.0);
}

// Note [Per-thread block lists]: blocks of 1 to 64 KiB come back to the thread that frees
// them, count as cached, and leave with empty_cache; one freed on another thread is that
// thread's to keep or return.
TEST(CpuAllocator, MidSizeBlocksAreKeptPerThread) {
  memory::empty_cache();
  const memory::CpuStats s0 = memory::cpu_stats();
  const void* first = nullptr;
  {
    Tensor a = empty({1000});  // 4000 bytes: the 4 KiB bin
    first = a.data_ptr<float>();
  }
  const memory::CpuStats s1 = memory::cpu_stats();
  EXPECT_EQ(s1.allocated, s0.allocated);
  EXPECT_EQ(s1.cached, s0.cached + 4096);
  Tensor b = empty({990});  // the same bin: the same block
  EXPECT_EQ(static_cast<const void*>(b.data_ptr<float>()), first);
  EXPECT_EQ(memory::cpu_stats().cached, s0.cached);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data_ptr<float>()) % 64, 0u);

  // Made here, freed on another thread (one without lists of its own: back to malloc).
  Tensor c = full({3000}, 2.0);
  std::thread([t = std::move(c)]() mutable { t = Tensor(); }).join();
  EXPECT_EQ(memory::cpu_stats().allocated, s0.allocated + 4096);  // b only

  memory::empty_cache();
  { Tensor d = empty({2000}); }
  EXPECT_GT(memory::cpu_stats().cached, 0u);
  memory::empty_cache();
  EXPECT_EQ(memory::cpu_stats().cached, 0u);
  const size_t limit = memory::cache_limit();
  memory::set_cache_limit(0);  // nothing kept, at either level
  { Tensor d = empty({2000}); }
  EXPECT_EQ(memory::cpu_stats().cached, 0u);
  memory::set_cache_limit(limit);
}

// Note [CPU cache limit]: a quarter of the memory the process may use, at least 1 GiB, so that
// a step's working set beyond 1 GiB (the task-batched Omniglot step's 1.8 GB) stays cached.
TEST(CpuAllocator, DefaultLimitIsAQuarterOfMemory) {
  const size_t limit = memory::default_cache_limit();
  EXPECT_EQ(memory::cache_limit(), limit);  // no test before this one leaves it changed
  EXPECT_GE(limit, size_t{1} << 30);
  const size_t physical =
      static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
  EXPECT_LE(limit, std::max(size_t{1} << 30, physical / 4));
  // Two 600 MB blocks freed together (1.2 GB, over the old fixed limit of 1 GiB) stay cached
  // where the limit allows it.
  if (limit >= (size_t{5} << 28)) {
    memory::empty_cache();
    {
      Tensor a = empty({150'000'000}), b = empty({150'000'000});  // 600 MB each (float32)
    }
    EXPECT_GE(memory::cpu_stats().cached, size_t{1200'000'000});
    memory::empty_cache();
  }
}

// Threads that allocate mid-size blocks, hand some to each other and free them there: every
// block is returned exactly once (ASan in CI checks the memory side), and the statistics come
// back to where they started once the threads are gone.
TEST(CpuAllocator, PerThreadListsUnderCrossThreadFrees) {
  memory::empty_cache();
  const size_t base = memory::cpu_stats().allocated;
  constexpr int kThreads = 4, kRounds = 200;
  std::vector<std::vector<Tensor>> handed(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([t, &handed] {
      std::vector<Tensor> mine;
      for (int r = 0; r < kRounds; ++r) {
        // 1 KiB to 48 KiB, several bins; written, so a block handed out twice would show
        Tensor a = full({256 + 97 * ((r * 7 + t) % 120)}, static_cast<double>(t));
        EXPECT_EQ(a.select(0, 0).item<float>(), static_cast<float>(t));
        if (r % 3 == 0) mine.push_back(a);
      }
      handed[static_cast<size_t>(t)] = std::move(mine);
    });
  for (auto& th : threads) th.join();
  threads.clear();
  // Each thread frees what another one made.
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([t, &handed] {
      auto& theirs = handed[static_cast<size_t>((t + 1) % kThreads)];
      for (Tensor& x : theirs)
        EXPECT_EQ(x.select(0, 0).item<float>(), static_cast<float>((t + 1) % kThreads));
      theirs.clear();
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(memory::cpu_stats().allocated, base);
}
