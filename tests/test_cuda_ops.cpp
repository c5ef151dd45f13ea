// CUDA-vs-CPU agreement for every case of the op table (tests/op_table.h, DESIGN principle 9):
// the forward value, the first derivatives and, where the case has them, the second
// derivatives, in float64 and float32, on contiguous and non-contiguous inputs. The CPU is the
// oracle: test_autograd_ops.cpp checks its derivatives against finite differences, so a GPU
// that matches it is right too. The table is the same one, so a derivative rule without a case
// there (EveryDerivativeIsTested) is a derivative the GPU is not tested on either.
//
// One test per case, named by op; the four variants (layout x dtype) run inside it, so a GPU
// run starts one process per op rather than four. Every test skips without a GPU.
#include <gtest/gtest.h>

#include <metagrad/metagrad.h>

#include <cctype>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "op_table.h"

using namespace metagrad;
using namespace mg_op_table;

namespace {

struct Tolerance {
  double rtol, atol;
};

// float64: the two devices differ by summation order and an ulp or so in libm (exp, tan,
// erf); float32: the same in 24-bit arithmetic.
Tolerance tolerance(DType dt) {
  return dt == DType::Float64 ? Tolerance{1e-10, 1e-10} : Tolerance{1e-4, 1e-4};
}

// A copy of `t`'s values on `dev` in `dtype`, non-contiguous when `noncontig`: the reversed
// shape permuted back, as make() lays out inputs of two or more dims, or every other element
// of a buffer for 1-d inputs (which make() leaves contiguous), so the GPU runs its strided
// paths.
Tensor relayout(const Tensor& t, Device dev, DType dtype, bool noncontig) {
  NoGradGuard ng;
  const Shape& s = t.shape();
  const TensorOptions opts = TensorOptions().dtype(dtype).device(dev);
  Tensor r;
  if (noncontig && s.size() >= 2) {
    Shape rev(s.rbegin(), s.rend());
    std::vector<int64_t> perm(s.size());
    for (size_t i = 0; i < s.size(); ++i) perm[i] = static_cast<int64_t>(s.size() - 1 - i);
    r = empty(rev, opts).permute(perm);
  } else if (noncontig && s.size() == 1) {
    r = empty({s[0] * 2}, opts).slice(0, 0, s[0] * 2, 2);
  } else {
    r = empty(s, opts);
  }
  r.copy_(t.detach());
  return r;
}

// The same values on the two devices: the CPU side and the GPU side of one run.
struct Pair {
  Tensor cpu, gpu;
};

// `g` with every defined tensor checked to be on the GPU.
::testing::AssertionResult on_gpu(const std::vector<Tensor>& g) {
  for (size_t i = 0; i < g.size(); ++i)
    if (g[i].defined() && !g[i].device().is_cuda())
      return ::testing::AssertionFailure()
             << "result " << i << " is on " << g[i].device().str() << ", not on the GPU";
  return ::testing::AssertionSuccess();
}

// Compares two gradient lists: defined in the same places, close where defined.
void expect_grads_close(const std::vector<Tensor>& gpu, const std::vector<Tensor>& cpu,
                        const std::vector<std::string>& names, Tolerance tol, const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size());
  EXPECT_TRUE(on_gpu(gpu)) << what;
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_EQ(gpu[i].defined(), cpu[i].defined())
        << what << " w.r.t. " << names[i] << ": defined on one device only";
    if (!gpu[i].defined() || !cpu[i].defined()) continue;
    EXPECT_EQ(gpu[i].dtype(), cpu[i].dtype()) << what << " w.r.t. " << names[i];
    EXPECT_TRUE(mg_cuda_test::allclose(gpu[i], cpu[i], tol.rtol, tol.atol))
        << what << " w.r.t. " << names[i];
  }
}

