// Tests of meta/'s data side: sinusoid tasks (ranges, statistics, determinism), the area
// resize against independent supersampling and hand-derived weights, exact rotations, the
// image readers on PNGs written here with libpng (ImageFolder, miniImageNet, CIFAR-FS, a
// fake Omniglot tree), corrupt and missing files, episode sampling on a synthetic dataset
// whose pixels encode (class, image), and the real Omniglot (skipped when the data is absent:
// set METAGRAD_OMNIGLOT or place it at <source>/../shared/data/omniglot).
#include <gtest/gtest.h>
#include <metagrad/metagrad.h>
#include <png.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numbers>
#include <set>
#include <string>
#include <vector>

#include "meta/data.h"
#include "test_util.h"

using namespace metagrad;
using namespace metagrad::meta;
namespace fs = std::filesystem;

#if defined(__SANITIZE_ADDRESS__)
#define MG_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MG_TEST_ASAN 1
#endif
#endif

namespace {

// ---- helpers: temporary folders, PNG writing and independent decoding ------------------------

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("mg_meta_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// Writes a PNG with libpng's classic API: `rows` are packed as PNG stores them (row-major,
// interleaved channels, 16-bit samples big-endian, sub-byte depths packed MSB first).
bool png_write_c(const char* path, int w, int h, int color_type, int bit_depth, const uint8_t* rows,
                 size_t rowbytes) {
  FILE* fp = std::fopen(path, "wb");
  if (!fp) return false;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(fp);
    return false;
  }
  png_init_io(png, fp);
  png_set_IHDR(png, info, static_cast<png_uint_32>(w), static_cast<png_uint_32>(h), bit_depth,
               color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < h; ++y) png_write_row(png, rows + static_cast<size_t>(y) * rowbytes);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(fp);
  return true;
}

int png_channels(int color_type) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
      return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      return 2;
    case PNG_COLOR_TYPE_RGB:
      return 3;
    default:
      return 4;
  }
}

// An 8-bit PNG from interleaved samples.
void write_png8(const fs::path& path, int w, int h, int color_type,
                const std::vector<uint8_t>& px) {
  fs::create_directories(path.parent_path());
  const size_t rowbytes = static_cast<size_t>(w * png_channels(color_type));
  ASSERT_EQ(px.size(), rowbytes * static_cast<size_t>(h));
  ASSERT_TRUE(png_write_c(path.c_str(), w, h, color_type, 8, px.data(), rowbytes)) << path;
}

// A 1-bit grayscale PNG (as Omniglot's) from 0/1 bits per pixel.
void write_png1(const fs::path& path, int w, int h, const std::vector<int>& bits) {
  fs::create_directories(path.parent_path());
  const size_t rowbytes = static_cast<size_t>((w + 7) / 8);
  std::vector<uint8_t> packed(rowbytes * static_cast<size_t>(h), 0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (bits[static_cast<size_t>(y * w + x)])
        packed[static_cast<size_t>(y) * rowbytes + static_cast<size_t>(x / 8)] |=
            static_cast<uint8_t>(0x80 >> (x % 8));
  ASSERT_TRUE(png_write_c(path.c_str(), w, h, PNG_COLOR_TYPE_GRAY, 1, packed.data(), rowbytes));
}

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream f(path);
  f << text;
}

// Decodes a grayscale PNG of any bit depth to 8-bit samples, with libpng's classic API and
// its own transforms (independent of meta/image.cpp's).
bool decode_gray_c(const char* path, std::vector<uint8_t>& out, png_uint_32& w, png_uint_32& h) {
  FILE* fp = std::fopen(path, "rb");
  if (!fp) return false;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(fp);
    return false;
  }
  png_init_io(png, fp);
  png_read_info(png, info);
  if (png_get_color_type(png, info) != PNG_COLOR_TYPE_GRAY) png_error(png, "not gray");
  png_set_expand_gray_1_2_4_to_8(png);
  png_set_strip_16(png);
  png_read_update_info(png, info);
  w = png_get_image_width(png, info);
  h = png_get_image_height(png, info);
  out.resize(static_cast<size_t>(w) * h);
  for (png_uint_32 y = 0; y < h; ++y)
    png_read_row(png, out.data() + static_cast<size_t>(y) * w, nullptr);
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(fp);
  return true;
}

std::vector<float> values(const Tensor& t) {
  return t.contiguous().to_vector<float>();
}

// Where the real Omniglot is, or "" (the test then skips).
std::string omniglot_root() {
  std::string root;
  if (const char* env = std::getenv("METAGRAD_OMNIGLOT"); env && *env) root = env;
#ifdef MG_OMNIGLOT_DIR
  else
    root = MG_OMNIGLOT_DIR;
#endif
  if (root.empty() || !fs::is_directory(fs::path(root) / "images_background")) return "";
  return root;
}

#define SKIP_WITHOUT_OMNIGLOT(root)                                        \
  const std::string root = omniglot_root();                                \
  if (root.empty())                                                        \
  GTEST_SKIP() << "Omniglot not found (set METAGRAD_OMNIGLOT or place it " \
                  "at <source>/../shared/data/omniglot)"

// ---- sinusoid ---------------------------------------------------------------------------------

struct Moments {
  double mean = 0, var = 0, min = 0, max = 0;
};
Moments moments(const std::vector<double>& v) {
  Moments m;
  m.min = *std::min_element(v.begin(), v.end());
  m.max = *std::max_element(v.begin(), v.end());
  for (double x : v) m.mean += x;
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.var += (x - m.mean) * (x - m.mean);
  m.var /= static_cast<double>(v.size() - 1);
  return m;
}

}  // namespace

TEST(Sinusoid, TaskParametersRangesAndStatistics) {
  SinusoidTasks tasks;
  Generator gen(123);
  std::vector<double> amp, phase;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const SinusoidTask t = tasks.sample_task(gen);
    amp.push_back(t.amplitude);
    phase.push_back(t.phase);
  }
  const Moments a = moments(amp), p = moments(phase);
  EXPECT_GE(a.min, 0.1);
  EXPECT_LE(a.max, 5.0);
  EXPECT_GE(p.min, 0.0);
  EXPECT_LE(p.max, std::numbers::pi);
  // U[lo, hi]: mean (lo + hi) / 2, variance (hi - lo)^2 / 12; 5 standard errors of slack.
  const double sa = 4.9 / std::sqrt(12.0), sp = std::numbers::pi / std::sqrt(12.0);
  EXPECT_NEAR(a.mean, 2.55, 5 * sa / std::sqrt(n));
  EXPECT_NEAR(p.mean, std::numbers::pi / 2, 5 * sp / std::sqrt(n));
  EXPECT_NEAR(a.var, sa * sa, 0.1 * sa * sa);
  EXPECT_NEAR(p.var, sp * sp, 0.1 * sp * sp);
  // The whole range is used.
  EXPECT_LT(a.min, 0.2);
  EXPECT_GT(a.max, 4.9);
}

TEST(Sinusoid, PointsFollowTheTask) {
  SinusoidTasks tasks;
  Generator gen(7);
  for (DType dt : {DType::Float32, DType::Float64}) {
    const SinusoidTask t = tasks.sample_task(gen);
    auto [x, y] = t.sample(3000, gen, dt);
    ASSERT_EQ(x.shape(), (Shape{3000, 1}));
    ASSERT_EQ(y.shape(), (Shape{3000, 1}));
    EXPECT_EQ(x.dtype(), dt);
    EXPECT_EQ(y.dtype(), dt);
    const std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>();
    const double tol = dt == DType::Float32 ? 1e-5 * t.amplitude : 1e-12;
    for (size_t i = 0; i < xv.size(); ++i) {
      ASSERT_GE(xv[i], -5.0);
      ASSERT_LT(xv[i], 5.0);
      ASSERT_NEAR(yv[i], t.amplitude * std::sin(xv[i] - t.phase), tol);
    }
    const Moments m = moments(xv);
    EXPECT_NEAR(m.mean, 0.0, 5 * 10 / std::sqrt(12.0) / std::sqrt(3000.0));
    EXPECT_NEAR(m.var, 100.0 / 12, 0.1 * 100.0 / 12);
    // operator() agrees with the sampled y.
    const std::vector<double> y2 = t(x).to_vector<double>();
    for (size_t i = 0; i < xv.size(); ++i) ASSERT_EQ(y2[i], yv[i]);
  }
}

