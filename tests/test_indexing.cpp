// Tests of the indexing and joining ops (tensor/indexing.h): gather, scatter_add,
// index_select, one_hot, cat, stack, split, chunk, pad. Every op is compared with a plain
// loop over std::vector written here, on contiguous and non-contiguous (transposed, sliced
// with a step, expanded) inputs, several dtypes, 0-d and empty tensors; every error case is
// checked for a message that starts with the op's name in brackets.
#include <gtest/gtest.h>

#include "test_util.h"
#include <metagrad/metagrad.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

using namespace metagrad;

namespace {


// ---- coordinates ----------------------------------------------------------------------

int64_t count(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::vector<int64_t> unravel(int64_t lin, const Shape& s) {
  std::vector<int64_t> c(s.size());
  for (size_t i = s.size(); i-- > 0;) {
    c[i] = lin % s[i];
    lin /= s[i];
  }
  return c;
}

int64_t ravel(const std::vector<int64_t>& c, const Shape& s) {
  int64_t lin = 0;
  for (size_t i = 0; i < s.size(); ++i) lin = lin * s[i] + c[i];
  return lin;
}

// ---- data -------------------------------------------------------------------------------

std::mt19937& rng() {
  static std::mt19937 g(1234);
  return g;
}

// Random values representable exactly in `t`, as a contiguous tensor.
Tensor random_tensor(const Shape& shape, DType t) {
  std::vector<double> v(static_cast<size_t>(count(shape)));
  int lo = -50, hi = 50;
  if (t == DType::UInt8) lo = 0, hi = 200;
  if (t == DType::Bool) lo = 0, hi = 1;
  std::uniform_int_distribution<int> dist(lo, hi);
  for (double& x : v) x = dist(rng()) + (is_floating(t) ? 0.25 : 0.0);
  return tensor(v, shape).to(t);
}

// Indices in [0, bound) of the given shape (int64 unless told).
Tensor random_index(const Shape& shape, int64_t bound, DType t = DType::Int64) {
  std::vector<int64_t> v(static_cast<size_t>(count(shape)));
  std::uniform_int_distribution<int64_t> dist(0, bound - 1);
  for (int64_t& x : v) x = dist(rng());
  return tensor(v, shape).to(t);
}

// The same tensor in other layouts: transposed storage, every other element of a wider
// tensor, and (with other values, repeated along dim 0) an expanded view. The references
// read values from whichever layout they get, so they need not be the same values.
std::vector<std::pair<std::string, Tensor>> layouts(const Tensor& c) {
  std::vector<std::pair<std::string, Tensor>> out{{"contiguous", c}};
  const int64_t r = c.dim();
  if (r >= 2) {
    Tensor t = c.transpose(0, r - 1).contiguous().transpose(0, r - 1);
    EXPECT_FALSE(t.is_contiguous() && c.size(0) > 1 && c.size(r - 1) > 1);
    out.emplace_back("transposed", t);
  }
  if (r >= 1) {
    Shape wide = c.shape();
    wide.back() *= 2;
    Tensor big = zeros(wide, c.dtype());
    Tensor v = big.slice(r - 1, 0, wide.back(), 2);
    v.copy_(c);
    out.emplace_back("stepped", v);
    if (c.size(0) > 0) {
      out.emplace_back("expanded", c.narrow(0, 0, 1).contiguous().expand(c.shape()));
    }
  }
  return out;
}

std::vector<double> values(const Tensor& t) {
  return t.to_vector<double>();
}

// ---- references -----------------------------------------------------------------------

std::vector<double> ref_gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const auto xv = values(x);
  const auto iv = index.to_vector<int64_t>();
  const Shape xs = x.dim() == 0 ? Shape{1} : x.shape();
  const Shape is = index.dim() == 0 ? Shape{1} : index.shape();
  std::vector<double> out(iv.size());
  for (size_t p = 0; p < iv.size(); ++p) {
    auto c = unravel(static_cast<int64_t>(p), is);
    c[dim] = iv[p];
    out[p] = xv[ravel(c, xs)];
  }
  return out;
}

template <typename T>
std::vector<T> ref_scatter_add(const Tensor& x, int64_t dim, const Tensor& index,
                               const Tensor& src) {
  auto out = x.to_vector<T>();
  const auto iv = index.to_vector<int64_t>();
  const auto sv = src.to_vector<T>();
  const Shape xs = x.dim() == 0 ? Shape{1} : x.shape();
  const Shape is = index.dim() == 0 ? Shape{1} : index.shape();
  const Shape ss = src.dim() == 0 ? Shape{1} : src.shape();
  for (size_t p = 0; p < iv.size(); ++p) {  // row-major order: the order a sequential loop adds
    auto c = unravel(static_cast<int64_t>(p), is);
    const int64_t s = ravel(c, ss);
    c[dim] = iv[p];
    auto&& d = out[ravel(c, xs)];  // auto&&: std::vector<bool> hands out proxies
    if constexpr (std::is_same_v<T, bool>)
      d = d || sv[s];
    else
      d = static_cast<T>(d + sv[s]);
  }
  return out;
}

std::vector<double> ref_index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const auto xv = values(x);
  const auto iv = index.to_vector<int64_t>();
  Shape os = x.shape();
  os[dim] = static_cast<int64_t>(iv.size());
  std::vector<double> out(static_cast<size_t>(count(os)));
  for (size_t p = 0; p < out.size(); ++p) {
    auto c = unravel(static_cast<int64_t>(p), os);
    c[dim] = iv[c[dim]];
    out[p] = xv[ravel(c, x.shape())];
  }
  return out;
}

