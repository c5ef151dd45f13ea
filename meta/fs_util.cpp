// File-system helpers for the dataset readers (meta/fs_util.h).
#include "meta/fs_util.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "tensor/error.h"

namespace metagrad::meta::fsutil {

namespace fs = std::filesystem;

namespace {

bool ends_with_icase(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) ==
           std::tolower(static_cast<unsigned char>(b));
  });
}

}  // namespace

std::vector<std::string> list_dir(const std::string& dir, bool dirs, const std::string& ext,
                                  const char* who) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) ::metagrad::detail::fail(who, "cannot list folder ", dir, ": ", ec.message());
  std::vector<std::string> out;
  for (const fs::directory_entry& e : it) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (dirs ? e.is_directory() : (e.is_regular_file() && ends_with_icase(name, ext)))
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> read_lines(const std::string& path, const char* who,
                                    const char* missing_msg) {
  std::ifstream f(path);
  MG_CHECK(f.good(), who, missing_msg, path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

}  // namespace metagrad::meta::fsutil
