// Tensor core: construction, metadata, views sharing storage, copies, conversions, errors.
#include <gtest/gtest.h>

#include <limits>

#include "test_util.h"

#include <metagrad/metagrad.h>

#include <cmath>
#include <limits>
#include <numeric>

using namespace metagrad;

namespace {
Tensor iota(const Shape& s, DType t = DType::Float64) {
  return arange(0, numel_of(s), 1, TensorOptions(t)).reshape(s);
}
}  // namespace

TEST(Tensor, EmptyZerosOnesFull) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.strides(), (Shape{3, 1}));
  EXPECT_EQ(z.dtype(), DType::Float32);
  EXPECT_EQ(z.numel(), 6);
  for (float v : z.to_vector<float>()) EXPECT_EQ(v, 0.f);
  for (double v : ones({4}, DType::Float64).to_vector<double>()) EXPECT_EQ(v, 1.0);
  for (int64_t v : full({3}, 7, DType::Int64).to_vector<int64_t>()) EXPECT_EQ(v, 7);
  // Without a dtype, full takes it from the value (as libtorch); zeros/ones stay float32.
  EXPECT_EQ(full({2}, 7).dtype(), DType::Int64);
  EXPECT_EQ(full({}, int64_t{1} << 60).item<int64_t>(), int64_t{1} << 60);
  EXPECT_EQ(full({2}, true).dtype(), DType::Bool);
  EXPECT_EQ(full({2}, 7.0).dtype(), DType::Float32);
  EXPECT_EQ(full({2}, 7, Device::cpu()).dtype(), DType::Int64);
  EXPECT_EQ(full({2}, 7, TensorOptions().requires_grad(false)).dtype(), DType::Int64);
  EXPECT_EQ(full({2}, 7, DType::Float64).dtype(), DType::Float64);
  EXPECT_EQ(zeros({2}, Device::cpu()).dtype(), DType::Float32);
  EXPECT_EQ(ones({2}).dtype(), DType::Float32);
  EXPECT_EQ(full_like(zeros({2}, DType::Float64), 3).dtype(), DType::Float64);
  Tensor s = full({}, 2.5);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item<float>(), 2.5f);
  EXPECT_EQ(zeros({0, 3}).numel(), 0);
  EXPECT_TRUE(zeros({2, 0, 4}).is_contiguous());
  EXPECT_TRUE(zeros({0, 3}).to_vector<float>().empty());
}

