#include "autograd/functional.h"

#include "autograd/engine.h"
#include "tensor/creation.h"
#include "tensor/grad_mode.h"
#include "tensor/indexing.h"

namespace metagrad::func {

namespace {

// Fresh tensors that require grad and share the inputs' data, so the transform differentiates
// w.r.t. exactly these: uses of the caller's tensor that do not go through them (a closure, the
// same tensor passed twice) are not counted. Detached leaves; with create_graph, recorded
// aliases (PyTorch's view_as) instead, which keep the caller's graph behind them so that the
// result can be differentiated further. Being views, they may not be written in place while
// recording (metagrad refuses in-place writes into views under autograd); f must not.
Tensors prepare(const char* op, const Tensors& inputs, bool create_graph) {
  MG_CHECK(!inputs.empty(), op, "no inputs given");
  Tensors r;
  for (size_t i = 0; i < inputs.size(); ++i) {
    MG_CHECK(inputs[i].defined() && inputs[i].is_floating_point(), op, "input ", i,
             " must be a defined floating-point tensor");
    if (create_graph && inputs[i].requires_grad()) {
      r.push_back(inputs[i].view(inputs[i].shape()));
    } else {
      Tensor t = inputs[i].detach();
      t.requires_grad_(true);
      r.push_back(t);
    }
  }
  return r;
}

Tensors fill_undefined(Tensors g, const Tensors& like) {
  for (size_t i = 0; i < g.size(); ++i)
    if (!g[i].defined()) g[i] = zeros_like(like[i]);
  return g;
}

Tensors differentiable_outputs(const char* op, const Tensors& outs) {
  MG_CHECK(!outs.empty(), op, "the function returned no outputs");
  return outs;
}

// Each vector of `vs` must be given and have its partner's shape: an undefined one would be
// taken as ones by the engine where its partner has one element.
void check_vectors(const char* op, const char* what, const Tensors& vs, const Tensors& like,
                   const char* partner) {
  for (size_t i = 0; i < vs.size(); ++i)
    MG_CHECK(vs[i].defined() && vs[i].shape() == like[i].shape(), op, what, " ", i, " has shape ",
             vs[i].defined() ? shape_str(vs[i].shape()) : std::string("(undefined)"), ", its ",
             partner, " has shape ", shape_str(like[i].shape()));
}

}  // namespace

std::pair<Tensors, Tensors> vjp(const Fn& f, const Tensors& inputs, const Tensors& v,
                                bool create_graph) {
  EnableGradGuard eg;
  Tensors x = prepare("vjp", inputs, create_graph);
  Tensors out = differentiable_outputs("vjp", f(x));
  MG_CHECK(v.size() == out.size(), "vjp", "got ", v.size(), " vectors for ", out.size(),
           " outputs");
  check_vectors("vjp", "vector", v, out, "output");
  Tensors used, vs;
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i].requires_grad()) { used.push_back(out[i]); vs.push_back(v[i]); }
  Tensors g = used.empty() ? Tensors(x.size())
                           : metagrad::grad(used, x, vs, create_graph, create_graph, true);
  return {out, fill_undefined(g, x)};
}

std::pair<Tensors, Tensors> jvp(const Fn& f, const Tensors& inputs, const Tensors& u,
                                bool create_graph) {
  EnableGradGuard eg;
  Tensors x = prepare("jvp", inputs, create_graph);
  MG_CHECK(u.size() == x.size(), "jvp", "got ", u.size(), " tangents for ", x.size(), " inputs");
  check_vectors("jvp", "tangent", u, x, "input");
  Tensors out = differentiable_outputs("jvp", f(x));
  Tensors used, w;
  for (const Tensor& o : out) {
    if (!o.requires_grad()) continue;
    used.push_back(o);
    w.push_back(zeros_like(o).requires_grad_(true));  // the dummy cotangent
  }
  Tensors result(out.size());
  if (!used.empty()) {
    Tensors jtw = fill_undefined(metagrad::grad(used, x, w, true, true, true), x);  // J^T w
    // J^T w does not depend on w where the graph is linear in w only through ops that saw it.
    Tensors inner, us;
    for (size_t j = 0; j < jtw.size(); ++j)
      if (jtw[j].requires_grad()) { inner.push_back(jtw[j]); us.push_back(u[j]); }
    Tensors ju = inner.empty() ? Tensors(w.size())
                               : metagrad::grad(inner, w, us, create_graph, create_graph, true);
    size_t k = 0;
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i].requires_grad()) {
        result[i] = ju[k].defined() ? ju[k] : zeros_like(out[i]);
        ++k;
      }
  }
  for (size_t i = 0; i < out.size(); ++i)
    if (!result[i].defined()) result[i] = zeros_like(out[i]);
  return {out, result};
}

