// Indexing and joining ops: argument checks, index validation, output allocation, the kernel
// call (kernels/cpu/index.cpp, or the strided copy for cat) and the report to autograd
// (Note [Ops report themselves] in tensor.h).
#include "tensor/indexing.h"

#include <algorithm>

#include "kernels/cpu/index.h"
#include "tensor/creation.h"
#include "tensor/dispatch.h"
#include "tensor/grad_mode.h"
#include "tensor/tensor_iter.h"
#include "tensor/type_promotion.h"

namespace metagrad {

namespace {

void check_operand(const char* op, const Tensor& t, const char* what) {
  MG_CHECK(t.defined(), op, "got an undefined ", what);
}

// Shape and strides with a 0-d tensor seen as 1-d of size 1, so that dim 0 always exists.
struct Geom {
  Shape shape, strides;
};
Geom geom(const Tensor& t) {
  if (t.dim() == 0) return {{1}, {1}};
  return {t.shape(), t.strides()};
}

kernels::Extent extent_of(const Shape& s) {
  return detail::extent(s);
}

[[noreturn]] void fail_bounds(const char* op, int64_t value, int64_t dim, int64_t size) {
  detail::fail(op, "index ", value, " is out of bounds for dimension ", dim, " with size ", size);
}

// Throws for the first index (row-major) outside [0, size), if there is one.
void check_indices(const char* op, const Tensor& index, const Geom& g, int64_t dim, int64_t size) {
  int64_t bad = 0;
  if (MG_KERNEL(index.device(), find_index_out_of_range, index.dtype(), extent_of(g.shape),
                {index.raw_data(), g.strides.data()}, size, &bad))
    fail_bounds(op, bad, dim, size);
}

// ---- scatter_add ------------------------------------------------------------------------

// The checks shared by scatter_add and scatter_add_; returns the wrapped dim.
int64_t check_scatter(const char* op, const Tensor& self, int64_t dim, const Tensor& index,
                      const Tensor& src) {
  check_operand(op, self, "input");
  check_operand(op, index, "index");
  check_operand(op, src, "src");
  detail::check_same_device(op, {&self, &index, &src});
  MG_CHECK(index.dtype() == DType::Int64, op, "index must be an int64 tensor, got ",
           dtype_name(index.dtype()));
  MG_CHECK(src.dtype() == self.dtype(), op, "src has dtype ", dtype_name(src.dtype()),
           " but the input has dtype ", dtype_name(self.dtype()));
  // A 0-d operand counts as 1-d (as PyTorch): geom() sees it as [1].
  const Shape ss = geom(self).shape, is = geom(index).shape, rs = geom(src).shape;
  MG_CHECK(is.size() == ss.size() && rs.size() == ss.size(), op,
           "input, index and src must have the same number of dimensions, got shapes ",
           shape_str(self.shape()), ", ", shape_str(index.shape()), " and ",
           shape_str(src.shape()));
  const int64_t d = wrap_dim(op, dim, self.dim());
  for (size_t k = 0; k < is.size(); ++k) {
    MG_CHECK(is[k] <= rs[k], op, "index of shape ", shape_str(index.shape()),
             " is larger than src of shape ", shape_str(src.shape()), " in dimension ", k);
    MG_CHECK(static_cast<int64_t>(k) == d || is[k] <= ss[k], op, "index of shape ",
             shape_str(index.shape()), " is larger than the input of shape ",
             shape_str(self.shape()), " in dimension ", k, " (only dimension ", d,
             " may be larger)");
  }
  return d;
}

// self[.. index ..] += src after every index has been checked; self is written only then. On
// the GPU the kernel checks them itself and a bad one is raised at the next wait (Note
// [Deferred device errors] in kernels/cuda/runtime.h): no host wait here.
void scatter_add_into(const char* op, Tensor& self, int64_t d, Tensor index, Tensor src) {
  detail::check_no_internal_overlap(op, self);
  {
    NoGradGuard g;  // copies that protect against aliasing are not part of the op's math
    if (index.storage() == self.storage()) index = index.clone();
    if (src.storage() == self.storage()) src = src.clone();
  }
  const Geom gs = geom(self), gi = geom(index), gsrc = geom(src);
  if (!self.device().is_cuda()) check_indices(op, index, gi, d, gs.shape[d]);
  MG_KERNEL(self.device(), scatter_add, self.dtype(), index.dtype(), extent_of(gi.shape),
            static_cast<int>(d), {self.raw_data(), gs.strides.data()},
            {index.raw_data(), gi.strides.data()}, {src.raw_data(), gsrc.strides.data()},
            gs.strides[d], gs.shape[d]);
}

const char* pad_mode_name(PadMode m) {
  switch (m) {
    case PadMode::Constant:
      return "constant";
    case PadMode::Reflect:
      return "reflect";
    case PadMode::Replicate:
      return "replicate";
  }
  return "?";
}

}  // namespace

namespace detail {
int64_t pad_source(PadMode mode, int64_t o, int64_t left, int64_t n) {
  const int64_t i = o - left;
  switch (mode) {
    case PadMode::Constant:
      return i >= 0 && i < n ? i : -1;
    case PadMode::Reflect:
      return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
    case PadMode::Replicate:
      return std::clamp<int64_t>(i, 0, n - 1);
  }
  return -1;
}
}  // namespace detail

// ---- gather / index_select ----------------------------------------------------------------

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "gather";
  check_operand(op, x, "input");
  check_operand(op, index, "index");
  detail::check_same_device(op, {&x, &index});
  MG_CHECK(index.dtype() == DType::Int64, op, "index must be an int64 tensor, got ",
           dtype_name(index.dtype()));
  // A 0-d input or index counts as 1-d (as PyTorch): geom() sees it as [1].
  const Shape xs0 = geom(x).shape, is0 = geom(index).shape;
  MG_CHECK(is0.size() == xs0.size(), op, "index of shape ", shape_str(index.shape()),
           " must have as many dimensions as the input of shape ", shape_str(x.shape()));
  const int64_t d = wrap_dim(op, dim, x.dim());
  for (size_t k = 0; k < xs0.size(); ++k)
    MG_CHECK(static_cast<int64_t>(k) == d || is0[k] <= xs0[k], op, "index of shape ",
             shape_str(index.shape()), " is larger than the input of shape ", shape_str(x.shape()),
             " in dimension ", k, " (only dimension ", d, " may be larger)");
  Tensor out = Tensor::empty(index.shape(), x.options());
  const Geom gx = geom(x), gi = geom(index), go = geom(out);
  Shape xs = gx.strides;
  xs[d] = 0;  // the index supplies the coordinate along dim
  if (!MG_KERNEL(x.device(), gather, dtype_size(x.dtype()), index.dtype(), extent_of(gi.shape),
                 {out.raw_data(), go.strides.data()}, {x.raw_data(), xs.data()},
                 {index.raw_data(), gi.strides.data()}, gx.strides[d], gx.shape[d])) {
    check_indices(op, index, gi, d, gx.shape[d]);
    detail::fail(op, "index out of bounds");  // not reached: the check above finds it
  }
  // autograd args: i = dim (wrapped), shape = input shape
  if (out.is_floating_point())
    detail::record_op("gather", {x, index}, {out}, {.shape = x.shape(), .i = d});
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "index_select";
  check_operand(op, x, "input");
  check_operand(op, index, "index");
  detail::check_same_device(op, {&x, &index});
  MG_CHECK(index.dtype() == DType::Int64 || index.dtype() == DType::Int32, op,
           "index must be an int64 or int32 tensor, got ", dtype_name(index.dtype()));
  MG_CHECK(index.dim() <= 1, op, "index must be 0-d or 1-d, got shape ", shape_str(index.shape()));
  const int64_t d = wrap_dim(op, dim, x.dim());
  const int64_t n = index.numel();
  MG_CHECK(x.dim() > 0 || n == 1, op, "a 0-d input takes exactly one index, got ", n);
  const Geom gx = geom(x);
  Shape shape = gx.shape;
  shape[d] = n;
  Tensor out = Tensor::empty(x.dim() == 0 ? Shape{} : shape, x.options());
  // The 1-d index is seen as a tensor of out's shape that varies only along dim.
  Shape is(shape.size(), 0), xs = gx.strides, os = contiguous_strides(shape);
  is[d] = index.dim() == 1 ? index.stride(0) : 0;
  xs[d] = 0;
  const Geom gi{{n}, {is[d]}};
  if (!MG_KERNEL(x.device(), gather, dtype_size(x.dtype()), index.dtype(), extent_of(shape),
                 {out.raw_data(), os.data()}, {x.raw_data(), xs.data()},
                 {index.raw_data(), is.data()}, gx.strides[d], gx.shape[d])) {
    check_indices(op, index, gi, d, gx.shape[d]);
    detail::fail(op, "index out of bounds");  // not reached: the check above finds it
  }
  // An empty output (another dim is 0) gave the kernel nothing to check.
  if (out.numel() == 0) check_indices(op, index, gi, d, gx.shape[d]);
  // autograd args: i = dim (wrapped), shape = input shape
  if (out.is_floating_point())
    detail::record_op("index_select", {x, index}, {out}, {.shape = x.shape(), .i = d});
  return out;
}

