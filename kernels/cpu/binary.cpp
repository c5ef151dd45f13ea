// Elementwise binary ops on the CPU, broadcasting through zero strides.
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/loops.h"

namespace metagrad::kernels::cpu {

namespace {
template <BinaryOp Op>
void run(DType dtype, Extent e, Operand out, Operand a, Operand b) {
  auto L = StridedLayout<3>::make(e.rank, e.shape, {out.strides, a.strides, b.strides});
  const void* ins[2] = {a.data, b.data};
  fn::Binary<Op> f;
  auto go = [&]<typename T>() {
    using Out = std::conditional_t<binary_returns_bool(Op), bool, T>;
    elementwise<Out, T, T>(L, out.data, ins, f);
  };
  if constexpr (Op == BinaryOp::Pow || Op == BinaryOp::Fmod || Op == BinaryOp::Add ||
                Op == BinaryOp::Sub || Op == BinaryOp::Mul || Op == BinaryOp::Div ||
                Op == BinaryOp::ThresholdBackward) {
    MG_DISPATCH_NUMERIC(dtype, [&] { go.template operator()<scalar_t>(); });
  } else {
    MG_DISPATCH_ALL(dtype, [&] { go.template operator()<scalar_t>(); });
  }
}
}  // namespace

void binary(BinaryOp op, DType dtype, Extent e, Operand out, Operand a, Operand b) {
  switch (op) {
#define MG_CASE(name) \
  case BinaryOp::name: return run<BinaryOp::name>(dtype, e, out, a, b);
    MG_FOR_EACH_BINARY_OP(MG_CASE)
#undef MG_CASE
  }
}

}  // namespace metagrad::kernels::cpu
