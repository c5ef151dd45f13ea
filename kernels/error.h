// metagrad::Error and the checks every op makes. Messages start with the op in brackets and
// show the shapes involved: "[matmul] shapes [3, 4] and [5, 6] cannot be multiplied".
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace metagrad {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
[[noreturn]] void fail(const char* op, Args&&... args) {
  std::ostringstream os;
  os << '[' << op << "] ";
  (os << ... << std::forward<Args>(args));
  throw Error(os.str());
}
}  // namespace detail

}  // namespace metagrad

// MG_CHECK(cond, "op", parts...): throws metagrad::Error("[op] parts...") unless cond holds.
#define MG_CHECK(cond, op, ...)                                 \
  do {                                                          \
    if (!(cond)) ::metagrad::detail::fail(op, __VA_ARGS__);     \
  } while (0)
