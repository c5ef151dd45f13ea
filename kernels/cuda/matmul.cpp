// The batched matrix product on the GPU (kernels/cuda/cuda_kernels.h): float32 and float64 go
// to cuBLAS, the integer types to the tiled kernel of kernels/cuda/matmul_int.cu.
//
// Note [Row-major products on cuBLAS]: cuBLAS is column-major, metagrad row-major. A row-major
// matrix read as column-major is its transpose, so C = A B is computed as C^T = B^T A^T: cuBLAS
// is handed B as its first operand and A as its second, with m and n swapped, and writes C^T
// column-major, which is C row-major (leading dimension n). An operand that blas_layout
// (kernels/cpu/blas.h) calls row-major is thus passed untransposed, a column-major one
// (a transposed view) with CUBLAS_OP_T: no copy in either case.
//
// The batch dimensions are coalesced (kernels/strided.h) over A, B and the contiguous C: when
// they collapse to one dimension a single strided-batched call covers the batch (stride 0 for
// a broadcast operand); otherwise the host loops over the outer dimensions and issues one
// strided-batched call per run of the innermost one.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "kernels/cpu/blas.h"
#include "kernels/cuda/common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/handles.h"
#include "kernels/cuda/matmul_int.h"
#include "kernels/strided.h"

namespace metagrad::kernels::cuda {

namespace {

namespace rt = ::metagrad::cuda;

constexpr int64_t kIntMax = INT_MAX;  // cuBLAS takes int sizes and batch counts

// How cuBLAS reads one operand (Note [Row-major products on cuBLAS]).
struct CublasOperand {
  cublasOperation_t op;
  int ld;
};

CublasOperand cublas_operand(const char* name, int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  const auto l = cpu::blas_layout(rows, cols, rs, cs);
  // The tensor layer copies operands that no BLAS can read; reaching this is a bug there.
  MG_CHECK(l.has_value(), "matmul", "operand ", name, " (", rows, " x ", cols, ", strides ", rs,
           ", ", cs, ") is neither row- nor column-major with a valid leading dimension");
  return {l->trans ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(l->ld)};
}

// Everything one cuBLAS call needs besides the pointers, batch strides and count.
struct Gemm {
  cudaDataType_t type;
  cublasComputeType_t compute;
  const void* one;   // alpha = 1 and beta = 0, in the compute type's scalar type
  const void* zero;  // (beta = 0: C is not read, so garbage or NaN there is harmless)
  CublasOperand b, a;
  int m, n, k;
  size_t elem;  // bytes per element
};

constexpr float kOneF = 1.0f, kZeroF = 0.0f;
constexpr double kOneD = 1.0, kZeroD = 0.0;

// C[i] = A[i] B[i] for i < count, matrix i at a + i * sa, b + i * sb, c + i * sc (elements).
void gemm_run(cublasHandle_t h, const Gemm& g, const char* a, int64_t sa, const char* b, int64_t sb,
              char* c, int64_t sc, int64_t count) {
  // More than INT_MAX matrices: cuBLAS's count is an int, so the run is split.
  for (int64_t i0 = 0; i0 < count; i0 += kIntMax) {
    const int64_t cnt = std::min(kIntMax, count - i0);
    const char* ai = a + i0 * sa * static_cast<int64_t>(g.elem);
    const char* bi = b + i0 * sb * static_cast<int64_t>(g.elem);
    char* ci = c + i0 * sc * static_cast<int64_t>(g.elem);
    // C^T (n x m, ldc n) = op(B-as-stored) op(A-as-stored)
    if (cnt == 1) {
      MG_CUBLAS_CHECK(cublasGemmEx(h, g.b.op, g.a.op, g.n, g.m, g.k, g.one, bi, g.type, g.b.ld, ai,
                                   g.type, g.a.ld, g.zero, ci, g.type, g.n, g.compute,
                                   CUBLAS_GEMM_DEFAULT));
    } else {
      MG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
          h, g.b.op, g.a.op, g.n, g.m, g.k, g.one, bi, g.type, g.b.ld, sb, ai, g.type, g.a.ld, sa,
          g.zero, ci, g.type, g.n, sc, static_cast<int>(cnt), g.compute, CUBLAS_GEMM_DEFAULT));
    }
  }
}

