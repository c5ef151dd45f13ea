// Tests of the CUDA device runtime as users see it (kernels/cuda/runtime.h, kernels/device.h):
// copies between the CPU and the GPU for every dtype and layout, item(), the error for
// operands on two devices, factories and seeded random tensors on the GPU (the same numbers as
// the CPU, Note [Philox stream contract]), the caching allocator's reuse, statistics and
// out-of-memory recovery (Note [CUDA caching allocator]), streams and events, and TF32.
// Every test skips without a GPU.
#include <gtest/gtest.h>

#include <metagrad/metagrad.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/cuda/runtime.h"

using namespace metagrad;
using mg_cuda_test::allclose;

namespace {

constexpr size_t kMiB = size_t{1} << 20;

const DType kAllDTypes[] = {DType::Bool,  DType::UInt8,   DType::Int32,
                            DType::Int64, DType::Float32, DType::Float64};

Device gpu() {
  return Device::cuda();
}
TensorOptions on_gpu(DType dt) {
  return TensorOptions().dtype(dt).device(gpu());
}

// `n` distinct-ish values of `dt` (row-major) in shape `shape`: every byte pattern the dtype
// can hold is exercised a little (negatives and non-integers for floats, values above 2^32
// for int64, both truth values for bool).
Tensor sample(DType dt, const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  switch (dt) {
    case DType::Bool: {
      std::vector<bool> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = (i * 7) % 3 == 0;
      return tensor(v, shape);
    }
    case DType::UInt8: {
      std::vector<uint8_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        v[static_cast<size_t>(i)] = static_cast<uint8_t>(i * 37 % 256);
      return tensor(v, shape);
    }
    case DType::Int32: {
      std::vector<int32_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        v[static_cast<size_t>(i)] = static_cast<int32_t>((i - n / 2) * 1000003);
      return tensor(v, shape);
    }
    case DType::Int64: {
      std::vector<int64_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = (i - n / 2) * 1099511627791LL;
      return tensor(v, shape);
    }
    case DType::Float32: {
      std::vector<float> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        v[static_cast<size_t>(i)] = static_cast<float>(i) * 1.25f - 7.1f;
      return tensor(v, shape);
    }
    case DType::Float64: {
      std::vector<double> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        v[static_cast<size_t>(i)] = static_cast<double>(i) * 1.25 - 7.1;
      return tensor(v, shape);
    }
  }
  return {};
}

// Same shape, dtype, device kind (CPU) and bytes, element by element in row-major order.
::testing::AssertionResult same_cpu_bytes(const Tensor& got, const Tensor& want) {
  if (!got.device().is_cpu()) return ::testing::AssertionFailure() << "not on the CPU";
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure()
           << "shape " << shape_str(got.shape()) << " != " << shape_str(want.shape());
  if (got.dtype() != want.dtype())
    return ::testing::AssertionFailure()
           << "dtype " << dtype_name(got.dtype()) << " != " << dtype_name(want.dtype());
  const Tensor g = got.contiguous(), w = want.contiguous();
  const size_t nbytes = static_cast<size_t>(w.numel()) * dtype_size(w.dtype());
  if (nbytes != 0 && std::memcmp(g.raw_data(), w.raw_data(), nbytes) != 0)
    return ::testing::AssertionFailure() << "values differ: " << got << " vs " << want;
  return ::testing::AssertionSuccess();
}

// Exact agreement of two tensors on any devices (compared on the CPU).
::testing::AssertionResult same_values(const Tensor& gpu_t, const Tensor& cpu_t) {
  if (!gpu_t.device().is_cuda())
    return ::testing::AssertionFailure() << "on " << gpu_t.device().str() << ", not the GPU";
  return same_cpu_bytes(gpu_t.to(Device::cpu()), cpu_t);
}

class CudaRuntime : public mg_cuda_test::CudaTest {};

// The allocator tests start from an idle device with an empty cache, so what they measure is
// theirs, and leave no memory limit behind whatever happens.
class CudaAllocator : public mg_cuda_test::CudaTest {
 protected:
  void SetUp() override {
    mg_cuda_test::CudaTest::SetUp();
    if (IsSkipped()) return;
    cuda::synchronize();
    cuda::set_memory_limit(0);
    cuda::empty_cache();
  }
  void TearDown() override {
    if (cuda_is_available()) cuda::set_memory_limit(0);
  }
  // A float32 tensor of exactly `bytes` bytes (a multiple of 4) on the GPU.
  static Tensor block(size_t bytes) {
    return Tensor::empty({static_cast<int64_t>(bytes / 4)}, on_gpu(DType::Float32));
  }
};

// ---- devices --------------------------------------------------------------------------------

TEST_F(CudaRuntime, DeviceQueries) {
  EXPECT_GE(cuda_device_count(), 1);
  EXPECT_EQ(Device::cuda().str(), "cuda:0");
  EXPECT_EQ(Device::cuda(1).index, 1);
  EXPECT_TRUE(Device::cuda().is_cuda());
  const Tensor t = ones({2}, on_gpu(DType::Float32));
  EXPECT_EQ(t.device(), Device::cuda(0));
  EXPECT_EQ(t.options().device_, Device::cuda(0));
  // A device that does not exist is an error, not a crash.
  EXPECT_THROW((void)ones({2}).to(Device::cuda(cuda_device_count())), Error);
  EXPECT_THROW((void)zeros({2}, on_gpu(DType::Float32).device(Device::cuda(cuda_device_count()))),
               Error);
}

// ---- copies -----------------------------------------------------------------------------------

TEST_F(CudaRuntime, RoundTripEveryDtype) {
  for (DType dt : kAllDTypes) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor src = sample(dt, {4, 6});
    // contiguous
    const Tensor g = src.to(gpu());
    EXPECT_TRUE(g.device().is_cuda());
    EXPECT_EQ(g.dtype(), dt);
    EXPECT_EQ(g.shape(), src.shape());
    EXPECT_TRUE(same_values(g, src));
    EXPECT_TRUE(same_cpu_bytes(g.to(Device::cpu()).to(gpu()).to(Device::cpu()), src));
    // a strided CPU view goes over as its values
    const Tensor view = src.slice(1, 1, 6, 2).t();
    EXPECT_TRUE(same_values(view.to(gpu()), view));
    // views taken on the GPU come back as the same views of the CPU tensor
    const Tensor gv = g.slice(1, 1, 6, 2).t();
    EXPECT_TRUE(same_values(gv, view));
    EXPECT_TRUE(same_values(gv.contiguous(), view));
    EXPECT_TRUE(gv.contiguous().is_contiguous());
    EXPECT_TRUE(same_values(gv.clone(), view));
    const Tensor row = src.select(0, 2).unsqueeze(0).expand({3, 6});
    EXPECT_TRUE(same_values(g.select(0, 2).unsqueeze(0).expand({3, 6}), row));
    EXPECT_TRUE(same_values(g.select(0, 2).unsqueeze(0).expand({3, 6}).contiguous(), row));
    // copy_ into a strided GPU destination, from the CPU and from the GPU
    Tensor dst = zeros({6, 4}, on_gpu(dt));
    dst.t().copy_(src);
    EXPECT_TRUE(same_values(dst, src.t()));
    Tensor dst2 = zeros({6, 4}, on_gpu(dt));
    dst2.t().copy_(g);
    EXPECT_TRUE(same_values(dst2, src.t()));
    // and from the GPU into a strided CPU destination
    Tensor host = zeros({6, 4}, TensorOptions(dt));
    host.t().copy_(g);
    EXPECT_TRUE(same_cpu_bytes(host, src.t()));
    // 0-d: a fresh one and a view with an offset
    const Tensor scalar = src.select(0, 2).select(0, 3);
    const Tensor gs = scalar.to(gpu());
    EXPECT_EQ(gs.dim(), 0);
    EXPECT_TRUE(same_values(gs, scalar));
    EXPECT_TRUE(same_values(g.select(0, 2).select(0, 3), scalar));
    // empty
    const Tensor none = zeros({0, 3}, TensorOptions(dt));
    const Tensor gn = none.to(gpu());
    EXPECT_EQ(gn.shape(), (Shape{0, 3}));
    EXPECT_TRUE(gn.device().is_cuda());
    EXPECT_TRUE(same_values(gn, none));
    EXPECT_EQ(g.slice(0, 2, 2).numel(), 0);
    EXPECT_TRUE(same_values(g.slice(0, 2, 2), src.slice(0, 2, 2)));
    // dtype conversion on the GPU matches the CPU's, wherever the values fit the target
    // (negative floats to uint8, and integers out of a narrower type's range, are undefined
    // behaviour in C++ and may differ between the devices)
    for (DType to : kAllDTypes) {
      const bool is_float = dt == DType::Float32 || dt == DType::Float64;
      if ((is_float || dt == DType::Int32 || dt == DType::Int64) && to == DType::UInt8) continue;
      if (dt == DType::Int64 && to == DType::Int32) continue;
      SCOPED_TRACE(std::string("to ") + dtype_name(to));
      EXPECT_TRUE(same_values(g.to(to), src.to(to)));
    }
  }
}

