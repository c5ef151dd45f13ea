// Tests of the random tensors: Philox4x32-10 against Random123's published known-answer
// vectors, the stream contract (Note [Philox stream contract] in kernels/philox.h) recomputed
// here from raw Philox words, determinism across thread counts and strides, generator state
// save/restore, distribution sanity, dtypes/shapes and every error.
#include <gtest/gtest.h>
#include <metagrad/metagrad.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>
#include <thread>
#include <vector>

#include "kernels/philox.h"

using namespace metagrad;
namespace philox = metagrad::kernels::philox;

namespace {

// Runs f and checks it throws metagrad::Error whose message starts with "[op]".
template <typename F>
void expect_error(const char* op, F f) {
  try {
    f();
    ADD_FAILURE() << "expected an error from [" << op << "]";
  } catch (const Error& e) {
    const std::string want = std::string("[") + op + "]";
    EXPECT_EQ(std::string(e.what()).rfind(want, 0), 0u) << e.what();
  }
}

// The raw Philox block c of `seed`, built here from the round function (checked by the KATs).
philox::Block raw_block(uint64_t seed, uint64_t c) {
  return philox::philox4x32<10>({{static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0, 0}},
                                {{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}});
}

// Statistics in double over a tensor's values.
struct Stats {
  double mean = 0, var = 0, min = 0, max = 0;
};
template <typename T>
Stats stats_of(const std::vector<T>& v) {
  Stats s;
  double sum = 0;
  s.min = s.max = static_cast<double>(v[0]);
  for (T x : v) {
    sum += static_cast<double>(x);
    s.min = std::min(s.min, static_cast<double>(x));
    s.max = std::max(s.max, static_cast<double>(x));
  }
  s.mean = sum / static_cast<double>(v.size());
  double ss = 0;
  for (T x : v) ss += (static_cast<double>(x) - s.mean) * (static_cast<double>(x) - s.mean);
  s.var = ss / static_cast<double>(v.size() - 1);
  return s;
}

// Restores the OpenMP thread count after a test changes it.
struct ThreadsGuard {
  int prev = omp_get_max_threads();
  ~ThreadsGuard() { omp_set_num_threads(prev); }
};

template <typename T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

}  // namespace

// ---- Philox4x32-10 known answers (Random123 kat_vectors) --------------------------------

TEST(Philox, KnownAnswerVectors) {
  struct Kat {
    philox::Block ctr;
    philox::Key key;
    philox::Block want;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, {{0, 0}}, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
       {{0xffffffff, 0xffffffff}},
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       {{0xa4093822, 0x299f31d0}},
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& k : kats) {
    const philox::Block got = philox::philox4x32<10>(k.ctr, k.key);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.w[i], k.want.w[i]) << "word " << i;
  }
}

TEST(Philox, BlockUsesSeedAsKeyAndIndexAsCounter) {
  const uint64_t seed = 0x299f31d0a4093822ull, c = 0x85a308d3243f6a88ull;
  const philox::Block b = philox::block(seed, c);
  // Same key and low counter words as the third KAT, but counter words 2-3 are zero.
  const philox::Block r =
      philox::philox4x32<10>({{0x243f6a88, 0x85a308d3, 0, 0}}, {{0xa4093822, 0x299f31d0}});
  for (int i = 0; i < 4; ++i) EXPECT_EQ(b.w[i], r.w[i]);
}

TEST(Philox, Conversions) {
  EXPECT_EQ(philox::to_float01(0), 0.0f);
  EXPECT_EQ(philox::to_float01(0xffffffffu), 1.0f - 0x1p-24f);  // largest value below 1
  EXPECT_EQ(philox::to_float01(0x80000000u), 0.5f);
  EXPECT_EQ(philox::to_double01(0, 0), 0.0);
  EXPECT_EQ(philox::to_double01(0xffffffffu, 0xffffffffu), 1.0 - 0x1p-53);
  EXPECT_EQ(philox::to_double01(0, 0x80000000u), 0.5);
  EXPECT_EQ(philox::to_double01_32(0xffffffffu), 1.0 - 0x1p-32);
  // uniform_in folds a rounded-up upper bound back onto the lower one.
  EXPECT_EQ(philox::uniform_in(1.0f - 0x1p-24f, 1.0f, 2.0f), 1.0f);  // 2 - 2^-23 rounds to 2
  EXPECT_LT(philox::uniform_in(1.0f - 0x1p-24f, 0.0f, 3.0f), 3.0f);
  double z0, z1;
  philox::box_muller(std::exp(-0.5), 0.0, z0, z1);  // r = 1, angle 0
  EXPECT_NEAR(z0, 1.0, 1e-15);
  EXPECT_NEAR(z1, 0.0, 1e-15);
}

