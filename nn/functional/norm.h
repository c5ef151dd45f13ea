// Placeholder: filled in by the nn norm work.
#pragma once
#include "tensor/tensor.h"
