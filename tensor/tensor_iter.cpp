#include "tensor/tensor_iter.h"

#include "tensor/dispatch.h"
#include "tensor/grad_mode.h"

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

namespace metagrad::detail {

Device common_device(const char* op, std::initializer_list<const Tensor*> ts) {
  // The first tensor that is not a CPU scalar decides; CPU scalars join any device.
  const Tensor* lead = nullptr;
  for (const Tensor* t : ts)
    if (t->defined() && !(t->device().is_cpu() && t->dim() == 0)) {
      lead = t;
      break;
    }
  if (!lead) return Device::cpu();
  for (const Tensor* t : ts) {
    if (!t->defined() || t->device() == lead->device()) continue;
    MG_CHECK(t->device().is_cpu() && t->dim() == 0, op, "expected all tensors on one device, got ",
             lead->device().str(), " (shape ", shape_str(lead->shape()), ") and ",
             t->device().str(), " (shape ", shape_str(t->shape()), ")");
  }
  return lead->device();
}

void check_same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!first) {
      first = t;
      continue;
    }
    MG_CHECK(t->device() == first->device(), op, "expected all tensors on one device, got ",
             first->device().str(), " (shape ", shape_str(first->shape()), ") and ",
             t->device().str(), " (shape ", shape_str(t->shape()), ")");
  }
}

Tensor adopt_device(const Tensor& t, Device d) {
  if (!t.defined() || t.device() == d) return t;
  NoGradGuard g;
  return t.detach().to(d);
}

}  // namespace metagrad::detail
