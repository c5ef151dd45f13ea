// Class-indexed image datasets held in memory, for few-shot episodes (meta/episodes.h).
//
// ImageDataset is the store: classes of images [C, H, W], all the same size, values in [0, 1]
// (see meta/image.h for the pixel convention). Readers for on-disk layouts fill it once:
//   ImageFolderDataset   root/<class>/*.png                                   (generic)
//   MiniImageNetDataset  root/images/*.png + root/{train,val,test}.csv       (Ravi & Larochelle)
//   CifarFSDataset       root/data/cifar100/data/<class>/*.png
//                        + root/splits/bertinetto/{train,val,test}.txt        (Bertinetto et al.)
//   OmniglotDataset      meta/omniglot.h
// Files are decoded in parallel (OpenMP over files) and resized once with area averaging
// (Note [Area resize] in meta/image.h). Errors are metagrad::Error naming the reader and the
// file: "[image_folder] cannot decode PNG /data/x/1.png: not a PNG file (bad signature)".
//
// Note [Rotation classes]: with rotations, each stored class c0 also appears rotated by 90,
// 180 and 270 degrees (counter-clockwise, exact pixel permutations) as three more classes;
// class c = 4 * c0 + r is c0 rotated by r quarter turns, named "<name>/rot000" .. "/rot270"
// (the naming of the prototypical-networks split files). Rotated images are produced when
// read, so the store holds each image once.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace metagrad::meta {

class ImageDataset {
 public:
  // An in-memory dataset from a tensor of images [n, C, H, W] (floating, converted to
  // float32) grouped by class: the first class_sizes[0] images are class 0, and so on.
  // names default to "0", "1", ...; with rotations (H == W required) see Note [Rotation classes].
  ImageDataset(const Tensor& images, const std::vector<int64_t>& class_sizes,
               std::vector<std::string> names = {}, bool rotations = false);
  virtual ~ImageDataset() = default;
  ImageDataset(const ImageDataset&) = default;
  ImageDataset& operator=(const ImageDataset&) = default;
  ImageDataset(ImageDataset&&) = default;
  ImageDataset& operator=(ImageDataset&&) = default;

  int64_t num_classes() const { return static_cast<int64_t>(base_names_.size()) * rotations_; }
  int64_t num_images(int64_t c) const;  // images in class c
  int64_t total_images() const;         // over all classes (rotations included)
  int64_t channels() const { return channels_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  Shape image_shape() const { return {channels_, height_, width_}; }
  // 1, or 4 with rotation classes (Note [Rotation classes]).
  int64_t num_rotations() const { return rotations_; }
  std::string class_name(int64_t c) const;
  // Classes before rotation, and what they hold (images [n, C, H, W], float32 or uint8 when
  // stored compactly; see uint8_storage below).
  int64_t num_base_classes() const { return static_cast<int64_t>(base_names_.size()); }
  const std::string& base_class_name(int64_t b) const;
  const Tensor& storage() const { return data_; }

  // Image i of class c as float32 [C, H, W] (a copy).
  Tensor image(int64_t c, int64_t i) const;
  // All images of class c, [num_images(c), C, H, W].
  Tensor class_images(int64_t c) const;
  // Writes image i of class c (C * H * W floats, planar) to dst: the sampler's fast path.
  void copy_image(int64_t c, int64_t i, float* dst) const;

 protected:
  ImageDataset() = default;

  // A class and its image files, in the order they get indices.
  struct ClassFiles {
    std::string name;
    std::vector<std::string> files;
  };
  struct LoadSpec {
    const char* who = "image_dataset";  // the reader's name, first in every message
    int64_t height = 0, width = 0;      // every image is resized to this (area)
    int64_t channels = 0;               // 1, 3, or 0: as the first file
    bool invert = false;                // 1 - p / 255 (ink = 1)
    bool rotations = false;             // Note [Rotation classes]
    // Store 8-bit values (4x less memory) instead of float32. Lossless when no image needs
    // resizing (every value is then p / 255); resized values are rounded to 1/255 steps.
    bool uint8_storage = false;
  };
  // Decodes every file (OpenMP over files), resizes and stores; throws the first error.
  void load(std::vector<ClassFiles> classes, const LoadSpec& spec);

 private:
  void check_index(int64_t c, int64_t i) const;

  std::vector<std::string> base_names_;
  std::vector<int64_t> offsets_;  // image index range of base class b: [offsets_[b], offsets_[b+1])
  Tensor data_;                   // [total, C, H, W], float32 or uint8
  int64_t channels_ = 0, height_ = 0, width_ = 0;
  int64_t rotations_ = 1;
};

// "A folder of class subfolders of images": root/<class>/<image>.png. Classes are the
// subfolders sorted by name, images the *.png files in each sorted by name (other files are
// ignored; an empty class folder is an error). channels = 0 keeps the first image's (gray or
// RGB) and converts the others to it.
class ImageFolderDataset : public ImageDataset {
 public:
  explicit ImageFolderDataset(const std::string& root, int64_t image_size = 28,
                              int64_t channels = 0, bool rotations = false,
                              bool uint8_storage = false);
};

// miniImageNet in the layout of Ravi & Larochelle: root/images/<file> and root/<split>.csv,
// a csv with the header "filename,label" and one image per line. Classes are the labels in
// order of first appearance, images in csv order. Only PNG images are decoded (the original
// JPEGs must be converted); image_size 84 is the usual. Stored as uint8 by default (the
// common 84x84 files then load losslessly in a quarter of the memory).
class MiniImageNetDataset : public ImageDataset {
 public:
  explicit MiniImageNetDataset(const std::string& root, const std::string& split = "train",
                               int64_t image_size = 84, bool uint8_storage = true);
};

// CIFAR-FS (Bertinetto et al. 2019) in its distributed layout: images in
// root/data/cifar100/data/<class>/*.png and the class names of each split, one per line, in
// root/splits/bertinetto/<split>.txt (train 64, val 16, test 20 classes). RGB, 32x32.
class CifarFSDataset : public ImageDataset {
 public:
  explicit CifarFSDataset(const std::string& root, const std::string& split = "train",
                          int64_t image_size = 32, bool uint8_storage = true);
};

}  // namespace metagrad::meta
