#pragma once
// RMSNorm and LayerNorm, one block per row, in double (block_sum, common.cuh).
#include "common.cuh"

namespace qzo {

__global__ void rmsnorm_kernel(int64_t D, double eps, const float* x, const float* gw, float* y) {
  __shared__ double red[32];
  const float* xm = x + (int64_t)blockIdx.x * D;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += (double)xm[i] * (double)xm[i];
  ss = block_sum(ss, red);
  const double inv = 1.0 / sqrt(ss / (double)D + eps);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) y[(int64_t)blockIdx.x * D + i] = (float)((double)xm[i] * inv * (double)gw[i]);
}

__global__ void layernorm_kernel(int64_t D, double eps, const float* x, const float* gw, const float* gb, float* y) {
  __shared__ double red[32];
  const float* xm = x + (int64_t)blockIdx.x * D;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += (double)xm[i];
  const double mean = block_sum(s, red) / (double)D;
  double v = 0.0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) v += ((double)xm[i] - mean) * ((double)xm[i] - mean);
  const double inv = 1.0 / sqrt(block_sum(v, red) / (double)D + eps);
  // gw and gb are null for a layernorm without affine parameters.
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) y[(int64_t)blockIdx.x * D + i] = (float)(((double)xm[i] - mean) * inv * (gw ? (double)gw[i] : 1.0) + (gb ? (double)gb[i] : 0.0));
}

}  // namespace qzo
