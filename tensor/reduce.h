// Placeholder: filled in by the reduce work.
#pragma once
#include "tensor/tensor.h"
