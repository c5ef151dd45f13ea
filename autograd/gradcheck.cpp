#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "autograd/engine.h"
#include "tensor/creation.h"
#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"
#include "tensor/random.h"

namespace metagrad {

namespace {

// Pointer to element `linear` (row-major) of a float64 tensor of any strides.
double* element(const Tensor& t, int64_t linear) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    off += (linear % t.size(d)) * t.stride(d);
    linear /= t.size(d);
  }
  return t.data_ptr<double>() + off;
}

std::vector<Tensor> evaluate(const TensorsFn& f, const std::vector<Tensor>& xs) {
  NoGradGuard ng;
  std::vector<Tensor> out = f(xs);
  for (Tensor& o : out)
    // A copy: an output may be a view of an input that is perturbed again later.
    if (o.defined()) o = o.to(DType::Float64).clone();
  return out;
}

// f's outputs at a perturbed input must line up with the first call's: same count, shapes.
void check_like(const std::vector<Tensor>& first, const std::vector<Tensor>& now) {
  MG_CHECK(now.size() == first.size(), "gradcheck", "f returned ", now.size(),
           " outputs at a perturbed input and ", first.size(), " at the first call");
  for (size_t k = 0; k < now.size(); ++k)
    MG_CHECK(now[k].defined() && now[k].shape() == first[k].shape(), "gradcheck", "output ", k,
             " of f has shape ",
             now[k].defined() ? shape_str(now[k].shape()) : std::string("(undefined)"),
             " at a perturbed input and ", shape_str(first[k].shape()), " at the first call");
}

}  // namespace

GradcheckResult gradcheck(const TensorsFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opts) {
  MG_CHECK(std::isfinite(opts.eps) && opts.eps > 0, "gradcheck",
           "eps must be finite and positive, got ", opts.eps);
  MG_CHECK(std::isfinite(opts.atol) && opts.atol >= 0 && std::isfinite(opts.rtol) &&
               opts.rtol >= 0,
           "gradcheck", "atol and rtol must be finite and non-negative, got ", opts.atol, " and ",
           opts.rtol);
  for (size_t i = 0; i < inputs.size(); ++i)
    MG_CHECK(!inputs[i].requires_grad() || inputs[i].dtype() == DType::Float64, "gradcheck",
             "input ", i, " has dtype ", dtype_name(inputs[i].dtype()),
             "; finite differences need float64 inputs");
  // The finite differences poke elements through host pointers; CUDA ops are checked against
  // their CPU twins instead (tests/test_cuda_ops.cpp).
  for (size_t i = 0; i < inputs.size(); ++i)
    MG_CHECK(!inputs[i].defined() || inputs[i].device().is_cpu(), "gradcheck", "input ", i,
             " is on ", inputs[i].device().str(), "; gradcheck runs on CPU tensors");
  // Poking one element of an expanded input moves all its aliases at once, so the numerical
  // column would be the sum of several (as PyTorch, refused rather than misreported).
  for (size_t i = 0; i < inputs.size(); ++i)
    for (int64_t d = 0; inputs[i].requires_grad() && d < inputs[i].dim(); ++d)
      MG_CHECK(inputs[i].stride(d) != 0 || inputs[i].size(d) <= 1, "gradcheck", "input ", i,
               " of shape ", shape_str(inputs[i].shape()), " has strides ",
               shape_str(inputs[i].strides()),
               ": elements share memory (an expanded view); pass .contiguous() of it");

  // Analytical Jacobian rows: one vjp per output element.
  std::vector<Tensor> outs;
  {
    EnableGradGuard eg;
    outs = f(inputs);
  }
  MG_CHECK(!outs.empty(), "gradcheck", "f returned no outputs");
  for (size_t k = 0; k < outs.size(); ++k)
    MG_CHECK(outs[k].defined(), "gradcheck", "output ", k, " of f is undefined");
  std::vector<Tensor> diff;  // inputs that require grad
  std::vector<size_t> diff_idx;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].requires_grad()) { diff.push_back(inputs[i]); diff_idx.push_back(i); }
  MG_CHECK(!diff.empty(), "gradcheck", "no input requires grad");

  GradcheckResult res;
  double worst = -1;
  std::ostringstream where;
  // Analytical Jacobians, one vjp per output element: A[k][j] is [numel(out k), numel(in j)].
  std::vector<std::vector<std::vector<double>>> A(outs.size(),
                                                  std::vector<std::vector<double>>(diff.size()));
  for (size_t k = 0; k < outs.size(); ++k) {
    const Tensor& o = outs[k];
    if (!o.defined() || !o.is_floating_point()) continue;
    const int64_t m = o.numel();
    for (size_t j = 0; j < diff.size(); ++j)
      A[k][j].assign(static_cast<size_t>(m * diff[j].numel()), 0.0);
    if (!o.requires_grad()) continue;
    for (int64_t r = 0; r < m; ++r) {
      Tensor e = zeros(o.shape(), o.options());
      {
        NoGradGuard ng;
        e.view({-1}).select(0, r).fill_(1);
      }
      std::vector<Tensor> g = grad({o}, diff, {e}, /*retain_graph=*/true, false, true);
      for (size_t j = 0; j < diff.size(); ++j) {
        if (!g[j].defined()) continue;
        const int64_t n = diff[j].numel();
        const Tensor gc = g[j].to(DType::Float64).contiguous();
        const double* gp = gc.data_ptr<double>();
        std::copy(gp, gp + n, A[k][j].begin() + r * n);
      }
    }
  }
  // Numerical Jacobians, one central difference per input element: each perturbed
  // evaluation gives that column for every output at once. x_e is perturbed in place
  // through a detached alias, then restored.
  std::vector<Tensor> alias;
  for (const Tensor& x : inputs) alias.push_back(x.defined() ? x.detach() : x);
  for (size_t j = 0; j < diff.size(); ++j) {
    const size_t i = diff_idx[j];
    const int64_t n = inputs[i].numel();
    for (int64_t c = 0; c < n; ++c) {
      double* p = element(alias[i], c);
      const double orig = *p;
      *p = orig + opts.eps;
      const std::vector<Tensor> plus = evaluate(f, alias);
      *p = orig - opts.eps;
      const std::vector<Tensor> minus = evaluate(f, alias);
      *p = orig;
      check_like(outs, plus);
      check_like(outs, minus);
      for (size_t k = 0; k < outs.size(); ++k) {
        if (A[k][j].empty() && outs[k].numel() > 0) continue;  // not a floating output
        const double* pp = plus[k].data_ptr<double>();
        const double* mp = minus[k].data_ptr<double>();
        for (int64_t r = 0; r < outs[k].numel(); ++r) {
          const double num = (pp[r] - mp[r]) / (2 * opts.eps);
          const double ana = A[k][j][r * n + c];
          const double err = std::fabs(ana - num);
          res.max_abs_error = std::isnan(err) ? err : std::max(res.max_abs_error, err);
          const double tol = opts.atol + opts.rtol * std::fabs(num);
          // A NaN on either side is a mismatch (as allclose's), and the worst one.
          const double excess = err <= tol ? 0 : (std::isnan(err) ? HUGE_VAL : err - tol);
          if (excess > 0 && excess > worst) {
            worst = excess;
            res.ok = false;
            where.str("");
            where << "d output " << k << "[" << r << "] / d input " << i << "[" << c
                  << "]: analytical " << ana << ", numerical " << num << " (|diff| " << err
                  << ", atol " << opts.atol << ", rtol " << opts.rtol << ")";
          }
        }
      }
    }
  }
  if (!res.ok) {
    res.message = "Jacobian mismatch at " + where.str();
    if (opts.raise) detail::fail("gradcheck", res.message);
  }
  return res;
}

