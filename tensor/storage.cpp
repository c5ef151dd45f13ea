#include "tensor/storage.h"

#include <cstdlib>

#include "tensor/error.h"

namespace metagrad {

namespace {
void* cpu_alloc(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t rounded = (nbytes + 63) / 64 * 64;  // aligned_alloc wants a multiple
  void* p = std::aligned_alloc(64, rounded);
  if (!p) detail::fail("alloc", "out of memory allocating ", nbytes, " bytes on the CPU");
  return p;
}
}  // namespace

Storage::Storage(size_t nbytes, Device device)
    : data_(nullptr, [](void* p) { std::free(p); }), nbytes_(nbytes), device_(device) {
  if (device.is_cuda())
    detail::fail("alloc", "CUDA storage is not available yet in this build (asked for ",
                 device.str(), "); use the CPU");
  data_.reset(cpu_alloc(nbytes));
}

}  // namespace metagrad
