// safetensors and .npy reading and writing (nn/checkpoint.h), with the atomic write and the
// validate-everything-first read of Note [Checkpoint safety].
#include "nn/checkpoint.h"

#include <cstdio>
#include <cstdlib>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>
#include <vector>

#include "kernels/strided.h"
#include "tensor/grad_mode.h"

namespace metagrad::nn {

// Both formats are little-endian on disk and we copy bytes straight between the file and
// tensor memory. Every machine we target is little-endian; a big-endian port would byte-swap
// after reading and before writing.
static_assert(std::endian::native == std::endian::little,
              "checkpoint I/O assumes a little-endian host");

namespace {

using json = nlohmann::json;

// The reference reader's limit: a longer header is refused before anything is allocated.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// "[op] <path>: <parts...>"
template <typename... Args>
[[noreturn]] void fail_file(const char* op, const std::string& path, Args&&... args) {
  detail::fail(op, path, ": ", std::forward<Args>(args)...);
}

std::string errno_message(int e) {
  return std::error_code(e, std::generic_category()).message();
}

// ---- writing: a temporary file renamed over the target ------------------------------

// Owns the temporary file until commit(): whatever goes wrong before the rename (a thrown
// error, a full disk), the destructor closes and unlinks it and the target is untouched.
class AtomicFile {
 public:
  AtomicFile(const char* op, std::string target) : op_(op), target_(std::move(target)) {
    namespace fs = std::filesystem;
    MG_CHECK(!target_.empty() && fs::path(target_).has_filename(), op_, "'", target_,
             "' does not name a file to write");
    // Saving through a symlink replaces the file it points to, not the link (as writing to it
    // in place would).
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(target_, ec))) {
      const fs::path real = fs::weakly_canonical(target_, ec);
      if (ec) fail_file(op_, target_, "cannot resolve the symlink: ", ec.message());
      target_ = real.string();
    }
    const fs::path p(target_);
    // Same directory as the target: rename() is only atomic within one file system.
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    static std::atomic<uint64_t> counter{0};
    std::random_device rd;
    for (int attempt = 0; attempt < 16; ++attempt) {
      std::ostringstream name;
      name << '.' << p.filename().string() << ".tmp-" << ::getpid() << '-' << counter++ << '-'
           << std::hex << rd();
      tmp_ = (dir / name.str()).string();
      fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) {
        // A file replaced keeps its permissions (a private 0600 checkpoint stays private).
        struct stat old {};
        if (::stat(target_.c_str(), &old) == 0 && ::fchmod(fd_, old.st_mode & 07777) != 0) {
          const int e = errno;
          ::close(fd_);  // a constructor that throws runs no destructor: clean up here
          ::unlink(tmp_.c_str());
          fail_file(op_, target_,
                    "cannot give the temporary file the old file's mode: ", errno_message(e));
        }
        return;
      }
      if (errno != EEXIST) break;
    }
    const int e = errno;
    tmp_.clear();
    fail_file(op_, target_, "cannot create a temporary file in '", dir.string(),
              "': ", errno_message(e));
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
  }

  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      // One write() moves at most ~2 GiB on Linux; chunking keeps the loop honest.
      const ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t{1} << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        const int e = errno;
        fail_file(op_, target_, "writing '", tmp_, "' failed: ", errno_message(e));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  // fsync, close, rename over the target, then fsync the directory so the rename itself
  // survives a power cut.
  void commit() {
    if (::fsync(fd_) != 0) {
      const int e = errno;
      fail_file(op_, target_, "fsync of '", tmp_, "' failed: ", errno_message(e));
    }
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) {
      const int e = errno;
      fail_file(op_, target_, "closing '", tmp_, "' failed: ", errno_message(e));
    }
    if (::rename(tmp_.c_str(), target_.c_str()) != 0) {
      const int e = errno;
      fail_file(op_, target_, "cannot rename '", tmp_, "' over it: ", errno_message(e));
    }
    tmp_.clear();  // it is the target now
    namespace fs = std::filesystem;
    const fs::path p(target_);
    const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      // Best effort: the new file is already in place, and some file systems refuse fsync on
      // a directory.
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  const char* op_;
  std::string target_;
  std::string tmp_;
  int fd_ = -1;
};

// ---- reading ----------------------------------------------------------------------------

