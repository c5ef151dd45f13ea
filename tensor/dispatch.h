// Dispatch is one branch on the device (DESIGN principle 7): the CPU and CUDA kernels share
// names and arguments (kernels/args.h), so the tensor layer computes everything once and
// MG_KERNEL(device, fn, args...) calls kernels::cpu::fn or kernels::cuda::fn, and tells the
// kernel profiler (tensor/profiler.h) when it is on.
#pragma once
#include <initializer_list>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/cuda_kernels.h"
#include "tensor/profiler.h"
#include "tensor/tensor.h"

// The KernelTimer temporary lives until the end of the full expression, so it spans the call:
// the kernel profiler's hook (tensor/profiler.h), one relaxed atomic load when it is off.
#define MG_KERNEL(device, fn, ...)                                    \
  (::metagrad::profiler::detail::KernelTimer{#fn, (device)},          \
   (device).is_cuda() ? ::metagrad::kernels::cuda::fn(__VA_ARGS__)    \
                      : ::metagrad::kernels::cpu::fn(__VA_ARGS__))

namespace metagrad::detail {

// The device every operand of `op` lives on. All must agree, except that a 0-d CPU tensor
// (a scalar) may join an op on another device, as in PyTorch: `adopt_device` moves it.
Device common_device(const char* op, std::initializer_list<const Tensor*> ts);

// Throws unless every defined tensor is on the same device (no scalar exception: for ops
// whose operands are not elementwise-broadcast, such as conv2d, matmul and the indexing ops).
void check_same_device(const char* op, std::initializer_list<const Tensor*> ts);

// `t` on `d`: itself when it is there already; a 0-d tensor is copied over (without being
// recorded: the op that called this reports itself with the original operand).
Tensor adopt_device(const Tensor& t, Device d);

}  // namespace metagrad::detail
