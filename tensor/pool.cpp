// Pooling ops (tensor/pool.h): argument checks, copies of strided operands, output allocation,
// the kernel call (kernels/cpu/pool.cpp) and the report to autograd (Note [Ops report
// themselves] in tensor.h). Empty tensors are handled here; the kernels see sizes >= 1.
#include "tensor/pool.h"

#include "kernels/cpu/pool.h"
#include "tensor/dispatch.h"
#include "tensor/grad_mode.h"

namespace metagrad {

namespace {

using kernels::Pool2dGeometry;

void check_operand(const char* op, const Tensor& t, const char* what) {
  MG_CHECK(t.defined(), op, "got an undefined ", what);
}

void check_floating(const char* op, const Tensor& t, const char* what) {
  MG_CHECK(is_floating(t.dtype()), op, "expected a float32 or float64 ", what, ", got ",
           dtype_name(t.dtype()));
}

std::string pair_str(const std::array<int64_t, 2>& p) {
  return shape_str({p[0], p[1]});
}

// The stride with 0 replaced by the kernel size.
Pool2dParams resolved(Pool2dParams p) {
  for (int d = 0; d < 2; ++d)
    if (p.stride[d] == 0) p.stride[d] = p.kernel[d];
  return p;
}

// Every check on the input shape and the parameters, and the sizes of the pooling.
Pool2dGeometry geometry(const char* op, const Shape& x, const Pool2dParams& p) {
  MG_CHECK(x.size() == 4, op, "expected a 4-d input [N, C, H, W], got a ", x.size(),
           "-d input of shape ", shape_str(x));
  MG_CHECK(x[2] >= 1 && x[3] >= 1, op,
           "expected an input with non-zero height and width, got shape ", shape_str(x));
  for (int d = 0; d < 2; ++d) {
    MG_CHECK(p.kernel[d] >= 1, op, "kernel size must be positive, got ", pair_str(p.kernel));
    MG_CHECK(p.stride[d] >= 1, op, "stride must be positive, got ", pair_str(p.stride));
    MG_CHECK(p.padding[d] >= 0 && p.padding[d] <= p.kernel[d] / 2, op, "padding ",
             pair_str(p.padding), " must be non-negative and at most half of the kernel size ",
             pair_str(p.kernel));
  }
  const int64_t ph = checked_add(op, "the padded height", x[2], 2 * p.padding[0]),
                pw = checked_add(op, "the padded width", x[3], 2 * p.padding[1]);
  MG_CHECK(p.kernel[0] <= ph && p.kernel[1] <= pw, op, "kernel of size ", pair_str(p.kernel),
           " is larger than the padded input of size ", shape_str({ph, pw}), " (input shape ",
           shape_str(x), ", padding ", pair_str(p.padding), ")");
  (void)checked_mul(op, "the window size", p.kernel[0], p.kernel[1]);  // avg's divisor
  Pool2dGeometry g{};
  g.planes = x[0] * x[1], g.h = x[2], g.w = x[3];
  g.kh = p.kernel[0], g.kw = p.kernel[1];
  g.sh = p.stride[0], g.sw = p.stride[1];
  g.ph = p.padding[0], g.pw = p.padding[1];
  g.oh = pool2d_output_size(g.h, g.kh, g.sh, g.ph);
  g.ow = pool2d_output_size(g.w, g.kw, g.sw, g.pw);
  return g;
}

Shape output_shape(const Shape& x, const Pool2dGeometry& g) {
  return {x[0], x[1], g.oh, g.ow};
}

void check_grad_out(const char* op, const Tensor& grad_out, const Shape& expected,
                    const Shape& input_shape) {
  MG_CHECK(grad_out.shape() == expected, op, "expected grad_out of shape ", shape_str(expected),
           " (the output for input ", shape_str(input_shape), "), got ",
           shape_str(grad_out.shape()));
}

// The operand as the kernels want it: contiguous. The copy is not part of the op's math.
Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  NoGradGuard g;
  return t.contiguous();
}

// Note [Pooling parameters in OpArgs]: every pooling op reports
//   dims = {kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w} (stride resolved),
//   shape = the input's shape, flag = count_include_pad (average pooling);
// autograd/derivatives.cpp decodes them back into a Pool2dParams.
detail::OpArgs pool_args(const Pool2dParams& p, const Shape& input_shape, bool flag = false) {
  return {.dims = {p.kernel[0], p.kernel[1], p.stride[0], p.stride[1], p.padding[0], p.padding[1]},
          .shape = input_shape,
          .flag = flag};
}

}  // namespace

