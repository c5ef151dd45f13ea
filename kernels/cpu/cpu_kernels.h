// Entry points of the CPU kernels. They see raw pointers, a shape and per-operand strides
// (in elements) and nothing of Tensor: the tensor layer checks arguments, allocates the
// output and calls in here. Each family lives in its own file beside this header.
#pragma once
#include <cstdint>

#include "kernels/args.h"
#include "kernels/dtype.h"
#include "kernels/functors.h"

namespace metagrad::kernels::cpu {

// unary.cpp: out = op(in), both `dtype`.
void unary(UnaryOp op, double p0, double p1, DType dtype, Extent e, Operand out, Operand in);
// binary.cpp: out = op(a, b); a and b are `dtype`, out is `dtype` or bool for comparisons.
void binary(BinaryOp op, DType dtype, Extent e, Operand out, Operand a, Operand b);
// ternary.cpp: out = cond ? a : b (cond is bool).
void where(DType dtype, Extent e, Operand out, Operand cond, Operand a, Operand b);
// copy.cpp: dst = cast<dst_t>(src), any strides; and fill with one value.
void copy(DType dst_t, DType src_t, Extent e, Operand dst, Operand src);
void fill(DType dtype, Extent e, Operand dst, double value);

}  // namespace metagrad::kernels::cpu
