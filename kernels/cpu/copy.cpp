// Strided copy with dtype conversion (contiguous(), to(dtype), clone, assignment into
// views) and fill.
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/loops.h"

namespace metagrad::kernels::cpu {

void copy(DType dst_t, DType src_t, Extent e, Operand dst, Operand src) {
  auto L = StridedLayout<2>::make(e.rank, e.shape, {dst.strides, src.strides});
  if (L.numel == 0) return;  // (an empty tensor's data may be null: no memcpy from null)
  if (dst_t == src_t && L.contiguous(0) && L.contiguous(1)) {
    std::memcpy(dst.data, src.data, static_cast<size_t>(L.numel) * dtype_size(dst_t));
    return;
  }
  const void* ins[1] = {src.data};
  MG_DISPATCH_ALL(dst_t, [&] {
    using D = scalar_t;
    MG_DISPATCH_ALL(src_t, [&] {
      // Casting to bool means "is nonzero", as in C++ and PyTorch.
      elementwise<D, scalar_t>(L, dst.data, ins, [](scalar_t x) {
        if constexpr (std::is_same_v<D, bool>)
          return x != scalar_t(0);
        else
          return static_cast<D>(x);
      });
    });
  });
}

void fill(DType dtype, Extent e, Operand dst, double value) {
  int64_t zero[kMaxDims] = {};
  auto L = StridedLayout<2>::make(e.rank, e.shape, {dst.strides, zero});
  MG_DISPATCH_ALL(dtype, [&] {
    const scalar_t v = static_cast<scalar_t>(value);
    const void* ins[1] = {&v};
    elementwise<scalar_t, scalar_t>(L, dst.data, ins, [](scalar_t x) { return x; });
  });
}

}  // namespace metagrad::kernels::cpu
