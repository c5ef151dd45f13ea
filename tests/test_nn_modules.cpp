// Tests of nn::Module and the modules (nn/module.h, nn/modules/*) and nn::init.
//
// Suite NnModule needs only the tensor core: naming and order of parameters, buffers and
// children; registration errors; train/eval; zero_grad; to(dtype) keeping handles;
// state_dict round trips and every load_state_dict error (nothing changed after a failed
// load); the functional form forward(x, params) and a MAML meta-gradient through fast
// weights checked by central differences; printing; Sequential; ModuleHolder; Linear's
// initialisation statistics; nn::init; and a Linear-ReLU-Linear MLP fitted with Adam.
//
// Suite NnModulesNeedFunctional exercises the modules that call nn::functional (Conv2d,
// BatchNorm2d, LayerNorm, the pools, LeakyReLU/ELU/GELU/Softplus, Dropout) against float64
// loops written here; it needs the nn::functional implementations to link.
#include <gtest/gtest.h>

#include "test_util.h"
#include <metagrad/metagrad.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

using namespace metagrad;

namespace {

using Vec = std::vector<double>;

Vec values(const Tensor& t) {
  return t.to_vector<double>();
}

void expect_close(const Tensor& a, const Tensor& b, double tol = 1e-6) {
  ASSERT_EQ(a.shape(), b.shape());
  const Vec x = values(a), y = values(b);
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_NEAR(x[i], y[i], tol * (1 + std::abs(y[i]))) << "at " << i;
}

void expect_vec_close(const Vec& x, const Vec& y, double tol) {
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_NEAR(x[i], y[i], tol * (1 + std::abs(y[i]))) << "at " << i;
}

template <typename Pairs>
std::vector<std::string> names_of(const Pairs& pairs) {
  std::vector<std::string> out;
  for (const auto& [n, v] : pairs) out.push_back(n);
  return out;
}

// A user's module: a parameter registered after its children, an int and a float buffer.
class NetImpl : public nn::Module {
 public:
  NetImpl() {
    fc = register_module("fc", nn::Linear(3, 4));
    seq = register_module("seq", nn::Sequential(nn::Linear(4, 5), nn::Tanh()));
    scale = register_parameter("scale", full({5}, 1.5));
    register_buffer("steps", zeros({}, TensorOptions(DType::Int64)));
    register_buffer("stat", zeros({5}));
  }
  using Module::forward;
  Tensor forward(const Tensor& x, const nn::ParamMap& p) override {
    if (!p.empty()) check_params(p);
    Tensor h = fc->forward(x, child_params(p, "fc"));
    h = seq->forward(h, child_params(p, "seq"));
    return h * param(p, "scale", scale);
  }
  nn::Linear fc{nullptr};
  nn::Sequential seq{nullptr};
  Tensor scale;
};
MG_MODULE(Net);

// A module that implements forward(x) only.
class PlainImpl : public nn::Module {
 public:
  PlainImpl() { w = register_parameter("w", ones({2})); }
  Tensor forward(const Tensor& x) override { return x * w; }
  Tensor w;
};
MG_MODULE(Plain);

// y = x W^T + b in float64 loops.
Vec ref_linear(const Vec& x, int64_t n, int64_t in, const Vec& w, int64_t out, const Vec& b) {
  Vec y(static_cast<size_t>(n * out));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double s = b.empty() ? 0.0 : b[static_cast<size_t>(o)];
      for (int64_t k = 0; k < in; ++k)
        s += x[static_cast<size_t>(i * in + k)] * w[static_cast<size_t>(o * in + k)];
      y[static_cast<size_t>(i * out + o)] = s;
    }
  return y;
}

// Uniform sample statistics.
struct Stats {
  double mean = 0, var = 0, max_abs = 0;
};
Stats stats(const Tensor& t) {
  const Vec v = values(t);
  Stats s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) {
    s.var += (x - s.mean) * (x - s.mean);
    s.max_abs = std::max(s.max_abs, std::abs(x));
  }
  s.var /= static_cast<double>(v.size() - 1);
  return s;
}

}  // namespace

// =========================================================================================
// NnModule: the base class, Linear, Sequential, basic activations, init, training
// =========================================================================================

TEST(NnModule, NamedParametersBuffersChildrenInOrder) {
  Net net;
  EXPECT_EQ(
      names_of(net->named_parameters()),
      (std::vector<std::string>{"scale", "fc.weight", "fc.bias", "seq.0.weight", "seq.0.bias"}));
  EXPECT_EQ(names_of(net->named_parameters(/*recurse=*/false)),
            (std::vector<std::string>{"scale"}));
  EXPECT_EQ(names_of(net->named_buffers()), (std::vector<std::string>{"steps", "stat"}));
  EXPECT_EQ(names_of(net->named_children()), (std::vector<std::string>{"fc", "seq"}));
  EXPECT_EQ(names_of(net->named_modules()),
            (std::vector<std::string>{"", "fc", "seq", "seq.0", "seq.1"}));
  // The registered tensors are the modules' own handles, not copies.
  auto params = net->parameters();
  ASSERT_EQ(params.size(), 5u);
  EXPECT_TRUE(params[0].is_same(net->scale));
  EXPECT_TRUE(params[1].is_same(net->fc->weight));
  EXPECT_TRUE(params[3].is_same(net->seq->ptr<nn::LinearImpl>(0)->weight));
  for (const Tensor& p : params) EXPECT_TRUE(p.requires_grad());
  EXPECT_EQ(net->buffers().size(), 2u);
  EXPECT_FALSE(net->buffers()[1].requires_grad());
  EXPECT_EQ(net->children().size(), 2u);
  int count = 0;
  net->apply([&](nn::Module&) { ++count; });
  EXPECT_EQ(count, 5);
}

TEST(NnModule, DeepNestingGivesDottedNames) {
  auto inner = nn::Sequential(nn::Linear(2, 2), nn::ReLU());
  nn::Sequential outer;
  outer->push_back("features", inner);
  outer->push_back(nn::Linear(2, 1));
  EXPECT_EQ(
      names_of(outer->named_parameters()),
      (std::vector<std::string>{"features.0.weight", "features.0.bias", "1.weight", "1.bias"}));
  EXPECT_EQ(outer->size(), 2u);
}

TEST(NnModule, RegistrationErrors) {
  nn::Module m;
  m.register_parameter("w", zeros({2}));
  EXPECT_MG_ERROR_HAS(m.register_parameter("w", zeros({2})), "[Module]", "already defined");
  EXPECT_MG_ERROR_HAS(m.register_buffer("w", zeros({2})), "[Module]", "already defined");
  EXPECT_MG_ERROR_HAS(m.register_parameter("a.b", zeros({2})), "[Module]", "'.'");
  EXPECT_MG_ERROR(m.register_parameter("", zeros({2})), "[Module]");
  EXPECT_MG_ERROR(m.register_parameter("u", Tensor()), "[Module]");
  EXPECT_MG_ERROR(m.register_buffer("u", Tensor()), "[Module]");
  EXPECT_MG_ERROR_HAS(m.register_parameter("i", zeros({2}, TensorOptions(DType::Int64))),
                      "[Module]", "floating-point");
  Tensor leaf = ones({2}).requires_grad_(true);
  EXPECT_MG_ERROR_HAS(m.register_parameter("nl", leaf * 2), "[Module]", "leaf");
  EXPECT_MG_ERROR(m.register_module("w", std::make_shared<nn::ReLUImpl>()), "[Module]");
  EXPECT_MG_ERROR(m.register_module("n", std::shared_ptr<nn::ReLUImpl>()), "[Module]");
  // An integer tensor may be a parameter that does not require grad.
  m.register_parameter("count", zeros({1}, TensorOptions(DType::Int64)), false);
  EXPECT_FALSE(m.named_parameters()[1].second.requires_grad());
}

