// CUDA kernel paths that the op table (tests/test_cuda_ops.cpp) reaches only by chance: each
// layout path of the elementwise kernels (vector with broadcast operands, tiled transposes,
// divided strided offsets) and the one-pass var / logsumexp / softmax on data far from zero,
// on special values and on the split and column layouts. Every result is compared with the
// CPU's: elementwise results exactly, statistics within rounding. Skips without a GPU.
#include <gtest/gtest.h>

#include <metagrad/metagrad.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

namespace {

using namespace metagrad;
using mg_cuda_test::allclose;

class CudaKernels : public mg_cuda_test::CudaTest {};

struct LayoutCase {
  std::string name;
  std::vector<Shape> shapes;  // the operands' base tensors, made on each device
  std::function<Tensor(const std::vector<Tensor>&)> fn;
};

std::vector<LayoutCase> layout_cases() {
  using V = const std::vector<Tensor>&;
  return {
      {"contiguous add", {{300, 256}, {300, 256}}, [](V t) { return t[0] + t[1]; }},
      {"row broadcast, vector", {{300, 256}, {256}}, [](V t) { return t[0] + t[1]; }},
      {"row broadcast, odd rows", {{300, 257}, {257}}, [](V t) { return t[0] * t[1]; }},
      {"column broadcast", {{300, 256}, {300, 1}}, [](V t) { return t[0] - t[1]; }},
      {"middle broadcast", {{8, 50, 64}, {8, 1, 64}}, [](V t) { return t[0] * t[1]; }},
      {"scalar operand", {{1000}}, [](V t) { return t[0] * 2.5; }},
      {"transposed operand", {{200, 150}, {150, 200}}, [](V t) { return t[0] + t[1].t(); }},
      {"transposed operands, ragged tiles",
       {{77, 130}, {130, 77}, {130, 77}},
       [](V t) { return where(t[0] > 0.0, t[1].t(), t[2].t()); }},
      {"transposed copy", {{77, 130}}, [](V t) { return t[0].t().contiguous(); }},
      {"copy into a transposed view",
       {{77, 130}, {130, 77}},
       [](V t) {
         Tensor y = t[1].clone();
         y.t().copy_(t[0]);
         return y;
       }},
      {"batched transpose",
       {{5, 40, 70}},
       [](V t) {
         return t[0].permute({0, 2, 1}).contiguous();
       }},
      {"4-d transposed inner dims",
       {{3, 4, 33, 20}, {3, 4, 20, 33}},
       [](V t) { return t[0] * t[1].transpose(2, 3); }},
      {"copy between transposed views",
       {{64, 96}},
       [](V t) {
         Tensor y = zeros_like(t[0]);
         y.t().copy_(t[0].t());
         return y;
       }},
      {"misaligned contiguous", {{1001}}, [](V t) { return t[0].narrow(0, 1, 1000) + 1.0; }},
      {"misaligned rows", {{300, 256}, {255}}, [](V t) { return t[0].narrow(1, 1, 255) + t[1]; }},
      // square, not exp: CUDA's exp is within 1-2 ulp, not glibc's, and these compare exactly
      {"every other column", {{64, 200}}, [](V t) { return square(t[0].slice(1, 0, 200, 2)); }},
      {"cast of a transposed operand",
       {{100, 90}},
       [](V t) {
         return t[0].t().to(t[0].dtype() == DType::Float32 ? DType::Float64 : DType::Float32);
       }},
      {"integer add with a transpose",
       {{60, 70}, {70, 60}},
       [](V t) { return (t[0] * 100.0).to(DType::Int64) + (t[1] * 100.0).to(DType::Int64).t(); }},
  };
}

TEST_F(CudaKernels, ElementwiseLayoutsMatchTheCpuExactly) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (const LayoutCase& c : layout_cases()) {
      SCOPED_TRACE(c.name + (dtype == DType::Float32 ? ", float32" : ", float64"));
      manual_seed(3);
      std::vector<Tensor> cpu, gpu;
      for (const Shape& s : c.shapes) {
        cpu.push_back(randn(s, TensorOptions().dtype(dtype)));
        gpu.push_back(cpu.back().to(Device::cuda()));
      }
      const Tensor want = c.fn(cpu), got = c.fn(gpu);
      EXPECT_TRUE(got.device().is_cuda());
      EXPECT_TRUE(allclose(got, want, 0.0, 0.0));
    }
  }
}