// One variant of one case: inputs drawn on the CPU exactly as test_autograd_ops draws them
// (make(), seed 42), converted to `dtype` and copied to the GPU (strided in the
// non-contiguous variants, relayout()); then
//   forward:  f(x) on both devices;
//   first:    g_i = d/dx_i sum(f(x) * w), w a fixed random tensor (the same on both);
//   second:   d/d(x, w) sum_i sum(g_i * v_i), v_i fixed random tensors, where the case claims
//             second derivatives (the gradients w.r.t. w exercise the backward ops' own
//             derivatives on the GPU too).
void check_case(const OpCase& c, bool noncontig, DType dtype) {
  const Device gpu = Device::cuda();
  const Tolerance tol = tolerance(dtype);
  Generator gen(42);
  std::vector<Tensor> xc, xg;       // every input, CPU and GPU
  std::vector<Tensor> dc, dg;       // the differentiable ones
  std::vector<std::string> dnames;  // "x0", "x2", ...: positions in the case's input list
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const Input& spec = c.inputs[i];
    const Tensor x = make(spec, gen, noncontig);
    if (spec.fixed.defined()) {  // indices and masks: same dtype, just moved
      xc.push_back(x);
      xg.push_back(x.to(gpu));
      continue;
    }
    Tensor a = dtype == DType::Float64 ? x : relayout(x, Device::cpu(), dtype, noncontig);
    Tensor b = relayout(x, gpu, dtype, noncontig);
    if (spec.grad) {
      a.requires_grad_(true);
      b.requires_grad_(true);
      dc.push_back(a);
      dg.push_back(b);
      std::string name = "x";  // not "x" + to_string(i): GCC 12 warns falsely (-Wrestrict)
      name += std::to_string(i);
      dnames.push_back(name);
    }
    xc.push_back(a);
    xg.push_back(b);
  }
  ASSERT_EQ(xc[0].dtype(), xg[0].dtype());

  // ---- forward ----
  const Tensor yc = c.fn(xc);
  const Tensor yg = c.fn(xg);
  ASSERT_TRUE(yg.device().is_cuda()) << "the output is on " << yg.device().str();
  ASSERT_EQ(yg.dtype(), yc.dtype());
  ASSERT_TRUE(mg_cuda_test::allclose(yg, yc, tol.rtol, tol.atol)) << "forward";
  ASSERT_EQ(yg.requires_grad(), yc.requires_grad());
  if (!yc.requires_grad() || dc.empty()) return;

  // ---- first derivatives ----
  Generator wgen(7);
  Tensor wc, wg;
  {
    NoGradGuard ng;  // two independent leaves with the same values
    const Tensor w64 = randn(yc.shape(), DType::Float64, &wgen);
    wc = w64.to(yc.dtype()).clone();
    wg = w64.to(yc.dtype()).to(gpu);
  }
  wc.requires_grad_(c.second_order);
  wg.requires_grad_(c.second_order);
  const std::vector<Tensor> gc =
      grad({yc}, dc, {wc}, /*retain_graph=*/true, c.second_order, /*allow_unused=*/true);
  const std::vector<Tensor> gg =
      grad({yg}, dg, {wg}, /*retain_graph=*/true, c.second_order, /*allow_unused=*/true);
  expect_grads_close(gg, gc, dnames, tol, "first derivative");
  if (!c.second_order) return;

  // ---- second derivatives ----
  // A first gradient that does not depend on (x, w) (e.g. of a linear op w.r.t. its input,
  // which is w itself or constant) adds nothing; both devices must agree on which do.
  Generator vgen(11);
  std::vector<Tensor> terms_c, terms_g;
  for (size_t i = 0; i < gc.size(); ++i) {
    if (!gc[i].defined() || !gg[i].defined()) continue;
    EXPECT_EQ(gg[i].requires_grad(), gc[i].requires_grad())
        << "whether the first derivative w.r.t. " << dnames[i] << " is differentiable";
    const Tensor v64 = randn(gc[i].shape(), DType::Float64, &vgen);
    if (!gc[i].requires_grad() || !gg[i].requires_grad()) continue;
    terms_c.push_back(sum(gc[i] * v64.to(gc[i].dtype())));
    terms_g.push_back(sum(gg[i] * v64.to(gg[i].dtype()).to(gpu)));
  }
  if (terms_c.empty()) return;
  Tensor sc = terms_c[0], sg = terms_g[0];
  for (size_t k = 1; k < terms_c.size(); ++k) {
    sc = sc + terms_c[k];
    sg = sg + terms_g[k];
  }
  std::vector<Tensor> inc = dc, ing = dg;
  std::vector<std::string> names2 = dnames;
  inc.push_back(wc);
  ing.push_back(wg);
  names2.push_back("w (the output's cotangent)");
  const std::vector<Tensor> hc = grad({sc}, inc, {}, std::nullopt, false, /*allow_unused=*/true);
  const std::vector<Tensor> hg = grad({sg}, ing, {}, std::nullopt, false, /*allow_unused=*/true);
  expect_grads_close(hg, hc, names2, tol, "second derivative");
}

