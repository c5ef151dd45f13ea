// Philox4x32-10, the counter-based random number generator of Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3" (SC'11, the Random123 library), and the conversions from its
// 32-bit words to uniform, normal, integer and Bernoulli values. Header-only and MG_HD, so the
// CPU loops (kernels/cpu/random.cpp) and the CUDA kernels compute the same numbers from the
// same functions.
//
// Note [Philox stream contract]
// -----------------------------
// A generator state is (seed, offset). Philox maps a 128-bit counter and a 64-bit key to 128
// random bits, a "block" of four uint32 words w0..w3:
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (c & 0xffffffff, c >> 32, 0, 0)  for block number c (a uint64, wraps mod 2^64)
// A draw of n elements that starts at `offset` takes K elements from each block: element i
// (the i-th element in row-major order of the output's shape, whatever its strides) reads
// block c = offset + i / K, slot j = i % K, and nothing else. The draw consumes
// ceil(n / K) blocks: the generator's offset advances by that much (Generator::reserve), so
// the offset counts blocks, not elements. Element i's value is therefore a function of
// (seed, offset, i) only: not of thread count, chunking, or device.
//
//   what                         K   element in slot j of block (w0, w1, w2, w3)
//   uniform float32 [0,1)        4   u = (w_j >> 8) * 2^-24
//   uniform float64 [0,1)        2   u = (((w_{2j+1} << 32) | w_{2j}) >> 11) * 2^-53
//   uniform_(a, b), dtype T          v = T(a) + (T(b) - T(a)) * u, each op rounded in T (no
//                                    FMA); v == T(b) (rounding) is replaced by T(a), so v < b
//   normal float32               4   pair p = j / 2 from 32-bit uniforms in double:
//                                    u1 = 1 - w_{2p} * 2^-32 in (0, 1], u2 = w_{2p+1} * 2^-32
//   normal float64               2   pair from 53-bit uniforms: u1 = 1 - U(w0, w1),
//                                    u2 = U(w2, w3), U as in "uniform float64"
//     both: r = sqrt(-2 log u1), t = 2 pi u2 (double); the pair is (r cos t, r sin t): even
//     j (float32) / j = 0 (float64) takes the cosine, the other the sine. normal_(mean, std)
//     is T(mean + std * z) in double (no FMA), so randn is T(z).
//   randint [low, high)          4   range = high - low (as uint64) <= 2^32: low + w_j % range
//                                2   range > 2^32: low + ((w_{2j+1} << 32) | w_{2j}) % range
//   bernoulli(p), any p dtype    4   1 if w_j * 2^-32 < p (in double) else 0
//   randperm(n)                  2   key_i = (w_{2j+1} << 32) | w_{2j}; the permutation is
//                                    0..n-1 stably sorted by key (ties keep index order)
//
// Uniforms, randint and bernoulli are exact integer / correctly rounded arithmetic: a CUDA
// kernel that follows this note produces bit-identical values. Normals go through log, cos
// and sin, which CUDA's libdevice and glibc round differently by an ulp or so: float32
// normals are computed in double and rounded once, so they agree except in the rare case
// (about 1e-8 per element) where the double results straddle a float rounding boundary;
// float64 normals agree to a few ulp.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/hd.h"

namespace metagrad::kernels::philox {

inline constexpr uint32_t kM0 = 0xD2511F53u;  // round multipliers
inline constexpr uint32_t kM1 = 0xCD9E8D57u;
inline constexpr uint32_t kW0 = 0x9E3779B9u;  // key schedule (golden ratio, sqrt(3) - 1)
inline constexpr uint32_t kW1 = 0xBB67AE85u;

struct Block {
  uint32_t w[4];
};
struct Key {
  uint32_t k[2];
};

// The high and low 32 bits of a * b.
MG_HD inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#ifdef __CUDA_ARCH__
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
#endif
}

// One Philox round: two multiplications scramble words 0 and 2; their halves are mixed with
// words 1 and 3 and the key, and the words are permuted.
MG_HD inline Block round(Block c, Key k) {
  uint32_t hi0, lo0, hi1, lo1;
  mulhilo(kM0, c.w[0], hi0, lo0);
  mulhilo(kM1, c.w[2], hi1, lo1);
  return Block{{hi1 ^ c.w[1] ^ k.k[0], lo1, hi0 ^ c.w[3] ^ k.k[1], lo0}};
}

