// The nn layer in one include.
#pragma once
#include "nn/checkpoint.h"
#include "nn/functional.h"
#include "nn/functional/linear.h"
#include "nn/init.h"
#include "nn/module.h"
#include "nn/modules.h"
#include "nn/optim.h"
