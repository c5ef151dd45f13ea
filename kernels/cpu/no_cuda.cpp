// Linked instead of kernels/cuda/ in a build without CUDA (DESIGN principle 7): the queries
// answer "no device", and everything that needs one raises a clear error. The kernel entry
// points exist only so that the tensor layer links; no CUDA tensor can be created here, so
// they are never reached.
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device.h"
#include "kernels/error.h"

namespace metagrad {

int cuda_device_count() {
  return 0;
}
bool cuda_is_available() {
  return false;
}

namespace {
[[noreturn]] void no_cuda(const char* op) {
  detail::fail(op,
               "this build has no CUDA support (configure with MG_WITH_CUDA=ON where nvcc "
               "is installed); use the CPU");
}
}  // namespace

namespace cuda {
void check_device(const char* op, int) {
  no_cuda(op);
}
int current_device() {
  no_cuda("cuda");
}
void set_device(int) {
  no_cuda("set_device");
}
void synchronize(int) {
  no_cuda("synchronize");
}
Stream Stream::create(int) {
  no_cuda("Stream");
}
Stream Stream::default_stream(int) {
  no_cuda("Stream");
}
Stream::Stream(Stream&&) noexcept {}
Stream& Stream::operator=(Stream&&) noexcept {
  return *this;
}
Stream::~Stream() = default;
void Stream::synchronize() const {
  no_cuda("Stream");
}
bool Stream::query() const {
  no_cuda("Stream");
}
void* current_stream_handle(int) {
  no_cuda("cuda");
}
StreamGuard::StreamGuard(const Stream&) : device_(0), previous_(nullptr) {
  no_cuda("StreamGuard");
}
StreamGuard::~StreamGuard() = default;
Event::Event() {
  no_cuda("Event");
}
Event::Event(Event&&) noexcept {}
Event& Event::operator=(Event&&) noexcept {
  return *this;
}
Event::~Event() = default;
void Event::record(const Stream*) {
  no_cuda("Event");
}
void Event::synchronize() const {
  no_cuda("Event");
}
void Event::wait(const Stream&) const {
  no_cuda("Event");
}
bool Event::query() const {
  no_cuda("Event");
}
float Event::elapsed_ms(const Event&) const {
  no_cuda("Event");
}
void* device_alloc(int, size_t, void*, size_t*) {
  no_cuda("alloc");
}
void device_free(int, void*, size_t, void*) {}
MemoryStats memory_stats(int) {
  no_cuda("memory_stats");
}
void reset_peak_memory_stats(int) {
  no_cuda("reset_peak_memory_stats");
}
void empty_cache(int) {
  no_cuda("empty_cache");
}
void set_memory_limit(size_t, int) {
  no_cuda("set_memory_limit");
}
void memcpy_to_device(void*, const void*, size_t) {
  no_cuda("to");
}
void memcpy_to_host(void*, const void*, size_t) {
  no_cuda("to");
}
void memcpy_device_to_device(void*, const void*, size_t) {
  no_cuda("to");
}
LaunchStats launch_stats() {
  return {};
}
void reset_launch_stats() {}
void check_device_errors(int) {}  // no device, no deferred errors
void set_allow_tf32(bool) {}
bool allow_tf32() {
  return false;
}
}  // namespace cuda

namespace kernels::cuda {
void unary(UnaryOp, double, double, DType, Extent, Operand, Operand) {
  no_cuda("unary");
}
void binary(BinaryOp, DType, Extent, Operand, Operand, Operand) {
  no_cuda("binary");
}
void where(DType, Extent, Operand, Operand, Operand, Operand) {
  no_cuda("where");
}
void copy(DType, DType, Extent, Operand, Operand) {
  no_cuda("copy");
}
void fill(DType, Extent, Operand, double) {
  no_cuda("fill");
}
void reduce(ReduceOp, const ReduceInput&, void*, int64_t*, double) {
  no_cuda("reduce");
}
void softmax(DType, bool, int64_t, int64_t, int64_t, const void*, void*) {
  no_cuda("softmax");
}
void softmax_backward(DType, bool, int64_t, int64_t, int64_t, const void*, const void*, void*) {
  no_cuda("softmax_backward");
}
bool cross_entropy_forward(DType, int64_t, int64_t, const void*, const int64_t*, void*, int64_t*) {
  no_cuda("cross_entropy");
}
bool cross_entropy_backward(DType, int64_t, int64_t, const void*, const void*, const int64_t*,
                            void*, int64_t*) {
  no_cuda("cross_entropy_backward");
}
bool find_index_out_of_range(DType, Extent, Operand, int64_t, int64_t*) {
  no_cuda("index");
}
void index_min_max(DType, Extent, Operand, int64_t*, int64_t*) {
  no_cuda("index");
}
bool gather(size_t, DType, Extent, Operand, Operand, Operand, int64_t, int64_t) {
  no_cuda("gather");
}
void scatter_add(DType, DType, Extent, int, Operand, Operand, Operand, int64_t, int64_t) {
  no_cuda("scatter_add");
}
void one_hot(DType, int64_t, const void*, int64_t*, int64_t) {
  no_cuda("one_hot");
}
void pad(DType, int, const int64_t*, void*, const void*, const int64_t*, const int64_t*, double) {
  no_cuda("pad");
}
void max_pool2d_forward(DType, const Pool2dGeometry&, const void*, void*, int64_t*) {
  no_cuda("max_pool2d");
}
bool max_pool2d_backward(DType, const Pool2dGeometry&, const void*, const int64_t*, void*,
                         int64_t*) {
  no_cuda("max_pool2d_backward");
}
void avg_pool2d_forward(DType, const Pool2dGeometry&, bool, const void*, void*) {
  no_cuda("avg_pool2d");
}
void avg_pool2d_backward(DType, const Pool2dGeometry&, bool, const void*, void*) {
  no_cuda("avg_pool2d_backward");
}
void batch_norm_forward(DType, const BatchNormGeometry&, const void*, const void*, const void*,
                        void*, void*, void*) {
  no_cuda("native_batch_norm");
}
void batch_norm_backward(DType, const BatchNormGeometry&, const void*, const void*,
                         const BatchNormBackwardArgs&) {
  no_cuda("native_batch_norm_backward");
}
void sgd_step(DType, int64_t, void*, const void*, void*, const SGDStepArgs&) {
  no_cuda("sgd");
}
void adam_step(DType, int64_t, void*, const void*, void*, void*, void*, const AdamStepArgs&) {
  no_cuda("adam");
}
void sgd_step_multi(DType, int, const int64_t*, void* const*, const void* const*, void* const*,
                    const SGDStepArgs&) {
  no_cuda("sgd");
}
void adam_step_multi(DType, int, const int64_t*, void* const*, const void* const*, void* const*,
                     void* const*, void* const*, const AdamStepArgs&) {
  no_cuda("adam");
}
void random_uniform(DType, Extent, Operand, uint64_t, uint64_t, double, double) {
  no_cuda("rand");
}
void random_normal(DType, Extent, Operand, uint64_t, uint64_t, double, double) {
  no_cuda("randn");
}
void random_int(DType, Extent, Operand, uint64_t, uint64_t, int64_t, uint64_t) {
  no_cuda("randint");
}
void random_bernoulli(DType, Extent, Operand, uint64_t, uint64_t, double) {
  no_cuda("bernoulli");
}
bool random_bernoulli_tensor(DType, Extent, Operand, Operand, uint64_t, uint64_t) {
  no_cuda("bernoulli");
}
void random_perm(int64_t, int64_t*, uint64_t, uint64_t) {
  no_cuda("randperm");
}
void matmul(DType, const MatmulShape&, MatrixOperand, MatrixOperand, void*) {
  no_cuda("matmul");
}
void conv2d_forward(DType, const Conv2dGeometry&, const void*, const void*, const void*, void*) {
  no_cuda("conv2d");
}
void conv2d_input_backward(DType, const Conv2dGeometry&, const void*, const void*, void*) {
  no_cuda("conv2d_input_backward");
}
void conv2d_weight_backward(DType, const Conv2dGeometry&, const void*, const void*, void*) {
  no_cuda("conv2d_weight_backward");
}
}  // namespace kernels::cuda

}  // namespace metagrad
