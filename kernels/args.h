// The argument types every backend's kernels take: raw pointers, shapes and strides in
// elements, and the small structs that describe one convolution, pooling, reduction, matrix
// product or optimizer update. kernels/cpu/ and kernels/cuda/ declare entry points with the
// same names and the same arguments, so the tensor layer picks a backend with one branch on
// the device (DESIGN principle 7) and everything it computes beforehand is shared.
#pragma once
#include <cstdint>

#include "kernels/dtype.h"

namespace metagrad::kernels {

// ---- elementwise, indexing, random fills ------------------------------------------------

struct Operand {
  void* data;              // pointer to element (0, ..., 0) of this operand
  const int64_t* strides;  // one per dimension of the shape, 0 where broadcast
};

// Shape shared by all operands of an elementwise op.
struct Extent {
  int rank;
  const int64_t* shape;
};

// ---- reductions -----------------------------------------------------------------------

enum class ReduceOp : uint8_t {
  Sum,        // sum; integer and bool inputs sum into int64
  Mean,       // sum / n (floating only); n == 0 gives NaN
  Prod,       // product; integer and bool inputs multiply into int64
  Max,        // largest value, NaN wins (as torch.amax)
  Min,        // smallest value, NaN wins
  ArgMax,     // value and linear index of the largest, first occurrence on ties, first NaN wins
  ArgMin,     // likewise for the smallest
  Var,        // sum((x - mean)^2) / max(0, n - param), two passes (floating only)
  Std,        // sqrt(Var)
  LogSumExp,  // m + log(sum(exp(x - m))), m the row max (0 where it is infinite); floating only
  Norm,       // vector p-norm, p = param: 2, 1, +-inf, 0 (count of nonzeros) or any other p
};

// The input seen as two groups of dimensions, each in the tensor's order: the kept dims (the
// output is contiguous, row-major over them) and the reduced dims. A reduced element's index
// (ArgMax/ArgMin) is its row-major linear index over the reduced dims.
struct ReduceInput {
  const void* data;  // element (0, ..., 0)
  DType dtype;
  int kept_rank;
  const int64_t* kept_shape;
  const int64_t* kept_strides;  // input strides (elements) of the kept dims
  int red_rank;
  const int64_t* red_shape;
  const int64_t* red_strides;  // input strides (elements) of the reduced dims
};

// The dtype a reduction writes its values in for `op` on an input of dtype `t`: int64 for Sum
// and Prod of integers and bool, otherwise `t`. Mean, Var, Std, LogSumExp and Norm need a
// floating t (the tensor layer checks).
constexpr DType reduce_out_dtype(ReduceOp op, DType t) {
  if ((op == ReduceOp::Sum || op == ReduceOp::Prod) && !is_floating(t)) return DType::Int64;
  return t;
}

// ---- matrix products ------------------------------------------------------------------

// One operand: element (i, j) of matrix number b sits at
// data + sum_d(index_d(b) * batch_strides[d]) + i * rs + j * cs   (in elements).
struct MatrixOperand {
  const void* data;
  const int64_t* batch_strides;  // batch_rank entries
  int64_t rs, cs;                // row and column strides
};

struct MatmulShape {
  int batch_rank;
  const int64_t* batch_shape;
  int64_t m, n, k;  // A is m x k, B is k x n; all >= 1 (the tensor layer handles empty)
};

// ---- convolution and pooling (NCHW, contiguous) ----------------------------------------

// Sizes of one convolution; all >= 1 (the tensor layer handles empty tensors itself).
struct Conv2dGeometry {
  int64_t n, c, h, w;  // input [n, c, h, w]
  int64_t o, kh, kw;   // weight [o, c / groups, kh, kw]
  int64_t oh, ow;      // output [n, o, oh, ow]
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t groups;
};

// Sizes of one 2-d pooling over `planes` = n * c independent h x w planes; all >= 1, and
// every window overlaps the input (padding at most half the kernel).
struct Pool2dGeometry {
  int64_t planes, h, w;
  int64_t oh, ow;
  int64_t kh, kw, sh, sw, ph, pw;
};

// ---- batch normalisation (training mode, contiguous) ------------------------------------

// x seen as [n, c, inner] (inner = the product of the dims after the channel dim, 1 for an
// [N, C] input), contiguous; the statistics of channel k run over its n * inner values.
// c >= 1 and n * inner >= 1 (the tensor layer handles empty tensors itself).
struct BatchNormGeometry {
  int64_t n, c, inner;
  double eps;  // var + eps under the square root
};

// The optional per-channel operands of the fused batch-norm backward (each [c], nullptr when
// absent) beside the incoming gradient of y and x: the weight (1 when absent), the gradients
// that flow into the saved-statistics outputs mean and invstd (0 when absent), and the three
// results, each written only when non-null.
struct BatchNormBackwardArgs {
  const void* weight;
  const void* grad_mean;
  const void* grad_invstd;
  void* grad_x;       // [n, c, inner]
  void* grad_weight;  // [c]
  void* grad_bias;    // [c]
  // The forward's mean and invstd ([c]), or null: then recomputed from x (Note [Saved
  // batch-norm statistics] in tensor/norm.h).
  const void* saved_mean = nullptr;
  const void* saved_invstd = nullptr;
};

// ---- fused optimizer updates ----------------------------------------------------------

struct SGDStepArgs {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
  bool first_step;  // the momentum buffer is set to the gradient instead of being averaged
};

struct AdamStepArgs {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad;
  bool decoupled;    // AdamW: p *= 1 - lr * weight_decay instead of g += weight_decay * p
  double step_size;  // lr / (1 - beta1^t)
  double bias_correction2_sqrt;  // sqrt(1 - beta2^t)
};

}  // namespace metagrad::kernels
