// Checkpoints (nn/checkpoint.h): safetensors and .npy round trips of every dtype, 0-d, empty
// and non-contiguous tensors; the file layout checked byte by byte by an independent parser;
// a cross-check with Python's safetensors and NumPy when they are installed; every kind of
// corrupt file refused; atomic saving; training checkpoints with groups; validate_against.
#include <gtest/gtest.h>

#include "test_util.h"
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <metagrad/metagrad.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

using namespace metagrad;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Bytes = std::vector<uint8_t>;

namespace {

Bytes read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), {});
}
void write_bytes(const fs::path& p, const Bytes& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

int64_t count(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
size_t item(DType t) {
  switch (t) {
    case DType::Bool:
    case DType::UInt8:
      return 1;
    case DType::Int32:
    case DType::Float32:
      return 4;
    default:
      return 8;
  }
}

// A tensor whose bytes the test knows independently of the library: `bytes` are copied into
// a fresh tensor's memory.
struct Sample {
  std::string name;
  DType dtype;
  Shape shape;
  Bytes bytes;  // row-major, little-endian
  Tensor t;
};

template <typename T>
Bytes bytes_of(const std::vector<T>& v) {
  Bytes b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

Tensor from_bytes(const Bytes& b, const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  EXPECT_EQ(b.size(), static_cast<size_t>(count(shape)) * item(dtype));
  if (!b.empty()) std::memcpy(t.raw_data(), b.data(), b.size());
  return t;
}

Sample sample(std::string name, DType dtype, Shape shape) {
  const int64_t n = count(shape);
  Bytes b;
  switch (dtype) {
    case DType::Float32: {
      // Special values too: a bit-identical round trip keeps NaN payloads and -0.
      const float specials[] = {-0.0f, std::numeric_limits<float>::infinity(),
                                std::numeric_limits<float>::denorm_min(),
                                std::numeric_limits<float>::max()};
      std::vector<float> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[i] = i < 4 ? specials[i] : 0.37f * i - 5.f;
      if (n > 4) {
        uint32_t nan = 0x7fc01234u;  // quiet NaN with a payload
        std::memcpy(&v[4], &nan, 4);
      }
      b = bytes_of(v);
      break;
    }
    case DType::Float64: {
      std::vector<double> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[i] = std::sin(1.0 + i) * 1e10;
      if (n > 1) v[1] = -std::numeric_limits<double>::infinity();
      b = bytes_of(v);
      break;
    }
    case DType::Int64: {
      std::vector<int64_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[i] = (i - 3) * 1234567890123LL;
      if (n > 0) v[0] = std::numeric_limits<int64_t>::min();
      b = bytes_of(v);
      break;
    }
    case DType::Int32: {
      std::vector<int32_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>((i - 2) * 100003);
      b = bytes_of(v);
      break;
    }
    case DType::UInt8:
    case DType::Bool: {
      b.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i)
        b[i] = dtype == DType::Bool ? (i % 3 == 0) : static_cast<uint8_t>(i * 37 + 11);
      break;
    }
  }
  Tensor t = from_bytes(b, shape, dtype);
  return {std::move(name), dtype, std::move(shape), std::move(b), t};
}

// Every dtype, plus 0-d and empty tensors.
std::vector<Sample> samples() {
  return {sample("f32", DType::Float32, {3, 5}),   sample("f64", DType::Float64, {2, 2, 3}),
          sample("i64", DType::Int64, {7}),        sample("i32", DType::Int32, {4, 1}),
          sample("u8", DType::UInt8, {9}),         sample("b", DType::Bool, {2, 5}),
          sample("scalar", DType::Float64, {}),    sample("scalar_i32", DType::Int32, {}),
          sample("empty", DType::Float32, {0, 3}), sample("empty3", DType::Int64, {2, 0, 4})};
}

// Row-major bytes of a strided view, by a plain odometer loop over its shape (independent of
// the library's copy kernels).
Bytes gather(const Bytes& base, size_t itemsize, const Shape& shape, const Shape& strides,
             int64_t offset) {
  Bytes out;
  const int64_t n = count(shape);
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t k = 0; k < n; ++k) {
    int64_t e = offset;
    for (size_t d = 0; d < shape.size(); ++d) e += idx[d] * strides[d];
    out.insert(out.end(), base.begin() + e * static_cast<int64_t>(itemsize),
               base.begin() + (e + 1) * static_cast<int64_t>(itemsize));
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

Bytes raw(const Tensor& t) {
  // (An empty tensor holds no bytes: its strides do not matter.)
  if (t.numel() > 0) {
    EXPECT_TRUE(t.is_contiguous());
  }
  Bytes b(static_cast<size_t>(t.numel()) * item(t.dtype()));
  if (!b.empty()) std::memcpy(b.data(), t.raw_data(), b.size());
  return b;
}

void expect_tensor(const Tensor& got, DType dtype, const Shape& shape, const Bytes& bytes,
                   const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  EXPECT_EQ(got.dtype(), dtype) << what;
  EXPECT_EQ(got.shape(), shape) << what;
  EXPECT_EQ(raw(got), bytes) << what;
}

uint64_t read_u64le(const Bytes& b, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{b.at(at + i)} << (8 * i);
  return v;
}

// A safetensors file from a header (serialised as given, padded to 8) and a data section.
Bytes st_file(const std::string& header_text, const Bytes& data) {
  std::string h = header_text;
  h.append((8 - h.size() % 8) % 8, ' ');
  // Assembled as a string: GCC 12 warns falsely (-Warray-bounds) on vector range inserts.
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(uint64_t{h.size()} >> (8 * i));
  out += h;
  out.append(data.begin(), data.end());
  return Bytes(out.begin(), out.end());
}

// Splits a safetensors file into its header JSON and data section (independent parser).
struct Parsed {
  uint64_t n = 0;
  std::string text;
  json header;
  Bytes data;
};
Parsed parse_st(const Bytes& file) {
  Parsed p;
  p.n = read_u64le(file, 0);
  p.text.assign(file.begin() + 8, file.begin() + 8 + static_cast<int64_t>(p.n));
  p.header = json::parse(p.text);
  p.data.assign(file.begin() + 8 + static_cast<int64_t>(p.n), file.end());
  return p;
}

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("mg_ckpt_") + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::set<std::string> listing() const {
    std::set<std::string> s;
    for (const auto& e : fs::directory_iterator(dir_)) s.insert(e.path().filename().string());
    return s;
  }
  fs::path dir_;
};

}  // namespace

// ---- safetensors round trips -------------------------------------------------------------

TEST_F(Checkpoint, RoundTripEveryDTypeBitIdentical) {
  auto ss = samples();
  nn::ParamMap in;
  for (const auto& s : ss) in[s.name] = s.t;
  const std::string p = path("all.safetensors");
  nn::save_safetensors(p, in);
  nn::Metadata meta{{"stale", "value"}};
  nn::ParamMap out = nn::load_safetensors(p, &meta);
  EXPECT_TRUE(meta.empty());  // the file has no metadata: the map is cleared
  ASSERT_EQ(out.size(), ss.size());
  for (const auto& s : ss) expect_tensor(out.at(s.name), s.dtype, s.shape, s.bytes, s.name);
  // Loaded tensors are fresh leaves with their own storage.
  EXPECT_FALSE(out.at("f32").storage() == in.at("f32").storage());
  EXPECT_FALSE(out.at("f32").requires_grad());
  EXPECT_EQ(listing(), (std::set<std::string>{"all.safetensors"}));  // no temporary left
}

TEST_F(Checkpoint, EmptyMapAndRequiresGrad) {
  const std::string p = path("none.safetensors");
  nn::save_safetensors(p, {});
  EXPECT_TRUE(nn::load_safetensors(p).empty());
  // A parameter that requires grad saves its data, and saving records nothing.
  Sample s = sample("w", DType::Float64, {3});
  Tensor w = s.t.clone().requires_grad_(true);
  nn::save_safetensors(p, {{"w", w.transpose(0, 0)}});
  expect_tensor(nn::load_safetensors(p).at("w"), DType::Float64, {3}, s.bytes, "w");
  EXPECT_FALSE(w.grad().defined());
}

TEST_F(Checkpoint, NonContiguousInputs) {
  Sample m = sample("m", DType::Float32, {4, 6});
  Sample v = sample("v", DType::Int64, {10});
  Sample c = sample("c", DType::Float64, {3, 4, 5});
  struct Case {
    std::string name;
    Tensor view;
    Bytes base;
    size_t itemsize;
  };
  std::vector<Case> cases = {
      {"transposed", m.t.transpose(0, 1), m.bytes, 4},
      {"step", v.t.slice(0, 1, 9, 3), v.bytes, 8},
      {"expanded", v.t.slice(0, 2, 5).unsqueeze(0).expand({3, 3}), v.bytes, 8},
      {"permuted_sliced", c.t.permute({2, 0, 1}).slice(0, 1, 5, 2), c.bytes, 8},
      {"selected", m.t.select(1, 2), m.bytes, 4},
  };
  nn::ParamMap in;
  for (const auto& k : cases) {
    ASSERT_FALSE(k.view.is_contiguous()) << k.name;
    in[k.name] = k.view;
  }
  const std::string p = path("views.safetensors");
  nn::save_safetensors(p, in);
  nn::ParamMap out = nn::load_safetensors(p);
  Parsed file = parse_st(read_bytes(p));
  for (const auto& k : cases) {
    const Bytes want =
        gather(k.base, k.itemsize, k.view.shape(), k.view.strides(), k.view.storage_offset());
    expect_tensor(out.at(k.name), k.view.dtype(), k.view.shape(), want, k.name);
    // And in the file itself, at the offsets its header gives.
    const auto off = file.header.at(k.name).at("data_offsets").get<std::vector<uint64_t>>();
    EXPECT_EQ(Bytes(file.data.begin() + off[0], file.data.begin() + off[1]), want) << k.name;
  }
}

TEST_F(Checkpoint, Metadata) {
  Sample s = sample("x", DType::Float32, {2});
  const nn::Metadata meta{{"step", "1200"},
                          {"config", "{\"lr\": 0.001}"},
                          {"empty", ""},
                          {"unicode", "caf\xc3\xa9 \xe2\x9c\x93"}};
  const std::string p = path("meta.safetensors");
  nn::save_safetensors(p, {{"x", s.t}}, meta);
  nn::Metadata got;
  nn::ParamMap out = nn::load_safetensors(p, &got);
  EXPECT_EQ(got, meta);
  expect_tensor(out.at("x"), DType::Float32, {2}, s.bytes, "x");
  EXPECT_EQ(nn::load_safetensors(p).size(), 1u);  // no metadata pointer: fine
  const json h = parse_st(read_bytes(p)).header;
  EXPECT_EQ(h.at("__metadata__").get<nn::Metadata>(), meta);
}

// The file is checked against the format with nlohmann directly, not through the reader.
TEST_F(Checkpoint, FileLayoutMatchesTheFormat) {
  auto ss = samples();
  nn::ParamMap in;
  for (const auto& s : ss) in[s.name] = s.t;
  const std::string p = path("layout.safetensors");
  nn::save_safetensors(p, in, {{"k", "v"}});
  const Bytes file = read_bytes(p);
  ASSERT_GE(file.size(), 8u);
  const uint64_t n = read_u64le(file, 0);
  ASSERT_LE(8 + n, file.size());
  EXPECT_EQ((8 + n) % 8, 0u) << "the data section must start 8-byte aligned";
  const std::string text(file.begin() + 8, file.begin() + 8 + static_cast<int64_t>(n));
  ASSERT_EQ(text.front(), '{');
  const size_t close = text.rfind('}');
  for (size_t i = close + 1; i < text.size(); ++i) EXPECT_EQ(text[i], ' ') << "padding byte " << i;
  const json h = json::parse(text);
  ASSERT_TRUE(h.is_object());
  EXPECT_EQ(h.size(), ss.size() + 1);
  EXPECT_EQ(h.at("__metadata__"), (json{{"k", "v"}}));
  const char* names[] = {"BOOL", "U8", "I32", "I64", "F32", "F64"};
  const DType dtypes[] = {DType::Bool,  DType::UInt8,   DType::Int32,
                          DType::Int64, DType::Float32, DType::Float64};
  const uint64_t data_size = file.size() - 8 - n;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& s : ss) {
    SCOPED_TRACE(s.name);
    const json& e = h.at(s.name);
    ASSERT_EQ(e.size(), 3u);
    std::string want_dtype;
    for (int i = 0; i < 6; ++i)
      if (dtypes[i] == s.dtype) want_dtype = names[i];
    EXPECT_EQ(e.at("dtype").get<std::string>(), want_dtype);
    EXPECT_EQ(e.at("shape").get<Shape>(), s.shape);
    const auto off = e.at("data_offsets").get<std::vector<uint64_t>>();
    ASSERT_EQ(off.size(), 2u);
    ASSERT_LE(off[0], off[1]);
    ASSERT_LE(off[1], data_size);
    EXPECT_EQ(off[1] - off[0], s.bytes.size());
    EXPECT_EQ(off[0] % item(s.dtype), 0u) << "tensor data aligned to its element size";
    const auto at = file.begin() + 8 + static_cast<int64_t>(n);
    EXPECT_EQ(Bytes(at + off[0], at + off[1]), s.bytes);
    ranges.emplace_back(off[0], off[1]);
  }
  // The ranges tile the data section: no gap, no overlap, nothing after.
  std::sort(ranges.begin(), ranges.end());
  uint64_t pos = 0;
  for (auto [b, e] : ranges) {
    EXPECT_EQ(b, pos);
    pos = e;
  }
  EXPECT_EQ(pos, data_size);
}

