// nn::init: the initialisers of torch.nn.init, on tensor/random.h's seeded generators.
#include "nn/init.h"

#include <cmath>

#include "tensor/grad_mode.h"

namespace metagrad::nn::init {

namespace {
const char* nonlinearity_name(Nonlinearity n) {
  switch (n) {
    case Nonlinearity::Linear:
      return "linear";
    case Nonlinearity::Conv1D:
      return "conv1d";
    case Nonlinearity::Conv2D:
      return "conv2d";
    case Nonlinearity::Conv3D:
      return "conv3d";
    case Nonlinearity::Sigmoid:
      return "sigmoid";
    case Nonlinearity::Tanh:
      return "tanh";
    case Nonlinearity::ReLU:
      return "relu";
    case Nonlinearity::LeakyReLU:
      return "leaky_relu";
    case Nonlinearity::SELU:
      return "selu";
  }
  return "?";
}

void check_floating(const char* op, const Tensor& t) {
  MG_CHECK(t.defined(), op, "the tensor is undefined");
  MG_CHECK(t.is_floating_point(), op, "expected a floating-point tensor, got ",
           dtype_name(t.dtype()));
}

int64_t fan(const char* op, const Tensor& t, FanMode mode) {
  MG_CHECK(t.defined(), op, "the tensor is undefined");
  MG_CHECK(t.dim() >= 2, op, "fan in and fan out cannot be computed for a tensor with fewer ",
           "than 2 dims (shape ", shape_str(t.shape()), ")");
  auto [in, out] = calculate_fan_in_and_fan_out(t);
  return mode == FanMode::FanIn ? in : out;
}
}  // namespace

double calculate_gain(Nonlinearity nonlinearity, std::optional<double> param) {
  switch (nonlinearity) {
    case Nonlinearity::Linear:
    case Nonlinearity::Conv1D:
    case Nonlinearity::Conv2D:
    case Nonlinearity::Conv3D:
    case Nonlinearity::Sigmoid:
      return 1.0;
    case Nonlinearity::Tanh:
      return 5.0 / 3.0;
    case Nonlinearity::ReLU:
      return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU: {
      const double slope = param.value_or(0.01);
      return std::sqrt(2.0 / (1.0 + slope * slope));
    }
    case Nonlinearity::SELU:
      return 3.0 / 4.0;
  }
  detail::fail("calculate_gain", "unknown nonlinearity ", nonlinearity_name(nonlinearity));
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& tensor) {
  MG_CHECK(tensor.defined(), "calculate_fan_in_and_fan_out", "the tensor is undefined");
  MG_CHECK(tensor.dim() >= 2, "calculate_fan_in_and_fan_out",
           "fan in and fan out cannot be computed for a tensor with fewer than 2 dims (shape ",
           shape_str(tensor.shape()), ")");
  int64_t receptive = 1;
  for (int64_t d = 2; d < tensor.dim(); ++d) receptive *= tensor.size(d);
  return {tensor.size(1) * receptive, tensor.size(0) * receptive};
}

Tensor uniform_(Tensor tensor, double a, double b, Generator* gen) {
  check_floating("init.uniform_", tensor);
  MG_CHECK(a <= b, "init.uniform_", "expected a <= b, got a = ", a, ", b = ", b);
  NoGradGuard no_grad;
  metagrad::uniform_(tensor, a, b, gen);
  return tensor;
}

Tensor normal_(Tensor tensor, double mean, double std, Generator* gen) {
  check_floating("init.normal_", tensor);
  MG_CHECK(std >= 0, "init.normal_", "expected std >= 0, got ", std);
  NoGradGuard no_grad;
  metagrad::normal_(tensor, mean, std, gen);
  return tensor;
}

Tensor constant_(Tensor tensor, double value) {
  MG_CHECK(tensor.defined(), "init.constant_", "the tensor is undefined");
  NoGradGuard no_grad;
  tensor.fill_(value);
  return tensor;
}

Tensor zeros_(Tensor tensor) {
  return constant_(std::move(tensor), 0.0);
}
Tensor ones_(Tensor tensor) {
  return constant_(std::move(tensor), 1.0);
}

Tensor xavier_uniform_(Tensor tensor, double gain, Generator* gen) {
  auto [in, out] = calculate_fan_in_and_fan_out(tensor);
  MG_CHECK(in + out > 0, "init.xavier_uniform_", "the tensor has no elements (shape ",
           shape_str(tensor.shape()), ")");
  const double std = gain * std::sqrt(2.0 / static_cast<double>(in + out));
  const double bound = std::sqrt(3.0) * std;
  return uniform_(std::move(tensor), -bound, bound, gen);
}

Tensor xavier_normal_(Tensor tensor, double gain, Generator* gen) {
  auto [in, out] = calculate_fan_in_and_fan_out(tensor);
  MG_CHECK(in + out > 0, "init.xavier_normal_", "the tensor has no elements (shape ",
           shape_str(tensor.shape()), ")");
  const double std = gain * std::sqrt(2.0 / static_cast<double>(in + out));
  return normal_(std::move(tensor), 0.0, std, gen);
}

Tensor kaiming_uniform_(Tensor tensor, double a, FanMode mode, Nonlinearity nonlinearity,
                        Generator* gen) {
  const int64_t f = fan("init.kaiming_uniform_", tensor, mode);
  if (tensor.numel() == 0) return tensor;  // PyTorch: nothing to initialise
  MG_CHECK(f > 0, "init.kaiming_uniform_", "fan is 0 for shape ", shape_str(tensor.shape()));
  const double std = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(f));
  const double bound = std::sqrt(3.0) * std;
  return uniform_(std::move(tensor), -bound, bound, gen);
}

Tensor kaiming_normal_(Tensor tensor, double a, FanMode mode, Nonlinearity nonlinearity,
                       Generator* gen) {
  const int64_t f = fan("init.kaiming_normal_", tensor, mode);
  if (tensor.numel() == 0) return tensor;
  MG_CHECK(f > 0, "init.kaiming_normal_", "fan is 0 for shape ", shape_str(tensor.shape()));
  const double std = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(f));
  return normal_(std::move(tensor), 0.0, std, gen);
}

}  // namespace metagrad::nn::init
