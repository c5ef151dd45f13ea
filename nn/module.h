// Placeholder: filled in by the nn module work.
#pragma once
#include "tensor/tensor.h"
