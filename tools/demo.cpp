// metagrad-demo: tensors and gradients at work, first and second order.
//   metagrad-demo [--dot DIR]   also writes the autograd graphs as DIR/first_order.dot and
//                               DIR/second_order.dot (render with `dot -Tpng`).
#include <metagrad/metagrad.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

using namespace metagrad;

namespace {
bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  return static_cast<bool>(f);
}
}  // namespace

int main(int argc, char** argv) {
  std::string dot_dir;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dot") == 0 && i + 1 < argc) {
      dot_dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--dot DIR]\n", argv[0]);
      return 2;
    }
  }
  try {
    std::cout << "== tensors ==\n";
    Tensor m = arange(0, 6, 1, DType::Float32).reshape({2, 3});
    std::cout << "m = " << m << "\n";
    std::cout << "m.t() is a view with strides [" << m.t().stride(0) << ", " << m.t().stride(1)
              << "]: " << m.t() << "\n";
    std::cout << "m.sum(dim 1) = " << sum(m, {1}) << "\n";
    std::cout << "m @ m.t() = " << matmul(m, m.t()) << "\n";

    std::cout << "\n== gradients ==\n";
    // f(x) = sum(x * exp(x)); f'(x) = (1 + x) e^x; f''(x) = (2 + x) e^x
    Tensor x = tensor({-1.0, 0.0, 0.5}).requires_grad_();
    Tensor y = sum(x * exp(x));
    Tensor g = grad({y}, {x}, {}, std::nullopt, /*create_graph=*/true)[0];
    // The graphs are exported before the next backward pass frees what they saved.
    const std::string dot_first = to_dot(y), dot_second = to_dot(g);
    Tensor h = grad({sum(g)}, {x})[0];  // diagonal of the Hessian (f is separable)
    std::cout << "x = " << x << "\ny = sum(x * exp(x)) = " << y << "\n";
    std::cout << "dy/dx = (1 + x) e^x = " << g << "\n";
    std::cout << "d2y/dx2 = (2 + x) e^x = " << h << "\n";

    std::cout << "\n== one step of gradient descent, differentiated (second order) ==\n";
    Generator gen(0);
    Tensor w = randn({3}, DType::Float64, &gen).requires_grad_();
    Tensor a = randn({8, 3}, DType::Float64, &gen), b = randn({8}, DType::Float64, &gen);
    Tensor inner = mean(square(matmul(a, w) - b));
    Tensor gw = grad({inner}, {w}, {}, std::nullopt, true)[0];
    Tensor w1 = w - gw * 0.1;  // the adapted weights are a function of w
    Tensor outer = mean(square(matmul(a, w1) - b));
    outer.backward();
    std::cout << "loss before/after the step: " << inner.item<double>() << " / "
              << outer.item<double>() << "\n";
    std::cout << "d(loss after step)/dw, exact through the step = " << w.grad() << "\n";

    if (!dot_dir.empty()) {
      const bool ok = write_file(dot_dir + "/first_order.dot", dot_first) &&
                      write_file(dot_dir + "/second_order.dot", dot_second);
      if (!ok) {
        std::fprintf(stderr, "metagrad-demo: cannot write into %s\n", dot_dir.c_str());
        return 1;
      }
      std::cout << "\nwrote " << dot_dir << "/first_order.dot and second_order.dot\n";
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "metagrad-demo: %s\n", e.what());
    return 1;
  }
  return 0;
}
