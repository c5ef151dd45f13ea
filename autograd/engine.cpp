// The backward engine.
//
// A backward pass is a graph walk in dependency order: a node runs once every node that
// feeds it a gradient has run, with the gradients for each of its outputs summed in an input
// buffer. Ready nodes run newest first (highest sequence number), so memory of the latest
// activations is freed first, as in PyTorch. For grad(), only nodes on a path from the
// outputs to a requested input run, and leaves' .grad() is left untouched.
#include "autograd/engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <queue>
#include <unordered_map>

#include "autograd/derivatives.h"
#include "autograd/node.h"
#include "tensor/creation.h"
#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"

namespace metagrad {

using autograd::AccumulateGrad;
using autograd::Edge;
using autograd::Node;
using autograd::TensorMeta;

namespace {

// Process-wide, as PyTorch's: a backward pass on another thread (tasks on threads) checks too.
std::atomic<bool> g_anomaly{false};

// Resets grad mode to what it was, whatever the backward pass throws.
class GradModeScope {
 public:
  explicit GradModeScope(bool enabled) : prev_(GradMode::is_enabled()) {
    GradMode::set_enabled(enabled);
  }
  ~GradModeScope() { GradMode::set_enabled(prev_); }

 private:
  bool prev_;
};

void accumulate(std::vector<Tensor>& buf, uint32_t slot, const Tensor& g) {
  if (!g.defined()) return;
  buf[slot] = buf[slot].defined() ? buf[slot] + g : g;
}

// A rule's gradient for input `i`, made to match the input: broadcast copies summed back,
// dtype restored. Anything else is a bug in the rule and is reported as such.
Tensor conform(const Tensor& g, const TensorMeta& m, const Node& node, size_t i) {
  if (!g.defined()) return g;
  Tensor r = g;
  if (r.shape() != m.shape) {
    bool expandable = r.dim() >= static_cast<int64_t>(m.shape.size());
    for (size_t k = 0; expandable && k < m.shape.size(); ++k) {
      const int64_t rd = r.size(static_cast<int64_t>(k + r.dim() - m.shape.size()));
      expandable = m.shape[k] == rd || m.shape[k] == 1;
    }
    if (!expandable)
      detail::fail("autograd", node.name(), " returned a gradient of shape ", shape_str(r.shape()),
                   " for its input ", i, " of shape ", shape_str(m.shape));
    r = autograd::sum_to(r, m.shape);
  }
  if (r.dtype() != m.dtype && is_floating(m.dtype)) r = r.to(m.dtype);
  // A CPU scalar that joined an op on the GPU (detail::common_device) gets its gradient home.
  if (r.device() != m.device) r = r.to(m.device);
  return r;
}

void check_finite(const Node& node, const std::vector<Tensor>& grads) {
  NoGradGuard ng;
  for (size_t i = 0; i < grads.size(); ++i) {
    const Tensor& g = grads[i];
    if (!g.defined() || !is_floating(g.dtype())) continue;
    for (double v : g.to_vector<double>())
      if (!std::isfinite(v))
        detail::fail("autograd", "anomaly: ", node.name(), " produced ",
                     std::isnan(v) ? "NaN" : "an infinite value", " in the gradient for its input ",
                     i, " (shape ", shape_str(g.shape()), ")");
  }
}

// Note [Engine bookkeeping]: a pass keeps per-node state (relevant, must run, pending
// dependencies, gradient buffer, queued). Kept in hash maps keyed by node, that was five or
// six heap-allocated map entries per node and pass, a large share of a small graph's backward
// (the sinusoid meta-step's thousands of nodes). Instead each node the pass discovers gets a
// dense index, its position in the post-order, from one open-addressing table of node
// pointers, and the state lives in plain vectors indexed by it. Nodes cannot carry the index
// themselves: graphs of tasks on threads share their parameters' accumulator nodes.
class NodeIndex {
 public:
  // The index of n, or -1 when the pass has not discovered it.
  int find(const Node* n) const {
    if (keys_.empty()) return -1;
    for (size_t i = slot(n);; i = (i + 1) & (keys_.size() - 1)) {
      if (keys_[i] == n) return vals_[i];
      if (keys_[i] == nullptr) return -1;
    }
  }
  // Adds n with index v; false (and nothing changed) when n is there already.
  bool insert(const Node* n, int v) {
    if ((count_ + 1) * 2 > keys_.size()) grow();
    for (size_t i = slot(n);; i = (i + 1) & (keys_.size() - 1)) {
      if (keys_[i] == n) return false;
      if (keys_[i] == nullptr) {
        keys_[i] = n;
        vals_[i] = v;
        ++count_;
        return true;
      }
    }
  }
  void set(const Node* n, int v) {
    for (size_t i = slot(n);; i = (i + 1) & (keys_.size() - 1))
      if (keys_[i] == n) {
        vals_[i] = v;
        return;
      }
  }

