// Placeholder: filled in by the nn checkpoint work.
#pragma once
#include "tensor/tensor.h"
