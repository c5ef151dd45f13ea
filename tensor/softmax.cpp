// softmax / log_softmax: argument checks, the input made contiguous, the output allocated, one
// kernel call (kernels/cpu/softmax.cpp or kernels/cuda/softmax.cu) and the report to autograd
// (Note [Ops report themselves]).
#include "tensor/softmax.h"

#include "kernels/cpu/softmax.h"
#include "tensor/dispatch.h"
#include "tensor/grad_mode.h"

namespace metagrad {

namespace {

// [outer, n, inner] around dim d (Note [Fused softmax on the CPU]).
struct Around {
  int64_t outer = 1, n = 1, inner = 1;
};
Around around(const Shape& shape, int64_t d) {
  Around a;
  for (int64_t k = 0; k < static_cast<int64_t>(shape.size()); ++k) {
    const int64_t s = shape[static_cast<size_t>(k)];
    if (k < d)
      a.outer *= s;
    else if (k == d)
      a.n = s;
    else
      a.inner *= s;
  }
  return a;
}

void check_floating_input(const char* op, const Tensor& x) {
  MG_CHECK(x.defined(), op, "got an undefined tensor");
  MG_CHECK(x.is_floating_point(), op, "expected a floating-point input, got ",
           dtype_name(x.dtype()), " (shape ", shape_str(x.shape()),
           "); cast it first, e.g. x.to(DType::Float32)");
}

Tensor softmax_impl(const char* op, bool log, const Tensor& x, int64_t dim) {
  check_floating_input(op, x);
  const int64_t d = wrap_dim(op, dim, x.dim());  // a 0-d input takes 0 and -1
  const auto [outer, n, inner] = around(x.shape(), d);
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

Tensor softmax_backward_impl(const char* op, bool log, const Tensor& grad, const Tensor& output,
                             int64_t dim) {
  check_floating_input(op, output);
  MG_CHECK(grad.defined() && grad.dtype() == output.dtype() && grad.shape() == output.shape(), op,
           "expected a gradient of the output's shape ", shape_str(output.shape()), " and dtype ",
           dtype_name(output.dtype()), ", got ",
           grad.defined() ? shape_str(grad.shape()) + " " + dtype_name(grad.dtype())
                          : std::string("an undefined tensor"));
  detail::check_same_device(op, {&grad, &output});
  const int64_t d = wrap_dim(op, dim, output.dim());
  const auto [outer, n, inner] = around(output.shape(), d);
  Tensor g, y;
  {
    NoGradGuard no_grad;  // the copies are part of this op
    g = grad.contiguous();
    y = output.contiguous();
  }
  Tensor dx = Tensor::empty(output.shape(), output.options());
  if (dx.numel() > 0)
    MG_KERNEL(output.device(), softmax_backward, output.dtype(), log, outer, n, inner,
              g.raw_data(), y.raw_data(), dx.raw_data());
  // No derivative entry: a graph through this op throws when differentiated (softmax.h).
  detail::record_op(op, {grad, output}, {dx}, {.i = d});
  return dx;
}

// The checks shared by cross_entropy_loss and its backward.
void check_cross_entropy(const char* op, const Tensor& logits, const Tensor& target) {
  MG_CHECK(logits.defined() && target.defined(), op, "got an undefined tensor");
  MG_CHECK(logits.is_floating_point(), op, "expected floating-point logits, got ",
           dtype_name(logits.dtype()), " (shape ", shape_str(logits.shape()), ")");
  MG_CHECK(logits.dim() == 2 && logits.size(1) >= 1, op,
           "expected logits of shape (N, C) with C >= 1, got ", shape_str(logits.shape()));
  MG_CHECK(target.dtype() == DType::Int64, op, "expected an int64 target of class indices, got ",
           dtype_name(target.dtype()));
  MG_CHECK(target.shape() == Shape{logits.size(0)}, op, "target of shape ",
           shape_str(target.shape()), " does not match logits of shape ", shape_str(logits.shape()),
           " (expected [", logits.size(0), "])");
  detail::check_same_device(op, {&logits, &target});
}

}  // namespace

Tensor cross_entropy_loss(const Tensor& logits, const Tensor& target) {
  const char* op = "cross_entropy";
  check_cross_entropy(op, logits, target);
  const int64_t rows = logits.size(0), n = logits.size(1);
  Tensor x, t;
  {
    NoGradGuard no_grad;  // the copies are part of this op
    x = logits.contiguous();
    t = target.contiguous();
  }
  Tensor loss = Tensor::empty({rows}, logits.options());
  int64_t bad = 0;
  if (rows > 0 && !MG_KERNEL(x.device(), cross_entropy_forward, x.dtype(), rows, n, x.raw_data(),
                             t.data_ptr<int64_t>(), loss.raw_data(), &bad))
    detail::fail(op, "target ", bad, " is out of bounds for ", n, " classes (labels lie in [0, ", n,
                 "))");
  detail::record_op("cross_entropy_loss", {logits, target}, {loss}, {});
  return loss;
}

Tensor cross_entropy_loss_backward(const Tensor& grad, const Tensor& logits, const Tensor& target) {
  const char* op = "cross_entropy_loss_backward";
  check_cross_entropy(op, logits, target);
  MG_CHECK(
      grad.defined() && grad.dtype() == logits.dtype() && grad.shape() == Shape{logits.size(0)}, op,
      "expected a gradient of shape [", logits.size(0), "] and dtype ", dtype_name(logits.dtype()));
  detail::check_same_device(op, {&grad, &logits});
  Tensor x, t, g;
  {
    NoGradGuard no_grad;
    x = logits.contiguous();
    t = target.contiguous();
    g = grad.contiguous();
  }
  Tensor dx = Tensor::empty(logits.shape(), logits.options());
  int64_t bad = 0;
  if (dx.numel() > 0 &&
      !MG_KERNEL(x.device(), cross_entropy_backward, x.dtype(), x.size(0), x.size(1), g.raw_data(),
                 x.raw_data(), t.data_ptr<int64_t>(), dx.raw_data(), &bad))
    detail::fail(op, "target ", bad, " is out of bounds for ", x.size(1),
                 " classes (labels lie in [0, ", x.size(1), "))");
  // No derivative entry: a graph through this op throws when differentiated (softmax.h).
  detail::record_op(op, {grad, logits, target}, {dx}, {});
  return dx;
}

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_impl("softmax", false, x, dim);
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_impl("log_softmax", true, x, dim);
}

Tensor softmax_backward(const Tensor& grad, const Tensor& output, int64_t dim) {
  return softmax_backward_impl("softmax_backward", false, grad, output, dim);
}

Tensor log_softmax_backward(const Tensor& grad, const Tensor& output, int64_t dim) {
  return softmax_backward_impl("log_softmax_backward", true, grad, output, dim);
}

}  // namespace metagrad
