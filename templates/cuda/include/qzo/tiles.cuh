#pragma once
// The tiled tensor-core matmul: its shape (TileCfg), register stages, K step (tile_mma), epilogue
// (tile_store, CE partials) and mm_tile, the kernel that decodes the weight in the tile (moderate M).
#include "numerics.cuh"
#include "readers.cuh"
#include "operand.cuh"
#include "mma.cuh"

namespace qzo {

// ---------------------------------------------------------------------------------------------
// Tiled tensor-core matmul: y[M, N] = epilogue(x[M, K] W^T). 256 threads = 8 warps as 2 (M) x 4
// (N); output tile BM x BN with BM = 64 (mm_tile) or 128 (mm_pipe) and
// BN = 128 (NI = 4 n8-tiles per warp) or 64 (NI = 2: GLU, whose two weights double the
// accumulators, and the LM head + CE, whose logit tile must fit in shared memory). K step TBK = 32.
//
// Shared memory holds 16-bit operands only, rows padded to 40 elements (80 bytes, so ldmatrix is
// free of bank conflicts): x converted from fp32, and the weight as exact code values v. Scales
// stay fp32 and are applied to the fp32 partial products once per scale group (GK 16-wide steps,
// 2 when the format's block is a multiple of 32), so a perturbation is never rounded to 16 bits.
// Two kernels share this tile, its mma (tile_mma) and its epilogue (tile_store): mm_tile decodes
// the weight inside the tile (moderate M), mm_pipe reads operands prepared once per call (large M).
// GLU: y = act(x Wg^T) * (x Wu^T). CE: the logits of a tile are reduced to (max, sum exp, target
// logit) per row and tile, and never stored (fuse-lm-head-ce).
// ---------------------------------------------------------------------------------------------
constexpr int TM_THREADS = 256, TBK = 32, TSK = TBK + 8, CE_BN = 64;

struct CeArgs {
  const int32_t* tok;
  int64_t T;
  float* pmax;   // [rows, n_tiles]
  float* psum;   // [rows, n_tiles] (sum of exp(l - pmax))
  float* ptgt;   // [rows] the target's logit
};

// The register stage of one weight: VPT consecutive code values of one row (packed 16-bit pairs),
// and one (scale, min) per 16-wide step for the threads that load scales.
template <class R, int BN>
struct WStage {
  static constexpr int VPT = BN * TBK / TM_THREADS, TPR = TBK / VPT;
  uint32_t v[VPT / 2];
  float s, m;

  __device__ __forceinline__ void load(const WArg& w, int64_t n0, int64_t k0) {
    load_values(w, n0, k0);
    load_scales(w, n0, k0);
  }
  __device__ __forceinline__ void load_values(const WArg& w, int64_t n0, int64_t k0) {
    constexpr int64_t N = R::ROWS, K = R::COLS;
    const int tid = threadIdx.x;
    const int64_t gn = n0 + tid / TPR, c = k0 + (tid % TPR) * VPT;
#pragma unroll
    for (int e = 0; e < VPT; e += 2) {
      float v0 = 0.0f, v1 = 0.0f;
      if (gn < N) {
        if constexpr (R::SPLIT) {
          if (c + e < K) v0 = R::value(w, gn, c + e);
          if (c + e + 1 < K) v1 = R::value(w, gn, c + e + 1);
        } else {
          if (c + e < K) v0 = R::full(w, gn, c + e);
          if (c + e + 1 < K) v1 = R::full(w, gn, c + e + 1);
        }
      }
      v[e / 2] = pack2(v0, v1);
    }
  }
  __device__ __forceinline__ void load_scales(const WArg& w, int64_t n0, int64_t k0) {
    constexpr int64_t N = R::ROWS, K = R::COLS;
    const int tid = threadIdx.x;
    s = 1.0f;
    m = 0.0f;
    if constexpr (R::SPLIT) {
      if (tid < 2 * BN) {
        const int64_t sn = n0 + (tid >> 1), sc = k0 + (tid & 1) * 16;
        s = 0.0f;
        if (sn < N && sc < K) {
          const int64_t si = R::sidx(sn, sc);
          s = __ldg(w.scales + si);
          if constexpr (R::HAS_MIN) m = __ldg(w.mins + si);
        }
      }
    }
  }
  __device__ __forceinline__ void store(uint16_t (*sB)[TSK], float (*sS)[2], float (*sM)[2]) const {
    const int tid = threadIdx.x;
    uint4* dst = reinterpret_cast<uint4*>(&sB[tid / TPR][(tid % TPR) * VPT]);
#pragma unroll
    for (int q = 0; q < VPT / 8; q++) dst[q] = make_uint4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
    store_scales(sS, sM);
  }
  __device__ __forceinline__ void store_scales(float (*sS)[2], float (*sM)[2]) const {
    const int tid = threadIdx.x;
    if (tid < 2 * BN) {
      sS[tid >> 1][tid & 1] = s;
      if (sM) sM[tid >> 1][tid & 1] = m;
    }
  }
};

// The register stage of x: BM x TBK fp32 values, 16-byte loads (8 threads per row).
template <int BM>
struct XStage {
  static constexpr int NV = BM * TBK / 4 / TM_THREADS;
  float4 v[NV];

