// The derivative table: for every differentiable op, how gradients w.r.t. its outputs become
// gradients w.r.t. its inputs, written in metagrad's own differentiable ops (DESIGN
// principles 1-3), so that a backward pass run with create_graph=true records a graph of its
// own and can be differentiated again, to any order.
#pragma once
#include <string_view>
#include <vector>

#include "autograd/node.h"

namespace metagrad::autograd {

// What a derivative rule sees.
struct GradCtx {
  const detail::OpArgs& args;           // the op's own arguments (see the op's record_op)
  SmallVector<Tensor, 3> in;            // its inputs, when the rule saves them (else empty)
  SmallVector<Tensor, 3> out;           // its outputs, when the rule saves them (else empty)
  std::vector<Tensor> grads;            // d loss / d output, one per output (zeros if none flowed)
  SmallVector<bool, 3> needs;           // needs[i]: input i wants a gradient
  const InputMetas& in_meta;             // shape and dtype of every input
  const Tensor& g() const { return grads[0]; }
  const Shape& in_shape(size_t i) const { return in_meta[i].shape; }
};

using DerivativeFn = std::vector<Tensor> (*)(const GradCtx&);

// What a node keeps for its rule. kSaveTrailingOutputs keeps every output but the first (the
// small ones: batch norm's statistics, Note [Saved batch-norm statistics]); the rule's out[0]
// is then undefined.
enum Saves : uint8_t {
  kSaveNothing = 0,
  kSaveInputs = 1,
  kSaveOutputs = 2,
  kSaveBoth = 3,
  kSaveTrailingOutputs = 4,
};

struct Derivative {
  DerivativeFn fn;
  uint8_t saves;
  // With kSaveInputs: the inputs the rule never reads (bit i for input i), not saved, so that an
  // in-place write into one of them after the op is no version error (PyTorch saves per input
  // too); the rule's in[i] is then undefined.
  uint8_t unread_inputs = 0;
};

// The rule for `op`, or nullptr when the op has none (backward through it then throws).
const Derivative* find_derivative(std::string_view op);
// Every op that has a rule (for tests and docs).
std::vector<std::string_view> ops_with_derivatives();

// Sums `g` down to `shape` over the dimensions broadcasting added or expanded: the adjoint
// of expand(). Differentiable (its own derivative is expand).
Tensor sum_to(const Tensor& g, const Shape& shape);

}  // namespace metagrad::autograd
