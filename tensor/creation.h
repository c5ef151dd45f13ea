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
// Without a dtype in `opts`, as libtorch: int64 for an integer value, bool for a bool, float32
// for a floating one (full({2}, 7) is int64, full({2}, 7.0) float32).
Tensor full(const Shape& shape, const Scalar& value, TensorOptions opts = {});
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, const Scalar& value);

// [start, end) in steps of `step`. Without a dtype (in options or none given) the dtype is
// int64 when every argument is an integer and float32 otherwise, as torch.arange.
Tensor arange(const Scalar& end);
Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step = 1);
Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step, TensorOptions opts);
// `steps` points from start to end inclusive.
Tensor linspace(double start, double end, int64_t steps, TensorOptions opts = {});
// n x m identity (m = n when left out or -1; any other negative m is an error).
Tensor eye(int64_t n, int64_t m = -1, TensorOptions opts = {});

// Copies C++ data into a new tensor of the matching dtype: 1-d unless a shape is given
// (tensor({1.0}) has shape [1], as torch::tensor; tensor({1.0}, Shape{}) is 0-d).
template <typename T>
Tensor tensor(const std::vector<T>& data, const Shape& shape);
template <typename T>
Tensor tensor(const std::vector<T>& data) {
  return tensor(data, Shape{static_cast<int64_t>(data.size())});
}
template <typename T>
Tensor tensor(std::initializer_list<T> data, const Shape& shape) {
  return tensor(std::vector<T>(data), shape);
}
template <typename T>
Tensor tensor(std::initializer_list<T> data) {
  return tensor(std::vector<T>(data));
}

}  // namespace metagrad