// Rows of special values: all -inf, one +inf, a NaN, +inf and -inf, two +inf, ordinary.
Tensor special_rows(DType dtype) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  std::vector<double> v;
  const std::vector<std::vector<double>> rows = {{-inf, -inf, -inf, -inf}, {1, inf, 2, 3},
                                                 {1, nan, 2, 3},           {inf, -inf, 0, 1},
                                                 {inf, 0, inf, -2},        {0.5, -1, 2, -inf}};
  for (const auto& r : rows) v.insert(v.end(), r.begin(), r.end());
  return tensor(v, {6, 4}).to(dtype);
}

TEST_F(CudaKernels, OnePassStatisticsMatchTheCpu) {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const double rtol = dtype == DType::Float64 ? 1e-10 : 1e-5;
    SCOPED_TRACE(dtype == DType::Float64 ? "float64" : "float32");
    manual_seed(5);
    const TensorOptions opts = TensorOptions().dtype(dtype);
    // Far from zero (one pass must not cancel), long rows (split), columns, several dims.
    const std::vector<std::pair<std::string, Tensor>> inputs = {
        {"offset 1e6", randn({64, 1000}, opts) + 1e6},
        {"offset -3e4, scale 40", randn({33, 517}, opts) * 40.0 - 3e4},
        {"long rows", randn({3, 300000}, opts) * 3.0 + 7.0},
        {"tall", randn({5000, 7}, opts) + 100.0},
        {"4-d", randn({4, 6, 9, 11}, opts) * 20.0}};
    for (const auto& [name, x] : inputs) {
      SCOPED_TRACE(name);
      const Tensor g = x.to(Device::cuda());
      const int64_t last = x.dim() - 1;
      EXPECT_TRUE(allclose(var(g, {last}), var(x, {last}), rtol, 0.0)) << "var, last dim";
      EXPECT_TRUE(allclose(var(g, {0}), var(x, {0}), rtol, 0.0)) << "var, dim 0";
      EXPECT_TRUE(
          allclose(metagrad::std(g, {0, last}, 0), metagrad::std(x, {0, last}, 0), rtol, 0.0))
          << "std";
      EXPECT_TRUE(allclose(var(g), var(x), rtol, 0.0)) << "var, everything";
      EXPECT_TRUE(allclose(logsumexp(g, {last}), logsumexp(x, {last}), rtol, 0.0)) << "lse";
      EXPECT_TRUE(allclose(logsumexp(g, {0}), logsumexp(x, {0}), rtol, 0.0)) << "lse, dim 0";
      EXPECT_TRUE(allclose(softmax(g, last), softmax(x, last), rtol, 1e-12)) << "softmax";
      // A column's largest entry has log_softmax -log(1 + t), t tiny: the exps differ by an ulp
      // between the devices, so the double sum can round to a neighbour of 1 (2.2e-16 apart), a
      // large relative error near 0 (or 0 against 2e-16): an absolute floor, as for softmax.
      EXPECT_TRUE(allclose(log_softmax(g, 0), log_softmax(x, 0), rtol, 1e-12)) << "log_softmax";
    }
    const Tensor s = special_rows(dtype), sg = s.to(Device::cuda());
    EXPECT_TRUE(allclose(logsumexp(sg, {1}), logsumexp(s, {1}), rtol, 0.0));
    EXPECT_TRUE(allclose(var(sg, {1}), var(s, {1}), rtol, 0.0));
    EXPECT_TRUE(allclose(softmax(sg, 1), softmax(s, 1), rtol, 0.0));
    EXPECT_TRUE(allclose(log_softmax(sg, 1), log_softmax(s, 1), rtol, 0.0));
    // A constant row has variance exactly 0 (never a tiny negative, whose root is NaN).
    const Tensor c = full({4, 1000}, 1e8 + 0.25, opts).to(Device::cuda());
    EXPECT_TRUE(allclose(metagrad::std(c, {1}), zeros({4}, opts), 0.0, 0.0));
  }
}

