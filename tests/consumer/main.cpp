// Links the installed library and checks one result.
#include <metagrad/metagrad.h>

#include <cstdio>

int main() {
  metagrad::Tensor x = metagrad::arange(0.0, 4.0, 1.0).reshape({2, 2});
  metagrad::Tensor y = x * x + 1;
  const float v = y.to_vector<float>()[3];  // 3*3 + 1
  std::printf("consumer: y[1][1] = %g\n", v);
  return v == 10.f ? 0 : 1;
}