TEST(Sinusoid, DeterministicPerSeedAndResumable) {
  SinusoidTasks tasks;
  Generator g1(42), g2(42), g3(43);
  const SinusoidBatch a = tasks.sample_batch(4, 5, 10, g1);
  const SinusoidBatch b = tasks.sample_batch(4, 5, 10, g2);
  const SinusoidBatch c = tasks.sample_batch(4, 5, 10, g3);
  EXPECT_EQ(values(a.support_x), values(b.support_x));
  EXPECT_EQ(values(a.query_y), values(b.query_y));
  EXPECT_EQ(a.amplitude.to_vector<double>(), b.amplitude.to_vector<double>());
  EXPECT_NE(values(a.support_x), values(c.support_x));
  EXPECT_NE(a.amplitude.to_vector<double>(), c.amplitude.to_vector<double>());
  // Saving the generator's state and restoring it replays the next batch.
  const GeneratorState s = g1.get_state();
  const SinusoidBatch d = tasks.sample_batch(2, 3, 3, g1);
  g2.set_state(s);
  const SinusoidBatch e = tasks.sample_batch(2, 3, 3, g2);
  EXPECT_EQ(values(d.query_x), values(e.query_x));
  EXPECT_EQ(d.phase.to_vector<double>(), e.phase.to_vector<double>());
}

TEST(Sinusoid, BatchShapesAndConsistency) {
  SinusoidTasks tasks;
  Generator gen(3);
  for (DType dt : {DType::Float32, DType::Float64}) {
    const SinusoidBatch b = tasks.sample_batch(6, 5, 7, gen, dt);
    EXPECT_EQ(b.support_x.shape(), (Shape{6, 5, 1}));
    EXPECT_EQ(b.support_y.shape(), (Shape{6, 5, 1}));
    EXPECT_EQ(b.query_x.shape(), (Shape{6, 7, 1}));
    EXPECT_EQ(b.query_y.shape(), (Shape{6, 7, 1}));
    EXPECT_EQ(b.support_x.dtype(), dt);
    const std::vector<double> amp = b.amplitude.to_vector<double>(),
                              ph = b.phase.to_vector<double>();
    const std::vector<double> sx = b.support_x.to_vector<double>(),
                              sy = b.support_y.to_vector<double>();
    const std::vector<double> qx = b.query_x.to_vector<double>(),
                              qy = b.query_y.to_vector<double>();
    const double tol = dt == DType::Float32 ? 1e-5 * 5 : 1e-12;
    for (int t = 0; t < 6; ++t) {
      EXPECT_GE(amp[t], 0.1);
      EXPECT_LE(amp[t], 5.0);
      for (int i = 0; i < 5; ++i)
        EXPECT_NEAR(sy[t * 5 + i], amp[t] * std::sin(sx[t * 5 + i] - ph[t]), tol);
      for (int i = 0; i < 7; ++i)
        EXPECT_NEAR(qy[t * 7 + i], amp[t] * std::sin(qx[t * 7 + i] - ph[t]), tol);
    }
  }
  const SinusoidBatch empty = tasks.sample_batch(0, 5, 5, gen);
  EXPECT_EQ(empty.support_x.shape(), (Shape{0, 5, 1}));
}

TEST(Sinusoid, Errors) {
  SinusoidTasks tasks;
  Generator gen;
  EXPECT_MG_ERROR(tasks.sample_batch(2, 3, 3, gen, DType::Int64), "[sinusoid]");
  EXPECT_MG_ERROR(tasks.sample_batch(-1, 3, 3, gen), "[sinusoid]");
  EXPECT_MG_ERROR(tasks.sample_task(gen).sample(-2, gen), "[sinusoid]");
  EXPECT_MG_ERROR(SinusoidTasks({.amplitude_min = 2, .amplitude_max = 1}), "[sinusoid]");
}

// ---- area resize --------------------------------------------------------------------------------

namespace {

// Independent area resize: replicate every input pixel into an out_h x out_w block (nearest
// upsampling to in*out per axis), after which each output pixel covers exactly in_h x in_w
// whole sub-pixels, so it is their plain mean. No fractional weight is computed.
std::vector<double> resize_by_supersampling(const std::vector<double>& in, int64_t h, int64_t w,
                                            int64_t oh, int64_t ow) {
  std::vector<double> out(static_cast<size_t>(oh * ow), 0.0);
  for (int64_t oy = 0; oy < oh; ++oy)
    for (int64_t ox = 0; ox < ow; ++ox) {
      double sum = 0;
      for (int64_t sy = oy * h; sy < (oy + 1) * h; ++sy)    // sub-pixel rows, in [0, h*oh)
        for (int64_t sx = ox * w; sx < (ox + 1) * w; ++sx)  // sub-pixel cols, in [0, w*ow)
          sum += in[static_cast<size_t>((sy / oh) * w + sx / ow)];
      out[static_cast<size_t>(oy * ow + ox)] = sum / static_cast<double>(h * w);
    }
  return out;
}

std::vector<double> random_image(int64_t n, uint64_t seed) {
  Generator g(seed);
  return rand({n}, TensorOptions(DType::Float64), &g).to_vector<double>();
}

}  // namespace

TEST(AreaResize, SixBySixToThreeIsTwoByTwoBlockMeans) {
  std::vector<double> in = random_image(36, 1);
  Tensor x = tensor(in, Shape{1, 6, 6});
  const std::vector<double> out = resize_area(x, 3, 3).to_vector<double>();
  for (int oy = 0; oy < 3; ++oy)
    for (int ox = 0; ox < 3; ++ox) {
      const double mean = (in[(2 * oy) * 6 + 2 * ox] + in[(2 * oy) * 6 + 2 * ox + 1] +
                           in[(2 * oy + 1) * 6 + 2 * ox] + in[(2 * oy + 1) * 6 + 2 * ox + 1]) /
                          4;
      EXPECT_NEAR(out[oy * 3 + ox], mean, 1e-14);
    }
}

TEST(AreaResize, FiveByFiveToTwoHasFractionalWeights) {
  // Scale 2.5: output 0 covers [0, 2.5) = pixels 0, 1 wholly and half of pixel 2, so its
  // weights along an axis are (1, 1, 0.5) / 2.5 = (0.4, 0.4, 0.2); output 1 covers [2.5, 5):
  // (0.2, 0.4, 0.4) on pixels 2, 3, 4. In 2-d the weight is the product.
  const double w[2][5] = {{0.4, 0.4, 0.2, 0, 0}, {0, 0, 0.2, 0.4, 0.4}};
  std::vector<double> in = random_image(25, 2);
  const std::vector<double> out = resize_area(tensor(in, Shape{5, 5}), 2, 2).to_vector<double>();
  for (int oy = 0; oy < 2; ++oy)
    for (int ox = 0; ox < 2; ++ox) {
      double want = 0;
      for (int y = 0; y < 5; ++y)
        for (int x = 0; x < 5; ++x) want += w[oy][y] * w[ox][x] * in[y * 5 + x];
      EXPECT_NEAR(out[oy * 2 + ox], want, 1e-14);
    }
  // A constant image stays constant (weights sum to 1).
  const std::vector<double> c =
      resize_area(full({5, 5}, 0.7, DType::Float64), 2, 2).to_vector<double>();
  for (double v : c) EXPECT_NEAR(v, 0.7, 1e-15);
}

TEST(AreaResize, MatchesSupersamplingOnManySizes) {
  // Shrinking, enlarging, mixed, and Omniglot's 105 -> 28.
  const int64_t cases[][4] = {
      {7, 5, 3, 4}, {4, 4, 3, 3}, {3, 5, 7, 2}, {9, 9, 4, 4}, {105, 105, 28, 28}};
  for (const auto& c : cases) {
    const int64_t h = c[0], w = c[1], oh = c[2], ow = c[3];
    const std::vector<double> in = random_image(h * w, static_cast<uint64_t>(h * 100 + w));
    const std::vector<double> want = resize_by_supersampling(in, h, w, oh, ow);
    const std::vector<double> got =
        resize_area(tensor(in, Shape{h, w}), oh, ow).to_vector<double>();
    ASSERT_EQ(got.size(), want.size());
    // The reference sums up to 105 * 105 terms per pixel: its own rounding is ~1e-13.
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << h << "x" << w;
    // The raw float32 form the loaders use, on 2 channels.
    std::vector<float> in2(static_cast<size_t>(2 * h * w)), out2(static_cast<size_t>(2 * oh * ow));
    for (size_t i = 0; i < in.size(); ++i) {
      in2[i] = static_cast<float>(in[i]);
      in2[i + in.size()] = static_cast<float>(1 - in[i]);
    }
    resize_area(in2.data(), 2, h, w, out2.data(), oh, ow);
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(out2[i], want[i], 1e-6);
      EXPECT_NEAR(out2[i + want.size()], 1 - want[i], 1e-6);
    }
  }
}