 private:
  size_t slot(const Node* n) const {
    const auto h = reinterpret_cast<uintptr_t>(n) >> 4;  // nodes are 16-byte aligned at least
    return static_cast<size_t>(h * 0x9E3779B97F4A7C15ull >> 7) & (keys_.size() - 1);
  }
  void grow() {
    std::vector<const Node*> keys = std::move(keys_);
    std::vector<int> vals = std::move(vals_);
    keys_.assign(keys.empty() ? 64 : keys.size() * 2, nullptr);
    vals_.assign(keys_.size(), -1);
    count_ = 0;
    for (size_t i = 0; i < keys.size(); ++i)
      if (keys[i]) insert(keys[i], vals[i]);
  }
  std::vector<const Node*> keys_;  // size a power of two, at most half full
  std::vector<int> vals_;
  size_t count_ = 0;
};

struct BySequence {
  bool operator()(const Node* a, const Node* b) const {
    return a->sequence_nr() < b->sequence_nr();
  }
};

std::vector<Tensor> run_backward(const char* api, const std::vector<Tensor>& outputs,
                                 const std::vector<Tensor>& grad_outputs,
                                 const std::vector<Tensor>& inputs, bool retain_graph,
                                 bool create_graph, bool allow_unused, bool accumulate_leaves) {
  MG_CHECK(!outputs.empty(), api, "no outputs given");
  MG_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(), api, "got ",
           grad_outputs.size(), " grad_outputs for ", outputs.size(), " outputs");

  // Roots: where each output's gradient enters the graph.
  std::vector<Edge> roots;
  std::vector<Tensor> root_grads;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& o = outputs[i];
    MG_CHECK(o.defined(), api, "output ", i, " is undefined");
    Edge e = autograd::gradient_edge(o);
    MG_CHECK(e.valid(), api, "output ", i, " (shape ", shape_str(o.shape()),
             ") does not require grad and has no grad_fn");
    Tensor go = i < grad_outputs.size() ? grad_outputs[i] : Tensor();
    if (!go.defined()) {
      MG_CHECK(o.numel() == 1, api,
               "a gradient can be implied only for one-element outputs; "
               "output ",
               i, " has shape ", shape_str(o.shape()), ": pass grad_outputs");
      go = ones_like(o);
    } else {
      MG_CHECK(go.shape() == o.shape(), api, "grad_output ", i, " has shape ",
               shape_str(go.shape()), " but output ", i, " has shape ", shape_str(o.shape()));
      MG_CHECK(go.device() == o.device(), api, "grad_output ", i, " is on ", go.device().str(),
               " but output ", i, " is on ", o.device().str());
      // Another dtype (integer and bool too) is cast to the output's, as PyTorch's
      // validate_outputs does.
      if (go.dtype() != o.dtype()) go = go.to(o.dtype());
    }
    roots.push_back(e);
    root_grads.push_back(go);
  }