std::vector<double> ref_cat(const std::vector<Tensor>& ts, int64_t dim, Shape* shape) {
  const Tensor* ref = nullptr;
  for (const Tensor& t : ts)
    if (!(t.dim() == 1 && t.size(0) == 0)) {
      ref = &t;
      break;
    }
  if (!ref) {
    *shape = {0};
    return {};
  }
  Shape os = ref->shape();
  os[dim] = 0;
  std::vector<const Tensor*> used;
  for (const Tensor& t : ts)
    if (!(t.dim() == 1 && t.size(0) == 0)) {
      os[dim] += t.size(dim);
      used.push_back(&t);
    }
  std::vector<std::vector<double>> vals;
  for (const Tensor* t : used) vals.push_back(values(*t));
  std::vector<double> out(static_cast<size_t>(count(os)));
  for (size_t p = 0; p < out.size(); ++p) {
    auto c = unravel(static_cast<int64_t>(p), os);
    size_t k = 0;
    while (c[dim] >= used[k]->size(dim)) c[dim] -= used[k++]->size(dim);
    out[p] = vals[k][ravel(c, used[k]->shape())];
  }
  *shape = os;
  return out;
}

// F.pad written directly from its definition: for each output coordinate, the input
// coordinate it comes from, per padded dim.
std::vector<double> ref_pad(const Tensor& x, const std::vector<int64_t>& p, PadMode mode,
                            double value, Shape* shape) {
  const auto xv = values(x);
  const int64_t r = x.dim();
  Shape os = x.shape();
  std::vector<int64_t> left(r, 0);
  for (size_t j = 0; j < p.size() / 2; ++j) {
    const int64_t d = r - 1 - static_cast<int64_t>(j);
    left[d] = p[2 * j];
    os[d] += p[2 * j] + p[2 * j + 1];
  }
  std::vector<double> out(static_cast<size_t>(count(os)));
  for (size_t q = 0; q < out.size(); ++q) {
    auto c = unravel(static_cast<int64_t>(q), os);
    bool fill = false;
    for (int64_t d = 0; d < r; ++d) {
      const int64_t n = x.size(d);
      int64_t i = c[d] - left[d];
      if (mode == PadMode::Constant) {
        if (i < 0 || i >= n) fill = true;
      } else if (mode == PadMode::Reflect) {
        while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
      } else {
        i = std::min(std::max<int64_t>(i, 0), n - 1);
      }
      c[d] = i;
    }
    out[q] = fill ? value : xv[ravel(c, x.shape())];
  }
  *shape = os;
  return out;
}

const DType kValueTypes[] = {DType::Float64, DType::Float32, DType::Int64,
                             DType::Int32,   DType::UInt8,   DType::Bool};

}  // namespace

// ============================== gather ==============================

TEST(Gather, MatchesLoopsOverDtypesDimsAndLayouts) {
  const Shape xs{4, 5, 6};
  for (DType t : kValueTypes)
    for (int64_t dim : {0, 1, 2, -1}) {
      const int64_t d = dim < 0 ? dim + 3 : dim;
      Shape is{3, 4, 5};  // smaller than x except along dim, where it may be larger
      is[d] = 7;
      Tensor idx = random_index(is, xs[d]);
      for (auto& [xname, x] : layouts(random_tensor(xs, t)))
        for (auto& [iname, i] : layouts(idx)) {
          Tensor out = gather(x, dim, i);
          EXPECT_EQ(out.dtype(), t);
          EXPECT_EQ(out.shape(), is);
          EXPECT_EQ(values(out), ref_gather(x, d, i))
              << dtype_name(t) << " dim " << dim << " x " << xname << " index " << iname;
        }
    }
}

TEST(Gather, LargeParallel) {
  Tensor x = random_tensor({300, 400}, DType::Float32);
  for (int64_t dim : {0, 1}) {
    Tensor idx = random_index({300, 400}, x.size(dim));
    EXPECT_EQ(values(gather(x, dim, idx)), ref_gather(x, dim, idx));
    // Transposed input and transposed index.
    Tensor xt = x.t();
    Tensor it = random_index({300, 400}, xt.size(dim)).t();
    EXPECT_EQ(values(gather(xt, dim, it)), ref_gather(xt, dim, it));
  }
}

TEST(Gather, ZeroDimAndEmpty) {
  Tensor x = tensor({3.5}).reshape({});
  Tensor i0 = tensor(std::vector<int64_t>{0}).reshape({});
  Tensor out = gather(x, 0, i0);
  EXPECT_EQ(out.dim(), 0);
  EXPECT_EQ(out.item<double>(), 3.5);
  EXPECT_EQ(gather(x, -1, i0).item<double>(), 3.5);
  EXPECT_MG_ERROR(gather(x, 0, tensor(std::vector<int64_t>{1}).reshape({})),
               "[gather] index 1 is out of bounds for dimension 0 with size 1");

  Tensor y = random_tensor({3, 4}, DType::Float64);
  Tensor e = gather(y, 1, zeros({3, 0}, DType::Int64));
  EXPECT_EQ(e.shape(), (Shape{3, 0}));
  EXPECT_EQ(gather(y, 0, zeros({0, 4}, DType::Int64)).shape(), (Shape{0, 4}));
  // An input that is empty along dim has no valid index.
  EXPECT_MG_ERROR(gather(zeros({3, 0}), 1, zeros({3, 1}, DType::Int64)),
               "[gather] index 0 is out of bounds for dimension 1 with size 0");
  EXPECT_EQ(gather(zeros({3, 0}), 1, zeros({3, 0}, DType::Int64)).shape(), (Shape{3, 0}));
}

TEST(Gather, Errors) {
  Tensor x = random_tensor({4, 5}, DType::Float32);
  Tensor idx = tensor(std::vector<int64_t>{0, 1, 7, 2, 9, 0}, {2, 3});
  EXPECT_MG_ERROR(gather(x, 1, idx), "[gather] index 7 is out of bounds for dimension 1 with size 5");
  EXPECT_MG_ERROR(gather(x, 1, tensor(std::vector<int64_t>{0, -1}, {1, 2})),
               "[gather] index -1 is out of bounds for dimension 1 with size 5");
  EXPECT_MG_ERROR(gather(x, 2, idx), "[gather] dim 2 out of range");
  EXPECT_MG_ERROR(gather(x, -3, idx), "[gather] dim -3 out of range");
  EXPECT_MG_ERROR(gather(x, 1, idx.to(DType::Int32)), "[gather] index must be an int64");
  EXPECT_MG_ERROR(gather(x, 1, idx.to(DType::Float32)), "[gather] index must be an int64");
  EXPECT_MG_ERROR(gather(x, 1, zeros({2}, DType::Int64)), "[gather] index of shape [2]");
  EXPECT_MG_ERROR(gather(x, 1, zeros({5, 1}, DType::Int64)), "[gather] index of shape [5, 1]");
  EXPECT_MG_ERROR(gather(Tensor(), 0, idx), "[gather] got an undefined input");
  // The first bad index in row-major order is named, also when threads scan in parallel.
  std::vector<int64_t> big(200000, 1);
  big[150001] = 1011;
  big[150002] = -4;
  big[190000] = 1012;
  EXPECT_MG_ERROR(gather(random_tensor({400000}, DType::Float32).reshape({400, 1000}), 1,
                      tensor(big, {200, 1000})),
               "[gather] index 1011 is out of bounds for dimension 1 with size 1000");
}

