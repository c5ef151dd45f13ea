// nn::init: parameter initialisers, as torch.nn.init. Each fills its tensor in place under
// NoGradGuard (so parameters that require grad can be initialised) and returns it; the
// random ones draw from `gen`, or from the seeded default generator when it is null
// (tensor/random.h), so a manual_seed makes every model's initial weights reproducible.
#pragma once
#include <cstdint>
#include <optional>
#include <utility>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace metagrad::nn::init {

enum class FanMode { FanIn, FanOut };
enum class Nonlinearity { Linear, Conv1D, Conv2D, Conv3D, Sigmoid, Tanh, ReLU, LeakyReLU, SELU };

// The recommended gain for a nonlinearity (torch.nn.init.calculate_gain): 1 for linear,
// convolutions and sigmoid; 5/3 for tanh; sqrt(2) for relu; sqrt(2 / (1 + a^2)) for leaky_relu
// with negative slope `param` (0.01 when not given, PyTorch's default); 3/4 for selu.
double calculate_gain(Nonlinearity nonlinearity, std::optional<double> param = std::nullopt);

// (fan_in, fan_out) of a weight of at least 2 dims: size(1) and size(0), each times the
// receptive field (the product of the dims after the first two).
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& tensor);

Tensor uniform_(Tensor tensor, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
Tensor normal_(Tensor tensor, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor constant_(Tensor tensor, double value);
Tensor zeros_(Tensor tensor);
Tensor ones_(Tensor tensor);

// U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010).
Tensor xavier_uniform_(Tensor tensor, double gain = 1.0, Generator* gen = nullptr);
// N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_normal_(Tensor tensor, double gain = 1.0, Generator* gen = nullptr);
// U(-b, b) with b = sqrt(3) * gain / sqrt(fan) (He et al., 2015); fan by `mode`, gain from
// calculate_gain(nonlinearity, a). Defaults as PyTorch: a = 0, fan_in, leaky_relu.
Tensor kaiming_uniform_(Tensor tensor, double a = 0, FanMode mode = FanMode::FanIn,
                        Nonlinearity nonlinearity = Nonlinearity::LeakyReLU,
                        Generator* gen = nullptr);
// N(0, std^2) with std = gain / sqrt(fan).
Tensor kaiming_normal_(Tensor tensor, double a = 0, FanMode mode = FanMode::FanIn,
                       Nonlinearity nonlinearity = Nonlinearity::LeakyReLU,
                       Generator* gen = nullptr);

}  // namespace metagrad::nn::init
