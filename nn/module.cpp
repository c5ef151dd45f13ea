// nn::Module: registration, traversal, modes, conversions, state dicts, printing and the
// helpers of the functional form (Note [Functional form of a Module] in nn/module.h).
#include "nn/module.h"

#include <cxxabi.h>
#include <algorithm>

#include <cstdlib>
#include <set>
#include <sstream>
#include <typeinfo>

#include "autograd/engine.h"
#include "tensor/grad_mode.h"

namespace metagrad::nn {

namespace {

// Finds `name` in a registration-ordered list.
template <typename V>
auto find_named(V& list, const std::string& name) {
  for (auto it = list.begin(); it != list.end(); ++it)
    if (it->first == name) return it;
  return list.end();
}

// Makes `t` hold `src`'s data, dtype and layout while keeping its handle and autograd
// identity (PyTorch's Tensor.set_data): every copy of the handle sees the change.
void set_data(const Tensor& t, const Tensor& src) {
  TensorImpl* dst = t.impl();
  const TensorImpl* s = src.impl();
  dst->storage = s->storage;
  dst->shape = s->shape;
  dst->strides = s->strides;
  dst->offset = s->offset;
  dst->dtype = s->dtype;
  // A graph recorded before refers to the old data: the leaf's accumulator starts afresh.
  if (dst->autograd) dst->autograd->grad_accumulator.reset();
}

// PyTorch's "_addindent": indents every line but the first by `n` spaces.
std::string add_indent(const std::string& s, int n) {
  std::string out;
  const std::string pad(static_cast<size_t>(n), ' ');
  for (char c : s) {
    out += c;
    if (c == '\n') out += pad;
  }
  return out;
}

}  // namespace

// ---- naming and forward ------------------------------------------------------------------

std::string Module::name() const {
  const char* mangled = typeid(*this).name();
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string full = status == 0 && demangled ? demangled : mangled;
  std::free(demangled);
  // "metagrad::nn::LinearImpl" -> "Linear"; namespaces inside template arguments stay.
  const size_t tmpl = full.find('<');
  const size_t colon = full.rfind("::", tmpl);
  std::string n = colon == std::string::npos ? full : full.substr(colon + 2);
  const std::string impl = "Impl";
  if (n.size() > impl.size() && n.compare(n.size() - impl.size(), impl.size(), impl) == 0)
    n.resize(n.size() - impl.size());
  return n;
}

Tensor Module::forward(const Tensor& x) {
  return forward(x, ParamMap{});
}

Tensor Module::forward(const Tensor&, const ParamMap& params) {
  if (params.empty())
    detail::fail(name().c_str(),
                 "this module implements neither forward(x) nor forward(x, params)");
  detail::fail(name().c_str(),
               "this module does not implement the functional form forward(x, params) "
               "(Note [Functional form of a Module] in nn/module.h)");
}

// ---- registration -------------------------------------------------------------------------

void Module::check_new_name(const char* what, const std::string& name) const {
  MG_CHECK(!name.empty(), "Module", what, " name must not be empty");
  MG_CHECK(name.find('.') == std::string::npos, "Module", what, " name '", name,
           "' must not contain '.' (dots separate the levels of a dotted name)");
  const bool taken = find_named(parameters_, name) != parameters_.end() ||
                     find_named(buffers_, name) != buffers_.end() ||
                     find_named(children_, name) != children_.end();
  MG_CHECK(!taken, "Module", what, " '", name, "' is already defined in ", this->name());
}

Tensor& Module::register_parameter(const std::string& name, Tensor tensor, bool requires_grad) {
  check_new_name("parameter", name);
  MG_CHECK(tensor.defined(), "Module", "parameter '", name, "' is an undefined tensor");
  if (requires_grad) {
    MG_CHECK(tensor.is_floating_point(), "Module", "parameter '", name, "' has dtype ",
             dtype_name(tensor.dtype()), ": only floating-point tensors can require gradients");
    MG_CHECK(tensor.is_leaf(), "Module", "parameter '", name,
             "' must be a leaf tensor (it was computed by a recorded op): pass t.detach()");
  }
  if (tensor.is_leaf()) tensor.requires_grad_(requires_grad);
  parameters_.emplace_back(name, std::move(tensor));
  return parameters_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor tensor) {
  check_new_name("buffer", name);
  MG_CHECK(tensor.defined(), "Module", "buffer '", name, "' is an undefined tensor");
  buffers_.emplace_back(name, std::move(tensor));
  return buffers_.back().second;
}

void Module::register_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name("submodule", name);
  MG_CHECK(module != nullptr, "Module", "submodule '", name, "' is null");
  MG_CHECK(module.get() != this, "Module", "a module cannot be its own child ('", name, "')");
  children_.emplace_back(name, std::move(module));
}

