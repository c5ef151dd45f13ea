// PNG decoding through libpng's classic API, area resize and quarter-turn rotations
// (declared in meta/image.h).
#include "meta/image.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "tensor/grad_mode.h"

namespace metagrad::meta {

namespace {

// ---- PNG --------------------------------------------------------------------------------

// What the libpng callbacks may touch: plain data only, because libpng reports errors with
// longjmp, which must not jump over C++ destructors.
struct PngReadState {
  const uint8_t* data;
  size_t size;
  size_t pos;
  char message[256];
};

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
  auto* s = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (n > s->size - s->pos) png_error(png, "unexpected end of file (truncated PNG)");
  std::memcpy(out, s->data + s->pos, n);
  s->pos += n;
}

void png_on_error(png_structp png, png_const_charp msg) {
  auto* s = static_cast<PngReadState*>(png_get_error_ptr(png));
  std::snprintf(s->message, sizeof s->message, "%s", msg);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}  // benign (e.g. unknown chunks)

// The decoded rows land in `pixels` (owned by the caller, so a longjmp leaks nothing).
struct PngHeader {
  uint32_t width = 0, height = 0;
  int channels = 0;  // after the transforms: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
};

// Decodes into `pixels` and `rows`; returns false with s.message set on any libpng error.
// No object with a destructor is created between setjmp and the end of this function.
bool png_decode_raw(PngReadState& s, PngHeader& h, std::vector<uint8_t>& pixels,
                    std::vector<png_bytep>& rows) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s, png_on_error, png_on_warning);
  if (!png) {
    std::snprintf(s.message, sizeof s.message, "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(s.message, sizeof s.message, "out of memory");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, &s, png_read_mem);
  png_read_info(png, info);
  // The header's size must fit the file before anything is allocated: deflate expands at
  // most 1032:1, so the raw rows (one filter byte each) of a valid file take at most 1032
  // times its size. A 65-byte file that claims 30000x30000 is refused here, not after a
  // gigabyte-sized buffer.
  {
    const uint32_t w = png_get_image_width(png, info), ht = png_get_image_height(png, info);
    const double raw = (double(png_get_rowbytes(png, info)) + 1) * double(ht);
    if (raw > 1032.0 * double(s.size)) {
      png_destroy_read_struct(&png, &info, nullptr);
      std::snprintf(s.message, sizeof s.message,
                    "image of %ux%u is too large for a file of %zu bytes (deflate expands at "
                    "most 1032:1)",
                    w, ht, s.size);
      return false;
    }
  }
  // Palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha; 16 bits -> 8 with rounding.
  png_set_expand(png);
  png_set_scale_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  h.width = png_get_image_width(png, info);
  h.height = png_get_image_height(png, info);
  h.channels = png_get_channels(png, info);
  const size_t rowbytes = png_get_rowbytes(png, info);
  if (h.channels < 1 || h.channels > 4 || rowbytes != size_t(h.width) * size_t(h.channels)) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::snprintf(s.message, sizeof s.message, "unsupported pixel layout");
    return false;
  }
  // A corrupt header must not ask for absurd memory (libpng alone allows 10^6 x 10^6).
  if (double(rowbytes) * double(h.height) > double(1u << 30)) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::snprintf(s.message, sizeof s.message, "image of %ux%u is too large", h.width, h.height);
    return false;
  }
  pixels.resize(rowbytes * h.height);
  rows.resize(h.height);
  for (uint32_t y = 0; y < h.height; ++y) rows[y] = pixels.data() + rowbytes * y;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

// ---- resize -----------------------------------------------------------------------------

// The area weights of one axis: output o reads inputs first[o] .. first[o] + count[o] - 1
// with weights w[start[o] ..] (Note [Area resize]).
struct AxisWeights {
  std::vector<int64_t> first, count, start;
  std::vector<double> w;
};

AxisWeights area_weights(int64_t n_in, int64_t n_out) {
  AxisWeights a;
  a.first.resize(n_out);
  a.count.resize(n_out);
  a.start.resize(n_out);
  const double s = static_cast<double>(n_in) / static_cast<double>(n_out);
  for (int64_t o = 0; o < n_out; ++o) {
    // Exact rationals o * n_in / n_out; the divisions round once.
    const double lo = static_cast<double>(o * n_in) / static_cast<double>(n_out);
    const double hi = static_cast<double>((o + 1) * n_in) / static_cast<double>(n_out);
    const int64_t i0 = static_cast<int64_t>(std::floor(lo));
    const int64_t i1 = std::min<int64_t>(n_in, static_cast<int64_t>(std::ceil(hi)));
    a.first[o] = i0;
    a.start[o] = static_cast<int64_t>(a.w.size());
    for (int64_t i = i0; i < i1; ++i) {
      const double overlap =
          std::min(hi, static_cast<double>(i + 1)) - std::max(lo, static_cast<double>(i));
      a.w.push_back(std::max(overlap, 0.0) / s);
    }
    a.count[o] = i1 - i0;
  }
  return a;
}