// A file written by hand (as another writer would: no padding, any key order, any data
// order) loads.
TEST_F(Checkpoint, LoadsAFileWrittenByHand) {
  const std::vector<int32_t> a = {1, -2, 3, 4};
  const std::vector<double> b = {0.5, 0.25};
  Bytes data = bytes_of(b);
  const Bytes ab = bytes_of(a);
  data.insert(data.end(), ab.begin(), ab.end());
  std::string h =
      R"({"a":{"shape":[2,2],"data_offsets":[16,32],"dtype":"I32"},)"
      R"("b":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"__metadata__":{"x":"y"}})";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>(uint64_t{h.size()} >> (8 * i));
  file += h;
  file.append(data.begin(), data.end());
  write_bytes(path("hand.safetensors"), Bytes(file.begin(), file.end()));
  nn::Metadata meta;
  nn::ParamMap out = nn::load_safetensors(path("hand.safetensors"), &meta);
  expect_tensor(out.at("a"), DType::Int32, {2, 2}, ab, "a");
  expect_tensor(out.at("b"), DType::Float64, {2}, bytes_of(b), "b");
  EXPECT_EQ(meta, (nn::Metadata{{"x", "y"}}));
}

TEST_F(Checkpoint, SaveErrors) {
  const std::string p = path("bad.safetensors");
  EXPECT_MG_ERROR_HAS(nn::save_safetensors(p, {{"w", Tensor()}}), "[save_safetensors] " + p,
                      "'w' is undefined");
  EXPECT_MG_ERROR_HAS(nn::save_safetensors(p, {{"__metadata__", zeros({1})}}),
                      "[save_safetensors] " + p, "reserved");
  EXPECT_MG_ERROR_HAS(nn::save_safetensors(p, {{"bad\xff", zeros({1})}}), "[save_safetensors] " + p,
                      "UTF-8");
  EXPECT_MG_ERROR_HAS(nn::save_safetensors((dir_ / "").string(), {}), "[save_safetensors]",
                      "does not name a file");
  EXPECT_TRUE(listing().empty());
}