class InFile {
 public:
  InFile(const char* op, std::string path) : op_(op), path_(std::move(path)) {
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer, before the check below can
    // refuse it; reads of a regular file ignore the flag.
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd_ < 0) {
      const int e = errno;
      fail_file(op_, path_, "cannot open: ", errno_message(e));
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      fail_file(op_, path_, "not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  InFile(const InFile&) = delete;
  InFile& operator=(const InFile&) = delete;
  ~InFile() { ::close(fd_); }

  uint64_t size() const { return size_; }

  // Reads exactly n bytes (the file was validated to hold them; a shorter read means it
  // changed under us).
  void read(void* data, size_t n) {
    char* p = static_cast<char*>(data);
    while (n > 0) {
      const ssize_t r = ::read(fd_, p, std::min<size_t>(n, size_t{1} << 30));
      if (r < 0) {
        if (errno == EINTR) continue;
        const int e = errno;
        fail_file(op_, path_, "read failed: ", errno_message(e));
      }
      if (r == 0) fail_file(op_, path_, "file ended early (was it changed while reading?)");
      p += r;
      n -= static_cast<size_t>(r);
    }
  }

 private:
  const char* op_;
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// BOOL data must be bytes 0 or 1: any other byte read as a C++ bool is undefined behaviour.
// Returns the index of the first bad element, or -1.
int64_t first_bad_bool(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw_data());
  for (int64_t i = 0; i < t.numel(); ++i)
    if (p[i] > 1) return i;
  return -1;
}

// Row-major bytes of t on the CPU, without touching autograd.
Tensor host_contiguous(const Tensor& t) {
  NoGradGuard g;
  Tensor c = t.detach();
  if (!c.device().is_cpu()) c = c.to(Device::cpu());
  return c.contiguous();
}

// numel and byte size of a shape read from a file, refusing overflow, and shapes no tensor can
// have: more dims than the kernels take, or strides beyond int64 (a zero-size [0, 2^62, 2^62]).
bool checked_nbytes(const Shape& shape, size_t itemsize, uint64_t* nbytes) {
  if (shape.size() > static_cast<size_t>(kernels::kMaxDims)) return false;
  uint64_t n = 1;
  int64_t stride = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n) ||
        __builtin_mul_overflow(stride, std::max<int64_t>(d, 1), &stride))
      return false;
  if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  return !__builtin_mul_overflow(n, static_cast<uint64_t>(itemsize), nbytes);
}

// ---- safetensors ------------------------------------------------------------------------

const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::Bool:
      return "BOOL";
    case DType::UInt8:
      return "U8";
    case DType::Int32:
      return "I32";
    case DType::Int64:
      return "I64";
    case DType::Float32:
      return "F32";
    case DType::Float64:
      return "F64";
  }
  return "?";
}

bool st_dtype_from_name(const std::string& s, DType* t) {
  for (DType d :
       {DType::Bool, DType::UInt8, DType::Int32, DType::Int64, DType::Float32, DType::Float64}) {
    if (s == st_dtype_name(d)) {
      *t = d;
      return true;
    }
  }
  return false;
}

struct Entry {
  std::string name;
  Tensor data;  // contiguous, on the CPU
  uint64_t begin = 0, end = 0;
  Shape shape;  // when loading: what to allocate once the whole header checked out
  DType dtype = DType::Float32;
};

void save_safetensors_impl(const char* op, const std::string& path, const ParamMap& tensors,
                           const Metadata& metadata) {
  // Everything that can fail on the input fails here, before a file is created.
  std::vector<Entry> entries;
  entries.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    MG_CHECK(name != "__metadata__", op, path,
             ": '__metadata__' is reserved and cannot name a tensor");
    MG_CHECK(t.defined(), op, path, ": tensor '", name, "' is undefined");
    entries.push_back({name, host_contiguous(t)});
  }
  // Widest dtype first, then by name (the reference writer's order): with the data section
  // starting 8-byte aligned, every tensor starts at a multiple of its element size.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return dtype_size(a.data.dtype()) > dtype_size(b.data.dtype());
  });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (Entry& e : entries) {
    e.begin = offset;
    e.end = offset + static_cast<uint64_t>(e.data.numel()) * dtype_size(e.data.dtype());
    offset = e.end;
    header[e.name] = {{"dtype", st_dtype_name(e.data.dtype())},
                      {"shape", e.data.shape()},
                      {"data_offsets", {e.begin, e.end}}};
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& ex) {  // a name or metadata string that is not UTF-8
    fail_file(op, path, "cannot encode the header: ", ex.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  // Readers (ours, the reference) refuse longer headers: do not write what cannot be read.
  MG_CHECK(text.size() <= kMaxHeaderBytes, op, path, ": the header would be ", text.size(),
           " bytes, over the limit of ", kMaxHeaderBytes);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));

  AtomicFile f(op, path);
  f.write(len, 8);
  f.write(text.data(), text.size());
  for (const Entry& e : entries)
    if (e.end > e.begin) f.write(e.data.raw_data(), e.end - e.begin);
  f.commit();
}

