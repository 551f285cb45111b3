#pragma once
// The scalar numerics contract (docs/ARCHITECTURE.md section 4): Philox4x32-10, z_at, Perturb and
// perturbed (bit-exact with the CPU runtime), the bit-stream helpers of the readers, the activations.
#include "common.cuh"

namespace qzo {

// ---------------------------------------------------------------------------------------------
// Random directions: Philox4x32-10 and z_at, word for word as templates/cpu/include/qzo/numerics.h.
// Double precision throughout; the additions and products that decide a rounding use the _rn
// intrinsics so that nvcc cannot contract them into an FMA (g++ -std=c++17 does not contract).
// ---------------------------------------------------------------------------------------------
__host__ __device__ static inline void philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, uint32_t out[4]) {
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

__device__ static inline float z_at(uint32_t seed_lo, uint32_t seed_hi, uint32_t t, uint64_t i, int rademacher) {
  uint32_t x[4];
  philox4x32((uint32_t)i, (uint32_t)(i >> 32), t, 0x5A5A0001u, seed_lo, seed_hi, x);
  if (rademacher) return x[0] < 0x80000000u ? 1.0f : -1.0f;
  const double u1 = __dmul_rn(__dadd_rn((double)x[0], 1.0), 2.3283064365386963e-10);
  const double u2 = __dmul_rn((double)x[1], 2.3283064365386963e-10);
  return (float)__dmul_rn(sqrt(__dmul_rn(-2.0, log(u1))), cos(__dmul_rn(6.283185307179586, u2)));
}

// Whether tensor t takes part in the direction of seed_lo (templates/cpu/include/qzo/numerics.h).
__host__ __device__ static inline bool in_direction(uint32_t seed_lo, uint32_t t, uint32_t period) {
  return period <= 1 || (t + seed_lo % period) % period == 0;
}

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
__device__ static inline float perturbed(float s, const Perturb& p, uint32_t t, uint64_t i) {
  if (p.sign == 0 || !in_direction(p.seed_lo, t, p.period)) return s;
  const double k = __dmul_rn((double)p.sign, p.eps);
  const double z = (double)z_at(p.seed_lo, p.seed_hi, t, i, p.rademacher);
  return p.relative ? (float)__dadd_rn((double)s, __dmul_rn(__dmul_rn(k, fabs((double)s)), z)) : (float)__dadd_rn((double)s, __dmul_rn(k, z));
}

// `width` bits (<= 32) starting at bit `bit` of a little-endian bit stream.
__device__ static inline uint32_t read_bits(const uint8_t* base, int64_t bit, int width) {
  const uint8_t* p = base + (bit >> 3);
  const int shift = (int)(bit & 7);
  const int nbytes = (shift + width + 7) >> 3;
  uint64_t w = 0;
  for (int k = 0; k < nbytes; k++) w |= (uint64_t)__ldg(p + k) << (8 * k);
  return (uint32_t)((w >> shift) & ((width == 32) ? 0xFFFFFFFFull : ((1ull << width) - 1)));
}

__host__ __device__ static inline int32_t sign_extend(uint32_t v, int width) {
  const uint32_t m = 1u << (width - 1);
  return (int32_t)((v ^ m) - m);
}

__device__ static inline double silu(double x) { return x / (1.0 + exp(-x)); }
__device__ static inline double gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
__device__ static inline double gelu_tanh(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }
__device__ static inline double relu(double x) { return x > 0 ? x : 0.0; }
// ACT codes of the matmul kernels: 0 none, 1 silu, 2 gelu, 3 relu.
template <int ACT> __device__ static inline float act(float v) {
  if (ACT == 1) return (float)silu((double)v);
  if (ACT == 2) return (float)gelu((double)v);
  if (ACT == 3) return (float)relu((double)v);
  return v;
}

}  // namespace qzo