TEST(NnModule, TrainEvalPropagates) {
  Net net;
  for (auto& [n, m] : net->named_modules()) EXPECT_TRUE(m->is_training()) << n;
  net->eval();
  for (auto& [n, m] : net->named_modules()) EXPECT_FALSE(m->is_training()) << n;
  net->seq->train();
  EXPECT_FALSE(net->is_training());
  EXPECT_TRUE(net->seq->ptr(1)->is_training());
  net->train();
  for (auto& [n, m] : net->named_modules()) EXPECT_TRUE(m->is_training()) << n;
}

TEST(NnModule, ZeroGradLeavesGradsUndefined) {
  Net net;
  sum(net->forward(ones({2, 3}))).backward();
  for (auto& [n, p] : net->named_parameters()) EXPECT_TRUE(p.grad().defined()) << n;
  net->zero_grad();
  for (auto& [n, p] : net->named_parameters()) EXPECT_FALSE(p.grad().defined()) << n;
}

TEST(NnModule, ToDtypeKeepsModuleAndHandles) {
  Net net;
  sum(net->forward(ones({2, 3}))).backward();
  auto before = net->named_parameters();
  std::vector<Vec> old_values;
  for (auto& [n, p] : before) old_values.push_back(values(p));
  nn::ParamMap fast = nn::params_of(*net);
  net->to(DType::Float64);
  for (size_t i = 0; i < before.size(); ++i) {
    const Tensor& p = before[i].second;  // handles taken before the conversion
    EXPECT_EQ(p.dtype(), DType::Float64) << before[i].first;
    EXPECT_TRUE(p.requires_grad());
    EXPECT_TRUE(p.is_leaf());
    EXPECT_EQ(values(p), old_values[i]);  // float -> double is exact
    EXPECT_EQ(p.grad().dtype(), DType::Float64);
  }
  EXPECT_EQ(fast.at("fc.weight").dtype(), DType::Float64);
  EXPECT_EQ(net->named_buffers()[0].second.dtype(), DType::Int64);  // integers stay
  EXPECT_EQ(net->named_buffers()[1].second.dtype(), DType::Float64);
  Tensor y = net->forward(ones({2, 3}, TensorOptions(DType::Float64)));
  EXPECT_EQ(y.dtype(), DType::Float64);
  sum(y).backward();  // the converted leaves still take gradients
  EXPECT_EQ(net->fc->weight.grad().dtype(), DType::Float64);
  EXPECT_MG_ERROR(net->to(DType::Int64), "[Module.to]");
  // Moving to a GPU fails in the tensor layer, before anything changes.
  EXPECT_MG_ERROR(net->to(Device::cuda()), "[to]");
  EXPECT_EQ(net->fc->weight.device(), Device::cpu());
  net->to(Device::cpu());  // a no-op
  EXPECT_EQ(net->fc->weight.dtype(), DType::Float64);
}

TEST(NnModule, StateDictRoundTrip) {
  manual_seed(1);
  Net a;
  a->named_buffers()[1].second.fill_(0.25);
  nn::ParamMap sd = a->state_dict();
  EXPECT_EQ(names_of(sd), (std::vector<std::string>{"fc.bias", "fc.weight", "scale", "seq.0.bias",
                                                    "seq.0.weight", "stat", "steps"}));
  for (auto& [k, t] : sd) EXPECT_FALSE(t.requires_grad()) << k;
  EXPECT_EQ(values(sd.at("fc.weight")), values(a->fc->weight));
  // A snapshot: changing the module afterwards does not change it.
  const Vec saved = values(sd.at("fc.weight"));
  {
    NoGradGuard g;
    a->fc->weight.fill_(7.0);
  }
  EXPECT_EQ(values(sd.at("fc.weight")), saved);
  // Loading restores the values into the same handles.
  Tensor handle = a->fc->weight;
  auto r = a->load_state_dict(sd);
  EXPECT_TRUE(r.missing_keys.empty() && r.unexpected_keys.empty());
  EXPECT_EQ(values(handle), saved);
  // Into another instance: identical outputs.
  manual_seed(2);
  Net b;
  EXPECT_NE(values(b->fc->weight), saved);
  b->load_state_dict(sd);
  Tensor x = randn({4, 3});
  EXPECT_EQ(values(a->forward(x)), values(b->forward(x)));
  EXPECT_EQ(values(b->named_buffers()[1].second), Vec(5, 0.25));
  EXPECT_TRUE(b->fc->weight.requires_grad());
}

TEST(NnModule, LoadStateDictErrorsChangeNothing) {
  Net net;
  const nn::ParamMap good = net->state_dict();
  nn::ParamMap changed = good;
  for (auto& [k, t] : changed)
    if (t.is_floating_point()) changed[k] = t + 1.0;
  auto expect_unchanged = [&] {
    for (auto& [k, t] : net->state_dict()) EXPECT_EQ(values(t), values(good.at(k))) << k;
  };
  {  // a missing key
    nn::ParamMap d = changed;
    d.erase("seq.0.bias");
    EXPECT_MG_ERROR_HAS(net->load_state_dict(d), "[load_state_dict]",
                        "missing key(s): 'seq.0.bias'");
    expect_unchanged();
  }
  {  // an unexpected key
    nn::ParamMap d = changed;
    d["fc.extra"] = zeros({1});
    EXPECT_MG_ERROR_HAS(net->load_state_dict(d), "[load_state_dict]",
                        "unexpected key(s): 'fc.extra'");
    expect_unchanged();
  }
  {  // a shape mismatch names the key and both shapes, strict or not
    nn::ParamMap d = changed;
    d["fc.weight"] = zeros({3, 4});
    EXPECT_MG_ERROR_HAS(net->load_state_dict(d), "[load_state_dict]",
                        "size mismatch for 'fc.weight': copying a tensor of shape [3, 4] from "
                        "the state dict, the shape in the current module is [4, 3]");
    EXPECT_MG_ERROR_HAS(net->load_state_dict(d, false), "[load_state_dict]", "size mismatch");
    expect_unchanged();
  }
  {  // a dtype mismatch
    nn::ParamMap d = changed;
    d["scale"] = d["scale"].to(DType::Float64);
    EXPECT_MG_ERROR_HAS(net->load_state_dict(d), "[load_state_dict]", "dtype mismatch for 'scale'");
    d["scale"] = good.at("scale");
    d["steps"] = zeros({});  // float where the module has int64
    EXPECT_MG_ERROR_HAS(net->load_state_dict(d), "[load_state_dict]", "'steps'");
    expect_unchanged();
  }
  {  // an undefined tensor
    nn::ParamMap d = changed;
    d["scale"] = Tensor();
    EXPECT_MG_ERROR_HAS(net->load_state_dict(d), "[load_state_dict]", "'scale' is an undefined");
    expect_unchanged();
  }
  {  // every problem is listed in one message
    nn::ParamMap d = changed;
    d.erase("scale");
    d["zzz"] = zeros({1});
    d["fc.bias"] = zeros({9});
    try {
      net->load_state_dict(d);
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("missing key(s): 'scale'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("unexpected key(s): 'zzz'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("size mismatch for 'fc.bias'"), std::string::npos) << msg;
    }
    expect_unchanged();
  }
  {  // non-strict: missing and unexpected keys are reported, the rest is loaded
    nn::ParamMap d = changed;
    d.erase("seq.0.bias");
    d["zzz"] = zeros({1});
    auto r = net->load_state_dict(d, /*strict=*/false);
    EXPECT_EQ(r.missing_keys, (std::vector<std::string>{"seq.0.bias"}));
    EXPECT_EQ(r.unexpected_keys, (std::vector<std::string>{"zzz"}));
    EXPECT_EQ(values(net->fc->weight), values(changed.at("fc.weight")));
    EXPECT_EQ(values(net->seq->ptr<nn::LinearImpl>(0)->bias), values(good.at("seq.0.bias")));
  }
}

