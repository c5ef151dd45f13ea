// Loss functions as compositions of differentiable tensor ops (see loss.h).
#include "nn/functional/loss.h"

#include "nn/functional/activation.h"
#include "tensor/elementwise.h"
#include "tensor/indexing.h"
#include "tensor/reduce.h"
#include "tensor/softmax.h"

namespace metagrad::nn::functional {

namespace {

Tensor reduce(const Tensor& loss, Reduction reduction) {
  switch (reduction) {
    case Reduction::None:
      return loss;
    case Reduction::Mean:
      return mean(loss);
    case Reduction::Sum:
      return sum(loss);
  }
  return loss;
}

void check_floating(const char* op, const char* what, const Tensor& t) {
  MG_CHECK(t.defined(), op, what, " is undefined");
  MG_CHECK(t.is_floating_point(), op, "expected a floating-point ", what, ", got ",
           dtype_name(t.dtype()));
}

// The shape and dtype checks of a class-index target against (N, C, ...) or (C) scores.
void check_class_target(const char* op, const Tensor& scores, const Tensor& target) {
  check_floating(op, "input", scores);
  MG_CHECK(target.defined(), op, "target is undefined");
  MG_CHECK(target.dtype() == DType::Int64, op, "expected an int64 target of class indices, got ",
           dtype_name(target.dtype()));
  if (scores.dim() == 1) {  // one unbatched sample: [C] with a 0-d target
    MG_CHECK(target.dim() == 0, op, "an input of shape ", shape_str(scores.shape()),
             " needs a 0-d target, got shape ", shape_str(target.shape()));
    return;
  }
  MG_CHECK(scores.dim() >= 2, op, "expected an input of shape (N, C, ...) or (C), got shape ",
           shape_str(scores.shape()));
  Shape want = scores.shape();
  want.erase(want.begin() + 1);  // the class dim
  MG_CHECK(target.shape() == want, op, "target of shape ", shape_str(target.shape()),
           " does not match the input of shape ", shape_str(scores.shape()), " (expected ",
           shape_str(want), ")");
}

// -log_probs[n, target[n], ...] per sample, unreduced. On the CPU every label is checked
// before gather runs, so the message names the loss the user called, the bad label and the
// class count. On the GPU that check would make the host wait for the labels on every call;
// there gather checks them itself and a bad one is raised at the next wait as gather's error
// (Note [Deferred device errors] in kernels/cuda/runtime.h), as cross_entropy's are.
Tensor picked_nll(const char* op, const Tensor& log_probs, const Tensor& target) {
  check_class_target(op, log_probs, target);
  if (log_probs.dim() == 1)
    return picked_nll(op, log_probs.unsqueeze(0), target.unsqueeze(0)).squeeze(0);
  const int64_t classes = log_probs.size(1);
  if (target.device().is_cpu())
    for (int64_t label : target.to_vector<int64_t>())
      MG_CHECK(label >= 0 && label < classes, op, "target ", label, " is out of bounds for ",
               classes, " classes (labels lie in [0, ", classes, "))");
  return -gather(log_probs, 1, target.unsqueeze(1)).squeeze(1);
}

// log(1 + e^(-x)) for any x, with exact derivatives of every order at every x. Each side uses
// the form that cannot overflow there, x >= 0: log1p(e^-x), x < 0: -x + log1p(e^x), on an input
// clamped to that side (the branch not taken gets a zero gradient; an overflow in it would turn
// that into 0 * inf = NaN). The usual max(-x, 0) + log1p(e^-|x|) has the same values, but its two
// kinks at 0 take the subgradient 0 there and give a wrong derivative at x = 0 exactly, which is
// where zero-initialised logits start.
Tensor log1p_exp_neg(const Tensor& x) {
  Tensor pos = clamp_min(x, 0.0), neg_side = clamp_max(x, 0.0);
  return where(x >= 0, log1p(exp(-pos)), log1p(exp(neg_side)) - neg_side);
}

void check_same_shape(const char* op, const Tensor& input, const Tensor& target) {
  check_floating(op, "input", input);
  MG_CHECK(target.defined(), op, "target is undefined");
  MG_CHECK(input.shape() == target.shape(), op, "input of shape ", shape_str(input.shape()),
           " and target of shape ", shape_str(target.shape()),
           " differ (the shapes must be equal; broadcasting is not done)");
}

}  // namespace

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction reduction) {
  return reduce(picked_nll("nll_loss", log_probs, target), reduction);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction,
                     double label_smoothing) {
  constexpr const char* op = "cross_entropy";
  check_floating(op, "input", logits);
  MG_CHECK(logits.dim() >= 1, op, "expected an input of shape (N, C, ...) or (C), got shape ",
           shape_str(logits.shape()));
  MG_CHECK(label_smoothing >= 0 && label_smoothing <= 1, op,
           "label_smoothing must lie in [0, 1], got ", label_smoothing);
  // The fused op (tensor/softmax.h) on (N, C) rows: one kernel each way, the labels checked by
  // the kernel (on the GPU without a host wait, Note [Deferred device errors]). (C) and
  // (N, C, d1, ...) inputs are brought to rows, the class dim last.
  check_class_target(op, logits, target);
  Tensor rows = logits, labels = target;
  if (logits.dim() == 1) {
    rows = logits.unsqueeze(0);
    labels = target.unsqueeze(0);
  } else if (logits.dim() > 2) {
    DimVector perm = {0};
    for (int64_t d = 2; d < logits.dim(); ++d) perm.push_back(d);
    perm.push_back(1);
    rows = logits.permute(perm).reshape({-1, logits.size(1)});
    labels = target.reshape({-1});
  }
  Tensor loss = metagrad::cross_entropy_loss(rows, labels);
  if (label_smoothing > 0) {
    // against the uniform distribution: -mean_c log_softmax = logsumexp - mean_c x
    const Tensor smooth = logsumexp(rows, {1}) - mean(rows, {1});
    loss = loss * (1 - label_smoothing) + smooth * label_smoothing;
  }
  return reduce(loss.reshape(target.shape()), reduction);
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  check_same_shape("mse_loss", input, target);
  return reduce(square(input - target), reduction);
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  check_same_shape("l1_loss", input, target);
  return reduce(abs(input - target), reduction);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction reduction, const Tensor& pos_weight) {
  constexpr const char* op = "binary_cross_entropy_with_logits";
  check_same_shape(op, logits, target);
  check_floating(op, "target", target);
  // -log s(x) = log(1 + e^-x) and -log(1 - s(x)) = x + log(1 + e^-x).
  Tensor sp = log1p_exp_neg(logits);
  if (pos_weight.defined()) {
    check_floating(op, "pos_weight", pos_weight);
    MG_CHECK(broadcast_shapes(op, pos_weight.shape(), logits.shape()) == logits.shape(), op,
             "pos_weight of shape ", shape_str(pos_weight.shape()),
             " does not broadcast to the input of shape ", shape_str(logits.shape()));
    sp = sp * ((pos_weight - 1) * target + 1);
  }
  return reduce((1 - target) * logits + sp, reduction);
}

}  // namespace metagrad::nn::functional