TEST(AreaResize, PreservesTheMeanAndHandlesStridesAndBatches) {
  std::vector<double> in = random_image(3 * 105 * 105, 9);
  Tensor x = tensor(in, Shape{3, 105, 105});
  Tensor y = resize_area(x, 28, 28);
  ASSERT_EQ(y.shape(), (Shape{3, 28, 28}));
  EXPECT_NEAR(sum(y).item<double>() / (28.0 * 28.0), sum(x).item<double>() / (105.0 * 105.0),
              1e-10);
  // A transposed input equals the transposed resize of the contiguous one.
  Tensor xt = x.transpose(1, 2);
  EXPECT_EQ(resize_area(xt, 28, 28).to_vector<double>(),
            resize_area(xt.contiguous(), 28, 28).to_vector<double>());
  // float32 in, float32 out.
  EXPECT_EQ(resize_area(x.to(DType::Float32), 4, 4).dtype(), DType::Float32);
}

TEST(AreaResize, Errors) {
  EXPECT_MG_ERROR(resize_area(zeros({4}), 2, 2), "[resize_area]");
  EXPECT_MG_ERROR(resize_area(zeros({4, 4}), 0, 2), "[resize_area]");
  EXPECT_MG_ERROR(resize_area(zeros({4, 4}, DType::Int64), 2, 2), "[resize_area]");
  EXPECT_MG_ERROR(resize_area(Tensor(), 2, 2), "[resize_area]");
}

// ---- rotations ----------------------------------------------------------------------------------

TEST(Rot90, ExactQuarterTurns) {
  const int64_t n = 5;
  Tensor x = arange(0, 2 * n * n).reshape({2, n, n}).to(DType::Float32);
  const std::vector<float> v = values(x);
  // k = 1 is np.rot90: the transpose with its rows in reverse order.
  const std::vector<float> r1 = values(rot90(x, 1));
  const std::vector<float> t = values(x.transpose(1, 2));
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        EXPECT_EQ(r1[(c * n + i) * n + j], t[(c * n + (n - 1 - i)) * n + j]);
  // k = 2 reverses each plane's row-major order.
  const std::vector<float> r2 = values(rot90(x, 2));
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t p = 0; p < n * n; ++p)
      EXPECT_EQ(r2[c * n * n + p], v[c * n * n + (n * n - 1 - p)]);
  // Compositions: k = 4 and k = 0 are the identity, k = 3 = -1 undoes k = 1.
  EXPECT_EQ(values(rot90(x, 4)), v);
  EXPECT_EQ(values(rot90(x, 0)), v);
  EXPECT_EQ(values(rot90(rot90(x, 1), -1)), v);
  EXPECT_EQ(values(rot90(x, 3)), values(rot90(x, -1)));
  EXPECT_EQ(values(rot90(rot90(x, 1), 1)), r2);
  // The raw form agrees.
  std::vector<float> out(v.size());
  meta::rot90(v.data(), 2, n, out.data(), 1);
  EXPECT_EQ(out, r1);
  // Other dtypes are moved bit for bit; non-square is refused.
  EXPECT_EQ(rot90(x.to(DType::Int64), 1).to_vector<int64_t>(), rot90(x, 1).to_vector<int64_t>());
  EXPECT_MG_ERROR(rot90(zeros({2, 3}), 1), "[rot90]");
}

// ---- ImageDataset and rotation classes
// ---------------------------------------------------------------

TEST(ImageDataset, FromTensorsWithRotationClasses) {
  Tensor imgs = rand({5, 1, 4, 4});
  ImageDataset ds(imgs, {2, 3}, {"a", "b"}, /*rotations=*/true);
  EXPECT_EQ(ds.num_classes(), 8);
  EXPECT_EQ(ds.num_base_classes(), 2);
  EXPECT_EQ(ds.num_images(0), 2);
  EXPECT_EQ(ds.num_images(7), 3);
  EXPECT_EQ(ds.total_images(), 20);
  EXPECT_EQ(ds.image_shape(), (Shape{1, 4, 4}));
  EXPECT_EQ(ds.class_name(0), "a/rot000");
  EXPECT_EQ(ds.class_name(5), "b/rot090");
  EXPECT_EQ(ds.class_name(7), "b/rot270");
  for (int64_t c = 0; c < 8; ++c)
    for (int64_t i = 0; i < ds.num_images(c); ++i) {
      const Tensor base = imgs.select(0, (c / 4 == 0 ? 0 : 2) + i);
      EXPECT_EQ(values(ds.image(c, i)), values(rot90(base, c % 4))) << c << " " << i;
    }
  EXPECT_EQ(ds.class_images(6).shape(), (Shape{3, 1, 4, 4}));
  EXPECT_EQ(values(ds.class_images(6).select(0, 1)), values(ds.image(6, 1)));
  // The dataset holds a copy: changing the caller's tensor does not change it.
  const std::vector<float> before = values(ds.image(0, 0));
  imgs.fill_(0.5);
  EXPECT_EQ(values(ds.image(0, 0)), before);
  // Errors.
  EXPECT_MG_ERROR(ds.image(8, 0), "[image_dataset]");
  EXPECT_MG_ERROR(ds.image(0, 2), "[image_dataset]");
  EXPECT_MG_ERROR(ImageDataset(rand({5, 1, 4, 4}), {2, 2}), "[image_dataset]");
  EXPECT_MG_ERROR(ImageDataset(rand({5, 1, 4, 3}), {5}, {}, true), "[image_dataset]");
  EXPECT_MG_ERROR(ImageDataset(rand({5, 4, 3}), {5}), "[image_dataset]");
  EXPECT_MG_ERROR(ImageDataset(rand({2, 1, 4, 4}), {2, 0}), "[image_dataset]");
}

// ---- PNG readers on generated files
// ------------------------------------------------------------------

TEST(Png, DecodesDepthsAndColorTypes) {
  TempDir dir;
  // 8-bit gray, with a known pattern.
  std::vector<uint8_t> g(12);
  for (size_t i = 0; i < g.size(); ++i) g[i] = static_cast<uint8_t>(i * 20);
  write_png8(dir.path() / "g.png", 4, 3, PNG_COLOR_TYPE_GRAY, g);
  Image8 im = read_png((dir.path() / "g.png").string());
  EXPECT_EQ(im.channels, 1);
  EXPECT_EQ(im.height, 3);
  EXPECT_EQ(im.width, 4);
  EXPECT_EQ(im.pixels, g);
  const std::vector<float> t = values(load_png((dir.path() / "g.png").string()));
  const std::vector<float> inv = values(load_png((dir.path() / "g.png").string(), 0, true));
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_EQ(t[i], static_cast<float>(g[i]) / 255.f);
    EXPECT_NEAR(inv[i], 1.0 - g[i] / 255.0, 1e-7);
  }
  // RGB, kept and converted to gray (ITU-R 601 luma, rounded) and gray -> RGB.
  std::vector<uint8_t> rgb(2 * 2 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(37 * i + 11);
  write_png8(dir.path() / "c.png", 2, 2, PNG_COLOR_TYPE_RGB, rgb);
  const Tensor c = load_png((dir.path() / "c.png").string());
  ASSERT_EQ(c.shape(), (Shape{3, 2, 2}));
  const std::vector<float> cv = values(c);
  for (int p = 0; p < 4; ++p)
    for (int ch = 0; ch < 3; ++ch) EXPECT_EQ(cv[ch * 4 + p], rgb[p * 3 + ch] / 255.f);
  const Image8 cg = read_png((dir.path() / "c.png").string(), 1);
  for (int p = 0; p < 4; ++p) {
    const double l = 0.299 * rgb[p * 3] + 0.587 * rgb[p * 3 + 1] + 0.114 * rgb[p * 3 + 2];
    EXPECT_NEAR(cg.pixels[p], l, 0.5 + 1e-9);
  }
  const Image8 g3 = read_png((dir.path() / "g.png").string(), 3);
  for (size_t i = 0; i < g.size(); ++i)
    for (size_t ch = 0; ch < 3; ++ch) EXPECT_EQ(g3.pixels[i * 3 + ch], g[i]);
  // RGBA: alpha dropped.
  std::vector<uint8_t> rgba = {10, 20, 30, 0, 40, 50, 60, 255};
  write_png8(dir.path() / "a.png", 2, 1, PNG_COLOR_TYPE_RGB_ALPHA, rgba);
  EXPECT_EQ(read_png((dir.path() / "a.png").string()).pixels,
            (std::vector<uint8_t>{10, 20, 30, 40, 50, 60}));
  // 1-bit gray (Omniglot's format): 0 -> 0, 1 -> 255.
  std::vector<int> bits(10 * 3);
  for (size_t i = 0; i < bits.size(); ++i) bits[i] = (i * 7) % 3 == 0;
  write_png1(dir.path() / "b.png", 10, 3, bits);
  const Image8 b = read_png((dir.path() / "b.png").string());
  for (size_t i = 0; i < bits.size(); ++i) EXPECT_EQ(b.pixels[i], bits[i] ? 255 : 0);
  // 16-bit gray: scaled to 8 bits with rounding (v * 255 / 65535).
  std::vector<uint8_t> s16 = {0x00, 0x00, 0xFF, 0xFF, 0x80, 0x00, 0x12, 0x34};
  ASSERT_TRUE(
      png_write_c((dir.path() / "s.png").c_str(), 4, 1, PNG_COLOR_TYPE_GRAY, 16, s16.data(), 8));
  const Image8 s = read_png((dir.path() / "s.png").string());
  const int v16[4] = {0, 65535, 0x8000, 0x1234};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(s.pixels[i], v16[i] * 255.0 / 65535.0, 0.5 + 1e-9);
}

