// Turning a reported op into a graph node (Note [Ops report themselves] in tensor/tensor.h).
#include <cctype>

#include "autograd/derivatives.h"
#include "autograd/node.h"
#include "tensor/grad_mode.h"

namespace metagrad {
namespace autograd {
namespace {

// "max_dim" -> "MaxDimBackward", as PyTorch names its nodes.
std::string node_name(const std::string& op) {
  std::string r;
  bool up = true;
  for (char ch : op) {
    if (ch == '_') { up = true; continue; }
    r += up ? static_cast<char>(std::toupper(static_cast<unsigned char>(ch))) : ch;
    up = false;
  }
  return r + "Backward";
}

// A node for one application of a table op.
class OpNode final : public Node {
 public:
  OpNode(std::string op, detail::OpArgs args, const Derivative* d)
      : op_(std::move(op)), args_(std::move(args)), d_(d) {}

  void save(detail::TensorList inputs, detail::TensorList outputs) {
    if (!d_) return;
    if (d_->saves & kSaveInputs) {
      saved_in_.reserve(inputs.size());
      for (size_t i = 0; i < inputs.size(); ++i) {
        if (i < 8 && (d_->unread_inputs >> i & 1))
          saved_in_.emplace_back();  // unpacks as undefined
        else
          saved_in_.emplace_back(inputs[i], false);
      }
    }
    if (d_->saves & (kSaveOutputs | kSaveTrailingOutputs)) {
      saved_out_.reserve(outputs.size());
      for (size_t i = 0; i < outputs.size(); ++i) {
        if (i == 0 && !(d_->saves & kSaveOutputs)) {
          saved_out_.emplace_back();  // unpacks as undefined
          continue;
        }
        saved_out_.emplace_back(outputs[i], true, static_cast<uint32_t>(i));
      }
    }
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    if (!d_)
      detail::fail("autograd", "the derivative of '", op_, "' is not implemented, so ",
                   name(), " cannot run; this op is not differentiable");
    auto self = shared_from_this();
    GradCtx ctx{args_, {}, {}, std::move(grads), {}, input_meta_};
    for (const auto& s : saved_in_) ctx.in.push_back(s.unpack(self, op_.c_str()));
    for (const auto& s : saved_out_) ctx.out.push_back(s.unpack(self, op_.c_str()));
    if (released_)  // a rule that saves nothing can still be run twice: refuse it as well
      detail::fail("autograd", "trying to backward through the graph a second time (",
                   name(), " was already run and its graph freed); pass retain_graph=true to "
                   "the first backward() or grad() if you need to go through it again");
    for (const Edge& e : next_edges_) ctx.needs.push_back(e.valid());
    std::vector<Tensor> r = d_->fn(ctx);
    if (r.size() != next_edges_.size())
      detail::fail("autograd", name(), " returned ", r.size(), " gradients for ",
                   next_edges_.size(), " inputs");
    return r;
  }

  void release_saved() override {
    for (auto& s : saved_in_) s.reset();
    for (auto& s : saved_out_) s.reset();
    released_ = true;
  }

  std::string name() const override { return node_name(op_); }
  std::vector<std::string> describe_saved() const override {
    std::vector<std::string> r;
    for (size_t i = 0; i < saved_in_.size(); ++i)
      r.push_back("input " + std::to_string(i) + " " + saved_in_[i].describe());
    for (size_t i = 0; i < saved_out_.size(); ++i)
      r.push_back("output " + std::to_string(i) + " " + saved_out_[i].describe());
    return r;
  }
  const std::string& op() const { return op_; }

 private:
  std::string op_;
  detail::OpArgs args_;
  const Derivative* d_;
  // Inline up to two each, which covers every op but conv2d, batch norm and where; with them
  // an OpNode stays under malloc's 1 KiB "large" requests, which consolidate its bins first.
  SmallVector<SavedTensor, 2> saved_in_, saved_out_;
  bool released_ = false;
};

}  // namespace
}  // namespace autograd

namespace detail {

void record_op(const char* op, TensorList inputs, TensorList outputs, OpArgs args) {
  // Before should_record: a stale view may not itself require grad while its root now does.
  if (GradMode::is_enabled())
    for (const Tensor& in : inputs)
      if (in.defined()) check_not_stale(op, in);
  if (!should_record(inputs)) return;
  auto node = std::make_shared<autograd::OpNode>(op, std::move(args),
                                                 autograd::find_derivative(op));
  // Save before attaching: inputs keep the history they had when the op ran.
  node->save(inputs, outputs);
  autograd::attach(node, inputs, outputs);
}

}  // namespace detail
}  // namespace metagrad
