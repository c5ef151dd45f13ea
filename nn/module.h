// nn::Module: the base of every layer, shaped like libtorch's torch::nn::Module.
//
// A Module owns named parameters (trainable leaf tensors), named buffers (state that is not
// trained: BatchNorm's running statistics) and named child modules, each kept in
// registration order. Dotted names address the tree: "features.0.weight".
//
// Note [Functional form of a Module]: besides forward(x), every built-in module runs as
// forward(x, params), taking its parameters from `params` (dotted names relative to the
// module) instead of from itself. An entry that is missing falls back to the module's own
// parameter; buffers always come from the module. This is what meta-learning needs: a MAML
// inner step builds "fast weights" as a differentiable function of the meta-parameters
//     ParamMap fast = params_of(*model);
//     ParamMap g = nn::grad(inner_loss(model->forward(x, fast)), fast, /*create_graph=*/true);
//     for (auto& [k, p] : fast) fast[k] = p - lr * g[k];
// and model->forward(x, fast) then runs the same layers on them, so the meta-loss is a
// differentiable function of the original parameters (torch.func.functional_call;
// torchmeta's MetaModule). A key that names no parameter is an error, not ignored: a typo
// would otherwise leave the fast weights unused and the meta-gradient silently wrong.
// A module written by a user may implement forward(x) only; its forward(x, params) then
// throws. To support both, implement forward(x, params) (check_params(params) first, then
// param(params, name, member) and child_params(params, child_name)) and write
// `using Module::forward;` in the class so forward(x) stays visible.
//
// Modules are made with std::make_shared, or through a ModuleHolder (MG_MODULE below) as in
// libtorch: `nn::Linear fc(3, 4); fc->weight; fc(x);`.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/param_map.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace metagrad::nn {

// Tensors by dotted name ("features.0.weight"); std::map, so iteration is by sorted name.

// What load_state_dict(dict, strict=false) skipped, as PyTorch's _IncompatibleKeys.
struct LoadStateDictResult {
  std::vector<std::string> missing_keys;     // in the module, not in the dict
  std::vector<std::string> unexpected_keys;  // in the dict, not in the module
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The type's name as PyTorch prints it: "Linear" for nn::LinearImpl, the class name
  // (namespaces and an "Impl" suffix removed) for a user's module.
  virtual std::string name() const;

  // ---- forward ---------------------------------------------------------------------------
  // forward(x) runs forward(x, {}) unless a subclass overrides it.
  virtual Tensor forward(const Tensor& x);
  // Note [Functional form of a Module]. The base throws: a module must implement it.
  virtual Tensor forward(const Tensor& x, const ParamMap& params);

  // ---- registration (names may not be empty, contain '.', or repeat) ---------------------
  // Stores the tensor itself (not a copy): the returned reference is the registered handle.
  // It must be a floating leaf when requires_grad.
  Tensor& register_parameter(const std::string& name, Tensor tensor, bool requires_grad = true);
  Tensor& register_buffer(const std::string& name, Tensor tensor);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    static_assert(std::is_base_of_v<Module, M>, "register_module needs a Module");
    register_child(name, module);
    return module;
  }
  template <typename Holder>
  requires requires(Holder h) {
    h.ptr();
    typename Holder::ContainedType;
  }
  Holder register_module(const std::string& name, Holder holder) {
    register_child(name, holder.ptr());
    return holder;
  }

  // ---- traversal, in registration order ------------------------------------------------
  // A module's own parameters come before its children's (pre-order, as PyTorch). A tensor
  // registered in several places (a module used twice, tied weights) is listed once, under its
  // first name, unless remove_duplicate is false (as PyTorch's): an optimizer or
  // clip_grad_norm_ then sees it once. state_dict() and params_of() keep every name.
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true,
                                                               bool remove_duplicate = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true,
                                                            bool remove_duplicate = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  std::vector<std::shared_ptr<Module>> children() const;
  // This module (named "") and every descendant, pre-order; a module used twice once.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules();
  // Runs fn on this module and every descendant, pre-order.
  void apply(const std::function<void(Module&)>& fn);

  // ---- modes and gradients -------------------------------------------------------------
  virtual void train(bool on = true);  // recursive
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Leaves every parameter's .grad() undefined (PyTorch's set_to_none=True).
  void zero_grad();
  // Re-draws every parameter the way the module's constructor does, from `gen` (the default
  // generator when null); recursive. The base re-initialises the children only.
  virtual void reset_parameters(Generator* gen = nullptr);

  // ---- conversions: keep this Module and the same tensor handles -------------------------
  // Converts floating parameters, buffers and gradients to `dtype` (integer buffers stay),
  // replacing the data under each existing handle (PyTorch's param.data = ...), so
  // references held elsewhere (an optimizer's) see the converted tensors.
  void to(DType dtype);
  void to(Device device);  // every tensor is checked convertible before any is changed

  // ---- state ---------------------------------------------------------------------------
  // Parameters and buffers by dotted name: detached copies (a snapshot that later optimizer
  // steps do not change, unlike PyTorch's aliasing state_dict).
  ParamMap state_dict() const;
  // Copies `dict` into the parameters and buffers. Everything is checked first (missing and
  // unexpected keys when strict, shape and dtype always, undefined tensors) and one error
  // lists every problem; nothing is changed unless all checks pass.
  LoadStateDictResult load_state_dict(const ParamMap& dict, bool strict = true);

  // ---- printing --------------------------------------------------------------------------
  // PyTorch's repr: Name(extra_repr) or, with children, one "(name): child" line each.
  virtual std::string extra_repr() const { return {}; }
  std::string repr() const;

  // ---- functional-form helpers (Note [Functional form of a Module]) ----------------------
  // params[name] when present (its shape checked against `own`), else `own`. With `stackable`
  // (layers whose functional form takes a stack of weights, as Linear) the given tensor may
  // also be `own`'s shape with leading dims: one weight per task of a task-batched meta-step.
  Tensor param(const ParamMap& params, const std::string& name, const Tensor& own,
               bool stackable = false) const;
  // The entries of `params` under "child." with that prefix stripped.
  static ParamMap child_params(const ParamMap& params, const std::string& child);
  // Throws unless each key names one of this module's parameters or starts with a child's
  // name followed by '.' (deeper levels are checked by the child). Buffers are refused.
  void check_params(const ParamMap& params) const;

 private:
  void register_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const char* what, const std::string& name) const;
  void collect_parameters(const std::string& prefix, bool recurse,
                          std::vector<std::pair<std::string, Tensor>>& out) const;
  void collect_buffers(const std::string& prefix, bool recurse,
                       std::vector<std::pair<std::string, Tensor>>& out) const;
  void collect_modules(const std::string& prefix,
                       std::vector<std::pair<std::string, std::shared_ptr<Module>>>& out);
  // Every (handle, converted value) pair, computed before anything changes.
  void convert(const std::function<Tensor(const Tensor&)>& fn);

  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