// ---- the stream contract, recomputed from raw words ---------------------------------------

TEST(RandomContract, UniformFloat32) {
  Generator g(1234);
  g.set_offset(7);
  const int64_t n = 23;
  const auto v = rand({n}, {}, &g).to_vector<float>();
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t w = raw_block(1234, 7 + i / 4).w[i % 4];
    EXPECT_EQ(v[i], static_cast<float>(w >> 8) / 16777216.0f) << i;
  }
  EXPECT_EQ(g.offset(), 7u + 6u);  // ceil(23 / 4) blocks
}

TEST(RandomContract, UniformFloat64) {
  Generator g(99);
  const int64_t n = 9;
  const auto v = rand({n}, DType::Float64, &g).to_vector<double>();
  for (int64_t i = 0; i < n; ++i) {
    const philox::Block b = raw_block(99, i / 2);
    const int j = static_cast<int>(i % 2);
    const uint64_t x = (static_cast<uint64_t>(b.w[2 * j + 1]) << 32) | b.w[2 * j];
    EXPECT_EQ(v[i], std::ldexp(static_cast<double>(x >> 11), -53)) << i;
  }
  EXPECT_EQ(g.offset(), 5u);
}

TEST(RandomContract, NormalFloat32AndFloat64) {
  const double two_pi = 2.0 * std::acos(-1.0);
  Generator g(5);
  const auto f = randn({11}, {}, &g).to_vector<float>();
  for (int64_t i = 0; i < 11; ++i) {
    const philox::Block b = raw_block(5, i / 4);
    const int p = static_cast<int>(i % 4) / 2;
    const double u1 = 1.0 - b.w[2 * p] / 4294967296.0, u2 = b.w[2 * p + 1] / 4294967296.0;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double z = i % 2 == 0 ? r * std::cos(two_pi * u2) : r * std::sin(two_pi * u2);
    EXPECT_EQ(f[i], static_cast<float>(z)) << i;
  }
  EXPECT_EQ(g.offset(), 3u);
  const uint64_t start = g.offset();
  const auto d = randn({5}, DType::Float64, &g).to_vector<double>();
  for (int64_t i = 0; i < 5; ++i) {
    const philox::Block b = raw_block(5, start + i / 2);
    auto u53 = [](uint32_t lo, uint32_t hi) {
      return std::ldexp(static_cast<double>(((static_cast<uint64_t>(hi) << 32) | lo) >> 11), -53);
    };
    const double u1 = 1.0 - u53(b.w[0], b.w[1]), u2 = u53(b.w[2], b.w[3]);
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double z = i % 2 == 0 ? r * std::cos(two_pi * u2) : r * std::sin(two_pi * u2);
    EXPECT_EQ(d[i], z) << i;
  }
  EXPECT_EQ(g.offset(), start + 3);
}

TEST(RandomContract, RandintAndBernoulli) {
  Generator g(77);
  const auto a = randint(-5, 12, {10}, DType::Int64, &g).to_vector<int64_t>();
  for (int64_t i = 0; i < 10; ++i)
    EXPECT_EQ(a[i], -5 + static_cast<int64_t>(raw_block(77, i / 4).w[i % 4] % 17u)) << i;
  EXPECT_EQ(g.offset(), 3u);
  // A range above 2^32 takes 64 bits per element, two per block.
  const uint64_t range = (uint64_t{1} << 40) + 3;
  const auto b =
      randint(7, 7 + static_cast<int64_t>(range), {5}, DType::Int64, &g).to_vector<int64_t>();
  for (int64_t i = 0; i < 5; ++i) {
    const philox::Block w = raw_block(77, 3 + i / 2);
    const int j = static_cast<int>(i % 2);
    const uint64_t x = (static_cast<uint64_t>(w.w[2 * j + 1]) << 32) | w.w[2 * j];
    EXPECT_EQ(b[i], 7 + static_cast<int64_t>(x % range)) << i;
  }
  EXPECT_EQ(g.offset(), 6u);
  const auto c = bernoulli({9}, 0.37, {}, &g).to_vector<float>();
  for (int64_t i = 0; i < 9; ++i) {
    const double u = raw_block(77, 6 + i / 4).w[i % 4] / 4294967296.0;
    EXPECT_EQ(c[i], u < 0.37 ? 1.0f : 0.0f) << i;
  }
  EXPECT_EQ(g.offset(), 9u);
}

