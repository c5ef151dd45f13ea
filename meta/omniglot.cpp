// Omniglot with the Vinyals split (meta/omniglot.h): the split files are torchmeta's JSON,
// {"background" | "evaluation": {Alphabet: [characterNN, ...]}}, parsed with nlohmann-json.
#include "meta/omniglot.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "meta/fs_util.h"

namespace metagrad::meta {

namespace fs = std::filesystem;

namespace {

constexpr const char* kWho = "omniglot";

struct Character {
  std::string folder;  // images_background or images_evaluation
  std::string alphabet;
  std::string name;  // characterNN
};

std::vector<Character> read_split(const std::string& root, const std::string& split,
                                  int64_t max_alphabets) {
  MG_CHECK(fs::is_directory(root), kWho, "data folder missing: ", root,
           " (expected images_background/, images_evaluation/ and splits/ inside)");
  std::vector<std::string> parts;
  if (split == "train" || split == "val" || split == "test")
    parts = {split};
  else if (split == "trainval")
    parts = {"train", "val"};
  else
    ::metagrad::detail::fail(kWho, "unknown split '", split,
                             "' (expected train, val, test or trainval)");

  // One pass per background/evaluation so that trainval keeps "background before evaluation".
  std::vector<nlohmann::json> docs;
  std::vector<std::string> files;  // docs[i] came from files[i], for the messages
  for (const std::string& part : parts) {
    const fs::path file = fs::path(root) / "splits" / "vinyals_torchmeta" / (part + ".json");
    // A folder opens "fine" as an ifstream and fails only on the first read, with libstdc++'s
    // "basic_filebuf::underflow" instead of a message about the file.
    MG_CHECK(fs::exists(file), kWho, "split file missing: ", file.string());
    MG_CHECK(fs::is_regular_file(file), kWho, "split file ", file.string(),
             " is not a regular file");
    std::ifstream f(file);
    MG_CHECK(f.good(), kWho, "cannot open split file ", file.string());
    try {
      docs.push_back(nlohmann::json::parse(f));
    } catch (const std::exception& e) {
      ::metagrad::detail::fail(kWho, "cannot parse split file ", file.string(), ": ", e.what());
    }
    MG_CHECK(docs.back().is_object(), kWho, "split file ", file.string(), " is not a JSON object");
    files.push_back(file.string());
  }
  std::vector<Character> out;
  int64_t alphabets = 0;
  for (const char* group : {"background", "evaluation"}) {
    // nlohmann::json keeps object keys sorted: alphabets come by name.
    std::vector<std::pair<std::string, const nlohmann::json*>> entries;
    for (size_t d = 0; d < docs.size(); ++d) {
      auto g = docs[d].find(group);
      if (g == docs[d].end()) continue;
      MG_CHECK(g->is_object(), kWho, "split file ", files[d], ": \"", group,
               "\" must be an object {alphabet: [characters]}, got ", g->type_name());
      for (auto it = g->begin(); it != g->end(); ++it) entries.emplace_back(it.key(), &it.value());
    }
    std::stable_sort(entries.begin(), entries.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string last;
    for (const auto& [alphabet, chars] : entries) {
      if (alphabet != last) {
        if (max_alphabets > 0 && alphabets == max_alphabets) return out;
        ++alphabets;
        last = alphabet;
      }
      MG_CHECK(chars->is_array(), kWho, "split '", split, "': alphabet ", alphabet,
               " is not a list of characters");
      for (const nlohmann::json& c : *chars) {
        MG_CHECK(c.is_string(), kWho, "split '", split, "': alphabet ", alphabet,
                 " lists a non-string character");
        out.push_back({std::string("images_") + group, alphabet, c.get<std::string>()});
      }
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> OmniglotDataset::split_characters(const std::string& root,
                                                           const std::string& split) {
  std::vector<std::string> names;
  for (const Character& c : read_split(root, split, -1)) names.push_back(c.alphabet + "/" + c.name);
  return names;
}

OmniglotDataset::OmniglotDataset(const std::string& root, const std::string& split,
                                 int64_t image_size, bool rotations, int64_t max_alphabets) {
  std::vector<ClassFiles> classes;
  for (const Character& c : read_split(root, split, max_alphabets)) {
    const fs::path dir = fs::path(root) / c.folder / c.alphabet / c.name;
    MG_CHECK(fs::is_directory(dir), kWho, "character folder missing: ", dir.string());
    classes.push_back(
        {c.alphabet + "/" + c.name, fsutil::list_dir(dir.string(), false, ".png", kWho)});
  }
  load(std::move(classes), {.who = kWho,
                            .height = image_size,
                            .width = image_size,
                            .channels = 1,
                            .invert = true,
                            .rotations = rotations});
}

}  // namespace metagrad::meta
