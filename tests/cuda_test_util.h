// Helpers shared by the CUDA test suites (tests/test_cuda_*.cpp, CTest label `cuda`): the skip
// that every test takes on a machine without a GPU, and an allclose that compares a tensor on
// any device with a reference and says where and by how much they differ.
#pragma once
#include <gtest/gtest.h>

#include <metagrad/metagrad.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace mg_cuda_test {

// Why the CUDA tests cannot run here, or "" when they can.
inline std::string no_cuda_reason() {
  if (metagrad::cuda_is_available()) return {};
#ifdef MG_WITH_CUDA
  return "no CUDA device: this build has CUDA support but no GPU is visible "
         "(cuda_device_count() == " +
         std::to_string(metagrad::cuda_device_count()) + ")";
#else
  return "no CUDA device: this build has no CUDA support (configured with MG_WITH_CUDA=OFF or "
         "without nvcc)";
#endif
}

// Every CUDA test case derives from this (or calls MG_SKIP_WITHOUT_CUDA in its SetUp).
#define MG_SKIP_WITHOUT_CUDA()                                    \
  do {                                                            \
    const std::string reason_ = ::mg_cuda_test::no_cuda_reason(); \
    if (!reason_.empty()) GTEST_SKIP() << reason_;                \
  } while (0)

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override { MG_SKIP_WITHOUT_CUDA(); }
};

inline std::string shape_string(const metagrad::Shape& s) {
  return metagrad::shape_str(s);
}

// |got - want| <= atol + rtol * |want| elementwise, with NaN where and only where `want` has
// NaN; shapes must be equal. `got` may live on any device (it is copied to the CPU, as
// float64). On failure the message names the worst element, its values and the count of bad
// elements.
inline ::testing::AssertionResult allclose(const metagrad::Tensor& got,
                                           const metagrad::Tensor& want, double rtol, double atol) {
  using metagrad::Device;
  using metagrad::DType;
  if (!got.defined() || !want.defined())
    return ::testing::AssertionFailure()
           << "undefined tensor (got " << (got.defined() ? "defined" : "undefined") << ", want "
           << (want.defined() ? "defined" : "undefined") << ")";
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << "shape " << shape_string(got.shape()) << " != expected "
                                         << shape_string(want.shape());
  metagrad::NoGradGuard ng;
  const std::vector<double> g =
      got.detach().to(Device::cpu()).to(DType::Float64).to_vector<double>();
  const std::vector<double> w =
      want.detach().to(Device::cpu()).to(DType::Float64).to_vector<double>();
  int64_t bad = 0, worst = -1;
  double worst_excess = 0;  // how far the worst element is beyond its tolerance
  for (size_t i = 0; i < g.size(); ++i) {
    const bool gn = std::isnan(g[i]), wn = std::isnan(w[i]);
    bool ok;
    double excess;
    if (gn || wn) {
      ok = gn && wn;
      excess = INFINITY;
    } else {
      // g == w first: equal infinities pass (their difference would be NaN)
      const double tol = atol + rtol * std::abs(w[i]);
      ok = g[i] == w[i] || std::abs(g[i] - w[i]) <= tol;
      excess = std::isfinite(g[i] - w[i]) ? std::abs(g[i] - w[i]) - tol : INFINITY;
    }
    if (ok) continue;
    ++bad;
    if (worst < 0 || excess > worst_excess) {
      worst = static_cast<int64_t>(i);
      worst_excess = excess;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << g.size() << " elements differ (rtol " << rtol << ", atol " << atol
         << "); worst at flat index " << worst << ": got " << g[static_cast<size_t>(worst)]
         << ", expected " << w[static_cast<size_t>(worst)] << " (shape "
         << shape_string(want.shape()) << ")";
}

}  // namespace mg_cuda_test
