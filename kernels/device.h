// Where a tensor's storage lives. The CPU is the default everywhere.
#pragma once
#include <cstdint>
#include <string>

namespace metagrad {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device&) const = default;
  std::string str() const {
    return is_cpu() ? "cpu" : "cuda:" + std::to_string(index);
  }
};

// True when this build has CUDA compiled in and a GPU is visible (kernels/cuda/runtime).
bool cuda_is_available();
int cuda_device_count();

}  // namespace metagrad
