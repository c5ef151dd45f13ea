// The convolutions on the GPU (kernels/cuda/cuda_kernels.h; semantics in kernels/cpu/conv.h):
// forward, input backward and weight backward of a grouped, strided, padded, dilated 2-d
// convolution over contiguous NCHW float32 / float64 tensors, through cuDNN 9's legacy
// convolution API (cudnnConvolutionForward, ...BackwardData, ...BackwardFilter).
//
// Every cuDNN call of metagrad is in this file, the handle cache included, so that a move to
// cuDNN's graph API (the legacy calls are deprecated in cuDNN 9) touches nothing else.
//
// Note [cuDNN algorithm choice]: the algorithm of each (device, direction, dtype, TF32 switch,
// geometry) is chosen once and cached. The choice uses cuDNN's heuristics (the _v7 queries:
// no timing runs, so the same shape gets the same algorithm in every run) and takes, in the
// heuristics' order, the first algorithm that cuDNN accepts for the shape, whose workspace
// fits kMaxWorkspace, and which is deterministic (no atomics: gradients reproducible bit for
// bit run to run). Only when none is, a fixed deterministic algorithm is tried (the
// heuristics may offer nothing for float64), then non-deterministic ones. Float32 runs with
// CUDNN_FMA_MATH, which forbids TF32 tensor-core math, unless cuda::allow_tf32() is on.
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "kernels/cuda/common.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/handles.h"

namespace metagrad::kernels::cuda {

namespace {

namespace rt = ::metagrad::cuda;

constexpr int64_t kIntMax = INT_MAX;  // the legacy API takes int sizes
// The largest workspace an algorithm may ask for. A fixed bound, not the memory free at the
// moment, so that the choice does not depend on what else is allocated.
constexpr size_t kMaxWorkspace = size_t{1} << 30;

// ---- the handle (Note [Library handles] in kernels/cuda/handles.h) ------------------------

class CudnnHandle {
 public:
  CudnnHandle() { MG_CUDNN_CHECK(cudnnCreate(&handle_)); }
  CudnnHandle(const CudnnHandle&) = delete;
  CudnnHandle& operator=(const CudnnHandle&) = delete;
  // Never throws: at exit the CUDA driver may be shut down before this runs.
  ~CudnnHandle() {
    if (handle_) (void)cudnnDestroy(handle_);
  }
  // The handle, bound to `s`; cudnnSetStream (microseconds of driver queries) only when the
  // stream changes, not for every convolution.
  cudnnHandle_t on(cudaStream_t s) {
    if (!binding_.is(s)) {
      MG_CUDNN_CHECK(cudnnSetStream(handle_, s));
      binding_.set(s);
    }
    return handle_;
  }