TEST(Png, CorruptAndMissingFilesNameTheFile) {
  TempDir dir;
  std::vector<uint8_t> g(64, 100);
  write_png8(dir.path() / "ok.png", 8, 8, PNG_COLOR_TYPE_GRAY, g);
  const std::vector<uint8_t> good = read_bytes(dir.path() / "ok.png");
  // Truncated, corrupted after the signature, not a PNG at all, a JPEG, missing.
  write_bytes(dir.path() / "trunc.png",
              std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2));
  std::vector<uint8_t> bad = good;
  for (size_t i = 16; i < bad.size(); ++i) bad[i] ^= 0x5A;
  write_bytes(dir.path() / "bad.png", bad);
  write_bytes(dir.path() / "text.png", {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
  write_bytes(dir.path() / "photo.jpg", {0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F', 0});
  for (const char* name : {"trunc.png", "bad.png", "text.png", "photo.jpg"}) {
    const std::string path = (dir.path() / name).string();
    EXPECT_MG_ERROR(read_png(path, 0, "omniglot"), "[omniglot] cannot decode PNG " + path + ": ");
  }
  try {
    read_png((dir.path() / "photo.jpg").string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("JPEG"), std::string::npos) << e.what();
  }
  // A valid header (correct CRC) that claims 60000 x 60000 RGB: refused before allocating.
  std::vector<uint8_t> huge = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13};
  const std::vector<uint8_t> ihdr = {'I', 'H',  'D',  'R', 0, 0, 0xEA, 0x60, 0,
                                     0,   0xEA, 0x60, 8,   2, 0, 0,    0};
  huge.insert(huge.end(), ihdr.begin(), ihdr.end());
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), ihdr.data(), static_cast<uInt>(ihdr.size()));
  for (int b = 3; b >= 0; --b) huge.push_back(static_cast<uint8_t>(crc >> (8 * b)));
  // Then the start of an (empty) IDAT chunk: libpng's header reading stops there.
  huge.insert(huge.end(), {0, 0, 0, 0, 'I', 'D', 'A', 'T'});
  write_bytes(dir.path() / "huge.png", huge);
  try {
    read_png((dir.path() / "huge.png").string());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
  const std::string missing = (dir.path() / "none.png").string();
  EXPECT_MG_ERROR(read_png(missing, 0, "omniglot"), "[omniglot] cannot open file " + missing);
}

TEST(ImageFolder, ReadsClassFoldersResizesAndConverts) {
  TempDir dir;
  // Class "b_gray": three 4x4 gray images; class "a_rgb": two 4x4 RGB; a stray text file and
  // a hidden folder are ignored.
  std::map<std::string, std::vector<std::vector<uint8_t>>> written;
  for (int i = 0; i < 3; ++i) {
    std::vector<uint8_t> px(16);
    for (int p = 0; p < 16; ++p) px[p] = static_cast<uint8_t>((p * 13 + i * 50) % 256);
    write_png8(dir.path() / "b_gray" / (std::to_string(i) + ".png"), 4, 4, PNG_COLOR_TYPE_GRAY, px);
    written["b_gray"].push_back(px);
  }
  for (int i = 0; i < 2; ++i) {
    std::vector<uint8_t> px(48);
    for (int p = 0; p < 48; ++p) px[p] = static_cast<uint8_t>((p * 29 + i * 7) % 256);
    write_png8(dir.path() / "a_rgb" / (std::to_string(i) + ".PNG"), 4, 4, PNG_COLOR_TYPE_RGB, px);
    written["a_rgb"].push_back(px);
  }
  write_text(dir.path() / "a_rgb" / "notes.txt", "not an image");
  fs::create_directories(dir.path() / ".hidden");

  // Channels as the first file (a_rgb sorts first: RGB); the gray class is repeated to RGB.
  ImageFolderDataset ds(dir.str(), 4);
  ASSERT_EQ(ds.num_classes(), 2);
  EXPECT_EQ(ds.class_name(0), "a_rgb");
  EXPECT_EQ(ds.class_name(1), "b_gray");
  EXPECT_EQ(ds.num_images(0), 2);
  EXPECT_EQ(ds.num_images(1), 3);
  EXPECT_EQ(ds.image_shape(), (Shape{3, 4, 4}));
  for (int i = 0; i < 2; ++i) {
    const std::vector<float> v = values(ds.image(0, i));
    for (int p = 0; p < 16; ++p)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(v[c * 16 + p], written["a_rgb"][i][p * 3 + c] / 255.f);
  }
  for (int i = 0; i < 3; ++i) {
    const std::vector<float> v = values(ds.image(1, i));
    for (int p = 0; p < 16; ++p)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(v[c * 16 + p], written["b_gray"][i][p] / 255.f);
  }
  // 8-bit storage is bit-identical when nothing is resized.
  ImageFolderDataset ds8(dir.str(), 4, 0, false, /*uint8_storage=*/true);
  EXPECT_EQ(ds8.storage().dtype(), DType::UInt8);
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t i = 0; i < ds.num_images(c); ++i)
      EXPECT_EQ(values(ds8.image(c, i)), values(ds.image(c, i)));
  // Gray, resized 4 -> 2 (2x2 block means), with rotation classes.
  ImageFolderDataset small(dir.str(), 2, 1, /*rotations=*/true);
  EXPECT_EQ(small.num_classes(), 8);
  EXPECT_EQ(small.image_shape(), (Shape{1, 2, 2}));
  const std::vector<uint8_t>& px = written["b_gray"][2];
  const std::vector<float> v = values(small.image(4, 2));
  for (int oy = 0; oy < 2; ++oy)
    for (int ox = 0; ox < 2; ++ox) {
      const double m = (px[(2 * oy) * 4 + 2 * ox] + px[(2 * oy) * 4 + 2 * ox + 1] +
                        px[(2 * oy + 1) * 4 + 2 * ox] + px[(2 * oy + 1) * 4 + 2 * ox + 1]) /
                       (4 * 255.0);
      EXPECT_NEAR(v[oy * 2 + ox], m, 1e-6);
    }
  EXPECT_EQ(values(small.image(6, 2)), values(rot90(small.image(4, 2), 2)));
}

TEST(ImageFolder, Errors) {
  TempDir dir;
  EXPECT_MG_ERROR(ImageFolderDataset((dir.path() / "nope").string()),
                  "[image_folder] folder missing: ");
  EXPECT_MG_ERROR(ImageFolderDataset(dir.str()), "[image_folder] no class subfolders");
  fs::create_directories(dir.path() / "empty");
  EXPECT_MG_ERROR(ImageFolderDataset(dir.str()), "[image_folder] class 'empty' has no images");
  fs::remove_all(dir.path() / "empty");
  // One corrupt file among good ones: the error names it, whatever the thread count.
  std::vector<uint8_t> px(64, 7);
  for (int i = 0; i < 40; ++i)
    write_png8(dir.path() / "k" / (std::to_string(100 + i) + ".png"), 8, 8, PNG_COLOR_TYPE_GRAY,
               px);
  const fs::path bad = dir.path() / "k" / "120.png";
  std::vector<uint8_t> bytes = read_bytes(bad);
  bytes.resize(bytes.size() - 20);
  write_bytes(bad, bytes);
  EXPECT_MG_ERROR(ImageFolderDataset(dir.str(), 8),
                  "[image_folder] cannot decode PNG " + bad.string() + ": ");
}