// Parses JSON, refusing duplicate object keys anywhere (nlohmann would keep the last one,
// and two readers could then disagree about which tensor a name means).
json parse_strict(const char* op, const std::string& path, const std::string& text,
                  const char* what) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (ev == json::parse_event_t::object_end) {
      keys.pop_back();
    } else if (ev == json::parse_event_t::key && !keys.empty()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, cb);
  } catch (const json::parse_error& ex) {
    fail_file(op, path, what, " is not valid JSON: ", ex.what());
  }
  if (!duplicate.empty()) fail_file(op, path, what, " has the key '", duplicate, "' twice");
  return j;
}

// "an array", "a number", ... for messages.
std::string json_type(const json& j) {
  const std::string t = j.type_name();
  return (t == "array" || t == "object" ? "an " : "a ") + t;
}

ParamMap load_safetensors_impl(const char* op, const std::string& path, Metadata* metadata) {
  InFile f(op, path);
  const uint64_t size = f.size();
  if (size < 8)
    fail_file(op, path, "file is too short (", size, " bytes) for the 8-byte header length");
  uint8_t len[8];
  f.read(len, 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{len[i]} << (8 * i);
  if (n > kMaxHeaderBytes)
    fail_file(op, path, "header length ", n, " is over the limit of ", kMaxHeaderBytes, " bytes");
  if (n > size - 8)
    fail_file(op, path, "header length ", n, " is larger than the rest of the file (", size - 8,
              " bytes)");
  std::string text(n, '\0');
  f.read(text.data(), n);
  if (text.empty() || text[0] != '{')
    fail_file(op, path, "header is not a JSON object (it must start with '{')");
  const json header = parse_strict(op, path, text, "header");
  if (!header.is_object())
    fail_file(op, path, "header is not a JSON object (it is ", json_type(header), ")");

  const uint64_t data_size = size - 8 - n;
  Metadata meta;
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object())
        fail_file(op, path, "'__metadata__' is ", json_type(info), ", not an object");
      for (const auto& [k, v] : info.items()) {
        if (!v.is_string())
          fail_file(op, path, "'__metadata__' value of key '", k, "' is ", json_type(v),
                    ", not a string");
        meta[k] = v.get<std::string>();
      }
      continue;
    }
    auto bad = [&](auto&&... what) { fail_file(op, path, what..., " (tensor '", name, "')"); };
    if (!info.is_object()) bad("entry is ", json_type(info), ", not an object");
    for (const auto& [k, v] : info.items()) {
      (void)v;
      if (k != "dtype" && k != "shape" && k != "data_offsets") bad("unknown field '", k, "'");
    }
    for (const char* k : {"dtype", "shape", "data_offsets"})
      if (!info.contains(k)) bad("entry has no '", k, "'");
    const json& jd = info["dtype"];
    const json& js = info["shape"];
    const json& jo = info["data_offsets"];
    if (!jd.is_string()) bad("'dtype' is ", json_type(jd), ", not a string");
    DType dtype{};
    if (!st_dtype_from_name(jd.get<std::string>(), &dtype))
      bad("unsupported dtype '", jd.get<std::string>(),
          "' (supported: F32, F64, I64, I32, U8, BOOL)");
    if (!js.is_array()) bad("'shape' is ", json_type(js), ", not an array");
    Shape shape;
    for (const json& d : js) {
      if (!d.is_number_integer()) bad("'shape' holds ", json_type(d), ", not an integer");
      if (d.is_number_unsigned()) {
        if (d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          bad("dimension ", d.get<uint64_t>(), " is too large");
        shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
      } else {
        if (d.get<int64_t>() < 0) bad("negative dimension ", d.get<int64_t>(), " in 'shape'");
        shape.push_back(d.get<int64_t>());
      }
    }
    if (!jo.is_array() || jo.size() != 2) bad("'data_offsets' must be an array of two integers");
    uint64_t off[2];
    for (int i = 0; i < 2; ++i) {
      if (!jo[i].is_number_integer())
        bad("'data_offsets' holds ", json_type(jo[i]), ", not an integer");
      if (!jo[i].is_number_unsigned()) bad("negative data offset ", jo[i].get<int64_t>());
      off[i] = jo[i].get<uint64_t>();
    }
    const std::string where =
        "data_offsets [" + std::to_string(off[0]) + ", " + std::to_string(off[1]) + "]";
    if (off[0] > off[1]) bad(where, " begin after they end");
    if (off[1] > data_size)
      bad(where, " are out of range: the data section holds ", data_size, " bytes");
    uint64_t nbytes = 0;
    if (!checked_nbytes(shape, dtype_size(dtype), &nbytes))
      bad("shape ", shape_str(shape), " is too large");
    if (off[1] - off[0] != nbytes)
      bad(where, " span ", off[1] - off[0], " bytes but shape ", shape_str(shape), " of ",
          jd.get<std::string>(), " needs ", nbytes);
    entries.push_back({name, Tensor{}, off[0], off[1], std::move(shape), dtype});
  }
  // The tensors must tile the data section exactly: no gap, no overlap, no trailing bytes.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
  });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < pos)
      fail_file(op, path, "tensor data overlap: [", e.begin, ", ", e.end, ") starts inside [",
                prev->begin, ", ", prev->end, ") (tensor '", e.name, "', tensor '", prev->name,
                "')");
    if (e.begin > pos)
      fail_file(op, path, "gap of ", e.begin - pos, " bytes in the data before offset ", e.begin,
                " (tensor '", e.name, "')");
    pos = e.end;
    prev = &e;
  }
  if (pos != data_size)
    fail_file(op, path, data_size - pos, " trailing bytes after the last tensor's data");

  // Valid: read the data section in file order, straight into the tensors. Allocating only
  // now bounds the memory by the file size (overlapping entries could claim far more).
  ParamMap out;
  for (Entry& e : entries) {
    e.data = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) f.read(e.data.raw_data(), e.end - e.begin);
    if (e.data.dtype() == DType::Bool) {
      const int64_t i = first_bad_bool(e.data);
      if (i >= 0)
        fail_file(op, path, "BOOL element ", i, " holds a byte other than 0 or 1 (tensor '", e.name,
                  "')");
    }
    out.emplace(e.name, std::move(e.data));
  }
  if (metadata) *metadata = std::move(meta);
  return out;
}

