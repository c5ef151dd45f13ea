// Reductions, as in libtorch: sum, mean, prod, var/std, max/min (all elements, or along one dim
// with indices), amax/amin, argmax/argmin, logsumexp and vector norms.
//
// `dims` lists the dimensions to reduce: any set, negative dims counted from the end, no
// repeats; an empty list reduces over every dim (as torch). keepdim keeps the reduced dims with
// size 1. A 0-d tensor accepts dims {0} and {-1} and reduces over its one element.
// Kernels: kernels/cpu/reduce.cpp (see its Notes on loop orders and accuracy).
#pragma once
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace metagrad {

// Sum. Integer and bool inputs sum into int64; `dtype` casts the input first (torch's rule).
Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, const DimVector& dims, bool keepdim = false,
           std::optional<DType> dtype = std::nullopt);

// Mean of floating-point inputs (an integer input is an error; cast it first). The mean of no
// elements is NaN.
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const DimVector& dims, bool keepdim = false);

// Variance sum((x - mean)^2) / max(0, n - correction) (correction 1: unbiased) and its square
// root; floating point only, two-pass.
Tensor var(const Tensor& x);
Tensor var(const Tensor& x, const DimVector& dims, double correction = 1, bool keepdim = false);
Tensor std(const Tensor& x);
Tensor std(const Tensor& x, const DimVector& dims, double correction = 1, bool keepdim = false);

// Product; integer and bool inputs multiply into int64. The product of no elements is 1.
Tensor prod(const Tensor& x);
Tensor prod(const Tensor& x, const DimVector& dims, bool keepdim = false);

// Largest / smallest element (0-d). NaN propagates; an empty tensor is an error.
Tensor max(const Tensor& x);
Tensor min(const Tensor& x);
// Along one dim: (values, int64 indices), the first occurrence on ties (the first NaN if any).
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
// Values only, over any set of dims.
Tensor amax(const Tensor& x, const DimVector& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const DimVector& dims = {}, bool keepdim = false);
// int64 index of the largest / smallest along `dim`, or into the flattened tensor without one.
Tensor argmax(const Tensor& x, std::optional<int64_t> dim = std::nullopt, bool keepdim = false);
Tensor argmin(const Tensor& x, std::optional<int64_t> dim = std::nullopt, bool keepdim = false);

// log(sum(exp(x))), computed as m + log(sum(exp(x - m))) with m the max (stable; a row of -inf
// gives -inf). Integer inputs are promoted to float32, as torch.
Tensor logsumexp(const Tensor& x, const DimVector& dims, bool keepdim = false);

// Vector p-norm over `dims` (all when empty), floating point only: p = 2, 1, inf
// (max |x|), -inf (min |x|), 0 (number of nonzeros), or any other p: (sum |x|^p)^(1/p).
// As torch.linalg.vector_norm; an infinite p over no elements is an error.
Tensor norm(const Tensor& x, double p = 2.0, const DimVector& dims = {}, bool keepdim = false);

}  // namespace metagrad