  // Where grad() collects its results: (node, slot) -> result index.
  std::unordered_map<const Node*, std::vector<std::pair<uint32_t, size_t>>> captures;
  std::vector<std::shared_ptr<Node>> keep;  // keeps accumulators of inputs alive
  for (size_t j = 0; j < inputs.size(); ++j) {
    MG_CHECK(inputs[j].defined(), api, "input ", j, " is undefined");
    MG_CHECK(inputs[j].requires_grad(), api, "input ", j, " (shape ", shape_str(inputs[j].shape()),
             ") does not require grad");
    Edge e = autograd::gradient_edge(inputs[j]);
    keep.push_back(e.node);
    captures[e.node.get()].emplace_back(e.input_nr, j);
  }

  // Discover the graph (iteratively: graphs of long unrolled loops are deep). Every node gets
  // its post-order position as its index (Note [Engine bookkeeping]).
  std::vector<Node*> order;  // post-order: children before parents
  NodeIndex index;
  for (const Edge& r : roots) {
    if (!index.insert(r.node.get(), -1)) continue;
    std::vector<std::pair<Node*, size_t>> stack{{r.node.get(), 0}};
    while (!stack.empty()) {
      auto& [n, k] = stack.back();
      if (k < n->next_edges().size()) {
        Node* child = n->next_edges()[k++].node.get();
        if (child && index.insert(child, -1)) stack.emplace_back(child, 0);
      } else {
        index.set(n, static_cast<int>(order.size()));
        order.push_back(n);
        stack.pop_back();
      }
    }
  }
  const size_t count = order.size();
  auto idx = [&](const Node* n) { return static_cast<size_t>(index.find(n)); };
  // Relevant nodes: all of them for backward(); for grad(), those a requested input is
  // reachable from (children come first in `order`).
  // A node must run when a relevant node lies below it; a captured node that has none below
  // only hands over its gradient.
  std::vector<char> relevant(count, 0), must_run(count, 0), queued(count, 0);
  for (size_t i = 0; i < count; ++i) {
    Node* n = order[i];
    bool run = accumulate_leaves;
    for (const Edge& e : n->next_edges()) run = run || (e.valid() && relevant[idx(e.node.get())]);
    if (run) must_run[i] = 1;
    if (run || captures.count(n)) relevant[i] = 1;
  }
  std::vector<int> deps(count, 0);
  for (size_t i = 0; i < count; ++i) {
    if (!relevant[i]) continue;
    for (const Edge& e : order[i]->next_edges())
      if (e.valid() && relevant[idx(e.node.get())]) ++deps[idx(e.node.get())];
  }

  GradModeScope mode(create_graph);
  std::vector<std::vector<Tensor>> buffers(count);
  auto buffer_of = [&](size_t i) -> std::vector<Tensor>& {
    auto& b = buffers[i];
    if (b.empty()) b.resize(order[i]->num_outputs());
    return b;
  };
  std::priority_queue<Node*, std::vector<Node*>, BySequence> ready;
  for (size_t i = 0; i < roots.size(); ++i) {
    const size_t r = idx(roots[i].node.get());
    if (!relevant[r]) continue;
    accumulate(buffer_of(r), roots[i].input_nr, root_grads[i]);
  }
  for (const Edge& root : roots) {
    const size_t r = idx(root.node.get());
    if (relevant[r] && deps[r] == 0 && !queued[r]) {
      queued[r] = 1;
      ready.push(order[r]);
    }
  }

  std::vector<Tensor> results(inputs.size());
  std::vector<bool> reached(inputs.size(), false);
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    const size_t ni = idx(n);
    std::vector<Tensor> grads = std::move(buffer_of(ni));
    buffers[ni] = std::vector<Tensor>();
    const bool is_leaf_sink = dynamic_cast<AccumulateGrad*>(n) != nullptr;

