// Episode sampling (meta/episodes.h): class and image draws from the sampler's generator,
// images copied straight into the output tensors.
#include "meta/episodes.h"

#include <algorithm>
#include <unordered_set>

namespace metagrad::meta {

namespace {
constexpr const char* kWho = "episodes";
}  // namespace

EpisodeSampler::EpisodeSampler(const ImageDataset& dataset, int64_t n_way, int64_t k_shot,
                               int64_t n_query, uint64_t seed, std::vector<int64_t> classes)
    : dataset_(&dataset),
      n_way_(n_way),
      k_shot_(k_shot),
      n_query_(n_query),
      pool_(std::move(classes)),
      gen_(seed) {
  MG_CHECK(n_way >= 1, kWho, "n_way must be at least 1, got ", n_way);
  MG_CHECK(k_shot >= 1, kWho, "k_shot must be at least 1, got ", k_shot);
  MG_CHECK(n_query >= 0, kWho, "n_query must be non-negative, got ", n_query);
  const int64_t nc = dataset.num_classes();
  if (pool_.empty()) {
    for (int64_t c = 0; c < nc; ++c) pool_.push_back(c);
  } else {
    std::unordered_set<int64_t> seen;
    for (int64_t c : pool_) {
      MG_CHECK(c >= 0 && c < nc, kWho, "class ", c, " out of range for a dataset of ", nc,
               " classes");
      MG_CHECK(seen.insert(c).second, kWho, "class ", c, " appears twice in the pool");
    }
  }
  const int64_t pool_size = static_cast<int64_t>(pool_.size());
  MG_CHECK(n_way <= pool_size, kWho, "n_way = ", n_way, " is larger than the ", pool_size,
           " classes in the pool");
  for (int64_t c : pool_) {
    const int64_t n = dataset.num_images(c);
    // Compared without adding: k_shot + n_query may overflow int64.
    MG_CHECK(k_shot <= n && n_query <= n - k_shot, kWho, "class ", c, " ('", dataset.class_name(c),
             "') has ", n, " images, fewer than k_shot = ", k_shot, " plus n_query = ", n_query);
  }
}

// Note [Episode draws]: one rand() of n_way * (1 + k_shot + n_query) float64 uniforms per
// episode drives partial Fisher-Yates shuffles: step s of a shuffle over m items swaps item s
// with item s + floor(u * (m - s)), so the first n items are a uniform sample without
// replacement, in uniform random order (bias < 2^-40 from float64 u). The first n_way uniforms
// pick the classes from the pool; the next k_shot + n_query per class pick its images. This
// costs O(n_way * (k_shot + n_query)) draws, not a sort of the whole pool per episode.
void EpisodeSampler::draw(float* support_x, int64_t* support_y, float* query_x, int64_t* query_y,
                          std::vector<int64_t>& classes, std::vector<int64_t>* support_index,
                          std::vector<int64_t>* query_index) {
  const ImageDataset& ds = *dataset_;
  const int64_t numel = ds.channels() * ds.height() * ds.width();
  const int64_t per_class = k_shot_ + n_query_;
  const std::vector<double> u =
      rand({n_way_ * (1 + per_class)}, TensorOptions(DType::Float64), &gen_).to_vector<double>();
  auto step = [&](int64_t s, int64_t m, double v) {  // s + floor(v * (m - s)), within [s, m)
    return std::min(s + static_cast<int64_t>(v * static_cast<double>(m - s)), m - 1);
  };
  std::vector<int64_t> order = pool_;
  const int64_t pool_size = static_cast<int64_t>(order.size());
  classes.assign(static_cast<size_t>(n_way_), 0);
  for (int64_t l = 0; l < n_way_; ++l) {
    std::swap(order[static_cast<size_t>(l)], order[static_cast<size_t>(step(l, pool_size, u[l]))]);
    classes[static_cast<size_t>(l)] = order[static_cast<size_t>(l)];
  }
  std::vector<int64_t> pick;
  for (int64_t l = 0; l < n_way_; ++l) {
    const int64_t c = classes[static_cast<size_t>(l)];
    const int64_t m = ds.num_images(c);
    pick.resize(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) pick[static_cast<size_t>(i)] = i;
    const double* uc = u.data() + n_way_ + l * per_class;
    for (int64_t s = 0; s < per_class; ++s)
      std::swap(pick[static_cast<size_t>(s)], pick[static_cast<size_t>(step(s, m, uc[s]))]);
    for (int64_t s = 0; s < k_shot_; ++s) {
      const int64_t row = l * k_shot_ + s;
      ds.copy_image(c, pick[static_cast<size_t>(s)], support_x + row * numel);
      support_y[row] = l;
      if (support_index) support_index->push_back(pick[static_cast<size_t>(s)]);
    }
    for (int64_t q = 0; q < n_query_; ++q) {
      const int64_t row = l * n_query_ + q;
      const int64_t img = pick[static_cast<size_t>(k_shot_ + q)];
      ds.copy_image(c, img, query_x + row * numel);
      query_y[row] = l;
      if (query_index) query_index->push_back(img);
    }
  }
}

Episode EpisodeSampler::sample() {
  const ImageDataset& ds = *dataset_;
  Episode e;
  const Shape img = ds.image_shape();
  e.support_x = Tensor::empty({n_way_ * k_shot_, img[0], img[1], img[2]});
  e.support_y = Tensor::empty({n_way_ * k_shot_}, TensorOptions(DType::Int64));
  e.query_x = Tensor::empty({n_way_ * n_query_, img[0], img[1], img[2]});
  e.query_y = Tensor::empty({n_way_ * n_query_}, TensorOptions(DType::Int64));
  draw(e.support_x.data_ptr<float>(), e.support_y.data_ptr<int64_t>(), e.query_x.data_ptr<float>(),
       e.query_y.data_ptr<int64_t>(), e.classes, &e.support_index, &e.query_index);
  return e;
}

EpisodeBatch EpisodeSampler::sample_batch(int64_t num_tasks) {
  MG_CHECK(num_tasks >= 0, kWho, "number of tasks must be non-negative, got ", num_tasks);
  const ImageDataset& ds = *dataset_;
  const Shape img = ds.image_shape();
  const int64_t ns = n_way_ * k_shot_, nq = n_way_ * n_query_;
  const int64_t numel = img[0] * img[1] * img[2];
  EpisodeBatch b;
  b.support_x = Tensor::empty({num_tasks, ns, img[0], img[1], img[2]});
  b.support_y = Tensor::empty({num_tasks, ns}, TensorOptions(DType::Int64));
  b.query_x = Tensor::empty({num_tasks, nq, img[0], img[1], img[2]});
  b.query_y = Tensor::empty({num_tasks, nq}, TensorOptions(DType::Int64));
  b.classes.resize(static_cast<size_t>(num_tasks));
  for (int64_t t = 0; t < num_tasks; ++t)
    draw(b.support_x.data_ptr<float>() + t * ns * numel, b.support_y.data_ptr<int64_t>() + t * ns,
         b.query_x.data_ptr<float>() + t * nq * numel, b.query_y.data_ptr<int64_t>() + t * nq,
         b.classes[static_cast<size_t>(t)], nullptr, nullptr);
  return b;
}

}  // namespace metagrad::meta
