// File-system helpers shared by the dataset readers (internal to meta/): sorted folder
// listings and line-oriented split files, with errors in the readers' message style.
#pragma once
#include <string>
#include <vector>

namespace metagrad::meta::fsutil {

// Full paths of the entries of `dir`, sorted by name: subfolders when dirs, else regular
// files whose name ends with `ext` (case-insensitive; "" = any). Hidden entries are skipped.
std::vector<std::string> list_dir(const std::string& dir, bool dirs, const std::string& ext,
                                  const char* who);

// The lines of a text file, trailing '\r' and spaces removed. A missing file throws
// "[who] <missing_msg><path>".
std::vector<std::string> read_lines(const std::string& path, const char* who,
                                    const char* missing_msg);

}  // namespace metagrad::meta::fsutil
