// The kernel profiler (tensor/profiler.h): a map from (name, device) to counts and times,
// guarded by a mutex that only enabled dispatches take.
#include "tensor/profiler.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <utility>

namespace metagrad::profiler {

namespace detail {
std::atomic<bool> g_enabled{false};
}  // namespace detail

namespace {

struct Table {
  std::mutex mu;
  // keyed by the name's text, not its pointer: the same kernel name may be spelled by several
  // translation units
  std::map<std::pair<std::string, DeviceType>, KernelStat> entries;
};

Table& table_of() {
  static Table t;
  return t;
}

}  // namespace

void detail::record(const char* name, DeviceType device, double ms) {
  Table& t = table_of();
  std::lock_guard<std::mutex> lock(t.mu);
  KernelStat& s = t.entries[{name, device}];
  if (s.calls == 0) {
    s.name = name;
    s.device = device;
  }
  ++s.calls;
  s.total_ms += ms;
}

void enable(bool on) {
  detail::g_enabled.store(on, std::memory_order_relaxed);
}

bool enabled() {
  return detail::g_enabled.load(std::memory_order_relaxed);
}

void reset() {
  Table& t = table_of();
  std::lock_guard<std::mutex> lock(t.mu);
  t.entries.clear();
}

std::vector<KernelStat> stats() {
  std::vector<KernelStat> out;
  {
    Table& t = table_of();
    std::lock_guard<std::mutex> lock(t.mu);
    for (const auto& [key, s] : t.entries) out.push_back(s);
  }
  std::stable_sort(out.begin(), out.end(), [](const KernelStat& a, const KernelStat& b) {
    return a.total_ms > b.total_ms;
  });
  return out;
}

int64_t total_calls() {
  int64_t n = 0;
  for (const KernelStat& s : stats()) n += s.calls;
  return n;
}

std::string table(size_t top) {
  const std::vector<KernelStat> all = stats();
  double total_ms = 0;
  int64_t calls = 0;
  for (const KernelStat& s : all) {
    total_ms += s.total_ms;
    calls += s.calls;
  }
  std::string out;
  char line[160];
  std::snprintf(line, sizeof line, "%-28s %-6s %10s %12s %10s %7s\n", "kernel", "device", "calls",
                "total ms", "mean us", "share");
  out += line;
  const size_t n = top == 0 ? all.size() : std::min(top, all.size());
  for (size_t i = 0; i < n; ++i) {
    const KernelStat& s = all[i];
    std::snprintf(line, sizeof line, "%-28s %-6s %10lld %12.3f %10.2f %6.1f%%\n", s.name.c_str(),
                  s.device == DeviceType::CUDA ? "cuda" : "cpu", static_cast<long long>(s.calls),
                  s.total_ms, 1000.0 * s.total_ms / static_cast<double>(s.calls),
                  total_ms > 0 ? 100.0 * s.total_ms / total_ms : 0.0);
    out += line;
  }
  if (n < all.size()) {
    std::snprintf(line, sizeof line, "(%zu more)\n", all.size() - n);
    out += line;
  }
  std::snprintf(line, sizeof line, "%-28s %-6s %10lld %12.3f\n", "total", "",
                static_cast<long long>(calls), total_ms);
  out += line;
  return out;
}

}  // namespace metagrad::profiler
