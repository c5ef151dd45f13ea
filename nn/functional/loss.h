// Placeholder: filled in by the nn loss work.
#pragma once
#include "tensor/tensor.h"