// Batch norm's one-pass channel statistics on data far from zero, and its backward with and
// without the forward's saved statistics.
TEST_F(CudaKernels, BatchNormStatisticsFarFromZeroMatchTheCpu) {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    SCOPED_TRACE(dtype == DType::Float64 ? "float64" : "float32");
    const double rtol = dtype == DType::Float64 ? 1e-10 : 1e-4;
    manual_seed(8);
    const TensorOptions opts = TensorOptions().dtype(dtype);
    const Tensor x = randn({16, 8, 5, 5}, opts) * 0.5 + 1e4, w = randn({8}, opts),
                 b = randn({8}, opts), gy = randn({16, 8, 5, 5}, opts);
    const Device cuda = Device::cuda();
    const auto [y, mean, invstd] = native_batch_norm(x, w, b, 1e-5);
    const auto [yg, meang, invstdg] = native_batch_norm(x.to(cuda), w.to(cuda), b.to(cuda), 1e-5);
    EXPECT_TRUE(allclose(meang, mean, rtol, 0.0));
    EXPECT_TRUE(allclose(invstdg, invstd, rtol, 0.0));
    EXPECT_TRUE(allclose(yg, y, rtol, rtol));
    for (bool saved : {false, true}) {
      SCOPED_TRACE(saved ? "saved statistics" : "recomputed statistics");
      const auto [gx, gw, gb] =
          native_batch_norm_backward(gy, x, w, 1e-5, {}, {}, {true, true, true},
                                     saved ? mean : Tensor(), saved ? invstd : Tensor());
      const auto [gxg, gwg, gbg] = native_batch_norm_backward(
          gy.to(cuda), x.to(cuda), w.to(cuda), 1e-5, {}, {}, {true, true, true},
          saved ? meang : Tensor(), saved ? invstdg : Tensor());
      EXPECT_TRUE(allclose(gxg, gx, rtol, rtol));
      EXPECT_TRUE(allclose(gwg, gw, rtol, rtol));
      EXPECT_TRUE(allclose(gbg, gb, rtol, rtol));
    }
  }
}

// The optimizers batch parameters into multi-tensor launches (64 tensors per launch, Note
// [Multi-tensor updates]); 70 parameters of two dtypes, an empty one and late gradients must
// give the CPU's values bit for bit (Note [Bit-identical optimizer updates]).
TEST_F(CudaKernels, MultiTensorOptimizerStepsEqualTheCpuBitwise) {
  using Make = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>;
  const std::vector<Make> makers = {
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::SGD>(ps, optim::SGDOptions(0.1).momentum(0.9));
      },
      [](std::vector<Tensor> ps) {
        return std::make_unique<optim::Adam>(ps, optim::AdamOptions(0.05).amsgrad(true));
      }};
  for (size_t mk = 0; mk < makers.size(); ++mk) {
    SCOPED_TRACE(mk == 0 ? "SGD" : "Adam");
    manual_seed(61);
    std::vector<Tensor> cpu, gpu;
    for (int i = 0; i < 70; ++i) {
      const DType dt = i % 9 == 4 ? DType::Float32 : DType::Float64;
      const Tensor base = randn(i == 5 ? Shape{0} : Shape{1 + i % 5, 1 + i % 3}, TensorOptions(dt));
      cpu.push_back(base.clone().requires_grad_(true));
      gpu.push_back(base.to(Device::cuda()).requires_grad_(true));
    }
    auto opt_cpu = makers[mk](cpu), opt_gpu = makers[mk](gpu);
    for (int step = 0; step < 3; ++step) {
      for (size_t i = 0; i < cpu.size(); ++i) {
        const bool late = step == 0 && i % 6 == 2;
        const Tensor g = randn(cpu[i].shape(), TensorOptions(cpu[i].dtype()));
        cpu[i].set_grad(late ? Tensor() : g.clone());
        gpu[i].set_grad(late ? Tensor() : g.to(Device::cuda()));
      }
      opt_cpu->step();
      opt_gpu->step();
    }
    for (size_t i = 0; i < cpu.size(); ++i)
      EXPECT_TRUE(allclose(gpu[i], cpu[i], 0.0, 0.0)) << "parameter " << i;
  }
}