    // Hooks of outputs since modified in place, then hooks and retain_grad of the (still
    // alive) forward outputs of this node.
    for (const Node::KeptHooks& kept : n->kept_hooks())
      if (grads[kept.output_nr].defined())
        grads[kept.output_nr] = autograd::run_hooks(kept.hooks, std::move(grads[kept.output_nr]));
    for (size_t s = 0; s < n->outputs().size() && !is_leaf_sink; ++s) {
      auto impl = n->outputs()[s].lock();
      if (!impl || !grads[s].defined()) continue;
      Tensor t(impl);
      if (!t.hooks().empty()) grads[s] = autograd::run_hooks(t.hooks(), std::move(grads[s]));
      if (t.retains_grad()) {
        // A copy, as a leaf's .grad: grads[s] may be shared or expanded (stride 0).
        Tensor g = create_graph ? grads[s] : grads[s].detach();
        t.set_grad(t.grad().defined() ? t.grad() + g : g.clone());
      }
    }
    if (auto it = captures.find(n); it != captures.end()) {
      for (auto [slot, j] : it->second) {
        Tensor g = grads[slot];
        if (is_leaf_sink && g.defined())
          g = autograd::run_hooks(static_cast<AccumulateGrad*>(n)->leaf().hooks(), g);
        results[j] = g;
        reached[j] = true;
      }
    }
    if (is_leaf_sink) {
      if (accumulate_leaves) n->apply(std::move(grads));
      continue;
    }
    if (!must_run[ni]) continue;

    // Multi-output ops see zeros for outputs no gradient reached.
    bool any = false;
    for (const Tensor& g : grads) any = any || g.defined();
    std::vector<Tensor> in_grads;  // the rule's result, or undefined gradients when none flowed
    if (!any) in_grads.resize(n->next_edges().size());
    if (any) {
      if (grads.size() > 1)
        for (size_t s = 0; s < grads.size(); ++s)
          if (!grads[s].defined() && is_floating(n->output_meta()[s].dtype))
            grads[s] =
                zeros(n->output_meta()[s].shape,
                      TensorOptions(n->output_meta()[s].dtype).device(n->output_meta()[s].device));
      in_grads = n->apply(std::move(grads));
      if (!retain_graph) n->release_saved();
      for (size_t i = 0; i < in_grads.size(); ++i)
        in_grads[i] = conform(in_grads[i], n->input_meta()[i], *n, i);
      if (g_anomaly) check_finite(*n, in_grads);
    }
    for (size_t i = 0; i < n->next_edges().size(); ++i) {
      const Edge& e = n->next_edges()[i];
      if (!e.valid()) continue;
      const size_t ci = idx(e.node.get());
      if (!relevant[ci]) continue;
      accumulate(buffer_of(ci), e.input_nr, in_grads[i]);
      if (--deps[ci] == 0) ready.push(e.node.get());
    }
  }

  for (size_t j = 0; j < inputs.size(); ++j) {
    if (results[j].defined()) continue;
    MG_CHECK(reached[j] || allow_unused, api, "input ", j, " (shape ", shape_str(inputs[j].shape()),
             ") is not part of the graph of the outputs; "
             "pass allow_unused=true to get an undefined gradient for it");
    if (reached[j]) results[j] = zeros_like(inputs[j]);  // reached, but no gradient flowed
  }
  return results;
}

}  // namespace

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, std::optional<bool> retain_graph,
                         bool create_graph, bool allow_unused) {
  MG_CHECK(!inputs.empty(), "grad", "no inputs given");
  return run_backward("grad", outputs, grad_outputs, inputs, retain_graph.value_or(create_graph),
                      create_graph, allow_unused, /*accumulate_leaves=*/false);
}

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
              std::optional<bool> retain_graph, bool create_graph) {
  run_backward("backward", outputs, grad_outputs, {}, retain_graph.value_or(create_graph),
               create_graph, false, /*accumulate_leaves=*/true);
}

void Tensor::backward(const Tensor& gradient, std::optional<bool> retain_graph,
                      bool create_graph) const {
  metagrad::backward({*this}, {gradient}, retain_graph, create_graph);
}

bool AnomalyMode::is_enabled() {
  return g_anomaly.load(std::memory_order_relaxed);
}
void AnomalyMode::set_enabled(bool e) {
  g_anomaly.store(e, std::memory_order_relaxed);
}

}  // namespace metagrad
