// Sequential.
#include "nn/modules/container.h"

namespace metagrad::nn {

SequentialImpl::SequentialImpl(std::vector<std::pair<std::string, std::shared_ptr<Module>>> named) {
  for (auto& [n, m] : named) push_back(n, std::move(m));
}

void SequentialImpl::push_back(const std::string& name, std::shared_ptr<Module> module) {
  register_module(name, module);  // checks the name and the pointer
  modules_.push_back(std::move(module));
  names_.push_back(name);
}

const std::shared_ptr<Module>& SequentialImpl::operator[](size_t i) const {
  MG_CHECK(i < modules_.size(), "Sequential", "index ", i, " is out of range for ", modules_.size(),
           " modules");
  return modules_[i];
}

Tensor SequentialImpl::forward(const Tensor& x, const ParamMap& params) {
  if (params.empty()) {
    Tensor h = x;
    for (auto& m : modules_) h = m->forward(h);
    return h;
  }
  check_params(params);
  Tensor h = x;
  for (size_t i = 0; i < modules_.size(); ++i) {
    ParamMap sub = child_params(params, names_[i]);
    h = sub.empty() ? modules_[i]->forward(h) : modules_[i]->forward(h, sub);
  }
  return h;
}

}  // namespace metagrad::nn