TEST(NnModule, FunctionalFormMatchesForward) {
  manual_seed(3);
  auto model = nn::Sequential(nn::Linear(3, 6), nn::Tanh(), nn::Linear(6, 2));
  Tensor x = randn({5, 3});
  nn::ParamMap params = nn::params_of(*model);
  EXPECT_EQ(names_of(params),
            (std::vector<std::string>{"0.bias", "0.weight", "2.bias", "2.weight"}));
  EXPECT_TRUE(params.at("0.weight").is_same(model->ptr<nn::LinearImpl>(0)->weight));
  EXPECT_EQ(values(model->forward(x, params)), values(model->forward(x)));
  EXPECT_EQ(values(model(x)), values(model->forward(x)));

  // Other tensors in place of the parameters: the result follows them, checked against a
  // float64 loop over the same numbers.
  nn::ParamMap other;
  for (auto& [k, p] : params) other[k] = randn(p.shape());
  Tensor y = model->forward(x, other);
  Vec h = ref_linear(values(x), 5, 3, values(other["0.weight"]), 6, values(other["0.bias"]));
  for (double& v : h) v = std::tanh(v);
  const Vec ref = ref_linear(h, 5, 6, values(other["2.weight"]), 2, values(other["2.bias"]));
  expect_vec_close(values(y), ref, 1e-5);
  EXPECT_NE(values(y), values(model->forward(x)));

  // A partial map: the missing entries come from the module.
  nn::ParamMap partial = {{"2.bias", other["2.bias"]}};
  Vec h2 = ref_linear(values(x), 5, 3, values(params["0.weight"]), 6, values(params["0.bias"]));
  for (double& v : h2) v = std::tanh(v);
  expect_vec_close(values(model->forward(x, partial)),
                   ref_linear(h2, 5, 6, values(params["2.weight"]), 2, values(other["2.bias"])),
                   1e-5);

  // Errors: names that are not parameters, wrong shapes, buffers.
  EXPECT_MG_ERROR_HAS(model->forward(x, {{"0.wieght", other["0.weight"]}}), "[Linear]",
                      "'wieght' names no parameter");
  EXPECT_MG_ERROR_HAS(model->forward(x, {{"7.weight", other["0.weight"]}}), "[Sequential]",
                      "'7.weight'");
  EXPECT_MG_ERROR_HAS(model->forward(x, {{"1.weight", other["0.weight"]}}), "[Tanh]", "'weight'");
  EXPECT_MG_ERROR_HAS(model->forward(x, {{"0.weight", zeros({3, 6})}}), "[Linear]",
                      "has shape [3, 6], the module's parameter has shape [6, 3]");
  // Linear takes a stack of weights ([B, out, in], a task-batched meta-step), not any shape.
  EXPECT_EQ(model->forward(ones({4, 5, 3}), {{"0.weight", zeros({4, 6, 3})}}).shape(),
            (Shape{4, 5, 2}));
  EXPECT_MG_ERROR_HAS(model->forward(x, {{"0.weight", zeros({4, 3, 6})}}), "[Linear]",
                      "(or a stack of them, [B..., that shape])");
  Net net;
  EXPECT_MG_ERROR_HAS(net->forward(ones({1, 3}), {{"stat", zeros({5})}}), "[Net]",
                      "'stat' is a buffer");
}

TEST(NnModule, UserModuleWithForwardOnly) {
  Plain plain;
  expect_close(plain(full({2}, 3.0)), full({2}, 3.0));
  nn::Module& as_module = *plain;  // PlainImpl's forward(x) hides the other overload
  EXPECT_MG_ERROR_HAS(as_module.forward(ones({2}), {{"w", ones({2})}}), "[Plain]",
                      "does not implement the functional form");
  // In a Sequential it runs on its own parameters when the map has nothing for it.
  auto seq = nn::Sequential(plain, nn::Linear(2, 2));
  nn::ParamMap p = nn::params_of(*seq);
  p.erase("0.w");
  EXPECT_EQ(values(seq->forward(ones({1, 2}), p)), values(seq->forward(ones({1, 2}))));
  nn::Module bare;
  EXPECT_MG_ERROR_HAS(bare.forward(ones({1})), "[Module]", "implements neither");
}

TEST(NnModule, MetaGradientThroughFastWeightsMatchesFiniteDifferences) {
  // MAML's meta-loss L(theta) = loss_q(theta - lr * grad loss_s(theta)), with tanh so the
  // function is smooth (no kinks for the central differences to straddle).
  manual_seed(4);
  auto model = nn::Sequential(nn::Linear(2, 5), nn::Tanh(), nn::Linear(5, 1));
  model->to(DType::Float64);
  const TensorOptions f64(DType::Float64);
  Tensor xs = randn({6, 2}, f64), ys = randn({6, 1}, f64);
  Tensor xq = randn({7, 2}, f64), yq = randn({7, 1}, f64);
  const double lr = 0.4;
  auto meta_loss = [&](const nn::ParamMap& theta, bool create_graph) {
    nn::ParamMap fast = theta;
    nn::ParamMap g = nn::grad(mean(square(model->forward(xs, fast) - ys)), fast, create_graph);
    for (auto& [k, p] : fast) fast[k] = p - lr * g[k];
    return mean(square(model->forward(xq, fast) - yq));
  };
  nn::ParamMap theta = nn::params_of(*model);
  Tensor L = meta_loss(theta, true);
  auto meta_grad = grad({L}, nn::values_of(theta));
  // First-order MAML would drop the Hessian term; check the exact gradient numerically.
  const double h = 1e-6;
  size_t gi = 0;
  for (auto& [k, p] : theta) {
    const Vec exact = values(meta_grad[gi++]);
    const Vec base = values(p);
    for (size_t e = 0; e < base.size(); ++e) {
      double l[2];
      for (int s = 0; s < 2; ++s) {
        nn::ParamMap pert;
        for (auto& [k2, p2] : theta) {
          Vec v = values(p2);
          if (k2 == k) v[e] += s == 0 ? h : -h;
          pert[k2] = tensor(v, p2.shape()).requires_grad_(true);
        }
        l[s] = meta_loss(pert, false).item<double>();
      }
      EXPECT_NEAR(exact[e], (l[0] - l[1]) / (2 * h), 1e-7) << k << "[" << e << "]";
    }
  }
  // nn::grad keys the gradients by name; unused entries are an error unless allowed.
  nn::ParamMap partial = {{"0.weight", theta.at("0.weight")}, {"2.bias", theta.at("2.bias")}};
  auto only_first = [&] { return sum(model->ptr<nn::LinearImpl>(0)->forward(xs)); };
  EXPECT_MG_ERROR(nn::grad(only_first(), partial), "[");
  nn::ParamMap gu = nn::grad(only_first(), partial, false, /*allow_unused=*/true);
  EXPECT_TRUE(gu.at("0.weight").defined());
  EXPECT_FALSE(gu.at("2.bias").defined());
  EXPECT_MG_ERROR(nn::grad(model->forward(xs), partial), "[nn::grad]");
  // The module's own parameters are what the meta-gradient flows to.
  model->zero_grad();
  meta_loss(nn::params_of(*model), true).backward();
  expect_close(model->ptr<nn::LinearImpl>(0)->weight.grad(), meta_grad[1], 1e-12);
}