TEST(RandomContract, PrefixProperty) {
  // Element i depends on (seed, offset, i) only, so a shorter draw is a prefix of a longer one.
  Generator g1(3), g2(3);
  const auto big = randn({100001}, {}, &g1).to_vector<float>();
  const auto small = randn({37}, {}, &g2).to_vector<float>();
  EXPECT_TRUE(std::equal(small.begin(), small.end(), big.begin()));
}

TEST(RandomContract, StridedOutputGetsRowMajorStreamPositions) {
  // A transposed 3-d view (no coalescing possible) filled in place must hold, in row-major
  // order of its own shape, exactly what a contiguous draw of that shape holds.
  for (DType dt : {DType::Float32, DType::Float64}) {
    Tensor base = zeros({30, 40, 50}, dt);
    Tensor v = base.permute({2, 0, 1});  // shape [50, 30, 40]
    Generator g1(11), g2(11);
    uniform_(v, -2.0, 3.0, &g1);
    Tensor ref = empty({50, 30, 40}, dt);
    uniform_(ref, -2.0, 3.0, &g2);
    EXPECT_TRUE(bitwise_equal(v.to_vector<double>(), ref.to_vector<double>()));
    EXPECT_EQ(g1.offset(), g2.offset());
    normal_(v, 1.0, 2.0, &g1);
    normal_(ref, 1.0, 2.0, &g2);
    EXPECT_TRUE(bitwise_equal(v.to_vector<double>(), ref.to_vector<double>()));
  }
  // Sliced with a step: only the view's elements change.
  Tensor x = zeros({10, 10});
  Tensor s = x.slice(1, 1, 10, 3);  // columns 1, 4, 7
  Generator g1(4), g2(4);
  uniform_(s, 5.0, 6.0, &g1);
  const auto want = rand({10, 3}, {}, &g2).to_vector<float>();
  const auto all = x.to_vector<float>();
  for (int r = 0; r < 10; ++r)
    for (int c = 0; c < 10; ++c) {
      if (c % 3 == 1) {
        const float u = want[r * 3 + c / 3];
        EXPECT_EQ(all[r * 10 + c], 5.0f + 1.0f * u);
      } else {
        EXPECT_EQ(all[r * 10 + c], 0.0f);
      }
    }
}

// ---- determinism ------------------------------------------------------------------------

TEST(RandomDeterminism, IndependentOfThreadCount) {
  ThreadsGuard guard;
  auto draw_all = [] {
    Generator g(2024);
    std::vector<std::vector<double>> out;
    out.push_back(rand({100003}, {}, &g).to_vector<double>());
    out.push_back(rand({50001}, DType::Float64, &g).to_vector<double>());
    out.push_back(randn({100003}, {}, &g).to_vector<double>());
    out.push_back(randn({50001}, DType::Float64, &g).to_vector<double>());
    out.push_back(randint(-100, 100, {100003}, DType::Int64, &g).to_vector<double>());
    out.push_back(randint(0, int64_t{1} << 50, {50001}, DType::Int64, &g).to_vector<double>());
    out.push_back(bernoulli({100003}, 0.25, {}, &g).to_vector<double>());
    out.push_back(bernoulli(rand({300, 400}, {}, &g).t(), &g).to_vector<double>());
    out.push_back(randperm(70001, DType::Int64, &g).to_vector<double>());
    Tensor t = zeros({60, 70, 80}).permute({1, 2, 0});
    normal_(t, 0.5, 3.0, &g);
    out.push_back(t.to_vector<double>());
    out.push_back({static_cast<double>(g.offset())});
    return out;
  };
  omp_set_num_threads(1);
  const auto one = draw_all();
  omp_set_num_threads(2);
  const auto two = draw_all();
  omp_set_num_threads(3);
  const auto three = draw_all();
  ASSERT_EQ(one.size(), two.size());
  for (size_t k = 0; k < one.size(); ++k) {
    EXPECT_TRUE(bitwise_equal(one[k], two[k])) << "draw " << k;
    EXPECT_TRUE(bitwise_equal(one[k], three[k])) << "draw " << k;
  }
}

