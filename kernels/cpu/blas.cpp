// The CBLAS calls behind kernels/cpu/blas.h, and the BLAS thread-count policy. The only file
// of the library that includes <cblas.h>.
#include "kernels/cpu/blas.h"

#include <cblas.h>
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#ifdef MG_OPENBLAS
// Declared by OpenBLAS's cblas.h, but not by the reference one that Debian's alternatives may
// install as <cblas.h> while the build links OpenBLAS: declare them ourselves (same signatures).
extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
char* openblas_get_corename(void);
// Exported by DYNAMIC_ARCH builds only (Debian's): weak, null in single-target builds.
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
}
#endif

namespace metagrad::kernels::cpu {

namespace {
CBLAS_TRANSPOSE tr(bool t) {
  return t ? CblasTrans : CblasNoTrans;
}
int i32(int64_t v) {
  return static_cast<int>(v);
}  // callers keep sizes <= kBlasMaxDim
}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), i32(m), i32(n), i32(k), alpha, a, i32(lda), b,
              i32(ldb), beta, c, i32(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                  int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), i32(m), i32(n), i32(k), alpha, a, i32(lda), b,
              i32(ldb), beta, c, i32(ldc));
}

template <>
void gemv<float>(bool t, int64_t m, int64_t n, float alpha, const float* a, int64_t lda,
                 const float* x, int64_t incx, float beta, float* y, int64_t incy) {
  cblas_sgemv(CblasRowMajor, tr(t), i32(m), i32(n), alpha, a, i32(lda), x, i32(incx), beta, y,
              i32(incy));
}

template <>
void gemv<double>(bool t, int64_t m, int64_t n, double alpha, const double* a, int64_t lda,
                  const double* x, int64_t incx, double beta, double* y, int64_t incy) {
  cblas_dgemv(CblasRowMajor, tr(t), i32(m), i32(n), alpha, a, i32(lda), x, i32(incx), beta, y,
              i32(incy));
}

// ---- threads ------------------------------------------------------------------------------

namespace {
std::mutex g_threads_mu;
std::atomic<int> g_pinned{-1};  // > 0: user's count; 0: follow OpenMP; -1: not decided yet
std::atomic<int> g_applied{0};  // the count last handed to BLAS (0: none yet)

#ifdef MG_OPENBLAS
void apply(int n) {
  if (n < 1) n = 1;
  if (g_applied.load(std::memory_order_relaxed) == n) return;
  openblas_set_num_threads(n);
  g_applied.store(n, std::memory_order_relaxed);
}

// The first decision: an explicit OPENBLAS_NUM_THREADS is the user's word and is left alone.
int pinned_locked() {
  int p = g_pinned.load(std::memory_order_relaxed);
  if (p < 0) {
    const char* env = std::getenv("OPENBLAS_NUM_THREADS");
    p = env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : 0;
    g_pinned.store(p, std::memory_order_relaxed);
  }
  return p;
}
#endif
}  // namespace

void blas_set_num_threads(int n) {
  std::lock_guard<std::mutex> lock(g_threads_mu);
  g_pinned.store(n > 0 ? n : 0, std::memory_order_relaxed);
#ifdef MG_OPENBLAS
  apply(n > 0 ? n : omp_get_max_threads());
#endif
}

int blas_get_num_threads() {
#ifdef MG_OPENBLAS
  return openblas_get_num_threads();
#else
  return 1;
#endif
}

BlasSingleThreadScope::BlasSingleThreadScope(bool active) {
#ifdef MG_OPENBLAS
  if (!active || omp_in_parallel()) return;
  blas_sync_num_threads();
  const int n = openblas_get_num_threads();
  if (n <= 1) return;
  std::lock_guard<std::mutex> lock(g_threads_mu);
  openblas_set_num_threads(1);
  saved_ = n;
#else
  (void)active;
#endif
}

BlasSingleThreadScope::~BlasSingleThreadScope() {
#ifdef MG_OPENBLAS
  if (saved_ == 0) return;
  std::lock_guard<std::mutex> lock(g_threads_mu);
  openblas_set_num_threads(saved_);
#endif
}

void blas_sync_num_threads() {
#ifdef MG_OPENBLAS
  // Inside a parallel region omp_get_max_threads() describes nested regions, and resizing
  // OpenBLAS's pool from several threads at once would race: only the outside decides.
  if (omp_in_parallel()) return;
  const int pinned = g_pinned.load(std::memory_order_relaxed);
  if (pinned > 0) return;  // fast path: the user chose
  const int want = omp_get_max_threads();
  if (pinned == 0 && g_applied.load(std::memory_order_relaxed) == want) return;  // fast path
  std::lock_guard<std::mutex> lock(g_threads_mu);
  if (pinned_locked() > 0) {
    if (g_applied.load(std::memory_order_relaxed) == 0)
      g_applied.store(openblas_get_num_threads(), std::memory_order_relaxed);
    return;
  }
  apply(want);
#endif
}

// ---- kernels --------------------------------------------------------------------------------
// Note [OpenBLAS core on CPUs it does not know]: a DYNAMIC_ARCH OpenBLAS picks its kernels by
// CPU model when it loads, and a model newer than the release knows gets "Prescott", its SSE3
// kernels. Debian 12's 0.3.21 does this on an AVX-512 Xeon of family 6 model 207 (Emerald
// Rapids): sgemm at 512 x 512 on 2 threads 31 GFLOP/s against 188 with the SkylakeX kernels
// (bench_matmul), a conv-4 meta-step about 4x slower. OpenBLAS's remedy is OPENBLAS_CORETYPE,
// read once at load, before main. So, once, at metagrad's static initialisation (before any of
// its BLAS calls, normally before any other thread exists): if OpenBLAS fell back to Prescott,
// the user set no OPENBLAS_CORETYPE, and the CPU and OS run AVX-512 (F, VL, BW, DQ) or
// AVX2 + FMA, set the variable to SkylakeX or Haswell and rerun OpenBLAS's own core selection
// (gotoblas_dynamic_quit / _init): the choice the variable would have made at load. A user's
// OPENBLAS_CORETYPE (Prescott included) is left alone.

const char* blas_core_for(const char* chosen, bool user_set, bool avx512, bool avx2_fma) {
  if (user_set || chosen == nullptr || std::strcmp(chosen, "Prescott") != 0) return nullptr;
  if (avx512) return "SkylakeX";
  if (avx2_fma) return "Haswell";
  return nullptr;
}

namespace {
const char* g_replaced = nullptr;  // the core OpenBLAS had chosen, when metagrad replaced it

bool replace_unknown_core() {
#if defined(MG_OPENBLAS) && defined(__x86_64__)
  if (gotoblas_dynamic_init == nullptr || gotoblas_dynamic_quit == nullptr) return false;
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const char* target = blas_core_for(openblas_get_corename(),
                                     std::getenv("OPENBLAS_CORETYPE") != nullptr, avx512, avx2_fma);
  if (target == nullptr) return false;
  setenv("OPENBLAS_CORETYPE", target, 0);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  g_replaced = "Prescott";
  return true;
#else
  return false;
#endif
}

[[maybe_unused]] const bool g_core_checked = replace_unknown_core();
}  // namespace

const char* blas_core() {
#ifdef MG_OPENBLAS
  return openblas_get_corename();
#else
  return "reference";
#endif
}

const char* blas_core_replaced() {
  return g_replaced;
}

const char* blas_vendor() {
#ifdef MG_OPENBLAS
  return openblas_get_config();
#else
  return "reference BLAS";
#endif
}

}  // namespace metagrad::kernels::cpu