// ---- scatter_add ------------------------------------------------------------------------

Tensor& scatter_add_(Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "scatter_add_";
  const int64_t d = check_scatter(op, self, dim, index, src);
  detail::check_inplace(op, self, {&self, &src});
  scatter_add_into(op, self, d, index, src);
  self.bump_version();
  // Recorded as the out-of-place op: its rule never reads self's (overwritten) old value, and
  // the edge to self's old history is taken before self gets the new node.
  // autograd args: i = dim (wrapped)
  if (self.is_floating_point())
    detail::record_op("scatter_add", {self, index, src}, {self}, {.i = d});
  return self;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "scatter_add";
  const int64_t d = check_scatter(op, x, dim, index, src);
  Tensor out;
  {
    NoGradGuard g;  // the op is reported as a whole below
    out = x.clone();
  }
  scatter_add_into(op, out, d, index, src);
  // autograd args: i = dim (wrapped)
  if (out.is_floating_point()) detail::record_op("scatter_add", {x, index, src}, {out}, {.i = d});
  return out;
}

// ---- one_hot ------------------------------------------------------------------------------

Tensor one_hot(const Tensor& labels, int64_t num_classes) {
  const char* op = "one_hot";
  check_operand(op, labels, "tensor");
  MG_CHECK(is_integral(labels.dtype(), false), op, "labels must be an integer tensor, got ",
           dtype_name(labels.dtype()));
  MG_CHECK(num_classes >= -1, op, "num_classes must be -1 (inferred) or non-negative, got ",
           num_classes);
  const Geom g = geom(labels);
  const kernels::Operand in{labels.raw_data(), g.strides.data()};
  if (num_classes == -1) {
    MG_CHECK(labels.numel() > 0, op,
             "cannot infer the number of classes from an empty tensor of shape ",
             shape_str(labels.shape()), "; pass num_classes");
    int64_t mn = 0, mx = 0;
    MG_KERNEL(labels.device(), index_min_max, labels.dtype(), extent_of(g.shape), in, &mn, &mx);
    MG_CHECK(mn >= 0, op, "class values must be non-negative, got ", mn);
    num_classes = checked_add(op, "the largest class value + 1", mx, 1);
  } else {
    int64_t bad = 0;
    if (MG_KERNEL(labels.device(), find_index_out_of_range, labels.dtype(), extent_of(g.shape), in,
                  num_classes, &bad)) {
      MG_CHECK(bad >= 0, op, "class values must be non-negative, got ", bad);
      detail::fail(op, "class value ", bad, " is out of range for num_classes ", num_classes);
    }
  }
  Shape shape = labels.shape();
  shape.push_back(num_classes);
  Tensor out = zeros(shape, TensorOptions().dtype(DType::Int64).device(labels.device()));
  Tensor lc = labels.contiguous();
  MG_KERNEL(labels.device(), one_hot, labels.dtype(), labels.numel(), lc.raw_data(),
            out.data_ptr<int64_t>(), num_classes);
  return out;  // integer: not differentiable, not reported
}

