#include "tensor/tensor_iter.h"

namespace metagrad::detail {

Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  const size_t n = shape.size(), m = t.shape().size();
  Shape st(n, 0);
  for (size_t i = 0; i < m; ++i) {
    const size_t j = i + (n - m);
    st[j] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  }
  return st;
}

void check_no_internal_overlap(const char* op, const Tensor& t) {
  for (int64_t i = 0; i < t.dim(); ++i)
    MG_CHECK(!(t.strides()[i] == 0 && t.shape()[i] > 1), op,
             "cannot write in place into a tensor of shape ", shape_str(t.shape()),
             " with strides ", shape_str(t.strides()),
             ": several elements share one memory location (an expanded view); clone() it first");
}

}  // namespace metagrad::detail
