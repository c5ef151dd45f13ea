// Type promotion as in PyTorch. With the dtypes metagrad has, the lattice is a chain:
// bool < uint8 < int32 < int64 < float32 < float64, and promote_types is its max.
// Three tiers take part, highest first: tensors with dimensions, 0-d tensors, and scalars
// written in code. A lower tier changes the result only when it is of a higher category
// (bool < integer < floating): float_tensor + 0-d double tensor stays float32, while
// int_tensor + 2.5 becomes float32 (the default float type).
#pragma once
#include "tensor/scalar.h"
#include "tensor/tensor.h"

namespace metagrad {

DType promote_types(DType a, DType b);
DType result_type(const Tensor& a, const Tensor& b);
DType result_type(const Tensor& a, const Scalar& s);

}  // namespace metagrad
