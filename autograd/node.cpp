#include "autograd/node.h"

#include <atomic>

#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"

namespace metagrad::autograd {

namespace {
std::atomic<uint64_t> g_next_sequence_nr{0};
std::atomic<int64_t> g_live_nodes{0};
}  // namespace

Node::Node() : sequence_nr_(g_next_sequence_nr++) { ++g_live_nodes; }
// Note [Iterative graph release]: a node owns the nodes of its next edges, so dropping the last
// tensor of a long chain (an unrolled inner loop of 20,000 steps, say) destroyed the chain one
// nested destructor per node and overflowed the stack. As PyTorch's deleteNode: a dying node
// hands the nodes only its edges keep alive to a loop, which first drops each one's saved
// tensors (they may hold the same nodes through their grad_fn) and takes its edges in turn, so
// that every node dies with no edges left to recurse into.
Node::~Node() {
  --g_live_nodes;
  release_edges(next_edges_);
}

void Node::release_edges(EdgeList& edges) {
  std::vector<std::shared_ptr<Node>> stack;
  const auto gather = [&stack](EdgeList& es) {
    for (Edge& e : es) {
      if (e.node && e.node.use_count() == 1) stack.push_back(std::move(e.node));
      e.node.reset();
    }
  };
  gather(edges);
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    n->release_saved();
    gather(n->next_edges_);
  }  // n dies here, its edges empty
}
int64_t Node::live_count() { return g_live_nodes.load(); }

AccumulateGrad::AccumulateGrad(Tensor leaf) : leaf_(std::move(leaf)) {
  input_meta_ = {};
  output_meta_ = {{leaf_.shape(), leaf_.dtype()}};
}

Tensor run_hooks(std::vector<Hook> hooks, Tensor g) {
  for (const auto& hook : hooks) {
    Tensor r = hook(g);
    if (!r.defined()) continue;
    MG_CHECK(r.shape() == g.shape() && r.dtype() == g.dtype() && r.device() == g.device(), "hook",
             "a hook returned a gradient of shape ", shape_str(r.shape()), " ",
             dtype_name(r.dtype()), " on ", r.device().str(), " for a gradient of shape ",
             shape_str(g.shape()), " ", dtype_name(g.dtype()), " on ", g.device().str());
    g = std::move(r);
  }
  return g;
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  Tensor g = std::move(grads[0]);
  if (!g.defined()) return {};
  if (!leaf_.hooks().empty()) g = run_hooks(leaf_.hooks(), std::move(g));
  const Tensor& old = leaf_.grad();
  if (GradMode::is_enabled()) {
    // create_graph: .grad stays a differentiable function of the graph (a recorded clone: the
    // incoming gradient may be the caller's grad_output, another leaf's, or expanded).
    leaf_.set_grad(old.defined() ? old + g : g.clone());
  } else if (old.defined()) {
    leaf_.set_grad(old + g);  // a new tensor: never writes into a grad someone else holds
  } else {
    // Own the storage: the incoming gradient may be shared with other leaves or expanded.
    leaf_.set_grad(g.clone());
  }
  return {};
}

SavedTensor::SavedTensor(const Tensor& t, bool is_output, uint32_t output_nr)
    : version_(t.version()), output_nr_(output_nr), is_output_(is_output) {
  data_ = is_output ? t.detach() : t;
}

Tensor SavedTensor::unpack(const std::shared_ptr<Node>& owner, const char* op) const {
  if (released_)
    detail::fail("autograd", "trying to backward through the graph a second time: the tensors ",
                 op, " saved were freed after the first backward; pass retain_graph=true to the "
                 "first backward() or grad() if you need to go through it again");
  if (!data_.defined()) return Tensor();
  if (data_.version() != version_)
    detail::fail("autograd", "a tensor of shape ", shape_str(data_.shape()),
                 " needed to compute the gradient of ", op,
                 " was modified by an in-place operation: it was saved at version ", version_,
                 " and is now at version ", data_.version());
  if (!is_output_) return data_;
  Tensor t = data_.detach();
  t.set_grad_fn(owner, output_nr_);
  return t;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn(), t.output_nr()};
  auto& meta = t.impl()->meta();
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t);
    meta.grad_accumulator = acc;
  }
  return {acc, 0};
}

void attach(const std::shared_ptr<Node>& node, detail::TensorList inputs,
            detail::TensorList outputs) {
  node->next_edges_.clear();
  // Sized once (inline for the common sizes, so this is usually no allocation at all).
  node->next_edges_.reserve(inputs.size());
  node->input_meta_.reserve(inputs.size());
  node->output_meta_.reserve(outputs.size());
  node->outputs_.reserve(outputs.size());
  for (const Tensor& in : inputs) {
    node->next_edges_.push_back(gradient_edge(in));
    node->input_meta_.push_back(in.defined() ? TensorMeta{in.shape(), in.dtype(), in.device()} : TensorMeta{});
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    node->output_meta_.push_back({out.shape(), out.dtype(), out.device()});
    node->outputs_.push_back(out.impl_ptr());
  }
  // Edges were read above, before any output's grad_fn changes: an in-place op's output is
  // also its input, and its new node must point at its old history.
  for (size_t i = 0; i < outputs.size(); ++i) {
    Tensor out = outputs[i];
    if (!is_floating(out.dtype())) continue;
    // An in-place op moves the tensor to a new history: its old node no longer produces it, so
    // retain_grad runs at the new node only (as PyTorch's), not twice. The hooks registered so
    // far stay with the old value (Node::KeptHooks); later ones run at the new node.
    if (const std::shared_ptr<Node>& prev = out.grad_fn(); prev && prev != node) {
      const uint32_t nr = out.output_nr();
      if (nr < prev->outputs_.size() && prev->outputs_[nr].lock() == out.impl_ptr())
        prev->outputs_[nr].reset();
      if (auto& hooks = out.impl()->meta().hooks; !hooks.empty()) {
        prev->kept_hooks_.push_back({nr, std::move(hooks)});
        hooks.clear();
      }
    }
    out.set_grad_fn(node, static_cast<uint32_t>(i));
  }
}

}  // namespace metagrad::autograd

namespace metagrad::detail {
std::string grad_fn_name(const autograd::Node& node) { return node.name(); }
}  // namespace metagrad::detail