TEST_F(CudaRuntime, ItemOnCuda) {
  EXPECT_EQ(full({}, 2.5, on_gpu(DType::Float64)).item<double>(), 2.5);
  EXPECT_EQ(full({1}, -3, on_gpu(DType::Int64)).item<int64_t>(), -3);
  EXPECT_EQ(full({1, 1}, 1.5, on_gpu(DType::Float32)).item<float>(), 1.5f);
  EXPECT_TRUE(ones({}, on_gpu(DType::Bool)).item<bool>());
  EXPECT_EQ(sum(arange(0, 100, 1, on_gpu(DType::Int64))).item<int64_t>(), 4950);
  const Tensor g = sample(DType::Float64, {4, 6}).to(gpu());
  EXPECT_EQ(g.select(0, 3).select(0, 5).item<double>(), 23 * 1.25 - 7.1);
  EXPECT_THROW((void)g.item<double>(), Error);  // 24 elements
}

// ---- devices must agree -----------------------------------------------------------------

TEST_F(CudaRuntime, MixingDevicesRaises) {
  const Tensor c = ones({2, 3}, TensorOptions(DType::Float32));
  const Tensor g = ones({2, 3}, on_gpu(DType::Float32));
  const Tensor gm = ones({3, 2}, on_gpu(DType::Float32));
  auto expect_device_error = [](const char* what, auto&& f) {
    try {
      (void)f();
      ADD_FAILURE() << what << ": expected metagrad::Error for operands on two devices";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind('[', 0), 0u) << what << ": " << msg;
      EXPECT_NE(msg.find("cpu"), std::string::npos) << what << ": " << msg;
      EXPECT_NE(msg.find("cuda:0"), std::string::npos) << what << ": " << msg;
    }
  };
  expect_device_error("add", [&] { return c + g; });
  expect_device_error("mul (GPU first)", [&] { return g * c; });
  expect_device_error("where", [&] { return where(gt(g, 0.5), g, c); });
  expect_device_error("matmul", [&] { return matmul(c, gm); });
  expect_device_error("cat", [&] { return cat({c, g}, 0); });
  expect_device_error("index_select", [&] {
    return index_select(g, 0, tensor(std::vector<int64_t>{1, 0}));
  });
  expect_device_error("conv2d", [&] {
    return conv2d(ones({1, 1, 3, 3}, on_gpu(DType::Float32)), ones({1, 1, 2, 2}), {}, {});
  });

  // A 0-d CPU tensor joins an op on the GPU (as in PyTorch), and its gradient comes home.
  const Tensor s = tensor(std::vector<float>{2.0f}, Shape{}).requires_grad_(true);
  const Tensor y = g * s;
  EXPECT_TRUE(y.device().is_cuda());
  EXPECT_TRUE(allclose(y, full({2, 3}, 2.0), 0, 0));
  const std::vector<Tensor> gs = grad({sum(y)}, {s});
  EXPECT_TRUE(gs[0].device().is_cpu());
  EXPECT_EQ(gs[0].item<float>(), 6.0f);
}

