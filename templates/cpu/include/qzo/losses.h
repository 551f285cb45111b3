#pragma once
// Row statistics of the losses: softmax max and sum, and the distillation cross-entropy of one row.
#include "math.h"

namespace qzo {

// The max of a row of logits and the sum of exp(l - max), in double.
template <class L>
static inline void softmax_stats(const L* l, int64_t V, double* mx_out, double* se_out) {
  double mx = (double)l[0];
  for (int64_t n = 1; n < V; n++) mx = (double)l[n] > mx ? (double)l[n] : mx;
  double se = 0.0;
  #pragma omp simd reduction(+ : se)
  for (int64_t n = 0; n < V; n++) se += vexp((double)l[n] - mx);
  *mx_out = mx;
  *se_out = se;
}
// distill_ce of one row (src/runtime/interpret/ops.ts distillCe): the teacher's K buckets (ids, probs)
// and one for the rest of the vocabulary against softmax(l); sets *bad on an id outside [0, V).
template <class L>
static inline double distill_row(const L* l, int64_t V, const int32_t* ids, const float* probs, int64_t K, int* bad) {
  double mx, se;
  softmax_stats(l, V, &mx, &se);
  const double lse = std::log(se);
  double ce = 0.0, S = 0.0, P = 0.0;
  for (int64_t k = 0; k < K; k++) {
    const int32_t v = ids[k];
    if (v < 0 || v >= V) { *bad = 1; return 0.0; }
    const double lv = (double)l[v] - mx;
    ce -= (double)probs[k] * (lv - lse);
    S += std::exp(lv);
    P += (double)probs[k];
  }
  const double w = 1.0 - P;
  if (w > 0.0) ce -= w * std::log(std::max((se - S) / se, 1e-12));
  return ce;
}

}  // namespace qzo