// ---- traversal ------------------------------------------------------------------------------

void Module::collect_parameters(const std::string& prefix, bool recurse,
                                std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [n, t] : parameters_) out.emplace_back(prefix + n, t);
  if (!recurse) return;
  for (const auto& [n, c] : children_) c->collect_parameters(prefix + n + ".", true, out);
}

void Module::collect_buffers(const std::string& prefix, bool recurse,
                             std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [n, t] : buffers_) out.emplace_back(prefix + n, t);
  if (!recurse) return;
  for (const auto& [n, c] : children_) c->collect_buffers(prefix + n + ".", true, out);
}

void Module::collect_modules(const std::string& prefix,
                             std::vector<std::pair<std::string, std::shared_ptr<Module>>>& out) {
  for (const auto& [n, c] : children_) {
    const std::string full = prefix.empty() ? n : prefix + "." + n;
    out.emplace_back(full, c);
    c->collect_modules(full, out);
  }
}

namespace {
// Keeps the first entry of each tensor (by identity), as PyTorch's remove_duplicate.
std::vector<std::pair<std::string, Tensor>> first_of_each(
    std::vector<std::pair<std::string, Tensor>> all) {
  std::set<const TensorImpl*> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& e : all)
    if (seen.insert(e.second.impl()).second) out.push_back(std::move(e));
  return out;
}
}  // namespace

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse,
                                                                     bool remove_duplicate) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_parameters("", recurse, out);
  return remove_duplicate ? first_of_each(std::move(out)) : out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse,
                                                                  bool remove_duplicate) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_buffers("", recurse, out);
  return remove_duplicate ? first_of_each(std::move(out)) : out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_buffers(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return children_;
}

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (const auto& [n, c] : children_) out.push_back(c);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  // `this` may not be owned by a shared_ptr (a module on the stack): alias without owning.
  std::shared_ptr<Module> self = weak_from_this().lock();
  if (!self) self = std::shared_ptr<Module>(std::shared_ptr<Module>{}, this);
  out.emplace_back("", self);
  collect_modules("", out);
  std::set<const Module*> seen;
  std::erase_if(out, [&](const auto& e) { return !seen.insert(e.second.get()).second; });
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (auto& [n, c] : children_) c->apply(fn);
}

// ---- modes and gradients ----------------------------------------------------------------

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.set_grad(Tensor());
}

void Module::reset_parameters(Generator* gen) {
  for (auto& [n, c] : children_) c->reset_parameters(gen);
}

// ---- conversions ----------------------------------------------------------------------------

void Module::convert(const std::function<Tensor(const Tensor&)>& fn) {
  // Compute every converted tensor first: a failure leaves the module untouched.
  struct Change {
    Tensor handle, data, grad;
  };
  std::vector<Change> changes;
  NoGradGuard no_grad;
  for (auto& [n, t] : named_parameters()) {
    Change c{t, fn(t.detach()), Tensor()};
    if (t.grad().defined()) c.grad = fn(t.grad().detach());
    changes.push_back(std::move(c));
  }
  for (auto& [n, t] : named_buffers()) changes.push_back({t, fn(t.detach()), Tensor()});
  for (auto& c : changes) {
    if (c.data.is_same(c.handle) || c.data.storage() == c.handle.storage()) continue;
    set_data(c.handle, c.data);
    if (c.grad.defined()) c.handle.set_grad(c.grad);
  }
}