// ---- factories --------------------------------------------------------------------------------

TEST_F(CudaRuntime, Factories) {
  for (DType dt : {DType::Float32, DType::Float64, DType::Int32, DType::Int64}) {
    SCOPED_TRACE(dtype_name(dt));
    const TensorOptions cpu = TensorOptions(dt);
    EXPECT_TRUE(same_values(zeros({3, 5}, on_gpu(dt)), zeros({3, 5}, cpu)));
    EXPECT_TRUE(same_values(ones({3, 5}, on_gpu(dt)), ones({3, 5}, cpu)));
    EXPECT_TRUE(same_values(full({4, 1, 2}, 7, on_gpu(dt)), full({4, 1, 2}, 7, cpu)));
    EXPECT_TRUE(same_values(arange(-3, 17, 2, on_gpu(dt)), arange(-3, 17, 2, cpu)));
    EXPECT_TRUE(same_values(eye(3, 4, on_gpu(dt)), eye(3, 4, cpu)));
    EXPECT_TRUE(same_values(zeros({0}, on_gpu(dt)), zeros({0}, cpu)));
    const Tensor e = Tensor::empty({2, 2}, on_gpu(dt));
    EXPECT_TRUE(e.device().is_cuda());
    EXPECT_EQ(e.dtype(), dt);
  }
  EXPECT_TRUE(same_values(full({2, 2}, true, on_gpu(DType::Bool)),
                          full({2, 2}, true, TensorOptions(DType::Bool))));
  EXPECT_TRUE(same_values(linspace(-1, 2, 7, on_gpu(DType::Float64)),
                          linspace(-1, 2, 7, TensorOptions(DType::Float64))));
  const Tensor t = sample(DType::Float32, {2, 3}).to(gpu());
  EXPECT_TRUE(zeros_like(t).device().is_cuda());
  EXPECT_TRUE(same_values(ones_like(t), ones({2, 3})));
  EXPECT_TRUE(same_values(full_like(t, 4), full({2, 3}, 4.0)));
  const Tensor r = ones({2}, on_gpu(DType::Float64).requires_grad());
  EXPECT_TRUE(r.requires_grad());
  EXPECT_TRUE(r.is_leaf());
}

