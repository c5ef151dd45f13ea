// Reductions: argument checks (dims, dtypes, empty extents), output allocation, the kernel call
// (kernels/cpu/reduce.cpp) and the report to autograd (Note [Ops report themselves]).
#include "tensor/reduce.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cpu/reduce.h"
#include "tensor/dispatch.h"
#include "kernels/strided.h"
#include "tensor/grad_mode.h"

namespace metagrad {

using kernels::ReduceOp;

namespace {

void check_input(const char* op, const Tensor& x) {
  MG_CHECK(x.defined(), op, "got an undefined tensor");
  MG_CHECK(x.dim() <= kernels::kMaxDims, op, "tensors of more than ", kernels::kMaxDims,
           " dims are not supported (shape ", shape_str(x.shape()), ")");
}

void check_floating(const char* op, const Tensor& x) {
  MG_CHECK(is_floating(x.dtype()), op, "needs a floating-point input, got ", dtype_name(x.dtype()),
           " (shape ", shape_str(x.shape()), "); cast it first, e.g. x.to(DType::Float32)");
}

// Casts without recording: the caller reports the whole op.
Tensor cast(const Tensor& t, DType d) {
  if (t.dtype() == d) return t;
  NoGradGuard g;
  return t.to(d);
}

// A reduction as the kernel sees it: the input's dims split into kept and reduced ones.
struct Plan {
  DimVector dims;             // reduced dims, wrapped and sorted; all of them when none given
  Shape out_shape;            // kept dims, plus size-1 reduced dims when keepdim
  Shape kept_shape, kept_strides, red_shape, red_strides;
  int64_t n_red = 1;  // elements per output
};

std::string dims_str(const DimVector& dims) {
  return shape_str(dims);
}

Plan make_plan(const char* op, const Tensor& x, const DimVector& dims, bool keepdim) {
  const int64_t nd = x.dim();
  // A 0-d tensor takes dim 0 / -1 (wrap_dim allows them) and has no dim to list or keep.
  // 0/1 flags in a DimVector: no heap allocation for up to six dims.
  DimVector reduced(static_cast<size_t>(std::max<int64_t>(nd, 1)), dims.empty() ? 1 : 0);
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(op, d, nd);
    MG_CHECK(!reduced[static_cast<size_t>(w)], op, "dim ", w, " appears more than once in dims ",
             dims_str(dims), " (input shape ", shape_str(x.shape()), ")");
    reduced[static_cast<size_t>(w)] = 1;
  }
  Plan p;
  for (int64_t d = 0; d < nd; ++d) {
    const int64_t size = x.shape()[static_cast<size_t>(d)];
    const int64_t stride = x.strides()[static_cast<size_t>(d)];
    if (reduced[static_cast<size_t>(d)]) {
      p.dims.push_back(d);
      p.red_shape.push_back(size);
      p.red_strides.push_back(stride);
      p.n_red *= size;
      if (keepdim) p.out_shape.push_back(1);
    } else {
      p.kept_shape.push_back(size);
      p.kept_strides.push_back(stride);
      p.out_shape.push_back(size);
    }
  }
  return p;
}

// max/min/argmax have no value over no elements.
void check_nonempty(const char* op, const Tensor& x, const Plan& p, const char* what) {
  if (p.n_red != 0) return;
  for (int64_t d : p.dims)
    if (x.shape()[static_cast<size_t>(d)] == 0)
      detail::fail(op, "cannot reduce over dim ", d, " of size 0 (input shape ",
                   shape_str(x.shape()), "): the ", what, " of no elements is undefined");
}

void launch(ReduceOp op, const Tensor& x, const Plan& p, void* values, int64_t* indices,
            double param) {
  const kernels::ReduceInput in{x.raw_data(),
                                     x.dtype(),
                                     static_cast<int>(p.kept_shape.size()),
                                     p.kept_shape.data(),
                                     p.kept_strides.data(),
                                     static_cast<int>(p.red_shape.size()),
                                     p.red_shape.data(),
                                     p.red_strides.data()};
  MG_KERNEL(x.device(), reduce, op, in, values, indices, param);
}

// Runs `op` over x (already in the dtype the kernel should see) and returns the values.
Tensor run_values(ReduceOp op, const Tensor& x, const Plan& p, double param = 0) {
  Tensor out =
      Tensor::empty(p.out_shape, x.options().dtype(kernels::reduce_out_dtype(op, x.dtype())));
  launch(op, x, p, out.raw_data(), nullptr, param);
  return out;
}

// Reports a values-only reduction of x; integer results have no derivative and are not reported.
void report(const char* name, const Tensor& x, const Tensor& out, const Plan& p, bool keepdim,
            double a = 0) {
  if (!is_floating(out.dtype())) return;
  // autograd args: dims = reduced dims (wrapped, sorted, all listed when none were given),
  // flag = keepdim, shape = input shape, a = p (norm) or correction (var/std)
  detail::record_op(name, {x}, {out},
                    {.dims = p.dims, .shape = x.shape(), .a = a, .flag = keepdim});
}

std::pair<Tensor, Tensor> extreme_dim(const char* name, const char* record_name, ReduceOp op,
                                      const Tensor& x, int64_t dim, bool keepdim) {
  check_input(name, x);
  const int64_t w = wrap_dim(name, dim, x.dim());
  const Plan p = make_plan(name, x, {dim}, keepdim);
  check_nonempty(name, x, p, name);
  Tensor values = Tensor::empty(p.out_shape, x.options());
  Tensor indices = Tensor::empty(p.out_shape, x.options().dtype(DType::Int64));
  launch(op, x, p, values.raw_data(), indices.data_ptr<int64_t>(), 0);
  if (is_floating(values.dtype())) {
    // autograd args: i = dim (wrapped), flag = keepdim, shape = input shape
    detail::record_op(record_name, {x}, {values, indices},
                      {.shape = x.shape(), .i = w, .flag = keepdim});
  }
  return {values, indices};
}

Tensor arg_extreme(const char* name, ReduceOp op, const Tensor& x, std::optional<int64_t> dim,
                   bool keepdim) {
  check_input(name, x);
  const Plan p = dim ? make_plan(name, x, {*dim}, keepdim) : make_plan(name, x, {}, keepdim);
  check_nonempty(name, x, p, name);
  Tensor indices = Tensor::empty(p.out_shape, x.options().dtype(DType::Int64));
  launch(op, x, p, nullptr, indices.data_ptr<int64_t>(), 0);
  return indices;  // integer: not reported to autograd
}

Tensor extreme(const char* name, const char* record_name, ReduceOp op, const Tensor& x,
               const DimVector& dims, bool keepdim) {
  check_input(name, x);
  const Plan p = make_plan(name, x, dims, keepdim);
  check_nonempty(name, x, p, name);
  Tensor out = run_values(op, x, p);
  report(record_name, x, out, p, keepdim);
  return out;
}

Tensor var_std(const char* name, ReduceOp op, const Tensor& x, const DimVector& dims,
               double correction, bool keepdim) {
  check_input(name, x);
  check_floating(name, x);
  const Plan p = make_plan(name, x, dims, keepdim);
  Tensor out = run_values(op, x, p, correction);
  report(name, x, out, p, keepdim, correction);
  return out;
}

}  // namespace