TEST(MiniImageNet, RaviLarochelleLayout) {
  TempDir dir;
  const fs::path root = dir.path();
  // Two train classes of 3 images and one val class; RGB 6x6. One csv row names a .jpg that
  // exists only as a .png (converted files keep the csv).
  std::map<std::string, std::vector<uint8_t>> pix;
  std::string train = "filename,label\n", val = "filename,label\r\n";
  for (const std::string label : {"n02", "n01"})
    for (int i = 0; i < 3; ++i) {
      const std::string stem = label + "0000000" + std::to_string(i);
      std::vector<uint8_t> px(6 * 6 * 3);
      for (size_t p = 0; p < px.size(); ++p) px[p] = static_cast<uint8_t>(p * 5 + i + label[2]);
      write_png8(root / "images" / (stem + ".png"), 6, 6, PNG_COLOR_TYPE_RGB, px);
      pix[stem] = px;
      train += (i == 1 ? stem + ".jpg" : stem + ".png") + "," + label + "\n";
    }
  for (int i = 0; i < 2; ++i) {
    const std::string stem = "n030000000" + std::to_string(i);
    write_png8(root / "images" / (stem + ".png"), 6, 6, PNG_COLOR_TYPE_RGB,
               std::vector<uint8_t>(108, static_cast<uint8_t>(i * 100)));
    val += stem + ".png,n03\r\n";
  }
  write_text(root / "train.csv", train);
  write_text(root / "val.csv", val);
  MiniImageNetDataset ds(root.string(), "train", 6);
  ASSERT_EQ(ds.num_classes(), 2);
  EXPECT_EQ(ds.class_name(0), "n02");  // order of first appearance
  EXPECT_EQ(ds.class_name(1), "n01");
  EXPECT_EQ(ds.num_images(0), 3);
  EXPECT_EQ(ds.image_shape(), (Shape{3, 6, 6}));
  EXPECT_EQ(ds.storage().dtype(), DType::UInt8);
  const std::vector<float> v = values(ds.image(1, 2));
  const std::vector<uint8_t>& px = pix["n0100000002"];
  for (int p = 0; p < 36; ++p)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(v[c * 36 + p], px[p * 3 + c] / 255.f);
  MiniImageNetDataset tv(root.string(), "trainval", 3);
  EXPECT_EQ(tv.num_classes(), 3);
  EXPECT_EQ(tv.class_name(2), "n03");
  EXPECT_EQ(tv.image_shape(), (Shape{3, 3, 3}));
  EXPECT_NEAR(values(tv.image(2, 1))[0], 100 / 255.0, 1.0 / 255);
  // Errors: missing split, bad header, missing image, a real JPEG.
  EXPECT_MG_ERROR(MiniImageNetDataset(root.string(), "test"),
                  "[mini_imagenet] split file missing: " + (root / "test.csv").string());
  EXPECT_MG_ERROR(MiniImageNetDataset(root.string(), "bogus"), "[mini_imagenet] unknown split");
  write_text(root / "test.csv", "file,class\nx.png,n09\n");
  EXPECT_MG_ERROR(MiniImageNetDataset(root.string(), "test"), "[mini_imagenet] split file ");
  write_text(root / "test.csv", "filename,label\nmissing.jpg,n09\n");
  EXPECT_MG_ERROR(MiniImageNetDataset(root.string(), "test"), "[mini_imagenet] image missing: ");
  write_bytes(root / "images" / "real.jpg", {0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F'});
  write_text(root / "test.csv", "filename,label\nreal.jpg,n09\n");
  EXPECT_MG_ERROR(MiniImageNetDataset(root.string(), "test"),
                  "[mini_imagenet] cannot decode PNG " + (root / "images" / "real.jpg").string() +
                      ": this is a JPEG");
}

TEST(CifarFS, BertinettoLayout) {
  TempDir dir;
  const fs::path root = dir.path();
  const fs::path data = root / "data" / "cifar100" / "data";
  const std::vector<std::string> names = {"apple", "bee", "cloud", "dolphin"};
  for (size_t c = 0; c < names.size(); ++c)
    for (int i = 0; i < 2 + static_cast<int>(c); ++i) {
      std::vector<uint8_t> px(8 * 8 * 3);
      for (size_t p = 0; p < px.size(); ++p) px[p] = static_cast<uint8_t>(p + 17 * c + i);
      write_png8(data / names[c] / (std::to_string(i) + ".png"), 8, 8, PNG_COLOR_TYPE_RGB, px);
    }
  write_text(root / "splits" / "bertinetto" / "train.txt", "dolphin\napple\n");
  write_text(root / "splits" / "bertinetto" / "val.txt", "bee\n\n");
  write_text(root / "splits" / "bertinetto" / "test.txt", "cloud\nmissing_class\n");
  CifarFSDataset train(root.string(), "train", 8);
  ASSERT_EQ(train.num_classes(), 2);
  EXPECT_EQ(train.class_name(0), "dolphin");  // split-file order
  EXPECT_EQ(train.num_images(0), 5);
  EXPECT_EQ(train.num_images(1), 2);
  EXPECT_EQ(train.image_shape(), (Shape{3, 8, 8}));
  const std::vector<float> v = values(train.image(1, 1));
  for (int p = 0; p < 64; ++p)
    for (int c = 0; c < 3; ++c)
      EXPECT_EQ(v[c * 64 + p], static_cast<uint8_t>(p * 3 + c + 1) / 255.f);
  CifarFSDataset tv(root.string(), "trainval");
  EXPECT_EQ(tv.num_classes(), 3);
  EXPECT_EQ(tv.class_name(2), "bee");
  EXPECT_EQ(tv.image_shape(), (Shape{3, 32, 32}));  // default size, enlarged by area
  EXPECT_MG_ERROR(CifarFSDataset(root.string(), "test"),
                  "[cifar_fs] class folder missing: " + (data / "missing_class").string());
  fs::remove(root / "splits" / "bertinetto" / "val.txt");
  EXPECT_MG_ERROR(CifarFSDataset(root.string(), "val"), "[cifar_fs] split file missing: ");
  EXPECT_MG_ERROR(CifarFSDataset((root / "x").string()), "[cifar_fs] folder missing: ");
}

// ---- a fake Omniglot tree
// ------------------------------------------------------------------------

TEST(Omniglot, FakeTreeLoadsInvertsAndRotates) {
  TempDir dir;
  const fs::path root = dir.path();
  write_text(root / "splits" / "vinyals_torchmeta" / "train.json",
             R"({"background": {"Beta": ["character02"], "Alpha": ["character01", "character03"]},
                 "evaluation": {"Gamma": ["character01"]}})");
  write_text(root / "splits" / "vinyals_torchmeta" / "val.json",
             R"({"background": {"Delta": ["character01"]}})");
  write_text(root / "splits" / "vinyals_torchmeta" / "test.json",
             R"({"evaluation": {"Eps": ["character01"]}})");
  // Each character: 3 drawers of 105x105 1-bit images (ink = 0 bits, as in Omniglot).
  std::map<std::string, std::vector<std::vector<int>>> bits;
  auto make = [&](const std::string& folder, const std::string& ch, int seed) {
    for (int d = 1; d <= 3; ++d) {
      std::vector<int> b(105 * 105);
      for (size_t i = 0; i < b.size(); ++i)
        b[i] = ((i * 31 + static_cast<size_t>(seed * 7 + d)) % 11) != 0;
      char name[32];
      std::snprintf(name, sizeof name, "%04d_%02d.png", seed, d);
      write_png1(root / folder / ch / name, 105, 105, b);
      bits[ch].push_back(b);
    }
  };
  make("images_background", "Beta/character02", 1);
  make("images_background", "Alpha/character01", 2);
  make("images_background", "Alpha/character03", 3);
  make("images_evaluation", "Gamma/character01", 4);
  make("images_background", "Delta/character01", 5);
  EXPECT_EQ(OmniglotDataset::split_characters(root.string(), "train"),
            (std::vector<std::string>{"Alpha/character01", "Alpha/character03", "Beta/character02",
                                      "Gamma/character01"}));
  EXPECT_EQ(OmniglotDataset::split_characters(root.string(), "trainval").size(), 5u);

  OmniglotDataset full(root.string(), "train", 105, /*rotations=*/false);
  ASSERT_EQ(full.num_classes(), 4);
  EXPECT_EQ(full.class_name(2), "Beta/character02");
  EXPECT_EQ(full.num_images(2), 3);
  const std::vector<float> v = values(full.image(1, 2));  // Alpha/character03, drawer 3
  const std::vector<int>& b = bits["Alpha/character03"][2];
  for (size_t i = 0; i < b.size(); ++i) ASSERT_EQ(v[i], b[i] ? 0.f : 1.f) << i;  // ink = 1

  OmniglotDataset ds(root.string(), "train");  // 28x28, rotations
  EXPECT_EQ(ds.num_classes(), 16);
  EXPECT_EQ(ds.class_name(5), "Alpha/character03/rot090");
  EXPECT_EQ(ds.image_shape(), (Shape{1, 28, 28}));
  EXPECT_EQ(values(ds.image(4, 2)), values(resize_area(full.image(1, 2), 28, 28)));
  EXPECT_EQ(values(ds.image(7, 1)), values(rot90(ds.image(4, 1), 3)));
  EXPECT_EQ(OmniglotDataset(root.string(), "train", 28, true, /*max_alphabets=*/1).num_classes(),
            8);

  // Errors: unknown split, missing split file, missing character folder, corrupt PNG.
  EXPECT_MG_ERROR(OmniglotDataset(root.string(), "dev"), "[omniglot] unknown split 'dev'");
  EXPECT_MG_ERROR(OmniglotDataset((root / "none").string()), "[omniglot] data folder missing: ");
  fs::remove(root / "splits" / "vinyals_torchmeta" / "test.json");
  EXPECT_MG_ERROR(OmniglotDataset(root.string(), "test"),
                  "[omniglot] split file missing: " +
                      (root / "splits" / "vinyals_torchmeta" / "test.json").string());
  write_text(root / "splits" / "vinyals_torchmeta" / "test.json",
             R"({"evaluation": {"Eps": ["character01"]}})");
  EXPECT_MG_ERROR(OmniglotDataset(root.string(), "test"), "[omniglot] character folder missing: ");
  write_text(root / "splits" / "vinyals_torchmeta" / "test.json", "{not json");
  EXPECT_MG_ERROR(OmniglotDataset(root.string(), "test"), "[omniglot] cannot parse split file ");
  const fs::path victim = root / "images_background" / "Delta" / "character01" / "0005_02.png";
  write_bytes(victim,
              {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'});
  EXPECT_MG_ERROR(OmniglotDataset(root.string(), "val"),
                  "[omniglot] cannot decode PNG " + victim.string() + ": ");
}

// ---- episodes on a synthetic dataset
// ------------------------------------------------------------------

namespace {

// 12 classes of 4 + c % 3 images [1, 2, 2] whose every pixel is 1000 * class + image index, so
// each episode row says where it came from.
ImageDataset coded_dataset() {
  std::vector<int64_t> sizes;
  std::vector<float> px;
  for (int64_t c = 0; c < 12; ++c) {
    sizes.push_back(4 + c % 3);
    for (int64_t i = 0; i < sizes.back(); ++i)
      for (int p = 0; p < 4; ++p) px.push_back(static_cast<float>(1000 * c + i));
  }
  const int64_t n = static_cast<int64_t>(px.size() / 4);
  return ImageDataset(tensor(px, Shape{n, 1, 2, 2}), sizes);
}

// Checks one episode's invariants; returns (class, image) of every row, support then query.
void check_episode(const Tensor& sx, const Tensor& sy, const Tensor& qx, const Tensor& qy,
                   const std::vector<int64_t>& classes, int64_t n, int64_t k, int64_t q,
                   const std::vector<int64_t>& pool) {
  ASSERT_EQ(sx.shape(), (Shape{n * k, 1, 2, 2}));
  ASSERT_EQ(qx.shape(), (Shape{n * q, 1, 2, 2}));
  ASSERT_EQ(sy.dtype(), DType::Int64);
  ASSERT_EQ(static_cast<int64_t>(classes.size()), n);
  // Distinct classes, all from the pool.
  EXPECT_EQ(std::set<int64_t>(classes.begin(), classes.end()).size(), static_cast<size_t>(n));
  for (int64_t c : classes) EXPECT_NE(std::find(pool.begin(), pool.end(), c), pool.end()) << c;
  const std::vector<int64_t> syv = sy.to_vector<int64_t>(), qyv = qy.to_vector<int64_t>();
  const std::vector<float> sxv = values(sx), qxv = values(qx);
  std::map<int64_t, std::set<int64_t>> support_images, query_images;
  std::vector<int64_t> count(static_cast<size_t>(n), 0);
  auto visit = [&](const std::vector<int64_t>& y, const std::vector<float>& x, int64_t per,
                   std::map<int64_t, std::set<int64_t>>& seen, bool is_support) {
    for (size_t r = 0; r < y.size(); ++r) {
      const int64_t label = y[r];
      ASSERT_GE(label, 0);
      ASSERT_LT(label, n);
      EXPECT_EQ(label, static_cast<int64_t>(r) / per);  // class-major order
      const float code = x[r * 4];
      for (int p = 1; p < 4; ++p) ASSERT_EQ(x[r * 4 + p], code);
      const int64_t cls = static_cast<int64_t>(code) / 1000,
                    img = static_cast<int64_t>(code) % 1000;
      EXPECT_EQ(cls, classes[static_cast<size_t>(label)]);  // label <-> class consistent
      EXPECT_TRUE(seen[cls].insert(img).second) << "image drawn twice";
      if (is_support) ++count[static_cast<size_t>(label)];
    }
  };
  visit(syv, sxv, k, support_images, true);
  visit(qyv, qxv, q, query_images, false);
  for (int64_t c : count) EXPECT_EQ(c, k);  // balanced
  for (auto& [cls, imgs] : support_images)
    for (int64_t i : imgs) EXPECT_EQ(query_images[cls].count(i), 0u) << "support/query overlap";
}

}  // namespace

TEST(Episodes, InvariantsOnCodedDataset) {
  const ImageDataset ds = coded_dataset();
  std::vector<int64_t> all(12);
  for (int64_t c = 0; c < 12; ++c) all[c] = c;
  EpisodeSampler sampler(ds, 5, 2, 2, /*seed=*/11);
  for (int e = 0; e < 50; ++e) {
    const Episode ep = sampler.sample();
    check_episode(ep.support_x, ep.support_y, ep.query_x, ep.query_y, ep.classes, 5, 2, 2, all);
    EXPECT_EQ(ep.support_index.size(), 10u);
    EXPECT_EQ(ep.query_index.size(), 10u);
  }
  // A class subset: only those classes ever appear (e.g. never mixing train and test).
  const std::vector<int64_t> pool = {1, 4, 6, 9, 10};
  EpisodeSampler sub(ds, 3, 1, 3, 5, pool);
  for (int e = 0; e < 50; ++e) {
    const Episode ep = sub.sample();
    check_episode(ep.support_x, ep.support_y, ep.query_x, ep.query_y, ep.classes, 3, 1, 3, pool);
  }
  // K + Q = all images of the smallest class: every image is used once.
  EpisodeSampler tight(ds, 12, 1, 3, 2);
  const Episode ep = tight.sample();
  check_episode(ep.support_x, ep.support_y, ep.query_x, ep.query_y, ep.classes, 12, 1, 3, all);
}

TEST(Episodes, ClassesAndLabelsAreUniformlyRandom) {
  const ImageDataset ds = coded_dataset();
  EpisodeSampler sampler(ds, 3, 1, 1, 99);
  std::vector<int> chosen(12, 0), at_label0(12, 0);
  const int episodes = 3000;
  for (int e = 0; e < episodes; ++e) {
    const Episode ep = sampler.sample();
    for (int64_t c : ep.classes) ++chosen[c];
    ++at_label0[ep.classes[0]];
  }
  // Each class is in an episode with probability 3/12 and takes label 0 with probability 1/12.
  for (int c = 0; c < 12; ++c) {
    const double p1 = 0.25, p0 = 1.0 / 12;
    EXPECT_NEAR(chosen[c], episodes * p1, 5 * std::sqrt(episodes * p1 * (1 - p1))) << c;
    EXPECT_NEAR(at_label0[c], episodes * p0, 5 * std::sqrt(episodes * p0 * (1 - p0))) << c;
  }
}

TEST(Episodes, DeterministicResumableAndBatched) {
  const ImageDataset ds = coded_dataset();
  EpisodeSampler a(ds, 4, 2, 1, 1234), b(ds, 4, 2, 1, 1234), c(ds, 4, 2, 1, 1235);
  for (int e = 0; e < 5; ++e) {
    const Episode x = a.sample(), y = b.sample();
    EXPECT_EQ(values(x.support_x), values(y.support_x));
    EXPECT_EQ(values(x.query_x), values(y.query_x));
    EXPECT_EQ(x.classes, y.classes);
  }
  bool differs = false;
  for (int e = 0; e < 5; ++e) differs |= a.sample().classes != c.sample().classes;
  EXPECT_TRUE(differs);
  // Save, draw, restore, draw again: the same episodes.
  const GeneratorState s = a.state();
  const Episode first = a.sample();
  a.sample();
  a.set_state(s);
  EXPECT_EQ(values(a.sample().support_x), values(first.support_x));
  // sample_batch(T) = T calls of sample(), stacked.
  EpisodeSampler p(ds, 4, 2, 2, 77), q(ds, 4, 2, 2, 77);
  const EpisodeBatch batch = p.sample_batch(3);
  EXPECT_EQ(batch.support_x.shape(), (Shape{3, 8, 1, 2, 2}));
  EXPECT_EQ(batch.support_y.shape(), (Shape{3, 8}));
  EXPECT_EQ(batch.query_x.shape(), (Shape{3, 8, 1, 2, 2}));
  EXPECT_EQ(batch.query_y.shape(), (Shape{3, 8}));
  for (int64_t t = 0; t < 3; ++t) {
    const Episode ep = q.sample();
    EXPECT_EQ(values(batch.support_x.select(0, t)), values(ep.support_x));
    EXPECT_EQ(batch.support_y.select(0, t).to_vector<int64_t>(), ep.support_y.to_vector<int64_t>());
    EXPECT_EQ(values(batch.query_x.select(0, t)), values(ep.query_x));
    EXPECT_EQ(batch.query_y.select(0, t).to_vector<int64_t>(), ep.query_y.to_vector<int64_t>());
    EXPECT_EQ(batch.classes[t], ep.classes);
  }
  EXPECT_EQ(p.state(), q.state());
  // No queries: empty query tensors.
  EpisodeSampler nq(ds, 2, 1, 0);
  EXPECT_EQ(nq.sample().query_x.shape(), (Shape{0, 1, 2, 2}));
  EXPECT_EQ(nq.sample_batch(2).query_y.shape(), (Shape{2, 0}));
}

TEST(Episodes, Errors) {
  const ImageDataset ds = coded_dataset();
  EXPECT_MG_ERROR(EpisodeSampler(ds, 13, 1, 1),
                  "[episodes] n_way = 13 is larger than the 12 classes");
  EXPECT_MG_ERROR(EpisodeSampler(ds, 3, 1, 1, 0, {1, 2}),
                  "[episodes] n_way = 3 is larger than the 2");
  EXPECT_MG_ERROR(EpisodeSampler(ds, 2, 3, 2), "[episodes] class 0 ('0') has 4 images, fewer than");
  EXPECT_MG_ERROR(EpisodeSampler(ds, 2, 1, 1, 0, {1, 12}), "[episodes] class 12 out of range");
  EXPECT_MG_ERROR(EpisodeSampler(ds, 2, 1, 1, 0, {1, 1}), "[episodes] class 1 appears twice");
  EXPECT_MG_ERROR(EpisodeSampler(ds, 0, 1, 1), "[episodes]");
  EXPECT_MG_ERROR(EpisodeSampler(ds, 2, 0, 1), "[episodes]");
  EXPECT_MG_ERROR(EpisodeSampler(ds, 2, 1, -1), "[episodes]");
  EpisodeSampler ok(ds, 2, 1, 1);
  EXPECT_MG_ERROR(ok.sample_batch(-1), "[episodes]");
}

// ---- the real Omniglot
// ---------------------------------------------------------------------------

TEST(OmniglotData, SplitsMatchTheProtonetsListsAndAreDisjoint) {
  SKIP_WITHOUT_OMNIGLOT(root);
  const std::map<std::string, size_t> expected = {
      {"train", 1028}, {"val", 172}, {"test", 423}, {"trainval", 1200}};
  std::map<std::string, std::set<std::string>> chars;
  for (const auto& [split, count] : expected) {
    const std::vector<std::string> names = OmniglotDataset::split_characters(root, split);
    EXPECT_EQ(names.size(), count) << split;
    chars[split] = std::set<std::string>(names.begin(), names.end());
    EXPECT_EQ(chars[split].size(), count) << split << " lists a character twice";
    // With rotations the class names are exactly the lines of the protonets copy of the split
    // (an independent file): 4 per character.
    std::set<std::string> rotated;
    for (const std::string& n : names)
      for (const char* r : {"/rot000", "/rot090", "/rot180", "/rot270"}) rotated.insert(n + r);
    std::ifstream f(fs::path(root) / "splits" / "vinyals_protonets" / (split + ".txt"));
    std::set<std::string> listed;
    for (std::string line; std::getline(f, line);)
      if (!line.empty()) listed.insert(line);
    EXPECT_EQ(rotated.size(), 4 * count);
    EXPECT_EQ(rotated, listed) << split;
  }
  // Disjoint, and together every character folder on disk.
  std::set<std::string> all;
  for (const char* s : {"train", "val", "test"}) {
    for (const std::string& c : chars[s])
      EXPECT_TRUE(all.insert(c).second) << c << " in two splits";
  }
  std::set<std::string> on_disk;
  for (const char* group : {"images_background", "images_evaluation"})
    for (const auto& alphabet : fs::directory_iterator(fs::path(root) / group))
      for (const auto& ch : fs::directory_iterator(alphabet.path()))
        on_disk.insert(alphabet.path().filename().string() + "/" + ch.path().filename().string());
  EXPECT_EQ(on_disk.size(), 1623u);
  EXPECT_EQ(all, on_disk);
  std::set<std::string> tv = chars["train"];
  tv.insert(chars["val"].begin(), chars["val"].end());
  EXPECT_EQ(tv, chars["trainval"]);
}

namespace {

// One split loaded once per test process (CTest runs each test in its own process, so only
// the tests of this fixture pay for it). Under AddressSanitizer the smaller val split keeps
// the suite quick; elsewhere the 1028-character train split.
class OmniglotLoaded : public ::testing::Test {
 protected:
#ifdef MG_TEST_ASAN
  static constexpr const char* kSplit = "val";
  static constexpr int64_t kCharacters = 172;
#else
  static constexpr const char* kSplit = "train";
  static constexpr int64_t kCharacters = 1028;
#endif
  static void SetUpTestSuite() {
    root_ = omniglot_root();
    if (root_.empty()) return;
    const auto t0 = std::chrono::steady_clock::now();
    ds_ = new OmniglotDataset(root_, kSplit);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[ omniglot ] loaded split '%s': %lld classes, %lld images in %.2f s\n", kSplit,
                static_cast<long long>(ds_->num_classes()),
                static_cast<long long>(ds_->num_base_classes() * 20), s);
  }
  static void TearDownTestSuite() {
    delete ds_;
    ds_ = nullptr;
  }
  void SetUp() override {
    if (!ds_) GTEST_SKIP() << "Omniglot not found (set METAGRAD_OMNIGLOT)";
  }
  static inline std::string root_;
  static inline OmniglotDataset* ds_ = nullptr;
};

}  // namespace

TEST_F(OmniglotLoaded, CountsShapesAndValues) {
  const OmniglotDataset& ds = *ds_;
  EXPECT_EQ(ds.num_classes(), 4 * kCharacters);
  EXPECT_EQ(ds.num_base_classes(), kCharacters);
  EXPECT_EQ(ds.image_shape(), (Shape{1, 28, 28}));
  for (int64_t c = 0; c < ds.num_classes(); ++c) ASSERT_EQ(ds.num_images(c), 20);
  const Tensor& all = ds.storage();
  EXPECT_EQ(all.shape(), (Shape{20 * kCharacters, 1, 28, 28}));
  EXPECT_EQ(all.dtype(), DType::Float32);
  EXPECT_GE(amin(all).item<float>(), 0.f);
  EXPECT_LE(amax(all).item<float>(), 1.f);
  EXPECT_EQ(amax(all).item<float>(), 1.f);  // some 28x28 cell is all ink
  // Ink = 1 on a background of 0: most of each image is background.
  const double mean = metagrad::mean(all).item<float>();
  EXPECT_GT(mean, 0.02);
  EXPECT_LT(mean, 0.3);
  // Class names are the protonets names of the split.
  std::set<std::string> names;
  for (int64_t c = 0; c < ds.num_classes(); ++c) names.insert(ds.class_name(c));
  std::ifstream f(fs::path(root_) / "splits" / "vinyals_protonets" /
                  (std::string(kSplit) + ".txt"));
  std::set<std::string> listed;
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) listed.insert(line);
  EXPECT_EQ(names, listed);
}

TEST_F(OmniglotLoaded, KnownImageMatchesAnIndependentDecode) {
  const OmniglotDataset& ds = *ds_;
  // Class 0 is the first character of the split; its image 0 is the first PNG by name.
  const std::string base = ds.base_class_name(0);
  const fs::path folder = fs::path(root_) / "images_background" / base;  // background comes first
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(folder)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 20u);
  std::vector<uint8_t> px;
  png_uint_32 w = 0, h = 0;
  ASSERT_TRUE(decode_gray_c(files[0].c_str(), px, w, h)) << files[0];
  ASSERT_EQ(w, 105u);
  ASSERT_EQ(h, 105u);
  double ink = 0;  // sum of 1 - p / 255 at full resolution
  for (uint8_t p : px) ink += 1.0 - p / 255.0;
  EXPECT_GT(ink, 50.0);
  // Area averaging preserves the mean: sum at 28x28 = sum at 105x105 * (28 / 105)^2.
  const double want = ink * (28.0 * 28.0) / (105.0 * 105.0);
  for (int64_t r = 0; r < 4; ++r) {
    const double got = metagrad::sum(ds.image(r, 0).to(DType::Float64)).item<double>();
    EXPECT_NEAR(got, want, 1e-3) << "rotation " << r;
  }
  // The same image with the independent decode, resized by supersampling.
  std::vector<double> in(px.size());
  for (size_t i = 0; i < px.size(); ++i) in[i] = 1.0 - px[i] / 255.0;
  const std::vector<double> ref = resize_by_supersampling(in, 105, 105, 28, 28);
  const std::vector<float> got = values(ds.image(0, 0));
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-6) << i;
  // Rotation classes are exact quarter turns of the resized image.
  for (int64_t r = 1; r < 4; ++r)
    EXPECT_EQ(values(ds.image(r, 7)), values(rot90(ds.image(0, 7), r)));
}

