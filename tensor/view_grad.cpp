#include "tensor/view_grad.h"

#include "tensor/creation.h"
#include "tensor/grad_mode.h"

namespace metagrad {

Tensor slice_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, int64_t start,
                      int64_t end, int64_t step) {
  Tensor out = zeros(input_shape, grad.options());
  {
    NoGradGuard g;
    out.slice(dim, start, end, step).copy_(grad);
  }
  // autograd args: dims = [start, end, step], i = dim, shape = input shape
  detail::record_op("slice_backward", {grad}, {out},
                    {.dims = {start, end, step}, .shape = input_shape, .i = dim});
  return out;
}

Tensor select_backward(const Tensor& grad, const Shape& input_shape, int64_t dim, int64_t index) {
  Tensor out = zeros(input_shape, grad.options());
  {
    NoGradGuard g;
    out.select(dim, index).copy_(grad);
  }
  // autograd args: i = dim, j = index, shape = input shape
  detail::record_op("select_backward", {grad}, {out}, {.shape = input_shape, .i = dim, .j = index});
  return out;
}

}  // namespace metagrad
