#include "meta/models.h"

#include "tensor/reduce.h"

namespace metagrad::meta {

namespace {
// The spatial mean of the strided conv-4 (its features are [N, C, 2, 2] for 28x28 inputs, or
// [B, N, C, 2, 2] stacked).
class SpatialMeanImpl : public nn::Module {
 public:
  using Module::forward;
  Tensor forward(const Tensor& x, const nn::ParamMap&) override { return mean(x, {-2, -1}); }
  std::string name() const override { return "SpatialMean"; }
};
}  // namespace

nn::Sequential sinusoid_mlp(int64_t hidden, Generator* gen) {
  nn::Sequential net;
  net->push_back("0", std::make_shared<nn::LinearImpl>(nn::LinearOptions(1, hidden), gen));
  net->push_back("1", std::make_shared<nn::ReLUImpl>());
  net->push_back("2", std::make_shared<nn::LinearImpl>(nn::LinearOptions(hidden, hidden), gen));
  net->push_back("3", std::make_shared<nn::ReLUImpl>());
  net->push_back("head", std::make_shared<nn::LinearImpl>(nn::LinearOptions(hidden, 1), gen));
  return net;
}

nn::Sequential conv4(const Conv4Options& o, Generator* gen) {
  MG_CHECK(o.n_way > 0 && o.in_channels > 0 && o.hidden > 0 && o.image_size > 0, "conv4",
           "invalid options: n_way ", o.n_way, ", in_channels ", o.in_channels, ", hidden ",
           o.hidden, ", image_size ", o.image_size);
  // Four 2x2 max-pools halve the side four times: below 16 pixels nothing is left to flatten.
  MG_CHECK(o.strided || o.image_size >= 16, "conv4",
           "the max-pool variant needs image_size >= 16, got ", o.image_size);
  nn::Sequential net;
  int64_t size = o.image_size;
  for (int b = 0; b < 4; ++b) {
    auto block = std::make_shared<nn::SequentialImpl>();
    const int64_t in = b == 0 ? o.in_channels : o.hidden;
    block->push_back("conv", std::make_shared<nn::Conv2dImpl>(
                                 nn::Conv2dOptions(in, o.hidden, 3)
                                     .stride(o.strided ? 2 : 1)
                                     .padding(1),
                                 gen));
    block->push_back("bn", std::make_shared<nn::BatchNorm2dImpl>(
                               nn::BatchNorm2dOptions(o.hidden)
                                   .mode(o.bn_mode)
                                   .track_running_stats(o.track_running_stats)));
    block->push_back("relu", std::make_shared<nn::ReLUImpl>());
    if (!o.strided) block->push_back("pool", std::make_shared<nn::MaxPool2dImpl>(2));
    size = o.strided ? (size + 1) / 2 : size / 2;
    net->push_back("block" + std::to_string(b), block);
  }
  int64_t features = o.hidden;
  if (o.strided) {
    net->push_back("mean", std::make_shared<SpatialMeanImpl>());
  } else {
    // the last three dims (C, H, W): [N, C*H*W], or [B, N, C*H*W] for a stacked input
    net->push_back("flatten",
                   std::make_shared<nn::FlattenImpl>(nn::FlattenOptions().start_dim(-3)));
    features = o.hidden * size * size;
  }
  net->push_back("head",
                 std::make_shared<nn::LinearImpl>(nn::LinearOptions(features, o.n_way), gen));
  return net;
}

}  // namespace metagrad::meta