void Module::to(DType dtype) {
  MG_CHECK(is_floating(dtype), "Module.to", "only floating-point dtypes are accepted, got ",
           dtype_name(dtype), " (integer buffers keep their dtype)");
  convert([dtype](const Tensor& t) { return t.is_floating_point() ? t.to(dtype) : t; });
}

void Module::to(Device device) {
  convert([device](const Tensor& t) { return t.to(device); });
}

// ---- state dicts ----------------------------------------------------------------------------

ParamMap Module::state_dict() const {
  ParamMap out;
  NoGradGuard no_grad;
  // Every name of a tensor registered twice, as PyTorch's state_dict.
  for (auto& [n, t] : named_parameters(true, false)) out[n] = t.detach().clone();
  for (auto& [n, t] : named_buffers(true, false)) out[n] = t.detach().clone();
  return out;
}

LoadStateDictResult Module::load_state_dict(const ParamMap& dict, bool strict) {
  std::vector<std::pair<std::string, Tensor>> own = named_parameters(true, false);
  for (auto& nb : named_buffers(true, false)) own.push_back(nb);
  LoadStateDictResult result;
  std::vector<std::string> problems;
  std::set<std::string> own_names;
  for (const auto& [key, t] : own) {
    own_names.insert(key);
    auto it = dict.find(key);
    if (it == dict.end()) {
      result.missing_keys.push_back(key);
      continue;
    }
    const Tensor& src = it->second;
    if (!src.defined()) {
      problems.push_back("'" + key + "' is an undefined tensor in the state dict");
    } else if (src.shape() != t.shape()) {
      problems.push_back("size mismatch for '" + key + "': copying a tensor of shape " +
                         shape_str(src.shape()) + " from the state dict, the shape in the " +
                         "current module is " + shape_str(t.shape()));
    } else if (src.dtype() != t.dtype()) {
      problems.push_back("dtype mismatch for '" + key + "': the state dict holds " +
                         dtype_name(src.dtype()) + ", the current module " + dtype_name(t.dtype()));
    }
  }
  for (const auto& [key, t] : dict)
    if (!own_names.count(key)) result.unexpected_keys.push_back(key);
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& k : v) s += (s.empty() ? "'" : ", '") + k + "'";
    return s;
  };
  std::vector<std::string> key_problems;
  if (strict && !result.missing_keys.empty())
    key_problems.push_back("missing key(s): " + join(result.missing_keys));
  if (strict && !result.unexpected_keys.empty())
    key_problems.push_back("unexpected key(s): " + join(result.unexpected_keys));
  problems.insert(problems.begin(), key_problems.begin(), key_problems.end());
  if (!problems.empty()) {
    std::string msg;
    for (const auto& p : problems) msg += "\n  " + p;
    detail::fail("load_state_dict", "error(s) in loading the state dict for ", name(), ":", msg);
  }
  NoGradGuard no_grad;
  for (auto& [key, t] : own) {
    auto it = dict.find(key);
    if (it == dict.end()) continue;
    Tensor dst = t;
    dst.copy_(it->second);
  }
  return result;
}

// ---- printing ------------------------------------------------------------------------------

std::string Module::repr() const {
  // PyTorch's Module.__repr__.
  std::vector<std::string> extra_lines, child_lines;
  std::istringstream extra(extra_repr());
  for (std::string line; std::getline(extra, line);) extra_lines.push_back(line);
  for (const auto& [n, c] : children_)
    child_lines.push_back("(" + n + "): " + add_indent(c->repr(), 2));
  std::string s = name() + "(";
  if (extra_lines.size() == 1 && child_lines.empty()) {
    s += extra_lines[0];
  } else if (!extra_lines.empty() || !child_lines.empty()) {
    for (const auto& l : extra_lines) s += "\n  " + l;
    for (const auto& l : child_lines) s += "\n  " + l;
    s += "\n";
  }
  return s + ")";
}

