// metagrad-train: the meta-learning trainer (tools/trainer/trainer.h holds the logic).
//   metagrad-train --preset maml-sinusoid --iterations 2000 --out runs/sin
//   metagrad-train eval --checkpoint runs/sin
#include <iostream>
#include <string>
#include <vector>

#include "tools/trainer/trainer.h"

int main(int argc, char** argv) {
  return metagrad::trainer::run_cli(std::vector<std::string>(argv + 1, argv + argc), std::cout,
                                    std::cerr);
}