// Note [Philox stream contract]: the same seed gives the same numbers on both devices, and
// the generator advances by the same number of blocks.
TEST_F(CudaRuntime, RandomMatchesCpuWithTheSameSeed) {
  const uint64_t seed = 20240611;
  auto pair = [&](auto&& draw, const char* what, double rtol = 0) {
    SCOPED_TRACE(what);
    Generator gc(seed), gg(seed);
    const Tensor c = draw(Device::cpu(), &gc);
    const Tensor g = draw(gpu(), &gg);
    EXPECT_TRUE(g.device().is_cuda());
    EXPECT_EQ(g.dtype(), c.dtype());
    if (rtol == 0)
      EXPECT_TRUE(same_values(g, c));
    else
      EXPECT_TRUE(allclose(g, c, rtol, 0));
    EXPECT_EQ(gg.offset(), gc.offset());
  };
  // Sizes that are not multiples of the elements per block test the tails.
  pair([](Device d,
          Generator* gen) { return rand({1001}, TensorOptions(DType::Float32).device(d), gen); },
       "rand float32");
  pair(
      [](Device d, Generator* gen) {
        return rand({33, 31}, TensorOptions(DType::Float64).device(d), gen);
      },
      "rand float64");
  // Normals go through log/cos/sin: an ulp or so apart (the note).
  pair([](Device d,
          Generator* gen) { return randn({1001}, TensorOptions(DType::Float64).device(d), gen); },
       "randn float64", 1e-13);
  pair([](Device d,
          Generator* gen) { return randn({1001}, TensorOptions(DType::Float32).device(d), gen); },
       "randn float32", 3e-7);
  pair(
      [](Device d, Generator* gen) {
        return randint(-5, 17, {1001}, TensorOptions(DType::Int64).device(d), gen);
      },
      "randint");
  pair(
      [](Device d, Generator* gen) {
        return randint(0, 100, {7, 9}, TensorOptions(DType::Int32).device(d), gen);
      },
      "randint int32");
  pair(
      [](Device d, Generator* gen) {
        return randint(-(int64_t{1} << 40), int64_t{1} << 41, {1001},
                       TensorOptions(DType::Int64).device(d), gen);
      },
      "randint wide range");
  pair(
      [](Device d, Generator* gen) {
        return bernoulli({1001}, 0.3, TensorOptions(DType::Bool).device(d), gen);
      },
      "bernoulli(shape, p) bool");
  pair(
      [](Device d, Generator* gen) {
        return bernoulli({1001}, 0.7, TensorOptions(DType::Float32).device(d), gen);
      },
      "bernoulli(shape, p) float32");
  pair(
      [](Device d, Generator* gen) {
        Generator pg(5);
        return bernoulli(rand({40, 25}, TensorOptions(DType::Float64), &pg).to(d), gen);
      },
      "bernoulli(p tensor)");
  pair([](Device d,
          Generator* gen) { return randperm(1001, TensorOptions(DType::Int64).device(d), gen); },
       "randperm");
  // In place on a strided view: element i in row-major order gets stream value i.
  pair(
      [](Device d, Generator* gen) {
        Tensor t = zeros({9, 7}, TensorOptions(DType::Float64).device(d));
        Tensor v = t.t();
        uniform_(v, -2.0, 3.0, gen);
        return t;
      },
      "uniform_ on a transposed view");
  pair(
      [](Device d, Generator* gen) {
        Tensor t = zeros({20, 10}, TensorOptions(DType::Float32).device(d));
        Tensor v = t.slice(1, 0, 10, 3);
        normal_(v, 1.0, 2.0, gen);
        return t;
      },
      "normal_ on a sliced view", 3e-7);
  // The default generator: manual_seed then a draw, on each device.
  manual_seed(seed);
  const Tensor a = rand({100}, on_gpu(DType::Float32));
  manual_seed(seed);
  const Tensor b = rand({100}, TensorOptions(DType::Float32));
  EXPECT_TRUE(same_values(a, b));
}

