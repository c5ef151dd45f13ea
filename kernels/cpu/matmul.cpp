// The batched matrix product (kernels/cpu/matmul.h): a loop over the batch calling BLAS for
// floating types, and a cache-blocked triple loop for integers (and for any float layout BLAS
// cannot take, though the tensor layer copies those first).
#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <type_traits>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/parallel.h"
#include "kernels/functors.h"

namespace metagrad::kernels::cpu {

namespace {

// OpenBLAS runs a gemm of at most 4 * 65536 multiply-adds (its SMP_THRESHOLD_MIN *
// GEMM_MULTITHREAD_THRESHOLD) on the calling thread alone. A batch of such small products is
// therefore spread over OpenMP threads, one product per thread; larger products run one after
// the other, each threaded by BLAS, so the two kinds of threads do not compete.
constexpr int64_t kSmallGemm = 64 * 64 * 64;
// Below this many multiply-adds in all, starting threads costs more than it saves.
constexpr int64_t kParallelWork = 1 << 16;

// Element offsets of matrix number `index` (row-major over the batch shape) in A and B.
void batch_offsets(const MatmulShape& s, const MatrixOperand& a, const MatrixOperand& b,
                   int64_t index, int64_t& oa, int64_t& ob) {
  oa = ob = 0;
  for (int d = s.batch_rank - 1; d >= 0; --d) {
    const int64_t i = index % s.batch_shape[d];
    index /= s.batch_shape[d];
    oa += i * a.batch_strides[d];
    ob += i * b.batch_strides[d];
  }
}

int64_t batch_count(const MatmulShape& s) {
  int64_t n = 1;
  for (int d = 0; d < s.batch_rank; ++d) n *= s.batch_shape[d];
  return n;
}

// One product C (m x n, contiguous) = op(A) op(B). A single row or column is a
// matrix-vector product: gemv skips gemm's packing, which dominates at that shape.
template <typename T>
void blas_product(BlasMatrix la, BlasMatrix lb, int64_t m, int64_t n, int64_t k, const T* a,
                  const T* b, T* c) {
  if (n == 1 || m == 1) {
    // Some BLAS scale y by beta = 0 by multiplying (0 * NaN = NaN): start from real zeros.
    std::fill(c, c + m * n, T(0));
    if (n == 1) {  // c = op(A) x, x the column of op(B)
      const int64_t incx = lb.trans ? 1 : lb.ld;
      if (!la.trans)
        gemv<T>(false, m, k, T(1), a, la.ld, b, incx, T(0), c, 1);
      else
        gemv<T>(true, k, m, T(1), a, la.ld, b, incx, T(0), c, 1);
    } else {  // c^T = x^T op(B), x the row of op(A): c = op(B)^T x
      const int64_t incx = la.trans ? la.ld : 1;
      if (!lb.trans)
        gemv<T>(true, k, n, T(1), b, lb.ld, a, incx, T(0), c, 1);
      else
        gemv<T>(false, n, k, T(1), b, lb.ld, a, incx, T(0), c, 1);
    }
    return;
  }
  gemm<T>(la.trans, lb.trans, m, n, k, T(1), a, la.ld, b, lb.ld, T(0), c, n);
}

template <typename T>
void blas_matmul(const MatmulShape& s, BlasMatrix la, BlasMatrix lb, MatrixOperand A,
                 MatrixOperand B, T* c) {
  blas_sync_num_threads();
  const int64_t batches = batch_count(s), work = s.m * s.n * s.k;
  const T* a0 = static_cast<const T*>(A.data);
  const T* b0 = static_cast<const T*>(B.data);
  auto one = [&](int64_t bi) {
    int64_t oa, ob;
    batch_offsets(s, A, B, bi, oa, ob);
    blas_product<T>(la, lb, s.m, s.n, s.k, a0 + oa, b0 + ob, c + bi * s.m * s.n);
  };
  // A single-threaded BLAS (the reference one, or pinned to 1) leaves the threads to us.
  const bool small = work <= kSmallGemm || blas_get_num_threads() == 1;
  if (batches > 1 && small && batches * work >= kParallelWork) {
#pragma omp parallel for schedule(static)
    for (int64_t bi = 0; bi < batches; ++bi) one(bi);
  } else {
    for (int64_t bi = 0; bi < batches; ++bi) one(bi);
  }
}

// C = A B for any strides, blocked so that a kDepth x kCols panel of B stays in cache while
// kRows rows of C are accumulated. Integers accumulate in fn::W, the unsigned type of the same
// width (Note [Integer overflow wraps]): it wraps modulo 2^bits, giving the bits of the
// two's-complement result.
template <typename T>
void loop_matmul(const MatmulShape& s, MatrixOperand A, MatrixOperand B, T* c) {
  using U = fn::W<T>;
  constexpr int64_t kRows = 16, kCols = 512, kDepth = 128;
  const int64_t m = s.m, n = s.n, k = s.k, batches = batch_count(s);
  const int64_t row_blocks = (m + kRows - 1) / kRows, items = batches * row_blocks;
  const T* a0 = static_cast<const T*>(A.data);
  const T* b0 = static_cast<const T*>(B.data);
  parallel_for(items, items > 1 && batches * m * n * k >= kParallelWork, [&](int64_t it) {
    const int64_t bi = it / row_blocks, i0 = (it % row_blocks) * kRows;
    const int64_t i1 = std::min(m, i0 + kRows);
    int64_t oa, ob;
    batch_offsets(s, A, B, bi, oa, ob);
    const T* a = a0 + oa;
    const T* b = b0 + ob;
    U* cb = reinterpret_cast<U*>(c + bi * m * n);  // T and unsigned T may alias
    std::fill(cb + i0 * n, cb + i1 * n, U(0));
    for (int64_t j0 = 0; j0 < n; j0 += kCols) {
      const int64_t j1 = std::min(n, j0 + kCols);
      for (int64_t p0 = 0; p0 < k; p0 += kDepth) {
        const int64_t p1 = std::min(k, p0 + kDepth);
        for (int64_t i = i0; i < i1; ++i) {
          U* ci = cb + i * n;
          for (int64_t p = p0; p < p1; ++p) {
            const U av = static_cast<U>(a[i * A.rs + p * A.cs]);
            const T* bp = b + p * B.rs;
            if (B.cs == 1) {
              for (int64_t j = j0; j < j1; ++j) ci[j] += av * static_cast<U>(bp[j]);
            } else {
              for (int64_t j = j0; j < j1; ++j) ci[j] += av * static_cast<U>(bp[j * B.cs]);
            }
          }
        }
      }
    }
  });
}

}  // namespace

void matmul(DType dtype, const MatmulShape& s, MatrixOperand a, MatrixOperand b, void* c) {
  MG_DISPATCH_NUMERIC(dtype, [&] {
    scalar_t* out = static_cast<scalar_t*>(c);
    if constexpr (std::is_floating_point_v<scalar_t>) {
      const auto la = blas_layout(s.m, s.k, a.rs, a.cs);
      const auto lb = blas_layout(s.k, s.n, b.rs, b.cs);
      if (la && lb && s.m <= kBlasMaxDim && s.n <= kBlasMaxDim && s.k <= kBlasMaxDim)
        return blas_matmul<scalar_t>(s, *la, *lb, a, b, out);
    }
    loop_matmul<scalar_t>(s, a, b, out);
  });
}

}  // namespace metagrad::kernels::cpu
