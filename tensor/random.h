// Seeded random tensors, as libtorch: Generator (seed + offset of a Philox4x32-10 stream),
// the process-wide default generator and manual_seed, the factories rand, randn, randint,
// bernoulli and randperm, and the in-place fills uniform_ and normal_.
//
// Every value is a function of (seed, offset, element index) only (Note [Philox stream
// contract] in kernels/philox.h): the same seed gives the same tensors whatever the number of
// threads, and a CUDA backend that follows the note gives the same numbers as the CPU.
// A draw of n elements advances its generator's offset by the number of Philox blocks it
// used, so saving get_state() and restoring it with set_state() resumes the exact sequence.
//
// Random factories do not report to autograd: their outputs are leaves (requires_grad only
// when the options ask for it). bernoulli(p) is not differentiable and is not reported either.
#pragma once
#include <cstdint>
#include <mutex>

#include "tensor/tensor.h"

namespace metagrad {

// A generator's whole state: restoring it replays the same draws.
struct GeneratorState {
  uint64_t seed = 0;
  uint64_t offset = 0;  // in Philox blocks of 128 bits
  bool operator==(const GeneratorState&) const = default;
};

class Generator {
 public:
  // PyTorch's default seed, so a fresh generator is deterministic.
  static constexpr uint64_t kDefaultSeed = 67280421310721ull;

  explicit Generator(uint64_t seed = kDefaultSeed) : seed_(seed) {}
  Generator(const Generator& o) : Generator() { set_state(o.get_state()); }
  Generator& operator=(const Generator& o) {
    if (this != &o) set_state(o.get_state());
    return *this;
  }

  // Starts the stream of `seed` from its beginning (offset 0).
  void manual_seed(uint64_t seed) {
    std::lock_guard<std::mutex> lock(mu_);
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seed_;
  }
  uint64_t offset() const {
    std::lock_guard<std::mutex> lock(mu_);
    return offset_;
  }
  void set_offset(uint64_t offset) {
    std::lock_guard<std::mutex> lock(mu_);
    offset_ = offset;
  }
  // Claims n Philox blocks for one draw: returns the offset the draw starts at and advances
  // the offset past them. Thread-safe: concurrent draws get disjoint blocks.
  uint64_t reserve(uint64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t start = offset_;
    offset_ += n;
    return start;
  }
  // reserve(n) and the seed it belongs to, read under one lock (what a draw needs).
  GeneratorState reserve_state(uint64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    const GeneratorState s{seed_, offset_};
    offset_ += n;
    return s;
  }
  GeneratorState get_state() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {seed_, offset_};
  }
  void set_state(const GeneratorState& s) {
    std::lock_guard<std::mutex> lock(mu_);
    seed_ = s.seed;
    offset_ = s.offset;
  }

 private:
  mutable std::mutex mu_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The generator used when a factory is given none (nullptr), one per process.
Generator& default_generator();
// Seeds the default generator (torch.manual_seed).
void manual_seed(uint64_t seed);

// Uniform in [0, 1); the dtype must be floating.
Tensor rand(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
// Standard normal; the dtype must be floating.
Tensor randn(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
Tensor rand_like(const Tensor& t, Generator* gen = nullptr);
Tensor randn_like(const Tensor& t, Generator* gen = nullptr);
// Integers uniform in [low, high) (low < high), int64 unless the options say otherwise; both
// bounds must be representable in the dtype.
Tensor randint(int64_t low, int64_t high, const Shape& shape,
               TensorOptions opts = TensorOptions(DType::Int64), Generator* gen = nullptr);
Tensor randint(int64_t high, const Shape& shape, TensorOptions opts = TensorOptions(DType::Int64),
               Generator* gen = nullptr);
// 1 with probability p[i], else 0, in p's (floating) dtype; every p[i] must lie in [0, 1].
Tensor bernoulli(const Tensor& p, Generator* gen = nullptr);
// 1 with probability p, else 0, in the options' dtype (any dtype, bool included).
Tensor bernoulli(const Shape& shape, double p, TensorOptions opts = {}, Generator* gen = nullptr);
// A random permutation of 0..n-1 (int64 unless the options say otherwise).
Tensor randperm(int64_t n, TensorOptions opts = TensorOptions(DType::Int64),
                Generator* gen = nullptr);

// In place, any strides (element i in row-major order gets stream value i): uniform in
// [from, to) and normal with the given mean and std. Refused on a tensor that requires grad
// while grad mode is on (initialise parameters under NoGradGuard, as torch.no_grad()).
Tensor& uniform_(Tensor& self, double from = 0.0, double to = 1.0, Generator* gen = nullptr);
Tensor& normal_(Tensor& self, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);

}  // namespace metagrad
