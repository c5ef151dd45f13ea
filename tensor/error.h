// metagrad::Error and MG_CHECK live at the bottom layer (kernels/error.h), because the CUDA
// wrappers raise it too; the tensor layer re-exports them.
#pragma once
#include "kernels/error.h"
