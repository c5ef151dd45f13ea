// Entry points of the CPU indexing kernels: gather (also used by index_select), scatter_add,
// the index range checks every indexing op makes before it writes, one_hot and pad. Like
// cpu_kernels.h they see raw pointers, shapes and strides in elements, never a Tensor.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/dtype.h"

namespace metagrad::kernels::cpu {

// The first index (in row-major order of the index's shape) outside [0, bound), if any.
// `index` is an integer tensor of dtype `index_t`; returns false when all are in range and
// otherwise stores the offending value in *bad.
bool find_index_out_of_range(DType index_t, Extent e, Operand index, int64_t bound, int64_t* bad);

// Smallest and largest value of a non-empty integer tensor.
void index_min_max(DType index_t, Extent e, Operand index, int64_t* min, int64_t* max);

// out[p] = src[p with coordinate `dim` replaced by index[p]] for every position p of the
// shape `e`. The caller passes src's strides with the stride of `dim` zeroed and that stride
// separately (src_dim_stride), so one loop serves gather and index_select (whose 1-d index is
// passed with stride 0 everywhere but along `dim`). Elements are moved as raw bytes of
// `elem_size`. Each index is checked against [0, dim_size) before it is used; the function
// returns false if any was out of range (the output is then garbage and the caller throws).
bool gather(size_t elem_size, DType index_t, Extent e, Operand out, Operand src, Operand index,
            int64_t src_dim_stride, int64_t dim_size);

// self[p with coordinate `dim` replaced by index[p]] += src[p] for every position p of the
// index shape `e` (self's strides for `dim` are ignored: self_dim_stride is used with the
// index; self_dim_size is self's size along `dim`). The indices must already be checked here
// (the CUDA twin checks them itself, Note [Deferred device errors]). Deterministic: positions
// that differ only along `dim` (the only ones that can hit the same element) are summed in
// order by one thread.
void scatter_add(DType dtype, DType index_t, Extent e, int dim, Operand self, Operand index,
                 Operand src, int64_t self_dim_stride, int64_t self_dim_size);

// out (contiguous int64, n x num_classes, zero-filled by the caller)[i, labels[i]] = 1; the
// labels (contiguous, n of them) must already be checked to lie in [0, num_classes).
void one_hot(DType label_t, int64_t n, const void* labels, int64_t* out, int64_t num_classes);

// Padding: out[o] = src[map_0[o_0], ..., map_{r-1}[o_{r-1}]], or `value` where any
// map_d[o_d] is -1. `maps` holds, dim after dim, out_shape[d] source coordinates each; the
// caller builds them for constant (-1 outside), reflect or replicate padding. `out` is
// contiguous with shape out_shape; src has strides src_strides.
void pad(DType dtype, int rank, const int64_t* out_shape, void* out, const void* src,
         const int64_t* src_strides, const int64_t* maps, double value);

}  // namespace metagrad::kernels::cpu
