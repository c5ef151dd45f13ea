#include "tensor/shape.h"

#include <algorithm>

#include "tensor/error.h"

namespace metagrad {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) detail::fail("shape", "negative dimension in ", shape_str(s));
    // Not a division per dim: Tensor::numel() runs this on every op.
    if (__builtin_mul_overflow(n, d, &n))
      detail::fail("shape", "shape ", shape_str(s), " has too many elements");
  }
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    st[i] = s;
    // A zero-size shape can have a huge product of its other sizes: its strides still must fit.
    if (i > 0 && __builtin_mul_overflow(s, std::max<int64_t>(shape[i], 1), &s))
      detail::fail("shape", "the strides of shape ", shape_str(shape), " overflow int64");
  }
  return st;
}

int64_t checked_add(const char* op, const char* what, int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r))
    detail::fail(op, what, " (", a, " + ", b, ") overflows int64");
  return r;
}
int64_t checked_mul(const char* op, const char* what, int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    detail::fail(op, what, " (", a, " * ", b, ") overflows int64");
  return r;
}

int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim) {
  const int64_t n = std::max<int64_t>(ndim, 1);  // a 0-d tensor accepts dim 0 and -1
  if (dim < -n || dim >= n)
    detail::fail(op, "dim ", dim, " out of range for a ", ndim, "-d tensor (expected in [", -n,
                 ", ", n - 1, "])");
  return dim < 0 ? dim + n : dim;
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      detail::fail(op, "shapes ", shape_str(a), " and ", shape_str(b), " cannot be broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace metagrad
