// Placeholder: filled in by the random work.
#pragma once
#include "tensor/tensor.h"
