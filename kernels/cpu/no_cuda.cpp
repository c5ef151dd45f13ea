// Linked instead of kernels/cuda/runtime.cu in a build without CUDA.
#include "tensor/device.h"

namespace metagrad {
int cuda_device_count() { return 0; }
bool cuda_is_available() { return false; }
}  // namespace metagrad
