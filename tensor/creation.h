// Tensor factories, named as in libtorch: empty, zeros, ones, full, arange, linspace, eye,
// tensor() from C++ data, and the *_like forms. Random factories are in random.h.
#pragma once
#include <initializer_list>
#include <vector>

#include "tensor/scalar.h"
#include "tensor/tensor.h"

namespace metagrad {

Tensor empty(const Shape& shape, TensorOptions opts = {});
Tensor zeros(const Shape& shape, TensorOptions opts = {});
Tensor ones(const Shape& shape, TensorOptions opts = {});
Tensor full(const Shape& shape, const Scalar& value, TensorOptions opts = {});
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, const Scalar& value);

// [start, end) in steps of `step`. Without options the dtype is int64 when every argument is
// an integer and float32 otherwise, as torch.arange.
Tensor arange(const Scalar& end);
Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step = 1);
Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step, TensorOptions opts);
// `steps` points from start to end inclusive.
Tensor linspace(double start, double end, int64_t steps, TensorOptions opts = {});
// n x m identity (m = n when left out).
Tensor eye(int64_t n, int64_t m = -1, TensorOptions opts = {});

// Copies C++ data into a new tensor of the matching dtype. `shape` defaults to 1-d.
template <typename T>
Tensor tensor(const std::vector<T>& data, Shape shape = {});
template <typename T>
Tensor tensor(std::initializer_list<T> data, Shape shape = {}) {
  return tensor(std::vector<T>(data), std::move(shape));
}

}  // namespace metagrad