 private:
  cudnnHandle_t handle_ = nullptr;
  metagrad::cuda::StreamBinding binding_;
};

// The handle of the current device for this thread, bound to the current stream.
cudnnHandle_t cudnn_handle() {
  thread_local std::map<int, CudnnHandle> handles;
  const int device = rt::current_device();
  const cudnnHandle_t h = handles.try_emplace(device).first->second.on(rt::stream());
  rt::detail::count_library_call();  // one per convolution op (the handle is fetched for each)
  return h;
}

// ---- descriptors ------------------------------------------------------------------------

// Owns one cuDNN descriptor. Creation is the whole constructor, so a descriptor that exists is
// always destroyed, also when setting it up throws afterwards.
template <typename T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class Descriptor {
 public:
  Descriptor() { MG_CUDNN_CHECK(Create(&desc_)); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() {
    if (desc_) (void)Destroy(desc_);
  }
  T get() const { return desc_; }

 private:
  T desc_ = nullptr;
};

using TensorDesc =
    Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc =
    Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc = Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                            cudnnDestroyConvolutionDescriptor>;

constexpr float kOneF = 1.0f, kZeroF = 0.0f;
constexpr double kOneD = 1.0, kZeroD = 0.0;

// The cuDNN view of a dtype.
struct Types {
  cudnnDataType_t data;  // also the compute type
  cudnnMathType_t math;  // asked for before an algorithm is chosen
  bool exact_fp32;       // float32 without TF32: FMA math only
  size_t elem;           // bytes per element
  const void* one;       // the blending scalars alpha and beta: float for float32 data,
  const void* zero;      // double for float64 data
};

Types types_of(const char* op, DType dtype) {
  if (dtype == DType::Float32) {
    const bool tf32 = rt::allow_tf32();
    return {CUDNN_DATA_FLOAT, tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH, !tf32, 4, &kOneF,
            &kZeroF};
  }
  if (dtype == DType::Float64)
    return {CUDNN_DATA_DOUBLE, CUDNN_DEFAULT_MATH, false, 8, &kOneD, &kZeroD};
  ::metagrad::detail::fail(op, "dtype ", dtype_name(dtype),
                           " is not supported on CUDA (float32 and float64 only)");
}

// The legacy API takes int sizes and tensors of at most 2^31 - 1 elements: every size must fit
// an int, and the batch is cut into calls of this many images.
int64_t images_per_call(const char* op, const Conv2dGeometry& g) {
  const int64_t image = std::max(g.c * g.h * g.w, g.o * g.oh * g.ow);
  const int64_t weight = g.o * (g.c / g.groups) * g.kh * g.kw;
  bool fits = image <= kIntMax && weight <= kIntMax;
  for (int64_t v :
       {g.c, g.h, g.w, g.o, g.kh, g.kw, g.oh, g.ow, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups})
    fits = fits && v <= kIntMax;
  MG_CHECK(fits, op, "input [", g.n, ", ", g.c, ", ", g.h, ", ", g.w, "] with weight [", g.o, ", ",
           g.c / g.groups, ", ", g.kh, ", ", g.kw,
           "] exceeds cuDNN's 32-bit sizes (2^31 - 1 elements per image and in the weight)");
  return std::min(g.n, kIntMax / image);
}

// The descriptors of one call over nb images: x [nb, c, h, w], y [nb, o, oh, ow] (also the
// gradients' shapes), w [o, c / groups, kh, kw] and the convolution itself.
struct ConvDescriptors {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;

  ConvDescriptors(const char* op, const Conv2dGeometry& g, int64_t nb, const Types& t) {
    auto i = [](int64_t v) { return static_cast<int>(v); };  // checked by images_per_call
    MG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x.get(), CUDNN_TENSOR_NCHW, t.data, i(nb), i(g.c),
                                              i(g.h), i(g.w)));
    MG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y.get(), CUDNN_TENSOR_NCHW, t.data, i(nb), i(g.o),
                                              i(g.oh), i(g.ow)));
    MG_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w.get(), t.data, CUDNN_TENSOR_NCHW, i(g.o),
                                              i(g.c / g.groups), i(g.kh), i(g.kw)));
    // metagrad's convolution, as PyTorch's, is a cross-correlation (the kernel is not flipped).
    MG_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv.get(), i(g.ph), i(g.pw), i(g.sh), i(g.sw),
                                                   i(g.dh), i(g.dw), CUDNN_CROSS_CORRELATION,
                                                   t.data));
    MG_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv.get(), i(g.groups)));
    MG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv.get(), t.math));
    // cuDNN derives the output size itself; it must be the geometry's (a mismatch is a bug in
    // the caller, better caught here than as a wrong result).
    int dn = 0, dc = 0, dh = 0, dw = 0;
    MG_CUDNN_CHECK(
        cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), w.get(), &dn, &dc, &dh, &dw));
    MG_CHECK(dn == nb && dc == g.o && dh == g.oh && dw == g.ow, op, "cuDNN computes output [", dn,
             ", ", dc, ", ", dh, ", ", dw, "] where the geometry says [", nb, ", ", g.o, ", ", g.oh,
             ", ", g.ow, "]");
  }
};

// Note [cuDNN descriptor cache]: a meta-step runs the same few convolution shapes hundreds of
// times, and building a call's descriptors is fifteen cuDNN calls (four creates, six setters,
// the output-size query, four destroys), microseconds of host time per convolution where the
// host is what bounds a small step. So each host thread keeps the descriptors it built, keyed
// by geometry, image count and types, bounded (the cache starts over past kMaxDescriptors).
// algorithm() sets the chosen math type on the convolution descriptor; a reused one gets the
// call's own math type back first, so that the heuristics of a first call in another
// direction see what a fresh descriptor would show them.
constexpr size_t kMaxDescriptors = 256;

// A call's shape as a map key: the geometry without the batch, then `extra` (what else the key
// must tell apart: the image count, types, direction, device).
template <size_t N>
std::array<int64_t, 15 + N> shape_key(const Conv2dGeometry& g,
                                      const std::array<int64_t, N>& extra) {
  std::array<int64_t, 15 + N> k{g.c,  g.h,  g.w,  g.o,  g.kh, g.kw, g.oh,    g.ow,
                                g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups};
  for (size_t i = 0; i < N; ++i) k[15 + i] = extra[i];
  return k;
}

