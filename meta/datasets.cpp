// The in-memory class-indexed store and the generic readers (declared in meta/datasets.h):
// parallel decode and resize, rotation classes, ImageFolder, miniImageNet and CIFAR-FS.
#include "meta/datasets.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <unordered_map>

#include "meta/fs_util.h"
#include "meta/image.h"
#include "tensor/grad_mode.h"

namespace metagrad::meta {

namespace fs = std::filesystem;

namespace {

// dst (planar [C, n, n] float32) = src rotated by k quarter turns (Note [Rotation classes]),
// converting uint8 q to q / 255 on the way.
template <typename T>
void rotate_convert(const T* src, int64_t channels, int64_t n, float* dst, int64_t k) {
  auto value = [](T v) {
    if constexpr (std::is_same_v<T, uint8_t>) {
      return static_cast<float>(v) / 255.f;
    } else {
      return static_cast<float>(v);
    }
  };
  for (int64_t c = 0; c < channels; ++c) {
    const T* in = src + c * n * n;
    float* out = dst + c * n * n;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        int64_t si = i, sj = j;  // out[i][j] = in[si][sj], as rot90 in meta/image.cpp
        if (k == 1) si = j, sj = n - 1 - i;
        if (k == 2) si = n - 1 - i, sj = n - 1 - j;
        if (k == 3) si = n - 1 - j, sj = i;
        out[i * n + j] = value(in[si * n + sj]);
      }
  }
}

template <typename T>
void convert(const T* src, int64_t count, float* dst) {
  if constexpr (std::is_same_v<T, uint8_t>) {
    for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<float>(src[i]) / 255.f;
  } else {
    std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
  }
}

}  // namespace

// ---- ImageDataset ---------------------------------------------------------------------------

ImageDataset::ImageDataset(const Tensor& images, const std::vector<int64_t>& class_sizes,
                           std::vector<std::string> names, bool rotations) {
  const char* who = "image_dataset";
  MG_CHECK(images.defined() && images.dim() == 4, who, "expects images [n, C, H, W], got ",
           images.defined() ? shape_str(images.shape()) : std::string("an undefined tensor"));
  MG_CHECK(images.is_floating_point(), who, "expects floating images, got ",
           dtype_name(images.dtype()));
  MG_CHECK(!class_sizes.empty(), who, "needs at least one class");
  int64_t total = 0;
  for (int64_t s : class_sizes) {
    MG_CHECK(s > 0, who, "every class needs at least one image, got a class of ", s);
    total += s;
  }
  MG_CHECK(total == images.size(0), who, "class sizes add up to ", total, " but images has ",
           images.size(0));
  if (names.empty())
    for (size_t c = 0; c < class_sizes.size(); ++c) names.push_back(std::to_string(c));
  MG_CHECK(names.size() == class_sizes.size(), who, names.size(), " names for ", class_sizes.size(),
           " classes");
  channels_ = images.size(1);
  height_ = images.size(2);
  width_ = images.size(3);
  // An empty image has no pixels to copy (and a null data pointer to copy them from).
  MG_CHECK(channels_ > 0 && height_ > 0 && width_ > 0, who,
           "images need C, H and W of at least 1, got ", shape_str(images.shape()));
  MG_CHECK(!rotations || height_ == width_, who, "rotation classes need square images, got ",
           shape_str(images.shape()));
  rotations_ = rotations ? 4 : 1;
  base_names_ = std::move(names);
  offsets_.assign(1, 0);
  for (int64_t s : class_sizes) offsets_.push_back(offsets_.back() + s);
  NoGradGuard no_grad;
  // Kept on the CPU, where episodes are drawn (a GPU tensor is copied over once).
  data_ = images.detach().to(Device::cpu()).to(DType::Float32).contiguous();
  // Never share the caller's storage: the dataset must not change under it.
  if (data_.storage() == images.storage()) data_ = data_.clone();
}

int64_t ImageDataset::num_images(int64_t c) const {
  MG_CHECK(c >= 0 && c < num_classes(), "image_dataset", "class ", c, " out of range for ",
           num_classes(), " classes");
  const int64_t b = c / rotations_;
  return offsets_[b + 1] - offsets_[b];
}

