// nn end to end: a small CNN (conv-bn-relu-pool x2 + linear) trained with Adam on a synthetic
// 4-class image problem reaches 100% training accuracy, and a checkpoint round trip restores
// bit-identical outputs.
#include <gtest/gtest.h>

#include "test_util.h"

#include <metagrad/metagrad.h>

#include <cstdio>
#include <filesystem>

using namespace metagrad;
namespace F = nn::functional;

namespace {

// Class k: a bright 4x4 square in quadrant k of a 12x12 image, on Gaussian noise.
std::pair<Tensor, Tensor> synthetic_images(int per_class, Generator& gen) {
  const int n = 4 * per_class;
  Tensor x = randn({n, 1, 12, 12}, DType::Float32, &gen) * 0.3;
  std::vector<int64_t> labels;
  NoGradGuard ng;
  for (int i = 0; i < n; ++i) {
    const int k = i % 4;
    labels.push_back(k);
    const int r = (k / 2) * 6 + 1, c = (k % 2) * 6 + 1;
    Tensor patch = x.select(0, i).select(0, 0).slice(0, r, r + 4).slice(1, c, c + 4);
    patch += 1.5;
  }
  return {x, tensor(labels)};
}

nn::Sequential small_cnn(Generator& gen) {
  nn::Sequential net;
  for (int b = 0; b < 2; ++b) {
    net->push_back(std::make_shared<nn::Conv2dImpl>(
        nn::Conv2dOptions(b == 0 ? 1 : 8, 8, 3).padding(1), &gen));
    net->push_back(std::make_shared<nn::BatchNorm2dImpl>(nn::BatchNorm2dOptions(8)));
    net->push_back(std::make_shared<nn::ReLUImpl>());
    net->push_back(std::make_shared<nn::MaxPool2dImpl>(2));
  }
  net->push_back(std::make_shared<nn::FlattenImpl>());
  net->push_back(std::make_shared<nn::LinearImpl>(nn::LinearOptions(8 * 3 * 3, 4), &gen));
  return net;
}

}  // namespace

TEST(NnTraining, SmallCnnReachesFullTrainingAccuracy) {
  Generator gen(3);
  auto [x, y] = synthetic_images(16, gen);
  auto net = small_cnn(gen);
  optim::Adam opt(net->parameters(), optim::AdamOptions(1e-2));
  double acc = 0;
  for (int step = 0; step < 150 && acc < 1.0; ++step) {
    opt.zero_grad();
    Tensor logits = net->forward(x);
    F::cross_entropy(logits, y).backward();
    opt.step();
    acc = meta::accuracy(logits.detach(), y);
  }
  net->eval();  // running statistics now
  Tensor logits = net->forward(x);
  EXPECT_EQ(meta::accuracy(logits, y), 1.0);
}

TEST(NnTraining, CheckpointRoundTripRestoresBitIdenticalOutputs) {
  Generator gen(4);
  auto [x, y] = synthetic_images(4, gen);
  auto net = small_cnn(gen);
  optim::Adam opt(net->parameters(), optim::AdamOptions(1e-2));
  for (int step = 0; step < 3; ++step) {  // move weights and running stats off their init
    opt.zero_grad();
    F::cross_entropy(net->forward(x), y).backward();
    opt.step();
  }
  net->eval();
  const std::vector<float> want = net->forward(x).to_vector<float>();
  const auto path = std::filesystem::temp_directory_path() / "metagrad_cnn_roundtrip.safetensors";
  nn::save_module(path.string(), *net);
  Generator other(99);
  auto fresh = small_cnn(other);
  fresh->eval();
  EXPECT_NE(fresh->forward(x).to_vector<float>(), want);
  nn::load_module(path.string(), *fresh);
  EXPECT_EQ(fresh->forward(x).to_vector<float>(), want);  // bit for bit
  // A module of another shape is refused and left unchanged.
  nn::Sequential wrong;
  wrong->push_back(std::make_shared<nn::LinearImpl>(nn::LinearOptions(3, 4)));
  const auto before = wrong->state_dict().begin()->second.to_vector<float>();
  EXPECT_MG_ERROR(nn::load_module(path.string(), *wrong), "[load_state_dict]");
  EXPECT_EQ(wrong->state_dict().begin()->second.to_vector<float>(), before);
  std::filesystem::remove(path);
}

TEST(NnTraining, OptimizerCheckpointGivesIdenticalNextSteps) {
  Generator gen(5);
  auto [x, y] = synthetic_images(2, gen);
  auto run_steps = [&](nn::Sequential& net, optim::Adam& opt, int n) {
    for (int s = 0; s < n; ++s) {
      opt.zero_grad();
      F::cross_entropy(net->forward(x), y).backward();
      opt.step();
    }
  };
  Generator g1(7), g2(7);
  auto a = small_cnn(g1);
  auto b = small_cnn(g2);
  optim::Adam oa(a->parameters(), optim::AdamOptions(1e-2));
  optim::Adam ob(b->parameters(), optim::AdamOptions(5e-2));  // other hyper-parameters
  run_steps(a, oa, 2);
  const auto dir = std::filesystem::temp_directory_path();
  nn::save_module((dir / "mg_opt_model.safetensors").string(), *a);
  nn::save_optimizer((dir / "mg_opt_state.safetensors").string(), oa);
  nn::load_module((dir / "mg_opt_model.safetensors").string(), *b);
  nn::load_optimizer((dir / "mg_opt_state.safetensors").string(), ob);
  EXPECT_DOUBLE_EQ(ob.lr(), 1e-2);
  run_steps(a, oa, 2);
  run_steps(b, ob, 2);
  for (const auto& [k, v] : a->state_dict())
    EXPECT_EQ(v.to_vector<float>(), b->state_dict().at(k).to_vector<float>()) << k;
  std::filesystem::remove(dir / "mg_opt_model.safetensors");
  std::filesystem::remove(dir / "mg_opt_state.safetensors");
}
