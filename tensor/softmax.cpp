// softmax / log_softmax: argument checks, the input made contiguous, the output allocated, one
// kernel call (kernels/cpu/softmax.cpp or kernels/cuda/softmax.cu) and the report to autograd
// (Note [Ops report themselves]).
#include "tensor/softmax.h"

#include "kernels/cpu/softmax.h"
#include "tensor/dispatch.h"
#include "tensor/grad_mode.h"

namespace metagrad {

namespace {

Tensor softmax_impl(const char* op, bool log, const Tensor& x, int64_t dim) {
  MG_CHECK(x.defined(), op, "got an undefined tensor");
  MG_CHECK(x.is_floating_point(), op, "expected a floating-point input, got ",
           dtype_name(x.dtype()), " (shape ", shape_str(x.shape()),
           "); cast it first, e.g. x.to(DType::Float32)");
  const int64_t d = wrap_dim(op, dim, x.dim());  // a 0-d input takes 0 and -1
  // The kernel sees [outer, n, inner] with the softmax over n (Note [Fused softmax on the CPU]).
  int64_t outer = 1, n = 1, inner = 1;
  for (int64_t k = 0; k < x.dim(); ++k) {
    const int64_t s = x.size(k);
    if (k < d)
      outer *= s;
    else if (k == d)
      n = s;
    else
      inner *= s;
  }
  Tensor xc;
  {
    NoGradGuard no_grad;  // the copy is part of this op, not an op of its own
    xc = x.contiguous();
  }
  Tensor out = Tensor::empty(x.shape(), x.options());
  if (out.numel() > 0)
    MG_KERNEL(x.device(), softmax, x.dtype(), log, outer, n, inner, xc.raw_data(), out.raw_data());
  // autograd args: i = dim (wrapped)
  detail::record_op(op, {x}, {out}, {.i = d});
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_impl("softmax", false, x, dim);
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_impl("log_softmax", true, x, dim);
}

}  // namespace metagrad