const ConvDescriptors& descriptors(const char* op, const Conv2dGeometry& g, int64_t nb,
                                   const Types& t) {
  using Key = std::array<int64_t, 18>;
  thread_local std::map<Key, std::unique_ptr<ConvDescriptors>> cache;
  const Key key = shape_key<3>(g, {nb, static_cast<int64_t>(t.data), static_cast<int64_t>(t.math)});
  if (auto it = cache.find(key); it != cache.end()) {
    MG_CUDNN_CHECK(cudnnSetConvolutionMathType(it->second->conv.get(), t.math));
    return *it->second;
  }
  if (cache.size() >= kMaxDescriptors) cache.clear();
  auto made = std::make_unique<ConvDescriptors>(op, g, nb, t);  // built before it is keyed
  return *cache.emplace(key, std::move(made)).first->second;
}

// ---- algorithm choice (Note [cuDNN algorithm choice]) -------------------------------------

enum class Direction { Forward, BackwardData, BackwardFilter };

const char* direction_name(Direction dir) {
  switch (dir) {
    case Direction::Forward:
      return "forward";
    case Direction::BackwardData:
      return "input backward";
    case Direction::BackwardFilter:
      return "weight backward";
  }
  return "?";
}

// One algorithm of a direction (the enum value of cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t)
// with the math type it runs under and its workspace.
struct Algo {
  int algo;
  cudnnMathType_t math;
  size_t workspace;
};

// One entry of a heuristics answer, whatever the direction.
struct Candidate {
  int algo;
  cudnnStatus_t status;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
};

template <typename Perf, size_t N>
std::vector<Candidate> candidates(const std::array<Perf, N>& perf, int count) {
  std::vector<Candidate> out;
  for (int i = 0; i < std::min(count, static_cast<int>(N)); ++i) {
    const Perf& p = perf[static_cast<size_t>(i)];
    out.push_back({static_cast<int>(p.algo), p.status, p.determinism, p.mathType});
  }
  return out;
}

// cuDNN's ranking of the algorithms of `dir` for these descriptors, best first, or nothing
// (with *status set) when the query itself fails.
std::vector<Candidate> heuristics(cudnnHandle_t h, Direction dir, const ConvDescriptors& d,
                                  cudnnStatus_t* status) {
  int count = 0;
  switch (dir) {
    case Direction::Forward: {
      std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT> perf{};
      *status = cudnnGetConvolutionForwardAlgorithm_v7(h, d.x.get(), d.w.get(), d.conv.get(),
                                                       d.y.get(), static_cast<int>(perf.size()),
                                                       &count, perf.data());
      if (*status == CUDNN_STATUS_SUCCESS) return candidates(perf, count);
      break;
    }
    case Direction::BackwardData: {
      std::array<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT> perf{};
      *status = cudnnGetConvolutionBackwardDataAlgorithm_v7(
          h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), static_cast<int>(perf.size()), &count,
          perf.data());
      if (*status == CUDNN_STATUS_SUCCESS) return candidates(perf, count);
      break;
    }
    case Direction::BackwardFilter: {
      std::array<cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>
          perf{};
      *status = cudnnGetConvolutionBackwardFilterAlgorithm_v7(
          h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), static_cast<int>(perf.size()), &count,
          perf.data());
      if (*status == CUDNN_STATUS_SUCCESS) return candidates(perf, count);
      break;
    }
  }
  return {};
}