TEST(RandomDeterminism, SeedsAndSuccessiveDraws) {
  Generator a(1), b(1), c(2);
  const auto xa = rand({1000}, {}, &a).to_vector<float>();
  const auto xb = rand({1000}, {}, &b).to_vector<float>();
  const auto xc = rand({1000}, {}, &c).to_vector<float>();
  EXPECT_EQ(xa, xb);
  EXPECT_NE(xa, xc);
  const auto ya = rand({1000}, {}, &a).to_vector<float>();
  EXPECT_NE(xa, ya);  // the offset moved on
  a.manual_seed(1);
  EXPECT_EQ(a.offset(), 0u);
  EXPECT_EQ(rand({1000}, {}, &a).to_vector<float>(), xa);
}

TEST(RandomDeterminism, StateSaveAndRestore) {
  Generator g(42);
  (void)randn({17}, {}, &g);
  const GeneratorState saved = g.get_state();
  EXPECT_EQ(saved.seed, 42u);
  EXPECT_EQ(saved.offset, 5u);
  const auto a = randn({100}, {}, &g).to_vector<float>();
  const auto b = randint(0, 10, {50}, DType::Int64, &g).to_vector<int64_t>();
  // Later draws on a fresh generator, restored from the saved state, replay the sequence.
  Generator h(7);
  h.set_state(saved);
  EXPECT_EQ(h.get_state(), saved);
  EXPECT_EQ(randn({100}, {}, &h).to_vector<float>(), a);
  EXPECT_EQ(randint(0, 10, {50}, DType::Int64, &h).to_vector<int64_t>(), b);
  EXPECT_EQ(h.get_state(), g.get_state());
  // Copying a generator copies its state; the two then advance independently.
  Generator k = g;
  EXPECT_EQ(k.get_state(), g.get_state());
  (void)rand({4}, {}, &k);
  EXPECT_NE(k.offset(), g.offset());
}

TEST(RandomDeterminism, DefaultGeneratorAndManualSeed) {
  manual_seed(123);
  EXPECT_EQ(default_generator().seed(), 123u);
  EXPECT_EQ(default_generator().offset(), 0u);
  const auto a = rand({64}).to_vector<float>();
  const auto b = randn({64}).to_vector<float>();
  manual_seed(123);
  EXPECT_EQ(rand({64}).to_vector<float>(), a);
  EXPECT_EQ(randn({64}).to_vector<float>(), b);
  Generator g(123);  // an explicit generator with the same seed gives the same stream
  EXPECT_EQ(rand({64}, {}, &g).to_vector<float>(), a);
  EXPECT_EQ(Generator().seed(), Generator::kDefaultSeed);
}

TEST(RandomDeterminism, ReserveIsThreadSafe) {
  Generator g(0);
  constexpr int kThreads = 4, kPer = 2000;
  std::vector<std::vector<uint64_t>> starts(kThreads);
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) starts[t].push_back(g.reserve(3));
    });
  for (auto& th : pool) th.join();
  std::vector<uint64_t> all;
  for (auto& s : starts) all.insert(all.end(), s.begin(), s.end());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], 3 * i);  // disjoint, no gaps
  EXPECT_EQ(g.offset(), 3u * kThreads * kPer);
}

// ---- distributions ------------------------------------------------------------------------

