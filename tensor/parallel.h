// Running independent pieces of work (the tasks of a meta-batch) on CPU threads at once.
//
// Note [Tasks on threads]: the kernels spread each op over the OpenMP threads, which leaves
// threads idle where an op is too small to split evenly (a 5-image support set on 2 threads
// runs 3 images against 2) or does not split at all (the thousands of small ops of a
// second-order backward), and every op ends at a barrier. When the work is made of independent
// pieces, running whole pieces side by side, each on one thread with single-threaded kernels,
// has no barrier and nothing to balance but the pieces themselves. The price: as many pieces'
// activations alive at once as there are threads.
//
// What runs on the threads must not write shared state: the tensors they read (a model's
// parameters) are only read, and anything they create is their own. Autograd is safe to use
// from several threads on graphs that share leaves, once each leaf's gradient accumulator
// exists (autograd::gradient_edge creates it; do that before, on the calling thread).
#pragma once
#include <cstdint>
#include <functional>

namespace metagrad {

// Calls fn(i) for every i in [0, n), on up to `threads` threads at once (1: in order on the
// calling thread, with the kernels as multi-threaded as usual). Indices are handed out in
// order as threads free up; every kernel that fn runs uses one thread, and BLAS one thread
// meanwhile, so what fn(i) computes does not depend on which thread ran it or on `threads`
// (>= 2). If some calls throw, the others still run, and the exception of the lowest index is
// rethrown after all have finished.
void parallel_for_each(int64_t n, int threads, const std::function<void(int64_t)>& fn);

}  // namespace metagrad
