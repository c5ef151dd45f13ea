// Omniglot (Lake et al. 2015) with the character split of Vinyals et al. 2016, read from the
// original layout:
//   root/images_background/<Alphabet>/characterNN/*.png   (105x105, 1-bit, black ink on white)
//   root/images_evaluation/<Alphabet>/characterNN/*.png
//   root/splits/vinyals_torchmeta/{train,val,test}.json   (torchmeta's copy of the split)
// Splits: train 1028, val 172, test 423 characters; trainval = train + val (1200). With
// rotations each character gives 4 classes (Note [Rotation classes] in meta/datasets.h):
// 4112 / 688 / 1692 / 4800, the protonets convention of "Alphabet/characterNN/rot090" names.
//
// Pixels: ink = 1, background = 0, as Finn et al.'s MAML code (1 - p / 255), resized once
// from 105x105 to image_size with area averaging (Note [Area resize] in meta/image.h; many
// codes use PIL's LANCZOS instead). Images are float32 [1, image_size, image_size] in [0, 1].
// The PNGs are decoded in parallel (OpenMP over files): on two cores with a warm file cache
// the train split (20,560 files) loads in about 0.5 s and all 32,460 in about 0.8 s; reading
// them cold from disk took about 3.5 s for train. Memory: 784 floats per stored image
// (rotations are made on the fly), 64 MB for train.
#pragma once
#include <string>
#include <vector>

#include "meta/datasets.h"

namespace metagrad::meta {

class OmniglotDataset : public ImageDataset {
 public:
  // split: "train", "val", "test" or "trainval". Classes are ordered background before
  // evaluation, alphabets by name, characters as listed in the split file; a character's 20
  // images (one per drawer) are its PNGs sorted by name. max_alphabets > 0 keeps only the
  // first that many alphabets of the split (quick tests); -1 keeps all.
  explicit OmniglotDataset(const std::string& root, const std::string& split = "train",
                           int64_t image_size = 28, bool rotations = true,
                           int64_t max_alphabets = -1);

  // The characters of a split, "Alphabet/characterNN", in the order above, read from the
  // split file only (no image is opened).
  static std::vector<std::string> split_characters(const std::string& root,
                                                   const std::string& split);
};

}  // namespace metagrad::meta
