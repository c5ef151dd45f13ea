// The scalar types the kernels compute on, and the one switch that turns a runtime
// DType into a compile-time C++ type. It lives at the bottom layer because both the
// kernels and tensor/ need it; tensor/ re-exports it as metagrad::DType.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/error.h"

namespace metagrad {

enum class DType : uint8_t { Bool, UInt8, Int32, Int64, Float32, Float64 };

constexpr int kNumDTypes = 6;

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::Bool:
    case DType::UInt8: return 1;
    case DType::Int32:
    case DType::Float32: return 4;
    case DType::Int64:
    case DType::Float64: return 8;
  }
  return 0;
}

constexpr bool is_floating(DType t) { return t == DType::Float32 || t == DType::Float64; }
constexpr bool is_integral(DType t, bool include_bool) {
  return t == DType::UInt8 || t == DType::Int32 || t == DType::Int64 ||
         (include_bool && t == DType::Bool);
}

constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::UInt8: return "uint8";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
  }
  return "?";
}

template <typename T> struct dtype_of;
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::UInt8; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::Int32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <typename T> inline constexpr DType dtype_v = dtype_of<T>::value;

}  // namespace metagrad

// MG_DISPATCH_ALL(dtype, NAME, ...) runs the body with `scalar_t` bound to the C++ type of
// `dtype`. The body is a lambda so that `return` inside it works as expected.
#define MG_DTYPE_CASE(enum_v, type, ...) \
  case ::metagrad::DType::enum_v: {      \
    using scalar_t = type;               \
    return __VA_ARGS__();                \
  }

#define MG_DISPATCH_ALL(dtype, ...)                                            \
  [&] {                                                                        \
    switch (dtype) {                                                           \
      MG_DTYPE_CASE(Bool, bool, __VA_ARGS__)                                   \
      MG_DTYPE_CASE(UInt8, uint8_t, __VA_ARGS__)                               \
      MG_DTYPE_CASE(Int32, int32_t, __VA_ARGS__)                               \
      MG_DTYPE_CASE(Int64, int64_t, __VA_ARGS__)                               \
      MG_DTYPE_CASE(Float32, float, __VA_ARGS__)                               \
      MG_DTYPE_CASE(Float64, double, __VA_ARGS__)                              \
    }                                                                          \
    __builtin_unreachable();                                                   \
  }()

#define MG_DISPATCH_FLOAT(dtype, ...)                                          \
  [&] {                                                                        \
    switch (dtype) {                                                           \
      MG_DTYPE_CASE(Float32, float, __VA_ARGS__)                               \
      MG_DTYPE_CASE(Float64, double, __VA_ARGS__)                              \
      default: break;                                                          \
    }                                                                          \
    __builtin_unreachable();                                                   \
  }()

// Numeric (non-bool) types: arithmetic on bool is promoted away before a kernel runs.
#define MG_DISPATCH_NUMERIC(dtype, ...)                                        \
  [&] {                                                                        \
    switch (dtype) {                                                           \
      MG_DTYPE_CASE(UInt8, uint8_t, __VA_ARGS__)                               \
      MG_DTYPE_CASE(Int32, int32_t, __VA_ARGS__)                               \
      MG_DTYPE_CASE(Int64, int64_t, __VA_ARGS__)                               \
      MG_DTYPE_CASE(Float32, float, __VA_ARGS__)                               \
      MG_DTYPE_CASE(Float64, double, __VA_ARGS__)                              \
      default: break;                                                          \
    }                                                                          \
    __builtin_unreachable();                                                   \
  }()

// The integer types an index tensor may have (gather, scatter_add, one_hot, the range checks).
// Anything else is a caller bug, reported with the op's name.
#define MG_DISPATCH_INDEX(op, index_t, ...)                                          \
  [&] {                                                                             \
    switch (index_t) {                                                              \
      MG_DTYPE_CASE(UInt8, uint8_t, __VA_ARGS__)                                    \
      MG_DTYPE_CASE(Int32, int32_t, __VA_ARGS__)                                    \
      MG_DTYPE_CASE(Int64, int64_t, __VA_ARGS__)                                    \
      default:                                                                      \
        break;                                                                      \
    }                                                                               \
    ::metagrad::detail::fail(op, "unsupported index dtype ", dtype_name(index_t)); \
  }()

// Elements that are only moved (gather) are moved as unsigned words of their size.
#define MG_DISPATCH_BY_SIZE(op, size, ...)                                     \
  [&] {                                                                        \
    switch (size) {                                                            \
      case 1: {                                                                \
        using word_t = uint8_t;                                                \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case 4: {                                                                \
        using word_t = uint32_t;                                               \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case 8: {                                                                \
        using word_t = uint64_t;                                               \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      default:                                                                 \
        break;                                                                 \
    }                                                                          \
    ::metagrad::detail::fail(op, "unsupported element size ", size, " bytes"); \
  }()
