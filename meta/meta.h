// The meta layer in one include: task data, episodes, models, learners, evaluation.
#pragma once
#include "meta/data.h"
#include "meta/evaluate.h"
#include "meta/learner.h"
#include "meta/models.h"
