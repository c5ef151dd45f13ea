// The one-pass statistics of kernels/online.h (logsumexp's running max and sum, var's shifted
// moments), which the CUDA softmax and reductions run on the GPU: tested here on the host,
// where the same MG_HD code compiles, against long-double two-pass references, with the
// elements cut into chunks and the chunks' states merged in random orders as GPU threads do.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/online.h"

namespace {

using namespace metagrad::kernels::online;

constexpr double kInf = std::numeric_limits<double>::infinity();

// The states of random consecutive chunks of x, merged in a random order of adjacent pairs.
template <typename State, typename Init, typename Step, typename Merge>
State chunked(const std::vector<double>& x, std::mt19937& gen, Init init, Step step, Merge merge) {
  std::vector<State> states;
  size_t i = 0;
  while (i < x.size() || states.empty()) {
    const size_t len = std::uniform_int_distribution<size_t>(0, 40)(gen);
    State s = init();
    for (size_t j = 0; j < len && i < x.size(); ++j, ++i) s = step(s, x[i]);
    states.push_back(s);
  }
  while (states.size() > 1) {
    const size_t k = std::uniform_int_distribution<size_t>(0, states.size() - 2)(gen);
    states[k] = merge(states[k], states[k + 1]);
    states.erase(states.begin() + static_cast<std::ptrdiff_t>(k) + 1);
  }
  return states[0];
}

template <typename T>
double lse_of(const std::vector<double>& x, std::mt19937& gen) {
  const LseState<T> s = chunked<LseState<T>>(
      x, gen, [] { return lse_init<T>(); },
      [](LseState<T> a, double v) { return lse_step(a, static_cast<T>(v)); },
      [](LseState<T> a, LseState<T> b) { return lse_merge(a, b); });
  return lse_finish(s).logsumexp();
}

double m2_of(const std::vector<double>& x, std::mt19937& gen) {
  return moments_m2(chunked<Moments>(
      x, gen, [] { return moments_init(); }, [](Moments a, double v) { return moments_step(a, v); },
      [](Moments a, Moments b) { return moments_merge(a, b); }));
}

long double lse_reference(const std::vector<double>& x) {
  long double m = -INFINITY, s = 0;
  for (double v : x) m = std::max<long double>(m, v);
  for (double v : x) s += std::exp(static_cast<long double>(v) - m);
  return std::log(s) + m;
}

long double m2_reference(const std::vector<double>& x) {
  long double mean = 0, m2 = 0;
  for (double v : x) mean += v;
  mean /= static_cast<long double>(x.size());
  for (double v : x) m2 += (v - mean) * (v - mean);
  return m2;
}

TEST(OnlineLogSumExp, MatchesTwoPassesWhateverTheChunksAndMergeOrder) {
  std::mt19937 gen(7);
  for (int n : {1, 2, 5, 31, 100, 1000, 4097}) {
    for (double scale : {1.0, 30.0, 500.0}) {
      std::normal_distribution<double> d(0.0, scale);
      std::vector<double> x(static_cast<size_t>(n));
      for (double& v : x) v = d(gen);
      const double ref = static_cast<double>(lse_reference(x));
      for (int rep = 0; rep < 5; ++rep) {
        EXPECT_NEAR(lse_of<double>(x, gen), ref, 1e-13 * std::max(1.0, std::fabs(ref)))
            << "n " << n << " scale " << scale;
        std::vector<double> xf(x.size());
        for (size_t i = 0; i < x.size(); ++i) xf[i] = static_cast<float>(x[i]);
        const double ref_f = static_cast<double>(lse_reference(xf));
        EXPECT_NEAR(lse_of<float>(xf, gen), ref_f, 1e-6 * std::max(1.0, std::fabs(ref_f)))
            << "float, n " << n << " scale " << scale;
      }
    }
  }
}

TEST(OnlineLogSumExp, SpecialValuesAsTheTwoPassRule) {
  std::mt19937 gen(3);
  const double nan = std::nan("");
  EXPECT_EQ(lse_of<double>({-kInf, -kInf, -kInf}, gen), -kInf);
  EXPECT_EQ(lse_of<double>({}, gen), -kInf);
  EXPECT_EQ(lse_of<double>({1.0, kInf, 2.0}, gen), kInf);
  EXPECT_EQ(lse_of<double>({kInf, 1.0, kInf, -kInf}, gen), kInf);
  EXPECT_EQ(lse_of<float>({kInf, kInf}, gen), kInf);
  EXPECT_TRUE(std::isnan(lse_of<double>({1.0, nan, 2.0}, gen)));
  EXPECT_TRUE(std::isnan(lse_of<double>({kInf, nan}, gen)));
  EXPECT_TRUE(std::isnan(lse_of<double>({nan, kInf}, gen)));
  EXPECT_TRUE(std::isnan(lse_of<float>({-kInf, nan}, gen)));
  // A -inf entry contributes exp(-inf) = 0.
  EXPECT_DOUBLE_EQ(lse_of<double>({0.0, -kInf}, gen), 0.0);
}

TEST(OnlineLogSumExp, MergeIsSymmetricBitwise) {
  std::mt19937 gen(11);
  std::normal_distribution<double> d(0.0, 10.0);
  for (int rep = 0; rep < 200; ++rep) {
    LseState<double> a = lse_init<double>(), b = lse_init<double>();
    for (int i = 0; i < rep % 7; ++i) a = lse_step(a, d(gen));
    for (int i = 0; i < rep % 5; ++i) b = lse_step(b, d(gen));
    const LseState<double> ab = lse_merge(a, b), ba = lse_merge(b, a);
    EXPECT_EQ(ab.m, ba.m);
    EXPECT_EQ(ab.s, ba.s);  // an xor butterfly relies on it
  }
}

TEST(ShiftedMoments, MatchTwoPassesFarFromZero) {
  std::mt19937 gen(5);
  for (int n : {1, 2, 3, 17, 256, 5000}) {
    for (double offset : {0.0, 1e3, 1e6, -1e8}) {
      std::normal_distribution<double> d(offset, 1.0);
      std::vector<double> x(static_cast<size_t>(n));
      for (double& v : x) v = d(gen);
      const double ref = static_cast<double>(m2_reference(x));
      for (int rep = 0; rep < 5; ++rep)
        EXPECT_NEAR(m2_of(x, gen), ref, 1e-10 * std::max(1.0, ref) + 1e-12)
            << "n " << n << " offset " << offset;
    }
  }
}

TEST(ShiftedMoments, SpecialCases) {
  std::mt19937 gen(9);
  EXPECT_EQ(m2_of({}, gen), 0.0);
  EXPECT_EQ(m2_of({4.5}, gen), 0.0);
  EXPECT_EQ(m2_of(std::vector<double>(1000, 1e8 + 0.25), gen), 0.0);  // exactly, not -tiny
  // Nearly constant rows never go negative (then sqrt would make std NaN).
  std::vector<double> x(999, 1e15);
  for (size_t i = 0; i < x.size(); i += 3) x[i] = std::nextafter(1e15, 2e15);
  EXPECT_GE(m2_of(x, gen), 0.0);
  EXPECT_TRUE(std::isnan(m2_of({1.0, kInf, 2.0}, gen)));
  EXPECT_TRUE(std::isnan(m2_of({kInf}, gen)));
  EXPECT_TRUE(std::isnan(m2_of({-kInf, kInf}, gen)));
  EXPECT_TRUE(std::isnan(m2_of({1.0, std::nan(""), 2.0}, gen)));
  EXPECT_DOUBLE_EQ(m2_of({1.0, 2.0, 3.0, 4.0}, gen), 5.0);
  // Finite values whose squared deviations overflow: +inf, as two passes give, not inf - inf.
  for (int rep = 0; rep < 5; ++rep) EXPECT_EQ(m2_of({1e200, -1e200, 3e199, -5e199}, gen), kInf);
}

}  // namespace
