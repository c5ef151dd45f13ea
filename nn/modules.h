// Every nn module in one include (nn::Linear, nn::Conv2d, nn::Sequential, ...).
#pragma once
#include "nn/module.h"
#include "nn/modules/activation.h"
#include "nn/modules/container.h"
#include "nn/modules/conv.h"
#include "nn/modules/dropout.h"
#include "nn/modules/linear.h"
#include "nn/modules/norm.h"
#include "nn/modules/pooling.h"