// ---- npy ----------------------------------------------------------------------------------

const char* npy_descr(DType t) {
  switch (t) {
    case DType::Bool:
      return "|b1";
    case DType::UInt8:
      return "|u1";
    case DType::Int32:
      return "<i4";
    case DType::Int64:
      return "<i8";
    case DType::Float32:
      return "<f4";
    case DType::Float64:
      return "<f8";
  }
  return "?";
}

// The header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (2,
// 3), }. This reads exactly that grammar (strings, True/False, tuples of integers).
class NpyHeaderParser {
 public:
  NpyHeaderParser(const char* op, const std::string& path, const std::string& s)
      : op_(op), path_(path), s_(s) {}

  void parse(std::string* descr, bool* fortran, Shape* shape) {
    std::set<std::string> seen;
    ws();
    expect('{');
    while (true) {
      ws();
      if (peek() == '}') break;
      const std::string key = str();
      if (!seen.insert(key).second) bad("key '", key, "' appears twice");
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        *descr = str();
      } else if (key == "fortran_order") {
        *fortran = boolean();
      } else if (key == "shape") {
        *shape = tuple();
      } else {
        bad("unexpected key '", key, "'");
      }
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      ws();
      if (peek() != '}') bad("expected ',' or '}' at byte ", i_);
    }
    ++i_;
    ws();
    if (i_ != s_.size()) bad("unexpected text after the header dict at byte ", i_);
    for (const char* k : {"descr", "fortran_order", "shape"})
      if (!seen.count(k)) bad("header has no '", k, "'");
  }

 private:
  template <typename... Args>
  [[noreturn]] void bad(Args&&... args) {
    fail_file(op_, path_, "bad header: ", std::forward<Args>(args)...);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  void expect(char c) {
    if (peek() != c) bad("expected '", c, "' at byte ", i_);
    ++i_;
  }
  std::string str() {
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string at byte ", i_);
    const size_t start = ++i_;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') bad("escape sequences are not supported (byte ", i_, ")");
      ++i_;
    }
    if (i_ >= s_.size()) bad("unterminated string");
    return s_.substr(start, i_++ - start);
  }
  bool boolean() {
    if (s_.compare(i_, 4, "True") == 0) return i_ += 4, true;
    if (s_.compare(i_, 5, "False") == 0) return i_ += 5, false;
    bad("expected True or False at byte ", i_);
  }
  Shape tuple() {
    Shape shape;
    expect('(');
    while (true) {
      ws();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') bad("expected a non-negative integer at byte ", i_);
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (__builtin_mul_overflow(v, int64_t{10}, &v) ||
            __builtin_add_overflow(v, int64_t{peek() - '0'}, &v))
          bad("dimension too large at byte ", i_);
        ++i_;
      }
      if (peek() == 'L') ++i_;  // written by NumPy under Python 2
      shape.push_back(v);
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      ws();
      if (peek() != ')') bad("expected ',' or ')' at byte ", i_);
    }
    ++i_;
    return shape;
  }

  const char* op_;
  const std::string& path_;
  const std::string& s_;
  size_t i_ = 0;
};

}  // namespace

