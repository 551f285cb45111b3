#pragma once
// The embedding gather through a weight reader (device flag 4: bad token id).
#include "readers.cuh"

namespace qzo {

template <class R>
__global__ void embedding_kernel(int64_t M, const int32_t* ids, WArg w, float* y, int* flags) {
  constexpr int64_t D = R::COLS, V = R::ROWS;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= M * D) return;
  const int64_t m = i / D, c = i % D;
  const int32_t id = ids[m];
  if (id < 0 || id >= V) { atomicOr(flags, 4); return; }
  y[i] = R::full(w, id, c);
}

}  // namespace qzo
