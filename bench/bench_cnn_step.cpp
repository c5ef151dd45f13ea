// One training step (forward, cross-entropy, backward, Adam) of the small CNN of issue 4:
// conv-bn-relu-pool x2 + linear, on a batch of 28x28 single-channel images.
#include <benchmark/benchmark.h>

#include <metagrad/metagrad.h>

using namespace metagrad;

static void BM_SmallCnnTrainingStep(benchmark::State& state) {
  const int64_t batch = state.range(0), width = state.range(1);
  Generator gen(0);
  nn::Sequential net;
  for (int b = 0; b < 2; ++b) {
    net->push_back(std::make_shared<nn::Conv2dImpl>(
        nn::Conv2dOptions(b == 0 ? 1 : width, width, 3).padding(1), &gen));
    net->push_back(std::make_shared<nn::BatchNorm2dImpl>(nn::BatchNorm2dOptions(width)));
    net->push_back(std::make_shared<nn::ReLUImpl>());
    net->push_back(std::make_shared<nn::MaxPool2dImpl>(2));
  }
  net->push_back(std::make_shared<nn::FlattenImpl>());
  net->push_back(std::make_shared<nn::LinearImpl>(nn::LinearOptions(width * 7 * 7, 4), &gen));
  Tensor x = randn({batch, 1, 28, 28}, DType::Float32, &gen);
  Tensor y = randint(0, 4, {batch}, DType::Int64, &gen);
  optim::Adam opt(net->parameters(), optim::AdamOptions(1e-3));
  for (auto _ : state) {
    opt.zero_grad();
    Tensor loss = nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss.raw_data());
  }
  // Convolution FLOPs of the forward pass (x3 for forward + both backward products).
  const double f1 = 2.0 * batch * width * 1 * 9 * 28 * 28;
  const double f2 = 2.0 * batch * width * width * 9 * 14 * 14;
  state.counters["conv_FLOP/s"] =
      benchmark::Counter(3 * (f1 + f2), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_SmallCnnTrainingStep)->Args({64, 16})->Args({64, 32})->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