TEST(NnModule, Printing) {
  auto seq = nn::Sequential(nn::Linear(3, 4), nn::ReLU(), nn::Linear(4, 2, /*bias=*/false));
  std::ostringstream os;
  os << seq;
  EXPECT_EQ(os.str(),
            "Sequential(\n"
            "  (0): Linear(in_features=3, out_features=4, bias=True)\n"
            "  (1): ReLU()\n"
            "  (2): Linear(in_features=4, out_features=2, bias=False)\n"
            ")");
  Net net;
  EXPECT_EQ(net->repr(),
            "Net(\n"
            "  (fc): Linear(in_features=3, out_features=4, bias=True)\n"
            "  (seq): Sequential(\n"
            "    (0): Linear(in_features=4, out_features=5, bias=True)\n"
            "    (1): Tanh()\n"
            "  )\n"
            ")");
  EXPECT_EQ(nn::Flatten()->repr(), "Flatten(start_dim=1, end_dim=-1)");
  EXPECT_EQ(nn::Identity()->repr(), "Identity()");
  EXPECT_EQ(nn::Sequential()->repr(), "Sequential()");
}

TEST(NnModule, SequentialApi) {
  nn::Sequential seq;
  EXPECT_TRUE(seq->is_empty());
  Tensor x = randn({2, 3});
  EXPECT_TRUE(seq->forward(x).is_same(x));  // empty: the input, as PyTorch
  nn::Linear fc(3, 3);
  seq->push_back(fc);
  seq->push_back(std::make_shared<nn::SigmoidImpl>());
  seq->push_back("out", nn::Linear(3, 1));
  EXPECT_EQ(seq->size(), 3u);
  EXPECT_EQ(names_of(seq->named_children()), (std::vector<std::string>{"0", "1", "out"}));
  EXPECT_EQ((*seq)[0].get(), fc.get());
  EXPECT_EQ((*seq)[1]->name(), "Sigmoid");
  EXPECT_EQ(&seq->at<nn::LinearImpl>(0), fc.get());
  EXPECT_MG_ERROR_HAS(seq->at<nn::LinearImpl>(1), "[Sequential]", "Sigmoid");
  EXPECT_MG_ERROR_HAS((void)(*seq)[3], "[Sequential]", "out of range");
  Tensor ref = seq->ptr<nn::LinearImpl>(2)->forward(sigmoid(fc(x)));
  EXPECT_EQ(values(seq(x)), values(ref));
  int n = 0;
  for (const auto& m : *seq) n += m != nullptr;
  EXPECT_EQ(n, 3);
  // From named modules.
  nn::Sequential named(std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>{
      {"a", std::make_shared<nn::LinearImpl>(2, 2)}, {"b", std::make_shared<nn::ReLUImpl>()}});
  EXPECT_EQ(names_of(named->named_parameters()), (std::vector<std::string>{"a.weight", "a.bias"}));
}

TEST(NnModule, HoldersShareTheirModule) {
  nn::Linear a(2, 3);
  nn::Linear b = a;
  EXPECT_EQ(a.get(), b.get());
  EXPECT_FALSE(a.is_empty());
  nn::Linear empty{nullptr};
  EXPECT_TRUE(empty.is_empty());
  EXPECT_MG_ERROR((void)empty->weight, "[Module]");
  nn::Linear from_options(nn::LinearOptions(4, 5).bias(false));
  EXPECT_FALSE(from_options->bias.defined());
  EXPECT_EQ(from_options->named_parameters().size(), 1u);
  EXPECT_EQ(from_options->weight.shape(), (Shape{5, 4}));
}

// A module used twice (tied weights) lists its parameters once, under the first name, as
// PyTorch's parameters() / named_modules(): an optimizer or clip_grad_norm_ sees each tensor
// once. state_dict and the fast-weight map params_of keep every name.
TEST(NnModule, SharedModuleIsListedOnce) {
  nn::Linear lin(2, 2);
  nn::Sequential net(lin, nn::Tanh(), lin);
  EXPECT_EQ(names_of(net->named_parameters()), (std::vector<std::string>{"0.weight", "0.bias"}));
  EXPECT_EQ(net->parameters().size(), 2u);
  EXPECT_EQ(net->named_parameters(true, false).size(), 4u);
  EXPECT_EQ(net->named_modules().size(), 3u);  // "", "0", "1"
  EXPECT_EQ(net->state_dict().size(), 4u);
  EXPECT_EQ(nn::params_of(*net).size(), 4u);
  net->load_state_dict(net->state_dict());
  // The true gradient norm, clipped once: 0.1 after clipping to 0.1.
  Tensor x = randn({3, 2});
  sum(square(net(x))).backward();
  std::vector<Tensor> ps = net->parameters();
  double norm2 = 0;
  for (const Tensor& p : ps) norm2 += sum(square(p.grad())).item<double>();
  EXPECT_NEAR(nn::utils::clip_grad_norm_(ps, 0.1), std::sqrt(norm2), 1e-5);
  double after = 0;
  for (const Tensor& p : ps) after += sum(square(p.grad())).item<double>();
  EXPECT_NEAR(std::sqrt(after), 0.1, 1e-5);
}

TEST(NnModule, ActivationsAndFlattenWithoutFunctional) {
  Tensor x = tensor({-2.0, -0.5, 0.0, 0.5, 2.0}, {5});
  const Vec v = values(x);
  Vec relu_ref, tanh_ref, sig_ref;
  for (double e : v) {
    relu_ref.push_back(std::max(e, 0.0));
    tanh_ref.push_back(std::tanh(e));
    sig_ref.push_back(1 / (1 + std::exp(-e)));
  }
  expect_vec_close(values(nn::ReLU()(x)), relu_ref, 1e-12);
  expect_vec_close(values(nn::Tanh()(x)), tanh_ref, 1e-12);
  expect_vec_close(values(nn::Sigmoid()(x)), sig_ref, 1e-12);
  EXPECT_TRUE(nn::Identity()(x).is_same(x));
  EXPECT_EQ(nn::Flatten()(zeros({2, 3, 4})).shape(), (Shape{2, 12}));
  EXPECT_EQ(nn::Flatten(nn::FlattenOptions().start_dim(0).end_dim(1))(zeros({2, 3, 4})).shape(),
            (Shape{6, 4}));
  EXPECT_MG_ERROR(nn::Linear(3, 2)(zeros({2, 4})), "[Linear]");
}