std::pair<Tensor, Tensors> hvp(const ScalarFn& f, const Tensors& inputs, const Tensors& v,
                               bool create_graph) {
  EnableGradGuard eg;
  Tensors x = prepare("hvp", inputs, create_graph);
  MG_CHECK(v.size() == x.size(), "hvp", "got ", v.size(), " vectors for ", x.size(), " inputs");
  check_vectors("hvp", "vector", v, x, "input");
  Tensor y = f(x);
  MG_CHECK(y.numel() == 1, "hvp", "the function must return one element, got shape ",
           shape_str(y.shape()));
  if (!y.requires_grad()) return {y, fill_undefined(Tensors(x.size()), x)};  // constant: H = 0
  Tensors g = fill_undefined(metagrad::grad({y}, x, {}, true, true, true), x);
  Tensors gs, vs;
  for (size_t i = 0; i < g.size(); ++i)
    if (g[i].requires_grad()) { gs.push_back(g[i]); vs.push_back(v[i]); }
  Tensors hv = gs.empty() ? Tensors(x.size())
                          : metagrad::grad(gs, x, vs, create_graph, create_graph, true);
  return {y, fill_undefined(hv, x)};
}

std::vector<Tensors> jacobian(const Fn& f, const Tensors& inputs, bool create_graph) {
  EnableGradGuard eg;
  Tensors x = prepare("jacobian", inputs, create_graph);
  Tensors out = differentiable_outputs("jacobian", f(x));
  std::vector<Tensors> J(out.size(), Tensors(x.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t m = out[i].numel();
    for (size_t j = 0; j < x.size(); ++j) {
      Shape s = out[i].shape();
      s.insert(s.end(), x[j].shape().begin(), x[j].shape().end());
      J[i][j] = zeros(s, x[j].options());
    }
    if (!out[i].requires_grad()) continue;
    // Row by row: the vjp with the r-th unit vector is row r of J.
    std::vector<Tensors> rows(x.size());
    for (int64_t r = 0; r < m; ++r) {
      Tensor e = zeros({m}, out[i].options());
      {
        NoGradGuard ng;
        e.select(0, r).fill_(1);
      }
      Tensors g = metagrad::grad({out[i]}, x, {e.view(out[i].shape())}, true, create_graph, true);
      for (size_t j = 0; j < x.size(); ++j)
        rows[j].push_back(g[j].defined() ? g[j].reshape({-1}) : zeros({x[j].numel()}, x[j].options()));
    }
    if (m > 0)
      for (size_t j = 0; j < x.size(); ++j) J[i][j] = stack(rows[j], 0).reshape(J[i][j].shape());
  }
  return J;
}

std::vector<Tensors> hessian(const ScalarFn& f, const Tensors& inputs) {
  Fn gradf = [&](const Tensors& xs) {
    Tensor y = f(xs);
    MG_CHECK(y.numel() == 1, "hessian", "the function must return one element, got shape ",
             shape_str(y.shape()));
    if (!y.requires_grad()) return fill_undefined(Tensors(xs.size()), xs);  // constant: H = 0
    return fill_undefined(metagrad::grad({y}, xs, {}, true, true, true), xs);
  };
  return jacobian(gradf, inputs);
}

std::function<Tensors(const Tensors&)> grad(ScalarFn f, bool create_graph) {
  return [f = std::move(f), create_graph](const Tensors& inputs) {
    return value_and_grad(f, create_graph)(inputs).second;
  };
}

std::function<std::pair<Tensor, Tensors>(const Tensors&)> value_and_grad(ScalarFn f,
                                                                          bool create_graph) {
  return [f = std::move(f), create_graph](const Tensors& inputs) {
    EnableGradGuard eg;
    Tensors x = prepare("grad", inputs, create_graph);
    Tensor y = f(x);
    MG_CHECK(y.numel() == 1, "grad", "the function must return one element, got shape ",
             shape_str(y.shape()));
    Tensors g = y.requires_grad()
                    ? metagrad::grad({y}, x, {}, create_graph, create_graph, true)
                    : Tensors(x.size());
    return std::make_pair(y, fill_undefined(g, x));
  };
}

}  // namespace metagrad::func