// ---- the caching allocator ------------------------------------------------------------------

TEST_F(CudaAllocator, SameSizeTwiceIsACacheHit) {
  const size_t bytes = 3 * kMiB + 4096;
  { const Tensor a = block(bytes); }
  const cuda::MemoryStats s0 = cuda::memory_stats();
  { const Tensor b = block(bytes); }
  const cuda::MemoryStats s1 = cuda::memory_stats();
  EXPECT_EQ(s1.alloc_count, s0.alloc_count + 1);
  EXPECT_EQ(s1.cache_hits, s0.cache_hits + 1);
  EXPECT_EQ(s1.cuda_mallocs, s0.cuda_mallocs);
  EXPECT_EQ(s1.reserved, s0.reserved);
  // A small block too (below 1 MiB the bins are 512-byte multiples).
  { const Tensor a = block(1000); }
  const cuda::MemoryStats s2 = cuda::memory_stats();
  { const Tensor b = block(1000); }
  const cuda::MemoryStats s3 = cuda::memory_stats();
  EXPECT_EQ(s3.cache_hits, s2.cache_hits + 1);
  EXPECT_EQ(s3.cuda_mallocs, s2.cuda_mallocs);
}

TEST_F(CudaAllocator, StatisticsFollowLiveTensors) {
  const size_t bytes = 4 * kMiB;
  const cuda::MemoryStats s0 = cuda::memory_stats();
  EXPECT_EQ(s0.reserved, s0.allocated);  // the fixture emptied the cache
  {
    const Tensor a = block(bytes);
    const cuda::MemoryStats s1 = cuda::memory_stats();
    EXPECT_GE(s1.allocated, s0.allocated + bytes);
    EXPECT_GE(s1.reserved, s1.allocated);
    EXPECT_GE(s1.peak_allocated, s1.allocated);
    EXPECT_GE(s1.peak_reserved, s1.reserved);
    EXPECT_EQ(s1.alloc_count, s0.alloc_count + 1);
  }
  const cuda::MemoryStats s2 = cuda::memory_stats();
  EXPECT_EQ(s2.allocated, s0.allocated);
  EXPECT_GE(s2.reserved, s2.allocated + bytes);  // the block is cached, not returned
}