TEST(NnModule, LinearInitialisationAsPyTorch) {
  // weight ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_ with a = sqrt(5)), bias the same.
  manual_seed(5);
  nn::Linear fc(400, 300);
  const double bound = 1 / std::sqrt(400.0);
  Stats w = stats(fc->weight);
  const double n = 400.0 * 300.0;
  EXPECT_LE(w.max_abs, bound);
  EXPECT_GT(w.max_abs, 0.999 * bound);
  EXPECT_NEAR(w.mean, 0.0, 5 * bound / std::sqrt(3 * n));
  EXPECT_NEAR(w.var, bound * bound / 3, 0.02 * bound * bound / 3);
  Stats b = stats(fc->bias);
  EXPECT_LE(b.max_abs, bound);
  EXPECT_GT(b.max_abs, 0.9 * bound);
  // The seeded default generator makes models reproducible; reset_parameters(gen) too.
  manual_seed(5);
  nn::Linear again(400, 300);
  EXPECT_EQ(values(again->weight), values(fc->weight));
  Generator g1(9), g2(9);
  again->reset_parameters(&g1);
  nn::Linear third(nn::LinearOptions(400, 300), &g2);
  EXPECT_EQ(values(again->weight), values(third->weight));
  EXPECT_EQ(values(again->bias), values(third->bias));
  EXPECT_NE(values(again->weight), values(fc->weight));
  // reset_parameters recurses through containers.
  auto seq = nn::Sequential(nn::Linear(3, 3), nn::ReLU());
  Generator g3(11), g4(11);
  seq->reset_parameters(&g3);
  nn::Linear ref(nn::LinearOptions(3, 3), &g4);
  EXPECT_EQ(values(seq->ptr<nn::LinearImpl>(0)->weight), values(ref->weight));
}

TEST(NnModule, InitFunctions) {
  using namespace nn::init;
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::Linear), 1.0);
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::Sigmoid), 1.0);
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::Tanh), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::ReLU), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::LeakyReLU), std::sqrt(2.0 / (1 + 0.01 * 0.01)));
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::LeakyReLU, 0.2), std::sqrt(2.0 / 1.04));
  EXPECT_DOUBLE_EQ(calculate_gain(Nonlinearity::SELU), 0.75);
  auto [fi, fo] = calculate_fan_in_and_fan_out(zeros({8, 3, 5, 5}));
  EXPECT_EQ(fi, 3 * 25);
  EXPECT_EQ(fo, 8 * 25);
  EXPECT_MG_ERROR(calculate_fan_in_and_fan_out(zeros({4})), "[calculate_fan_in_and_fan_out]");
  EXPECT_MG_ERROR(kaiming_uniform_(zeros({4})), "[init.kaiming_uniform_]");
  EXPECT_MG_ERROR(xavier_normal_(zeros({4})), "[calculate_fan_in_and_fan_out]");
  EXPECT_MG_ERROR(nn::init::uniform_(zeros({4}, TensorOptions(DType::Int64))), "[init.uniform_]");
  EXPECT_MG_ERROR(nn::init::normal_(zeros({4}), 0, -1), "[init.normal_]");

  manual_seed(6);
  const int64_t out = 256, in = 512;
  // kaiming_uniform_: bound = gain * sqrt(3 / fan).
  Tensor w = zeros({out, in}).requires_grad_(true);  // works on a parameter (NoGradGuard)
  kaiming_uniform_(w, 0, FanMode::FanIn, Nonlinearity::ReLU);
  double bound = std::sqrt(2.0) * std::sqrt(3.0 / in);
  Stats s = stats(w);
  EXPECT_LE(s.max_abs, bound);
  EXPECT_GT(s.max_abs, 0.999 * bound);
  EXPECT_NEAR(s.var, bound * bound / 3, 0.02 * bound * bound / 3);
  EXPECT_TRUE(w.requires_grad());
  kaiming_uniform_(w, 0, FanMode::FanOut, Nonlinearity::ReLU);
  bound = std::sqrt(2.0) * std::sqrt(3.0 / out);
  EXPECT_GT(stats(w).max_abs, 0.999 * bound);
  EXPECT_LE(stats(w).max_abs, bound);
  // kaiming_normal_: std = gain / sqrt(fan).
  kaiming_normal_(w, 0.1, FanMode::FanIn, Nonlinearity::LeakyReLU);
  double sd = std::sqrt(2.0 / 1.01) / std::sqrt(static_cast<double>(in));
  EXPECT_NEAR(std::sqrt(stats(w).var), sd, 0.01 * sd);
  EXPECT_NEAR(stats(w).mean, 0.0, 5 * sd / std::sqrt(static_cast<double>(out * in)));
  // xavier: std = gain * sqrt(2 / (fan_in + fan_out)); uniform bound = sqrt(3) * std.
  xavier_uniform_(w, 2.0);
  sd = 2.0 * std::sqrt(2.0 / (in + out));
  EXPECT_LE(stats(w).max_abs, std::sqrt(3.0) * sd);
  EXPECT_GT(stats(w).max_abs, 0.999 * std::sqrt(3.0) * sd);
  EXPECT_NEAR(std::sqrt(stats(w).var), sd, 0.01 * sd);
  Tensor c = zeros({16, 4, 3, 3});
  xavier_normal_(c);
  sd = std::sqrt(2.0 / (4 * 9 + 16 * 9));
  EXPECT_NEAR(std::sqrt(stats(c).var), sd, 0.05 * sd);
  // uniform_ / normal_ / constants.
  Tensor u = zeros({10000});
  nn::init::uniform_(u, -3, -1);
  const Vec uv = values(u);
  EXPECT_GE(*std::min_element(uv.begin(), uv.end()), -3.0);
  EXPECT_LT(*std::max_element(uv.begin(), uv.end()), -1.0);
  nn::init::normal_(u, 2.0, 0.5);
  EXPECT_NEAR(stats(u).mean, 2.0, 5 * 0.5 / 100);
  EXPECT_NEAR(std::sqrt(stats(u).var), 0.5, 0.02);
  EXPECT_EQ(values(constant_(zeros({3}), 2.5)), Vec(3, 2.5));
  EXPECT_EQ(values(ones_(zeros({3}))), Vec(3, 1.0));
  EXPECT_EQ(values(zeros_(ones({3}))), Vec(3, 0.0));
  // Seeded: a generator makes the draws reproducible.
  Generator g1(3), g2(3);
  Tensor a = zeros({5, 7}), b = zeros({5, 7});
  xavier_uniform_(a, 1.0, &g1);
  xavier_uniform_(b, 1.0, &g2);
  EXPECT_EQ(values(a), values(b));
  // Empty tensors are left alone.
  EXPECT_EQ(kaiming_uniform_(zeros({0, 3})).numel(), 0);
}

