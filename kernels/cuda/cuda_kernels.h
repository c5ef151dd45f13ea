// Entry points of the CUDA kernels: the same names and arguments as the CPU ones
// (kernels/cpu/*.h, types in kernels/args.h), so the tensor layer picks a backend with one
// branch on the device. Every pointer is device memory of the current device; every launch goes
// to the current stream (kernels/cuda/runtime.h) and returns without waiting, except where a
// function returns a value the host needs (find_index_out_of_range, index_min_max,
// random_bernoulli_tensor's check), which synchronise that stream. gather, scatter_add and
// max_pool2d_backward check their indices on the device instead and report a bad one at the
// host's next wait (Note [Deferred device errors] in runtime.h): their bool results are false
// only where no kernel runs (gather from an empty dimension).
//
// In a build without CUDA, kernels/cpu/no_cuda.cpp defines each of these to throw
// "[op] this build has no CUDA support"; the tensor layer never gets there, because no CUDA
// tensor can be created in such a build.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/args.h"
#include "kernels/dtype.h"
#include "kernels/functors.h"

namespace metagrad::kernels::cuda {

// ---- elementwise.cu ---------------------------------------------------------------------
void unary(UnaryOp op, double p0, double p1, DType dtype, Extent e, Operand out, Operand in);
void binary(BinaryOp op, DType dtype, Extent e, Operand out, Operand a, Operand b);
void where(DType dtype, Extent e, Operand out, Operand cond, Operand a, Operand b);
void copy(DType dst_t, DType src_t, Extent e, Operand dst, Operand src);
void fill(DType dtype, Extent e, Operand dst, double value);

// ---- reduce.cu --------------------------------------------------------------------------
void reduce(ReduceOp op, const ReduceInput& in, void* values, int64_t* indices, double param = 0);

// ---- softmax.cu -------------------------------------------------------------------------
// As kernels::cpu::softmax (kernels/cpu/softmax.h): contiguous x, y seen as [outer, n, inner].
void softmax(DType dtype, bool log, int64_t outer, int64_t n, int64_t inner, const void* x,
             void* y);
void softmax_backward(DType dtype, bool log, int64_t outer, int64_t n, int64_t inner,
                      const void* g, const void* y, void* dx);
bool cross_entropy_forward(DType dtype, int64_t rows, int64_t n, const void* x,
                           const int64_t* target, void* loss, int64_t* bad);
bool cross_entropy_backward(DType dtype, int64_t rows, int64_t n, const void* g, const void* x,
                            const int64_t* target, void* dx, int64_t* bad);

// ---- index.cu ---------------------------------------------------------------------------
bool find_index_out_of_range(DType index_t, Extent e, Operand index, int64_t bound, int64_t* bad);
void index_min_max(DType index_t, Extent e, Operand index, int64_t* min, int64_t* max);
bool gather(size_t elem_size, DType index_t, Extent e, Operand out, Operand src, Operand index,
            int64_t src_dim_stride, int64_t dim_size);
void scatter_add(DType dtype, DType index_t, Extent e, int dim, Operand self, Operand index,
                 Operand src, int64_t self_dim_stride, int64_t self_dim_size);
void one_hot(DType label_t, int64_t n, const void* labels, int64_t* out, int64_t num_classes);
void pad(DType dtype, int rank, const int64_t* out_shape, void* out, const void* src,
         const int64_t* src_strides, const int64_t* maps, double value);

// ---- pool.cu ----------------------------------------------------------------------------
void max_pool2d_forward(DType dtype, const Pool2dGeometry& g, const void* x, void* y, int64_t* idx);
bool max_pool2d_backward(DType dtype, const Pool2dGeometry& g, const void* gy, const int64_t* idx,
                         void* gx, int64_t* bad);
void avg_pool2d_forward(DType dtype, const Pool2dGeometry& g, bool count_include_pad, const void* x,
                        void* y);
void avg_pool2d_backward(DType dtype, const Pool2dGeometry& g, bool count_include_pad,
                         const void* gy, void* gx);

// ---- norm.cu ----------------------------------------------------------------------------
void batch_norm_forward(DType dtype, const BatchNormGeometry& g, const void* x, const void* weight,
                        const void* bias, void* y, void* mean, void* invstd);
void batch_norm_backward(DType dtype, const BatchNormGeometry& g, const void* grad_y, const void* x,
                         const BatchNormBackwardArgs& a);

// ---- optim.cu ---------------------------------------------------------------------------
void sgd_step(DType dtype, int64_t n, void* p, const void* g, void* buf, const SGDStepArgs& a);
void adam_step(DType dtype, int64_t n, void* p, const void* g, void* m, void* v, void* vmax,
               const AdamStepArgs& a);
// Multi-tensor updates: for k in [0, count), the n[k] contiguous elements at p[k], g[k], buf[k]
// (...) are updated as sgd_step / adam_step would, in one launch per 64 tensors instead of one
// per tensor (Note [Multi-tensor tables] in optim.cu). n, p, g, ... are host arrays of `count`
// entries; buf may be null when a.momentum == 0 and vmax when !a.amsgrad. Every tensor shares
// `a` (so the same first_step flag, the same Adam step count); distinct k must not overlap.
void sgd_step_multi(DType dtype, int count, const int64_t* n, void* const* p, const void* const* g,
                    void* const* buf, const SGDStepArgs& a);
void adam_step_multi(DType dtype, int count, const int64_t* n, void* const* p, const void* const* g,
                     void* const* m, void* const* v, void* const* vmax, const AdamStepArgs& a);

// ---- random.cu --------------------------------------------------------------------------
void random_uniform(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, double from,
                    double to);
void random_normal(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, double mean,
                   double std);
void random_int(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, int64_t low,
                uint64_t range);
void random_bernoulli(DType dtype, Extent e, Operand out, uint64_t seed, uint64_t offset, double p);
bool random_bernoulli_tensor(DType dtype, Extent e, Operand out, Operand p, uint64_t seed,
                             uint64_t offset);
void random_perm(int64_t n, int64_t* out, uint64_t seed, uint64_t offset);

// ---- matmul.cpp (cuBLAS; integer types in matmul_int.cu) --------------------------------
// As on the CPU: float32/float64 operands satisfy kernels::cpu::blas_layout (a pure stride
// predicate; the tensor layer copies those that do not), integer types take any strides.
void matmul(DType dtype, const MatmulShape& s, MatrixOperand a, MatrixOperand b, void* c);

// ---- conv.cpp (cuDNN) -------------------------------------------------------------------
void conv2d_forward(DType dtype, const Conv2dGeometry& g, const void* x, const void* w,
                    const void* b, void* y);
void conv2d_input_backward(DType dtype, const Conv2dGeometry& g, const void* gy, const void* w,
                           void* gx);
void conv2d_weight_backward(DType dtype, const Conv2dGeometry& g, const void* gy, const void* x,
                            void* gw);

}  // namespace metagrad::kernels::cuda
