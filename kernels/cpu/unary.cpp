// Elementwise unary ops on the CPU: one switch on the op, one on the dtype, one loop.
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/loops.h"

namespace metagrad::kernels::cpu {

namespace {
template <UnaryOp Op>
void run(double p0, double p1, DType dtype, Extent e, Operand out, Operand in) {
  auto L = StridedLayout<2>::make(e.rank, e.shape, {out.strides, in.strides});
  const void* ins[1] = {in.data};
  fn::Unary<Op> f{p0, p1};
  if constexpr (unary_needs_float(Op)) {
    MG_DISPATCH_FLOAT(dtype, [&] { elementwise<scalar_t, scalar_t>(L, out.data, ins, f); });
  } else {
    MG_DISPATCH_NUMERIC(dtype, [&] { elementwise<scalar_t, scalar_t>(L, out.data, ins, f); });
  }
}
}  // namespace

void unary(UnaryOp op, double p0, double p1, DType dtype, Extent e, Operand out, Operand in) {
  switch (op) {
#define MG_CASE(name) \
  case UnaryOp::name: return run<UnaryOp::name>(p0, p1, dtype, e, out, in);
    MG_FOR_EACH_UNARY_OP(MG_CASE)
#undef MG_CASE
  }
}

}  // namespace metagrad::kernels::cpu