TEST(Tensor, ArangeLinspaceEye) {
  EXPECT_EQ(arange(5).dtype(), DType::Int64);
  EXPECT_EQ(arange(5).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(0.0, 1.0, 0.25).dtype(), DType::Float32);
  EXPECT_EQ(arange(0.0, 1.0, 0.25).to_vector<float>(), (std::vector<float>{0, .25f, .5f, .75f}));
  EXPECT_EQ(arange(5, 0, -2).to_vector<int64_t>(), (std::vector<int64_t>{5, 3, 1}));
  EXPECT_EQ(arange(0, 5, 1, Device::cpu()).dtype(), DType::Int64);  // options without a dtype
  EXPECT_EQ(arange(0, 5, 1, DType::Float64).dtype(), DType::Float64);
  auto l = linspace(-1, 1, 5, DType::Float64).to_vector<double>();
  for (int i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(l[i], -1 + 0.5 * i);
  EXPECT_EQ(linspace(0, 1, 1).to_vector<float>(), (std::vector<float>{0}));
  auto e = eye(2, 3).to_vector<float>();
  EXPECT_EQ(e, (std::vector<float>{1, 0, 0, 0, 1, 0}));
  EXPECT_MG_ERROR(arange(0, 5, 0), "[arange]");
  EXPECT_MG_ERROR(arange(5, 0, 1), "[arange]");
  EXPECT_MG_ERROR(linspace(0, 1, -1), "[linspace]");
  // Integer dtypes truncate start and end first (torch.linspace(0.6, 3.4, 3, dtype=int64) is
  // [0, 1, 3]); bool is refused, as by PyTorch.
  EXPECT_EQ(linspace(0.6, 3.4, 3, DType::Int64).to_vector<int64_t>(),
            (std::vector<int64_t>{0, 1, 3}));
  EXPECT_MG_ERROR(linspace(0, 1, 3, DType::Bool), "[linspace] not implemented for bool");
  EXPECT_MG_ERROR(linspace(0, 300, 3, DType::UInt8), "[linspace]");
}

TEST(Tensor, FromData) {
  Tensor t = tensor({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, {2, 3});
  EXPECT_EQ(t.dtype(), DType::Float64);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(tensor({true, false}).to_vector<bool>(), (std::vector<bool>{true, false}));
  EXPECT_EQ(tensor({int32_t{3}}).shape(), (Shape{1}));
  EXPECT_EQ(tensor({int32_t{3}}, Shape{}).dim(), 0);
  EXPECT_MG_ERROR(tensor({1.f, 2.f}, {3}), "[tensor]");
}

TEST(Tensor, ViewsShareStorage) {
  Tensor x = iota({2, 3, 4});
  Tensor tr = x.transpose(0, 2);
  EXPECT_EQ(tr.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(tr.strides(), (Shape{1, 4, 12}));
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(tr.storage(), x.storage());
  // Writing through a view changes the base.
  Tensor row = x.select(0, 1).select(0, 2);  // x[1, 2, :]
  row.fill_(-1);
  auto v = x.to_vector<double>();
  for (int k = 0; k < 4; ++k) EXPECT_EQ(v[12 + 8 + k], -1);
  EXPECT_EQ(v[0], 0);
}

TEST(Tensor, SliceNarrowSelect) {
  Tensor x = iota({10});
  EXPECT_EQ(x.slice(0, 1, 8, 3).to_vector<double>(), (std::vector<double>{1, 4, 7}));
  EXPECT_EQ(x.slice(0, -3, 100).to_vector<double>(), (std::vector<double>{7, 8, 9}));
  EXPECT_EQ(x.slice(0, 5, 2).numel(), 0);
  EXPECT_EQ(x.narrow(0, 2, 3).to_vector<double>(), (std::vector<double>{2, 3, 4}));
  EXPECT_EQ(x.select(0, -1).item<double>(), 9);
  Tensor m = iota({3, 4});
  Tensor col = m.select(1, 2);
  EXPECT_EQ(col.to_vector<double>(), (std::vector<double>{2, 6, 10}));
  EXPECT_MG_ERROR(x.slice(0, 0, 5, 0), "[slice]");
  EXPECT_MG_ERROR(x.narrow(0, 8, 5), "[narrow]");
  EXPECT_MG_ERROR(x.select(0, 10), "[select]");
  EXPECT_MG_ERROR(x.select(1, 0), "[select]");
}

TEST(Tensor, ViewReshapeFlatten) {
  Tensor x = iota({2, 3, 4});
  EXPECT_EQ(x.view({6, -1}).shape(), (Shape{6, 4}));
  EXPECT_EQ(x.view({6, -1}).storage(), x.storage());
  // A transposed tensor cannot be viewed flat, but reshape copies.
  Tensor t = x.transpose(1, 2);
  EXPECT_MG_ERROR(t.view({-1}), "[view]");
  Tensor r = t.reshape({-1});
  EXPECT_NE(r.storage(), x.storage());
  auto rv = r.to_vector<double>();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 3; ++k) EXPECT_EQ(rv[i * 12 + j * 3 + k], i * 12 + k * 4 + j);
  // Splitting a dim of a permuted view is still a view.
  Tensor p = iota({4, 6}).t();  // [6, 4], strides [1, 6]
  EXPECT_EQ(p.view({2, 3, 4}).strides(), (Shape{3, 1, 6}));
  EXPECT_EQ(x.flatten().shape(), (Shape{24}));
  EXPECT_EQ(x.flatten(1).shape(), (Shape{2, 12}));
  EXPECT_EQ(full({}, 1.0).flatten().shape(), (Shape{1}));
  EXPECT_MG_ERROR(x.view({5, -1}), "[view]");
  EXPECT_MG_ERROR(x.view({-1, -1}), "[view]");
  EXPECT_MG_ERROR(x.reshape({7}), "[reshape]");
}

TEST(Tensor, PermuteSqueezeUnsqueezeExpand) {
  Tensor x = iota({2, 1, 3});
  EXPECT_EQ(x.permute({2, 0, 1}).shape(), (Shape{3, 2, 1}));
  EXPECT_MG_ERROR(x.permute({0, 0, 1}), "[permute]");
  EXPECT_MG_ERROR(x.permute({0, 1}), "[permute]");
  EXPECT_EQ(x.squeeze().shape(), (Shape{2, 3}));
  EXPECT_EQ(x.squeeze(1).shape(), (Shape{2, 3}));
  EXPECT_EQ(x.squeeze(0).shape(), (Shape{2, 1, 3}));
  EXPECT_EQ(x.unsqueeze(-1).shape(), (Shape{2, 1, 3, 1}));
  EXPECT_EQ(x.unsqueeze(0).shape(), (Shape{1, 2, 1, 3}));
  Tensor e = x.expand({4, 2, 5, 3});
  EXPECT_EQ(e.shape(), (Shape{4, 2, 5, 3}));
  EXPECT_EQ(e.strides()[0], 0);
  EXPECT_EQ(e.strides()[2], 0);
  auto ev = e.to_vector<double>();
  EXPECT_EQ(ev[(3 * 2 * 5 * 3) + (1 * 15) + (4 * 3) + 2], 5);  // e[3,1,4,2] = x[1,0,2]
  EXPECT_EQ(x.expand({-1, 4, -1}).shape(), (Shape{2, 4, 3}));
  EXPECT_MG_ERROR(x.expand({3, 1, 3}), "[expand]");
  EXPECT_MG_ERROR(x.expand({3}), "[expand]");
  EXPECT_MG_ERROR(x.unsqueeze(4), "[unsqueeze]");
}

// When reshape (or flatten) must copy, the result owns its buffer, as PyTorch's: no view, so an
// in-place write into it may be recorded.
TEST(Tensor, ReshapeThatCopiesIsNoView) {
  Tensor w = ones({3, 4}).requires_grad_(true);
  Tensor y = (w * 2.0f).t().reshape({12});
  EXPECT_FALSE(y.is_view());
  EXPECT_FALSE((w * 2.0f).t().flatten().is_view());
  EXPECT_TRUE((w * 2.0f).reshape({12}).is_view());  // a view where one is possible
  mul_(y, tensor({3.0f}));
  sum(y).backward();
  EXPECT_EQ(w.grad().to_vector<float>(), std::vector<float>(12, 6.0f));
}

// item<T>() refuses a value T cannot hold, as libtorch's (to() and to_vector() cast instead).
TEST(Tensor, ItemChecksTheConversion) {
  EXPECT_EQ(tensor({2.75}).item<int64_t>(), 2);
  EXPECT_EQ(tensor({-0.5}).item<uint8_t>(), 0);
  EXPECT_EQ(tensor({int64_t{255}}).item<uint8_t>(), 255);
  EXPECT_EQ(tensor({3.0}).item<bool>(), true);
  EXPECT_EQ(tensor({1e300}).item<double>(), 1e300);
  EXPECT_EQ(tensor({INFINITY}).item<float>(), INFINITY);
  EXPECT_MG_ERROR_HAS(tensor({std::nan("")}).item<int64_t>(), "[item]", "without overflow");
  EXPECT_MG_ERROR(tensor({3e9}).item<int32_t>(), "[item]");
  EXPECT_MG_ERROR(tensor({int64_t{300}}).item<uint8_t>(), "[item]");
  EXPECT_MG_ERROR(tensor({int64_t{-1}}).item<uint8_t>(), "[item]");
  EXPECT_MG_ERROR(tensor({1e300}).item<float>(), "[item]");
  EXPECT_MG_ERROR(eye(3, -2), "[eye]");
  EXPECT_EQ(eye(2, -1).shape(), (Shape{2, 2}));
}

TEST(Tensor, ContiguousCloneCopy) {
  Tensor x = iota({3, 4});
  Tensor t = x.t();
  Tensor c = t.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.to_vector<double>(), t.to_vector<double>());
  EXPECT_TRUE(x.contiguous().is_same(x));
  Tensor cl = x.clone();
  cl.fill_(0);
  EXPECT_EQ(x.to_vector<double>()[5], 5);
  // copy_ broadcasts and converts.
  Tensor d = zeros({2, 3}, DType::Int32);
  d.copy_(tensor({1.9, -2.7, 3.0}));
  EXPECT_EQ(d.to_vector<int32_t>(), (std::vector<int32_t>{1, -2, 3, 1, -2, 3}));
  EXPECT_MG_ERROR(d.copy_(zeros({4})), "[copy_]");
  // Writing into an expanded view is refused.
  Tensor ex = zeros({1, 3}).expand({2, 3});
  EXPECT_MG_ERROR(ex.fill_(1), "[fill_]");
  // Overlapping self-copy reads a snapshot.
  Tensor y = arange(0.0, 5.0, 1.0);
  y.slice(0, 1, 5).copy_(y.slice(0, 0, 4));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{0, 0, 1, 2, 3}));
}