TEST_F(OmniglotLoaded, EpisodesStayInTheSplit) {
  const OmniglotDataset& ds = *ds_;
  std::set<std::string> other;  // characters of the splits not loaded
  for (const char* s : {"train", "val", "test"})
    if (std::string(s) != kSplit)
      for (const std::string& c : OmniglotDataset::split_characters(root_, s)) other.insert(c);
  const std::vector<std::string> mine = OmniglotDataset::split_characters(root_, kSplit);
  const std::set<std::string> own(mine.begin(), mine.end());
  EpisodeSampler a(ds, 5, 1, 15, 2024), b(ds, 5, 1, 15, 2024);
  const auto t0 = std::chrono::steady_clock::now();
  const EpisodeBatch batch = a.sample_batch(32);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ omniglot ] 32 episodes 5-way 1-shot 15-query in %.2f ms\n", s * 1e3);
  EXPECT_EQ(batch.support_x.shape(), (Shape{32, 5, 1, 28, 28}));
  EXPECT_EQ(batch.query_x.shape(), (Shape{32, 75, 1, 28, 28}));
  for (int64_t t = 0; t < 32; ++t) {
    const Episode ep = b.sample();
    EXPECT_EQ(values(ep.query_x), values(batch.query_x.select(0, t)));
    std::set<int64_t> labels;
    for (int64_t l : ep.query_y.to_vector<int64_t>()) labels.insert(l);
    EXPECT_EQ(labels, (std::set<int64_t>{0, 1, 2, 3, 4}));
    for (size_t l = 0; l < 5; ++l) {
      const std::string name = ds.base_class_name(ep.classes[l] / 4);
      EXPECT_TRUE(own.count(name)) << name;
      EXPECT_FALSE(other.count(name)) << name << " belongs to another split";
      // Support and query images of a class are different drawers.
      for (int64_t q = 0; q < 15; ++q) EXPECT_NE(ep.support_index[l], ep.query_index[l * 15 + q]);
      EXPECT_EQ(values(ep.support_x.select(0, static_cast<int64_t>(l))),
                values(ds.image(ep.classes[l], ep.support_index[l])));
    }
  }
}

