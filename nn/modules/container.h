// Sequential: children run one after the other, as torch::nn::Sequential.
#pragma once
#include <concepts>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace metagrad::nn {

namespace detail {
// A module handle Sequential accepts: a ModuleHolder (nn::Linear) or a shared_ptr to a Module.
template <typename T>
concept ModuleHandle = std::convertible_to<std::decay_t<T>, std::shared_ptr<Module>> ||
    requires(const std::decay_t<T>& h) {
  { h.ptr() } -> std::convertible_to<std::shared_ptr<Module>>;
};
template <typename T>
std::shared_ptr<Module> module_ptr(T&& h) {
  if constexpr (std::convertible_to<std::decay_t<T>, std::shared_ptr<Module>>)
    return std::forward<T>(h);
  else
    return h.ptr();
}
}  // namespace detail

// Children are named "0", "1", ... unless pushed with a name. forward(x) feeds each child
// the previous one's output (an empty Sequential returns x, as PyTorch's); forward(x, params) gives
// child "i" the entries of params under "i." with that prefix stripped (Note [Functional form of a
// Module]).
class SequentialImpl : public Module {
 public:
  SequentialImpl() = default;
  template <detail::ModuleHandle... Ms>
  requires(sizeof...(Ms) > 0) explicit SequentialImpl(Ms&&... modules) {
    (push_back(detail::module_ptr(std::forward<Ms>(modules))), ...);
  }
  // Named children, in order (torch::nn::Sequential from an OrderedDict).
  explicit SequentialImpl(std::vector<std::pair<std::string, std::shared_ptr<Module>>> named);

  template <detail::ModuleHandle M>
  void push_back(M&& module) {
    push_back(std::to_string(modules_.size()), detail::module_ptr(std::forward<M>(module)));
  }
  void push_back(const std::string& name, std::shared_ptr<Module> module);
  template <typename M>
  requires requires(const M& h) {
    h.ptr();
    typename M::ContainedType;
  }
  void push_back(const std::string& name, const M& holder) {
    push_back(name, std::shared_ptr<Module>(holder.ptr()));
  }

  size_t size() const { return modules_.size(); }
  bool is_empty() const { return modules_.empty(); }
  // The i-th child (checked).
  const std::shared_ptr<Module>& operator[](size_t i) const;
  const std::shared_ptr<Module>& ptr(size_t i) const { return (*this)[i]; }
  // The i-th child as its concrete type; throws when it is another type.
  template <typename T>
  std::shared_ptr<T> ptr(size_t i) const {
    auto p = std::dynamic_pointer_cast<T>((*this)[i]);
    MG_CHECK(p != nullptr, "Sequential", "child ", i, " is a ", (*this)[i]->name(),
             ", not the requested type");
    return p;
  }
  template <typename T>
  T& at(size_t i) const {
    return *ptr<T>(i);
  }
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }

  using Module::forward;
  Tensor forward(const Tensor& x, const ParamMap& params) override;

 private:
  std::vector<std::shared_ptr<Module>> modules_;
  std::vector<std::string> names_;
};
MG_MODULE(Sequential);

}  // namespace metagrad::nn
