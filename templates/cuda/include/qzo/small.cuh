#pragma once
// The bandwidth-bound matmul for M <= SMALL_M rows: mm_small (row-major codes) and mm_small_cols
// (NMAJOR codes, e.g. GPTQ).
#include "numerics.cuh"
#include "readers.cuh"

namespace qzo {

// ---------------------------------------------------------------------------------------------
// Bandwidth-bound matmul for M <= SMALL_M rows: one warp per group of NR = 2 output rows; each
// lane walks 16-wide K chunks (one scale lookup per chunk), x read with 16-byte loads, fp32 FMA,
// then a warp reduction. The weight is read exactly once.
// ---------------------------------------------------------------------------------------------
constexpr int SMALL_M = 16, NR = 2;

// Elements c0..c0+15 of an input row xr (= x + row * K + c0): 16-byte loads when they are
// aligned and in range, zeros past K.
__device__ __forceinline__ void x_chunk(const float* xr, int64_t K, int64_t c0, float xv[16]) {
  if (K % 4 == 0 && c0 + 16 <= K) {
#pragma unroll
    for (int e = 0; e < 16; e += 4) {
      const float4 f = __ldg(reinterpret_cast<const float4*>(xr + e));
      xv[e] = f.x; xv[e + 1] = f.y; xv[e + 2] = f.z; xv[e + 3] = f.w;
    }
  } else {
#pragma unroll
    for (int e = 0; e < 16; e++) xv[e] = (c0 + e < K) ? xr[e] : 0.0f;
  }
}

template <class R>
__device__ __forceinline__ void chunk_values(const WArg& w, int64_t n, int64_t c0, float v[16], float& s, float& mn) {
  constexpr int64_t K = R::COLS;
  s = 1.0f;
  mn = 0.0f;
  if constexpr (R::SPLIT) {
    const int64_t si = R::sidx(n, c0);
    s = __ldg(w.scales + si);
    if constexpr (R::HAS_MIN) mn = __ldg(w.mins + si);
#pragma unroll
    for (int e = 0; e < 16; e++) v[e] = (c0 + e < K) ? R::value(w, n, c0 + e) : 0.0f;
  } else {
#pragma unroll
    for (int e = 0; e < 16; e++) v[e] = (c0 + e < K) ? R::full(w, n, c0 + e) : 0.0f;
  }
}

template <class R1, class R2, bool GLU, int ACT, bool BIAS, bool RES>
__global__ void __launch_bounds__(128) mm_small(const float* __restrict__ x, int64_t M, WArg w1, WArg w2, const float* __restrict__ bias,
                                                const float* __restrict__ res, float* __restrict__ y) {
  constexpr int64_t N = R1::ROWS, K = R1::COLS, CH = (K + 15) / 16;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t nb = ((int64_t)blockIdx.x * 4 + warp) * NR;
  float acc1[SMALL_M][NR], acc2[SMALL_M][NR];
#pragma unroll
  for (int m = 0; m < SMALL_M; m++)
#pragma unroll
    for (int r = 0; r < NR; r++) acc1[m][r] = acc2[m][r] = 0.0f;
  for (int64_t ch = lane; ch < CH; ch += 32) {
    const int64_t c0 = ch * 16;
    float v1[NR][16], s1[NR], q1[NR], v2[GLU ? NR : 1][16], s2[NR], q2[NR];
#pragma unroll
    for (int r = 0; r < NR; r++) {
      if (nb + r < N) {
        chunk_values<R1>(w1, nb + r, c0, v1[r], s1[r], q1[r]);
        if constexpr (GLU) chunk_values<R2>(w2, nb + r, c0, v2[GLU ? r : 0], s2[r], q2[r]);
      } else {
#pragma unroll
        for (int e = 0; e < 16; e++) v1[r][e] = 0.0f;
        s1[r] = q1[r] = s2[r] = q2[r] = 0.0f;
        if constexpr (GLU) {
#pragma unroll
          for (int e = 0; e < 16; e++) v2[GLU ? r : 0][e] = 0.0f;
        }
      }
    }
#pragma unroll
    for (int m = 0; m < SMALL_M; m++) {
      if (m >= M) break;
      float xv[16];
      x_chunk(x + (int64_t)m * K + c0, K, c0, xv);
      float xs = 0.0f;
#pragma unroll
      for (int e = 0; e < 16; e++) xs += xv[e];
#pragma unroll
      for (int r = 0; r < NR; r++) {
        float d = 0.0f;
#pragma unroll
        for (int e = 0; e < 16; e++) d = fmaf(v1[r][e], xv[e], d);
        acc1[m][r] += s1[r] * d + q1[r] * xs;
        if constexpr (GLU) {
          float d2 = 0.0f;
#pragma unroll
          for (int e = 0; e < 16; e++) d2 = fmaf(v2[GLU ? r : 0][e], xv[e], d2);
          acc2[m][r] += s2[r] * d2 + q2[r] * xs;
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < SMALL_M; m++) {
    if (m >= M) break;
#pragma unroll
    for (int r = 0; r < NR; r++) {
      float a = acc1[m][r], b = acc2[m][r];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        a += __shfl_xor_sync(0xffffffffu, a, o);
        if constexpr (GLU) b += __shfl_xor_sync(0xffffffffu, b, o);
      }
      const int64_t n = nb + r;
      if (lane == 0 && n < N) {
        float v;
        if constexpr (GLU) {
          v = (float)((double)act<ACT>(a) * (double)b);
        } else {
          v = a;
          if constexpr (BIAS) v = (float)((double)v + (double)bias[n]);
          v = act<ACT>(v);
          if constexpr (RES) v = (float)((double)res[m * N + n] + (double)v);
        }
        y[m * N + n] = v;
      }
    }
  }
}

// The small-M matmul for NMAJOR weights (codes of adjacent rows adjacent, e.g. GPTQ's qweight
// [in / 8, out]): each lane owns one output row, so a warp's code reads are contiguous; the 8 warps
// of a block split K (chunks warp, warp + 8, ...) and add up through shared memory.
template <class R1, class R2, bool GLU, int ACT, bool BIAS, bool RES>
__global__ void __launch_bounds__(256) mm_small_cols(const float* __restrict__ x, int64_t M, WArg w1, WArg w2, const float* __restrict__ bias,
                                                     const float* __restrict__ res, float* __restrict__ y) {
  constexpr int64_t N = R1::ROWS, K = R1::COLS, CH = (K + 15) / 16;
  __shared__ float red1[8][SMALL_M][32], red2[GLU ? 8 : 1][GLU ? SMALL_M : 1][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t n = (int64_t)blockIdx.x * 32 + lane;
  float acc1[SMALL_M], acc2[SMALL_M];
#pragma unroll
  for (int m = 0; m < SMALL_M; m++) acc1[m] = acc2[m] = 0.0f;
  for (int64_t ch = warp; ch < CH; ch += 8) {
    const int64_t c0 = ch * 16;
    float v1[16], s1 = 0.0f, q1 = 0.0f, v2[GLU ? 16 : 1], s2 = 0.0f, q2 = 0.0f;
    if (n < N) {
      chunk_values<R1>(w1, n, c0, v1, s1, q1);
      if constexpr (GLU) chunk_values<R2>(w2, n, c0, v2, s2, q2);
    } else {
#pragma unroll
      for (int e = 0; e < 16; e++) v1[e] = 0.0f;
      if constexpr (GLU) {
#pragma unroll
        for (int e = 0; e < 16; e++) v2[e] = 0.0f;
      }
    }
#pragma unroll
    for (int m = 0; m < SMALL_M; m++) {
      if (m >= M) break;
      float xv[16];
      x_chunk(x + (int64_t)m * K + c0, K, c0, xv);
      float xs = 0.0f, d = 0.0f;
#pragma unroll
      for (int e = 0; e < 16; e++) {
        xs += xv[e];
        d = fmaf(v1[e], xv[e], d);
      }
      acc1[m] += s1 * d + q1 * xs;
      if constexpr (GLU) {
        float d2 = 0.0f;
#pragma unroll
        for (int e = 0; e < 16; e++) d2 = fmaf(v2[e], xv[e], d2);
        acc2[m] += s2 * d2 + q2 * xs;
      }
    }
  }
#pragma unroll
  for (int m = 0; m < SMALL_M; m++) {
    red1[warp][m][lane] = acc1[m];
    if constexpr (GLU) red2[warp][m][lane] = acc2[m];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < SMALL_M * 32; i += 256) {
    const int m = i >> 5, l = i & 31;
    const int64_t row = (int64_t)blockIdx.x * 32 + l;
    if (m >= M || row >= N) continue;
    float a = 0.0f, b = 0.0f;
#pragma unroll
    for (int q = 0; q < 8; q++) {
      a += red1[q][m][l];
      if constexpr (GLU) b += red2[q][m][l];
    }
    float v;
    if constexpr (GLU) {
      v = (float)((double)act<ACT>(a) * (double)b);
    } else {
      v = a;
      if constexpr (BIAS) v = (float)((double)v + (double)bias[row]);
      v = act<ACT>(v);
      if constexpr (RES) v = (float)((double)res[m * N + row] + (double)v);
    }
    y[m * N + row] = v;
  }
}

}  // namespace qzo