std::ostream& operator<<(std::ostream& os, const Module& m) {
  return os << m.repr();
}

// ---- functional form ---------------------------------------------------------------------

Tensor Module::param(const ParamMap& params, const std::string& pname, const Tensor& own,
                     bool stackable) const {
  auto it = params.find(pname);
  if (it == params.end()) return own;
  const Tensor& t = it->second;
  MG_CHECK(t.defined(), name().c_str(), "forward(x, params): '", pname, "' is an undefined tensor");
  // As the module's own parameter: a fast weight of another dtype would change the output's
  // dtype (or make an integer layer) without a word.
  MG_CHECK(!own.defined() || t.dtype() == own.dtype(), name().c_str(), "forward(x, params): '",
           pname, "' has dtype ", dtype_name(t.dtype()), ", the module's parameter ",
           dtype_name(own.dtype()));
  if (!own.defined() || t.shape() == own.shape()) return t;
  const Shape& s = t.shape();
  const Shape& o = own.shape();
  const bool stack =
      stackable && s.size() > o.size() &&
      std::equal(o.begin(), o.end(), s.end() - static_cast<std::ptrdiff_t>(o.size()));
  MG_CHECK(stack, name().c_str(), "forward(x, params): '", pname, "' has shape ", shape_str(s),
           ", the module's parameter has shape ", shape_str(o),
           stackable ? " (or a stack of them, [B..., that shape])" : "");
  return t;
}

ParamMap Module::child_params(const ParamMap& params, const std::string& child) {
  ParamMap out;
  const std::string prefix = child + ".";
  // Keys with the prefix are contiguous in the sorted map.
  for (auto it = params.lower_bound(prefix);
       it != params.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    out.emplace(it->first.substr(prefix.size()), it->second);
  return out;
}

void Module::check_params(const ParamMap& params) const {
  for (const auto& [key, t] : params) {
    const size_t dot = key.find('.');
    if (dot == std::string::npos) {
      if (find_named(parameters_, key) != parameters_.end()) continue;
      MG_CHECK(find_named(buffers_, key) == buffers_.end(), name().c_str(), "forward(x, params): '",
               key, "' is a buffer; params holds parameters only ",
               "(buffers always come from the module)");
    } else if (find_named(children_, key.substr(0, dot)) != children_.end()) {
      continue;
    }
    std::string known;
    for (const auto& [n, p] : parameters_) known += (known.empty() ? "" : ", ") + n;
    for (const auto& [n, c] : children_) known += (known.empty() ? "" : ", ") + n + ".*";
    detail::fail(name().c_str(), "forward(x, params): '", key,
                 "' names no parameter of this module (it has: ", known.empty() ? "none" : known,
                 ")");
  }
}

ParamMap params_of(const Module& module) {
  ParamMap out;
  // Every name: forward(x, params) looks each place's weights up by its own name.
  for (auto& [n, t] : module.named_parameters(true, false)) out[n] = t;
  return out;
}

std::vector<Tensor> values_of(const ParamMap& map) {
  std::vector<Tensor> out;
  out.reserve(map.size());
  for (const auto& [k, t] : map) out.push_back(t);
  return out;
}

ParamMap grad(const Tensor& output, const ParamMap& params, bool create_graph, bool allow_unused) {
  MG_CHECK(output.defined() && output.numel() == 1, "nn::grad",
           "expected a one-element output (a loss), got ",
           output.defined() ? shape_str(output.shape()) : std::string("an undefined tensor"));
  std::vector<Tensor> g =
      metagrad::grad({output}, values_of(params), {}, std::nullopt, create_graph, allow_unused);
  ParamMap out;
  size_t i = 0;
  for (const auto& [k, t] : params) out.emplace(k, g[i++]);
  return out;
}

}  // namespace metagrad::nn