// ---- corrupt files -----------------------------------------------------------------------

namespace {
// A valid two-tensor file to corrupt: a F32 [2, 2] at [0, 16) and a I64 [3] at [16, 40).
struct Valid {
  json header;
  Bytes data;
};
Valid valid_file() {
  Valid v;
  v.header = {{"a", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}},
              {"b", {{"dtype", "I64"}, {"shape", {3}}, {"data_offsets", {16, 40}}}},
              {"__metadata__", {{"k", "v"}}}};
  for (int i = 0; i < 40; ++i) v.data.push_back(static_cast<uint8_t>(i));
  return v;
}
}  // namespace

TEST_F(Checkpoint, CorruptFilesAreRefused) {
  const std::string p = path("corrupt.safetensors");
  const Valid v = valid_file();
  const Bytes good = st_file(v.header.dump(), v.data);
  write_bytes(p, good);
  ASSERT_EQ(nn::load_safetensors(p).size(), 2u);  // the base file is valid
  const std::string prefix = "[load_safetensors] " + p + ": ";

  // Writes `file`, expects the load to fail with `part` in the message, and checks that the
  // metadata out-parameter was left alone (nothing is returned from a bad file).
  auto refused = [&](const Bytes& file, const std::string& part) {
    SCOPED_TRACE(part);
    write_bytes(p, file);
    nn::Metadata meta{{"untouched", "yes"}};
    EXPECT_MG_ERROR_HAS(nn::load_safetensors(p, &meta), prefix, part);
    EXPECT_EQ(meta, (nn::Metadata{{"untouched", "yes"}}));
  };
  auto with_header = [&](const json& h, const Bytes& data) { return st_file(h.dump(), data); };
  auto edit = [&](auto f) {  // the valid header, edited by f
    json h = v.header;
    f(h);
    return with_header(h, v.data);
  };

  // Length prefix.
  refused(Bytes(good.begin(), good.begin() + 5), "too short");
  refused(Bytes(), "too short");
  {
    Bytes f = good;
    const uint64_t n = f.size();  // > the rest of the file
    for (int i = 0; i < 8; ++i) f[i] = static_cast<uint8_t>(n >> (8 * i));
    refused(f, "larger than the rest of the file");
    f = good;
    f[3] = 0x10;  // 268 MB
    refused(f, "over the limit");
    f = good;
    for (int i = 0; i < 8; ++i) f[i] = 0xff;
    refused(f, "over the limit");
  }
  // Header text.
  refused(st_file("{\"a\": ", v.data), "not valid JSON");
  refused(st_file("[1, 2]", {}), "not a JSON object");
  refused(st_file("", {}), "not a JSON object");
  refused(st_file("{}\x01", {}), "not valid JSON");
  refused(st_file("{\"a\xff\": 1}", {}), "not valid JSON");  // not UTF-8
  refused(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                  Bytes(4)),
          "the key 'a' twice");
  refused(
      st_file(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", Bytes(4)),
      "the key 'dtype' twice");
  // Entries.
  refused(edit([](json& h) { h["a"] = 5; }), "entry is a number, not an object (tensor 'a')");
  refused(edit([](json& h) { h["a"].erase("dtype"); }), "no 'dtype' (tensor 'a')");
  refused(edit([](json& h) { h["a"].erase("shape"); }), "no 'shape' (tensor 'a')");
  refused(edit([](json& h) { h["b"].erase("data_offsets"); }), "no 'data_offsets' (tensor 'b')");
  refused(edit([](json& h) { h["a"]["extra"] = 1; }), "unknown field 'extra' (tensor 'a')");
  refused(edit([](json& h) { h["a"]["dtype"] = 4; }), "'dtype' is a number");
  refused(edit([](json& h) { h["a"]["dtype"] = "F16"; }), "unsupported dtype 'F16'");
  refused(edit([](json& h) { h["a"]["dtype"] = "f32"; }), "unsupported dtype 'f32'");
  refused(edit([](json& h) { h["a"]["shape"] = "2x2"; }), "'shape' is a string");
  refused(edit([](json& h) { h["a"]["shape"] = {2.0, 2}; }), "'shape' holds a number");
  refused(edit([](json& h) { h["a"]["shape"] = {2, "2"}; }), "'shape' holds a string");
  refused(edit([](json& h) { h["a"]["shape"] = {-2, -2}; }), "negative dimension -2");
  refused(edit([](json& h) { h["a"]["shape"] = {uint64_t{1} << 63, 2}; }), "too large");
  refused(edit([](json& h) { h["a"]["shape"] = {uint64_t{1} << 62, 8}; }), "too large");
  refused(edit([](json& h) { h["a"]["data_offsets"] = {0}; }), "array of two integers");
  refused(edit([](json& h) { h["a"]["data_offsets"] = {0, 8, 16}; }), "array of two integers");
  refused(edit([](json& h) { h["a"]["data_offsets"] = {{"b", 0}}; }), "array of two integers");
  refused(edit([](json& h) { h["a"]["data_offsets"] = {"0", 16}; }), "holds a string");
  refused(edit([](json& h) { h["a"]["data_offsets"] = {-16, 16}; }), "negative data offset");
  refused(edit([](json& h) { h["a"]["data_offsets"] = {16, 0}; }), "begin after they end");
  refused(edit([](json& h) { h["b"]["data_offsets"] = {16, 48}; }), "out of range");
  refused(edit([](json& h) {
            h["a"]["shape"] = {2, 3};
          }),
          "span 16 bytes but shape [2, 3] of F32 needs 24 (tensor 'a')");
  refused(edit([](json& h) { h["b"]["dtype"] = "I32"; }), "needs 12 (tensor 'b')");
  // Data layout.
  refused(edit([](json& h) { h["b"]["data_offsets"] = {8, 32}; }),
          "overlap");  // b starts inside a
  {
    json h = v.header;
    h["b"]["data_offsets"] = {20, 44};  // 4 unused bytes between a and b
    Bytes data = v.data;
    data.resize(44);
    refused(with_header(h, data), "gap of 4 bytes");
    h["a"]["data_offsets"] = {4, 20};  // data starts after 4 unused bytes
    refused(with_header(h, data), "gap of 4 bytes in the data before offset 4 (tensor 'a')");
  }
  {
    Bytes f = good;
    f.push_back(0);
    refused(f, "1 trailing bytes");
  }
  // Metadata.
  refused(edit([](json& h) { h["__metadata__"] = json::array(); }), "'__metadata__' is an array");
  refused(edit([](json& h) { h["__metadata__"]["n"] = 1; }), "key 'n' is a number");
  // BOOL bytes other than 0/1.
  {
    json h = {{"m", {{"dtype", "BOOL"}, {"shape", {3}}, {"data_offsets", {0, 3}}}}};
    refused(with_header(h, Bytes{1, 0, 2}), "BOOL element 2");
  }
  // Not a file.
  EXPECT_MG_ERROR_HAS(nn::load_safetensors(path("missing.safetensors")),
                      "[load_safetensors] " + path("missing.safetensors") + ": ", "cannot open");
  EXPECT_MG_ERROR_HAS(nn::load_safetensors(dir_.string()),
                      "[load_safetensors] " + dir_.string() + ": ", "not a regular file");
}

