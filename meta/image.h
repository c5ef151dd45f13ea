// Image primitives for the datasets: PNG decoding (libpng), area-averaging resize and exact
// quarter-turn rotations. These are data preparation, not ops: nothing here reports to
// autograd, and the raw-pointer forms exist so the loaders can run them per file inside an
// OpenMP loop without building tensors.
//
// Pixel convention: an 8-bit value p becomes p / 255 in [0, 1] (float32), or 1 - p / 255
// with `invert` (Omniglot's ink = 1, as in Finn et al.'s MAML code), computed as
// float(255 - p) / 255 so that 8-bit storage reproduces it bit for bit. Images are planar
// [C, H, W], C = 1 (gray) or 3 (RGB).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace metagrad::meta {

// An 8-bit image as decoded: interleaved rows (h rows of w * channels bytes).
struct Image8 {
  int64_t channels = 0;  // 1 gray, 3 RGB
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;
};

// Reads and decodes a PNG file. channels = 0 keeps the file's own (gray -> 1, RGB -> 3);
// 1 or 3 converts: gray -> RGB repeats the value, RGB -> gray uses ITU-R 601 luma on the
// stored values, L = (299 R + 587 G + 114 B) / 1000 rounded (PIL's convert("L")). Palettes
// and bit depths below 8 are expanded, 16-bit samples scaled to 8 bits, alpha dropped
// (PIL's convert("RGB")), and no gamma correction applied. Errors are metagrad::Error
// starting with "[who] " and naming the file: "[omniglot] cannot decode PNG /x.png: ...".
Image8 read_png(const std::string& path, int64_t channels = 0, const char* who = "read_png");
// Same from bytes in memory; `name` is only used in messages.
Image8 decode_png(const uint8_t* data, size_t size, const std::string& name, int64_t channels = 0,
                  const char* who = "read_png");

// The image as a float32 tensor [C, H, W] with p / 255 (or 1 - p / 255 when invert).
Tensor to_tensor(const Image8& img, bool invert = false);
// read_png followed by to_tensor.
Tensor load_png(const std::string& path, int64_t channels = 0, bool invert = false);

// Note [Area resize]: each output pixel is the average of the input area it covers. Output
// pixel o along an axis of n_in inputs and n_out outputs covers [o * s, (o + 1) * s) with
// s = n_in / n_out, and input pixel i contributes with weight
//   |[o * s, (o + 1) * s) ∩ [i, i + 1)| / s        (fractional at the ends),
// separably in y and x. This is a box filter: it preserves the mean exactly, never rings,
// and is what OpenCV's INTER_AREA does when shrinking. Many MAML codes resize Omniglot with
// PIL's LANCZOS instead; ours is area averaging, so values differ slightly from theirs
// (near the strokes' edges). When enlarging (n_out > n_in) the same formula replicates
// pixels with fractional blends at the seams.
// Raw form (the loaders'): planar [C, H, W] float32, accumulated in double.
void resize_area(const float* src, int64_t channels, int64_t height, int64_t width, float* dst,
                 int64_t out_height, int64_t out_width);
// Tensor form: x is floating [..., H, W] (any strides); returns [..., out_h, out_w] in x's
// dtype, computed in double (for float32 input, the same values as the raw form).
Tensor resize_area(const Tensor& x, int64_t out_height, int64_t out_width);

// Rotation by k quarter turns counter-clockwise (k any integer, taken mod 4) of the last two
// dims, as torch.rot90(x, k, {-2, -1}) and np.rot90: for k = 1, out[i][j] = in[j][W - 1 - i].
// Exact (a permutation of pixels). Raw form: planar [C, H, W] with H == W, dst != src.
void rot90(const float* src, int64_t channels, int64_t size, float* dst, int64_t k);
Tensor rot90(const Tensor& x, int64_t k = 1);

}  // namespace metagrad::meta