// The table's cases by index; test names are op names, with _2, _3 for repeated ops.
std::vector<size_t> case_indices() {
  std::vector<size_t> v(cases().size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = i;
  return v;
}

std::string case_test_name(const ::testing::TestParamInfo<size_t>& info) {
  const std::vector<OpCase> all = cases();
  std::map<std::string, int> seen;
  std::string name;
  for (size_t i = 0; i <= info.param; ++i) {
    const int n = ++seen[all[i].name];
    name = n == 1 ? all[i].name : all[i].name + "_" + std::to_string(n);
  }
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

class CudaOps : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override { MG_SKIP_WITHOUT_CUDA(); }
};

TEST_P(CudaOps, MatchesCpu) {
  const std::vector<OpCase> all = cases();
  const OpCase& c = all.at(GetParam());
  for (DType dtype : {DType::Float64, DType::Float32}) {
    for (bool noncontig : {false, true}) {
      const std::string variant = c.name + (noncontig ? ", non-contiguous" : ", contiguous") +
                                  (dtype == DType::Float64 ? ", float64" : ", float32");
      SCOPED_TRACE(variant);
      try {
        check_case(c, noncontig, dtype);
      } catch (const std::exception& e) {
        ADD_FAILURE() << variant << ": threw " << e.what();
      }
    }
  }
}

// cuDNN gets pointers that are only element-aligned when a convolution's input or weight is a
// contiguous slice at an odd offset (x[1:] of [3, 1, 5, 5] starts 100 bytes in), while the
// algorithm cache keys on shapes alone: every algorithm it picks must take such pointers.
TEST(CudaConv, ElementAlignedOperandsMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::Float32, DType::Float64}) {
    SCOPED_TRACE(dtype_name(dt));
    const Tolerance tol = tolerance(dt);
    const Tensor xf = randn({3, 1, 5, 5}, TensorOptions().dtype(dt));
    const Tensor wf = randn({3, 1, 3, 3}, TensorOptions().dtype(dt));
    const auto run = [&](Device dev) {
      Tensor x = xf.to(dev).requires_grad_(true), w = wf.to(dev).requires_grad_(true);
      // Offsets of 25 and 9 elements: 4- or 8-byte aligned, never 16.
      Tensor y = conv2d(x.slice(0, 1, 3), w.slice(0, 1, 3), {}, {.padding = {1, 1}});
      std::vector<Tensor> g = metagrad::grad({sum(mul(y, y))}, {x, w});
      return std::vector<Tensor>{y, g[0], g[1]};
    };
    const std::vector<Tensor> cpu = run(Device::cpu()), gpu = run(Device::cuda(0));
    const char* what[3] = {"forward", "input gradient", "weight gradient"};
    for (size_t i = 0; i < 3; ++i)
      EXPECT_TRUE(mg_cuda_test::allclose(gpu[i], cpu[i], tol.rtol, tol.atol)) << what[i];
  }
}

INSTANTIATE_TEST_SUITE_P(OpTable, CudaOps, ::testing::ValuesIn(case_indices()), case_test_name);

}  // namespace