// Philox4x32 with R rounds; the key is bumped by (W0, W1) between rounds (Random123's
// philox4x32_R). R = 10 is the standard, crush-resistant choice.
template <int R = 10>
MG_HD inline Block philox4x32(Block ctr, Key key) {
  ctr = round(ctr, key);
  for (int r = 1; r < R; ++r) {
    key.k[0] += kW0;
    key.k[1] += kW1;
    ctr = round(ctr, key);
  }
  return ctr;
}

// Block number c of the stream of `seed` (Note [Philox stream contract]).
MG_HD inline Block block(uint64_t seed, uint64_t c) {
  const Key key{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
  const Block ctr{{static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0u, 0u}};
  return philox4x32<10>(ctr, key);
}

// Blocks a draw of n elements at K elements per block consumes.
MG_HD inline uint64_t blocks_for(uint64_t n, uint64_t per_block) {
  return (n + per_block - 1) / per_block;
}

// Elements per block (K) of each kind of draw; the tensor layer reserves blocks_for(n, K).
MG_HD constexpr int64_t uniform_per_block(bool is_double) {
  return is_double ? 2 : 4;
}
MG_HD constexpr int64_t normal_per_block(bool is_double) {
  return is_double ? 2 : 4;
}
MG_HD constexpr int64_t randint_per_block(uint64_t range) {
  return range > (uint64_t{1} << 32) ? 2 : 4;
}
inline constexpr int64_t kBernoulliPerBlock = 4;
inline constexpr int64_t kRandpermPerBlock = 2;  // one 64-bit sort key per element

// ---- conversions ------------------------------------------------------------------------
// Uniform float in [0, 1): the top 24 bits, exact in float (24-bit significand).
MG_HD inline float to_float01(uint32_t w) {
  return static_cast<float>(w >> 8) * 0x1p-24f;
}

// Uniform double in [0, 1) with 32 bits of resolution: exact in double.
MG_HD inline double to_double01_32(uint32_t w) {
  return static_cast<double>(w) * 0x1p-32;
}

// Uniform double in [0, 1): the top 53 bits of (hi:lo), exact in double.
MG_HD inline double to_double01(uint32_t lo, uint32_t hi) {
  const uint64_t x = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<double>(x >> 11) * 0x1p-53;
}

// Products and sums rounded on their own: nvcc would otherwise contract a * b + c into an FMA,
// whose single rounding differs from the CPU's two (the CPU build does not contract).
MG_HD inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
MG_HD inline float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
MG_HD inline double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
MG_HD inline double add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// u in [0, 1) mapped to [lo, hi): lo + (hi - lo) * u in T. Rounding can land exactly on hi;
// that value is folded back onto lo (as PyTorch's CUDA uniform_) so the interval stays open.
template <typename T>
MG_HD inline T uniform_in(T u, T lo, T hi) {
  const T v = add_rn(lo, mul_rn(hi - lo, u));
  return v >= hi && hi > lo ? lo : v;
}

// Box-Muller: two independent standard normals from u1 in (0, 1] and u2 in [0, 1).
MG_HD inline void box_muller(double u1, double u2, double& z0, double& z1) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double t = kTwoPi * u2;
  z0 = r * std::cos(t);
  z1 = r * std::sin(t);
}

// The K standard normals of one block, in double (Note [Philox stream contract]).
MG_HD inline void normals4_32(const Block& b, double z[4]) {  // K = 4, for float32
  box_muller(1.0 - to_double01_32(b.w[0]), to_double01_32(b.w[1]), z[0], z[1]);
  box_muller(1.0 - to_double01_32(b.w[2]), to_double01_32(b.w[3]), z[2], z[3]);
}
MG_HD inline void normals2_53(const Block& b, double z[2]) {  // K = 2, for float64
  box_muller(1.0 - to_double01(b.w[0], b.w[1]), to_double01(b.w[2], b.w[3]), z[0], z[1]);
}

}  // namespace metagrad::kernels::philox