TEST(NnModule, MlpFitsRegressionWithAdam) {
  // y = sin(2 x0) + x1^2 on 128 points; Linear(2, 32) - ReLU - Linear(32, 1) with Adam.
  manual_seed(7);
  Tensor x = rand({128, 2}) * 2.0 - 1.0;
  const Vec xv = values(x);
  Vec yv;
  for (size_t i = 0; i < 128; ++i)
    yv.push_back(std::sin(2 * xv[2 * i]) + xv[2 * i + 1] * xv[2 * i + 1]);
  Tensor y = tensor(yv, {128, 1}).to(DType::Float32);
  auto model = nn::Sequential(nn::Linear(2, 32), nn::ReLU(), nn::Linear(32, 1));
  optim::Adam opt(model->parameters(), optim::AdamOptions(1e-2));
  double first = 0, last = 0;
  for (int step = 0; step < 600; ++step) {
    opt.zero_grad();
    Tensor loss = mean(square(model(x) - y));
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  EXPECT_LT(last, 0.01) << "first loss " << first;
  EXPECT_LT(last, first / 20);
}

// =========================================================================================
// NnModulesNeedFunctional: modules built on nn::functional
// =========================================================================================

namespace {

// Direct convolution in float64: x [N, C, H, W], w [O, C/g, kh, kw].
Vec ref_conv2d(const Vec& x, Shape xs, const Vec& w, Shape ws, const Vec& b,
               std::array<int64_t, 2> st, std::array<int64_t, 2> pd, std::array<int64_t, 2> dl,
               int64_t groups, Shape& out_shape) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  const int64_t O = ws[0], Cg = ws[1], KH = ws[2], KW = ws[3], Og = O / groups;
  const int64_t OH = (H + 2 * pd[0] - dl[0] * (KH - 1) - 1) / st[0] + 1;
  const int64_t OW = (W + 2 * pd[1] - dl[1] * (KW - 1) - 1) / st[1] + 1;
  out_shape = {N, O, OH, OW};
  Vec y(static_cast<size_t>(N * O * OH * OW));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double s = b.empty() ? 0.0 : b[static_cast<size_t>(o)];
          const int64_t g = o / Og;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < KH; ++i)
              for (int64_t j = 0; j < KW; ++j) {
                const int64_t ih = oh * st[0] - pd[0] + i * dl[0];
                const int64_t iw = ow * st[1] - pd[1] + j * dl[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += x[static_cast<size_t>(((n * C + g * Cg + c) * H + ih) * W + iw)] *
                     w[static_cast<size_t>(((o * Cg + c) * KH + i) * KW + j)];
              }
          y[static_cast<size_t>(((n * O + o) * OH + oh) * OW + ow)] = s;
        }
  return y;
}

// Per-channel mean and biased variance of x [N, C, H, W].
void channel_stats(const Vec& x, Shape s, Vec& mean_out, Vec& var_out) {
  const int64_t N = s[0], C = s[1], HW = s[2] * s[3];
  mean_out.assign(static_cast<size_t>(C), 0.0);
  var_out.assign(static_cast<size_t>(C), 0.0);
  for (int64_t c = 0; c < C; ++c) {
    double m = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < HW; ++k) m += x[static_cast<size_t>((n * C + c) * HW + k)];
    m /= static_cast<double>(N * HW);
    double v = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < HW; ++k) {
        const double d = x[static_cast<size_t>((n * C + c) * HW + k)] - m;
        v += d * d;
      }
    mean_out[static_cast<size_t>(c)] = m;
    var_out[static_cast<size_t>(c)] = v / static_cast<double>(N * HW);
  }
}

Vec ref_bn(const Vec& x, Shape s, const Vec& mean, const Vec& var, const Vec& w, const Vec& b,
           double eps) {
  const int64_t C = s[1], HW = s[2] * s[3];
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t c = static_cast<size_t>((static_cast<int64_t>(i) / HW) % C);
    y[i] = (x[i] - mean[c]) / std::sqrt(var[c] + eps) * (w.empty() ? 1.0 : w[c]) +
           (b.empty() ? 0.0 : b[c]);
  }
  return y;
}

// Max or mean over k x k windows with stride s and padding p (count_include_pad for mean).
Vec ref_pool(const Vec& x, Shape s, std::array<int64_t, 2> k, std::array<int64_t, 2> st,
             std::array<int64_t, 2> p, bool is_max, bool include_pad, Shape& out_shape) {
  const int64_t NC = s[0] * s[1], H = s[2], W = s[3];
  const int64_t OH = (H + 2 * p[0] - k[0]) / st[0] + 1, OW = (W + 2 * p[1] - k[1]) / st[1] + 1;
  out_shape = {s[0], s[1], OH, OW};
  Vec y;
  for (int64_t nc = 0; nc < NC; ++nc)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double acc = is_max ? -INFINITY : 0.0;
        int64_t cnt = 0;
        for (int64_t i = 0; i < k[0]; ++i)
          for (int64_t j = 0; j < k[1]; ++j) {
            const int64_t ih = oh * st[0] - p[0] + i, iw = ow * st[1] - p[1] + j;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            const double v = x[static_cast<size_t>((nc * H + ih) * W + iw)];
            acc = is_max ? std::max(acc, v) : acc + v;
            ++cnt;
          }
        if (!is_max)
          acc /= include_pad ? static_cast<double>(k[0] * k[1]) : static_cast<double>(cnt);
        y.push_back(acc);
      }
  return y;
}

}  // namespace