// gather, index_select, scatter_add and max_pool2d_backward check their indices on the device
// and raise a bad one at the host's next wait, without a wait of their own (Note [Deferred
// device errors]); the device then goes on, and the error is raised once.
TEST_F(CudaKernels, BadIndicesAreRaisedAtTheNextWaitWithoutStallingTheOp) {
  const Device cuda = Device::cuda(), cpu = Device::cpu();
  manual_seed(4);
  const Tensor x = randn({4, 5}).to(cuda);
  const Tensor bad = tensor<int64_t>({0, 7, 1, 2}, {4, 1}).to(cuda);
  cuda::synchronize();
  cuda::reset_launch_stats();
  Tensor y = gather(x, 1, bad);
  Tensor z = index_select(x, 1, tensor<int64_t>({1, -1}).to(cuda));
  EXPECT_EQ(cuda::launch_stats().host_waits, 0u) << "gather and index_select must not wait";
  EXPECT_MG_ERROR(y.to(cpu), "[gather] index 7 is out of bounds for a dimension of size 5");
  EXPECT_NO_THROW(cuda::synchronize());  // raised once (index_select's -1 came second)
  const Tensor good = tensor<int64_t>({0, 4, 1, 2}, {4, 1});
  EXPECT_TRUE(allclose(gather(x, 1, good.to(cuda)), gather(x.to(cpu), 1, good), 0.0, 0.0));
  EXPECT_MG_ERROR(sum(index_select(x, 0, tensor<int64_t>({4}).to(cuda))).item<float>(),
                  "[gather] index 4 is out of bounds for a dimension of size 4");

  // scatter_add: the entries with good indices are added, the bad one skipped.
  const Tensor self = zeros({3, 4}).to(cuda);
  const Tensor index = tensor<int64_t>({0, 9, 2}, {3, 1}).to(cuda);
  cuda::reset_launch_stats();
  const Tensor s = scatter_add(self, 1, index, ones({3, 1}).to(cuda));
  EXPECT_EQ(cuda::launch_stats().host_waits, 0u) << "scatter_add must not wait";
  EXPECT_MG_ERROR(cuda::synchronize(), "[scatter_add] index 9 is out of bounds");
  EXPECT_EQ(s.to(cpu).to_vector<float>(), (std::vector<float>{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}));

  // max_pool2d_backward with an index outside the 2 x 2 input plane.
  const Tensor gy = ones({1, 1, 1, 2}).to(cuda);
  const Tensor idx = tensor<int64_t>({3, 4}, {1, 1, 1, 2}).to(cuda);
  cuda::reset_launch_stats();
  const Tensor gx = max_pool2d_backward(gy, idx, {1, 1, 2, 2});
  EXPECT_EQ(cuda::launch_stats().host_waits, 0u) << "max_pool2d_backward must not wait";
  EXPECT_MG_ERROR(gx.to(cpu), "[max_pool2d_backward] index 4 is out of range for an input plane");
  EXPECT_NO_THROW(cuda::synchronize());
}