TEST(RandomDistribution, Uniform) {
  const double n = 1e6;
  Generator g(8);
  for (DType dt : {DType::Float32, DType::Float64}) {
    const auto v = rand({1000000}, dt, &g).to_vector<double>();
    const Stats s = stats_of(v);
    // Standard errors: mean sqrt(1/12 / n); variance sqrt((1/80 - 1/144) / n).
    EXPECT_NEAR(s.mean, 0.5, 5 * std::sqrt(1.0 / 12 / n));
    EXPECT_NEAR(s.var, 1.0 / 12, 5 * std::sqrt((1.0 / 80 - 1.0 / 144) / n));
    EXPECT_GE(s.min, 0.0);
    EXPECT_LT(s.max, 1.0);
    // Neighbours (same block and across blocks) are uncorrelated: lag-1 correlation ~ 0.
    double c = 0;
    for (size_t i = 1; i < v.size(); ++i) c += (v[i] - 0.5) * (v[i - 1] - 0.5);
    EXPECT_NEAR(c / (n - 1) * 12.0, 0.0, 5 / std::sqrt(n));
    // Ten equal bins: each count within 5 standard errors of n / 10.
    std::vector<double> bins(10, 0);
    for (double x : v) bins[static_cast<size_t>(x * 10)] += 1;
    for (double b : bins) EXPECT_NEAR(b, n / 10, 5 * std::sqrt(n * 0.1 * 0.9));
  }
  Tensor t = empty({1000000}, DType::Float64);
  uniform_(t, -3.0, 5.0, &g);
  const Stats s = stats_of(t.to_vector<double>());
  EXPECT_NEAR(s.mean, 1.0, 5 * 8 * std::sqrt(1.0 / 12 / n));
  EXPECT_GE(s.min, -3.0);
  EXPECT_LT(s.max, 5.0);
}

TEST(RandomDistribution, Normal) {
  const double n = 1e6;
  Generator g(9);
  for (DType dt : {DType::Float32, DType::Float64}) {
    const auto v = randn({1000000}, dt, &g).to_vector<double>();
    const Stats s = stats_of(v);
    EXPECT_NEAR(s.mean, 0.0, 5 / std::sqrt(n));
    EXPECT_NEAR(s.var, 1.0, 5 * std::sqrt(2.0 / n));
    // P(|z| < 1) = erf(1 / sqrt 2); and the pair members (cos, sin) are uncorrelated.
    const double p1 = std::erf(1.0 / std::sqrt(2.0));
    double in1 = 0, pair = 0;
    for (double x : v) in1 += std::abs(x) < 1.0;
    for (size_t i = 0; i + 1 < v.size(); i += 2) pair += v[i] * v[i + 1];
    EXPECT_NEAR(in1 / n, p1, 5 * std::sqrt(p1 * (1 - p1) / n));
    EXPECT_NEAR(pair / (n / 2), 0.0, 5 / std::sqrt(n / 2));
  }
  Tensor t = empty({1000000});
  normal_(t, -2.0, 0.5, &g);
  const Stats s = stats_of(t.to_vector<float>());
  EXPECT_NEAR(s.mean, -2.0, 5 * 0.5 / std::sqrt(n));
  EXPECT_NEAR(s.var, 0.25, 5 * 0.25 * std::sqrt(2.0 / n));
}

TEST(RandomDistribution, Randint) {
  Generator g(10);
  const int64_t low = -3, high = 5, n = 400000;
  const auto v = randint(low, high, {n}, DType::Int64, &g).to_vector<int64_t>();
  std::vector<double> count(high - low, 0);
  for (int64_t x : v) {
    ASSERT_GE(x, low);
    ASSERT_LT(x, high);  // never high
    count[x - low] += 1;
  }
  const double p = 1.0 / (high - low);
  for (double c : count) EXPECT_NEAR(c, n * p, 5 * std::sqrt(n * p * (1 - p)));
  // A range above 2^32 and the full int64 range.
  const auto big = randint(0, int64_t{1} << 40, {100000}, DType::Int64, &g).to_vector<int64_t>();
  const Stats s = stats_of(big);
  EXPECT_GE(s.min, 0.0);
  EXPECT_LT(s.max, std::ldexp(1.0, 40));
  EXPECT_NEAR(s.mean / std::ldexp(1.0, 40), 0.5, 5 * std::sqrt(1.0 / 12 / 1e5));
  const int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  const auto full = randint(lo, hi, {1000}, DType::Int64, &g).to_vector<int64_t>();
  int64_t negative = 0;
  for (int64_t x : full) {
    EXPECT_LT(x, hi);
    negative += x < 0;
  }
  EXPECT_GT(negative, 400);
  EXPECT_LT(negative, 600);
  // randint(high, shape) is randint(0, high, shape).
  const auto w = randint(3, {1000}, DType::Int32, &g).to_vector<int32_t>();
  EXPECT_EQ(std::set<int32_t>(w.begin(), w.end()), (std::set<int32_t>{0, 1, 2}));
}