TEST(Tensor, DtypeConversions) {
  Tensor x = tensor({-1.5, 0.0, 2.7});
  EXPECT_EQ(x.to(DType::Int64).to_vector<int64_t>(), (std::vector<int64_t>{-1, 0, 2}));
  EXPECT_EQ(x.to(DType::Bool).to_vector<bool>(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(x.to(DType::Float32).dtype(), DType::Float32);
  EXPECT_TRUE(x.to(DType::Float64).is_same(x));
  EXPECT_EQ(x.to_vector<int32_t>(), (std::vector<int32_t>{-1, 0, 2}));
  EXPECT_EQ(tensor({200}).to(DType::UInt8).item<int64_t>(), 200);
  EXPECT_MG_ERROR(x.item<double>(), "[item]");
  EXPECT_MG_ERROR(x.data_ptr<float>(), "[data_ptr]");
  EXPECT_MG_ERROR(x.to(Device::cuda(0)), "[to]");
}

TEST(Tensor, Errors) {
  Tensor u;
  EXPECT_FALSE(u.defined());
  EXPECT_MG_ERROR(u.shape(), "[shape]");
  EXPECT_MG_ERROR(zeros({-1}), "[shape]");
  EXPECT_MG_ERROR(zeros(Shape(17, 1)), "[empty]");
  EXPECT_MG_ERROR(zeros({2}).size(2), "[size]");
  EXPECT_MG_ERROR(as_strided(zeros({4}), {3}, {2}, 0), "[as_strided]");
  EXPECT_EQ(as_strided(iota({4}), {2}, {2}, 1).to_vector<double>(), (std::vector<double>{1, 3}));
  EXPECT_MG_ERROR(zeros({2}, DType::Int64).requires_grad_(), "[requires_grad_]");
}

// Sizes near int64's limits are errors, never wrapped arithmetic (a wrapped byte count once gave
// a tensor of 2^62 doubles an empty buffer; a view of 17 dims overran the kernels' arrays).
TEST(Tensor, HugeSizesAndTooManyDimsAreErrors) {
  EXPECT_MG_ERROR_HAS(zeros({int64_t{1} << 62}, DType::Float64), "[empty]", "2^63 bytes");
  EXPECT_MG_ERROR(zeros({int64_t{1} << 62}), "[empty]");
  EXPECT_MG_ERROR(zeros({(int64_t{1} << 62) - 1}), "[empty]");
  EXPECT_MG_ERROR_HAS(zeros({0, int64_t{1} << 40, int64_t{1} << 40}), "[shape]", "overflow");
  // A view of more dims than the kernels take, whichever view op makes it.
  const Tensor x = zeros({int64_t{1} << 17});
  EXPECT_MG_ERROR_HAS(x.view(Shape(17, 2)), "[view]", "more than 16");
  EXPECT_MG_ERROR(x.reshape(Shape(17, 2)), "[reshape]");
  EXPECT_MG_ERROR(x.narrow(0, 0, int64_t{1} << 16).view(Shape(16, 2)).unsqueeze(0), "[unsqueeze]");
  EXPECT_MG_ERROR(zeros(Shape(16, 1)).expand(Shape(17, 1)), "[expand]");
  EXPECT_MG_ERROR(as_strided(zeros({1}), Shape(17, 1), Shape(17, 0), 0), "[as_strided]");
  // expand and as_strided cannot make more elements than int64 counts.
  EXPECT_MG_ERROR(ones({1}).expand({int64_t{1} << 40, int64_t{1} << 40}), "[shape]");
  EXPECT_MG_ERROR(as_strided(zeros({4}), {int64_t{1} << 62, 2}, {4, 1}, 0), "[as_strided]");
  // Steps, lengths and -1 inference with huge values.
  const Tensor y = iota({2, 4});
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(y.slice(1, 0, 4, big).to_vector<double>(), (std::vector<double>{0, 4}));
  EXPECT_MG_ERROR(y.narrow(1, 1, big), "[narrow]");
  EXPECT_MG_ERROR(y.view({big, 2, -1}), "[view]");
  EXPECT_MG_ERROR(y.view({int64_t{1} << 32, int64_t{1} << 32, -1}), "[view]");
  EXPECT_EQ(split(y, big, 1).size(), 1u);
  EXPECT_EQ(chunk(y, big, 1).size(), 4u);
  EXPECT_MG_ERROR(split(y, {big, big, 6}, 1), "[split]");
  EXPECT_MG_ERROR(pad(y, {big, 1}), "[pad]");
  EXPECT_MG_ERROR(one_hot(tensor({big})), "[one_hot]");
  const Tensor e = ones({1}).expand({int64_t{1} << 62});
  EXPECT_MG_ERROR(cat({e, e, e}), "[cat]");
  // A 0-d tensor takes dims 0 and -1 only.
  const Tensor s = tensor({1.0}).squeeze();
  EXPECT_MG_ERROR(s.squeeze(5), "[squeeze]");
  EXPECT_MG_ERROR(s.transpose(3, 4), "[transpose]");
  EXPECT_MG_ERROR(s.flatten(5, 7), "[flatten]");
  EXPECT_EQ(s.squeeze(-1).dim(), 0);
  EXPECT_EQ(s.flatten(0, -1).shape(), Shape{1});
}

TEST(Tensor, CudaAvailabilityIsReported) {
  // Either a GPU is visible, or asking for CUDA gives a clear error; never a crash.
  if (!cuda_is_available()) {
    EXPECT_EQ(cuda_device_count(), 0);
    EXPECT_MG_ERROR(zeros({2}, Device::cuda(0)), "[alloc]");
    // The message says why and what to do (a CUDA build without a GPU, or no CUDA at all).
    EXPECT_MG_ERROR_HAS(ones({2}).to(Device::cuda()), "[to]", "use the CPU");
    EXPECT_MG_ERROR_HAS(randn({2}, TensorOptions().device(Device::cuda())), "[randn]",
                        "use the CPU");
  }
}

// arange counts integer ranges exactly, and refuses counts no tensor can have.
TEST(Tensor, ArangeCountsIntegerRangesExactly) {
  const int64_t mx = std::numeric_limits<int64_t>::max();
  const int64_t big = int64_t{1} << 53;
  EXPECT_EQ(arange(big + 1, big + 4, 1).to_vector<int64_t>(),
            (std::vector<int64_t>{big + 1, big + 2, big + 3}));
  EXPECT_EQ(arange(mx - 10, mx, 4).to_vector<int64_t>(),
            (std::vector<int64_t>{mx - 10, mx - 6, mx - 2}));
  EXPECT_EQ(arange(int64_t{5}, int64_t{-5}, int64_t{-3}).to_vector<int64_t>(),
            (std::vector<int64_t>{5, 2, -1, -4}));
  EXPECT_MG_ERROR(arange(0.0, 1e300, 1.0), "[arange]");
  EXPECT_MG_ERROR(arange(std::numeric_limits<int64_t>::min(), mx, int64_t{1}), "[arange]");
  EXPECT_MG_ERROR(pad(ones({3}), {1, 1}, static_cast<PadMode>(7)), "[pad]");
}
