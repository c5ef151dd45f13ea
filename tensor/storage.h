// A reference-counted block of memory that tensors view. Views of one tensor share one
// Storage, and with it the version counter that autograd uses to notice in-place writes
// to a tensor it saved.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "tensor/device.h"

namespace metagrad {

class Storage {
 public:
  // Allocates `nbytes` on `device` (64-byte aligned on the CPU, from the caching allocators of
  // tensor/allocator.h and kernels/cuda/runtime.h); contents are uninitialised.
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;    // from memory::cpu_alloc or cuda::device_alloc
  size_t capacity_ = 0;     // the block's real size, handed back on free
  void* stream_ = nullptr;  // CUDA: the stream the block was allocated for
  size_t nbytes_;
  Device device_;
  uint64_t version_ = 0;
};

}  // namespace metagrad