TEST(RandomDistribution, Bernoulli) {
  Generator g(12);
  const double n = 1e6;
  const Stats s = stats_of(bernoulli({1000000}, 0.3, {}, &g).to_vector<float>());
  EXPECT_NEAR(s.mean, 0.3, 5 * std::sqrt(0.3 * 0.7 / n));
  EXPECT_EQ(s.min, 0.0);
  EXPECT_EQ(s.max, 1.0);
  Tensor p = full({1000000}, 0.8, DType::Float64);
  Tensor b = bernoulli(p, &g);
  EXPECT_EQ(b.dtype(), DType::Float64);
  EXPECT_NEAR(stats_of(b.to_vector<double>()).mean, 0.8, 5 * std::sqrt(0.8 * 0.2 / n));
  // p = 0 never fires, p = 1 always does; p given as an expanded (stride 0) view.
  Tensor p01 = tensor({0.0f, 1.0f}).expand({500, 2});
  const auto e = bernoulli(p01, &g).to_vector<float>();
  for (size_t i = 0; i < e.size(); ++i) EXPECT_EQ(e[i], i % 2 == 0 ? 0.0f : 1.0f);
  // Per-element probabilities are honoured: rows with p = 0.1 and p = 0.9.
  Tensor rows = tensor({0.1, 0.9}).reshape({2, 1}).expand({2, 100000});
  const auto r = bernoulli(rows, &g).to_vector<double>();
  const double m0 = std::accumulate(r.begin(), r.begin() + 100000, 0.0) / 1e5;
  const double m1 = std::accumulate(r.begin() + 100000, r.end(), 0.0) / 1e5;
  EXPECT_NEAR(m0, 0.1, 5 * std::sqrt(0.09 / 1e5));
  EXPECT_NEAR(m1, 0.9, 5 * std::sqrt(0.09 / 1e5));
}

TEST(RandomDistribution, Randperm) {
  Generator g(13);
  for (int64_t n : {0, 1, 2, 7, 1000, 100000}) {
    auto v = randperm(n, DType::Int64, &g).to_vector<int64_t>();
    std::vector<int64_t> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(sorted[i], i);
    if (n >= 1000) {  // not the identity
      int64_t fixed = 0;
      for (int64_t i = 0; i < n; ++i) fixed += v[i] == i;
      EXPECT_LT(fixed, 10);
    }
  }
  Tensor p = randperm(10, DType::Int32, &g);
  EXPECT_EQ(p.dtype(), DType::Int32);
  Generator a(5), b(5);
  EXPECT_EQ(randperm(50, DType::Int64, &a).to_vector<int64_t>(),
            randperm(50, DType::Int64, &b).to_vector<int64_t>());
}

// ---- shapes, dtypes, autograd -------------------------------------------------------------

TEST(RandomShapes, ShapesDtypesAndLeaves) {
  Generator g(14);
  Tensor a = rand({2, 3}, {}, &g);
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_EQ(a.dtype(), DType::Float32);
  EXPECT_EQ(randn({4}, DType::Float64, &g).dtype(), DType::Float64);
  EXPECT_EQ(randint(0, 5, {3}, {}, &g).dtype(), DType::Float32);  // options as given
  EXPECT_EQ(randint(0, 5, {3}, DType::Int64, &g).dtype(), DType::Int64);
  EXPECT_EQ(randint(0, 5, {3}).dtype(), DType::Int64);
  EXPECT_EQ(bernoulli({3}, 0.5, DType::Bool, &g).dtype(), DType::Bool);
  const auto u8 = randint(0, 256, {1000}, DType::UInt8, &g).to_vector<uint8_t>();
  EXPECT_EQ(*std::max_element(u8.begin(), u8.end()), 255);  // whole range reachable
  const auto bl = randint(0, 2, {100}, DType::Bool, &g).to_vector<bool>();
  EXPECT_TRUE(std::count(bl.begin(), bl.end(), true) > 10);
  // 0-d and empty.
  Tensor s = rand({}, {}, &g);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  const uint64_t off = g.offset();
  Tensor e = randn({0, 3}, {}, &g);
  EXPECT_EQ(e.shape(), (Shape{0, 3}));
  EXPECT_EQ(g.offset(), off);  // nothing drawn
  Tensor ee = empty({0});
  uniform_(ee, 0, 1, &g);
  normal_(ee, 0, 1, &g);
  EXPECT_EQ(bernoulli(ee, &g).numel(), 0);
  // Factories make leaves; requires_grad only when asked.
  EXPECT_FALSE(a.requires_grad());
  Tensor r = randn({3}, TensorOptions().requires_grad(), &g);
  EXPECT_TRUE(r.requires_grad());
  EXPECT_TRUE(r.is_leaf());
  Tensor bp = bernoulli(rand({3}, TensorOptions().requires_grad(), &g), &g);
  EXPECT_FALSE(bp.requires_grad());
  // In-place fills bump the version counter (autograd's check for saved tensors).
  Tensor v = zeros({3});
  const uint64_t ver = v.version();
  uniform_(v);
  EXPECT_GT(v.version(), ver);
  // A parameter is initialised under NoGradGuard.
  Tensor w = zeros({3}, TensorOptions().requires_grad());
  {
    NoGradGuard ng;
    normal_(w, 0.0, 0.1, &g);
  }
  EXPECT_TRUE(w.requires_grad());
}

