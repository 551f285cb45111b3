#pragma once
// The matmul micro-kernel shared by the fused and unfused matmuls and the LM-head losses: 4 input
// rows per weight row in double, row tiles split evenly over the threads.
#include "common.h"

namespace qzo {

// Input rows per task of a matmul over M rows: M split evenly over the threads (a multiple of 4, at
// least `least`), so that a weight tile, whose dequantization draws z for every scale, is
// dequantized about once per thread rather than once per small row tile.
static inline int64_t row_tile(int64_t M, int64_t least) {
  const int64_t t = (int64_t)omp_get_max_threads();
  const int64_t per = ((M + t - 1) / t + 3) / 4 * 4;
  return per > least ? per : least;
}
// The matmul micro-kernel: rows [m, m + mr) (mr <= 4) of x[., K] to double in xd[4 * K] (rows past mr are 0).
static inline void rows_to_double(const float* x, int64_t m, int64_t mr, int64_t K, double* xd) {
  for (int64_t r = 0; r < 4; r++) {
    if (r < mr) {
      for (int64_t kk = 0; kk < K; kk++) xd[r * K + kk] = (double)x[(m + r) * K + kk];
    } else {
      for (int64_t kk = 0; kk < K; kk++) xd[r * K + kk] = 0.0;
    }
  }
}
// out[r] = sum_k xd[r * K + k] * w[k] for the 4 rows of xd: every product exact in double, one w load per 4 FMAs.
static inline void dot4(const double* xd, const double* w, int64_t K, double out[4]) {
  double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
  #pragma omp simd reduction(+ : a0, a1, a2, a3)
  for (int64_t kk = 0; kk < K; kk++) {
    const double wv = w[kk];
    a0 += xd[kk] * wv;
    a1 += xd[K + kk] * wv;
    a2 += xd[2 * K + kk] * wv;
    a3 += xd[3 * K + kk] * wv;
  }
  out[0] = a0;
  out[1] = a1;
  out[2] = a2;
  out[3] = a3;
}
// Rows [m0, m1) of x[., K] times the nb double weight rows wd[nb, K], 4 rows at a time (xd: 4 * K
// scratch): put(m, j, dot) for every row m and weight row j.
template <class Put>
static inline void tile_dots(const float* x, int64_t m0, int64_t m1, int64_t K, const double* wd, int64_t nb, double* xd, Put put) {
  for (int64_t m = m0; m < m1; m += 4) {
    const int64_t mr = std::min<int64_t>(4, m1 - m);
    rows_to_double(x, m, mr, K, xd);
    for (int64_t j = 0; j < nb; j++) {
      double acc[4];
      dot4(xd, wd + j * K, K, acc);
      for (int64_t r = 0; r < mr; r++) put(m + r, j, acc[r]);
    }
  }
}

}  // namespace qzo
