// The integer matrix product on the GPU (kernels/cuda/matmul_int.cu): cuBLAS has no exact
// integer GEMM with wrap-around, so uint8, int32 and int64 products run a plain tiled kernel.
// Called by matmul() in kernels/cuda/matmul.cpp, which routes floating types to cuBLAS.
#pragma once
#include "kernels/args.h"

namespace metagrad::kernels::cuda {

// C (contiguous: batch_shape + [m, n]) = A B for every batch index, as kernels/cpu/matmul.cpp's
// integer path: any strides (0 where broadcast), arithmetic modulo 2^bits of the dtype.
// dtype is UInt8, Int32 or Int64.
void matmul_int(DType dtype, const MatmulShape& s, MatrixOperand a, MatrixOperand b, void* c);

}  // namespace metagrad::kernels::cuda