// ============================== scatter_add ==============================

TEST(ScatterAdd, MatchesLoopsOverDtypesDimsAndLayouts) {
  const Shape xs{4, 5, 6};
  for (DType t : {DType::Float64, DType::Int64, DType::Int32, DType::Bool})
    for (int64_t dim : {0, 1, 2, -2}) {
      const int64_t d = dim < 0 ? dim + 3 : dim;
      Shape is{3, 4, 5}, ss{4, 5, 6};
      is[d] = 9;  // more entries than x has along dim: repeated indices accumulate
      ss[d] = 10;
      Tensor idx = random_index(is, xs[d]);
      Tensor src = random_tensor(ss, t);
      for (auto& [xname, x] : layouts(random_tensor(xs, t)))
        for (auto& [sname, s] : layouts(src))
          for (auto& [iname, i] : layouts(idx)) {
            Tensor out = scatter_add(x, dim, i, s);
            EXPECT_EQ(out.dtype(), t);
            EXPECT_EQ(out.shape(), xs);
            if (t == DType::Bool)
              EXPECT_EQ(out.to_vector<bool>(), ref_scatter_add<bool>(x, d, i, s));
            else
              EXPECT_EQ(values(out), ref_scatter_add<double>(x, d, i, s))
                  << dtype_name(t) << " dim " << dim << " x " << xname << " src " << sname
                  << " index " << iname;
          }
    }
}

TEST(ScatterAdd, InPlaceIntoNonContiguousSelf) {
  for (int64_t dim : {0, 1}) {
    Tensor base = random_tensor({6, 5}, DType::Float64);
    Tensor self = base.t();  // [5, 6], transposed strides
    Tensor before = self.clone();
    Tensor idx = random_index({7, 6}, 5);
    if (dim == 1) idx = random_index({5, 13}, 6);
    Tensor src = random_tensor(idx.shape(), DType::Float64);
    const uint64_t v0 = self.version();
    Tensor& r = scatter_add_(self, dim, idx, src);
    EXPECT_TRUE(r.is_same(self));
    EXPECT_GT(self.version(), v0);
    EXPECT_EQ(values(self), ref_scatter_add<double>(before, dim, idx, src));
    EXPECT_EQ(values(base), values(self.t()));  // written through the view
  }
}

// Float sums depend on order: the result must equal the sequential loop bit for bit, on a
// tensor large enough to run on several threads, and be the same on every run.
TEST(ScatterAdd, DeterministicFloat32) {
  Tensor x = random_tensor({64, 2000}, DType::Float32);
  for (int64_t dim : {0, 1}) {
    Shape is{64, 2000};
    is[dim] *= 3;
    Tensor idx = random_index(is, x.size(dim));
    Tensor src = random_tensor(is, DType::Float32) * 0.37f;
    const auto ref = ref_scatter_add<float>(x, dim, idx, src);
    for (int rep = 0; rep < 3; ++rep)
      EXPECT_EQ(scatter_add(x, dim, idx, src).to_vector<float>(), ref) << "dim " << dim;
  }
}

TEST(ScatterAdd, ZeroDimEmptyAndAliasing) {
  Tensor x = tensor({1.5}).reshape({});
  Tensor i0 = tensor(std::vector<int64_t>{0}).reshape({});
  EXPECT_EQ(scatter_add(x, 0, i0, tensor({2.0}).reshape({})).item<double>(), 3.5);

  Tensor y = random_tensor({3, 4}, DType::Float64);
  EXPECT_EQ(values(scatter_add(y, 0, zeros({0, 4}, DType::Int64), y)), values(y));
  EXPECT_EQ(values(scatter_add(y, 1, zeros({3, 0}, DType::Int64), y)), values(y));

  // src is self: the additions read the values from before the op.
  Tensor a = random_tensor({4, 4}, DType::Float64);
  Tensor idx = random_index({4, 4}, 4);
  Tensor expected = tensor(ref_scatter_add<double>(a, 1, idx, a.clone()), {4, 4});
  scatter_add_(a, 1, idx, a);
  EXPECT_EQ(values(a), values(expected));
  // index shares self's storage (int64 self): indices are read as they were.
  Tensor s = tensor(std::vector<int64_t>{1, 0, 2, 2, 1, 0}, {6});
  Tensor ix = s.narrow(0, 0, 3);
  Tensor ones3 = ones({3}, DType::Int64);
  Tensor exp2 = tensor(ref_scatter_add<int64_t>(s, 0, ix.clone(), ones3), {6});
  scatter_add_(s, 0, ix, ones3);
  EXPECT_EQ(s.to_vector<int64_t>(), exp2.to_vector<int64_t>());
}