// ---- cat / stack --------------------------------------------------------------------------

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  const char* op = "cat";
  MG_CHECK(!tensors.empty(), op, "expected a non-empty list of tensors");
  // PyTorch's legacy rule: 1-d tensors of shape [0] are skipped whatever the others' shapes.
  auto skipped = [](const Tensor& t) { return t.dim() == 1 && t.size(0) == 0; };
  DType dtype = DType::Bool;
  const Tensor* ref = nullptr;
  size_t ref_i = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    check_operand(op, t, "tensor");
    MG_CHECK(t.dim() > 0, op, "a 0-d tensor (tensor ", i, " in the list) cannot be concatenated");
    dtype = i == 0 ? t.dtype() : promote_types(dtype, t.dtype());
    if (!ref && !skipped(t)) {
      ref = &t;
      ref_i = i;
    }
  }
  const int64_t rank = ref ? ref->dim() : 1;
  const int64_t d = wrap_dim(op, dim, rank);
  Shape shape = ref ? ref->shape() : Shape{0};
  int64_t total = 0;
  std::vector<int64_t> sizes(tensors.size(), 0);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (skipped(t)) continue;
    MG_CHECK(t.dim() == rank, op, "tensors must have the same number of dimensions: tensor ", ref_i,
             " has shape ", shape_str(ref->shape()), " and tensor ", i, " has shape ",
             shape_str(t.shape()));
    for (int64_t k = 0; k < rank; ++k)
      MG_CHECK(k == d || t.size(k) == shape[k], op,
               "sizes of tensors must match except in dimension ", d, ": tensor ", ref_i,
               " has shape ", shape_str(ref->shape()), " and tensor ", i, " has shape ",
               shape_str(t.shape()));
    sizes[i] = t.size(d);
    total = checked_add(op, "the concatenated size", total, sizes[i]);
  }
  shape[d] = total;
  const Device dev = ref ? ref->device() : tensors[0].device();
  for (size_t i = 0; i < tensors.size(); ++i)
    MG_CHECK(tensors[i].device() == dev, op, "expected all tensors on one device, got ", dev.str(),
             " and ", tensors[i].device().str(), " (tensor ", i, ")");
  Tensor out = Tensor::empty(shape, TensorOptions(dtype).device(dev));
  // Each input is copied (and converted) into its slice of the output.
  const int64_t step = out.stride(d) * static_cast<int64_t>(dtype_size(dtype));
  int64_t at = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (skipped(t) || t.numel() == 0) continue;
    char* dst = static_cast<char*>(out.raw_data()) + at * step;
    MG_KERNEL(dev, copy, dtype, t.dtype(), extent_of(t.shape()), {dst, out.strides().data()},
              {t.raw_data(), t.strides().data()});
    at += sizes[i];
  }
  // autograd args: i = dim (wrapped), dims = each input's size along dim (0 when skipped)
  if (out.is_floating_point()) detail::record_op("cat", tensors, {out}, {.dims = sizes, .i = d});
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  const char* op = "stack";
  MG_CHECK(!tensors.empty(), op, "expected a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i) {
    check_operand(op, tensors[i], "tensor");
    MG_CHECK(tensors[i].shape() == tensors[0].shape(), op,
             "expects each tensor to be equal size, but got ", shape_str(tensors[0].shape()),
             " at entry 0 and ", shape_str(tensors[i].shape()), " at entry ", i);
  }
  const int64_t d = wrap_dim(op, dim, tensors[0].dim() + 1);
  // cat of views with a new size-1 dim: the views report themselves, so the derivative
  // composes from cat's and unsqueeze's.
  std::vector<Tensor> views;
  views.reserve(tensors.size());
  for (const Tensor& t : tensors) views.push_back(t.unsqueeze(d));
  return cat(views, d);
}