void save_safetensors(const std::string& path, const ParamMap& tensors, const Metadata& metadata) {
  save_safetensors_impl("save_safetensors", path, tensors, metadata);
}

ParamMap load_safetensors(const std::string& path, Metadata* metadata) {
  return load_safetensors_impl("load_safetensors", path, metadata);
}

void save_checkpoint(const std::string& path, const std::map<std::string, ParamMap>& groups,
                     const Metadata& metadata) {
  const char* op = "save_checkpoint";
  MG_CHECK(!metadata.count(kCheckpointGroupsKey), op, path, ": metadata key '",
           kCheckpointGroupsKey, "' is reserved");
  ParamMap flat;
  json names = json::array();
  for (const auto& [group, tensors] : groups) {
    MG_CHECK(!group.empty() && group.find('.') == std::string::npos, op, path, ": group name '",
             group, "' must be non-empty and contain no '.'");
    names.push_back(group);
    for (const auto& [name, t] : tensors) flat.emplace(group + "." + name, t);
  }
  Metadata meta = metadata;
  meta[kCheckpointGroupsKey] = names.dump();
  save_safetensors_impl(op, path, flat, meta);
}

Checkpoint load_checkpoint(const std::string& path) {
  const char* op = "load_checkpoint";
  Checkpoint ck;
  ParamMap flat = load_safetensors_impl(op, path, &ck.metadata);
  const auto it = ck.metadata.find(kCheckpointGroupsKey);
  const bool listed = it != ck.metadata.end();
  if (listed) {
    const json names = parse_strict(op, path, it->second, "the group list");
    if (!names.is_array())
      fail_file(op, path, "metadata '", kCheckpointGroupsKey, "' is not a JSON array");
    for (const json& g : names) {
      if (!g.is_string() || g.get<std::string>().empty() ||
          g.get<std::string>().find('.') != std::string::npos)
        fail_file(op, path, "metadata '", kCheckpointGroupsKey, "' holds an invalid group name ",
                  g.dump());
      ck.groups[g.get<std::string>()];
    }
    ck.metadata.erase(it);
  }
  for (auto& [key, t] : flat) {
    const size_t dot = key.find('.');
    if (dot == std::string::npos || dot == 0)
      fail_file(op, path, "tensor '", key, "' is in no group (names are 'group.name')");
    const std::string group = key.substr(0, dot);
    if (listed && !ck.groups.count(group))
      fail_file(op, path, "tensor '", key, "' is in group '", group,
                "', which the group list does not name");
    ck.groups[group].emplace(key.substr(dot + 1), std::move(t));
  }
  return ck;
}

