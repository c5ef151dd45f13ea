// Matrix products (tensor/linalg.h): shape and dtype checks, the batch broadcast, the layout
// each operand is handed to the kernel in, and the report to autograd.
//
// Note [matmul layouts]: BLAS reads a matrix stored row-major or column-major with any
// leading dimension, so a contiguous operand, a transposed one, or a matrix sliced out of a
// wider one goes to BLAS as it is (kernels::cpu::blas_layout says which). Only other layouts
// (a column step, an expanded row) and operands of another dtype are copied, and the copy is
// compact: a batch dimension of stride 0 stays of size 1 and is broadcast again through a
// 0 batch stride, so expanded operands are never materialised.
#include "tensor/linalg.h"

#include <algorithm>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/matmul.h"
#include "tensor/dispatch.h"
#include "tensor/grad_mode.h"
#include "tensor/type_promotion.h"

namespace metagrad {

namespace {

void check_operand(const char* op, const Tensor& t) {
  MG_CHECK(t.defined(), op, "got an undefined tensor");
  MG_CHECK(t.dtype() != DType::Bool, op, "not supported for bool tensors (shape ",
           shape_str(t.shape()), ")");
}

[[noreturn]] void fail_shapes(const char* op, const Tensor& a, const Tensor& b) {
  detail::fail(op, "shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
               " cannot be multiplied");
}

// An operand as the kernel sees it: a batch of rows x cols matrices.
struct Operand {
  Tensor holder;        // keeps the data alive: the input itself or a compact copy
  Shape batch_strides;  // over the full batch shape, 0 where broadcast
  int64_t rs = 0, cs = 0;
};

// `x` seen as a batch of rows x cols matrices (a 1-d x is one row when it is the left
// operand, one column when it is the right), broadcast to `batch`; with `folded`, x's batch
// dimensions are already counted in `rows` (see fold_rows). Copies only when the dtype
// differs or BLAS cannot read the matrix layout (Note [matmul layouts]).
Operand prepare(const Tensor& x, bool left, DType t, const Shape& batch, int64_t rows, int64_t cols,
                bool folded = false) {
  const int64_t nd = x.dim();
  Shape own_shape, own_strides;
  Operand op{x, {}, 0, 0};
  if (nd == 1) {  // the stride of the missing dimension is never used
    op.rs = left ? 0 : x.stride(0);
    op.cs = left ? x.stride(0) : 0;
  } else {
    if (!folded) {
      own_shape.assign(x.shape().begin(), x.shape().end() - 2);
      own_strides.assign(x.strides().begin(), x.strides().end() - 2);
    }
    op.rs = x.stride(-2);
    op.cs = x.stride(-1);
  }
  const bool copy =
      x.dtype() != t || (is_floating(t) && !kernels::cpu::blas_layout(rows, cols, op.rs, op.cs));
  if (copy) {
    Shape cshape = own_shape, cstrides = own_strides;
    for (size_t d = 0; d < cshape.size(); ++d)
      if (cstrides[d] == 0) cshape[d] = 1;  // compact: broadcast again below
    cshape.push_back(rows);
    cshape.push_back(cols);
    cstrides.push_back(op.rs);
    cstrides.push_back(op.cs);
    Tensor dst = Tensor::empty(cshape, TensorOptions().dtype(t).device(x.device()));
    MG_KERNEL(x.device(), copy, t, x.dtype(), {static_cast<int>(cshape.size()), cshape.data()},
              {dst.raw_data(), dst.strides().data()}, {x.raw_data(), cstrides.data()});
    const size_t r = own_shape.size();
    own_shape.assign(cshape.begin(), cshape.begin() + static_cast<int64_t>(r));
    own_strides.assign(dst.strides().begin(), dst.strides().begin() + static_cast<int64_t>(r));
    op.rs = dst.stride(-2);
    op.cs = dst.stride(-1);
    op.holder = dst;
  }
  const size_t R = batch.size(), r = own_shape.size();
  op.batch_strides.assign(R, 0);
  for (size_t i = R - r; i < R; ++i)
    if (own_shape[i - (R - r)] != 1) op.batch_strides[i] = own_strides[i - (R - r)];
  return op;
}

// When a's batch dimensions and its rows are laid out as one longer run of rows (a contiguous
// [B, m, k] input, say) and b has no batch of its own, the batch folds into the rows: one
// (B*m) x k product instead of B small ones. Returns the folded row count, or 0.
int64_t fold_rows(const Tensor& a, const Tensor& b) {
  if (a.dim() <= 2 || b.dim() > 2) return 0;
  int64_t rows = a.size(-2), expected = a.stride(-2) * rows;
  for (int64_t d = a.dim() - 3; d >= 0; --d) {
    if (a.size(d) == 1) continue;
    if (a.stride(d) != expected) return 0;
    expected *= a.size(d);
    rows *= a.size(d);
  }
  return rows;
}

Tensor matmul_impl(const char* op, const Tensor& a, const Tensor& b) {
  check_operand(op, a);
  check_operand(op, b);
  detail::check_same_device(op, {&a, &b});
  MG_CHECK(a.dim() >= 1 && b.dim() >= 1, op,
           "both arguments need at least 1 dimension, got shapes ", shape_str(a.shape()), " and ",
           shape_str(b.shape()));
  const DType t = promote_types(a.dtype(), b.dtype());
  const int64_t k = a.size(-1);
  if (k != (b.dim() == 1 ? b.size(0) : b.size(-2))) fail_shapes(op, a, b);
  const int64_t m = a.dim() >= 2 ? a.size(-2) : 1, n = b.dim() >= 2 ? b.size(-1) : 1;

  // Batch dimensions broadcast as in elementwise ops (right-aligned).
  const Shape ba(a.shape().begin(), a.shape().end() - std::min<int64_t>(a.dim(), 2));
  const Shape bb(b.shape().begin(), b.shape().end() - std::min<int64_t>(b.dim(), 2));
  Shape batch(std::max(ba.size(), bb.size()));
  for (size_t i = 0; i < batch.size(); ++i) {
    const size_t R = batch.size();
    const int64_t da = i < R - ba.size() ? 1 : ba[i - (R - ba.size())];
    const int64_t db = i < R - bb.size() ? 1 : bb[i - (R - bb.size())];
    if (da != db && da != 1 && db != 1)
      detail::fail(op, "shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
                   " cannot be multiplied: batch dimensions ", shape_str(ba), " and ",
                   shape_str(bb), " cannot be broadcast");
    batch[i] = da == 1 ? db : da;
  }
  Shape out_shape = batch;
  if (a.dim() >= 2) out_shape.push_back(m);
  if (b.dim() >= 2) out_shape.push_back(n);

  Tensor out;
  {
    NoGradGuard no_grad;  // copies and fills below are the implementation of "matmul"
    const TensorOptions opts = TensorOptions().dtype(t).device(a.device());
    if (numel_of(out_shape) == 0) {
      out = Tensor::empty(out_shape, opts);  // m, n or a batch dim is 0: nothing to compute
    } else if (k == 0) {
      out = Tensor::empty(out_shape, opts);  // empty sums: BLAS would refuse k = 0
      out.zero_();
    } else {
      out = Tensor::empty(out_shape, opts);
      const int64_t folded = fold_rows(a, b);
      const Shape no_batch;
      const Shape& kbatch = folded ? no_batch : batch;
      const int64_t km = folded ? folded : m;
      const Operand pa = prepare(a, true, t, kbatch, km, k, folded != 0);
      const Operand pb = prepare(b, false, t, kbatch, k, n);
      MG_KERNEL(a.device(), matmul, t, {static_cast<int>(kbatch.size()), kbatch.data(), km, n, k},
                {pa.holder.raw_data(), pa.batch_strides.data(), pa.rs, pa.cs},
                {pb.holder.raw_data(), pb.batch_strides.data(), pb.rs, pb.cs}, out.raw_data());
    }
  }
  // autograd args: none (the derivative needs only a, b and the output's shape)
  if (is_floating(t)) detail::record_op("matmul", {a, b}, {out});
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  return matmul_impl("matmul", a, b);
}

Tensor mm(const Tensor& a, const Tensor& b) {
  check_operand("mm", a);
  check_operand("mm", b);
  MG_CHECK(a.dim() == 2 && b.dim() == 2, "mm", "expected 2-d tensors, got shapes ",
           shape_str(a.shape()), " and ", shape_str(b.shape()));
  return matmul_impl("mm", a, b);
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  check_operand("bmm", a);
  check_operand("bmm", b);
  MG_CHECK(a.dim() == 3 && b.dim() == 3, "bmm", "expected 3-d tensors, got shapes ",
           shape_str(a.shape()), " and ", shape_str(b.shape()));
  MG_CHECK(a.size(0) == b.size(0), "bmm", "batch sizes of shapes ", shape_str(a.shape()), " and ",
           shape_str(b.shape()), " differ");
  return matmul_impl("bmm", a, b);
}

Tensor dot(const Tensor& a, const Tensor& b) {
  check_operand("dot", a);
  check_operand("dot", b);
  MG_CHECK(a.dim() == 1 && b.dim() == 1, "dot", "expected 1-d tensors, got shapes ",
           shape_str(a.shape()), " and ", shape_str(b.shape()));
  return matmul_impl("dot", a, b);
}

Tensor mv(const Tensor& a, const Tensor& v) {
  check_operand("mv", a);
  check_operand("mv", v);
  MG_CHECK(a.dim() == 2 && v.dim() == 1, "mv",
           "expected a 2-d matrix and a 1-d vector, got shapes ", shape_str(a.shape()), " and ",
           shape_str(v.shape()));
  return matmul_impl("mv", a, v);
}

Tensor outer(const Tensor& a, const Tensor& b) {
  check_operand("outer", a);
  check_operand("outer", b);
  MG_CHECK(a.dim() == 1 && b.dim() == 1, "outer", "expected 1-d tensors, got shapes ",
           shape_str(a.shape()), " and ", shape_str(b.shape()));
  // [n, 1] @ [1, m]: the unsqueezes are views that report themselves.
  return matmul_impl("outer", a.unsqueeze(1), b.unsqueeze(0));
}

void set_blas_num_threads(int n) {
  kernels::cpu::blas_set_num_threads(n);
}

int get_blas_num_threads() {
  kernels::cpu::blas_sync_num_threads();  // the count the next product will use
  return kernels::cpu::blas_get_num_threads();
}

}  // namespace metagrad
