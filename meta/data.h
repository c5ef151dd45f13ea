// meta/'s data side in one include: task distributions, image datasets and episodes.
#pragma once
#include "meta/datasets.h"
#include "meta/episodes.h"
#include "meta/image.h"
#include "meta/omniglot.h"
#include "meta/tasks.h"