TEST_F(CudaAllocator, PeakAndReset) {
  cuda::reset_peak_memory_stats();
  const cuda::MemoryStats s0 = cuda::memory_stats();
  EXPECT_EQ(s0.peak_allocated, s0.allocated);
  EXPECT_EQ(s0.peak_reserved, s0.reserved);
  {
    const Tensor a = block(8 * kMiB);
    const Tensor b = block(2 * kMiB);
  }
  const cuda::MemoryStats s1 = cuda::memory_stats();
  EXPECT_EQ(s1.allocated, s0.allocated);
  EXPECT_GE(s1.peak_allocated, s0.allocated + 10 * kMiB);  // both were live at once
  EXPECT_GE(s1.peak_reserved, s1.peak_allocated);
  cuda::reset_peak_memory_stats();
  const cuda::MemoryStats s2 = cuda::memory_stats();
  EXPECT_EQ(s2.peak_allocated, s2.allocated);
  EXPECT_EQ(s2.peak_reserved, s2.reserved);
}

TEST_F(CudaAllocator, EmptyCacheDropsReservedToAllocated) {
  const Tensor keep = block(2 * kMiB);
  {
    const Tensor a = block(5 * kMiB);
    const Tensor b = block(kMiB / 2);
  }
  const cuda::MemoryStats s0 = cuda::memory_stats();
  EXPECT_GT(s0.reserved, s0.allocated);
  cuda::empty_cache();
  const cuda::MemoryStats s1 = cuda::memory_stats();
  EXPECT_EQ(s1.allocated, s0.allocated);
  EXPECT_EQ(s1.reserved, s1.allocated);
  // the live tensor is untouched and usable
  Tensor k = keep;
  k.fill_(1.5);
  EXPECT_EQ(sum(k).item<float>(), 1.5f * static_cast<float>(2 * kMiB / 4));
}

// Note [CUDA caching allocator]: on out-of-memory the cache is released and the allocation
// retried. Under a limit of base + 8 MiB, three freed 2 MiB blocks fill 6 MiB of it; 4 MiB
// then fits only once they are returned to the driver.
TEST_F(CudaAllocator, OutOfMemoryReleasesTheCacheAndRetries) {
  const size_t base = cuda::memory_stats().reserved;
  const size_t limit = base + 8 * kMiB;
  cuda::set_memory_limit(limit);
  { const Tensor a = block(2 * kMiB), b = block(2 * kMiB), c = block(2 * kMiB); }
  const cuda::MemoryStats s0 = cuda::memory_stats();
  ASSERT_GE(s0.reserved, base + 6 * kMiB) << "the three blocks should be cached";
  Tensor big;
  ASSERT_NO_THROW(big = block(4 * kMiB));
  const cuda::MemoryStats s1 = cuda::memory_stats();
  EXPECT_GE(s1.ooms, s0.ooms + 1);
  EXPECT_LE(s1.reserved, limit);
  EXPECT_GE(s1.allocated, s0.allocated + 4 * kMiB);
  big.fill_(2.0);
  EXPECT_EQ(big.select(0, 12345).item<float>(), 2.0f);
}

