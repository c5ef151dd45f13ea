// nn::ParamMap: named tensors keyed by dotted names ("features.0.weight"), the currency of
// Modules (state_dict, fast weights) and checkpoints. In a header of its own so that the
// checkpoint code and the Module code can share it without depending on each other.
#pragma once
#include <map>
#include <string>

#include "tensor/tensor.h"

namespace metagrad::nn {

using ParamMap = std::map<std::string, Tensor>;

}  // namespace metagrad::nn
