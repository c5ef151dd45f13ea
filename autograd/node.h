// The autograd graph: a Node per recorded op application, edges to the nodes that produced
// its inputs, and the tensors the derivative needs (saved with their version, so an in-place
// write after saving is caught).
//
// Note [Saved outputs]: a derivative often wants the op's output (d exp(x) = exp(x) dx).
// Holding the output tensor itself would make a cycle (output -> grad_fn -> output), so a
// node keeps only the output's data and, when the derivative runs, re-attaches it to the
// node as a fresh tensor whose grad_fn is the node itself. Under create_graph the
// derivative's own graph then flows back through this node, as it must (PyTorch does the
// same in SavedVariable).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/small_vector.h"
#include "tensor/tensor.h"

namespace metagrad::autograd {

class Node;

// Where a gradient goes: input slot `input_nr` of `node` (a node's "inputs" in the backward
// direction are the forward op's outputs).
struct Edge {
  std::shared_ptr<Node> node;
  uint32_t input_nr = 0;
  bool valid() const { return node != nullptr; }
};

// Shape and dtype of a tensor a node produced or consumed: enough to make zeros or check a
// gradient's shape without keeping the tensor alive.
struct TensorMeta {
  Shape shape;
  DType dtype = DType::Float32;
  Device device = Device::cpu();
};

// A node's per-input and per-output lists, inline up to the common sizes (three inputs for
// `where`, two outputs for max with indices; Note in autograd/small_vector.h).
using EdgeList = SmallVector<Edge, 3>;
using InputMetas = SmallVector<TensorMeta, 3>;
using OutputMetas = SmallVector<TensorMeta, 2>;
using OutputRefs = SmallVector<std::weak_ptr<TensorImpl>, 2>;
using Hook = std::function<Tensor(const Tensor&)>;

class Node : public std::enable_shared_from_this<Node> {
 public:
  Node();
  virtual ~Node();
  // Nodes alive in this process: a graph that is not freed shows up here (tests use it).
  static int64_t live_count();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Gradients w.r.t. the forward op's outputs in, gradients w.r.t. its inputs out (one per
  // next edge; undefined where no gradient flows).
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  virtual std::string name() const = 0;
  // Drops saved tensors after a backward pass that did not ask to retain the graph.
  virtual void release_saved() {}
  // The shapes of what the node saved, for graph export ("input 0 [2, 3]", ...).
  virtual std::vector<std::string> describe_saved() const { return {}; }

  const EdgeList& next_edges() const { return next_edges_; }
  uint64_t sequence_nr() const { return sequence_nr_; }
  size_t num_outputs() const { return output_meta_.size(); }
  const OutputMetas& output_meta() const { return output_meta_; }
  const InputMetas& input_meta() const { return input_meta_; }
  // The forward outputs, weakly: their hooks and retain_grad run when gradients reach here.
  const OutputRefs& outputs() const { return outputs_; }
  // Hooks of an output that an in-place op has since moved to a new node: they stay here, with
  // the value they were registered on (PyTorch's rule: they see the gradient w.r.t. the value
  // before the in-place op, while hooks registered after it see the one after).
  struct KeptHooks {
    uint32_t output_nr;
    std::vector<Hook> hooks;
  };
  const std::vector<KeptHooks>& kept_hooks() const { return kept_hooks_; }

 protected:
  friend void attach(const std::shared_ptr<Node>&, detail::TensorList, detail::TensorList);
  // Note [Iterative graph release]: drops `edges`, and the nodes only they kept alive, with a
  // loop rather than by recursion.
  static void release_edges(EdgeList& edges);
  EdgeList next_edges_;
  InputMetas input_meta_;
  OutputMetas output_meta_;
  OutputRefs outputs_;
  std::vector<KeptHooks> kept_hooks_;
  uint64_t sequence_nr_;
};

// Runs hooks on a gradient g, in registration order, each on the last one's result (an
// undefined result keeps the gradient). Taken by value: a hook may register further hooks on
// its tensor, and they run from the next backward on. A result of another shape, dtype or
// device than g is an error.
Tensor run_hooks(std::vector<Hook> hooks, Tensor g);

// The sink for a leaf tensor: adds incoming gradients into leaf.grad().
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(Tensor leaf);
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return "AccumulateGrad"; }
  const Tensor& leaf() const { return leaf_; }

 private:
  Tensor leaf_;
};

// A tensor a derivative needs, with the version it had when saved.
class SavedTensor {
 public:
  SavedTensor() = default;
  // `is_output`: see Note [Saved outputs]; `output_nr` is then its index among the outputs.
  SavedTensor(const Tensor& t, bool is_output, uint32_t output_nr = 0);
  // Shape of the saved data; empty when freed.
  std::string describe() const {
    return data_.defined() ? shape_str(data_.shape()) : std::string("(freed)");
  }
  // The tensor again; `owner` re-attaches a saved output. Throws if it was modified in place
  // since it was saved, or already freed.
  Tensor unpack(const std::shared_ptr<Node>& owner, const char* op) const;
  void reset() { data_ = Tensor(); released_ = true; }
  bool defined() const { return data_.defined(); }

 private:
  Tensor data_;  // the input itself, or an output's detached data
  uint64_t version_ = 0;
  uint32_t output_nr_ = 0;
  bool is_output_ = false;
  bool released_ = false;
};

// The edge a gradient for `t` should travel: its grad_fn, or its leaf accumulator.
// Invalid edge when t does not require grad.
Edge gradient_edge(const Tensor& t);

// Connects a new node: edges from `inputs`, metadata, and grad_fn of floating `outputs`.
void attach(const std::shared_ptr<Node>& node, detail::TensorList inputs,
            detail::TensorList outputs);

}  // namespace metagrad::autograd