  __device__ __forceinline__ void load(const float* __restrict__ x, int64_t M, int64_t K, int64_t m0, int64_t k0) {
    const bool vec = (K % 4) == 0;
#pragma unroll
    for (int i = 0; i < NV; i++) {
      const int idx = threadIdx.x + i * TM_THREADS;
      const int64_t gm = m0 + (idx >> 3), gc = k0 + (idx & 7) * 4;
      if (vec && gm < M && gc + 3 < K) {
        v[i] = __ldg(reinterpret_cast<const float4*>(x + gm * K + gc));
      } else {
        float e[4];
#pragma unroll
        for (int q = 0; q < 4; q++) e[q] = (gm < M && gc + q < K) ? x[gm * K + gc + q] : 0.0f;
        v[i] = make_float4(e[0], e[1], e[2], e[3]);
      }
    }
  }
  __device__ __forceinline__ void store(uint16_t (*sA)[TSK]) const {
#pragma unroll
    for (int i = 0; i < NV; i++) {
      const int idx = threadIdx.x + i * TM_THREADS;
      *reinterpret_cast<uint2*>(&sA[idx >> 3][(idx & 7) * 4]) = make_uint2(pack2(v[i].x, v[i].y), pack2(v[i].z, v[i].w));
    }
  }
};

// The shape of one tiled-matmul instance (see mm_tile): warps 2 (M) x 4 (N), MI m16 tiles and NI n8
// tiles per warp, GK 16-wide K steps per scale group.
template <class R1, class R2, bool GLU, bool CE, int BM_>
struct TileCfg {
  static constexpr int BM = BM_, NI = (GLU || CE) ? 2 : 4, BN = 32 * NI, MI = BM / 32;
  static constexpr bool MIN1 = R1::SPLIT && R1::HAS_MIN, MIN2 = GLU && R2::SPLIT && R2::HAS_MIN;
  static constexpr int GK = ((!R1::SPLIT || R1::KB % 32 == 0) && (!GLU || !R2::SPLIT || R2::KB % 32 == 0)) ? 2 : 1;
};

// One TBK-deep K step of a CTA tile from one shared-memory stage: A fragments (x) and B fragments
// (code values) by ldmatrix, mma per scale group into a zeroed partial t, then acc += s * t in fp32
// (and acc += min * rowsum(x) for formats with a min).
template <class C, bool GLU>
__device__ __forceinline__ void tile_mma(const uint16_t (*sA)[TSK], const uint16_t (*sB1)[TSK], const uint16_t (*sB2)[TSK], const float (*sS1)[2],
                                         const float (*sM1)[2], const float (*sS2)[2], const float (*sM2)[2], float (&acc1)[C::MI][C::NI][4],
                                         float (&acc2)[GLU ? C::MI : 1][C::NI][4]) {
  constexpr int MI = C::MI, NI = C::NI, GK = C::GK;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tq = lane & 3;
  const int wm = (warp >> 2) * (MI * 16), wn = (warp & 3) * (NI * 8);
  const uint32_t ones = pack2(1.0f, 1.0f);
#pragma unroll
  for (int grp = 0; grp < 2 / GK; grp++) {
    uint32_t a[GK][MI][4], b1[GK][NI][2], b2[GLU ? GK : 1][NI][2];
#pragma unroll
    for (int j = 0; j < GK; j++) {
      const int kk = (grp * GK + j) * 16;
#pragma unroll
      for (int mi = 0; mi < MI; mi++) ldsm_x4(a[j][mi], &sA[wm + mi * 16 + (lane & 15)][kk + (lane >> 4) * 8]);
#pragma unroll
      for (int ni = 0; ni < NI; ni += 2) {
        const int nr = wn + ni * 8 + (lane & 7) + ((lane >> 4) << 3), kc = kk + ((lane >> 3) & 1) * 8;
        uint32_t r[4];
        ldsm_x4(r, &sB1[nr][kc]);
        b1[j][ni][0] = r[0]; b1[j][ni][1] = r[1]; b1[j][ni + 1][0] = r[2]; b1[j][ni + 1][1] = r[3];
        if constexpr (GLU) {
          ldsm_x4(r, &sB2[nr][kc]);
          b2[j][ni][0] = r[0]; b2[j][ni][1] = r[1]; b2[j][ni + 1][0] = r[2]; b2[j][ni + 1][1] = r[3];
        }
      }
    }
    float rs[MI][4];
    if constexpr (C::MIN1 || C::MIN2) {
#pragma unroll
      for (int mi = 0; mi < MI; mi++) {
        rs[mi][0] = rs[mi][1] = rs[mi][2] = rs[mi][3] = 0.0f;
#pragma unroll
        for (int j = 0; j < GK; j++) mma16816(rs[mi], a[j][mi], ones, ones);  // row sums of x over the group
      }
    }
#pragma unroll
    for (int ni = 0; ni < NI; ni++) {
      const int ne = wn + ni * 8 + tq * 2;  // accumulator columns ne, ne + 1
      const float s0 = sS1[ne][grp * GK], s1 = sS1[ne + 1][grp * GK];
#pragma unroll
      for (int mi = 0; mi < MI; mi++) {
        float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < GK; j++) mma16816(t, a[j][mi], b1[j][ni][0], b1[j][ni][1]);
        acc1[mi][ni][0] += s0 * t[0];
        acc1[mi][ni][1] += s1 * t[1];
        acc1[mi][ni][2] += s0 * t[2];
        acc1[mi][ni][3] += s1 * t[3];
        if constexpr (C::MIN1) {
          const float q0 = sM1[ne][grp * GK], q1 = sM1[ne + 1][grp * GK];
          acc1[mi][ni][0] += q0 * rs[mi][0];
          acc1[mi][ni][1] += q1 * rs[mi][1];
          acc1[mi][ni][2] += q0 * rs[mi][2];
          acc1[mi][ni][3] += q1 * rs[mi][3];
        }
      }
      if constexpr (GLU) {
        const float u0 = sS2[ne][grp * GK], u1 = sS2[ne + 1][grp * GK];
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
          for (int j = 0; j < GK; j++) mma16816(t, a[j][mi], b2[j][ni][0], b2[j][ni][1]);
          acc2[mi][ni][0] += u0 * t[0];
          acc2[mi][ni][1] += u1 * t[1];
          acc2[mi][ni][2] += u0 * t[2];
          acc2[mi][ni][3] += u1 * t[3];
          if constexpr (C::MIN2) {
            const float q0 = sM2[ne][grp * GK], q1 = sM2[ne + 1][grp * GK];
            acc2[mi][ni][0] += q0 * rs[mi][0];
            acc2[mi][ni][1] += q1 * rs[mi][1];
            acc2[mi][ni][2] += q0 * rs[mi][2];
            acc2[mi][ni][3] += q1 * rs[mi][3];
          }
        }
      }
    }
  }
}