// ---- atomic saving -------------------------------------------------------------------------

TEST_F(Checkpoint, SaveReplacesAtomically) {
  const std::string p = path("model.safetensors");
  Sample a = sample("w", DType::Float32, {4});
  Sample b = sample("w", DType::Float64, {2, 3});
  nn::save_safetensors(p, {{"w", a.t}});
  nn::save_safetensors(p, {{"w", b.t}});  // over an existing file
  expect_tensor(nn::load_safetensors(p).at("w"), DType::Float64, {2, 3}, b.bytes, "w");
  EXPECT_EQ(listing(), (std::set<std::string>{"model.safetensors"}));
  // A relative path (temporary in the working directory).
  const fs::path cwd = fs::current_path();
  fs::current_path(dir_);
  nn::save_safetensors("rel.safetensors", {{"w", a.t}});
  fs::current_path(cwd);
  expect_tensor(nn::load_safetensors(path("rel.safetensors")).at("w"), DType::Float32, {4}, a.bytes,
                "w");
}

// A save through a symlink replaces the file it points to (the link stays a link), and a file
// replaced keeps its permissions. A FIFO is refused when loading, never waited on.
TEST_F(Checkpoint, SavesKeepLinksAndModesAndLoadsRefuseFifos) {
  Sample a = sample("w", DType::Float32, {4});
  const std::string real = path("real.safetensors"), link = path("link.safetensors");
  nn::save_safetensors(real, {{"w", a.t}});
  fs::create_symlink(real, link);
  fs::permissions(real, fs::perms::owner_read | fs::perms::owner_write);
  Sample b = sample("w", DType::Float64, {3});
  nn::save_safetensors(link, {{"w", b.t}});
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
  EXPECT_EQ(nn::load_safetensors(real).at("w").shape(), Shape{3});
  EXPECT_EQ(fs::status(real).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(listing(), (std::set<std::string>{"real.safetensors", "link.safetensors"}));
  const std::string fifo = path("fifo.safetensors");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_MG_ERROR_HAS(nn::load_safetensors(fifo), "[load_safetensors]", "not a regular file");
  EXPECT_MG_ERROR_HAS(nn::load_npy(fifo), "[load_npy]", "not a regular file");
}

TEST_F(Checkpoint, FailedSaveLeavesTheOldFileAndNoTemporary) {
  const std::string p = path("model.safetensors");
  Sample a = sample("w", DType::Float32, {4});
  nn::save_safetensors(p, {{"w", a.t}});
  const Bytes before = read_bytes(p);
  Sample big = sample("big", DType::Float64, {1 << 16});  // 512 KiB

  // Errors found before writing.
  EXPECT_MG_ERROR(nn::save_safetensors(p, {{"w", Tensor()}}), "[save_safetensors]");
  // A directory that does not exist.
  const std::string nowhere = path("no/such/dir/model.safetensors");
  EXPECT_MG_ERROR_HAS(nn::save_safetensors(nowhere, {{"w", a.t}}), "[save_safetensors] " + nowhere,
                      "cannot create a temporary file");
  // The rename fails: the target is a non-empty directory.
  const fs::path d = dir_ / "taken.safetensors";
  fs::create_directory(d);
  write_bytes(d / "inside", {1, 2, 3});
  EXPECT_MG_ERROR_HAS(nn::save_safetensors(d.string(), {{"w", a.t}}), "[save_safetensors]",
                      "cannot rename");
  EXPECT_TRUE(fs::is_directory(d));
  EXPECT_EQ(read_bytes(d / "inside"), (Bytes{1, 2, 3}));
  // The disk fills up mid-write: a file size limit makes write() fail with EFBIG after the
  // temporary file has been created and partly written.
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto prev = ::signal(SIGXFSZ, SIG_IGN);  // else the kernel kills us at the limit
  struct rlimit lim = old;
  lim.rlim_cur = 64 * 1024;
  if (::setrlimit(RLIMIT_FSIZE, &lim) == 0) {
    EXPECT_MG_ERROR_HAS(nn::save_safetensors(p, {{"big", big.t}}), "[save_safetensors] " + p,
                        "failed");
    ::setrlimit(RLIMIT_FSIZE, &old);
  } else {
    ADD_FAILURE() << "setrlimit(RLIMIT_FSIZE) failed: mid-write failure not tested";
  }
  ::signal(SIGXFSZ, prev);
  // The old checkpoint is intact and no temporary file is left anywhere.
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_EQ(listing(), (std::set<std::string>{"model.safetensors", "taken.safetensors"}));
  // And a save after the failures works.
  nn::save_safetensors(p, {{"big", big.t}});
  expect_tensor(nn::load_safetensors(p).at("big"), DType::Float64, {1 << 16}, big.bytes, "big");
}

// ---- training checkpoints ----------------------------------------------------------------

TEST_F(Checkpoint, GroupsRoundTrip) {
  Sample w = sample("w", DType::Float32, {3, 2});
  Sample bias = sample("b", DType::Float64, {2});
  Sample step = sample("s", DType::Int64, {});
  Sample m = sample("m", DType::Float32, {3, 2});
  const std::map<std::string, nn::ParamMap> groups = {
      {"model", {{"fc.weight", w.t}, {"fc.bias", bias.t}}},
      {"optim", {{"step", step.t}, {"fc.weight.exp_avg", m.t}}},
      {"empty", {}}};
  const std::string p = path("train.ckpt");
  nn::save_checkpoint(p, groups, {{"epoch", "3"}});
  nn::Checkpoint ck = nn::load_checkpoint(p);
  EXPECT_EQ(ck.metadata, (nn::Metadata{{"epoch", "3"}}));
  ASSERT_EQ(ck.groups.size(), 3u);
  EXPECT_TRUE(ck.groups.at("empty").empty());
  expect_tensor(ck.groups.at("model").at("fc.weight"), DType::Float32, {3, 2}, w.bytes, "w");
  expect_tensor(ck.groups.at("model").at("fc.bias"), DType::Float64, {2}, bias.bytes, "b");
  expect_tensor(ck.groups.at("optim").at("step"), DType::Int64, {}, step.bytes, "step");
  expect_tensor(ck.groups.at("optim").at("fc.weight.exp_avg"), DType::Float32, {3, 2}, m.bytes,
                "m");
  // It is a plain safetensors file with prefixed keys.
  nn::Metadata meta;
  nn::ParamMap flat = nn::load_safetensors(p, &meta);
  EXPECT_EQ(flat.size(), 4u);
  EXPECT_TRUE(flat.count("model.fc.weight") && flat.count("optim.fc.weight.exp_avg"));
  EXPECT_EQ(json::parse(meta.at(nn::kCheckpointGroupsKey)), (json{"empty", "model", "optim"}));
}

TEST_F(Checkpoint, GroupErrorsAndForeignFiles) {
  const std::string p = path("g.ckpt");
  EXPECT_MG_ERROR_HAS(nn::save_checkpoint(p, {{"a.b", {}}}), "[save_checkpoint] " + p, "'a.b'");
  EXPECT_MG_ERROR_HAS(nn::save_checkpoint(p, {{"", {}}}), "[save_checkpoint] " + p, "non-empty");
  EXPECT_MG_ERROR_HAS(nn::save_checkpoint(p, {}, {{nn::kCheckpointGroupsKey, "x"}}),
                      "[save_checkpoint] " + p, "reserved");
  EXPECT_FALSE(fs::exists(p));
  // A safetensors file from elsewhere: split at the first '.'.
  Sample a = sample("a", DType::Int32, {2});
  nn::save_safetensors(p, {{"model.layer.w", a.t}, {"ema.w", a.t}}, {{"k", "v"}});
  nn::Checkpoint ck = nn::load_checkpoint(p);
  EXPECT_EQ(ck.metadata, (nn::Metadata{{"k", "v"}}));
  ASSERT_EQ(ck.groups.size(), 2u);
  expect_tensor(ck.groups.at("model").at("layer.w"), DType::Int32, {2}, a.bytes, "model");
  expect_tensor(ck.groups.at("ema").at("w"), DType::Int32, {2}, a.bytes, "ema");
  nn::save_safetensors(p, {{"nodot", a.t}});
  EXPECT_MG_ERROR_HAS(nn::load_checkpoint(p), "[load_checkpoint] " + p, "'nodot' is in no group");
  // A tensor in a group the list does not name; a broken list.
  nn::save_safetensors(p, {{"x.w", a.t}}, {{nn::kCheckpointGroupsKey, "[\"model\"]"}});
  EXPECT_MG_ERROR_HAS(nn::load_checkpoint(p), "[load_checkpoint] " + p, "group 'x'");
  nn::save_safetensors(p, {}, {{nn::kCheckpointGroupsKey, "[\"a.b\"]"}});
  EXPECT_MG_ERROR_HAS(nn::load_checkpoint(p), "[load_checkpoint] " + p, "invalid group name");
  nn::save_safetensors(p, {}, {{nn::kCheckpointGroupsKey, "{"}});
  EXPECT_MG_ERROR_HAS(nn::load_checkpoint(p), "[load_checkpoint] " + p, "not valid JSON");
  // Corrupt files are refused under load_checkpoint's name.
  write_bytes(p, {1, 2, 3});
  EXPECT_MG_ERROR_HAS(nn::load_checkpoint(p), "[load_checkpoint] " + p, "too short");
}

// ---- validate_against ----------------------------------------------------------------------

TEST(CheckpointValidate, MatchesKeysShapesAndDTypes) {
  const nn::ParamMap expected = {
      {"w", zeros({3, 4})}, {"b", zeros({4})}, {"n", zeros({}, DType::Int64)}};
  nn::ParamMap loaded = {{"w", ones({3, 4})}, {"b", ones({4})}, {"n", ones({}, DType::Int64)}};
  nn::validate_against(loaded, expected);  // same keys, shapes and dtypes: fine

  nn::ParamMap missing = loaded;
  missing.erase("b");
  EXPECT_MG_ERROR_HAS(nn::validate_against(missing, expected), "[validate_against]",
                      "missing keys 'b'");
  nn::validate_against(missing, expected, /*strict=*/false);

  nn::ParamMap extra = loaded;
  extra["running_mean"] = zeros({4});
  EXPECT_MG_ERROR_HAS(nn::validate_against(extra, expected), "[validate_against]",
                      "unexpected keys 'running_mean'");
  nn::validate_against(extra, expected, false);

  nn::ParamMap shape = loaded;
  shape["w"] = ones({4, 3});
  EXPECT_MG_ERROR_HAS(nn::validate_against(shape, expected), "[validate_against]",
                      "'w': shape [4, 3] in the checkpoint, [3, 4] expected");
  // Not strict still refuses a mismatch on a common key (as load_state_dict(strict=false)).
  EXPECT_MG_ERROR_HAS(nn::validate_against(shape, expected, false, "load_state_dict"),
                      "[load_state_dict]", "shape [4, 3]");

  nn::ParamMap dtype = loaded;
  dtype["n"] = ones({}, DType::Int32);
  EXPECT_MG_ERROR_HAS(nn::validate_against(dtype, expected), "[validate_against]",
                      "'n': dtype int32 in the checkpoint, int64 expected");

  nn::ParamMap undefined = loaded;
  undefined["w"] = Tensor();
  EXPECT_MG_ERROR_HAS(nn::validate_against(undefined, expected), "[validate_against]",
                      "'w' is undefined in the checkpoint");

  // Every problem in one message; long key lists are cut.
  nn::ParamMap many;
  for (int i = 0; i < 15; ++i) many["k" + std::to_string(i + 10)] = zeros({1});
  try {
    nn::validate_against(many, expected);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("missing keys 'b', 'n', 'w'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected keys 'k10'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("and 5 more"), std::string::npos) << msg;
  }
}

// ---- npy ----------------------------------------------------------------------------------

namespace {
// The header NumPy's format 1.0 prescribes for a C-order array, parsed back from the bytes.
struct Npy {
  int major = 0, minor = 0;
  std::string header;
  Bytes data;
};
Npy parse_npy(const Bytes& f) {
  Npy n;
  EXPECT_GE(f.size(), 10u);
  EXPECT_EQ(std::string(f.begin(), f.begin() + 6), "\x93NUMPY");
  n.major = f[6];
  n.minor = f[7];
  const size_t hlen = f[8] | (size_t{f[9]} << 8);
  n.header.assign(f.begin() + 10, f.begin() + 10 + static_cast<int64_t>(hlen));
  n.data.assign(f.begin() + 10 + static_cast<int64_t>(hlen), f.end());
  return n;
}
std::string py_shape(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}
std::string descr(DType t) {
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
    default:
      return "<f8";
  }
}
Bytes npy_file(const std::string& dict, const Bytes& data, int major = 1) {
  std::string f = "\x93NUMPY";
  f += static_cast<char>(major);
  f += '\0';
  const size_t prefix = major == 1 ? 10 : 12;
  std::string h = dict;
  h.append((64 - (prefix + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  for (size_t i = 0; i < prefix - 8; ++i) f += static_cast<char>(h.size() >> (8 * i));
  f += h;
  f.append(data.begin(), data.end());
  return Bytes(f.begin(), f.end());
}
}  // namespace

TEST_F(Checkpoint, NpyRoundTripAndHeaderBytes) {
  for (const auto& s : samples()) {
    SCOPED_TRACE(s.name);
    const std::string p = path(s.name + ".npy");
    nn::save_npy(p, s.t);
    const Bytes f = read_bytes(p);
    const Npy n = parse_npy(f);
    EXPECT_EQ(n.major, 1);
    EXPECT_EQ(n.minor, 0);
    EXPECT_EQ((10 + n.header.size()) % 64, 0u);
    ASSERT_FALSE(n.header.empty());
    EXPECT_EQ(n.header.back(), '\n');
    const std::string dict = "{'descr': '" + descr(s.dtype) +
                             "', 'fortran_order': False, 'shape': " + py_shape(s.shape) + ", }";
    EXPECT_EQ(n.header.substr(0, dict.size()), dict);
    EXPECT_EQ(n.header.find_first_not_of(' ', dict.size()), n.header.size() - 1);
    EXPECT_EQ(n.data, s.bytes);
    expect_tensor(nn::load_npy(p), s.dtype, s.shape, s.bytes, s.name);
  }
  // Non-contiguous input.
  Sample m = sample("m", DType::Int32, {3, 4});
  const Tensor view = m.t.transpose(0, 1).slice(0, 0, 4, 2);
  nn::save_npy(path("view.npy"), view);
  expect_tensor(nn::load_npy(path("view.npy")), DType::Int32, view.shape(),
                gather(m.bytes, 4, view.shape(), view.strides(), view.storage_offset()), "view");
  EXPECT_MG_ERROR(nn::save_npy(path("u.npy"), Tensor()), "[save_npy]");
  EXPECT_FALSE(fs::exists(path("u.npy")));
}

TEST_F(Checkpoint, NpyReadsOtherWriters) {
  // Fortran order: the data is the transpose's row-major bytes.
  Sample m = sample("m", DType::Float64, {2, 3, 4});
  const Tensor ft = m.t.permute({2, 1, 0});
  const Bytes col = gather(m.bytes, 8, ft.shape(), ft.strides(), 0);
  const std::string p = path("f.npy");
  write_bytes(p, npy_file("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3, 4), }", col));
  expect_tensor(nn::load_npy(p), DType::Float64, {2, 3, 4}, m.bytes, "fortran");
  // Version 2.0, double quotes, no trailing comma, Python 2 longs, other key order.
  Sample v = sample("v", DType::UInt8, {5});
  write_bytes(
      p, npy_file("{\"shape\": (5L,), \"fortran_order\": False, \"descr\": \"|u1\"}", v.bytes, 2));
  expect_tensor(nn::load_npy(p), DType::UInt8, {5}, v.bytes, "v2");
  // 0-d and empty.
  Sample s = sample("s", DType::Int64, {});
  write_bytes(p, npy_file("{'descr': '<i8', 'fortran_order': False, 'shape': (), }", s.bytes));
  expect_tensor(nn::load_npy(p), DType::Int64, {}, s.bytes, "0-d");
  write_bytes(p, npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (0, 3), }", {}));
  expect_tensor(nn::load_npy(p), DType::Float32, {0, 3}, {}, "empty");
}

TEST_F(Checkpoint, NpyCorruptFilesAreRefused) {
  const std::string p = path("bad.npy");
  const std::string prefix = "[load_npy] " + p + ": ";
  auto refused = [&](const Bytes& f, const std::string& part) {
    SCOPED_TRACE(part);
    write_bytes(p, f);
    EXPECT_MG_ERROR_HAS(nn::load_npy(p), prefix, part);
  };
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const Bytes data(8, 0);
  write_bytes(p, npy_file(ok, data));
  EXPECT_EQ(nn::load_npy(p).shape(), (Shape{2}));
  Bytes f = npy_file(ok, data);
  refused(Bytes(f.begin(), f.begin() + 7), "too short");
  Bytes g = f;
  g[1] = 'X';
  refused(g, "magic");
  g = f;
  g[6] = 4;
  refused(g, "unsupported .npy format version 4.0");
  g = f;
  g[8] = 0xff, g[9] = 0xff;
  refused(g, "larger than the rest of the file");
  refused(Bytes(f.begin(), f.end() - 1), "needs 8");
  g = f;
  g.push_back(0);
  refused(g, "1 trailing bytes");
  refused(npy_file("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", data),
          "unsupported dtype '>f4'");
  refused(npy_file("{'descr': '<f2', 'fortran_order': False, 'shape': (4,), }", data),
          "unsupported dtype '<f2'");
  refused(npy_file("{'descr': '<f4', 'shape': (2,), }", data), "no 'fortran_order'");
  refused(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", data),
          "unexpected key 'x'");
  refused(npy_file("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", data),
          "appears twice");
  refused(npy_file("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", data),
          "True or False");
  refused(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", data),
          "non-negative integer");
  refused(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x", data),
          "unexpected text");
  refused(
      npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", data),
      "too large");
  refused(
      npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", data),
      "too large");
  refused(npy_file("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", Bytes{1, 7}),
          "bool element 1");
}

// ---- cross-check with Python's safetensors and NumPy, when installed ----------------------

namespace {
bool python_has(const std::string& modules) {
  return std::system(("python3 -c 'import " + modules + "' >/dev/null 2>&1").c_str()) == 0;
}
// Runs a Python script; returns its exit status and output.
int run_python(const fs::path& dir, const std::string& script, std::string* output) {
  const fs::path file = dir / "check.py";
  std::ofstream(file) << script;
  FILE* pipe = ::popen(("python3 " + file.string() + " " + dir.string() + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe)) *output += buf;
  return ::pclose(pipe);
}

// The same tensors, built in C++ here and in NumPy in the scripts below.
nn::ParamMap cross_tensors() {
  std::vector<float> f32(12);
  for (int i = 0; i < 12; ++i) f32[i] = static_cast<float>(i) * 0.25f - 1.f;
  std::vector<int64_t> i64(6);
  for (int i = 0; i < 6; ++i) i64[i] = i - 3;
  std::vector<int32_t> i32(5);
  for (int i = 0; i < 5; ++i) i32[i] = i * 1000003;
  Bytes u8(10), b(7);
  for (int i = 0; i < 10; ++i) u8[i] = static_cast<uint8_t>(i * 37 % 256);
  for (int i = 0; i < 7; ++i) b[i] = i % 3 == 0;
  std::vector<double> t(6);
  for (int i = 0; i < 6; ++i) t[i] = i * 1.5;
  return {{"f32", from_bytes(bytes_of(f32), {3, 4}, DType::Float32)},
          {"f64", from_bytes(bytes_of(std::vector<double>{1.0 / 3.0}), {}, DType::Float64)},
          {"i64", from_bytes(bytes_of(i64), {2, 3}, DType::Int64)},
          {"i32", from_bytes(bytes_of(i32), {5}, DType::Int32)},
          {"u8", from_bytes(u8, {10}, DType::UInt8)},
          {"b", from_bytes(b, {7}, DType::Bool)},
          {"empty", from_bytes({}, {0, 3}, DType::Float32)},
          {"t", from_bytes(bytes_of(t), {2, 3}, DType::Float64).transpose(0, 1)}};
}

const char* kPyExpected = R"(
import sys, os, numpy as np
d = sys.argv[1]
def expected():
    return {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4) * np.float32(0.25) - np.float32(1),
        "f64": np.array(1.0 / 3.0),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3) - 3,
        "i32": np.arange(5, dtype=np.int32) * np.int32(1000003),
        "u8": (np.arange(10) * 37 % 256).astype(np.uint8),
        "b": np.arange(7) % 3 == 0,
        "empty": np.zeros((0, 3), dtype=np.float32),
        "t": (np.arange(6, dtype=np.float64).reshape(2, 3) * 1.5).T,
    }
def same(name, got, want):
    assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert np.array_equal(got, want), (name, got, want)
)";
}  // namespace

TEST_F(Checkpoint, PythonSafetensorsCrossCheck) {
  if (!python_has("numpy, safetensors"))
    GTEST_SKIP() << "python3 with numpy and safetensors is not installed: cross-check skipped";
  const nn::ParamMap ours = cross_tensors();
  nn::save_safetensors(path("ours.safetensors"), ours, {{"from", "metagrad"}, {"u", "\xc3\xbc"}});
  const std::string script = std::string(kPyExpected) + R"(
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
got = load_file(os.path.join(d, "ours.safetensors"))
want = expected()
assert set(got) == set(want), (sorted(got), sorted(want))
for k in want: same(k, got[k], want[k])
with safe_open(os.path.join(d, "ours.safetensors"), framework="np") as f:
    assert f.metadata() == {"from": "metagrad", "u": "\u00fc"}, f.metadata()
# copy(order="C"), not ascontiguousarray, which turns a 0-d array into a 1-d one
save_file({k: v.copy(order="C") for k, v in want.items()},
          os.path.join(d, "theirs.safetensors"), metadata={"from": "python"})
print("python: ok")
)";
  std::string out;
  ASSERT_EQ(run_python(dir_, script, &out), 0) << out;
  nn::Metadata meta;
  const nn::ParamMap theirs = nn::load_safetensors(path("theirs.safetensors"), &meta);
  EXPECT_EQ(meta, (nn::Metadata{{"from", "python"}}));
  ASSERT_EQ(theirs.size(), ours.size());
  for (const auto& [name, t] : ours) {
    const Tensor c = t.contiguous();
    expect_tensor(theirs.at(name), c.dtype(), c.shape(), raw(c), name);
  }
}

