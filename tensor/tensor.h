// Tensor: a reference-counted handle to a strided view of a Storage.
//
// Copying a Tensor copies the handle (as in PyTorch): both names see the same data and the
// same autograd state. A view (transpose, slice, expand, ...) is a new TensorImpl over the
// same Storage with other shape/strides/offset; contiguous() or clone() copy the data.
//
// Note [Ops report themselves]: every op in tensor/ computes its result and then, when grad
// mode is on and an input requires grad, reports itself (name, inputs, arguments) through
// detail::record_op. autograd/ decides what to remember and owns every derivative rule:
// tensor/ computes, autograd/ remembers.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "tensor/device.h"
#include "tensor/error.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace metagrad {

namespace autograd {
class Node;  // defined in autograd/node.h
}

class Tensor;
struct TensorImpl;
struct AutogradMeta;

// Creation options, as torch::TensorOptions: zeros({2, 3}, TensorOptions().dtype(DType::Float64)).
struct TensorOptions {
  DType dtype_ = DType::Float32;
  Device device_ = Device::cpu();
  bool requires_grad_ = false;
  // Whether the dtype was chosen: full() infers it from the fill value otherwise, as libtorch.
  bool has_dtype_ = false;
  TensorOptions() = default;
  TensorOptions(DType t) : dtype_(t), has_dtype_(true) {}  // NOLINT: implicit, as in libtorch
  TensorOptions(Device d) : device_(d) {}  // NOLINT
  TensorOptions dtype(DType t) const {
    auto o = *this;
    o.dtype_ = t;
    o.has_dtype_ = true;
    return o;
  }
  TensorOptions device(Device d) const { auto o = *this; o.device_ = d; return o; }
  TensorOptions requires_grad(bool r = true) const { auto o = *this; o.requires_grad_ = r; return o; }
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (as torch::Tensor())
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Allocates a contiguous tensor with uninitialised contents.
  static Tensor empty(const Shape& shape, TensorOptions opts = {});

  // ---- metadata -------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& sizes() const { return shape(); }
  const Shape& strides() const;
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t numel() const;
  int64_t storage_offset() const;
  DType dtype() const;
  Device device() const;
  TensorOptions options() const;
  bool is_contiguous() const;
  bool is_floating_point() const { return is_floating(dtype()); }
  const std::shared_ptr<Storage>& storage() const;
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // Pointer to element (0, ..., 0); T must match dtype().
  template <typename T> T* data_ptr() const;
  void* raw_data() const;

  // ---- views: share storage -------------------------------------------------
  Tensor view(const Shape& shape) const;     // needs compatible strides; -1 infers one dim
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy
  Tensor permute(const DimVector& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  // 2-d transpose (0-d and 1-d unchanged)
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;  // -1 keeps a dim
  Tensor expand_as(const Tensor& other) const { return expand(other.shape()); }
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;  // itself when already contiguous

  // ---- conversions ----------------------------------------------------------
  Tensor to(DType dtype) const;  // itself when the dtype already matches
  Tensor to(Device device) const;
  Tensor clone() const;
  template <typename T> T item() const;  // for one-element tensors
  template <typename T> std::vector<T> to_vector() const;  // row-major order
  std::string str() const;  // PyTorch-style repr

  // In place: copies `src` (broadcast, converted) into this tensor's elements.
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  // ---- autograd state (the engine is in autograd/) -----------------------
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);
  const Tensor& grad() const;  // undefined until a backward pass fills it
  Tensor& mutable_grad();
  void set_grad(const Tensor& g);
  bool is_leaf() const;  // created by the user, not by an op that was recorded
  bool is_view() const;  // made by a view op (view, slice, select, permute, expand, detach, ...)
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  uint32_t output_nr() const;
  void set_grad_fn(std::shared_ptr<autograd::Node> fn, uint32_t output_nr);
  Tensor detach() const;  // same data, no history
  void retain_grad();
  bool retains_grad() const;
  // Hooks run on the gradient flowing into this tensor; a defined return replaces it.
  void register_hook(std::function<Tensor(const Tensor&)> hook);
  const std::vector<std::function<Tensor(const Tensor&)>>& hooks() const;
  // Defined in autograd/engine.cpp.
  // retain_graph defaults to create_graph, as in libtorch.
  void backward(const Tensor& gradient = {}, std::optional<bool> retain_graph = std::nullopt,
                bool create_graph = false) const;
  uint64_t version() const { return storage()->version(); }
  void bump_version() const { storage()->bump_version(); }

 private:
  void check_defined(const char* op) const;
  [[noreturn]] static void fail_undefined(const char* op);
  std::shared_ptr<TensorImpl> impl_;
};