TEST(OmniglotData, FullResolutionIsPixelExact) {
  SKIP_WITHOUT_OMNIGLOT(root);
  // One alphabet of val at 105x105 (no resize): every value is exactly 1 - p / 255.
  OmniglotDataset ds(root, "val", 105, /*rotations=*/false, /*max_alphabets=*/1);
  EXPECT_EQ(ds.num_classes(), 41);  // Armenian, the first val alphabet by name
  const fs::path folder = fs::path(root) / "images_background" / ds.class_name(3);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(folder)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<uint8_t> px;
  png_uint_32 w = 0, h = 0;
  ASSERT_TRUE(decode_gray_c(files[5].c_str(), px, w, h));
  const std::vector<float> got = values(ds.image(3, 5));
  ASSERT_EQ(got.size(), px.size());
  for (size_t i = 0; i < px.size(); ++i) ASSERT_EQ(got[i], px[i] == 0 ? 1.f : 0.f) << i;
}

// ---- audit: malformed inputs give errors naming what is wrong -------------------------------

TEST(Omniglot, MalformedSplitFilesNameTheFile) {
  TempDir dir;
  const fs::path root = dir.path();
  const fs::path splits = root / "splits" / "vinyals_torchmeta";
  fs::create_directories(root / "images_background");
  const std::string train = (splits / "train.json").string();
  for (const char* doc :
       {R"({"background": []})", R"({"background": 3})", R"({"evaluation": "Alpha"})"}) {
    write_text(splits / "train.json", doc);
    EXPECT_MG_ERROR_HAS(OmniglotDataset(root.string(), "train"), "[omniglot] split file " + train,
                        "must be an object");
  }
  fs::remove(splits / "train.json");
  fs::create_directories(splits / "train.json");
  EXPECT_MG_ERROR_HAS(OmniglotDataset(root.string(), "train"), "[omniglot] split file " + train,
                      "is not a regular file");
}

