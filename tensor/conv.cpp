// Convolution ops (tensor/conv.h): argument checks, copies of strided operands, output
// allocation, the kernel call (kernels/cpu/conv.cpp) and the report to autograd (Note [Ops
// report themselves] in tensor.h). Empty tensors are handled here; the kernels see sizes >= 1.
#include "tensor/conv.h"

#include "kernels/cpu/blas.h"
#include "kernels/cpu/conv.h"
#include "tensor/dispatch.h"
#include "tensor/creation.h"
#include "tensor/grad_mode.h"

namespace metagrad {

namespace {

using kernels::Conv2dGeometry;

void check_operand(const char* op, const Tensor& t, const char* what) {
  MG_CHECK(t.defined(), op, "got an undefined ", what);
  MG_CHECK(is_floating(t.dtype()), op, "expected a float32 or float64 ", what, ", got ",
           dtype_name(t.dtype()));
}

void check_same_dtype(const char* op, const Tensor& a, const char* what_a, const Tensor& b,
                      const char* what_b) {
  MG_CHECK(a.dtype() == b.dtype(), op, what_a, " has dtype ", dtype_name(a.dtype()), " but ",
           what_b, " has dtype ", dtype_name(b.dtype()));
}

std::string pair_str(const std::array<int64_t, 2>& p) {
  return shape_str({p[0], p[1]});
}

// Every check on the shapes and parameters of one convolution, and its sizes.
Conv2dGeometry geometry(const char* op, const Shape& x, const Shape& w, const Conv2dParams& p) {
  MG_CHECK(x.size() == 4, op, "expected a 4-d input [N, C, H, W], got a ", x.size(),
           "-d input of shape ", shape_str(x));
  MG_CHECK(w.size() == 4, op, "expected a 4-d weight [O, C/groups, kH, kW], got a ", w.size(),
           "-d weight of shape ", shape_str(w));
  for (int d = 0; d < 2; ++d) {
    MG_CHECK(p.stride[d] >= 1, op, "stride must be positive, got ", pair_str(p.stride));
    MG_CHECK(p.dilation[d] >= 1, op, "dilation must be positive, got ", pair_str(p.dilation));
    MG_CHECK(p.padding[d] >= 0, op, "padding must be non-negative, got ", pair_str(p.padding));
  }
  const int64_t groups = p.groups;
  MG_CHECK(groups >= 1, op, "groups must be positive, got ", groups);
  MG_CHECK(x[1] % groups == 0, op, "groups ", groups, " does not divide the ", x[1],
           " input channels of the input of shape ", shape_str(x));
  MG_CHECK(w[0] % groups == 0, op, "groups ", groups, " does not divide the ", w[0],
           " output channels of the weight of shape ", shape_str(w));
  MG_CHECK(w[1] == x[1] / groups && w[2] >= 1 && w[3] >= 1, op, "expected weight of shape [O, ",
           x[1] / groups, ", kH, kW] (O divisible by groups ", groups,
           ", kH, kW >= 1) for input of shape ", shape_str(x), ", got ", shape_str(w));
  const char* ek = "the dilated kernel size";
  const int64_t ekh = checked_add(op, ek, checked_mul(op, ek, p.dilation[0], w[2] - 1), 1),
                ekw = checked_add(op, ek, checked_mul(op, ek, p.dilation[1], w[3] - 1), 1);
  const char* padded = "the padded input size";
  const int64_t ph = checked_add(op, padded, x[2], checked_mul(op, padded, 2, p.padding[0])),
                pw = checked_add(op, padded, x[3], checked_mul(op, padded, 2, p.padding[1]));
  MG_CHECK(ekh <= ph && ekw <= pw, op, "kernel of size ", shape_str({ekh, ekw}),
           " (dilation included) is larger than the padded input of size ", shape_str({ph, pw}),
           " (input shape ", shape_str(x), ", padding ", pair_str(p.padding), ")");
  Conv2dGeometry g{};
  g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3];
  g.o = w[0], g.kh = w[2], g.kw = w[3];
  g.sh = p.stride[0], g.sw = p.stride[1];
  g.ph = p.padding[0], g.pw = p.padding[1];
  g.dh = p.dilation[0], g.dw = p.dilation[1];
  g.groups = groups;
  g.oh = conv2d_output_size(g.h, g.kh, g.sh, g.ph, g.dh);
  g.ow = conv2d_output_size(g.w, g.kw, g.sw, g.pw, g.dw);
  // BLAS takes int sizes: the GEMM dimensions must fit.
  const int64_t k = w[1] * g.kh * g.kw, l = g.oh * g.ow;
  MG_CHECK(k <= kernels::cpu::kBlasMaxDim && l <= kernels::cpu::kBlasMaxDim &&
               g.o <= kernels::cpu::kBlasMaxDim,
           op, "input of shape ", shape_str(x), " with weight of shape ", shape_str(w),
           " is too large for the BLAS GEMM (sizes above 2^31 - 1)");
  return g;
}

Shape output_shape(const Conv2dGeometry& g) {
  return {g.n, g.o, g.oh, g.ow};
}

void check_grad_out(const char* op, const Tensor& grad_out, const Conv2dGeometry& g, const Shape& x,
                    const Shape& w) {
  MG_CHECK(grad_out.shape() == output_shape(g), op, "expected grad_out of shape ",
           shape_str(output_shape(g)), " (the output of conv2d for input ", shape_str(x),
           " and weight ", shape_str(w), "), got ", shape_str(grad_out.shape()));
}

// The operand as the kernels want it: contiguous. The copy is not part of the op's math, so it
// is not recorded (the op reports itself with its original inputs).
Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  NoGradGuard g;
  return t.contiguous();
}

