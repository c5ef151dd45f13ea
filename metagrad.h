// metagrad: everything a user needs, in one include.
#pragma once
#include "tensor/creation.h"
#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"
#include "tensor/scalar.h"
#include "tensor/tensor.h"
#include "tensor/type_promotion.h"
