// Device lives at the bottom layer (kernels/device.h), because the CUDA runtime takes it;
// the tensor layer re-exports it.
#pragma once
#include "kernels/device.h"