// ---- split / chunk ------------------------------------------------------------------------

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  const char* op = "split";
  check_operand(op, x, "input");
  MG_CHECK(x.dim() > 0, op, "cannot split a 0-d tensor");
  const int64_t d = wrap_dim(op, dim, x.dim());
  const int64_t n = x.size(d);
  MG_CHECK(split_size >= 0, op, "split_size must be non-negative, got ", split_size);
  MG_CHECK(split_size > 0 || n == 0, op, "split_size can only be 0 if dimension ", d,
           " has size 0, but the input has shape ", shape_str(x.shape()));
  const int64_t pieces = split_size == 0 || n == 0 ? 1 : (n - 1) / split_size + 1;
  std::vector<Tensor> out;
  out.reserve(static_cast<size_t>(pieces));
  for (int64_t i = 0; i < pieces; ++i) {
    const int64_t start = i * split_size;
    out.push_back(x.narrow(d, start, std::min(split_size, n - start)));
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const char* op = "split";
  check_operand(op, x, "input");
  MG_CHECK(x.dim() > 0, op, "cannot split a 0-d tensor");
  const int64_t d = wrap_dim(op, dim, x.dim());
  int64_t sum = 0;
  for (int64_t s : sizes) {
    MG_CHECK(s >= 0, op, "split sizes must be non-negative, got ", shape_str(sizes));
    sum = checked_add(op, "the sum of the split sizes", sum, s);
  }
  MG_CHECK(sum == x.size(d), op, "split sizes ", shape_str(sizes), " must sum to ", x.size(d),
           ", the size of dimension ", d, " of the input of shape ", shape_str(x.shape()));
  std::vector<Tensor> out;
  out.reserve(sizes.size());
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(d, start, s));
    start += s;
  }
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  const char* op = "chunk";
  check_operand(op, x, "input");
  MG_CHECK(x.dim() > 0, op, "cannot chunk a 0-d tensor");
  MG_CHECK(chunks > 0, op, "number of chunks must be positive, got ", chunks);
  const int64_t d = wrap_dim(op, dim, x.dim());
  const int64_t n = x.size(d);
  const int64_t size = n == 0 ? 0 : (n - 1) / chunks + 1;
  // An empty dim still yields `chunks` (empty) pieces, as torch.chunk.
  if (n == 0) return split(x, std::vector<int64_t>(static_cast<size_t>(chunks), 0), d);
  return split(x, size, d);
}

