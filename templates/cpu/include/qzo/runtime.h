#pragma once
// The qzo CPU runtime that every generated program includes, one header per concern.
#include "common.h"
#include "numerics.h"
#include "bits.h"
#include "math.h"
#include "matmul.h"
#include "losses.h"
