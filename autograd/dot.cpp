#include "autograd/dot.h"

#include <sstream>
#include <unordered_map>

#include "autograd/node.h"

namespace metagrad {

std::string to_dot(const std::vector<Tensor>& roots) {
  using autograd::AccumulateGrad;
  using autograd::Node;
  std::ostringstream os;
  os << "digraph autograd {\n  rankdir=BT;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  std::unordered_map<const Node*, int> id;
  std::vector<const Node*> todo;
  auto visit = [&](const Node* n) {
    if (!n || id.count(n)) return;
    id[n] = static_cast<int>(id.size());
    todo.push_back(n);
  };
  for (size_t r = 0; r < roots.size(); ++r) {
    const Tensor& t = roots[r];
    if (!t.defined()) continue;
    os << "  root" << r << " [shape=ellipse, label=\"output " << r << "\\n"
       << shape_str(t.shape()) << "\"];\n";
    auto e = autograd::gradient_edge(t);
    if (e.valid()) {
      visit(e.node.get());
      os << "  n" << id[e.node.get()] << " -> root" << r << ";\n";
    }
  }
  while (!todo.empty()) {
    const Node* n = todo.back();
    todo.pop_back();
    const int me = id[n];
    if (auto* acc = dynamic_cast<const AccumulateGrad*>(n)) {
      os << "  n" << me << " [shape=box, style=filled, fillcolor=lightblue, label=\"leaf "
         << shape_str(acc->leaf().shape()) << "\\n" << n->name() << "\"];\n";
    } else {
      os << "  n" << me << " [shape=box, label=\"" << n->name();
      for (const auto& m : n->output_meta()) os << "\\n-> " << shape_str(m.shape);
      for (const auto& s : n->describe_saved()) os << "\\nsaved " << s;
      os << "\"];\n";
    }
    for (const auto& e : n->next_edges()) {
      if (!e.valid()) continue;
      visit(e.node.get());
      // Arrows point the way the forward pass went: from producer to consumer.
      os << "  n" << id[e.node.get()] << " -> n" << me << ";\n";
    }
  }
  os << "}\n";
  return os.str();
}

}  // namespace metagrad
