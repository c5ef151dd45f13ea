// Tensor's metadata, views, conversions and autograd state.
#include "tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <type_traits>
#include <utility>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/runtime.h"
#include "kernels/strided.h"
#include "tensor/dispatch.h"
#include "tensor/grad_mode.h"
#include "tensor/tensor_iter.h"

namespace metagrad {

// ---- construction and metadata ------------------------------------------------

Tensor Tensor::empty(const Shape& shape, TensorOptions opts) {
  MG_CHECK(shape.size() <= static_cast<size_t>(kernels::kMaxDims), "empty", "shape ",
           shape_str(shape), " has more than ", kernels::kMaxDims, " dimensions");
  const int64_t n = numel_of(shape);
  const auto elem = static_cast<int64_t>(dtype_size(opts.dtype_));
  MG_CHECK(n <= std::numeric_limits<int64_t>::max() / elem, "empty", "shape ", shape_str(shape),
           " of ", dtype_name(opts.dtype_), " needs more than 2^63 bytes");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(n * elem), opts.device_);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opts.dtype_;
  Tensor t(std::move(impl));
  if (opts.requires_grad_) t.requires_grad_(true);
  return t;
}

void Tensor::fail_undefined(const char* op) {
  detail::fail(op, "called on an undefined tensor");
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim("size", d, dim())]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim("stride", d, dim())]; }
int64_t Tensor::numel() const { return numel_of(shape()); }
TensorOptions Tensor::options() const { return TensorOptions().dtype(dtype()).device(device()); }

