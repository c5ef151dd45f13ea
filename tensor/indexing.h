// Placeholder: filled in by the indexing work.
#pragma once
#include "tensor/tensor.h"
