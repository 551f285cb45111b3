#pragma once
// The qzo CPU runtime's common part: the standard headers every kernel uses, OpenMP, and the
// per-thread error message that qzo_last_error() returns.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <string>
#include <omp.h>

namespace qzo {

static thread_local std::string last_error;

}  // namespace qzo