// What one resize needs besides the pixels: both axes' weights and a [oh, w] buffer. The
// loaders resize thousands of images of one size, so each thread keeps one and rebuilds
// the weights only when the sizes change.
template <typename Acc>
struct AreaResizer {
  int64_t h = -1, w = -1, oh = -1, ow = -1;
  AxisWeights wy, wx;
  std::vector<Acc> tmp;
  void prepare(int64_t h_, int64_t w_, int64_t oh_, int64_t ow_) {
    if (h_ != h || oh_ != oh) wy = area_weights(h_, oh_);
    if (w_ != w || ow_ != ow) wx = area_weights(w_, ow_);
    h = h_, w = w_, oh = oh_, ow = ow_;
    tmp.resize(static_cast<size_t>(oh * w));
  }
};

// Separable resize of `planes` planes of h x w (T in, Acc accumulation, U out): rows first
// (out row oy = weighted sum of input rows, a loop over contiguous x that vectorises), then
// columns on the oh rows left.
template <typename T, typename U, typename Acc>
void resize_planes(AreaResizer<Acc>& r, const T* src, int64_t planes, int64_t h, int64_t w, U* dst,
                   int64_t oh, int64_t ow) {
  r.prepare(h, w, oh, ow);
  const AxisWeights &wx = r.wx, &wy = r.wy;
  Acc* tmp = r.tmp.data();
  for (int64_t p = 0; p < planes; ++p) {
    const T* in = src + p * h * w;
    for (int64_t oy = 0; oy < oh; ++oy) {
      Acc* row = tmp + oy * w;
      for (int64_t x = 0; x < w; ++x) row[x] = Acc(0);
      for (int64_t t = 0; t < wy.count[oy]; ++t) {
        const Acc wt = static_cast<Acc>(wy.w[static_cast<size_t>(wy.start[oy] + t)]);
        const T* src_row = in + (wy.first[oy] + t) * w;
        for (int64_t x = 0; x < w; ++x) row[x] += wt * static_cast<Acc>(src_row[x]);
      }
    }
    U* out = dst + p * oh * ow;
    for (int64_t oy = 0; oy < oh; ++oy) {
      const Acc* row = tmp + oy * w;
      for (int64_t ox = 0; ox < ow; ++ox) {
        const double* wt = wx.w.data() + wx.start[ox];
        const Acc* px = row + wx.first[ox];
        Acc acc = 0;
        for (int64_t t = 0; t < wx.count[ox]; ++t) acc += static_cast<Acc>(wt[t]) * px[t];
        out[oy * ow + ox] = static_cast<U>(acc);
      }
    }
  }
}

// Quarter turns counter-clockwise of `planes` n x n planes of `elem` bytes each.
void rot90_bytes(const uint8_t* src, int64_t planes, int64_t n, uint8_t* dst, int64_t k,
                 size_t elem) {
  k = ((k % 4) + 4) % 4;
  for (int64_t p = 0; p < planes; ++p) {
    const uint8_t* in = src + p * n * n * elem;
    uint8_t* out = dst + p * n * n * elem;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        int64_t si = i, sj = j;  // out[i][j] = in[si][sj]
        if (k == 1) si = j, sj = n - 1 - i;
        if (k == 2) si = n - 1 - i, sj = n - 1 - j;
        if (k == 3) si = n - 1 - j, sj = i;
        std::memcpy(out + (i * n + j) * elem, in + (si * n + sj) * elem, elem);
      }
    }
  }
}

}  // namespace

Image8 decode_png(const uint8_t* data, size_t size, const std::string& name, int64_t channels,
                  const char* who) {
  MG_CHECK(channels == 0 || channels == 1 || channels == 3, who,
           "channels must be 0 (as stored), 1 or 3, got ", channels);
  if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
    const bool jpeg = size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
    detail::fail(who, "cannot decode PNG ", name, ": ",
                 jpeg ? "this is a JPEG file; only PNG is supported (convert the images first)"
                      : "not a PNG file (bad signature)");
  }
  PngReadState s{data, size, 0, {0}};
  PngHeader h;
  std::vector<uint8_t> raw;
  std::vector<png_bytep> rows;
  if (!png_decode_raw(s, h, raw, rows))
    detail::fail(who, "cannot decode PNG ", name, ": ", s.message);

  Image8 img;
  const bool color_in = h.channels >= 3;
  img.channels = channels != 0 ? channels : (color_in ? 3 : 1);
  img.height = h.height;
  img.width = h.width;
  const size_t npix = size_t(h.width) * size_t(h.height);
  img.pixels.resize(npix * size_t(img.channels));
  const int cin = h.channels;
  uint8_t* out = img.pixels.data();
  for (size_t i = 0; i < npix; ++i) {
    const uint8_t* px = raw.data() + i * size_t(cin);  // alpha, if any, is ignored
    if (img.channels == 1) {
      out[i] =
          color_in
              ? static_cast<uint8_t>((299u * px[0] + 587u * px[1] + 114u * px[2] + 500u) / 1000u)
              : px[0];
    } else {
      for (int c = 0; c < 3; ++c) out[i * 3 + size_t(c)] = color_in ? px[c] : px[0];
    }
  }
  return img;
}

