#pragma once
// Elementwise math in double: a vectorisable exp (within 2 ulp of libm) and the activations.
#include "common.h"

namespace qzo {

// exp in double without a libm call, so that loops under `omp simd` vectorise: 2^k p(r) with
// k = round(x / ln 2) (the 1.5 * 2^52 rounding trick), r = x - k ln 2 in two parts, p the degree-13
// Taylor polynomial. Within 2 ulp of exp on [-708, 709]; 0 below -708 (and for -inf); x is clamped
// to 709 above (exp(709) ~ 8e307 instead of an overflow).
static inline double vexp(double x) {
  const double big = 6755399441055744.0;
  const double xc = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
  const double t = xc * 1.4426950408889634 + big;
  const double k = t - big;
  const double r = (xc - k * 0.6931471803691238) - k * 1.9082149292705877e-10;
  double p = 1.6059043836821613e-10;  // 1/13!
  p = p * r + 2.08767569878681e-09;
  p = p * r + 2.505210838544172e-08;
  p = p * r + 2.755731922398589e-07;
  p = p * r + 2.7557319223985893e-06;
  p = p * r + 2.48015873015873e-05;
  p = p * r + 0.0001984126984126984;
  p = p * r + 0.001388888888888889;
  p = p * r + 0.008333333333333333;
  p = p * r + 0.041666666666666664;
  p = p * r + 0.16666666666666666;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  int64_t ki;
  std::memcpy(&ki, &t, sizeof ki);
  const int64_t bits = (ki - 0x4338000000000000LL + 1023) << 52;
  double s;
  std::memcpy(&s, &bits, sizeof s);
  return x < -708.0 ? 0.0 : p * s;
}
static inline double silu(double x) { return x / (1.0 + vexp(-x)); }
static inline double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
static inline double gelu_tanh(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }
static inline double relu(double x) { return x > 0 ? x : 0.0; }

}  // namespace qzo
