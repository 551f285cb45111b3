#pragma once
// Losses: next-token cross-entropy (ce_combine of the fused LM-head partials, ce_rows over stored
// logits), distill_ce (distill_rows) and the final mean (ce_final); device flags 1, 2 and 8. The
// mean squared error (mse_partial, mse_final).
#include "common.cuh"

namespace qzo {

// ---------------------------------------------------------------------------------------------
// Cross-entropy: per-row terms (num = mask * (lse - target logit), den = mask), then one block
// sums them in double. Device flags: 1 bad target, 2 bad token id (embedding).
// ---------------------------------------------------------------------------------------------
__global__ void ce_combine(int64_t rows, int64_t T, int64_t V, int64_t nt, const float* pmax, const float* psum, const float* ptgt,
                           const int32_t* tok, const float* mask, double* num, double* den, int* flags) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  num[r] = 0.0;
  den[r] = 0.0;
  const int64_t t = r % T;
  if (t + 1 >= T) return;
  const double mk = mask[r + 1];
  if (mk == 0.0) return;
  const int32_t target = tok[r + 1];
  if (target < 0 || target >= V) { atomicOr(flags, 1); return; }
  double mx = -INFINITY;
  for (int64_t i = 0; i < nt; i++) mx = fmax(mx, (double)pmax[r * nt + i]);
  double se = 0.0;
  for (int64_t i = 0; i < nt; i++) se += (double)psum[r * nt + i] * exp((double)pmax[r * nt + i] - mx);
  num[r] = mk * -((double)ptgt[r] - mx - log(se));
  den[r] = mk;
}

// The max of a row of logits and the sum of exp(l - max), in double, reduced over the block
// (blockDim.x = 256); every thread gets both.
__device__ static inline void row_softmax_stats(const float* l, int64_t V, double* red, double* mx_out, double* se_out) {
  double mx = -INFINITY;
  for (int64_t n = threadIdx.x; n < V; n += blockDim.x) mx = fmax(mx, (double)l[n]);
  red[threadIdx.x] = mx;
  __syncthreads();
  for (int o = 128; o > 0; o >>= 1) {
    if ((int)threadIdx.x < o) red[threadIdx.x] = fmax(red[threadIdx.x], red[threadIdx.x + o]);
    __syncthreads();
  }
  mx = red[0];
  __syncthreads();
  double se = 0.0;
  for (int64_t n = threadIdx.x; n < V; n += blockDim.x) se += exp((double)l[n] - mx);
  red[threadIdx.x] = se;
  __syncthreads();
  for (int o = 128; o > 0; o >>= 1) {
    if ((int)threadIdx.x < o) red[threadIdx.x] += red[threadIdx.x + o];
    __syncthreads();
  }
  *mx_out = mx;
  *se_out = red[0];
}

// The unfused next_token_ce: one block per row of stored logits.
__global__ void ce_rows(int64_t T, int64_t V, const float* lg, const int32_t* tok, const float* mask, double* num, double* den, int* flags) {
  const int64_t r = blockIdx.x;
  __shared__ double red[256];
  const float* l = lg + r * V;
  const int64_t t = r % T;
  const bool skip = t + 1 >= T || mask[r + 1] == 0.0f;
  if (skip) {
    if (threadIdx.x == 0) { num[r] = 0.0; den[r] = 0.0; }
    return;
  }
  double mx, se;
  row_softmax_stats(l, V, red, &mx, &se);
  if (threadIdx.x == 0) {
    const int32_t target = tok[r + 1];
    const double mk = mask[r + 1];
    if (target < 0 || target >= V) { atomicOr(flags, 1); num[r] = 0.0; den[r] = 0.0; return; }
    num[r] = mk * -((double)l[target] - mx - log(se));
    den[r] = mk;
  }
}

// distill_ce over stored logits (src/runtime/interpret/ops.ts distillCe): one block per row r0 + blockIdx.x
// of the batch; lg holds the logits of rows r0 .. r0 + gridDim.x - 1; teacher ids/probs are [rows, K].
__global__ void distill_rows(int64_t r0, int64_t T, int64_t V, int64_t K, const float* lg, const int32_t* ids, const float* probs,
                             const float* mask, double* num, double* den, int* flags) {
  const int64_t r = r0 + blockIdx.x;
  __shared__ double red[256];
  const float* l = lg + (int64_t)blockIdx.x * V;
  const int64_t t = r % T;
  if (t + 1 >= T || mask[r + 1] == 0.0f) {
    if (threadIdx.x == 0) { num[r] = 0.0; den[r] = 0.0; }
    return;
  }
  double mx, se;
  row_softmax_stats(l, V, red, &mx, &se);
  if (threadIdx.x == 0) {
    const double lse = log(se);
    double ce = 0.0, S = 0.0, P = 0.0;
    for (int64_t k = 0; k < K; k++) {
      const int32_t v = ids[r * K + k];
      if (v < 0 || v >= V) { atomicOr(flags, 8); num[r] = 0.0; den[r] = 0.0; return; }
      const double lv = (double)l[v] - mx;
      ce -= (double)probs[r * K + k] * (lv - lse);
      S += exp(lv);
      P += (double)probs[r * K + k];
    }
    const double w = 1.0 - P;
    if (w > 0.0) ce -= w * log(fmax((se - S) / se, 1e-12));
    const double mk = mask[r + 1];
    num[r] = mk * ce;
    den[r] = mk;
  }
}

__global__ void ce_final(int64_t rows, const double* num, const double* den, float* out, int* flags) {
  __shared__ double a[256], b[256];
  double x = 0.0, z = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) { x += num[r]; z += den[r]; }
  a[threadIdx.x] = x;
  b[threadIdx.x] = z;
  __syncthreads();
  for (int o = 128; o > 0; o >>= 1) {
    if ((int)threadIdx.x < o) { a[threadIdx.x] += a[threadIdx.x + o]; b[threadIdx.x] += b[threadIdx.x + o]; }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (b[0] == 0.0) atomicOr(flags, 2);
    out[0] = (float)(a[0] / b[0]);
  }
}

// ---------------------------------------------------------------------------------------------
// Mean squared error: each block sums (pred - target)^2 over a grid-stride slice in double, one
// block adds the partial sums (deterministic for a fixed grid) and divides by E.
// ---------------------------------------------------------------------------------------------
constexpr int kMseBlocks = 1024;

__global__ void mse_partial(int64_t E, const float* pred, const float* target, double* partial) {
  __shared__ double red[32];
  double x = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < E; i += (int64_t)gridDim.x * blockDim.x) {
    const double d = (double)pred[i] - (double)target[i];
    x += d * d;
  }
  x = block_sum(x, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = x;
}

__global__ void mse_final(int64_t blocks, int64_t E, const double* partial, float* out) {
  __shared__ double red[32];
  double x = 0.0;
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) x += partial[b];
  x = block_sum(x, red);
  if (threadIdx.x == 0) out[0] = (float)(x / (double)E);
}

}  // namespace qzo
