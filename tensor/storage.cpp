#include "tensor/storage.h"

#include "tensor/allocator.h"
#include "tensor/error.h"

namespace metagrad {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda())
    detail::fail("alloc", "CUDA storage is not available yet in this build (asked for ",
                 device.str(), "); use the CPU");
  data_ = memory::cpu_alloc(nbytes, &capacity_);  // Note [CPU caching allocator]
}

Storage::~Storage() {
  memory::cpu_free(data_, capacity_);
}

}  // namespace metagrad
