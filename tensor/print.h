// Printing tensors as PyTorch's repr does: Tensor::str() and operator<< (declared in
// tensor.h, defined in print.cpp) give
//   tensor([[1.5000, 2.0000],
//           [3.0000, 4.0000]], dtype=float64, requires_grad=True)
// with PyTorch's rules for the number format (integers as "1.", fixed "1.5000" with
// `precision` decimals, scientific "1.0000e-05" when the magnitudes call for it), column
// alignment, line wrapping at `linewidth`, and summarisation with "..." of tensors with more
// than `threshold` elements (the first and last `edgeitems` of each dimension). One change:
// the dtype suffix reads "dtype=float64", not "dtype=torch.float64".
#pragma once
#include <cstdint>
#include <optional>

#include "tensor/tensor.h"

namespace metagrad {

// As torch.set_printoptions; the defaults are PyTorch's.
struct PrintOptions {
  int precision = 4;             // digits after the decimal point
  int64_t threshold = 1000;      // summarise when numel() > threshold
  int64_t edgeitems = 3;         // items kept at each end of a summarised dimension
  int64_t linewidth = 80;        // characters per line before wrapping
  std::optional<bool> sci_mode;  // force scientific notation on or off; unset: automatic
};

// Process-wide, as in PyTorch. set_printoptions replaces every field (PrintOptions{} resets).
void set_printoptions(const PrintOptions& opts);
PrintOptions get_printoptions();

// Sets print options for a scope and restores the previous ones after.
class PrintOptionsGuard {
 public:
  explicit PrintOptionsGuard(const PrintOptions& opts) : prev_(get_printoptions()) {
    set_printoptions(opts);
  }
  ~PrintOptionsGuard() { set_printoptions(prev_); }
  PrintOptionsGuard(const PrintOptionsGuard&) = delete;
  PrintOptionsGuard& operator=(const PrintOptionsGuard&) = delete;

 private:
  PrintOptions prev_;
};

}  // namespace metagrad