Tensor sum(const Tensor& x) {
  return sum(x, {});
}
Tensor sum(const Tensor& x, const DimVector& dims, bool keepdim,
           std::optional<DType> dtype) {
  check_input("sum", x);
  // The plan holds the strides of the tensor the kernel reads: a cast copy is laid out anew.
  const Tensor xin = dtype ? cast(x, *dtype) : x;
  const Plan p = make_plan("sum", xin, dims, keepdim);
  Tensor out = run_values(ReduceOp::Sum, xin, p);
  // An integer dtype other than int64: the int64 sum wrapped to it, as torch's.
  if (dtype) out = cast(out, *dtype);
  report("sum", x, out, p, keepdim);
  return out;
}

Tensor mean(const Tensor& x) {
  return mean(x, {});
}
Tensor mean(const Tensor& x, const DimVector& dims, bool keepdim) {
  check_input("mean", x);
  check_floating("mean", x);
  const Plan p = make_plan("mean", x, dims, keepdim);
  Tensor out = run_values(ReduceOp::Mean, x, p);
  report("mean", x, out, p, keepdim);
  return out;
}

Tensor var(const Tensor& x) {
  return var(x, {});
}
Tensor var(const Tensor& x, const DimVector& dims, double correction, bool keepdim) {
  return var_std("var", ReduceOp::Var, x, dims, correction, keepdim);
}
Tensor std(const Tensor& x) {
  return metagrad::std(x, {});
}
Tensor std(const Tensor& x, const DimVector& dims, double correction, bool keepdim) {
  return var_std("std", ReduceOp::Std, x, dims, correction, keepdim);
}

Tensor prod(const Tensor& x) {
  return prod(x, {});
}
Tensor prod(const Tensor& x, const DimVector& dims, bool keepdim) {
  check_input("prod", x);
  const Plan p = make_plan("prod", x, dims, keepdim);
  Tensor out = run_values(ReduceOp::Prod, x, p);
  report("prod", x, out, p, keepdim);
  return out;
}

Tensor max(const Tensor& x) {
  return extreme("max", "max", ReduceOp::Max, x, {}, false);
}
Tensor min(const Tensor& x) {
  return extreme("min", "min", ReduceOp::Min, x, {}, false);
}
Tensor amax(const Tensor& x, const DimVector& dims, bool keepdim) {
  return extreme("amax", "amax", ReduceOp::Max, x, dims, keepdim);
}
Tensor amin(const Tensor& x, const DimVector& dims, bool keepdim) {
  return extreme("amin", "amin", ReduceOp::Min, x, dims, keepdim);
}

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) {
  return extreme_dim("max", "max_dim", ReduceOp::ArgMax, x, dim, keepdim);
}
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) {
  return extreme_dim("min", "min_dim", ReduceOp::ArgMin, x, dim, keepdim);
}

Tensor argmax(const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
  return arg_extreme("argmax", ReduceOp::ArgMax, x, dim, keepdim);
}
Tensor argmin(const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
  return arg_extreme("argmin", ReduceOp::ArgMin, x, dim, keepdim);
}

Tensor logsumexp(const Tensor& x, const DimVector& dims, bool keepdim) {
  check_input("logsumexp", x);
  const Tensor xin = is_floating(x.dtype()) ? x : cast(x, DType::Float32);
  const Plan p = make_plan("logsumexp", xin, dims, keepdim);  // xin's strides, as in sum
  Tensor out = run_values(ReduceOp::LogSumExp, xin, p);
  report("logsumexp", x, out, p, keepdim);
  return out;
}

Tensor norm(const Tensor& x, double p, const DimVector& dims, bool keepdim) {
  check_input("norm", x);
  check_floating("norm", x);
  MG_CHECK(!std::isnan(p), "norm", "p must be a number, got NaN");
  const Plan plan = make_plan("norm", x, dims, keepdim);
  if (std::isinf(p)) check_nonempty("norm", x, plan, p > 0 ? "max |x|" : "min |x|");
  Tensor out = run_values(ReduceOp::Norm, x, plan, p);
  report("norm", x, out, plan, keepdim, p);
  return out;
}

}  // namespace metagrad
