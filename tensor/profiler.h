// A kernel profiler: counts and times every kernel the tensor layer dispatches (each
// MG_KERNEL call of tensor/dispatch.h), by kernel name and device, while it is enabled.
//
//   metagrad::profiler::Scope on;           // enables it, restores the previous state on exit
//   ... the work to look at ...
//   std::cout << metagrad::profiler::table();
//
// Names are the kernel entry points of kernels/cpu and kernels/cuda ("conv2d_forward",
// "binary" for every binary elementwise op, "reduce", ...). On the CPU a kernel's time is its
// whole run; on a GPU it is the host time of the launch (the kernel runs asynchronously), so
// there the count is the number to read: one dispatch is at least one kernel launch.
// Disabled (the default), a dispatch pays one relaxed atomic load. Thread-safe: kernels
// dispatched from several threads are all counted.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/device.h"

namespace metagrad::profiler {

struct KernelStat {
  std::string name;     // the kernel entry point
  DeviceType device;    // where it ran
  int64_t calls = 0;    // dispatches
  double total_ms = 0;  // summed wall time of the dispatches (host time of the launch on a GPU)
};

void enable(bool on = true);
bool enabled();
// Forgets everything recorded so far.
void reset();
// What was recorded, by total time, largest first (ties by name).
std::vector<KernelStat> stats();
// The sum of `calls` over stats().
int64_t total_calls();
// A printable table of the `top` largest entries (all when 0) and the totals.
std::string table(size_t top = 0);

// Enables (or disables) the profiler for a scope; restores the previous state on exit.
class Scope {
 public:
  explicit Scope(bool on = true) : prev_(enabled()) { enable(on); }
  ~Scope() { enable(prev_); }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool prev_;
};

namespace detail {

extern std::atomic<bool> g_enabled;
void record(const char* name, DeviceType device, double ms);

// Lives for one MG_KERNEL call (a temporary of the full expression): times it when enabled.
class KernelTimer {
 public:
  KernelTimer(const char* name, const Device& device)
      : name_(g_enabled.load(std::memory_order_relaxed) ? name : nullptr), device_(device.type) {
    if (name_) start_ = std::chrono::steady_clock::now();
  }
  ~KernelTimer() {
    if (name_)
      record(name_, device_,
             std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
                 .count());
  }
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;

 private:
  const char* name_;
  DeviceType device_;
  std::chrono::steady_clock::time_point start_{};
};

}  // namespace detail
}  // namespace metagrad::profiler
