// Shapes and strides: plain vectors of int64 with the helpers every op uses.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace metagrad {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "[2, 3]"
int64_t numel_of(const Shape& s);
Shape contiguous_strides(const Shape& shape);

// Wraps a possibly negative dim into [0, ndim); throws "[op] dim d out of range for a 3-d tensor".
int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim);

// NumPy broadcasting of two shapes, or "[op] shapes [..] and [..] cannot be broadcast".
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

}  // namespace metagrad