int64_t ImageDataset::total_images() const {
  return offsets_.empty() ? 0 : offsets_.back() * rotations_;
}

const std::string& ImageDataset::base_class_name(int64_t b) const {
  MG_CHECK(b >= 0 && b < num_base_classes(), "image_dataset", "base class ", b,
           " out of range for ", num_base_classes(), " classes");
  return base_names_[static_cast<size_t>(b)];
}

std::string ImageDataset::class_name(int64_t c) const {
  MG_CHECK(c >= 0 && c < num_classes(), "image_dataset", "class ", c, " out of range for ",
           num_classes(), " classes");
  const std::string& base = base_names_[static_cast<size_t>(c / rotations_)];
  if (rotations_ == 1) return base;
  static const char* const kRot[4] = {"/rot000", "/rot090", "/rot180", "/rot270"};
  return base + kRot[c % rotations_];
}

void ImageDataset::check_index(int64_t c, int64_t i) const {
  const int64_t n = num_images(c);  // checks c
  MG_CHECK(i >= 0 && i < n, "image_dataset", "image ", i, " out of range for class ", c, " ('",
           class_name(c), "') of ", n, " images");
}

void ImageDataset::copy_image(int64_t c, int64_t i, float* dst) const {
  check_index(c, i);
  const int64_t b = c / rotations_, k = c % rotations_;
  const int64_t numel = channels_ * height_ * width_;
  const int64_t index = offsets_[b] + i;
  if (data_.dtype() == DType::UInt8) {
    const uint8_t* src = data_.data_ptr<uint8_t>() + index * numel;
    if (k == 0)
      convert(src, numel, dst);
    else
      rotate_convert(src, channels_, height_, dst, k);
  } else {
    const float* src = data_.data_ptr<float>() + index * numel;
    if (k == 0)
      convert(src, numel, dst);
    else
      rotate_convert(src, channels_, height_, dst, k);
  }
}

Tensor ImageDataset::image(int64_t c, int64_t i) const {
  check_index(c, i);
  Tensor t = Tensor::empty(image_shape());
  copy_image(c, i, t.data_ptr<float>());
  return t;
}

Tensor ImageDataset::class_images(int64_t c) const {
  const int64_t n = num_images(c);
  Tensor t = Tensor::empty({n, channels_, height_, width_});
  const int64_t numel = channels_ * height_ * width_;
  for (int64_t i = 0; i < n; ++i) copy_image(c, i, t.data_ptr<float>() + i * numel);
  return t;
}

