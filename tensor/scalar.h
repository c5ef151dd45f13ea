// Scalar: a number passed where a tensor could be (x + 2, clamp(x, 0.0, 1.0)), as
// c10::Scalar. It remembers whether it was written as an integer, which matters for type
// promotion: int_tensor * 2 stays an int tensor, int_tensor * 2.5 becomes float32. An integer
// is kept exactly as well (int64 values beyond 2^53 have no exact double).
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/dtype.h"

namespace metagrad {

class Scalar {
 public:
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  Scalar(T v)  // NOLINT: implicit, as in libtorch
      : v_(static_cast<double>(v)),
        i_(std::is_integral_v<T> ? static_cast<int64_t>(v) : 0),
        kind_(std::is_same_v<T, bool> ? DType::Bool
              : std::is_integral_v<T> ? DType::Int64
                                      : DType::Float64) {}
  double to_double() const { return v_; }
  // The exact value of an integer (or bool) Scalar; 0 for a floating one.
  int64_t to_int64() const { return i_; }
  bool is_integral() const { return kind_ != DType::Float64; }
  // The category of the written number: Bool, Int64 (any integer) or Float64 (any float).
  DType kind() const { return kind_; }

 private:
  double v_;
  int64_t i_;
  DType kind_;
};

}  // namespace metagrad
