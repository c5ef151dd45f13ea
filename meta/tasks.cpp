// Sinusoid regression tasks (meta/tasks.h).
#include "meta/tasks.h"

#include <cmath>

#include "tensor/grad_mode.h"

namespace metagrad::meta {

namespace {

constexpr const char* kWho = "sinusoid";

void check_dtype(DType dtype) {
  MG_CHECK(dtype == DType::Float32 || dtype == DType::Float64, kWho,
           "dtype must be float32 or float64, got ", dtype_name(dtype));
}

// y = a * sin(x - phase) for n contiguous values of x, computed in double.
template <typename T>
void eval(const T* x, T* y, int64_t n, double amplitude, double phase) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<T>(amplitude * std::sin(static_cast<double>(x[i]) - phase));
}

// x ~ U[lo, hi) in dtype: uniform [0, 1) from rand(), then scaled in the dtype.
Tensor draw_x(const Shape& shape, double lo, double hi, Generator& gen, DType dtype) {
  Tensor x = rand(shape, TensorOptions(dtype), &gen);
  if (dtype == DType::Float32) {
    float* p = x.data_ptr<float>();
    for (int64_t i = 0; i < x.numel(); ++i)
      p[i] = static_cast<float>(lo + (hi - lo) * static_cast<double>(p[i]));
  } else {
    double* p = x.data_ptr<double>();
    for (int64_t i = 0; i < x.numel(); ++i) p[i] = lo + (hi - lo) * p[i];
  }
  return x;
}

void fill_y(const Tensor& x, Tensor& y, double amplitude, double phase) {
  if (x.dtype() == DType::Float32)
    eval(x.data_ptr<float>(), y.data_ptr<float>(), x.numel(), amplitude, phase);
  else
    eval(x.data_ptr<double>(), y.data_ptr<double>(), x.numel(), amplitude, phase);
}

}  // namespace

std::pair<Tensor, Tensor> SinusoidTask::sample(int64_t k, Generator& gen, DType dtype) const {
  MG_CHECK(k >= 0, kWho, "number of points must be non-negative, got ", k);
  check_dtype(dtype);
  Tensor x = draw_x({k, 1}, x_min, x_max, gen, dtype);
  Tensor y = Tensor::empty({k, 1}, TensorOptions(dtype));
  fill_y(x, y, amplitude, phase);
  return {x, y};
}

Tensor SinusoidTask::operator()(const Tensor& x) const {
  MG_CHECK(x.defined() && x.is_floating_point(), kWho, "expects a floating tensor");
  NoGradGuard no_grad;
  // Computed on the CPU (a host loop), returned on x's device.
  const Tensor xc = x.to(Device::cpu()).contiguous();
  Tensor y = Tensor::empty(x.shape(), TensorOptions(x.dtype()));
  fill_y(xc, y, amplitude, phase);
  return y.to(x.device());
}

SinusoidTasks::SinusoidTasks(const Options& opts) : opts_(opts) {
  MG_CHECK(opts.amplitude_min <= opts.amplitude_max && opts.phase_min <= opts.phase_max &&
               opts.x_min <= opts.x_max,
           kWho, "each range needs min <= max, got amplitude [", opts.amplitude_min, ", ",
           opts.amplitude_max, "], phase [", opts.phase_min, ", ", opts.phase_max, "], x [",
           opts.x_min, ", ", opts.x_max, "]");
}

SinusoidTask SinusoidTasks::sample_task(Generator& gen) const {
  // One draw of two uniforms: amplitude, then phase.
  const std::vector<double> u = rand({2}, TensorOptions(DType::Float64), &gen).to_vector<double>();
  SinusoidTask t;
  t.amplitude = opts_.amplitude_min + (opts_.amplitude_max - opts_.amplitude_min) * u[0];
  t.phase = opts_.phase_min + (opts_.phase_max - opts_.phase_min) * u[1];
  t.x_min = opts_.x_min;
  t.x_max = opts_.x_max;
  return t;
}

SinusoidBatch SinusoidTasks::sample_batch(int64_t num_tasks, int64_t k_support, int64_t k_query,
                                          Generator& gen, DType dtype) const {
  MG_CHECK(num_tasks >= 0 && k_support >= 0 && k_query >= 0, kWho,
           "sizes must be non-negative, got T = ", num_tasks, ", k_support = ", k_support,
           ", k_query = ", k_query);
  check_dtype(dtype);
  SinusoidBatch b;
  b.amplitude = Tensor::empty({num_tasks}, TensorOptions(DType::Float64));
  b.phase = Tensor::empty({num_tasks}, TensorOptions(DType::Float64));
  std::vector<SinusoidTask> tasks;
  for (int64_t t = 0; t < num_tasks; ++t) {
    tasks.push_back(sample_task(gen));
    b.amplitude.data_ptr<double>()[t] = tasks.back().amplitude;
    b.phase.data_ptr<double>()[t] = tasks.back().phase;
  }
  b.support_x = draw_x({num_tasks, k_support, 1}, opts_.x_min, opts_.x_max, gen, dtype);
  b.query_x = draw_x({num_tasks, k_query, 1}, opts_.x_min, opts_.x_max, gen, dtype);
  b.support_y = Tensor::empty({num_tasks, k_support, 1}, TensorOptions(dtype));
  b.query_y = Tensor::empty({num_tasks, k_query, 1}, TensorOptions(dtype));
  for (int64_t t = 0; t < num_tasks; ++t) {
    const SinusoidTask& task = tasks[static_cast<size_t>(t)];
    // Row t of a contiguous [T, k, 1] tensor is a contiguous [k, 1] view.
    Tensor sx = b.support_x.select(0, t), sy = b.support_y.select(0, t);
    Tensor qx = b.query_x.select(0, t), qy = b.query_y.select(0, t);
    fill_y(sx, sy, task.amplitude, task.phase);
    fill_y(qx, qy, task.amplitude, task.phase);
  }
  return b;
}

}  // namespace metagrad::meta