// The fused cross-entropy on the GPU: values and derivatives as the CPU's, no host wait in the
// forward or the backward (the labels are checked by the kernel), a bad label raised at the
// next wait.
TEST_F(CudaKernels, CrossEntropyMatchesTheCpuWithoutHostWaits) {
  const Device cuda = Device::cuda(), cpu = Device::cpu();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    SCOPED_TRACE(dtype == DType::Float64 ? "float64" : "float32");
    const double tol = dtype == DType::Float64 ? 1e-12 : 1e-5;
    manual_seed(9);
    for (const Shape& shape : {Shape{25, 5}, Shape{7, 1500}}) {  // a warp per row, long rows
      const Tensor x = randn(shape, TensorOptions(dtype)) * 3.0;
      const Tensor t = randint(0, shape[1], {shape[0]});
      Tensor xc = x.clone().requires_grad_(true), xg = x.to(cuda).requires_grad_(true);
      const Tensor tg = t.to(cuda);
      cuda::synchronize();
      cuda::reset_launch_stats();
      const Tensor lg = nn::functional::cross_entropy(xg, tg);
      const Tensor gg = grad({lg}, {xg})[0];
      EXPECT_EQ(cuda::launch_stats().host_waits, 0u) << "cross_entropy must not wait";
      const Tensor lc = nn::functional::cross_entropy(xc, t);
      EXPECT_TRUE(allclose(lg, lc, tol, 0.0));
      EXPECT_TRUE(allclose(gg, grad({lc}, {xc})[0], tol, tol));
      // Second order: a Hessian-vector product through the recorded first derivative.
      const Tensor v = randn(shape, TensorOptions(dtype));
      auto hvp = [&](const Tensor& xx, const Tensor& tt, const Tensor& vv) {
        const Tensor g = grad({nn::functional::cross_entropy(xx, tt)}, {xx}, {}, true, true)[0];
        return grad({sum(g * vv)}, {xx})[0];
      };
      EXPECT_TRUE(allclose(hvp(xg, tg, v.to(cuda)), hvp(xc, t, v), tol, tol));
    }
  }
  const Tensor y = metagrad::cross_entropy_loss(zeros({3, 4}).to(cuda),
                                                tensor<int64_t>({0, 4, 1}, {3}).to(cuda));
  EXPECT_MG_ERROR(y.to(cpu), "[cross_entropy] target 4 is out of bounds for 4 classes");
  EXPECT_NO_THROW(cuda::synchronize());
}

// The fused softmax / log_softmax first derivatives (Note [CUDA softmax backward]) in each
// layout: a warp per row, a block per long row, a thread per column; against the CPU.
TEST_F(CudaKernels, SoftmaxBackwardMatchesTheCpu) {
  const Device cuda = Device::cuda();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const double tol = dtype == DType::Float64 ? 1e-13 : 1e-5;
    manual_seed(6);
    for (const auto& [shape, dim] : std::vector<std::pair<Shape, int64_t>>{
             {{33, 10}, 1}, {{3, 3000}, 1}, {{5, 40, 70}, 1}}) {
      SCOPED_TRACE(shape_str(shape));
      const Tensor x = randn(shape, TensorOptions(dtype)) * 3.0;
      const Tensor g = randn(shape, TensorOptions(dtype));
      const Tensor y = softmax(x, dim), ly = log_softmax(x, dim);
      EXPECT_TRUE(allclose(softmax_backward(g.to(cuda), y.to(cuda), dim),
                           softmax_backward(g, y, dim), tol, tol));
      EXPECT_TRUE(allclose(log_softmax_backward(g.to(cuda), ly.to(cuda), dim),
                           log_softmax_backward(g, ly, dim), tol, tol));
    }
  }
}

// nll_loss on the GPU: no host wait for its labels (gather checks them on the device), the
// CPU's values and gradients, and a bad label raised at the next wait.
TEST_F(CudaKernels, NllLossWaitsForNoLabelCheck) {
  const Device cuda = Device::cuda(), cpu = Device::cpu();
  manual_seed(4);
  const Tensor x = randn({12, 7}, TensorOptions(DType::Float64));
  const Tensor t = randint(0, 7, {12});
  Tensor xc = x.clone().requires_grad_(true), xg = x.to(cuda).requires_grad_(true);
  const Tensor tg = t.to(cuda);
  cuda::synchronize();
  cuda::reset_launch_stats();
  const Tensor lg = nn::functional::nll_loss(log_softmax(xg, 1), tg);
  const Tensor gg = grad({lg}, {xg})[0];
  EXPECT_EQ(cuda::launch_stats().host_waits, 0u) << "nll_loss must not wait";
  const Tensor lc = nn::functional::nll_loss(log_softmax(xc, 1), t);
  EXPECT_TRUE(allclose(lg, lc, 1e-12, 0.0));
  EXPECT_TRUE(allclose(gg, grad({lc}, {xc})[0], 1e-12, 1e-12));
  const Tensor bad = nn::functional::nll_loss(zeros({3, 4}).to(cuda),
                                              tensor<int64_t>({0, 4, 1}, {3}).to(cuda));
  EXPECT_MG_ERROR(bad.to(cpu), "[gather] index 4 is out of bounds for a dimension of size 4");
  EXPECT_NO_THROW(cuda::synchronize());
}

}  // namespace