// The workspace `algo` needs under the descriptors' current math type; not SUCCESS when cuDNN
// cannot run it for this shape.
cudnnStatus_t workspace_size(cudnnHandle_t h, Direction dir, const ConvDescriptors& d, int algo,
                             size_t* bytes) {
  switch (dir) {
    case Direction::Forward:
      return cudnnGetConvolutionForwardWorkspaceSize(
          h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
          static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes);
    case Direction::BackwardData:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(
          h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(),
          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
    case Direction::BackwardFilter:
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(
          h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(),
          static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

// The fixed algorithms tried when the heuristics offer nothing usable: the implicit GEMM
// forward, and for the backward directions ALGO_1 (deterministic) before ALGO_0 (atomics).
int deterministic_fallback(Direction dir) {
  switch (dir) {
    case Direction::Forward:
      return CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    case Direction::BackwardData:
      return CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
    case Direction::BackwardFilter:
      return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
  }
  return 0;
}
std::optional<int> nondeterministic_fallback(Direction dir) {
  switch (dir) {
    case Direction::Forward:
      return std::nullopt;  // every forward algorithm is deterministic
    case Direction::BackwardData:
      return CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
    case Direction::BackwardFilter:
      return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
  }
  return std::nullopt;
}

// Note [cuDNN algorithm choice]. Leaves the descriptors' math type changed (the caller sets the
// chosen one).
Algo choose(const char* op, cudnnHandle_t h, Direction dir, const Conv2dGeometry& g,
            const ConvDescriptors& d, const Types& t) {
  cudnnStatus_t last = CUDNN_STATUS_SUCCESS;  // cuDNN's last refusal, for the error message
  const std::vector<Candidate> ranked = heuristics(h, dir, d, &last);
  // `algo` under `math`, if cuDNN accepts it for this shape and its workspace fits.
  auto try_algo = [&](int algo, cudnnMathType_t math) -> std::optional<Algo> {
    MG_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv.get(), math));
    size_t bytes = 0;
    const cudnnStatus_t st = workspace_size(h, dir, d, algo, &bytes);
    if (st != CUDNN_STATUS_SUCCESS) {
      last = st;
      return std::nullopt;
    }
    if (bytes > kMaxWorkspace) return std::nullopt;
    return Algo{algo, math, bytes};
  };
  // A heuristics entry, under its own math type, except that exact float32 stays on FMA math
  // and skips the entries that need tensor cores.
  auto try_candidate = [&](const Candidate& c) -> std::optional<Algo> {
    if (c.status != CUDNN_STATUS_SUCCESS) return std::nullopt;
    if (!t.exact_fp32) return try_algo(c.algo, c.math);
    if (c.math == CUDNN_TENSOR_OP_MATH || c.math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
      return std::nullopt;
    return try_algo(c.algo, CUDNN_FMA_MATH);
  };
  for (const Candidate& c : ranked)
    if (c.determinism == CUDNN_DETERMINISTIC)
      if (auto a = try_candidate(c)) return *a;
  if (auto a = try_algo(deterministic_fallback(dir), t.math)) return *a;
  for (const Candidate& c : ranked)
    if (c.determinism != CUDNN_DETERMINISTIC)
      if (auto a = try_candidate(c)) return *a;
  if (const auto fb = nondeterministic_fallback(dir))
    if (auto a = try_algo(*fb, t.math)) return *a;
  ::metagrad::detail::fail(op, "cuDNN has no ", direction_name(dir), " algorithm for input [", g.n,
                           ", ", g.c, ", ", g.h, ", ", g.w, "], weight [", g.o, ", ",
                           g.c / g.groups, ", ", g.kh, ", ", g.kw, "], stride (", g.sh, ", ", g.sw,
                           "), padding (", g.ph, ", ", g.pw, "), dilation (", g.dh, ", ", g.dw,
                           "), groups ", g.groups, " within a workspace of ", kMaxWorkspace >> 20,
                           " MiB (last cuDNN status: ", cudnnGetErrorString(last), ")");
}

// The cached choice for one call over nb images (nb replaces g.n), with the descriptors' math
// type set to it.
Algo algorithm(const char* op, cudnnHandle_t h, Direction dir, DType dtype, const Conv2dGeometry& g,
               int64_t nb, const ConvDescriptors& d, const Types& t) {
  using Key = std::array<int64_t, 20>;
  static std::mutex mutex;
  static std::map<Key, Algo> cache;
  const Key key = shape_key<5>(g, {rt::current_device(), static_cast<int64_t>(dir),
                                   static_cast<int64_t>(dtype), t.exact_fp32, nb});
  std::optional<Algo> found;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = cache.find(key); it != cache.end()) found = it->second;
  }
  if (!found) {
    // Chosen outside the lock (the queries take a while); two threads that race here choose
    // the same algorithm, since the heuristics involve no timing.
    found = choose(op, h, dir, g, d, t);
    std::lock_guard<std::mutex> lock(mutex);
    cache.emplace(key, *found);
  }
  MG_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv.get(), found->math));
  return *found;
}

