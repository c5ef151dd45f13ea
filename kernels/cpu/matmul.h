// The batched matrix product kernel: C[b] = A[b] @ B[b] for every index b of a (broadcast)
// batch shape, with A[b] and B[b] located through per-operand batch strides (0 where an
// operand is broadcast, so expanded operands are never materialised). Floating types go to
// BLAS (kernels/cpu/blas.h); integer types to a plain blocked loop with wrap-around
// arithmetic, as PyTorch's integer matmul.
#pragma once
#include <cstdint>

#include "kernels/args.h"

namespace metagrad::kernels::cpu {

// C is contiguous: batch_shape + [m, n]. For float32/float64 both operands must satisfy
// blas_layout (the tensor layer copies those that do not); integer types take any strides.
// Bool is not supported.
void matmul(DType dtype, const MatmulShape& s, MatrixOperand a, MatrixOperand b, void* c);

}  // namespace metagrad::kernels::cpu
