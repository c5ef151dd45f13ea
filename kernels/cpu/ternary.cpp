// where(cond, a, b) on the CPU.
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/loops.h"

namespace metagrad::kernels::cpu {

void where(DType dtype, Extent e, Operand out, Operand cond, Operand a, Operand b) {
  auto L = StridedLayout<4>::make(e.rank, e.shape,
                                  {out.strides, cond.strides, a.strides, b.strides});
  const void* ins[3] = {cond.data, a.data, b.data};
  MG_DISPATCH_ALL(dtype, [&] {
    elementwise<scalar_t, bool, scalar_t, scalar_t>(
        L, out.data, ins, [](bool c, scalar_t x, scalar_t y) { return c ? x : y; });
  });
}

}  // namespace metagrad::kernels::cpu