void validate_against(const ParamMap& loaded, const ParamMap& expected, bool strict,
                      const char* op) {
  constexpr int kMaxListed = 10;  // a wrong prefix mismatches every key: list a few
  auto list = [](const std::vector<std::string>& names) {
    std::string s;
    for (size_t i = 0; i < names.size() && i < kMaxListed; ++i)
      s += (i ? ", '" : "'") + names[i] + "'";
    if (names.size() > kMaxListed)
      s += " and " + std::to_string(names.size() - kMaxListed) + " more";
    return s;
  };
  std::vector<std::string> missing, unexpected, problems;
  for (const auto& [name, want] : expected) {
    const auto it = loaded.find(name);
    if (it == loaded.end()) {
      if (strict) missing.push_back(name);
      continue;
    }
    const Tensor& got = it->second;
    if (!want.defined() || !got.defined()) {
      problems.push_back("'" + name + "' is undefined in the " +
                         (got.defined() ? "expected state" : "checkpoint"));
      continue;
    }
    if (got.shape() != want.shape())
      problems.push_back("'" + name + "': shape " + shape_str(got.shape()) +
                         " in the checkpoint, " + shape_str(want.shape()) + " expected");
    if (got.dtype() != want.dtype())
      problems.push_back("'" + name + "': dtype " + dtype_name(got.dtype()) +
                         " in the checkpoint, " + dtype_name(want.dtype()) + " expected");
  }
  if (strict)
    for (const auto& [name, t] : loaded)
      if (!expected.count(name)) unexpected.push_back(name);
  if (missing.empty() && unexpected.empty() && problems.empty()) return;
  std::string msg = "the checkpoint does not match";
  char sep = ':';
  auto add = [&](const std::string& part) {
    msg += sep;
    msg += ' ' + part;
    sep = ';';
  };
  if (!missing.empty()) add("missing keys " + list(missing));
  if (!unexpected.empty()) add("unexpected keys " + list(unexpected));
  for (size_t i = 0; i < problems.size() && i < kMaxListed; ++i) add(problems[i]);
  if (problems.size() > kMaxListed)
    add("and " + std::to_string(problems.size() - kMaxListed) + " more mismatches");
  detail::fail(op, msg);
}