TEST(ScatterAdd, Errors) {
  Tensor x = random_tensor({4, 5}, DType::Float64);
  Tensor before = x.clone();
  Tensor src = random_tensor({4, 5}, DType::Float64);
  // The bad index comes after good ones: nothing may be written before the throw.
  Tensor bad = tensor(std::vector<int64_t>{0, 1, 2, 3, 4, 0, 7, 1}, {2, 4});
  EXPECT_MG_ERROR(scatter_add_(x, 1, bad, src),
               "[scatter_add_] index 7 is out of bounds for dimension 1 with size 5");
  EXPECT_EQ(values(x), values(before));
  EXPECT_MG_ERROR(scatter_add(x, 1, bad, src),
               "[scatter_add] index 7 is out of bounds for dimension 1 with size 5");
  Tensor neg = tensor(std::vector<int64_t>{0, -2}, {1, 2});
  EXPECT_MG_ERROR(scatter_add_(x, 0, neg, src),
               "[scatter_add_] index -2 is out of bounds for dimension 0 with size 4");
  EXPECT_EQ(values(x), values(before));
  Tensor good = zeros({2, 2}, DType::Int64);
  EXPECT_MG_ERROR(scatter_add(x, 2, good, src), "[scatter_add] dim 2 out of range");
  EXPECT_MG_ERROR(scatter_add(x, 0, good.to(DType::Int32), src), "[scatter_add] index must be");
  EXPECT_MG_ERROR(scatter_add(x, 0, good, src.to(DType::Float32)), "[scatter_add] src has dtype");
  EXPECT_MG_ERROR(scatter_add(x, 0, zeros({2}, DType::Int64), src), "[scatter_add] input, index");
  EXPECT_MG_ERROR(scatter_add(x, 0, good, zeros({4}, DType::Float64)), "[scatter_add] input, index");
  EXPECT_MG_ERROR(
      scatter_add(x, 0, zeros({2, 6}, DType::Int64), random_tensor({4, 6}, DType::Float64)),
      "[scatter_add] index of shape [2, 6] is larger than the input");
  EXPECT_MG_ERROR(scatter_add(x, 0, zeros({5, 2}, DType::Int64), src),
               "[scatter_add] index of shape [5, 2] is larger than src");
  Tensor expanded = zeros({1, 5}, DType::Float64).expand({4, 5});
  EXPECT_MG_ERROR(scatter_add_(expanded, 0, good, src), "[scatter_add_] cannot write in place");
  Tensor leaf = zeros({4, 5}, DType::Float64).requires_grad_();
  EXPECT_MG_ERROR(scatter_add_(leaf, 0, good, src), "[scatter_add_] a leaf tensor");
  EXPECT_EQ(values(scatter_add(leaf, 0, good, src)),
            ref_scatter_add<double>(leaf, 0, good, src));  // out of place is fine
}

// ============================== index_select ==============================

TEST(IndexSelect, MatchesLoopsOverDtypesDimsAndLayouts) {
  const Shape xs{4, 5, 6};
  for (DType t : kValueTypes)
    for (DType it : {DType::Int64, DType::Int32})
      for (int64_t dim : {0, 1, 2, -1}) {
        const int64_t d = dim < 0 ? dim + 3 : dim;
        Tensor idx = random_index({8}, xs[d], it);
        for (auto& [xname, x] : layouts(random_tensor(xs, t)))
          for (auto& [iname, i] : layouts(idx)) {
            Tensor out = index_select(x, dim, i);
            Shape os = xs;
            os[d] = 8;
            EXPECT_EQ(out.shape(), os);
            EXPECT_EQ(out.dtype(), t);
            EXPECT_EQ(values(out), ref_index_select(x, d, i))
                << dtype_name(t) << " " << dtype_name(it) << " dim " << dim << " x " << xname
                << " index " << iname;
          }
      }
}

TEST(IndexSelect, LargeRowsAndColumns) {
  Tensor w = random_tensor({1000, 64}, DType::Float32);
  Tensor ids = random_index({3000}, 1000);
  EXPECT_EQ(values(index_select(w, 0, ids)), ref_index_select(w, 0, ids));
  Tensor cols = random_index({700}, 64, DType::Int32);
  EXPECT_EQ(values(index_select(w, 1, cols)), ref_index_select(w, 1, cols));
  EXPECT_EQ(values(index_select(w.t(), 0, cols)), ref_index_select(w.t(), 0, cols));
}

TEST(IndexSelect, ZeroDimAndEmpty) {
  Tensor x = random_tensor({3, 4}, DType::Float64);
  Tensor i0 = tensor(std::vector<int64_t>{2}).reshape({});
  Tensor out = index_select(x, 0, i0);  // a 0-d index selects one entry, keeping the dim
  EXPECT_EQ(out.shape(), (Shape{1, 4}));
  EXPECT_EQ(values(out), values(x.narrow(0, 2, 1)));
  Tensor s = tensor({7.0}).reshape({});
  EXPECT_EQ(index_select(s, 0, tensor(std::vector<int64_t>{0})).dim(), 0);
  EXPECT_EQ(index_select(s, 0, tensor(std::vector<int64_t>{0})).item<double>(), 7.0);
  EXPECT_EQ(index_select(x, 1, zeros({0}, DType::Int64)).shape(), (Shape{3, 0}));
  EXPECT_EQ(index_select(zeros({0, 4}), 1, tensor(std::vector<int64_t>{3, 1})).shape(),
            (Shape{0, 2}));
}

TEST(IndexSelect, Errors) {
  Tensor x = random_tensor({4, 5}, DType::Float32);
  EXPECT_MG_ERROR(index_select(x, 1, tensor(std::vector<int64_t>{1, 5, 2})),
               "[index_select] index 5 is out of bounds for dimension 1 with size 5");
  EXPECT_MG_ERROR(index_select(x, 0, tensor(std::vector<int32_t>{-1})),
               "[index_select] index -1 is out of bounds for dimension 0 with size 4");
  EXPECT_MG_ERROR(index_select(x, 0, zeros({2, 2}, DType::Int64)), "[index_select] index must be 0-d");
  EXPECT_MG_ERROR(index_select(x, 0, zeros({2}, DType::Float32)), "[index_select] index must be an");
  EXPECT_MG_ERROR(index_select(x, 0, zeros({2}, DType::UInt8)), "[index_select] index must be an");
  EXPECT_MG_ERROR(index_select(x, 2, zeros({2}, DType::Int64)), "[index_select] dim 2 out of range");
  EXPECT_MG_ERROR(index_select(tensor({1.0}).reshape({}), 0, zeros({2}, DType::Int64)),
               "[index_select] a 0-d input takes exactly one index");
  EXPECT_MG_ERROR(index_select(zeros({0, 3}), 0, zeros({1}, DType::Int64)),
               "[index_select] index 0 is out of bounds for dimension 0 with size 0");
  std::vector<int64_t> big(100000, 3);
  big[70000] = 400;
  big[90000] = -1;
  EXPECT_MG_ERROR(index_select(random_tensor({300, 8}, DType::Float32), 0, tensor(big)),
               "[index_select] index 400 is out of bounds for dimension 0 with size 300");
}