// The module's parameters by dotted name, NOT detached: the fast-weight starting point
// (Note [Functional form of a Module]).
ParamMap params_of(const Module& module);
// The tensors of a ParamMap in its (sorted-name) order, e.g. to pass to grad().
std::vector<Tensor> values_of(const ParamMap& map);
// The gradients of the one-element `output` with respect to each tensor of `params`, under
// the same names (metagrad::grad over values_of(params)). create_graph keeps them
// differentiable (second-order MAML); allow_unused gives undefined tensors for entries the
// output does not depend on instead of an error.
ParamMap grad(const Tensor& output, const ParamMap& params, bool create_graph = false,
              bool allow_unused = false);

// ---- ModuleHolder: libtorch's value-like handle on a shared module ---------------------

template <typename Contained>
class ModuleHolder {
 public:
  using ContainedType = Contained;

  // A default-constructed module when that is possible (nn::ReLU relu;).
  ModuleHolder() requires std::is_default_constructible_v<Contained>
      : impl_(std::make_shared<Contained>()) {}
  ModuleHolder(std::nullptr_t) {}  // NOLINT: an empty holder, as libtorch
  ModuleHolder(std::shared_ptr<Contained> impl) : impl_(std::move(impl)) {}  // NOLINT
  // Forwards to the module's constructor: nn::Linear(3, 4), nn::Conv2d(Conv2dOptions(...)).
  template <typename Head, typename... Tail>
  // One argument that is itself such a holder means copying it, as in libtorch.
  requires((sizeof...(Tail) > 0 ||
            (!std::is_base_of_v<ModuleHolder, std::decay_t<Head>> &&
             !std::is_same_v<std::decay_t<Head>, std::nullptr_t> &&
             !std::is_same_v<std::decay_t<Head>, std::shared_ptr<Contained>>)) &&
           std::is_constructible_v<Contained, Head, Tail...>) explicit ModuleHolder(Head&& head,
                                                                                    Tail&&... tail)
      : impl_(std::make_shared<Contained>(std::forward<Head>(head), std::forward<Tail>(tail)...)) {}

  Contained* operator->() const { return checked(); }
  Contained& operator*() const { return *checked(); }
  Contained* get() const { return checked(); }
  const std::shared_ptr<Contained>& ptr() const { return impl_; }
  bool is_empty() const { return impl_ == nullptr; }
  explicit operator bool() const { return impl_ != nullptr; }

  // fc(x) is fc->forward(x).
  template <typename... Args>
  decltype(auto) operator()(Args&&... args) const {
    return checked()->forward(std::forward<Args>(args)...);
  }

 private:
  Contained* checked() const {
    MG_CHECK(impl_ != nullptr, "Module", "accessing an empty ModuleHolder");
    return impl_.get();
  }
  std::shared_ptr<Contained> impl_;
};

template <typename C>
std::ostream& operator<<(std::ostream& os, const ModuleHolder<C>& m) {
  return os << *m;
}

}  // namespace metagrad::nn

// MG_MODULE(Linear) declares nn::Linear, a ModuleHolder of nn::LinearImpl (TORCH_MODULE).
#define MG_MODULE(Name)                                           \
  class Name : public ::metagrad::nn::ModuleHolder<Name##Impl> {  \
   public:                                                        \
    using ::metagrad::nn::ModuleHolder<Name##Impl>::ModuleHolder; \
  }