TEST(RandomErrors, BadArguments) {
  Generator g(15);
  expect_error("rand", [&] { rand({2}, DType::Int64, &g); });
  expect_error("rand", [&] { rand({2}, DType::Bool, &g); });
  expect_error("randn", [&] { randn({2}, DType::Int32, &g); });
  expect_error("rand", [&] { rand({2, -1}, {}, &g); });
  expect_error("randint", [&] { randint(5, 5, {2}, DType::Int64, &g); });
  expect_error("randint", [&] { randint(6, 5, {2}, DType::Int64, &g); });
  expect_error("randint", [&] { randint(0, 0, {2}); });
  expect_error("randint", [&] { randint(-1, 10, {2}, DType::UInt8, &g); });
  expect_error("randint", [&] { randint(0, 257, {2}, DType::UInt8, &g); });
  expect_error("randint", [&] { randint(0, (int64_t{1} << 31) + 1, {2}, DType::Int32, &g); });
  EXPECT_NO_THROW(randint(0, int64_t{1} << 31, {2}, DType::Int32));  // high is exclusive
  expect_error("randint", [&] { randint(0, 3, {2}, DType::Bool, &g); });
  expect_error("randint", [&] { randint(0, (int64_t{1} << 24) + 2, {2}, DType::Float32, &g); });
  expect_error("bernoulli", [&] { bernoulli({2}, 1.5, {}, &g); });
  expect_error("bernoulli", [&] { bernoulli({2}, -0.1, {}, &g); });
  expect_error("bernoulli", [&] { bernoulli({2}, std::nan(""), {}, &g); });
  expect_error("bernoulli", [&] { bernoulli(tensor({0.5f, 1.5f}), &g); });
  expect_error("bernoulli", [&] { bernoulli(tensor({0.5, -0.5}), &g); });
  expect_error("bernoulli", [&] { bernoulli(tensor({0.5f, std::nanf("")}), &g); });
  expect_error("bernoulli", [&] { bernoulli(tensor({int64_t{0}, int64_t{1}}), &g); });
  expect_error("bernoulli", [&] { bernoulli(Tensor(), &g); });
  expect_error("randperm", [&] { randperm(-1); });
  expect_error("randperm", [&] { randperm(300, DType::UInt8); });
  Tensor i = zeros({3}, DType::Int64);
  expect_error("uniform_", [&] { uniform_(i); });
  expect_error("normal_", [&] { normal_(i); });
  Tensor f = zeros({3});
  expect_error("uniform_", [&] { uniform_(f, 1.0, 0.0); });
  expect_error("uniform_", [&] { uniform_(f, 0.0, INFINITY); });
  expect_error("uniform_", [&] { uniform_(f, -3e38, 3e38); });  // width overflows float
  expect_error("normal_", [&] { normal_(f, 0.0, -1.0); });
  expect_error("normal_", [&] { normal_(f, NAN, 1.0); });
  Tensor expanded = zeros({1}).expand({4});
  expect_error("uniform_", [&] { uniform_(expanded); });
  Tensor leaf = zeros({3}, TensorOptions().requires_grad());
  expect_error("uniform_", [&] { uniform_(leaf); });
  expect_error("normal_", [&] { normal_(leaf); });
  Tensor undefined;
  expect_error("uniform_", [&] { uniform_(undefined); });
  // Calls refused by their argument checks drew nothing. (bernoulli(p) checks p while it
  // draws: a refused p has used its blocks.)
  EXPECT_EQ(g.offset(), 3u);
}
