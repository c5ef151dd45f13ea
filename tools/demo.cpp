// metagrad-demo: a tour of tensors (and, once autograd lands, gradients).
#include <metagrad/metagrad.h>

#include <cstdio>

using namespace metagrad;

int main() {
  Tensor x = linspace(-1, 1, 5, DType::Float64);
  Tensor y = tanh(x) * 2 + 1;
  auto yv = y.to_vector<double>();
  std::printf("x = linspace(-1, 1, 5); y = 2 tanh(x) + 1:\n");
  for (size_t i = 0; i < yv.size(); ++i) std::printf("  y[%zu] = %.6f\n", i, yv[i]);
  Tensor m = arange(0, 6, 1, DType::Float32).reshape({2, 3});
  Tensor mt = m.t();
  std::printf("a [2, 3] tensor transposed is a view: shape [%lld, %lld], strides [%lld, %lld]\n",
              static_cast<long long>(mt.size(0)), static_cast<long long>(mt.size(1)),
              static_cast<long long>(mt.stride(0)), static_cast<long long>(mt.stride(1)));
  return 0;
}
