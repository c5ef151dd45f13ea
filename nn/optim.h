// Optimizers (optim::SGD, optim::Adam, optim::AdamW), learning-rate schedulers and gradient
// clipping (nn::utils::clip_grad_norm_, clip_grad_value_).
#pragma once
#include "nn/optim/adam.h"
#include "nn/optim/clip_grad.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/optimizer.h"
#include "nn/optim/sgd.h"