// The end of a CTA tile: the epilogue (bias, activation, residual; GLU gate) and the store, or for
// CE the tile's logits through shared memory (`smem`, free by now) to per-row (max, sum exp,
// target logit) partials.
template <class C, int64_t N, bool GLU, int ACT, bool BIAS, bool RES, bool CE>
__device__ __forceinline__ void tile_store(const float (&acc1)[C::MI][C::NI][4], const float (&acc2)[GLU ? C::MI : 1][C::NI][4], unsigned char* smem,
                                           int64_t M, int64_t m0, int64_t n0, const float* __restrict__ bias, const float* __restrict__ res,
                                           float* __restrict__ y, const CeArgs& ce) {
  constexpr int MI = C::MI, NI = C::NI, BM = C::BM, BN = C::BN;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int wm = (warp >> 2) * (MI * 16), wn = (warp & 3) * (NI * 8);
  if constexpr (CE) {
    float (*L)[BN + 1] = reinterpret_cast<float (*)[BN + 1]>(smem);
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int ni = 0; ni < NI; ni++)
#pragma unroll
        for (int e = 0; e < 4; e++) L[wm + mi * 16 + g + (e >> 1) * 8][wn + ni * 8 + tq * 2 + (e & 1)] = acc1[mi][ni][e];
    __syncthreads();
    if (threadIdx.x < BM) {
      const int r = threadIdx.x;
      const int64_t gm = m0 + r;
      if (gm < M) {
        const int64_t nt = (N + BN - 1) / BN;
        float mx = -INFINITY;
        for (int c = 0; c < BN && n0 + c < N; c++) mx = fmaxf(mx, L[r][c]);
        double se = 0.0;
        for (int c = 0; c < BN && n0 + c < N; c++) se += exp((double)L[r][c] - (double)mx);
        ce.pmax[gm * nt + blockIdx.y] = mx;
        ce.psum[gm * nt + blockIdx.y] = (float)se;
        const int64_t t = gm % ce.T;
        if (t + 1 < ce.T) {
          const int32_t target = ce.tok[gm + 1];
          if (target >= n0 && target < n0 + BN && target < N) ce.ptgt[gm] = L[r][target - n0];
        }
      }
    }
  } else {
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int ni = 0; ni < NI; ni++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int64_t gm = m0 + wm + mi * 16 + g + (e >> 1) * 8;
          const int64_t gn = n0 + wn + ni * 8 + tq * 2 + (e & 1);
          if (gm >= M || gn >= N) continue;
          float v;
          if constexpr (GLU) {
            const float gt = act<ACT>(acc1[mi][ni][e]);
            v = (float)((double)gt * (double)acc2[mi][ni][e]);
          } else {
            v = acc1[mi][ni][e];
            if constexpr (BIAS) v = (float)((double)v + (double)bias[gn]);
            v = act<ACT>(v);
            if constexpr (RES) v = (float)((double)res[gm * N + gn] + (double)v);
          }
          y[gm * N + gn] = v;
        }
  }
}

