// Matrix products, with libtorch names and semantics: matmul (1-d, 2-d and batched N-d with
// broadcast batch dimensions), mm, bmm, dot, mv, outer; and the BLAS thread count.
// Floating types run on CBLAS (kernels/cpu/blas.h), integer types on a blocked loop
// (kernels/cpu/matmul.cpp). Operands of different dtypes are promoted (promote_types); bool
// and 0-d operands are refused.
//
// For autograd every product reports itself as the one op "matmul" with inputs {a, b}: the
// wrappers are matmul with checks of their own (outer through unsqueezed views, which report
// themselves), so a single derivative rule covers them all.
#pragma once
#include "tensor/tensor.h"

namespace metagrad {

// torch.matmul:
//   [k] @ [k] -> []                    (dot product, a 0-d tensor)
//   [m, k] @ [k, n] -> [m, n]
//   [k] @ [..., k, n] -> [..., n]      (a 1 is prepended to a's shape, then removed)
//   [..., m, k] @ [k] -> [..., m]      (a 1 is appended to b's shape, then removed)
//   [..., m, k] @ [..., k, n] -> [broadcast(...), m, n]   e.g. [2,1,3,4] @ [5,4,6] -> [2,5,3,6]
// Broadcast operands are read in place (stride 0), never materialised.
Tensor matmul(const Tensor& a, const Tensor& b);
// [m, k] @ [k, n] only.
Tensor mm(const Tensor& a, const Tensor& b);
// [B, m, k] @ [B, k, n] only (no broadcasting).
Tensor bmm(const Tensor& a, const Tensor& b);
// [n] . [n] -> [].
Tensor dot(const Tensor& a, const Tensor& b);
// [m, n] @ [n] -> [m].
Tensor mv(const Tensor& a, const Tensor& v);
// [n] x [m] -> [n, m], out[i, j] = a[i] * b[j].
Tensor outer(const Tensor& a, const Tensor& b);

// BLAS threads. By default they follow omp_get_max_threads() (so OMP_NUM_THREADS or
// omp_set_num_threads sets both); OPENBLAS_NUM_THREADS in the environment or n > 0 here pins
// the count; n = 0 returns to following OpenMP. Always 1 with the reference BLAS.
void set_blas_num_threads(int n);
int get_blas_num_threads();

}  // namespace metagrad