GradcheckResult gradgradcheck(const TensorsFn& f, const std::vector<Tensor>& inputs,
                              const std::vector<Tensor>& grad_outputs,
                              const GradcheckOptions& opts) {
  std::vector<Tensor> outs;
  {
    EnableGradGuard eg;
    outs = f(inputs);
  }
  std::vector<Tensor> vs = grad_outputs;
  if (vs.empty()) {
    Generator gen(1234);
    for (const Tensor& o : outs)
      vs.push_back(randn(o.shape(), TensorOptions(DType::Float64), &gen).requires_grad_(true));
  }
  MG_CHECK(vs.size() == outs.size(), "gradgradcheck", "got ", vs.size(), " grad_outputs for ",
           outs.size(), " outputs");
  const size_t n_in = inputs.size();
  std::vector<Tensor> all = inputs;
  all.insert(all.end(), vs.begin(), vs.end());
  std::vector<bool> wants(n_in);
  for (size_t i = 0; i < n_in; ++i) wants[i] = inputs[i].requires_grad();
  // x, v -> grad(f(x), x, v). During the finite-difference passes the perturbed copies do
  // not require grad, so fresh leaves are made from them for the inner grad.
  TensorsFn first = [&f, n_in, wants](const std::vector<Tensor>& xs) {
    EnableGradGuard eg;
    std::vector<Tensor> x, diff;
    for (size_t i = 0; i < n_in; ++i) {
      Tensor t = xs[i];
      if (wants[i] && !t.requires_grad()) t = t.detach().requires_grad_(true);
      x.push_back(t);
      if (wants[i]) diff.push_back(t);
    }
    std::vector<Tensor> out = f(x), used_out, used_v;
    for (size_t k = 0; k < out.size(); ++k)
      if (out[k].requires_grad()) {
        used_out.push_back(out[k]);
        used_v.push_back(xs[n_in + k]);
      }
    std::vector<Tensor> g(diff.size());
    if (!used_out.empty())
      g = grad(used_out, diff, used_v, true, /*create_graph=*/true, /*allow_unused=*/true);
    for (size_t j = 0; j < g.size(); ++j)
      if (!g[j].defined()) g[j] = zeros_like(diff[j]);
    return g;
  };
  return gradcheck(first, all, opts);
}

}  // namespace metagrad
