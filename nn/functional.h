// nn::functional: every layer as a function of explicit tensors (weights included), as
// torch.nn.functional. Modules (nn/modules) call these; so do meta-learners on fast weights.
#pragma once
#include "nn/functional/activation.h"
#include "nn/functional/conv.h"
#include "nn/functional/loss.h"
#include "nn/functional/norm.h"
#include "nn/functional/pool.h"