TEST(Png, HeaderLargerThanTheFileCanHoldIsRefusedBeforeAllocating) {
  // 30000 x 30000 8-bit gray: 900 MB, under the 1 GiB cap, but no 41-byte file inflates to it.
  TempDir dir;
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13};
  const std::vector<uint8_t> ihdr = {'I', 'H',  'D',  'R', 0, 0, 0x75, 0x30, 0,
                                     0,   0x75, 0x30, 8,   0, 0, 0,    0};
  png.insert(png.end(), ihdr.begin(), ihdr.end());
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), ihdr.data(), static_cast<uInt>(ihdr.size()));
  for (int b = 3; b >= 0; --b) png.push_back(static_cast<uint8_t>(crc >> (8 * b)));
  png.insert(png.end(), {0, 0, 0, 0, 'I', 'D', 'A', 'T'});
  const fs::path f = dir.path() / "claims.png";
  write_bytes(f, png);
  EXPECT_MG_ERROR_HAS(read_png(f.string(), 0, "omniglot"),
                      "[omniglot] cannot decode PNG " + f.string(),
                      "30000x30000 is too large for a file of 41 bytes");
}

TEST(Episodes, HugeShotCountsAreErrorsNotOverflow) {
  const ImageDataset ds = coded_dataset();
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_MG_ERROR_HAS(EpisodeSampler(ds, 2, big, 1), "[episodes] class 0",
                      "fewer than k_shot = 9223372036854775807 plus n_query = 1");
  EXPECT_MG_ERROR_HAS(EpisodeSampler(ds, 2, 1, big), "[episodes] class 0", "n_query = ");
}

TEST(ImageDataset, EmptyImagesAndHugeSizesAreRefused) {
  for (const Shape& s : {Shape{2, 0, 3, 3}, Shape{2, 1, 0, 3}, Shape{2, 1, 3, 0}})
    EXPECT_MG_ERROR_HAS(ImageDataset(rand(s), {2}), "[image_dataset]",
                        "need C, H and W of at least 1");
  TempDir dir;
  std::vector<uint8_t> px(64, 7);
  write_png8(dir.path() / "k" / "0.png", 8, 8, PNG_COLOR_TYPE_GRAY, px);
  for (int64_t side : {int64_t{1} << 31, int64_t{1} << 32, std::numeric_limits<int64_t>::max()})
    EXPECT_MG_ERROR_HAS(ImageFolderDataset(dir.str(), side), "[image_folder] image size ",
                        "is larger than the supported 16384x16384");
}

TEST(Sinusoid, HugePointCountsAreClearErrors) {
  SinusoidTasks tasks;
  Generator gen;
  const SinusoidTask t = tasks.sample_task(gen);
  try {
    t.sample(std::numeric_limits<int64_t>::max(), gen);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("[", 0), 0u) << e.what();
  }
  EXPECT_MG_ERROR_HAS(SinusoidTasks({.amplitude_min = 2, .amplitude_max = 1}), "[sinusoid]",
                      "amplitude [2, 1]");
}