TEST_F(CudaAllocator, OverTheLimitRaisesWithTheRequestedSize) {
  const size_t base = cuda::memory_stats().reserved;
  cuda::set_memory_limit(base + 8 * kMiB);
  const size_t want = 16 * kMiB + 4;  // bytes of 4 Mi + 1 float32 elements
  try {
    (void)block(want);
    ADD_FAILURE() << "expected metagrad::Error for " << want << " bytes over a limit";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(std::to_string(want)), std::string::npos) << msg;
  }
  // The allocator is still usable, and without the limit the same request succeeds.
  EXPECT_NO_THROW((void)block(kMiB));
  cuda::set_memory_limit(0);
  EXPECT_NO_THROW((void)block(want));
}

// ---- streams and events -------------------------------------------------------------------

TEST_F(CudaRuntime, WorkOnAStreamUnderAGuard) {
  const int64_t n = int64_t{1} << 20;
  void* before = cuda::current_stream_handle();
  cuda::Stream s = cuda::Stream::create();
  EXPECT_NE(s.handle(), nullptr);
  EXPECT_EQ(s.device(), 0);
  Tensor total, doubled;
  {
    cuda::StreamGuard guard(s);
    EXPECT_EQ(cuda::current_stream_handle(), s.handle());
    const Tensor a = arange(0, n, 1, on_gpu(DType::Float64));
    doubled = a * 2.0 + 1.0;
    total = sum(doubled);  // sum of the first n odd numbers: n^2, exact in float64
  }
  EXPECT_EQ(cuda::current_stream_handle(), before);
  s.synchronize();
  EXPECT_TRUE(s.query());
  EXPECT_EQ(total.item<double>(), static_cast<double>(n) * static_cast<double>(n));
  EXPECT_EQ(doubled.select(0, n - 1).item<double>(), static_cast<double>(2 * n - 1));
  cuda::synchronize();
}

TEST_F(CudaRuntime, EventOrdersTwoStreams) {
  const int64_t n = int64_t{1} << 20;
  cuda::Stream s1 = cuda::Stream::create(), s2 = cuda::Stream::create();
  cuda::Event produced;
  Tensor x, y;
  {
    cuda::StreamGuard guard(s1);
    x = full({n}, 3.0, on_gpu(DType::Float64));
    x = x * x;
    produced.record(&s1);
  }
  produced.wait(s2);  // s2 runs nothing queued after this until x is ready
  {
    cuda::StreamGuard guard(s2);
    y = sum(x);
  }
  s2.synchronize();
  EXPECT_EQ(y.item<double>(), 9.0 * static_cast<double>(n));
  s1.synchronize();
}

// cuBLAS and cuDNN handles are rebound when the stream changes (Note [Library handles]); a
// stream created after another was destroyed may get its address from the driver, and must
// still get its products and convolutions (the handles are rebound when any stream is
// destroyed, not only when the address differs).
TEST_F(CudaRuntime, LibraryCallsOnStreamsCreatedAfterOthersWereDestroyed) {
  const Tensor a = rand({64, 48}, TensorOptions().dtype(DType::Float64));
  const Tensor b = rand({48, 32}, TensorOptions().dtype(DType::Float64));
  const Tensor x = rand({2, 3, 9, 9}, TensorOptions().dtype(DType::Float64));
  const Tensor w = rand({4, 3, 3, 3}, TensorOptions().dtype(DType::Float64));
  const Tensor ga = a.to(gpu()), gb = b.to(gpu()), gx = x.to(gpu()), gw = w.to(gpu());
  for (int round = 0; round < 6; ++round) {
    cuda::Stream s = cuda::Stream::create();
    Tensor product, conv;
    {
      cuda::StreamGuard guard(s);
      product = matmul(ga, gb);
      conv = conv2d(gx, gw);
    }
    s.synchronize();
    EXPECT_TRUE(allclose(product, matmul(a, b), 1e-12, 1e-12)) << "round " << round;
    EXPECT_TRUE(allclose(conv, conv2d(x, w), 1e-12, 1e-12)) << "round " << round;
  }  // each round's stream is destroyed here
  cuda::synchronize();
}

