// Placeholder: filled in by the nn conv work.
#pragma once
#include "tensor/tensor.h"