// Byte address of element `index` of an array of `elem`-byte elements.
const void* at(const void* p, int64_t index, size_t elem) {
  return static_cast<const char*>(p) + index * static_cast<int64_t>(elem);
}
void* at(void* p, int64_t index, size_t elem) {
  return static_cast<char*>(p) + index * static_cast<int64_t>(elem);
}

}  // namespace

void conv2d_forward(DType dtype, const Conv2dGeometry& g, const void* x, const void* w,
                    const void* b, void* y) {
  const char* op = "conv2d";
  const Types t = types_of(op, dtype);
  const int64_t per = images_per_call(op, g);
  const cudnnHandle_t h = cudnn_handle();
  // The bias as a [1, o, 1, 1] tensor, broadcast over y by cudnnAddTensor.
  std::optional<TensorDesc> bias;
  if (b) {
    bias.emplace();
    MG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bias->get(), CUDNN_TENSOR_NCHW, t.data, 1,
                                              static_cast<int>(g.o), 1, 1));
  }
  for (int64_t n0 = 0; n0 < g.n; n0 += per) {
    const int64_t nb = std::min(per, g.n - n0);
    const ConvDescriptors& d = descriptors(op, g, nb, t);  // Note [cuDNN descriptor cache]
    const Algo a = algorithm(op, h, Direction::Forward, dtype, g, nb, d, t);
    const rt::Workspace ws(a.workspace);
    void* yc = at(y, n0 * g.o * g.oh * g.ow, t.elem);
    MG_CUDNN_CHECK(cudnnConvolutionForward(h, t.one, d.x.get(), at(x, n0 * g.c * g.h * g.w, t.elem),
                                           d.w.get(), w, d.conv.get(),
                                           static_cast<cudnnConvolutionFwdAlgo_t>(a.algo),
                                           ws.data(), a.workspace, t.zero, d.y.get(), yc));
    // y = conv + b, the bias added after the product as on the CPU.
    if (b) {
      MG_CUDNN_CHECK(cudnnAddTensor(h, t.one, bias->get(), b, t.one, d.y.get(), yc));
      rt::detail::count_library_call();  // a second cuDNN operation of this convolution
    }
  }
}

void conv2d_input_backward(DType dtype, const Conv2dGeometry& g, const void* gy, const void* w,
                           void* gx) {
  const char* op = "conv2d_input_backward";
  const Types t = types_of(op, dtype);
  const int64_t per = images_per_call(op, g);
  const cudnnHandle_t h = cudnn_handle();
  for (int64_t n0 = 0; n0 < g.n; n0 += per) {
    const int64_t nb = std::min(per, g.n - n0);
    const ConvDescriptors& d = descriptors(op, g, nb, t);  // Note [cuDNN descriptor cache]
    const Algo a = algorithm(op, h, Direction::BackwardData, dtype, g, nb, d, t);
    const rt::Workspace ws(a.workspace);
    MG_CUDNN_CHECK(cudnnConvolutionBackwardData(
        h, t.one, d.w.get(), w, d.y.get(), at(gy, n0 * g.o * g.oh * g.ow, t.elem), d.conv.get(),
        static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo), ws.data(), a.workspace, t.zero,
        d.x.get(), at(gx, n0 * g.c * g.h * g.w, t.elem)));
  }
}

void conv2d_weight_backward(DType dtype, const Conv2dGeometry& g, const void* gy, const void* x,
                            void* gw) {
  const char* op = "conv2d_weight_backward";
  const Types t = types_of(op, dtype);
  const int64_t per = images_per_call(op, g);
  const cudnnHandle_t h = cudnn_handle();
  for (int64_t n0 = 0; n0 < g.n; n0 += per) {
    const int64_t nb = std::min(per, g.n - n0);
    const ConvDescriptors& d = descriptors(op, g, nb, t);  // Note [cuDNN descriptor cache]
    const Algo a = algorithm(op, h, Direction::BackwardFilter, dtype, g, nb, d, t);
    const rt::Workspace ws(a.workspace);
    // gw is the sum over all images: the first call writes it (beta = 0), later ones add.
    MG_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
        h, t.one, d.x.get(), at(x, n0 * g.c * g.h * g.w, t.elem), d.y.get(),
        at(gy, n0 * g.o * g.oh * g.ow, t.elem), d.conv.get(),
        static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo), ws.data(), a.workspace,
        n0 == 0 ? t.zero : t.one, d.w.get(), gw));
  }
}

}  // namespace metagrad::kernels::cuda
