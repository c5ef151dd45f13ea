// Note [Tasks on threads] (tensor/parallel.h).
#include "tensor/parallel.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <vector>

#include "kernels/cpu/blas.h"
#include "tensor/error.h"
#include "tensor/grad_mode.h"

namespace metagrad {

void parallel_for_each(int64_t n, int threads, const std::function<void(int64_t)>& fn) {
  MG_CHECK(n >= 0, "parallel_for_each", "expected a non-negative count, got ", n);
  MG_CHECK(threads >= 1, "parallel_for_each", "expected at least 1 thread, got ", threads);
  const int t = static_cast<int>(std::min<int64_t>(threads, n));
  if (t <= 1 || omp_in_parallel()) {  // nested in a parallel region: this thread alone
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::atomic<int64_t> next{0};
  // Grad mode is per thread: the workers take the caller's (under a NoGradGuard no task
  // records, whichever thread runs it) and give their own back after (OpenMP reuses them).
  const bool grad_mode = GradMode::is_enabled();
  {
    // Both set outside the region (Note [BLAS inside OpenMP loops]); inside it
    // blas_sync_num_threads and the kernels' own scopes leave BLAS alone.
    kernels::cpu::BlasSingleThreadScope one_blas_thread;
#pragma omp parallel num_threads(t)
    {
      // The nested regions of the kernels this thread runs get one thread: their sizes
      // (omp_get_max_threads) and their results are those of a single-threaded run.
      omp_set_num_threads(1);
      const bool own_mode = GradMode::is_enabled();
      GradMode::set_enabled(grad_mode);
      for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        try {
          fn(i);
        } catch (...) {
          errors[static_cast<size_t>(i)] = std::current_exception();
        }
      }
      GradMode::set_enabled(own_mode);
    }
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace metagrad
