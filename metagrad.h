// metagrad: everything a user needs, in one include.
#pragma once
#include "autograd/autograd.h"
#include "tensor/creation.h"
#include "tensor/elementwise.h"
#include "tensor/grad_mode.h"
#include "tensor/indexing.h"
#include "tensor/linalg.h"
#include "tensor/print.h"
#include "tensor/random.h"
#include "tensor/reduce.h"
#include "tensor/scalar.h"
#include "tensor/tensor.h"
#include "tensor/type_promotion.h"