// Note [Convolution parameters in OpArgs]: every convolution op reports
//   dims = {stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups};
// autograd/derivatives.cpp decodes them back into a Conv2dParams.
detail::OpArgs conv_args(const Conv2dParams& p, Shape shape = {}) {
  return {.dims = {p.stride[0], p.stride[1], p.padding[0], p.padding[1], p.dilation[0],
                   p.dilation[1], p.groups},
          .shape = std::move(shape)};
}

}  // namespace

int64_t conv2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dil) {
  return (in + 2 * pad - dil * (kernel - 1) - 1) / stride + 1;
}

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias,
              const Conv2dParams& params) {
  const char* op = "conv2d";
  check_operand(op, input, "input");
  check_operand(op, weight, "weight");
  const Conv2dGeometry g = geometry(op, input.shape(), weight.shape(), params);
  check_same_dtype(op, input, "input", weight, "weight");
  detail::check_same_device(op, {&input, &weight, &bias});
  if (bias.defined()) {
    check_operand(op, bias, "bias");
    check_same_dtype(op, input, "input", bias, "bias");
    MG_CHECK(bias.shape() == Shape{g.o}, op, "expected bias of shape ", shape_str({g.o}),
             " for weight of shape ", shape_str(weight.shape()), ", got ", shape_str(bias.shape()));
  }
  Tensor out = Tensor::empty(output_shape(g), input.options());
  if (out.numel() > 0) {
    if (g.c == 0) {  // no input channel: only the bias remains
      NoGradGuard ng;
      if (bias.defined())
        out.copy_(bias.reshape({1, g.o, 1, 1}));
      else
        out.zero_();
    } else {
      Tensor x = dense(input), w = dense(weight), b = bias.defined() ? dense(bias) : Tensor();
      MG_KERNEL(out.device(), conv2d_forward, out.dtype(), g, x.raw_data(), w.raw_data(),
                b.defined() ? b.raw_data() : nullptr, out.raw_data());
    }
  }
  // autograd args: dims = {sh, sw, ph, pw, dh, dw, groups}; inputs {input, weight[, bias]}
  if (bias.defined())
    detail::record_op(op, {input, weight, bias}, {out}, conv_args(params));
  else
    detail::record_op(op, {input, weight}, {out}, conv_args(params));
  return out;
}

Tensor conv2d_input_backward(const Tensor& grad_out, const Tensor& weight, const Shape& input_shape,
                             const Conv2dParams& params) {
  const char* op = "conv2d_input_backward";
  check_operand(op, grad_out, "grad_out");
  check_operand(op, weight, "weight");
  const Conv2dGeometry g = geometry(op, input_shape, weight.shape(), params);
  check_grad_out(op, grad_out, g, input_shape, weight.shape());
  check_same_dtype(op, grad_out, "grad_out", weight, "weight");
  detail::check_same_device(op, {&grad_out, &weight});
  Tensor gx = Tensor::empty(input_shape, grad_out.options());
  if (gx.numel() > 0) {
    if (grad_out.numel() == 0) {  // no filter: nothing flows back
      NoGradGuard ng;
      gx.zero_();
    } else {
      Tensor gy = dense(grad_out), w = dense(weight);
      MG_KERNEL(gx.device(), conv2d_input_backward, gx.dtype(), g, gy.raw_data(), w.raw_data(),
                gx.raw_data());
    }
  }
  // autograd args: dims = {sh, sw, ph, pw, dh, dw, groups}, shape = input_shape
  detail::record_op(op, {grad_out, weight}, {gx}, conv_args(params, input_shape));
  return gx;
}

Tensor conv2d_weight_backward(const Tensor& grad_out, const Tensor& input,
                              const Shape& weight_shape, const Conv2dParams& params) {
  const char* op = "conv2d_weight_backward";
  check_operand(op, grad_out, "grad_out");
  check_operand(op, input, "input");
  const Conv2dGeometry g = geometry(op, input.shape(), weight_shape, params);
  check_grad_out(op, grad_out, g, input.shape(), weight_shape);
  check_same_dtype(op, grad_out, "grad_out", input, "input");
  detail::check_same_device(op, {&grad_out, &input});
  Tensor gw = Tensor::empty(weight_shape, grad_out.options());
  if (gw.numel() > 0) {
    if (grad_out.numel() == 0) {  // no image
      NoGradGuard ng;
      gw.zero_();
    } else {
      Tensor gy = dense(grad_out), x = dense(input);
      MG_KERNEL(gw.device(), conv2d_weight_backward, gw.dtype(), g, gy.raw_data(), x.raw_data(),
                gw.raw_data());
    }
  }
  // autograd args: dims = {sh, sw, ph, pw, dh, dw, groups}, shape = weight_shape
  detail::record_op(op, {grad_out, input}, {gw}, conv_args(params, weight_shape));
  return gw;
}

}  // namespace metagrad