// In-tile dequantization (moderate M): two shared stages and one register stage. While the tensor
// cores work on K step k, the fp32 loads of x and the decoding of W for step k+1 are in flight in
// registers; they are stored to the other stage after the mma, then one barrier per K step.
template <class R1, class R2, bool GLU, int ACT, bool BIAS, bool RES, bool CE, int BM>
__global__ void __launch_bounds__(TM_THREADS) mm_tile(const float* __restrict__ x, int64_t M, WArg w1, WArg w2, const float* __restrict__ bias,
                                                      const float* __restrict__ res, float* __restrict__ y, CeArgs ce) {
  using C = TileCfg<R1, R2, GLU, CE, BM>;
  constexpr int64_t N = R1::ROWS, K = R1::COLS;
  constexpr int BN = C::BN, MI = C::MI, NI = C::NI;
  constexpr int A_BYTES = 2 * BM * TSK * 2, B_BYTES = 2 * BN * TSK * 2, S_BYTES = 2 * BN * 2 * 4;
  constexpr int MAIN = A_BYTES + B_BYTES * (GLU ? 2 : 1) + S_BYTES * (2 + (GLU ? 2 : 0));
  constexpr int CE_BYTES = CE ? BM * (BN + 1) * 4 : 0;
  __shared__ __align__(16) unsigned char smem[MAIN > CE_BYTES ? MAIN : CE_BYTES];
  uint16_t (*sA)[BM][TSK] = reinterpret_cast<uint16_t (*)[BM][TSK]>(smem);
  uint16_t (*sB1)[BN][TSK] = reinterpret_cast<uint16_t (*)[BN][TSK]>(smem + A_BYTES);
  uint16_t (*sB2)[BN][TSK] = reinterpret_cast<uint16_t (*)[BN][TSK]>(smem + A_BYTES + B_BYTES);
  float (*sS1)[BN][2] = reinterpret_cast<float (*)[BN][2]>(smem + A_BYTES + B_BYTES * (GLU ? 2 : 1));
  float (*sM1)[BN][2] = sS1 + 2;
  float (*sS2)[BN][2] = sS1 + 4;
  float (*sM2)[BN][2] = sS1 + 6;

  const int64_t m0 = (int64_t)blockIdx.x * BM, n0 = (int64_t)blockIdx.y * BN;
  float acc1[MI][NI][4] = {}, acc2[GLU ? MI : 1][NI][4] = {};
  constexpr int64_t KT = (K + TBK - 1) / TBK;
  XStage<BM> xs;
  WStage<R1, BN> ws1;
  WStage<R2, BN> ws2;

  xs.load(x, M, K, m0, 0);
  ws1.load(w1, n0, 0);
  if constexpr (GLU) ws2.load(w2, n0, 0);
  xs.store(sA[0]);
  ws1.store(sB1[0], sS1[0], C::MIN1 ? sM1[0] : nullptr);
  if constexpr (GLU) ws2.store(sB2[0], sS2[0], C::MIN2 ? sM2[0] : nullptr);
  __syncthreads();

  for (int64_t kt = 0; kt < KT; kt++) {
    const int cur = (int)(kt & 1);
    // The next step's loads (the last iteration loads its own step again, unused: no branch, so
    // the loads can be scheduled between the mma instructions).
    const int64_t k1 = (kt + 1 < KT ? kt + 1 : kt) * TBK;
    xs.load(x, M, K, m0, k1);
    ws1.load(w1, n0, k1);
    if constexpr (GLU) ws2.load(w2, n0, k1);
    tile_mma<C, GLU>(sA[cur], sB1[cur], sB2[cur], sS1[cur], sM1[cur], sS2[cur], sM2[cur], acc1, acc2);
    if (kt + 1 < KT) {
      xs.store(sA[cur ^ 1]);
      ws1.store(sB1[cur ^ 1], sS1[cur ^ 1], C::MIN1 ? sM1[cur ^ 1] : nullptr);
      if constexpr (GLU) ws2.store(sB2[cur ^ 1], sS2[cur ^ 1], C::MIN2 ? sM2[cur ^ 1] : nullptr);
    }
    __syncthreads();
  }
  tile_store<C, N, GLU, ACT, BIAS, RES, CE>(acc1, acc2, smem, M, m0, n0, bias, res, y, ce);
}

}  // namespace qzo
