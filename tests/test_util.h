// Helpers shared by the test suites.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tensor/error.h"

// Expects `stmt` to throw metagrad::Error whose message starts with `prefix`
// (typically "[op]", or the whole expected message).
#define EXPECT_MG_ERROR(stmt, prefix)                                               \
  do {                                                                              \
    try {                                                                           \
      (void)(stmt);                                                                 \
      ADD_FAILURE() << "expected metagrad::Error from " #stmt;                      \
    } catch (const ::metagrad::Error& e) {                                          \
      const std::string msg_ = e.what();                                            \
      EXPECT_EQ(msg_.rfind(prefix, 0), 0u) << "message: " << msg_;                  \
    }                                                                               \
  } while (0)

// As EXPECT_MG_ERROR, and the message also contains `part`.
#define EXPECT_MG_ERROR_HAS(stmt, prefix, part)                                     \
  do {                                                                              \
    try {                                                                           \
      (void)(stmt);                                                                 \
      ADD_FAILURE() << "expected metagrad::Error from " #stmt;                      \
    } catch (const ::metagrad::Error& e) {                                          \
      const std::string msg_ = e.what();                                            \
      EXPECT_EQ(msg_.rfind(prefix, 0), 0u) << "message: " << msg_;                  \
      EXPECT_NE(msg_.find(part), std::string::npos) << "message: " << msg_;         \
    }                                                                               \
  } while (0)

// n values uniform in [-1, 1) from a fixed seed: reference inputs computed outside metagrad.
inline std::vector<double> random_values(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(-1, 1);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(gen);
  return v;
}
