// Placeholder: filled in by the nn activation work.
#pragma once
#include "tensor/tensor.h"