void cublas_matmul(DType dtype, const MatmulShape& s, MatrixOperand a, MatrixOperand b, void* c) {
  MG_CHECK(s.m <= kIntMax && s.n <= kIntMax && s.k <= kIntMax, "matmul", "a product of ", s.m,
           " x ", s.k, " and ", s.k, " x ", s.n,
           " matrices exceeds cuBLAS's size limit (2^31 - 1)");
  MG_CHECK(s.batch_rank >= 0 && s.batch_rank <= kMaxDims, "matmul", "batch rank ", s.batch_rank,
           " exceeds ", kMaxDims);
  Gemm g;
  if (dtype == DType::Float32) {
    g.type = CUDA_R_32F;
    // Exact float32 unless TF32 was allowed (runtime.h: off by default).
    g.compute = rt::allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    g.one = &kOneF;
    g.zero = &kZeroF;
  } else {
    g.type = CUDA_R_64F;
    g.compute = CUBLAS_COMPUTE_64F;
    g.one = &kOneD;
    g.zero = &kZeroD;
  }
  g.a = cublas_operand("A", s.m, s.k, a.rs, a.cs);
  g.b = cublas_operand("B", s.k, s.n, b.rs, b.cs);
  g.m = static_cast<int>(s.m);
  g.n = static_cast<int>(s.n);
  g.k = static_cast<int>(s.k);
  g.elem = dtype_size(dtype);

  // C's batch strides: contiguous, m * n elements per matrix.
  std::vector<int64_t> c_strides(static_cast<size_t>(s.batch_rank));
  int64_t step = s.m * s.n;
  for (int d = s.batch_rank - 1; d >= 0; --d) {
    c_strides[static_cast<size_t>(d)] = step;
    step *= s.batch_shape[d];
  }
  const auto L = StridedLayout<3>::make(s.batch_rank, s.batch_shape,
                                        {a.batch_strides, b.batch_strides, c_strides.data()});
  if (L.numel == 0) return;  // an empty batch: nothing to write

  // The innermost coalesced dimension is one strided-batched run; the outer ones loop here.
  const int last = L.ndim - 1;
  const int64_t inner = L.ndim == 0 ? 1 : L.shape[last];
  const int64_t sa = L.ndim == 0 ? 0 : L.strides[0][last];
  const int64_t sb = L.ndim == 0 ? 0 : L.strides[1][last];
  const int64_t sc = L.ndim == 0 ? 0 : L.strides[2][last];
  const int64_t elem = static_cast<int64_t>(g.elem);
  const cublasHandle_t h = rt::cublas_handle();
  for (int64_t outer = 0; outer < L.numel / inner; ++outer) {
    int64_t off[3];
    L.offsets(outer * inner, off);  // element offsets of the run's first matrix
    gemm_run(h, g, static_cast<const char*>(a.data) + off[0] * elem, sa,
             static_cast<const char*>(b.data) + off[1] * elem, sb,
             static_cast<char*>(c) + off[2] * elem, sc, inner);
  }
}

}  // namespace

void matmul(DType dtype, const MatmulShape& s, MatrixOperand a, MatrixOperand b, void* c) {
  switch (dtype) {
    case DType::Float32:
    case DType::Float64:
      return cublas_matmul(dtype, s, a, b, c);
    case DType::UInt8:
    case DType::Int32:
    case DType::Int64:
      return matmul_int(dtype, s, a, b, c);
    case DType::Bool:
      break;
  }
  ::metagrad::detail::fail("matmul", "dtype ", dtype_name(dtype), " is not supported");
}

}  // namespace metagrad::kernels::cuda
