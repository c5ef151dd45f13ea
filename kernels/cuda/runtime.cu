// CUDA runtime queries. A CUDA build on a machine without a GPU answers "no GPU" here and
// everything runs on the CPU (DESIGN principle 7).
#include <cuda_runtime.h>

#include "tensor/device.h"

namespace metagrad {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

bool cuda_is_available() { return cuda_device_count() > 0; }

}  // namespace metagrad
