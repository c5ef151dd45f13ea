// Running a CPU kernel's loop on OpenMP threads only when it is worth it.
//
// Note [Serial loops skip OpenMP]: an `omp parallel` region whose if-clause is false still
// starts and ends a team of one in libgomp, with an aligned heap allocation that made glibc
// consolidate its fast bins: about 300 ns per call against 13 ns for the same 16-element
// loop written plainly (measured, g++ 12). A sinusoid meta-step runs some 650 such kernels,
// nearly all too small to split. So a kernel decides first and enters OpenMP only to run in
// parallel: these helpers take that decision as an argument instead of an if-clause.
#pragma once
#include <cstdint>

#include <omp.h>

namespace metagrad::kernels::cpu {

// body(i) for i in [0, n), split statically across threads when `parallel` and n > 1.
template <typename Body>
void parallel_for(int64_t n, bool parallel, const Body& body) {
  if (parallel && n > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) body(i);
  } else {
    for (int64_t i = 0; i < n; ++i) body(i);
  }
}

// body(thread, threads) on every thread of a parallel region when `parallel`, else once as
// body(0, 1) on the calling thread (which may itself be inside some other region).
template <typename Body>
void parallel_region(bool parallel, const Body& body) {
  if (parallel) {
#pragma omp parallel
    body(omp_get_thread_num(), omp_get_num_threads());
  } else {
    body(0, 1);
  }
}

}  // namespace metagrad::kernels::cpu