bool Tensor::is_contiguous() const {
  const Shape& sh = shape();
  if (numel() == 0) return true;  // no elements, nothing out of place (as PyTorch)
  int64_t expected = 1;
  for (size_t i = sh.size(); i-- > 0;) {
    if (sh[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  check_defined("data_ptr");
  return static_cast<char*>(impl_->storage->data()) +
         impl_->offset * static_cast<int64_t>(dtype_size(impl_->dtype));
}

template <typename T>
T* Tensor::data_ptr() const {
  MG_CHECK(dtype() == dtype_v<T>, "data_ptr", "tensor has dtype ", dtype_name(dtype()),
           ", asked for ", dtype_name(dtype_v<T>));
  return static_cast<T*>(raw_data());
}

// ---- views ---------------------------------------------------------------------

namespace {

// Every view of the tensor layer is made here: the strided kernels take at most kMaxDims dims,
// and a view's element count must fit int64 (expand and as_strided can ask for more).
Tensor make_view(const char* op, const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  MG_CHECK(shape.size() <= static_cast<size_t>(kernels::kMaxDims), op, "shape ", shape_str(shape),
           " has more than ", kernels::kMaxDims, " dimensions");
  (void)numel_of(shape);  // raises if the element count overflows
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  impl->is_view = true;
  // Note [Stale views]: remember what the viewed tensor's history was.
  // The root is base itself, or base's root (while alive: once gone, nothing writes into it).
  const std::shared_ptr<TensorImpl>& b = base.impl_ptr();
  const std::shared_ptr<TensorImpl> r = b->is_view ? b->root.lock() : nullptr;
  const std::shared_ptr<TensorImpl>& root = r ? r : b;
  impl->root_history = root->history;
  impl->root = root;
  return Tensor(std::move(impl));
}

// Replaces one -1 by the size that keeps numel; checks the element counts agree.
Shape infer_shape(const char* op, Shape shape, int64_t numel, const Shape& from) {
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MG_CHECK(infer < 0, op, "only one dimension can be -1, got ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      MG_CHECK(shape[i] >= 0, op, "invalid shape ", shape_str(shape));
      MG_CHECK(!__builtin_mul_overflow(known, shape[i], &known), op, "shape ", shape_str(shape),
               " has too many elements");
    }
  }
  if (infer >= 0) {
    MG_CHECK(known != 0 && numel % known == 0, op, "shape ", shape_str(shape),
             " is invalid for input of shape ", shape_str(from));
    shape[infer] = numel / known;
  }
  MG_CHECK(numel_of(shape) == numel, op, "shape ", shape_str(shape),
           " is invalid for input of shape ", shape_str(from));
  return shape;
}

// Strides that let `new_shape` view memory laid out as (old_shape, old_strides), if any.
// Dimensions are grouped into chunks that are contiguous among themselves; a view may split
// or merge dims only inside a chunk. (The algorithm of PyTorch's computeStride.)
std::optional<Shape> view_strides(const Shape& old_shape, const Shape& old_strides,
                                  const Shape& new_shape) {
  Shape st(new_shape.size());
  if (old_shape.empty()) return Shape(new_shape.size(), 1);
  if (numel_of(old_shape) == 0) return contiguous_strides(new_shape);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        st[view_d] = view_numel * chunk_base;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return st;
}

// Every reshaping view reports itself as "reshape": its derivative only needs the old shape.
// `op` names the caller in errors.
Tensor reshaped_view(const char* op, const Tensor& self, Shape shape, Shape strides) {
  Tensor out = make_view(op, self, std::move(shape), std::move(strides), self.storage_offset());
  detail::record_op("reshape", {self}, {out}, {.shape = self.shape()});
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& shape_in) const {
  Shape shape = infer_shape("view", shape_in, numel(), this->shape());
  auto st = view_strides(this->shape(), strides(), shape);
  MG_CHECK(st.has_value(), "view", "shape ", shape_str(shape),
           " is not compatible with the input's size ", shape_str(this->shape()), " and stride ",
           shape_str(strides()), "; use reshape() instead");
  return reshaped_view("view", *this, std::move(shape), std::move(*st));
}

Tensor Tensor::reshape(const Shape& shape_in) const {
  Shape shape = infer_shape("reshape", shape_in, numel(), this->shape());
  if (auto st = view_strides(this->shape(), strides(), shape))
    return reshaped_view("reshape", *this, std::move(shape), std::move(*st));
  // A copy, as PyTorch's: the result alone holds its fresh buffer, so it is no view, and
  // in-place writes into it may be recorded (Note [In-place writes into views]).
  Tensor out = contiguous().view(shape);
  out.impl_ptr()->is_view = false;
  out.impl_ptr()->root.reset();
  return out;
}

Tensor Tensor::permute(const DimVector& dims) const {
  const int64_t n = dim();
  MG_CHECK(static_cast<int64_t>(dims.size()) == n, "permute", "got ", dims.size(),
           " dims for a tensor of shape ", shape_str(shape()));
  DimVector d(dims.size());
  Shape sh(dims.size()), st(dims.size());
  for (int64_t i = 0; i < n; ++i) {
    d[i] = wrap_dim("permute", dims[i], n);
    MG_CHECK(std::find(d.begin(), d.begin() + i, d[i]) == d.begin() + i, "permute", "dim ",
             dims[i], " repeated in ", shape_str(dims));
    sh[i] = shape()[d[i]];
    st[i] = strides()[d[i]];
  }
  Tensor out = make_view("permute", *this, std::move(sh), std::move(st), storage_offset());
  detail::record_op("permute", {*this}, {out}, {.dims = d});
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  const int64_t n = dim();
  d0 = wrap_dim("transpose", d0, n);  // a 0-d tensor takes dims 0 and -1
  d1 = wrap_dim("transpose", d1, n);
  if (n == 0) return permute({});
  DimVector perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[d0], perm[d1]);
  return permute(perm);
}

Tensor Tensor::t() const {
  MG_CHECK(dim() <= 2, "t", "expects a tensor with <= 2 dimensions, got shape ",
           shape_str(shape()));
  return dim() < 2 ? transpose(0, 0) : transpose(0, 1);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  MG_CHECK(dim() > 0, "slice", "cannot slice a 0-d tensor");
  d = wrap_dim("slice", d, dim());
  MG_CHECK(step > 0, "slice", "step must be positive, got ", step);
  const int64_t n = shape()[d];
  // Python slicing semantics: negative indices count from the end, bounds are clamped.
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = shape(), st = strides();
  sh[d] = end == start ? 0 : (end - start - 1) / step + 1;  // no overflow for a huge step
  // With one element or none the stride is never used: keep it rather than overflow it.
  int64_t stepped = 0;
  if (sh[d] > 1) {
    MG_CHECK(!__builtin_mul_overflow(st[d], step, &stepped), "slice", "step ", step,
             " times stride ", st[d], " overflows int64");
    st[d] = stepped;
  }
  Tensor out = make_view("slice", *this, std::move(sh), std::move(st),
                         storage_offset() + start * strides()[d]);
  detail::record_op("slice", {*this}, {out}, {.dims = {start, end, step}, .shape = shape(), .i = d});
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  MG_CHECK(dim() > 0, "narrow", "cannot narrow a 0-d tensor");
  d = wrap_dim("narrow", d, dim());
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  MG_CHECK(start >= 0 && length >= 0 && length <= n - start, "narrow", "start ", start,
           " + length ", length, " exceeds dimension ", d, " of size ", n, " in shape ",
           shape_str(shape()));
  return slice(d, start, start + length, 1);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  MG_CHECK(dim() > 0, "select", "cannot select on a 0-d tensor");
  d = wrap_dim("select", d, dim());
  const int64_t n = shape()[d];
  MG_CHECK(index >= -n && index < n, "select", "index ", index, " out of range for dimension ",
           d, " of size ", n, " in shape ", shape_str(shape()));
  if (index < 0) index += n;
  Shape sh = shape(), st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view("select", *this, std::move(sh), std::move(st),
                         storage_offset() + index * strides()[d]);
  detail::record_op("select", {*this}, {out}, {.shape = shape(), .i = d, .j = index});
  return out;
}

Tensor Tensor::expand(const Shape& target) const {
  const int64_t n = dim(), m = static_cast<int64_t>(target.size());
  MG_CHECK(m >= n, "expand", "cannot expand shape ", shape_str(shape()), " to ",
           shape_str(target), " (fewer dimensions)");
  Shape sh(m), st(m);
  for (int64_t i = m - 1; i >= 0; --i) {
    const int64_t j = i - (m - n);
    const int64_t cur = j >= 0 ? shape()[j] : 1;
    int64_t want = target[i];
    if (want == -1) {
      MG_CHECK(j >= 0, "expand", "-1 is not allowed for a new leading dimension in ",
               shape_str(target));
      want = cur;
    }
    MG_CHECK(want >= 0, "expand", "invalid target shape ", shape_str(target));
    if (j >= 0 && cur == want) {
      sh[i] = cur;
      st[i] = strides()[j];
    } else {
      MG_CHECK(cur == 1, "expand", "cannot expand shape ", shape_str(shape()), " to ",
               shape_str(target), ": dimension ", i, " has size ", cur, ", not 1");
      sh[i] = want;
      st[i] = 0;
    }
  }
  Tensor out = make_view("expand", *this, std::move(sh), std::move(st), storage_offset());
  detail::record_op("expand", {*this}, {out}, {.shape = shape()});
  return out;
}

Tensor Tensor::squeeze() const {
  Shape sh, st;
  for (int64_t i = 0; i < dim(); ++i)
    if (shape()[i] != 1) { sh.push_back(shape()[i]); st.push_back(strides()[i]); }
  return reshaped_view("squeeze", *this, sh, st);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim("squeeze", d, dim());  // a 0-d tensor takes dim 0 or -1
  if (dim() == 0) return reshaped_view("squeeze", *this, {}, {});
  if (shape()[d] != 1) return reshaped_view("squeeze", *this, shape(), strides());
  Shape sh = shape(), st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  return reshaped_view("squeeze", *this, sh, st);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim("unsqueeze", d, dim() + 1);
  Shape sh = shape(), st = strides();
  const int64_t s = d < dim() ? strides()[d] * shape()[d] : 1;
  sh.insert(sh.begin() + d, 1);
  st.insert(st.begin() + d, s);
  return reshaped_view("unsqueeze", *this, sh, st);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  start = wrap_dim("flatten", start, dim());  // a 0-d tensor takes dim 0 or -1
  end = wrap_dim("flatten", end, dim());
  if (dim() == 0) return reshape({1});
  MG_CHECK(start <= end, "flatten", "start_dim ", start, " is after end_dim ", end);
  Shape sh(shape().begin(), shape().begin() + start);
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= shape()[i];
  sh.push_back(m);
  sh.insert(sh.end(), shape().begin() + end + 1, shape().end());
  return reshape(sh);
}

Tensor as_strided(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset) {
  MG_CHECK(shape.size() == strides.size(), "as_strided", "shape ", shape_str(shape),
           " and strides ", shape_str(strides), " differ in length");
  MG_CHECK(offset >= 0, "as_strided", "negative offset ", offset);
  int64_t max_off = offset;
  for (size_t i = 0; i < shape.size(); ++i) {
    MG_CHECK(strides[i] >= 0 && shape[i] >= 0, "as_strided", "negative size or stride in ",
             shape_str(shape), " / ", shape_str(strides));
    if (shape[i] == 0) max_off = -1;
    int64_t reach = 0;
    if (max_off >= 0)
      MG_CHECK(!__builtin_mul_overflow(shape[i] - 1, strides[i], &reach) &&
                   !__builtin_add_overflow(max_off, reach, &max_off),
               "as_strided", "shape ", shape_str(shape), " with strides ", shape_str(strides),
               " reaches past int64");
  }
  const int64_t cap = static_cast<int64_t>(t.storage()->nbytes() / dtype_size(t.dtype()));
  MG_CHECK(max_off < cap, "as_strided", "shape ", shape_str(shape), " with strides ",
           shape_str(strides), " and offset ", offset, " reaches past a storage of ", cap,
           " elements");
  Tensor out = make_view("as_strided", t, shape, strides, offset);
  detail::record_op("as_strided", {t}, {out}, {.dims = strides, .shape = shape, .i = offset});
  return out;
}

// ---- copies and conversions ---------------------------------------------------

Tensor& Tensor::copy_(const Tensor& src) {
  check_defined("copy_");
  MG_CHECK(src.defined(), "copy_", "source tensor is undefined");
  Shape b = broadcast_shapes("copy_", src.shape(), shape());
  MG_CHECK(b == shape(), "copy_", "source of shape ", shape_str(src.shape()),
           " cannot be broadcast to destination shape ", shape_str(shape()));
  detail::check_no_internal_overlap("copy_", *this);
  detail::check_inplace("copy_", *this, {this, &src});
  Tensor s = src;
  // Across devices the bytes travel first (in src's dtype), then the copy below casts.
  if (s.device() != device()) s = detail::transfer(src, device());
  // If src overlaps this tensor's storage in a different layout, read from a copy.
  if (s.storage() == storage() && !s.is_same(*this)) s = src.clone();
  Shape sst = detail::broadcast_strides(s, shape());
  MG_KERNEL(device(), copy, dtype(), s.dtype(), {static_cast<int>(dim()), shape().data()},
            {raw_data(), strides().data()}, {s.raw_data(), sst.data()});
  bump_version();
  detail::record_op("copy_", {*this, src}, {*this});
  return *this;
}

Tensor& Tensor::fill_(double value) {
  check_defined("fill_");
  detail::check_fill_value("fill_", value, dtype());
  detail::check_no_internal_overlap("fill_", *this);
  detail::check_inplace("fill_", *this, {this});
  MG_KERNEL(device(), fill, dtype(), {static_cast<int>(dim()), shape().data()},
            {raw_data(), strides().data()}, value);
  bump_version();
  detail::record_op("fill_", {*this}, {*this});
  return *this;
}

Tensor Tensor::clone() const {
  check_defined("clone");
  Tensor out = empty(shape(), options());
  {
    NoGradGuard g;  // the copy below is an implementation detail; "clone" is reported below
    out.copy_(*this);
  }
  detail::record_op("clone", {*this}, {out});
  return out;
}

Tensor Tensor::contiguous() const {
  check_defined("contiguous");
  return is_contiguous() ? *this : clone();
}

Tensor Tensor::to(DType t) const {
  check_defined("to");
  if (t == dtype()) return *this;
  Tensor out = empty(shape(), options().dtype(t));
  {
    NoGradGuard g;
    out.copy_(*this);
  }
  // Only float -> float conversions carry gradients (PyTorch's rule).
  if (is_floating(t)) detail::record_op("to_dtype", {*this}, {out});
  return out;
}

Tensor Tensor::to(Device d) const {
  check_defined("to");
  if (d == device()) return *this;
  Tensor out = detail::transfer(*this, d);
  detail::record_op("to_device", {*this}, {out});
  return out;
}

namespace detail {

// A contiguous copy of `t` on `d` (same dtype), not recorded. The host waits only when the
// destination is the CPU (Note [Streams] in kernels/cuda/runtime.h).
Tensor transfer(const Tensor& t, Device d) {
  NoGradGuard g;
  if (d.is_cuda()) cuda::check_device("to", d.index);
  const Tensor src = t.contiguous();
  Tensor out = Tensor::empty(t.shape(), t.options().device(d));
  const size_t nbytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
  if (nbytes == 0) return out;
  if (src.device().is_cpu() && d.is_cuda()) {
    cuda::memcpy_to_device(out.raw_data(), src.raw_data(), nbytes);
  } else if (src.device().is_cuda() && d.is_cpu()) {
    cuda::memcpy_to_host(out.raw_data(), src.raw_data(), nbytes);
  } else {  // between two GPUs: through the host keeps this simple and correct
    Tensor host = Tensor::empty(t.shape(), t.options().device(Device::cpu()));
    cuda::memcpy_to_host(host.raw_data(), src.raw_data(), nbytes);
    cuda::memcpy_to_device(out.raw_data(), host.raw_data(), nbytes);
  }
  return out;
}

}  // namespace detail

template <typename T>
T Tensor::item() const {
  MG_CHECK(numel() == 1, "item", "a tensor with ", numel(), " elements (shape ",
           shape_str(shape()), ") cannot be converted to a scalar");
  if (device().is_cuda()) return detail::transfer(*this, Device::cpu()).item<T>();
  // As libtorch's item<T>(): a value T cannot hold is an error, not a wrapped or saturated one
  // (to() and to_vector() convert as casts do).
  T v{};
  MG_DISPATCH_ALL(dtype(), [&] {
    const scalar_t x = *static_cast<const scalar_t*>(raw_data());
    bool fits = true;
    if constexpr (std::is_same_v<T, bool> || std::is_same_v<scalar_t, bool>) {
      // any number converts to bool, and a bool to any number
    } else if constexpr (std::is_integral_v<T> && std::is_integral_v<scalar_t>) {
      fits = std::in_range<T>(x);
    } else if constexpr (std::is_integral_v<T>) {  // from floating point: truncation must fit
      fits = x > static_cast<scalar_t>(std::numeric_limits<T>::min()) - scalar_t(1) &&
             x < static_cast<scalar_t>(std::numeric_limits<T>::max()) + scalar_t(1);
    } else if constexpr (sizeof(T) < sizeof(scalar_t)) {  // double into float
      fits = !std::isfinite(x) || std::fabs(x) <= std::numeric_limits<T>::max();
    }
    MG_CHECK(fits, "item", "value ", +x, " (", dtype_name(dtype()), ") cannot be converted to ",
             dtype_name(dtype_v<T>), " without overflow");
    v = static_cast<T>(x);
  });
  return v;
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  check_defined("to_vector");
  if (device().is_cuda()) return detail::transfer(*this, Device::cpu()).to_vector<T>();
  std::vector<T> v(static_cast<size_t>(numel()));
  if (v.empty()) return v;
  Shape dst_strides = contiguous_strides(shape());
  if constexpr (std::is_same_v<T, bool>) {
    // std::vector<bool> is packed: go through bytes.
    std::vector<uint8_t> bytes(v.size());
    kernels::cpu::copy(DType::Bool, dtype(), {static_cast<int>(dim()), shape().data()},
                       {bytes.data(), dst_strides.data()}, {raw_data(), strides().data()});
    for (size_t i = 0; i < v.size(); ++i) v[i] = bytes[i] != 0;
  } else {
    kernels::cpu::copy(dtype_v<T>, dtype(), {static_cast<int>(dim()), shape().data()},
                       {v.data(), dst_strides.data()}, {raw_data(), strides().data()});
  }
  return v;
}

#define MG_INSTANTIATE(T)                        \
  template T* Tensor::data_ptr<T>() const;       \
  template T Tensor::item<T>() const;            \
  template std::vector<T> Tensor::to_vector<T>() const;
MG_INSTANTIATE(bool)
MG_INSTANTIATE(uint8_t)
MG_INSTANTIATE(int32_t)
MG_INSTANTIATE(int64_t)
MG_INSTANTIATE(float)
MG_INSTANTIATE(double)
#undef MG_INSTANTIATE

// ---- autograd state --------------------------------------------------------------

bool Tensor::requires_grad() const {
  check_defined("requires_grad");
  return impl_->autograd && impl_->autograd->requires_grad;
}

Tensor& Tensor::requires_grad_(bool r) {
  check_defined("requires_grad_");
  MG_CHECK(!r || is_floating(dtype()), "requires_grad_",
           "only floating-point tensors can require gradients, got ", dtype_name(dtype()));
  MG_CHECK(r || is_leaf(), "requires_grad_",
           "cannot turn off requires_grad on a non-leaf tensor; use detach()");
  impl_->meta().requires_grad = r;
  return *this;
}

const Tensor& Tensor::grad() const {
  static const Tensor undefined;
  check_defined("grad");
  return impl_->autograd ? impl_->autograd->grad : undefined;
}
Tensor& Tensor::mutable_grad() { check_defined("grad"); return impl_->meta().grad; }
void Tensor::set_grad(const Tensor& g) {
  check_defined("grad");
  // As PyTorch's: a .grad is always of its tensor's shape, dtype and device (optimizers and
  // clip_grad_norm_ read it so).
  MG_CHECK(!g.defined() || (g.shape() == shape() && g.dtype() == dtype() && g.device() == device()),
           "grad", "assigned a gradient of shape ", shape_str(g.shape()), " ", dtype_name(g.dtype()),
           " on ", g.device().str(), " to a tensor of shape ", shape_str(shape()), " ",
           dtype_name(dtype()), " on ", device().str());
  impl_->meta().grad = g;
}

bool Tensor::is_view() const {
  check_defined("is_view");
  return impl_->is_view;
}

bool Tensor::is_leaf() const {
  check_defined("is_leaf");
  return !impl_->autograd || !impl_->autograd->grad_fn;
}

const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<autograd::Node> none;
  check_defined("grad_fn");
  return impl_->autograd ? impl_->autograd->grad_fn : none;
}

uint32_t Tensor::output_nr() const {
  return impl_ && impl_->autograd ? impl_->autograd->output_nr : 0;
}

void Tensor::set_grad_fn(std::shared_ptr<autograd::Node> fn, uint32_t nr) {
  check_defined("set_grad_fn");
  auto& m = impl_->meta();
  ++impl_->history;  // Note [Stale views]
  m.requires_grad = fn != nullptr;
  m.grad_fn = std::move(fn);
  m.output_nr = nr;
}

Tensor Tensor::detach() const {
  check_defined("detach");
  return make_view("detach", *this, shape(), strides(), storage_offset());
}

void Tensor::retain_grad() {
  MG_CHECK(requires_grad(), "retain_grad", "called on a tensor that does not require grad");
  if (!is_leaf()) impl_->meta().retains_grad = true;
}
bool Tensor::retains_grad() const {
  return impl_ && impl_->autograd && impl_->autograd->retains_grad;
}

void Tensor::register_hook(std::function<Tensor(const Tensor&)> hook) {
  MG_CHECK(requires_grad(), "register_hook",
           "cannot register a hook on a tensor that does not require grad");
  impl_->meta().hooks.push_back(std::move(hook));
}

const std::vector<std::function<Tensor(const Tensor&)>>& Tensor::hooks() const {
  static const std::vector<std::function<Tensor(const Tensor&)>> none;
  return impl_ && impl_->autograd ? impl_->autograd->hooks : none;
}

// ---- recording helpers --------------------------------------------------------

namespace detail {
bool should_record(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}
bool should_record(TensorList inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

// As PyTorch's fill and full: a value the dtype cannot hold is an error, not a wrapped or
// undefined conversion (a float into an integer type truncates toward zero, as a cast).
void check_fill_value(const char* op, double v, DType t) {
  // v truncates into the type when lo < v < hi (false for NaN).
  const auto fits = [&](double lo, double hi) { return v > lo && v < hi; };
  bool ok = true;
  switch (t) {
    case DType::Bool:
    case DType::Float64:
      break;
    case DType::Float32:
      ok = !std::isfinite(v) || std::fabs(v) <= std::numeric_limits<float>::max();
      break;
    case DType::UInt8:
      ok = fits(-1.0, 256.0);
      break;
    case DType::Int32:
      ok = fits(-2147483649.0, 2147483648.0);
      break;
    case DType::Int64:
      ok = v >= -9223372036854775808.0 && v < 9223372036854775808.0;
      break;
  }
  MG_CHECK(ok, op, "value ", v, " cannot be converted to ", dtype_name(t), " without overflow");
}

bool int_fits(int64_t i, DType t) {
  switch (t) {
    case DType::UInt8:
      return i >= 0 && i <= 255;
    case DType::Int32:
      return i >= std::numeric_limits<int32_t>::min() && i <= std::numeric_limits<int32_t>::max();
    default:
      return true;
  }
}

// Note [Stale views]: a view made before an in-place write into the tensor it views keeps that
// tensor's old history (its grad_fn points there), although its values changed: a graph
// built on it would miss the write's derivative. Every grad_fn change counts in the viewed
// tensor's `history`; a view whose root moved on since it was made is refused as an op input
// in grad mode (record_op checks every op's inputs, recorded or not: the view itself may not
// require grad while its root now does). Writes under NoGradGuard change no grad_fn, so (as in PyTorch) views of
// parameters an optimizer updated stay usable.
void check_not_stale(const char* op, const Tensor& t) {
  const TensorImpl& impl = *t.impl_ptr();
  if (!impl.is_view) return;
  const std::shared_ptr<TensorImpl> root = impl.root.lock();
  MG_CHECK(!root || root->history == impl.root_history, op, "an input of shape ",
           shape_str(t.shape()),
           " is a view made before an in-place operation on the tensor it views: its autograd "
           "history is stale; take the view again after the in-place operation");
}

// Note [In-place writes into views]: an in-place op is recorded as a new history for the
// tensor it writes (Note [In-place ops and autograd]). When that tensor is a view, the
// tensor it views (and its other views) keep their old history although their values
// changed: a gradient taken through them would silently miss the write. PyTorch rewrites the
// base's history (CopySlices); metagrad refuses the write instead, while it would be recorded.
// Under NoGradGuard, or with nothing that requires grad, views are written as usual.
void check_inplace(const char* op, const Tensor& self, std::initializer_list<const Tensor*> inputs) {
  MG_CHECK(!(self.requires_grad() && self.is_leaf() && GradMode::is_enabled()), op,
           "a leaf tensor that requires grad is used in an in-place operation");
  MG_CHECK(!(self.is_view() && should_record(inputs)), op, "in-place write into a view (shape ",
           shape_str(self.shape()),
           ") while recording a graph: the tensor it views would not see the write in its "
           "history; write into a clone, or build the value out of place (cat, where, "
           "scatter_add)");
}
}  // namespace detail

namespace {
thread_local bool g_grad_enabled = true;
}
bool GradMode::is_enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool e) { g_grad_enabled = e; }

}  // namespace metagrad
