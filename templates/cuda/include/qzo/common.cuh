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

// The sum of v over a block whose size is a multiple of 32 (warp shuffles, then the warps' sums in
// order); every thread gets it. `red` is shared memory for 32 doubles.
__device__ static inline double block_sum(double v, double* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  double s = 0.0;
  for (int w = 0; w < (int)(blockDim.x >> 5); w++) s += red[w];
  return s;
}

}  // namespace qzo
