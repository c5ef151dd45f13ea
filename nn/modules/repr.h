// Formatting helpers for the modules' extra_repr(): numbers and flags written the way
// PyTorch's Python repr writes them (0.1, 1e-05, 1.0, True), so printed models read alike.
#pragma once
#include <array>
#include <charconv>
#include <cstdint>
#include <string>
#include <vector>

namespace metagrad::nn::detail {

// Python's repr of a float: shortest round-trip digits, ".0" on integral values.
inline std::string py_float(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // 'n': inf / nan
  return s;
}

inline std::string py_bool(bool b) {
  return b ? "True" : "False";
}

// (a, b) as a Python tuple. (Built by appending: GCC 12 warns falsely, -Wrestrict, on
// "(" + std::to_string(...).)
inline std::string py_tuple(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s.append(", ");
    s.append(std::to_string(v[i]));
  }
  s.append(v.size() == 1 ? ",)" : ")");
  return s;
}

inline std::string py_tuple(const std::array<int64_t, 2>& a) {
  return py_tuple(std::vector<int64_t>{a[0], a[1]});
}

// An int when both entries agree (as PyTorch shows an int it was given), else a tuple.
inline std::string py_int_or_tuple(const std::array<int64_t, 2>& a) {
  return a[0] == a[1] ? std::to_string(a[0]) : py_tuple(a);
}

}  // namespace metagrad::nn::detail
