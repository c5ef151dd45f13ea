#include "tensor/storage.h"

#include "kernels/cuda/runtime.h"
#include "tensor/allocator.h"
#include "tensor/error.h"

namespace metagrad {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) {
    cuda::check_device("alloc", device.index);
    // Note [CUDA caching allocator]: the block belongs to the stream current at allocation.
    stream_ = cuda::current_stream_handle(device.index);
    data_ = cuda::device_alloc(device.index, nbytes, stream_, &capacity_);
    return;
  }
  data_ = memory::cpu_alloc(nbytes, &capacity_);  // Note [CPU caching allocator]
}

Storage::~Storage() {
  if (device_.is_cuda())
    cuda::device_free(device_.index, data_, capacity_, stream_);
  else
    memory::cpu_free(data_, capacity_);
}

}  // namespace metagrad
