// Placeholder: filled in by the linalg work.
#pragma once
#include "tensor/tensor.h"
