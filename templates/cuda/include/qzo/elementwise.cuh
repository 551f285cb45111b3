#pragma once
// The generic elementwise kernel: one device lambda over E indices (elementwise).
#include "common.cuh"

namespace qzo {

template <class F>
__global__ void elementwise_kernel(int64_t E, F f) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < E; i += (int64_t)gridDim.x * blockDim.x) f(i);
}
template <class F>
static void elementwise(cudaStream_t st, int64_t E, F f) {
  if (E <= 0) return;
  const int64_t blocks = std::min<int64_t>((E + 255) / 256, 65535 * 8);
  elementwise_kernel<<<(unsigned)blocks, 256, 0, st>>>(E, f);
}

}  // namespace qzo