TEST_F(Checkpoint, PythonNumpyCrossCheck) {
  if (!python_has("numpy")) GTEST_SKIP() << "python3 with numpy is not installed: skipped";
  const nn::ParamMap ours = cross_tensors();
  for (const auto& [name, t] : ours) nn::save_npy(path("ours_" + name + ".npy"), t);
  const std::string script = std::string(kPyExpected) + R"(
want = expected()
for k, v in want.items():
    same(k, np.load(os.path.join(d, "ours_" + k + ".npy")), v)
    np.save(os.path.join(d, "theirs_" + k + ".npy"), v)
np.save(os.path.join(d, "theirs_fortran.npy"),
        np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4)))
print("python: ok")
)";
  std::string out;
  ASSERT_EQ(run_python(dir_, script, &out), 0) << out;
  for (const auto& [name, t] : ours) {
    const Tensor c = t.contiguous();
    expect_tensor(nn::load_npy(path("theirs_" + name + ".npy")), c.dtype(), c.shape(), raw(c),
                  name);
  }
  std::vector<double> iota(24);
  for (int i = 0; i < 24; ++i) iota[i] = i;
  expect_tensor(nn::load_npy(path("theirs_fortran.npy")), DType::Float64, {2, 3, 4}, bytes_of(iota),
                "fortran");
}
