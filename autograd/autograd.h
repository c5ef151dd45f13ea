// The autograd layer in one include: engine entry points, function transforms, checking
// tools and graph export.
#pragma once
#include "autograd/derivatives.h"
#include "autograd/dot.h"
#include "autograd/engine.h"
#include "autograd/functional.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