void ImageDataset::load(std::vector<ClassFiles> classes, const LoadSpec& spec) {
  const char* who = spec.who;
  MG_CHECK(!classes.empty(), who, "no classes to load");
  MG_CHECK(spec.height > 0 && spec.width > 0, who, "image size must be positive, got ", spec.height,
           "x", spec.width);
  // Far beyond any few-shot benchmark (28, 32, 84), and small enough that C * H * W and the
  // per-thread buffers cannot overflow.
  constexpr int64_t kMaxSide = 1 << 14;
  MG_CHECK(spec.height <= kMaxSide && spec.width <= kMaxSide, who, "image size ", spec.height, "x",
           spec.width, " is larger than the supported ", kMaxSide, "x", kMaxSide);
  MG_CHECK(spec.channels == 0 || spec.channels == 1 || spec.channels == 3, who,
           "channels must be 0 (as the first file), 1 or 3, got ", spec.channels);
  MG_CHECK(!spec.rotations || spec.height == spec.width, who,
           "rotation classes need square images, got ", spec.height, "x", spec.width);
  std::vector<const std::string*> paths;
  base_names_.clear();
  offsets_.assign(1, 0);
  for (const ClassFiles& cf : classes) {
    MG_CHECK(!cf.files.empty(), who, "class '", cf.name, "' has no images");
    for (const std::string& f : cf.files) paths.push_back(&f);
    base_names_.push_back(cf.name);
    offsets_.push_back(static_cast<int64_t>(paths.size()));
  }
  const int64_t channels =
      spec.channels != 0 ? spec.channels : read_png(*paths[0], 0, who).channels;
  channels_ = channels;
  height_ = spec.height;
  width_ = spec.width;
  rotations_ = spec.rotations ? 4 : 1;
  const int64_t total = static_cast<int64_t>(paths.size());
  const int64_t numel = channels * height_ * width_;
  const bool u8 = spec.uint8_storage;
  data_ = Tensor::empty({total, channels, height_, width_},
                        TensorOptions(u8 ? DType::UInt8 : DType::Float32));
  uint8_t* out_u8 = u8 ? data_.data_ptr<uint8_t>() : nullptr;
  float* out_f32 = u8 ? nullptr : data_.data_ptr<float>();

  // Exceptions must not leave an OpenMP region: each iteration catches, and the error of the
  // lowest file index is rethrown afterwards (the same message whatever the thread count).
  std::atomic<bool> failed{false};
  int64_t error_index = std::numeric_limits<int64_t>::max();
  std::string error;
#pragma omp parallel
  {
    std::vector<float> planar, resized;  // per thread, reused across files
#pragma omp for schedule(dynamic, 16)
    for (int64_t n = 0; n < total; ++n) {
      if (failed.load(std::memory_order_relaxed)) continue;
      try {
        const Image8 img = read_png(*paths[n], channels, who);
        const int64_t plane = img.height * img.width;
        const bool same = img.height == height_ && img.width == width_;
        if (same && u8) {
          uint8_t* dst = out_u8 + n * numel;
          for (int64_t c = 0; c < channels; ++c)
            for (int64_t i = 0; i < plane; ++i) {
              const uint8_t p = img.pixels[static_cast<size_t>(i * channels + c)];
              dst[c * plane + i] = spec.invert ? static_cast<uint8_t>(255 - p) : p;
            }
          continue;
        }
        // Planar float in [0, 1], as to_tensor (meta/image.h).
        planar.resize(static_cast<size_t>(channels * plane));
        for (int64_t c = 0; c < channels; ++c)
          for (int64_t i = 0; i < plane; ++i) {
            const uint8_t p = img.pixels[static_cast<size_t>(i * channels + c)];
            planar[static_cast<size_t>(c * plane + i)] =
                static_cast<float>(spec.invert ? 255 - p : p) / 255.f;
          }
        const float* src = planar.data();
        if (!same) {
          resized.resize(static_cast<size_t>(numel));
          resize_area(planar.data(), channels, img.height, img.width, resized.data(), height_,
                      width_);
          src = resized.data();
        }
        if (u8) {
          uint8_t* dst = out_u8 + n * numel;
          for (int64_t i = 0; i < numel; ++i)
            dst[i] = static_cast<uint8_t>(std::lround(std::clamp(src[i], 0.f, 1.f) * 255.f));
        } else {
          std::memcpy(out_f32 + n * numel, src, static_cast<size_t>(numel) * sizeof(float));
        }
      } catch (const std::exception& e) {
        const bool ours = dynamic_cast<const Error*>(&e) != nullptr;
#pragma omp critical(metagrad_meta_load)
        {
          if (n < error_index) {
            error_index = n;
            error = ours
                        ? e.what()
                        : "[" + std::string(who) + "] while loading " + *paths[n] + ": " + e.what();
          }
        }
        failed.store(true, std::memory_order_relaxed);
      }
    }
  }
  if (failed.load()) {
    data_ = Tensor();
    throw Error(error);
  }
}

// ---- ImageFolderDataset -----------------------------------------------------------------------

ImageFolderDataset::ImageFolderDataset(const std::string& root, int64_t image_size,
                                       int64_t channels, bool rotations, bool uint8_storage) {
  const char* who = "image_folder";
  MG_CHECK(fs::is_directory(root), who, "folder missing: ", root);
  std::vector<ClassFiles> classes;
  for (const std::string& dir : fsutil::list_dir(root, /*dirs=*/true, "", who))
    classes.push_back(
        {fs::path(dir).filename().string(), fsutil::list_dir(dir, false, ".png", who)});
  MG_CHECK(!classes.empty(), who, "no class subfolders in ", root);
  load(std::move(classes), {.who = who,
                            .height = image_size,
                            .width = image_size,
                            .channels = channels,
                            .rotations = rotations,
                            .uint8_storage = uint8_storage});
}