// ============================== one_hot ==============================

TEST(OneHot, MatchesLoops) {
  for (DType t : {DType::Int64, DType::Int32, DType::UInt8})
    for (int64_t classes : {-1, 9}) {
      Tensor lab = random_index({3, 4}, 7, t);
      for (auto& [name, l] : layouts(lab)) {
        Tensor out = one_hot(l, classes);
        const auto lv = l.to_vector<int64_t>();
        const int64_t c = classes == -1 ? *std::max_element(lv.begin(), lv.end()) + 1 : classes;
        EXPECT_EQ(out.dtype(), DType::Int64);
        EXPECT_EQ(out.shape(), (Shape{3, 4, c}));
        std::vector<int64_t> ref(lv.size() * static_cast<size_t>(c), 0);
        for (size_t i = 0; i < lv.size(); ++i) ref[i * static_cast<size_t>(c) + lv[i]] = 1;
        EXPECT_EQ(out.to_vector<int64_t>(), ref) << dtype_name(t) << " " << name;
      }
    }
  Tensor big = random_index({50000}, 10);
  Tensor oh = one_hot(big, 10);
  const auto bv = big.to_vector<int64_t>();
  const auto ov = oh.to_vector<int64_t>();
  int64_t ones_seen = 0;
  for (size_t i = 0; i < bv.size(); ++i)
    for (int64_t k = 0; k < 10; ++k) {
      EXPECT_EQ(ov[i * 10 + k], k == bv[i] ? 1 : 0);
      ones_seen += ov[i * 10 + k];
    }
  EXPECT_EQ(ones_seen, 50000);
}

TEST(OneHot, ZeroDimAndEmpty) {
  Tensor out = one_hot(tensor(std::vector<int64_t>{2}).reshape({}), 4);
  EXPECT_EQ(out.shape(), (Shape{4}));
  EXPECT_EQ(out.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 0}));
  EXPECT_EQ(one_hot(zeros({0, 2}, DType::Int64), 3).shape(), (Shape{0, 2, 3}));
  EXPECT_EQ(one_hot(zeros({0}, DType::Int64), 0).shape(), (Shape{0, 0}));
}

TEST(OneHot, Errors) {
  Tensor lab = tensor(std::vector<int64_t>{0, 3, 5});
  EXPECT_MG_ERROR(one_hot(lab, 5), "[one_hot] class value 5 is out of range for num_classes 5");
  EXPECT_MG_ERROR(one_hot(tensor(std::vector<int64_t>{0, -1}), 3),
               "[one_hot] class values must be non-negative, got -1");
  EXPECT_MG_ERROR(one_hot(tensor(std::vector<int64_t>{0, -1})),
               "[one_hot] class values must be non-negative, got -1");
  EXPECT_MG_ERROR(one_hot(zeros({3}), 4), "[one_hot] labels must be an integer tensor");
  EXPECT_MG_ERROR(one_hot(zeros({3}, DType::Bool), 4), "[one_hot] labels must be an integer tensor");
  EXPECT_MG_ERROR(one_hot(zeros({0}, DType::Int64)), "[one_hot] cannot infer the number of classes");
  EXPECT_MG_ERROR(one_hot(lab, -2), "[one_hot] num_classes must be -1");
}

// ============================== cat / stack ==============================

TEST(Cat, MatchesLoopsOverDimsAndLayouts) {
  for (DType t : kValueTypes)
    for (int64_t dim : {0, 1, 2, -1}) {
      const int64_t d = dim < 0 ? dim + 3 : dim;
      Shape a{3, 4, 5}, b{3, 4, 5};
      b[d] = 2;
      auto la = layouts(random_tensor(a, t));
      auto lb = layouts(random_tensor(b, t));
      for (size_t k = 0; k < la.size(); ++k) {
        std::vector<Tensor> in{la[k].second, lb[(k + 1) % lb.size()].second, la[0].second};
        Shape shape;
        const auto ref = ref_cat(in, d, &shape);
        Tensor out = cat(in, dim);
        EXPECT_EQ(out.shape(), shape);
        EXPECT_EQ(out.dtype(), t);
        EXPECT_EQ(values(out), ref) << dtype_name(t) << " dim " << dim << " " << la[k].first;
      }
    }
}

TEST(Cat, TypePromotion) {
  const std::pair<DType, DType> cases[] = {
      {DType::Int32, DType::Float32},   {DType::Int64, DType::Float64},
      {DType::Bool, DType::UInt8},      {DType::UInt8, DType::Int32},
      {DType::Float32, DType::Float64}, {DType::Int64, DType::Int32}};
  for (auto [ta, tb] : cases) {
    Tensor a = random_tensor({2, 3}, ta), b = random_tensor({4, 3}, tb);
    Tensor out = cat({a, b}, 0);
    EXPECT_EQ(out.dtype(), promote_types(ta, tb));
    EXPECT_EQ(out.dtype(), ta > tb ? ta : tb);  // the lattice is a chain
    Shape shape;
    EXPECT_EQ(values(out), ref_cat({a, b}, 0, &shape));
    Tensor out2 = cat({b, a, b}, 0);
    EXPECT_EQ(out2.dtype(), promote_types(ta, tb));
    EXPECT_EQ(values(out2), ref_cat({b, a, b}, 0, &shape));
  }
}

