// Thin typed wrappers over CBLAS (sgemm/dgemm, sgemv/dgemv), the BLAS thread count, and the
// layout rule that says when a strided matrix can be handed to BLAS without a copy.
// kernels/cpu/blas.cpp is the only file that includes <cblas.h>: the rest of metagrad sees
// these declarations, so swapping the BLAS (OpenBLAS, the reference BLAS, MKL) touches one file.
//
// Everything here is row-major, as metagrad's tensors. A matrix argument is "stored" in
// row-major order with leading dimension `ld` (the distance between rows); `trans` says the
// operand is the transpose of what is stored. A column-major view (a transposed contiguous
// tensor) is thus a stored row-major matrix with trans = true: no copy.
#pragma once
#include <climits>
#include <cstdint>
#include <optional>

namespace metagrad::kernels::cpu {

// CBLAS takes int sizes; the tensor layer refuses larger matrices with a clear error.
inline constexpr int64_t kBlasMaxDim = INT_MAX;

// C (m x n, leading dim ldc) = alpha * op(A) * op(B) + beta * C, where op(A) is m x k and
// op(B) is k x n. Sizes must be >= 1 and leading dims valid (see blas_layout).
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// y = alpha * op(A) * x + beta * y, where A is stored m x n (row-major, leading dim lda).
template <typename T>
void gemv(bool trans, int64_t m, int64_t n, T alpha, const T* a, int64_t lda, const T* x,
          int64_t incx, T beta, T* y, int64_t incy);

// Only float and double exist, defined in blas.cpp.
template <>
void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                 int64_t, float, float*, int64_t);
template <>
void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                  const double*, int64_t, double, double*, int64_t);
template <>
void gemv<float>(bool, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                 float*, int64_t);
template <>
void gemv<double>(bool, int64_t, int64_t, double, const double*, int64_t, const double*, int64_t,
                  double, double*, int64_t);

// ---- threads ------------------------------------------------------------------------------
// By default BLAS uses as many threads as OpenMP would (omp_get_max_threads()), so one knob
// (OMP_NUM_THREADS / omp_set_num_threads) controls all of metagrad. An explicit
// OPENBLAS_NUM_THREADS in the environment, or blas_set_num_threads(n > 0), pins the count
// instead; blas_set_num_threads(0) returns to following OpenMP. With the reference BLAS
// (single-threaded) setting is a no-op and the count is 1.
void blas_set_num_threads(int n);
int blas_get_num_threads();
// Applies the policy above: called by the matmul kernels before BLAS runs, outside any
// parallel region. Cheap when nothing changed.
void blas_sync_num_threads();
// Note [BLAS inside OpenMP loops]: kernels that call gemm from every thread of an OpenMP loop
// (convolution: one gemm per image and group) must keep BLAS to one thread meanwhile, or the
// two thread pools oversubscribe the cores and spin against each other (measured: a conv-4
// meta-step 10x slower on 2 busy cores). Construct this outside the parallel region; it
// restores the previous count when it goes out of scope. A no-op with a 1-thread BLAS.
class BlasSingleThreadScope {
 public:
  explicit BlasSingleThreadScope(bool active = true);
  ~BlasSingleThreadScope();
  BlasSingleThreadScope(const BlasSingleThreadScope&) = delete;
  BlasSingleThreadScope& operator=(const BlasSingleThreadScope&) = delete;

 private:
  int saved_ = 0;  // the count to restore; 0 when nothing was changed
};

// "OpenBLAS 0.3.21 ..." (its config string) or "reference BLAS".
const char* blas_vendor();
// The kernels OpenBLAS runs ("SkylakeX", "Haswell", ...; "reference" without OpenBLAS), and the
// core it had chosen when metagrad replaced it at load (Note [OpenBLAS core on CPUs it does not
// know] in blas.cpp), else null.
const char* blas_core();
const char* blas_core_replaced();
// The rule of that note: the core to switch to, or null to keep OpenBLAS's choice `chosen`.
const char* blas_core_for(const char* chosen, bool user_set, bool avx512, bool avx2_fma);

// ---- layout -------------------------------------------------------------------------------
struct BlasMatrix {
  bool trans;  // stored as the transpose (the view is column-major)
  int64_t ld;  // leading dimension of the stored row-major matrix
};

// How BLAS can read a rows x cols matrix whose element (i, j) sits at i * rs + j * cs, or
// nullopt when it cannot (a copy is needed). Row-major needs unit column stride and a row
// stride of at least cols; column-major the same with the roles swapped. A size-1 dimension
// never steps, so its stride is free and the leading dimension is chosen to be valid.
inline std::optional<BlasMatrix> blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  auto at_least = [](int64_t v) { return v < 1 ? int64_t{1} : v; };
  if ((cols <= 1 || cs == 1) && (rows <= 1 || rs >= at_least(cols))) {
    const int64_t ld = rows <= 1 ? at_least(cols) : rs;
    if (ld <= kBlasMaxDim) return BlasMatrix{false, ld};
  }
  if ((rows <= 1 || rs == 1) && (cols <= 1 || cs >= at_least(rows))) {
    const int64_t ld = cols <= 1 ? at_least(rows) : cs;
    if (ld <= kBlasMaxDim) return BlasMatrix{true, ld};
  }
  return std::nullopt;
}

}  // namespace metagrad::kernels::cpu
