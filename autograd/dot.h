// Graph export for learners: the autograd graph behind tensors as Graphviz DOT.
// Render with `dot -Tpng graph.dot -o graph.png` (Debian's graphviz).
#pragma once
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace metagrad {

// One box per backward node (its name, the shapes of the gradients it receives, the tensors
// it saved), one blue box per leaf accumulator (the leaf's shape), an arrow along every edge
// the gradient travels, and the roots drawn as ellipses.
std::string to_dot(const std::vector<Tensor>& roots);
inline std::string to_dot(const Tensor& root) { return to_dot(std::vector<Tensor>{root}); }

}  // namespace metagrad