// Autograd's per-tensor state; created on first use so plain tensors stay small.
struct AutogradMeta {
  bool requires_grad = false;
  bool retains_grad = false;
  Tensor grad;
  std::shared_ptr<autograd::Node> grad_fn;
  uint32_t output_nr = 0;
  std::vector<std::function<Tensor(const Tensor&)>> hooks;
  // A leaf's gradient accumulator node, shared by every op that uses the leaf; weak so the
  // leaf does not keep its graph alive.
  std::weak_ptr<autograd::Node> grad_accumulator;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;
  bool is_view = false;  // made by a view op (shares another tensor's storage)
  // Note [Stale views]: how many times this tensor's grad_fn was set; a view records its root
  // (the non-view tensor it ultimately views) and the root's count when it was made.
  uint32_t history = 0;
  uint32_t root_history = 0;
  std::weak_ptr<TensorImpl> root;
  std::unique_ptr<AutogradMeta> autograd;
  AutogradMeta& meta() {
    if (!autograd) autograd = std::make_unique<AutogradMeta>();
    return *autograd;
  }
};

// The metadata accessors are inline: every op reads them several times, and out of line they
// were two calls each (a few percent of a sinusoid meta-step's host time, perf).
inline void Tensor::check_defined(const char* op) const {
  if (impl_ == nullptr) [[unlikely]] fail_undefined(op);
}
inline const Shape& Tensor::shape() const {
  check_defined("shape");
  return impl_->shape;
}
inline const Shape& Tensor::strides() const {
  check_defined("strides");
  return impl_->strides;
}
inline int64_t Tensor::storage_offset() const {
  check_defined("storage_offset");
  return impl_->offset;
}
inline DType Tensor::dtype() const {
  check_defined("dtype");
  return impl_->dtype;
}
inline const std::shared_ptr<Storage>& Tensor::storage() const {
  check_defined("storage");
  return impl_->storage;
}
inline Device Tensor::device() const { return storage()->device(); }

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// A view with explicit geometry over t's storage (as torch.as_strided); checked to stay in
// bounds of the storage.
Tensor as_strided(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset);

namespace detail {
// What an op reports about itself to autograd (Note [Ops report themselves]). The fields are
// the op's own arguments; each derivative rule in autograd/derivatives.cpp says which it reads.
struct OpArgs {
  DimVector dims;             // dims of a reduction / permutation, or strides
  Shape shape;                // a shape argument (expand, view), or the input's shape
  double a = 0, b = 0;        // scalar arguments (exponent, clamp bounds, ...)
  int64_t i = 0, j = 0;       // integer arguments (dim, start, step, index, ...)
  bool flag = false;          // keepdim and similar
};
// The tensors an op reports: a braced list at the call site or a vector, read in place. Every
// op builds one for its inputs and one for its outputs, recorded or not, so neither may cost a
// heap allocation (a vector did, twice per op; bench_elementwise BM_AddTinyOverhead). The
// list only lives as long as the call it is passed to.
class TensorList {
 public:
  TensorList(std::initializer_list<Tensor> l) : TensorList(l.begin(), l.size()) {}
  TensorList(const std::vector<Tensor>& v) : TensorList(v.data(), v.size()) {}
  const Tensor* begin() const { return data_; }
  const Tensor* end() const { return data_ + size_; }
  size_t size() const { return size_; }
  const Tensor& operator[](size_t i) const { return data_[i]; }

 private:
  TensorList(const Tensor* data, size_t size) : data_(data), size_(size) {}
  const Tensor* data_;
  size_t size_;
};
// True when grad mode is on and any defined input requires grad.
bool should_record(std::initializer_list<const Tensor*> inputs);
bool should_record(TensorList inputs);
// Refuses a value `t` cannot hold (NaN or out of range for an integer type, beyond float32's
// range for float32): "[op] value v cannot be converted to int32 without overflow".
void check_fill_value(const char* op, double v, DType t);
// True when the integer i is within t's range (always for floating and bool types, which
// convert any integer, rounding it where they must).
bool int_fits(int64_t i, DType t);
// Refuses a view whose viewed tensor was written in place (and recorded) since the view was
// made (Note [Stale views]); record_op calls it on every op input in grad mode.
void check_not_stale(const char* op, const Tensor& t);
// What every in-place op checks before it writes into `self`: not a leaf that requires grad,
// and not a view while the op would be recorded (Note [In-place writes into views]).
void check_inplace(const char* op, const Tensor& self, std::initializer_list<const Tensor*> inputs);
// A contiguous copy of `t` on device `d` with t's dtype, not recorded (Tensor::to records it).
Tensor transfer(const Tensor& t, Device d);
// Defined in autograd/node.cpp: the node's name ("ExpBackward"), for printing.
std::string grad_fn_name(const autograd::Node& node);
// Defined in autograd/record.cpp: remembers the op when should_record(inputs).
void record_op(const char* op, TensorList inputs, TensorList outputs, OpArgs args = {});
}  // namespace detail

}  // namespace metagrad
