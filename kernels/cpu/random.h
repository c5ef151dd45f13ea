// Entry points of the CPU random fills. Each writes a Philox stream (Note [Philox stream
// contract] in kernels/philox.h) into a strided output: element i in row-major order gets
// the value of stream position i of (seed, offset), whatever the strides or thread count.
// The tensor layer (tensor/random.cpp) checks arguments and reserves the blocks.
#pragma once
#include <cstdint>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/dtype.h"

namespace metagrad::kernels::cpu {

// out = uniform in [from, to); dtype floating.
void random_uniform(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, double from,
                    double to);
// out = mean + std * N(0, 1); dtype floating.
void random_normal(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, double mean,
                   double std);
// out = low + (random % range), range = high - low > 0 as uint64; any dtype (cast from int64).
void random_int(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, int64_t low,
                uint64_t range);
// out = (uniform < p); any dtype.
void random_bernoulli(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, double p);
// out = (uniform < p[i]); out and p share the floating dtype. Returns false when some p[i] is
// outside [0, 1] or NaN (out is then partly written).
bool random_bernoulli_tensor(DType dtype, Extent e, Operand out, Operand p, uint64_t seed,
                             uint64_t offset);
// out[0..n) = a random permutation of 0..n-1 (contiguous int64).
void random_perm(int64_t n, int64_t* out, uint64_t seed, uint64_t offset);

}  // namespace metagrad::kernels::cpu
