// Placeholder until the autograd engine lands (issue 3): ops report themselves here and
// nothing is remembered yet.
#include "tensor/tensor.h"

namespace metagrad::detail {
void record_op(const char*, const std::vector<Tensor>&, const std::vector<Tensor>&, OpArgs) {}
}  // namespace metagrad::detail
