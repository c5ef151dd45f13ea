// Function transforms on top of the engine, for the JAX-minded (torch.func / jax names).
// A "function" here maps a list of tensors to a list of tensors. All results are exact:
// jvp uses the double-vjp trick, hvp differentiates a gradient built with create_graph.
#pragma once
#include <functional>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace metagrad::func {

using Tensors = std::vector<Tensor>;
using Fn = std::function<Tensors(const Tensors&)>;
using ScalarFn = std::function<Tensor(const Tensors&)>;

// (f(x), v^T J_f(x)). With create_graph the vjp is differentiable.
std::pair<Tensors, Tensors> vjp(const Fn& f, const Tensors& inputs, const Tensors& v,
                                bool create_graph = false);
// (f(x), J_f(x) u), by the double-vjp trick: J u = d/dw <J^T w, u>, since J^T w is linear in w.
std::pair<Tensors, Tensors> jvp(const Fn& f, const Tensors& inputs, const Tensors& u,
                                bool create_graph = false);
// (f(x), H_f(x) v) for scalar f: the gradient of <grad f(x), v>.
std::pair<Tensor, Tensors> hvp(const ScalarFn& f, const Tensors& inputs, const Tensors& v,
                               bool create_graph = false);
// J[i][j] = d outputs[i] / d inputs[j], of shape outputs[i].shape + inputs[j].shape.
std::vector<Tensors> jacobian(const Fn& f, const Tensors& inputs, bool create_graph = false);
// H[i][j] = d^2 f / d inputs[i] d inputs[j] for scalar f.
std::vector<Tensors> hessian(const ScalarFn& f, const Tensors& inputs);

// grad(f)(x) = d f / d x for scalar f; value_and_grad(f)(x) = (f(x), grad f(x)).
// With create_graph the returned gradients are differentiable, so grad(grad(...)) composes.
std::function<Tensors(const Tensors&)> grad(ScalarFn f, bool create_graph = false);
std::function<std::pair<Tensor, Tensors>(const Tensors&)> value_and_grad(ScalarFn f,
                                                                          bool create_graph = false);

}  // namespace metagrad::func