TEST(Cat, LegacyEmptySkippedAndEmpties) {
  Tensor a = random_tensor({2, 3}, DType::Float32), b = random_tensor({4, 3}, DType::Float32);
  Tensor e = zeros({0}, DType::Float64);
  Tensor out = cat({e, a, e, b}, 0);
  EXPECT_EQ(out.shape(), (Shape{6, 3}));
  EXPECT_EQ(out.dtype(), DType::Float64);  // the skipped tensors still take part in promotion
  Shape shape;
  EXPECT_EQ(values(out), ref_cat({a, b}, 0, &shape));
  EXPECT_EQ(cat({a, e}, 1).shape(), (Shape{2, 3}));  // skipped even when dim 1 is asked for
  EXPECT_EQ(cat({e, e}, 0).shape(), (Shape{0}));
  EXPECT_EQ(cat({zeros({0, 3}), a}, 0).shape(), (Shape{2, 3}));
  EXPECT_EQ(cat({zeros({2, 0}), zeros({2, 0})}, 1).shape(), (Shape{2, 0}));
  EXPECT_EQ(cat({zeros({2, 0}), a}, 1).shape(), (Shape{2, 3}));
  // A skipped input that requires grad gets an empty gradient, as in PyTorch.
  Tensor er = zeros({0}, DType::Float64).requires_grad_(true);
  Tensor ar = random_tensor({2, 3}, DType::Float64).requires_grad_(true);
  sum(cat({er, ar}, 1)).backward();
  ASSERT_TRUE(er.grad().defined());
  EXPECT_EQ(er.grad().shape(), (Shape{0}));
  EXPECT_EQ(values(ar.grad()), std::vector<double>(6, 1.0));
  // One input: a copy, not the same storage.
  Tensor c = cat({a}, 0);
  EXPECT_NE(c.storage(), a.storage());
  EXPECT_EQ(values(c), values(a));
  // Large, to run the copies on several threads.
  Tensor x = random_tensor({300, 200}, DType::Float32),
         y = random_tensor({300, 100}, DType::Float32);
  EXPECT_EQ(values(cat({x, y.t().contiguous().t()}, 1)), ref_cat({x, y}, 1, &shape));
}

TEST(Cat, Errors) {
  Tensor a = zeros({2, 3}), b = zeros({2, 4}), c = zeros({2, 3, 1});
  EXPECT_MG_ERROR(cat({}, 0), "[cat] expected a non-empty list of tensors");
  EXPECT_MG_ERROR(cat({a, c}, 0), "[cat] tensors must have the same number of dimensions");
  EXPECT_MG_ERROR(cat({a, b}, 0), "[cat] sizes of tensors must match except in dimension 0");
  EXPECT_MG_ERROR(cat({a, b}, 2), "[cat] dim 2 out of range");
  EXPECT_MG_ERROR(cat({a, b}, -3), "[cat] dim -3 out of range");
  EXPECT_MG_ERROR(cat({a, zeros({})}, 0), "[cat] a 0-d tensor (tensor 1 in the list)");
  EXPECT_MG_ERROR(cat({a, Tensor()}, 0), "[cat] got an undefined tensor");
  EXPECT_MG_ERROR(cat({zeros({0}), zeros({0, 3}), zeros({2})}, 0),
               "[cat] tensors must have the same number of dimensions");
}

TEST(Stack, MatchesLoops) {
  for (DType t : {DType::Float64, DType::Int32})
    for (int64_t dim : {0, 1, 2, -1, -3}) {
      const int64_t d = dim < 0 ? dim + 3 : dim;
      auto la = layouts(random_tensor({3, 4}, t));
      std::vector<Tensor> in;
      for (auto& [name, x] : la) in.push_back(x);
      Tensor out = stack(in, dim);
      Shape os{3, 4};
      os.insert(os.begin() + d, static_cast<int64_t>(in.size()));
      EXPECT_EQ(out.shape(), os);
      std::vector<double> ref(static_cast<size_t>(count(os)));
      for (size_t p = 0; p < ref.size(); ++p) {
        auto c = unravel(static_cast<int64_t>(p), os);
        const int64_t k = c[d];
        c.erase(c.begin() + d);
        ref[p] = values(in[k])[ravel(c, {3, 4})];
      }
      EXPECT_EQ(values(out), ref) << dtype_name(t) << " dim " << dim;
    }
  Tensor s = stack({tensor({1.0}).reshape({}), tensor({2.0}).reshape({})}, 0);
  EXPECT_EQ(s.shape(), (Shape{2}));
  EXPECT_EQ(values(s), (std::vector<double>{1, 2}));
  Tensor p = stack({ones({2}, DType::Int32), ones({2}, DType::Float64)}, 1);
  EXPECT_EQ(p.dtype(), DType::Float64);
  EXPECT_EQ(p.shape(), (Shape{2, 2}));
  EXPECT_EQ(stack({zeros({0}), zeros({0})}, 0).shape(), (Shape{2, 0}));
}

TEST(Stack, Errors) {
  EXPECT_MG_ERROR(stack({}, 0), "[stack] expected a non-empty list");
  EXPECT_MG_ERROR(stack({zeros({2, 3}), zeros({2, 4})}, 0),
               "[stack] expects each tensor to be equal size, but got [2, 3] at entry 0 and "
               "[2, 4] at entry 1");
  EXPECT_MG_ERROR(stack({zeros({2, 3}), zeros({2, 3})}, 3), "[stack] dim 3 out of range");
  EXPECT_MG_ERROR(stack({zeros({2}), Tensor()}, 0), "[stack] got an undefined tensor");
}

// ============================== split / chunk ==============================

TEST(Split, PiecesAreViews) {
  Tensor base = random_tensor({7, 4}, DType::Float64);
  for (auto& [name, x] : layouts(base))
    for (int64_t dim : {0, 1, -1})
      for (int64_t size : {1, 2, 3, 5, 10}) {
        const int64_t d = dim < 0 ? dim + 2 : dim;
        auto parts = split(x, size, dim);
        const int64_t n = x.size(d);
        ASSERT_EQ(static_cast<int64_t>(parts.size()), (n + size - 1) / size);
        for (size_t k = 0; k < parts.size(); ++k) {
          const int64_t start = static_cast<int64_t>(k) * size;
          const int64_t len = std::min(size, n - start);
          EXPECT_EQ(parts[k].size(d), len);
          EXPECT_EQ(parts[k].storage(), x.storage());  // a view
          EXPECT_EQ(values(parts[k]), values(x.slice(d, start, start + len)))
              << name << " dim " << dim << " size " << size;
        }
      }
  // Writes through a piece show in the input.
  Tensor y = zeros({6});
  split(y, 4)[1].fill_(2.0);
  EXPECT_EQ(values(y), (std::vector<double>{0, 0, 0, 0, 2, 2}));
  // An empty dim gives one empty piece.
  auto e = split(zeros({0, 3}), 2, 0);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].shape(), (Shape{0, 3}));
  EXPECT_EQ(split(zeros({0, 3}), 0, 0).size(), 1u);
}