// ---- pad ----------------------------------------------------------------------------------

Tensor pad(const Tensor& x, const DimVector& p, double value) {
  return pad(x, p, PadMode::Constant, value);
}

Tensor pad(const Tensor& x, const DimVector& p, PadMode mode, double value) {
  const char* op = "pad";
  check_operand(op, x, "input");
  const int64_t rank = x.dim();
  MG_CHECK(p.size() % 2 == 0, op, "padding length must be divisible by 2, got ", p.size());
  const int64_t npad = static_cast<int64_t>(p.size()) / 2;
  MG_CHECK(npad <= rank, op, "padding ", shape_str(p), " pads ", npad,
           " dimensions but the input of shape ", shape_str(x.shape()), " has only ", rank);
  MG_CHECK(mode == PadMode::Constant || mode == PadMode::Reflect || mode == PadMode::Replicate, op,
           "unknown padding mode ", static_cast<int>(mode));
  MG_CHECK(mode == PadMode::Constant || value == 0, op, "padding mode ", pad_mode_name(mode),
           " takes no fill value, got ", value);
  detail::check_fill_value(op, value, x.dtype());  // as fill_: NaN or 300 into uint8 refused
  Shape left(rank, 0), right(rank, 0), shape = x.shape();
  for (int64_t j = 0; j < npad; ++j) {
    const int64_t d = rank - 1 - j, n = x.size(d);
    left[d] = p[2 * j];
    right[d] = p[2 * j + 1];
    shape[d] = checked_add(op, "the padded size", checked_add(op, "the padded size", n, left[d]),
                           right[d]);
    MG_CHECK(shape[d] >= 0, op, "dimension ", d, " of size ", n, " padded by (", left[d], ", ",
             right[d], ") would have negative size ", shape[d], " (input shape ",
             shape_str(x.shape()), ")");
    // A negative pad crops; it cannot crop past the other end (PyTorch's narrow refuses it).
    MG_CHECK(-left[d] <= n && -right[d] <= n, op, "dimension ", d, " of size ", n,
             " cannot be cropped by (", left[d], ", ", right[d], ") (input shape ",
             shape_str(x.shape()), ")");
    if (mode == PadMode::Reflect)
      MG_CHECK(left[d] < std::max<int64_t>(n, 1) && right[d] < std::max<int64_t>(n, 1), op,
               "reflect padding (", left[d], ", ", right[d],
               ") must be smaller than the size of dimension ", d, " of the input of shape ",
               shape_str(x.shape()));
    if (mode == PadMode::Replicate)
      MG_CHECK(n > 0 || shape[d] == 0, op, "replicate padding needs a non-empty dimension ", d,
               ", but the input has shape ", shape_str(x.shape()));
  }
  Tensor out = Tensor::empty(shape, x.options());
  if (out.numel() > 0) {
    std::vector<int64_t> maps;  // per dim, the source coordinate of each output coordinate
    for (int64_t d = 0; d < rank; ++d)
      for (int64_t o = 0; o < shape[d]; ++o)
        maps.push_back(detail::pad_source(mode, o, left[d], x.size(d)));
    MG_KERNEL(x.device(), pad, x.dtype(), static_cast<int>(rank), shape.data(), out.raw_data(),
              x.raw_data(), x.strides().data(), maps.data(), value);
  }
  // autograd args: dims = the pad list, shape = input shape, a = value, i = mode
  if (out.is_floating_point())
    detail::record_op("pad", {x}, {out},
                      {.dims = p, .shape = x.shape(), .a = value, .i = static_cast<int64_t>(mode)});
  return out;
}

}  // namespace metagrad
