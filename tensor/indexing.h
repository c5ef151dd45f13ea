// Indexing and joining ops with PyTorch semantics: gather, scatter_add, index_select,
// one_hot, cat, stack, split / chunk, and pad. Kernels: kernels/cpu/index.cpp (cat uses the
// strided copy kernel). Every index is checked before anything is written:
// "[gather] index 7 is out of bounds for dimension 1 with size 5".
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace metagrad {

// out[i][j][k] = x[index[i][j][k]][j][k] (dim = 0), and so on for other dims. index is int64
// of x's rank with index.size(d) <= x.size(d) for d != dim; out has index's shape.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

// self[index[i][j][k]][j][k] += src[i][j][k] (dim = 0), and so on. index is int64 with
// index.size(d) <= src.size(d) for every d and <= self.size(d) for d != dim; src has self's
// dtype. Repeated indices accumulate, in a fixed order (deterministic on any thread count).
Tensor& scatter_add_(Tensor& self, int64_t dim, const Tensor& index, const Tensor& src);
// Out of place: a copy of x with src scattered into it.
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);

// The entries of x at positions `index` (1-d or 0-d, int64 or int32) along dim; out has x's
// shape with size index.numel() along dim. Negative indices are rejected, as in PyTorch.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);

// An int64 tensor of shape labels.shape + [num_classes] with a 1 at each label. labels are
// integer and in [0, num_classes); num_classes = -1 means max(labels) + 1.
Tensor one_hot(const Tensor& labels, int64_t num_classes = -1);

// Concatenation along an existing dim. Inputs are promoted to a common dtype; 1-d empty
// tensors (shape [0]) are skipped whatever the others' shapes (PyTorch's legacy rule).
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Concatenation along a new dim; all inputs have the same shape.
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);

// Views of consecutive pieces of x along dim, each of split_size (the last one smaller).
// Note: split(x, {3}) picks this overload (a one-element braced list converts to int64_t);
// write split(x, std::vector<int64_t>{3}) for split_with_sizes.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
// Views of pieces of the given sizes (torch.split_with_sizes); they must sum to x.size(dim).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& split_sizes,
                          int64_t dim = 0);
// At most `chunks` views of equal size ceil(x.size(dim) / chunks) (the last one smaller).
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);

// Padding as torch.nn.functional.pad. `pad` lists (left, right) pairs starting from the LAST
// dim: {1, 2} pads the last dim by 1 before and 2 after, {1, 2, 3, 4} also the one before it.
// Negative amounts crop. Constant fills with `value`; Reflect mirrors without repeating the
// edge (each pad < that dim's size); Replicate repeats the edge. Unlike PyTorch, reflect and
// replicate accept any number of padded dims and any rank.
enum class PadMode : int64_t { Constant = 0, Reflect = 1, Replicate = 2 };
Tensor pad(const Tensor& x, const DimVector& pad, double value = 0);
Tensor pad(const Tensor& x, const DimVector& pad, PadMode mode, double value = 0);
namespace detail {
// Source coordinate of output coordinate o along a dim of size n padded by `left`, or -1 for a
// constant fill (pad's kernel and its derivative).
int64_t pad_source(PadMode mode, int64_t o, int64_t left, int64_t n);
}  // namespace detail

}  // namespace metagrad
