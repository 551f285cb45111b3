#pragma once
// System includes and the state every header shares: qzo::last_error (the message of a failed call)
// and the declaration of the grow-only 16-bit code-value buffers (defined in memory.cuh).

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <dlfcn.h>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

namespace qzo {

static thread_local std::string last_error;
static uint16_t* code_values(int slot, size_t elems);  // grow-only device buffers of 16-bit code values

}  // namespace qzo