TEST(Split, WithSizesAndChunk) {
  Tensor x = random_tensor({3, 9}, DType::Int32);
  auto parts = split(x, std::vector<int64_t>{2, 0, 4, 3}, 1);
  ASSERT_EQ(parts.size(), 4u);
  const int64_t starts[] = {0, 2, 2, 6}, lens[] = {2, 0, 4, 3};
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(parts[k].shape(), (Shape{3, lens[k]}));
    EXPECT_EQ(values(parts[k]), values(x.slice(1, starts[k], starts[k] + lens[k])));
  }
  auto sizes_of = [](const std::vector<Tensor>& v, int64_t d) {
    std::vector<int64_t> s;
    for (const Tensor& t : v) s.push_back(t.size(d));
    return s;
  };
  EXPECT_EQ(sizes_of(chunk(x, 3, 1), 1), (std::vector<int64_t>{3, 3, 3}));
  EXPECT_EQ(sizes_of(chunk(x, 4, 1), 1), (std::vector<int64_t>{3, 3, 3}));  // ceil(9/4) = 3
  EXPECT_EQ(sizes_of(chunk(x, 2, -1), 1), (std::vector<int64_t>{5, 4}));
  EXPECT_EQ(sizes_of(chunk(x, 5, 0), 0), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(sizes_of(chunk(zeros({0, 2}), 3, 0), 0), (std::vector<int64_t>{0, 0, 0}));
  auto c = chunk(x, 2, 1);
  Tensor joined = cat(c, 1);
  EXPECT_EQ(values(joined), values(x));
}

TEST(Split, Errors) {
  Tensor x = zeros({5, 3});
  EXPECT_MG_ERROR(split(x, -1, 0), "[split] split_size must be non-negative");
  EXPECT_MG_ERROR(split(x, 0, 0), "[split] split_size can only be 0 if dimension 0 has size 0");
  EXPECT_MG_ERROR(split(x, 2, 2), "[split] dim 2 out of range");
  EXPECT_MG_ERROR(split(zeros({}), 1, 0), "[split] cannot split a 0-d tensor");
  EXPECT_MG_ERROR(split(x, std::vector<int64_t>{2, 2}, 0),
               "[split] split sizes [2, 2] must sum to 5, the size of dimension 0");
  EXPECT_MG_ERROR(split(x, std::vector<int64_t>{6, -1}, 0),
               "[split] split sizes must be non-negative");
  EXPECT_MG_ERROR(chunk(x, 0, 0), "[chunk] number of chunks must be positive");
  EXPECT_MG_ERROR(chunk(zeros({}), 2, 0), "[chunk] cannot chunk a 0-d tensor");
  EXPECT_MG_ERROR(chunk(x, 2, -3), "[chunk] dim -3 out of range");
}

// ============================== pad ==============================

TEST(Pad, MatchesLoopsOverModesAndLayouts) {
  struct Case {
    Shape shape;
    std::vector<int64_t> pad;
  };
  const Case cases[] = {
      {{6}, {2, 3}},
      {{4, 5}, {1, 2}},
      {{4, 5}, {1, 2, 3, 0}},
      {{4, 5}, {0, 0, 2, 2}},
      {{3, 4, 5}, {-1, 2}},  // crop on the left, pad on the right
      {{3, 4, 5}, {2, -2, -1, 1}},
      {{3, 4, 5}, {1, 1, 1, 1, 1, 1}},
      {{3, 4, 5}, {-1, -1, 0, 0, -1, 0}},
      {{3, 4, 5}, {}},
      {{2, 3, 4, 5}, {4, 4, 3, 3}},
  };
  for (PadMode mode : {PadMode::Constant, PadMode::Reflect, PadMode::Replicate})
    for (DType t : {DType::Float64, DType::Int32, DType::Bool, DType::Float32})
      for (const Case& c : cases) {
        // Reflect needs each pad smaller than its dim.
        if (mode == PadMode::Reflect && c.pad.size() >= 2 &&
            (c.pad[0] >= c.shape.back() || c.pad[1] >= c.shape.back()))
          continue;
        const double value = mode == PadMode::Constant ? (t == DType::Bool ? 1 : 7) : 0;
        for (auto& [name, x] : layouts(random_tensor(c.shape, t))) {
          Shape shape;
          const auto ref = ref_pad(x, c.pad, mode, value, &shape);
          Tensor out = pad(x, c.pad, mode, value);
          EXPECT_EQ(out.shape(), shape);
          EXPECT_EQ(out.dtype(), t);
          EXPECT_EQ(values(out), ref)
              << static_cast<int>(mode) << " " << dtype_name(t) << " " << shape_str(c.shape)
              << " pad " << shape_str(c.pad) << " " << name;
        }
      }
}

TEST(Pad, ConstantDefaultAndValue) {
  Tensor x = random_tensor({3, 4}, DType::Float32);
  Shape shape;
  EXPECT_EQ(values(pad(x, {1, 1})), ref_pad(x, {1, 1}, PadMode::Constant, 0, &shape));
  EXPECT_EQ(values(pad(x, {2, 0, 0, 1}, -1.5)),
            ref_pad(x, {2, 0, 0, 1}, PadMode::Constant, -1.5, &shape));
  // Large, for the parallel path, and with rows entirely of padding.
  Tensor big = random_tensor({64, 128, 128}, DType::Float32);
  EXPECT_EQ(values(pad(big, {3, 5, 2, 2, 1, 1}, 0.5)),
            ref_pad(big, {3, 5, 2, 2, 1, 1}, PadMode::Constant, 0.5, &shape));
  EXPECT_EQ(values(pad(big, {3, 5, 2, 2}, PadMode::Reflect)),
            ref_pad(big, {3, 5, 2, 2}, PadMode::Reflect, 0, &shape));
}