TEST_F(CudaRuntime, EventElapsedTime) {
  const Tensor a = rand({256, 256}, on_gpu(DType::Float32));
  cuda::Event start, end;
  start.record();
  Tensor c = a;
  for (int i = 0; i < 4; ++i) c = matmul(c, a) * 0.01;
  end.record();
  end.synchronize();
  EXPECT_TRUE(end.query());
  EXPECT_TRUE(start.query());
  const float ms = start.elapsed_ms(end);
  EXPECT_GE(ms, 0.0f);
  EXPECT_TRUE(std::isfinite(ms));
}

TEST_F(CudaRuntime, DefaultStreamObject) {
  cuda::Stream d = cuda::Stream::default_stream();
  EXPECT_EQ(d.device(), 0);
  const Tensor t = ones({1000}, on_gpu(DType::Float32)) * 3;
  d.synchronize();
  EXPECT_TRUE(d.query());
  EXPECT_EQ(sum(t).item<float>(), 3000.0f);
  cuda::set_device(0);
  EXPECT_EQ(cuda::current_device(), 0);
}

// A default stream's handle is null, which CUDA reads as the current device's: the stream and
// event calls make their own device current first. Needs two GPUs; on one it checks that the
// calls leave the current device as it was.
TEST_F(CudaRuntime, StreamAndEventCallsActOnTheirOwnDevice) {
  cuda::Event e;
  e.record(nullptr);
  e.synchronize();
  EXPECT_EQ(cuda::current_device(), 0);
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs two GPUs, this machine has one";
  cuda::Stream s1 = cuda::Stream::default_stream(1);
  const Tensor t = ones({1000}, TensorOptions().dtype(DType::Float32).device(Device::cuda(1))) * 2;
  s1.synchronize();  // waits on cuda:1's default stream while cuda:0 is current
  EXPECT_TRUE(s1.query());
  EXPECT_EQ(cuda::current_device(), 0);
  try {
    e.record(&s1);
    ADD_FAILURE() << "recording a stream of another device did not raise";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("[Event]"), std::string::npos) << err.what();
  }
  EXPECT_EQ(sum(t).item<float>(), 2000.0f);
}

// ---- TF32 --------------------------------------------------------------------------------

// With TF32 off (the default) a float32 matrix product is a float32 product: ~1e-7 relative
// error against float64, where TF32's 10-bit mantissa would give ~1e-3.
TEST_F(CudaRuntime, Float32MatmulWithoutTf32MatchesFloat64) {
  struct Tf32Guard {
    bool prev = cuda::allow_tf32();
    ~Tf32Guard() { cuda::set_allow_tf32(prev); }
  } guard;
  Generator gen(3);
  const Tensor a = randn({64, 256}, TensorOptions(DType::Float64), &gen);
  const Tensor b = randn({256, 48}, TensorOptions(DType::Float64), &gen);
  const Tensor ref = matmul(a, b);
  auto rel_error = [&](const Tensor& c32) {
    const Tensor diff = c32.to(Device::cpu()).to(DType::Float64) - ref;
    return norm(diff).item<double>() / norm(ref).item<double>();
  };
  cuda::set_allow_tf32(false);
  EXPECT_FALSE(cuda::allow_tf32());
  const Tensor a32 = a.to(DType::Float32).to(gpu()), b32 = b.to(DType::Float32).to(gpu());
  EXPECT_LT(rel_error(matmul(a32, b32)), 1e-5);
  // batched, and with a transposed operand
  const Tensor ab = a32.unsqueeze(0).expand({3, 64, 256}).contiguous();
  EXPECT_LT(rel_error(matmul(ab, b32).select(0, 2)), 1e-5);
  EXPECT_LT(rel_error(matmul(a32, b32.t().contiguous().t())), 1e-5);
  // TF32 on: still a matrix product (to TF32's precision)
  cuda::set_allow_tf32(true);
  EXPECT_TRUE(cuda::allow_tf32());
  EXPECT_LT(rel_error(matmul(a32, b32)), 1e-2);
}

}  // namespace
