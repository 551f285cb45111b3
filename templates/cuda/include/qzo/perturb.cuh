#pragma once
// The per-call perturbation of the scales (perturb_kernel) and the QZO update (update_kernel), both
// on the device copies; the numerics are those of numerics.cuh.
#include "numerics.cuh"

namespace qzo {

// ---------------------------------------------------------------------------------------------
// Perturbation (once per scale per call) and the QZO update, both on the device copies.
// ---------------------------------------------------------------------------------------------
__global__ void perturb_kernel(int64_t n, const float* s, float* out, Perturb P, uint32_t t) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = perturbed(s[i], P, t, (uint64_t)i);
}

__global__ void update_kernel(int64_t n, float* s, uint32_t t, uint32_t seed_lo, uint32_t seed_hi, double k, int relative, int rademacher, int fl, double floor_) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float old = s[i];
  const double z = (double)z_at(seed_lo, seed_hi, t, (uint64_t)i, rademacher);
  const double step = relative ? __dmul_rn(__dmul_rn(k, fabs((double)old)), z) : __dmul_rn(k, z);
  float v = (float)__dsub_rn((double)old, step);
  if (fl) {
    const bool flipped = old < 0 ? v > 0 : (old > 0 && v < 0);
    if (fabs((double)v) < floor_ || flipped) v = (float)(old < 0 ? -floor_ : floor_);
  }
  s[i] = v;
}

}  // namespace qzo
