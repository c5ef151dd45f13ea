// Placeholder: filled in by the print work.
#pragma once
#include "tensor/tensor.h"