int64_t pool2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad) {
  return (in + 2 * pad - kernel) / stride + 1;
}

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, const Pool2dParams& params) {
  const char* op = "max_pool2d";
  check_operand(op, input, "input");
  check_floating(op, input, "input");
  const Pool2dParams p = resolved(params);
  const Pool2dGeometry g = geometry(op, input.shape(), p);
  const Shape out_shape = output_shape(input.shape(), g);
  Tensor out = Tensor::empty(out_shape, input.options());
  Tensor idx = Tensor::empty(out_shape, TensorOptions(DType::Int64).device(input.device()));
  if (g.planes > 0) {
    Tensor x = dense(input);
    MG_KERNEL(out.device(), max_pool2d_forward, out.dtype(), g, x.raw_data(), out.raw_data(),
                                     idx.data_ptr<int64_t>());
  }
  // autograd args: dims = {kh, kw, sh, sw, ph, pw}, shape = input shape; outputs {values,
  // indices} (the rule reads the indices)
  detail::record_op(op, {input}, {out, idx}, pool_args(p, input.shape()));
  return {out, idx};
}

Tensor max_pool2d(const Tensor& input, const Pool2dParams& params) {
  return max_pool2d_with_indices(input, params).first;
}

Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices,
                           const Shape& input_shape) {
  const char* op = "max_pool2d_backward";
  check_operand(op, grad_out, "grad_out");
  check_floating(op, grad_out, "grad_out");
  check_operand(op, indices, "indices");
  detail::check_same_device(op, {&grad_out, &indices});
  MG_CHECK(indices.dtype() == DType::Int64, op, "indices must be an int64 tensor, got ",
           dtype_name(indices.dtype()));
  MG_CHECK(input_shape.size() == 4, op, "expected a 4-d input shape [N, C, H, W], got ",
           shape_str(input_shape));
  MG_CHECK(grad_out.dim() == 4 && grad_out.size(0) == input_shape[0] &&
               grad_out.size(1) == input_shape[1],
           op, "expected grad_out of shape [", input_shape[0], ", ", input_shape[1],
           ", OH, OW] for input shape ", shape_str(input_shape), ", got ",
           shape_str(grad_out.shape()));
  MG_CHECK(indices.shape() == grad_out.shape(), op, "indices of shape ", shape_str(indices.shape()),
           " do not match grad_out of shape ", shape_str(grad_out.shape()));
  for (int64_t s : input_shape)
    MG_CHECK(s >= 0, op, "invalid input shape ", shape_str(input_shape));
  Tensor gx = Tensor::empty(input_shape, grad_out.options());
  if (gx.numel() > 0) {
    Pool2dGeometry g{};
    g.planes = input_shape[0] * input_shape[1], g.h = input_shape[2], g.w = input_shape[3];
    g.oh = grad_out.size(2), g.ow = grad_out.size(3);
    Tensor gy = dense(grad_out), ix = dense(indices);
    int64_t bad = 0;
    if (!MG_KERNEL(gx.device(), max_pool2d_backward, gx.dtype(), g, gy.raw_data(),
                   ix.data_ptr<int64_t>(), gx.raw_data(), &bad))
      detail::fail(op, "index ", bad, " is out of range for an input plane of ", g.h, " x ", g.w,
                   " = ", g.h * g.w, " elements");
  } else if (grad_out.numel() > 0) {
    detail::fail(op, "grad_out of shape ", shape_str(grad_out.shape()),
                 " has elements but the input shape ", shape_str(input_shape), " has none");
  }
  // autograd args: shape = input shape; inputs {grad_out, indices} (the rule reads the indices)
  detail::record_op(op, {grad_out, indices}, {gx}, {.shape = input_shape});
  return gx;
}

Tensor avg_pool2d(const Tensor& input, const Pool2dParams& params, bool count_include_pad) {
  const char* op = "avg_pool2d";
  check_operand(op, input, "input");
  check_floating(op, input, "input");
  const Pool2dParams p = resolved(params);
  const Pool2dGeometry g = geometry(op, input.shape(), p);
  Tensor out = Tensor::empty(output_shape(input.shape(), g), input.options());
  if (g.planes > 0) {
    Tensor x = dense(input);
    MG_KERNEL(out.device(), avg_pool2d_forward, out.dtype(), g, count_include_pad, x.raw_data(),
                                     out.raw_data());
  }
  // autograd args: dims = {kh, kw, sh, sw, ph, pw}, shape = input shape, flag = count_include_pad
  detail::record_op(op, {input}, {out}, pool_args(p, input.shape(), count_include_pad));
  return out;
}

Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& input_shape,
                           const Pool2dParams& params, bool count_include_pad) {
  const char* op = "avg_pool2d_backward";
  check_operand(op, grad_out, "grad_out");
  check_floating(op, grad_out, "grad_out");
  const Pool2dParams p = resolved(params);
  const Pool2dGeometry g = geometry(op, input_shape, p);
  check_grad_out(op, grad_out, output_shape(input_shape, g), input_shape);
  Tensor gx = Tensor::empty(input_shape, grad_out.options());
  if (g.planes > 0) {
    Tensor gy = dense(grad_out);
    MG_KERNEL(gx.device(), avg_pool2d_backward, gx.dtype(), g, count_include_pad, gy.raw_data(),
                                      gx.raw_data());
  }
  // autograd args: dims = {kh, kw, sh, sw, ph, pw}, shape = input shape, flag = count_include_pad
  detail::record_op(op, {grad_out}, {gx}, pool_args(p, input_shape, count_include_pad));
  return gx;
}

}  // namespace metagrad