void save_npy(const std::string& path, const Tensor& t) {
  const char* op = "save_npy";
  MG_CHECK(t.defined(), op, path, ": the tensor is undefined");
  const Tensor c = host_contiguous(t);
  std::string dict =
      std::string("{'descr': '") + npy_descr(c.dtype()) + "', 'fortran_order': False, 'shape': (";
  for (int64_t i = 0; i < c.dim(); ++i) dict += (i ? ", " : "") + std::to_string(c.size(i));
  if (c.dim() == 1) dict += ',';  // Python's one-element tuple
  dict += "), }";
  // magic (6) + version (2) + header length (2) + header, padded to a multiple of 64 with
  // spaces and ended by '\n', as NumPy writes it.
  constexpr size_t kPrefix = 10;
  const size_t pad = (64 - (kPrefix + dict.size() + 1) % 64) % 64;
  const std::string header = dict + std::string(pad, ' ') + '\n';
  MG_CHECK(header.size() <= 0xffff, op, path, ": a ", c.dim(),
           "-d shape does not fit a format 1.0 header");
  const uint8_t prefix[kPrefix] = {0x93,
                                   'N',
                                   'U',
                                   'M',
                                   'P',
                                   'Y',
                                   1,
                                   0,
                                   static_cast<uint8_t>(header.size() & 0xff),
                                   static_cast<uint8_t>(header.size() >> 8)};
  AtomicFile f(op, path);
  f.write(prefix, kPrefix);
  f.write(header.data(), header.size());
  if (c.numel() > 0) f.write(c.raw_data(), static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
  f.commit();
}

Tensor load_npy(const std::string& path) {
  const char* op = "load_npy";
  InFile f(op, path);
  const uint64_t size = f.size();
  if (size < 10) fail_file(op, path, "file is too short (", size, " bytes) for a .npy header");
  uint8_t prefix[12];
  f.read(prefix, 10);
  if (std::memcmp(prefix, "\x93NUMPY", 6) != 0)
    fail_file(op, path, "not a .npy file (no \\x93NUMPY magic)");
  const int major = prefix[6], minor = prefix[7];
  uint64_t hlen = 0, start = 0;
  if (major == 1 && minor == 0) {
    hlen = prefix[8] | (uint64_t{prefix[9]} << 8);
    start = 10;
  } else if ((major == 2 || major == 3) && minor == 0) {
    if (size < 12) fail_file(op, path, "file is too short (", size, " bytes) for a .npy header");
    f.read(prefix + 10, 2);
    for (int i = 0; i < 4; ++i) hlen |= uint64_t{prefix[8 + i]} << (8 * i);
    start = 12;
  } else {
    fail_file(op, path, "unsupported .npy format version ", major, ".", minor);
  }
  if (hlen > kMaxHeaderBytes)
    fail_file(op, path, "header length ", hlen, " is over the limit of ", kMaxHeaderBytes,
              " bytes");
  if (hlen > size - start)
    fail_file(op, path, "header length ", hlen, " is larger than the rest of the file (",
              size - start, " bytes)");
  std::string text(hlen, '\0');
  f.read(text.data(), hlen);
  std::string descr;
  bool fortran = false;
  Shape shape;
  NpyHeaderParser(op, path, text).parse(&descr, &fortran, &shape);
  DType dtype{};
  bool known = false;
  for (DType d :
       {DType::Bool, DType::UInt8, DType::Int32, DType::Int64, DType::Float32, DType::Float64}) {
    if (descr == npy_descr(d)) dtype = d, known = true;
  }
  if (!known)
    fail_file(op, path, "unsupported dtype '", descr,
              "' (supported: <f4, <f8, <i8, <i4, |u1, |b1)");
  uint64_t nbytes = 0;
  if (!checked_nbytes(shape, dtype_size(dtype), &nbytes))
    fail_file(op, path, "shape ", shape_str(shape), " is too large");
  const uint64_t data_size = size - start - hlen;
  if (data_size < nbytes)
    fail_file(op, path, "the file holds ", data_size, " bytes of data, shape ", shape_str(shape),
              " of ", descr, " needs ", nbytes);
  if (data_size > nbytes) fail_file(op, path, data_size - nbytes, " trailing bytes after the data");
  // Fortran order is the row-major layout of the reversed shape.
  Shape file_shape = shape;
  if (fortran) std::reverse(file_shape.begin(), file_shape.end());
  Tensor t = Tensor::empty(file_shape, dtype);
  if (nbytes > 0) f.read(t.raw_data(), nbytes);
  if (dtype == DType::Bool) {
    const int64_t i = first_bad_bool(t);
    if (i >= 0) fail_file(op, path, "bool element ", i, " holds a byte other than 0 or 1");
  }
  if (fortran && t.dim() > 1) {
    NoGradGuard g;
    std::vector<int64_t> dims(static_cast<size_t>(t.dim()));
    for (int64_t i = 0; i < t.dim(); ++i) dims[static_cast<size_t>(i)] = t.dim() - 1 - i;
    t = t.permute(dims).contiguous();
  }
  return t;
}

void save_module(const std::string& path, const Module& module, const Metadata& metadata) {
  save_safetensors(path, module.state_dict(), metadata);
}

void load_module(const std::string& path, Module& module, bool strict) {
  module.load_state_dict(load_safetensors(path), strict);
}

void save_optimizer(const std::string& path, const optim::Optimizer& opt) {
  const optim::OptimizerState st = opt.state_dict();
  Metadata meta;
  for (const auto& [k, v] : st.scalars) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);  // round-trips every double exactly
    meta["scalar." + k] = buf;
  }
  save_safetensors(path, st.tensors, meta);
}

void load_optimizer(const std::string& path, optim::Optimizer& opt) {
  Metadata meta;
  optim::OptimizerState st;
  st.tensors = load_safetensors(path, &meta);
  for (const auto& [k, v] : meta) {
    if (k.rfind("scalar.", 0) != 0) continue;
    char* end = nullptr;
    const double d = std::strtod(v.c_str(), &end);
    MG_CHECK(end != v.c_str() && *end == '\0', "load_optimizer", path, ": metadata '", k,
             "' is not a number: '", v, "'");
    st.scalars[k.substr(7)] = d;
  }
  opt.load_state_dict(st);
}

void write_file_atomically(const std::string& path, std::string_view contents, const char* op) {
  AtomicFile f(op, path);
  f.write(contents.data(), contents.size());
  f.commit();
}

}  // namespace metagrad::nn
