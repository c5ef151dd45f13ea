// Placeholder: filled in by the nn optim work.
#pragma once
#include "tensor/tensor.h"