Image8 read_png(const std::string& path, int64_t channels, const char* who) {
  // stdio into a per-thread buffer: the loaders read tens of thousands of small files.
  std::FILE* f = std::fopen(path.c_str(), "rb");
  MG_CHECK(f != nullptr, who, "cannot open file ", path);
  thread_local std::vector<uint8_t> bytes;
  bytes.clear();
  uint8_t chunk[16384];
  size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0)
    bytes.insert(bytes.end(), chunk, chunk + n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  MG_CHECK(!failed, who, "cannot read file ", path);
  return decode_png(bytes.data(), bytes.size(), path, channels, who);
}

Tensor to_tensor(const Image8& img, bool invert) {
  Tensor t = Tensor::empty({img.channels, img.height, img.width});
  float* out = t.data_ptr<float>();
  const int64_t plane = img.height * img.width;
  for (int64_t c = 0; c < img.channels; ++c)
    for (int64_t i = 0; i < plane; ++i) {
      const uint8_t p = img.pixels[static_cast<size_t>(i * img.channels + c)];
      out[c * plane + i] = static_cast<float>(invert ? 255 - p : p) / 255.f;
    }
  return t;
}

Tensor load_png(const std::string& path, int64_t channels, bool invert) {
  return to_tensor(read_png(path, channels, "load_png"), invert);
}

void resize_area(const float* src, int64_t channels, int64_t height, int64_t width, float* dst,
                 int64_t out_height, int64_t out_width) {
  MG_CHECK(channels >= 0 && height > 0 && width > 0 && out_height > 0 && out_width > 0,
           "resize_area", "sizes must be positive, got [", channels, ", ", height, ", ", width,
           "] -> [", out_height, ", ", out_width, "]");
  // Accumulated in double, as the tensor form (so both give the same floats): a float sum
  // of weights that add up to 1 can land a hair above 1 on solid ink.
  thread_local AreaResizer<double> resizer;
  resize_planes(resizer, src, channels, height, width, dst, out_height, out_width);
}

Tensor resize_area(const Tensor& x, int64_t out_height, int64_t out_width) {
  MG_CHECK(x.defined(), "resize_area", "called on an undefined tensor");
  MG_CHECK(x.dim() >= 2, "resize_area", "expects [..., H, W], got shape ", shape_str(x.shape()));
  MG_CHECK(x.is_floating_point(), "resize_area", "expects a floating tensor, got ",
           dtype_name(x.dtype()));
  const int64_t h = x.size(-2), w = x.size(-1);
  MG_CHECK(h > 0 && w > 0 && out_height > 0 && out_width > 0, "resize_area",
           "sizes must be positive: ", shape_str(x.shape()), " -> [", out_height, ", ", out_width,
           "]");
  NoGradGuard no_grad;
  // A host loop: a GPU tensor is resized on the CPU and returned to its device.
  const Tensor in = x.to(Device::cpu()).to(DType::Float64).contiguous();
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 2] = out_height;
  out_shape[out_shape.size() - 1] = out_width;
  Tensor out = Tensor::empty(out_shape, TensorOptions(DType::Float64));
  AreaResizer<double> resizer;
  resize_planes(resizer, in.data_ptr<double>(), in.numel() / (h * w), h, w, out.data_ptr<double>(),
                out_height, out_width);
  return out.to(x.dtype()).to(x.device());
}

void rot90(const float* src, int64_t channels, int64_t size, float* dst, int64_t k) {
  rot90_bytes(reinterpret_cast<const uint8_t*>(src), channels, size,
              reinterpret_cast<uint8_t*>(dst), k, sizeof(float));
}

Tensor rot90(const Tensor& x, int64_t k) {
  MG_CHECK(x.defined(), "rot90", "called on an undefined tensor");
  MG_CHECK(x.dim() >= 2, "rot90", "expects [..., H, W], got shape ", shape_str(x.shape()));
  const int64_t h = x.size(-2), w = x.size(-1);
  MG_CHECK(h == w, "rot90", "expects square images, got shape ", shape_str(x.shape()));
  NoGradGuard no_grad;
  // A host loop: a GPU tensor is turned on the CPU and returned to its device.
  const Tensor in = x.to(Device::cpu()).contiguous();
  Tensor out = Tensor::empty(x.shape(), TensorOptions(x.dtype()));
  if (x.numel() > 0)
    rot90_bytes(static_cast<const uint8_t*>(in.raw_data()), x.numel() / (h * w), h,
                static_cast<uint8_t*>(out.raw_data()), k, dtype_size(x.dtype()));
  return out.to(x.device());
}

}  // namespace metagrad::meta