TEST(NnModulesNeedFunctional, Conv2dParametersInitAndForward) {
  manual_seed(8);
  nn::Conv2d conv(nn::Conv2dOptions(4, 6, 3).stride(2).padding(1).dilation({1, 2}).groups(2));
  EXPECT_EQ(names_of(conv->named_parameters()), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(conv->weight.shape(), (Shape{6, 2, 3, 3}));
  EXPECT_EQ(conv->bias.shape(), (Shape{6}));
  const double bound = 1 / std::sqrt(2.0 * 9.0);  // fan_in = in / groups * kH * kW
  EXPECT_LE(stats(conv->weight).max_abs, bound);
  EXPECT_LE(stats(conv->bias).max_abs, bound);
  Tensor x = randn({2, 4, 7, 8});
  Shape ys;
  const Vec ref = ref_conv2d(values(x), x.shape(), values(conv->weight), conv->weight.shape(),
                             values(conv->bias), {2, 2}, {1, 1}, {1, 2}, 2, ys);
  Tensor y = conv(x);
  EXPECT_EQ(y.shape(), ys);
  expect_vec_close(values(y), ref, 1e-5);
  // The functional form with other weights.
  Tensor w2 = randn(conv->weight.shape()), b2 = randn({6});
  const Vec ref2 = ref_conv2d(values(x), x.shape(), values(w2), w2.shape(), values(b2), {2, 2},
                              {1, 1}, {1, 2}, 2, ys);
  expect_vec_close(values(conv->forward(x, {{"weight", w2}, {"bias", b2}})), ref2, 1e-5);
  // No bias.
  nn::Conv2d nb(nn::Conv2dOptions(2, 3, {2, 1}).bias(false));
  EXPECT_FALSE(nb->bias.defined());
  EXPECT_EQ(nb->named_parameters().size(), 1u);
  Tensor x2 = randn({1, 2, 4, 4});
  expect_vec_close(values(nb(x2)),
                   ref_conv2d(values(x2), x2.shape(), values(nb->weight), nb->weight.shape(), {},
                              {1, 1}, {0, 0}, {1, 1}, 1, ys),
                   1e-5);
  // Printing and errors.
  EXPECT_EQ(conv->repr(),
            "Conv2d(4, 6, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 2), "
            "groups=2)");
  EXPECT_EQ(nb->repr(), "Conv2d(2, 3, kernel_size=(2, 1), stride=(1, 1), bias=False)");
  EXPECT_MG_ERROR(nn::Conv2d(nn::Conv2dOptions(3, 4, 3).groups(2)), "[Conv2d]");
  EXPECT_MG_ERROR(nn::Conv2d(nn::Conv2dOptions(3, 4, 0)), "[Conv2d]");
  EXPECT_MG_ERROR_HAS(conv(randn({2, 3, 7, 8})), "[Conv2d]", "[2, 3, 7, 8]");
  EXPECT_MG_ERROR_HAS(conv(randn({4, 7})), "[Conv2d]", "[4, 7]");
  // Unbatched [C, H, W], as PyTorch's Conv2d: the batch of one without its batch dim.
  expect_close(nb(x2.select(0, 0)), nb(x2).select(0, 0), 1e-6);
}

TEST(NnModulesNeedFunctional, BatchNorm2dRunningStatsMode) {
  manual_seed(9);
  nn::BatchNorm2d bn(3);
  EXPECT_EQ(names_of(bn->named_parameters()), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(names_of(bn->named_buffers()),
            (std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"}));
  EXPECT_EQ(bn->num_batches_tracked.dtype(), DType::Int64);
  {
    NoGradGuard g;
    bn->weight.copy_(tensor({1.5, -0.5, 2.0}));
    bn->bias.copy_(tensor({0.1, 0.2, -0.3}));
  }
  Tensor x = randn({4, 3, 2, 5}) * 2.0 + 1.0;
  Vec m, v;
  channel_stats(values(x), x.shape(), m, v);
  // Train mode: batch statistics, running ones updated with the unbiased variance.
  Tensor y = bn(x);
  expect_vec_close(values(y),
                   ref_bn(values(x), x.shape(), m, v, values(bn->weight), values(bn->bias), 1e-5),
                   1e-5);
  const double n = 4 * 2 * 5;
  Vec rm, rv;
  for (size_t c = 0; c < 3; ++c) {
    rm.push_back(0.9 * 0 + 0.1 * m[c]);
    rv.push_back(0.9 * 1 + 0.1 * v[c] * n / (n - 1));
  }
  expect_vec_close(values(bn->running_mean), rm, 1e-5);
  expect_vec_close(values(bn->running_var), rv, 1e-5);
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
  // Eval mode: running statistics, nothing updated.
  bn->eval();
  Tensor x2 = randn({2, 3, 3, 3});
  expect_vec_close(
      values(bn(x2)),
      ref_bn(values(x2), x2.shape(), rm, rv, values(bn->weight), values(bn->bias), 1e-5), 1e-5);
  expect_vec_close(values(bn->running_mean), rm, 1e-6);
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
  // The functional form takes weight and bias from the map, the statistics from the module.
  Tensor w2 = tensor({0.5f, 0.5f, 0.5f}), b2 = tensor({1.f, 1.f, 1.f});
  expect_vec_close(values(bn->forward(x2, {{"weight", w2}, {"bias", b2}})),
                   ref_bn(values(x2), x2.shape(), rm, rv, values(w2), values(b2), 1e-5), 1e-5);
  EXPECT_MG_ERROR_HAS(bn->forward(x2, {{"running_mean", zeros({3})}}), "[BatchNorm2d]",
                      "is a buffer");
  EXPECT_MG_ERROR_HAS(bn(randn({2, 4, 3, 3})), "[BatchNorm2d]", "[2, 4, 3, 3]");
  // The state dict carries the statistics.
  auto sd = bn->state_dict();
  EXPECT_EQ(sd.count("running_mean") + sd.count("running_var") + sd.count("num_batches_tracked"),
            3u);
  EXPECT_EQ(bn->repr(),
            "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
}

TEST(NnModulesNeedFunctional, BatchNorm2dBatchStatsAndIdentityModes) {
  manual_seed(10);
  nn::BatchNorm2d bn(nn::BatchNorm2dOptions(2).mode(nn::BNMode::BatchStats).momentum(0.5));
  Tensor x = randn({3, 2, 2, 2});
  Vec m, v;
  channel_stats(values(x), x.shape(), m, v);
  const Vec ref = ref_bn(values(x), x.shape(), m, v, {}, {}, 1e-5);
  expect_vec_close(values(bn(x)), ref, 1e-5);  // train: batch statistics
  const Vec rm_after_train = values(bn->running_mean);
  EXPECT_NEAR(rm_after_train[0], 0.5 * m[0], 1e-6);  // still tracked in train mode
  bn->eval();
  expect_vec_close(values(bn(x)), ref, 1e-5);           // eval: still batch statistics
  EXPECT_EQ(values(bn->running_mean), rm_after_train);  // never updated in eval mode
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
  EXPECT_EQ(bn->repr(),
            "BatchNorm2d(2, eps=1e-05, momentum=0.5, affine=True, track_running_stats=True, "
            "mode=BatchStats)");

  nn::BatchNorm2d id(nn::BatchNorm2dOptions(2).mode(nn::BNMode::Identity));
  EXPECT_EQ(values(id(x)), values(x));
  EXPECT_EQ(id->named_parameters().size(), 2u);  // kept, so checkpoints stay interchangeable

  // Not tracked: no buffers, batch statistics in eval mode too.
  nn::BatchNorm2d nt(nn::BatchNorm2dOptions(2).track_running_stats(false).affine(false));
  EXPECT_TRUE(nt->named_buffers().empty());
  EXPECT_TRUE(nt->named_parameters().empty());
  nt->eval();
  expect_vec_close(values(nt(x)), ref, 1e-5);

  // momentum = None: a cumulative average over the batches.
  nn::BatchNorm2d cum(nn::BatchNorm2dOptions(2).momentum(std::nullopt));
  Tensor x2 = randn({3, 2, 2, 2});
  Vec m2, v2;
  channel_stats(values(x2), x2.shape(), m2, v2);
  cum(x);
  cum(x2);
  expect_vec_close(values(cum->running_mean), {(m[0] + m2[0]) / 2, (m[1] + m2[1]) / 2}, 1e-5);
  EXPECT_EQ(cum->repr(),
            "BatchNorm2d(2, eps=1e-05, momentum=None, affine=True, track_running_stats=True)");
}

TEST(NnModulesNeedFunctional, LayerNorm) {
  manual_seed(11);
  nn::LayerNorm ln(nn::LayerNormOptions({3, 4}).eps(1e-3));
  EXPECT_EQ(ln->weight.shape(), (Shape{3, 4}));
  {
    NoGradGuard g;
    nn::init::normal_(ln->weight);
    nn::init::normal_(ln->bias);
  }
  Tensor x = randn({2, 3, 4});
  const Vec xv = values(x), w = values(ln->weight), b = values(ln->bias);
  Vec ref;
  for (size_t n = 0; n < 2; ++n) {
    double m = 0, v = 0;
    for (size_t k = 0; k < 12; ++k) m += xv[n * 12 + k];
    m /= 12;
    for (size_t k = 0; k < 12; ++k) v += (xv[n * 12 + k] - m) * (xv[n * 12 + k] - m);
    v /= 12;
    for (size_t k = 0; k < 12; ++k)
      ref.push_back((xv[n * 12 + k] - m) / std::sqrt(v + 1e-3) * w[k] + b[k]);
  }
  expect_vec_close(values(ln(x)), ref, 1e-5);
  EXPECT_EQ(ln->repr(), "LayerNorm((3, 4), eps=0.001, elementwise_affine=True)");
  EXPECT_MG_ERROR(ln(randn({2, 4, 3})), "[LayerNorm]");
  Tensor w2 = ones({3, 4}), b2 = zeros({3, 4});
  Tensor y2 = ln->forward(x, {{"weight", w2}, {"bias", b2}});
  EXPECT_NEAR(values(mean(y2.select(0, 0)))[0], 0.0, 1e-5);
}

TEST(NnModulesNeedFunctional, Pooling) {
  manual_seed(12);
  Tensor x = randn({2, 3, 7, 6});
  Shape s;
  nn::MaxPool2d mp(nn::MaxPool2dOptions(3).stride(2).padding(1));
  Vec ref = ref_pool(values(x), x.shape(), {3, 3}, {2, 2}, {1, 1}, true, true, s);
  Tensor y = mp(x);
  EXPECT_EQ(y.shape(), s);
  expect_vec_close(values(y), ref, 1e-6);
  nn::AvgPool2d ap(nn::AvgPool2dOptions({2, 3}).padding({1, 1}).count_include_pad(false));
  ref = ref_pool(values(x), x.shape(), {2, 3}, {2, 3}, {1, 1}, false, false, s);
  expect_vec_close(values(ap(x)), ref, 1e-6);
  nn::AvgPool2d ap2(2);
  ref = ref_pool(values(x), x.shape(), {2, 2}, {2, 2}, {0, 0}, false, true, s);
  expect_vec_close(values(ap2(x)), ref, 1e-6);
  nn::AdaptiveAvgPool2d gap(1);
  Tensor g = gap(x);
  EXPECT_EQ(g.shape(), (Shape{2, 3, 1, 1}));
  expect_close(g.flatten(), mean(x, {2, 3}).flatten(), 1e-5);
  EXPECT_EQ(mp->repr(),
            "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)");
  EXPECT_EQ(ap2->repr(), "AvgPool2d(kernel_size=2, stride=2, padding=0)");
  EXPECT_MG_ERROR(nn::MaxPool2d(nn::MaxPool2dOptions(2).padding(2)), "[MaxPool2d]");
  EXPECT_MG_ERROR(mp(randn({7, 6})), "[MaxPool2d]");
  // Unbatched [C, H, W] (as PyTorch's modules) and a task-batched stack [B, N, C, H, W].
  expect_close(mp(x.select(0, 1)), mp(x).select(0, 1), 1e-6);
  expect_close(gap(x.select(0, 1)), g.select(0, 1), 1e-6);
  const Tensor stack = x.unsqueeze(0).expand({2, 2, 3, 7, 6});
  expect_close(gap(stack), g.unsqueeze(0).expand({2, 2, 3, 1, 1}), 1e-6);
}

TEST(NnModulesNeedFunctional, ParametricActivations) {
  Tensor x = tensor({-3.0, -0.7, -0.1, 0.0, 0.2, 1.5, 30.0}, {7});
  const Vec v = values(x);
  Vec lr, el, ge, sp;
  for (double e : v) {
    lr.push_back(e > 0 ? e : 0.2 * e);
    el.push_back(e > 0 ? e : 0.5 * (std::exp(e) - 1));
    ge.push_back(0.5 * e * (1 + std::erf(e / std::sqrt(2.0))));
    sp.push_back(2 * e > 10 ? e : std::log1p(std::exp(2 * e)) / 2);
  }
  expect_vec_close(values(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2))(x)), lr, 1e-12);
  expect_vec_close(values(nn::ELU(nn::ELUOptions().alpha(0.5))(x)), el, 1e-12);
  expect_vec_close(values(nn::GELU()(x)), ge, 1e-12);
  expect_vec_close(values(nn::Softplus(nn::SoftplusOptions().beta(2).threshold(10))(x)), sp, 1e-12);
  EXPECT_EQ(nn::LeakyReLU()->repr(), "LeakyReLU(negative_slope=0.01)");
  EXPECT_EQ(nn::ELU()->repr(), "ELU(alpha=1.0)");
  EXPECT_EQ(nn::GELU()->repr(), "GELU(approximate='none')");
  EXPECT_EQ(nn::Softplus()->repr(), "Softplus(beta=1.0, threshold=20.0)");
}

TEST(NnModulesNeedFunctional, Dropout) {
  Generator gen(13);
  nn::Dropout drop(nn::DropoutOptions(0.25).generator(&gen));
  Tensor x = ones({4000});
  Tensor y = drop(x);
  const Vec yv = values(y);
  size_t zeros_seen = 0;
  for (double e : yv) {
    if (e == 0)
      ++zeros_seen;
    else
      EXPECT_NEAR(e, 1 / 0.75, 1e-6);
  }
  EXPECT_NEAR(static_cast<double>(zeros_seen) / 4000, 0.25, 0.03);
  drop->eval();
  EXPECT_EQ(values(drop(x)), values(x));
  EXPECT_EQ(drop->repr(), "Dropout(p=0.25)");
  EXPECT_MG_ERROR(nn::Dropout(1.5), "[Dropout]");
}

TEST(NnModulesNeedFunctional, ConvNetFastWeightsAndMetaGradient) {
  // A 4-layer-MAML-style block: Conv-BN(BatchStats)-ReLU-MaxPool, Flatten, Linear. The
  // functional form equals forward, and the meta-gradient through one inner step matches
  // central differences (inputs drawn at random: ReLU and max-pool kinks are away from the
  // tiny step with overwhelming probability, in float64).
  manual_seed(14);
  auto net = nn::Sequential(
      nn::Conv2d(nn::Conv2dOptions(1, 3, 3).padding(1)),
      nn::BatchNorm2d(
          nn::BatchNorm2dOptions(3).mode(nn::BNMode::BatchStats).track_running_stats(false)),
      nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(), nn::Linear(12, 2));
  net->to(DType::Float64);
  EXPECT_EQ(
      names_of(net->named_parameters()),
      (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"}));
  const TensorOptions f64(DType::Float64);
  Tensor xs = randn({4, 1, 4, 4}, f64), ys = randn({4, 2}, f64);
  Tensor xq = randn({5, 1, 4, 4}, f64), yq = randn({5, 2}, f64);
  nn::ParamMap theta = nn::params_of(*net);
  EXPECT_EQ(values(net->forward(xs, theta)), values(net(xs)));
  auto meta_loss = [&](const nn::ParamMap& th, bool create_graph) {
    Tensor inner = mean(square(net->forward(xs, th) - ys));
    auto g = grad({inner}, nn::values_of(th), {}, std::nullopt, create_graph);
    nn::ParamMap fast = th;
    size_t i = 0;
    for (auto& [k, p] : fast) fast[k] = p - 0.1 * g[i++];
    return mean(square(net->forward(xq, fast) - yq));
  };
  auto mg = grad({meta_loss(theta, true)}, nn::values_of(theta));
  const double h = 1e-6;
  size_t gi = 0;
  for (auto& [k, p] : theta) {
    const Vec exact = values(mg[gi++]);
    for (size_t e = 0; e < exact.size(); e += 3) {
      double l[2];
      for (int s = 0; s < 2; ++s) {
        nn::ParamMap pert;
        for (auto& [k2, p2] : theta) {
          Vec v = values(p2);
          if (k2 == k) v[e] += s == 0 ? h : -h;
          pert[k2] = tensor(v, p2.shape()).requires_grad_(true);
        }
        l[s] = meta_loss(pert, false).item<double>();
      }
      EXPECT_NEAR(exact[e], (l[0] - l[1]) / (2 * h), 1e-6) << k << "[" << e << "]";
    }
  }
}
