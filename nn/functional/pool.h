// Placeholder: filled in by the nn pool work.
#pragma once
#include "tensor/tensor.h"
