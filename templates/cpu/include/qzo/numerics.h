#pragma once
// The numerics contract of docs/ARCHITECTURE.md section 4: Philox4x32-10, the direction z of
// (seed, tensor, index), and the inline perturbation of a trainable scale.
#include "common.h"

namespace qzo {

// Philox4x32-10 (Salmon et al. 2011), as src/runtime/rng/philox.ts.
static inline void philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, uint32_t out[4]) {
  for (int r = 0; r < 10; r++) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c0;
    const uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
    const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// z of tensor t, flat element i, under the step seed (src/runtime/rng/direction.ts zAt).
static inline float z_at(uint32_t seed_lo, uint32_t seed_hi, uint32_t t, uint64_t i, int rademacher) {
  uint32_t x[4];
  philox4x32((uint32_t)i, (uint32_t)(i >> 32), t, 0x5A5A0001u, seed_lo, seed_hi, x);
  if (rademacher) return x[0] < 0x80000000u ? 1.0f : -1.0f;
  const double u1 = ((double)x[0] + 1.0) * 2.3283064365386963e-10;
  const double u2 = (double)x[1] * 2.3283064365386963e-10;
  return (float)(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

// Whether tensor t takes part in the direction of seed_lo: one in every `period` tensors, from the
// offset seed_lo mod period (src/runtime/rng/direction.ts tensorInDirection).
static inline bool in_direction(uint32_t seed_lo, uint32_t t, uint32_t period) {
  return period <= 1 || (t + seed_lo % period) % period == 0;
}

// How the trainable tensors are perturbed in this call (sign 0: not at all).
struct Perturb {
  uint32_t seed_lo, seed_hi;
  int sign;
  double eps;
  int relative;
  int rademacher;
  uint32_t period;
};

// s + sign*eps*z (absolute) or s + sign*eps*|s|*z (relative), rounded once to float; s itself for a
// tensor outside the direction.
static inline float perturbed(float s, const Perturb& p, uint32_t t, uint64_t i) {
  if (p.sign == 0 || !in_direction(p.seed_lo, t, p.period)) return s;
  const double k = (double)p.sign * p.eps;
  const double z = (double)z_at(p.seed_lo, p.seed_hi, t, i, p.rademacher);
  return p.relative ? (float)((double)s + k * std::fabs((double)s) * z) : (float)((double)s + k * z);
}

}  // namespace qzo