TEST(Pad, ZeroDimAndEmpty) {
  Tensor s = tensor({2.5}).reshape({});
  Tensor o = pad(s, {});
  EXPECT_EQ(o.dim(), 0);
  EXPECT_EQ(o.item<double>(), 2.5);
  EXPECT_NE(o.storage(), s.storage());
  Tensor e = pad(zeros({2, 0}), {1, 2}, 3.0);  // all padding
  EXPECT_EQ(e.shape(), (Shape{2, 3}));
  EXPECT_EQ(values(e), std::vector<double>(6, 3.0));
  EXPECT_EQ(pad(zeros({2, 3}), {-1, -2}).shape(), (Shape{2, 0}));
  EXPECT_EQ(pad(zeros({0, 3}), {1, 1}).shape(), (Shape{0, 5}));
  EXPECT_EQ(pad(zeros({0, 3}), {1, 1}, PadMode::Replicate).shape(), (Shape{0, 5}));
  EXPECT_EQ(pad(zeros({2, 0}), {0, 0}, PadMode::Reflect).shape(), (Shape{2, 0}));
}

TEST(Pad, Errors) {
  Tensor x = zeros({2, 3});
  EXPECT_MG_ERROR(pad(x, {1}), "[pad] padding length must be divisible by 2");
  EXPECT_MG_ERROR(pad(x, {1, 1, 1, 1, 1, 1}), "[pad] padding [1, 1, 1, 1, 1, 1] pads 3 dimensions");
  EXPECT_MG_ERROR(pad(zeros({}), {1, 1}), "[pad] padding [1, 1] pads 1 dimensions");
  EXPECT_MG_ERROR(pad(x, {-2, -2}), "[pad] dimension 1 of size 3 padded by (-2, -2)");
  EXPECT_MG_ERROR(pad(x, {3, 0}, PadMode::Reflect), "[pad] reflect padding (3, 0)");
  EXPECT_MG_ERROR(pad(x, {0, 0, 0, 2}, PadMode::Reflect), "[pad] reflect padding (0, 2)");
  EXPECT_MG_ERROR(pad(zeros({2, 0}), {1, 0}, PadMode::Replicate),
               "[pad] replicate padding needs a non-empty dimension 1");
  EXPECT_MG_ERROR(pad(zeros({2, 0}), {1, 0}, PadMode::Reflect), "[pad] reflect padding (1, 0)");
  EXPECT_MG_ERROR(pad(x, {1, 1}, PadMode::Replicate, 2.0), "[pad] padding mode replicate takes no");
  EXPECT_MG_ERROR(pad(Tensor(), {1, 1}), "[pad] got an undefined input");
  // A crop past the other end, even when the total size stays non-negative (as PyTorch).
  EXPECT_MG_ERROR(pad(x, {-5, 4}), "[pad] dimension 1 of size 3 cannot be cropped by (-5, 4)");
  EXPECT_EQ(pad(x, {-3, 1}).shape(), (Shape{2, 1}));
  // The fill value must fit the dtype, as fill_'s.
  EXPECT_MG_ERROR(pad(zeros({2}, DType::Int32), {1, 1}, std::nan("")), "[pad]");
  EXPECT_MG_ERROR(pad(zeros({2}, DType::UInt8), {1, 1}, 300), "[pad]");
  EXPECT_EQ(pad(zeros({1}, DType::UInt8), {1, 1}, 255).to_vector<uint8_t>(),
            (std::vector<uint8_t>{255, 0, 255}));
}

// A 0-d operand next to 1-d ones counts as 1-d (as PyTorch), values and gradients.
TEST(Gather, ZeroDimMixedWithOneDim) {
  Tensor x = tensor({5.0}).reshape({});
  Tensor i1 = tensor(std::vector<int64_t>{0});
  Tensor g = gather(x, 0, i1);
  EXPECT_EQ(g.shape(), (Shape{1}));
  EXPECT_EQ(g.item<double>(), 5.0);
  Tensor i0 = tensor(std::vector<int64_t>{1}).reshape({});
  EXPECT_EQ(gather(tensor({5.0, 6.0}), 0, i0).item<double>(), 6.0);
  EXPECT_EQ(gather(tensor({5.0, 6.0}), 0, i0).dim(), 0);
  Tensor s = scatter_add(zeros({3}, DType::Float64), 0, i0, tensor({2.0}).reshape({}));
  EXPECT_EQ(values(s), (std::vector<double>{0, 2, 0}));
  Tensor xr = tensor({5.0}).reshape({}).requires_grad_(true);
  sum(gather(xr, 0, tensor(std::vector<int64_t>{0, 0}))).backward();
  EXPECT_EQ(xr.grad().item<double>(), 2.0);
}

// ============================== autograd inputs ==============================

// Ops with inputs that require grad report themselves; the forward values must not change.
TEST(Indexing, ForwardUnchangedWhenRecording) {
  Tensor x = random_tensor({4, 5}, DType::Float64).requires_grad_();
  Tensor idx = random_index({4, 5}, 5);
  EXPECT_EQ(values(gather(x, 1, idx)), ref_gather(x, 1, idx));
  Tensor rows = random_index({6}, 4);
  EXPECT_EQ(values(index_select(x, 0, rows)), ref_index_select(x, 0, rows));
  Shape shape;
  EXPECT_EQ(values(cat({x, x.detach()}, 1)), ref_cat({x, x}, 1, &shape));
  EXPECT_EQ(values(pad(x, {1, 1})), ref_pad(x, {1, 1}, PadMode::Constant, 0, &shape));
  EXPECT_EQ(values(scatter_add(x, 0, clamp_max(idx.narrow(0, 0, 2), 3), x)),
            ref_scatter_add<double>(x, 0, clamp_max(idx.narrow(0, 0, 2), 3), x));
}
