#pragma once
// Rotary position embedding (rope_kernel) and causal or full GQA attention (attention_kernel).
#include "common.cuh"

namespace qzo {

// INTERLEAVED: pairs (2j, 2j+1); otherwise halves (j, j + hd/2). Position = row index mod T.
template <bool INTERLEAVED>
__global__ void rope_kernel(int64_t rows, int64_t T, int64_t W, int64_t H, double theta, const float* x, float* y) {
  const int64_t hd = W / H, half = hd / 2;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows * H * half) return;
  const int64_t r = i / (H * half), h = (i / half) % H, j = i % half;
  const double p = (double)(r % T);
  const double ang = p * pow(theta, -2.0 * (double)j / (double)hd);
  const double c = cos(ang), s = sin(ang);
  const int64_t i0 = INTERLEAVED ? r * W + h * hd + 2 * j : r * W + h * hd + j;
  const int64_t i1 = INTERLEAVED ? i0 + 1 : i0 + half;
  const double a = x[i0], b = x[i1];
  y[i0] = (float)(a * c - b * s);
  y[i1] = (float)(a * s + b * c);
}

// Causal (or full) GQA attention of T queries over S keys (S = T when causal). A block of ATT_QW = 8 warps takes 8 consecutive queries of one
// (b, h), one warp per query; the block walks the keys in tiles of KT (up to 32, one per lane),
// staged once in shared memory for all 8 queries (coalesced loads; K rows padded by one float so
// that the lanes' dot products hit different banks). Online softmax (running max and sum) per warp;
// each lane owns HD/32 output dimensions. Arithmetic in the order of the per-query reference.
constexpr int ATT_QW = 8;
template <int HD>
__host__ __device__ constexpr int att_key_tile() {
  constexpr int fit = (45000 - ATT_QW * HD * 4) / ((2 * HD + 1) * 4);
  return fit < 32 ? fit : 32;
}
template <int HD, bool CAUSAL>
__global__ void __launch_bounds__(ATT_QW * 32) attention_kernel(int64_t B, int64_t T, int64_t S, int64_t H, int64_t KH, const float* q, const float* k, const float* v, float* y) {
  constexpr int PL = (HD + 31) / 32, KT = att_key_tile<HD>();
  static_assert(KT >= 1, "attention head too large for the shared-memory key tile");
  __shared__ float sq[ATT_QW][HD];
  __shared__ float sk[KT][HD + 1];
  __shared__ float sv[KT][HD];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t tiles = (T + ATT_QW - 1) / ATT_QW, tile = blockIdx.x % tiles;
  const int64_t h = (blockIdx.x / tiles) % H, b = blockIdx.x / (tiles * H);
  const int64_t t = tile * ATT_QW + warp;
  const bool active = t < T;
  const int64_t W = H * HD, KW = KH * HD, kh = h / (H / KH);
  for (int i = lane; i < HD; i += 32) sq[warp][i] = active ? q[(b * T + t) * W + h * HD + i] : 0.0f;
  const float scale = (float)(1.0 / sqrt((double)HD));
  const int64_t last = CAUSAL ? t : S - 1;  // this warp's last key
  const int64_t block_last = CAUSAL ? (tile * ATT_QW + ATT_QW - 1 < T - 1 ? tile * ATT_QW + ATT_QW - 1 : T - 1) : S - 1;
  float mx = -INFINITY, sum = 0.0f, acc[PL];
#pragma unroll
  for (int i = 0; i < PL; i++) acc[i] = 0.0f;
  for (int64_t j0 = 0; j0 <= block_last; j0 += KT) {
    __syncthreads();  // the previous tile is consumed
    for (int idx = threadIdx.x; idx < KT * HD; idx += ATT_QW * 32) {
      const int r = idx / HD, c = idx % HD;
      const int64_t j = j0 + r;
      const bool ok = j <= block_last;
      sk[r][c] = ok ? k[(b * S + j) * KW + kh * HD + c] : 0.0f;
      sv[r][c] = ok ? v[(b * S + j) * KW + kh * HD + c] : 0.0f;
    }
    __syncthreads();
    if (!active || j0 > last) continue;  // uniform per warp
    const int64_t j = j0 + lane;
    float sc = -INFINITY;
    if (lane < KT && j <= last) {
      float d = 0.0f;
#pragma unroll 8
      for (int i = 0; i < HD; i++) d = fmaf(sq[warp][i], sk[lane][i], d);
      sc = d * scale;
    }
    float tmx = sc;
    for (int o = 16; o > 0; o >>= 1) tmx = fmaxf(tmx, __shfl_xor_sync(0xffffffffu, tmx, o));
    const float nmx = fmaxf(mx, tmx);
    const float corr = expf(mx - nmx);
    const float p = (lane < KT && j <= last) ? expf(sc - nmx) : 0.0f;
    float ps = p;
    for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
    sum = sum * corr + ps;
#pragma unroll
    for (int i = 0; i < PL; i++) acc[i] *= corr;
    const int64_t left = last - j0 + 1;
    const int cnt = left < KT ? (int)left : KT;
    for (int jj = 0; jj < cnt; jj++) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
      for (int i = 0; i < PL; i++) {
        const int dd = lane + 32 * i;
        if (dd < HD) acc[i] = fmaf(pj, sv[jj][dd], acc[i]);
      }
    }
    mx = nmx;
  }
  if (!active) return;
  float* yt = y + (b * T + t) * W + h * HD;
#pragma unroll
  for (int i = 0; i < PL; i++) {
    const int dd = lane + 32 * i;
    if (dd < HD) yt[dd] = acc[i] / sum;
  }
}

}  // namespace qzo
