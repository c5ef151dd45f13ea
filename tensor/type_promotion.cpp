#include "tensor/type_promotion.h"

#include <algorithm>

namespace metagrad {

namespace {
int category(DType t) { return t == DType::Bool ? 0 : is_floating(t) ? 2 : 1; }
}  // namespace

DType promote_types(DType a, DType b) { return std::max(a, b); }

DType result_type(const Tensor& a, const Tensor& b) {
  const bool a0 = a.dim() == 0, b0 = b.dim() == 0;
  if (a0 == b0) return promote_types(a.dtype(), b.dtype());
  const DType dim_t = a0 ? b.dtype() : a.dtype();
  const DType zero_t = a0 ? a.dtype() : b.dtype();
  return category(zero_t) > category(dim_t) ? promote_types(dim_t, zero_t) : dim_t;
}

DType result_type(const Tensor& a, const Scalar& s) {
  if (category(s.kind()) <= category(a.dtype())) return a.dtype();
  return s.kind() == DType::Float64 ? DType::Float32 : DType::Int64;  // default dtypes
}

}  // namespace metagrad