// ---- miniImageNet -------------------------------------------------------------------------------

namespace {

std::vector<std::string> split_names(const char* who, const std::string& split) {
  if (split == "train" || split == "val" || split == "test") return {split};
  if (split == "trainval") return {"train", "val"};
  detail::fail(who, "unknown split '", split, "' (expected train, val, test or trainval)");
}

}  // namespace

MiniImageNetDataset::MiniImageNetDataset(const std::string& root, const std::string& split,
                                         int64_t image_size, bool uint8_storage) {
  const char* who = "mini_imagenet";
  const std::vector<std::string> parts = split_names(who, split);
  MG_CHECK(fs::is_directory(root), who, "folder missing: ", root);
  const fs::path images = fs::path(root) / "images";
  MG_CHECK(fs::is_directory(images), who, "images folder missing: ", images.string());
  std::vector<ClassFiles> classes;
  std::unordered_map<std::string, size_t> index;
  for (const std::string& part : parts) {
    const std::string csv = (fs::path(root) / (part + ".csv")).string();
    const std::vector<std::string> lines = fsutil::read_lines(csv, who, "split file missing: ");
    MG_CHECK(!lines.empty() && lines[0] == "filename,label", who, "split file ", csv,
             ": expected the header 'filename,label', got '", lines.empty() ? "" : lines[0], "'");
    for (size_t l = 1; l < lines.size(); ++l) {
      const std::string& line = lines[l];
      if (line.empty()) continue;
      const size_t comma = line.find(',');
      MG_CHECK(comma != std::string::npos && comma > 0 && comma + 1 < line.size(), who,
               "split file ", csv, " line ", l + 1, ": expected 'filename,label', got '", line,
               "'");
      const std::string file = line.substr(0, comma), label = line.substr(comma + 1);
      // The original files are JPEGs; a PNG of the same stem, if present, is what we decode.
      fs::path path = images / file;
      if (!fs::exists(path)) {
        fs::path png = path;
        png.replace_extension(".png");
        if (fs::exists(png)) path = png;
      }
      MG_CHECK(fs::exists(path), who, "image missing: ", path.string(), " (listed in ", csv, ")");
      auto [it, fresh] = index.try_emplace(label, classes.size());
      if (fresh) classes.push_back({label, {}});
      classes[it->second].files.push_back(path.string());
    }
  }
  MG_CHECK(!classes.empty(), who, "no images listed for split '", split, "' in ", root);
  load(std::move(classes), {.who = who,
                            .height = image_size,
                            .width = image_size,
                            .channels = 3,
                            .uint8_storage = uint8_storage});
}

// ---- CIFAR-FS
// ------------------------------------------------------------------------------------

CifarFSDataset::CifarFSDataset(const std::string& root, const std::string& split,
                               int64_t image_size, bool uint8_storage) {
  const char* who = "cifar_fs";
  const std::vector<std::string> parts = split_names(who, split);
  MG_CHECK(fs::is_directory(root), who, "folder missing: ", root);
  const fs::path data = fs::path(root) / "data" / "cifar100" / "data";
  MG_CHECK(fs::is_directory(data), who, "image folder missing: ", data.string());
  std::vector<ClassFiles> classes;
  for (const std::string& part : parts) {
    const std::string txt = (fs::path(root) / "splits" / "bertinetto" / (part + ".txt")).string();
    for (const std::string& name : fsutil::read_lines(txt, who, "split file missing: ")) {
      if (name.empty()) continue;
      const fs::path dir = data / name;
      MG_CHECK(fs::is_directory(dir), who, "class folder missing: ", dir.string(), " (listed in ",
               txt, ")");
      classes.push_back({name, fsutil::list_dir(dir.string(), false, ".png", who)});
    }
  }
  MG_CHECK(!classes.empty(), who, "no classes listed for split '", split, "' in ", root);
  load(std::move(classes), {.who = who,
                            .height = image_size,
                            .width = image_size,
                            .channels = 3,
                            .uint8_storage = uint8_storage});
}

}  // namespace metagrad::meta
