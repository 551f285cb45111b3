#pragma once
// mm_pipe, the tiled matmul for large M over operands prepared once per call (steps16_kernel,
// half_kernel), fed by a cp.async pipeline; its mma and epilogue are those of tiles.cuh.
#include "readers.cuh"
#include "operand.cuh"
#include "mma.cuh"
#include "tiles.cuh"

namespace qzo {

// ---------------------------------------------------------------------------------------------
// Large M (mm_pipe): every operand is prepared once per call, so that the K loop is nothing but
// asynchronous copies and tensor-core work: x as 16-bit (half_kernel), the code values as 16-bit
// (codes16_kernel, or a DIRECT16 weight) and the perturbed scales (and mins) as one fp32 value per
// (row, 16-wide K step) (steps16_kernel). PIPE_STAGES shared stages filled by cp.async, PIPE_STAGES-1
// K steps in flight, one barrier per K step; the mma and the epilogue are mm_tile's.
// ---------------------------------------------------------------------------------------------
// Tuning knobs (docs/CUDA.md): shared stages of mm_pipe and the CTAs per multiprocessor it is
// compiled for (2 caps it at 128 registers per thread).
#ifndef QZO_PIPE_STAGES
#define QZO_PIPE_STAGES 4
#endif
#ifndef QZO_PIPE_MIN_BLOCKS
#define QZO_PIPE_MIN_BLOCKS 2
#endif
constexpr int PIPE_STAGES = QZO_PIPE_STAGES, PIPE_BM = 128;

// The operands of one mm_pipe weight: code values [N, K] and per-step scales / mins [N, ceil(K/16)].
struct PipeW {
  const uint16_t* v;
  const float* s;
  const float* m;
};

template <class R>
__global__ void steps16_kernel(WArg w, float* __restrict__ s, float* __restrict__ m) {
  constexpr int64_t K = R::COLS, KS = (K + 15) / 16;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= R::ROWS * KS) return;
  const int64_t n = i / KS, c = (i % KS) * 16;
  if constexpr (R::SPLIT) {
    const int64_t si = R::sidx(n, c);
    s[i] = w.scales[si];
    if constexpr (R::HAS_MIN) m[i] = w.mins[si];
  } else {
    s[i] = 1.0f;
  }
}

__global__ void half_kernel(int64_t n, const float* __restrict__ x, uint16_t* __restrict__ xh) {
  const int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 2;
  if (i + 1 < n) {
    const uint32_t p = pack2(x[i], x[i + 1]);
    xh[i] = (uint16_t)(p & 0xFFFFu);
    xh[i + 1] = (uint16_t)(p >> 16);
  } else if (i < n) {
    xh[i] = (uint16_t)(pack2(x[i], 0.0f) & 0xFFFFu);
  }
}

// rows x TBK 16-bit values of a row-major [rows_total, K] matrix into a shared stage (cp.async where
// a 16-byte piece is aligned and inside, zeros elsewhere).
template <int ROWS, int64_t K>
__device__ __forceinline__ void copy_rows16(const uint16_t* __restrict__ src, int64_t rows_total, int64_t r0, int64_t k0, uint16_t (*dst)[TSK]) {
  constexpr int PIECES = ROWS * TBK / 8;
  static_assert(PIECES % TM_THREADS == 0 || PIECES < TM_THREADS, "copy_rows16 pieces");
#pragma unroll
  for (int i = 0; i < (PIECES + TM_THREADS - 1) / TM_THREADS; i++) {
    const int idx = threadIdx.x + i * TM_THREADS;
    if (idx >= PIECES) break;
    const int r = idx >> 2, c8 = (idx & 3) * 8;
    const int64_t gr = r0 + r, gc = k0 + c8;
    uint16_t* d = &dst[r][c8];
    if (K % 8 == 0 && gr < rows_total && gc + 7 < K) {
      cp_async16(d, src + gr * K + gc);
    } else {
#pragma unroll
      for (int e = 0; e < 8; e++) d[e] = (gr < rows_total && gc + e < K) ? src[gr * K + gc + e] : (uint16_t)0;
    }
  }
}

// The two per-step scales of each of BN rows for K step k0 (8 bytes per row).
template <int BN, int64_t N, int64_t K>
__device__ __forceinline__ void copy_steps(const float* __restrict__ src, int64_t n0, int64_t k0, float (*dst)[2]) {
  constexpr int64_t KS = (K + 15) / 16;
  const int r = threadIdx.x;
  if (r >= BN) return;
  const int64_t gn = n0 + r, ks = k0 / 16;
  if (KS % 2 == 0 && gn < N) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(&dst[r][0]);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(d), "l"(src + gn * KS + ks));
  } else {
    dst[r][0] = gn < N ? src[gn * KS + ks] : 0.0f;
    dst[r][1] = (gn < N && ks + 1 < KS) ? src[gn * KS + ks + 1] : 0.0f;
  }
}

template <class R1, class R2, bool GLU, bool CE>
__host__ __device__ constexpr int pipe_stage_bytes() {
  using C = TileCfg<R1, R2, GLU, CE, PIPE_BM>;
  return PIPE_BM * TSK * 2 + C::BN * TSK * 2 * (GLU ? 2 : 1) + C::BN * 2 * 4 * (GLU ? 4 : 2);
}
template <class R1, class R2, bool GLU, bool CE>
__host__ __device__ constexpr int pipe_smem_bytes() {
  using C = TileCfg<R1, R2, GLU, CE, PIPE_BM>;
  constexpr int main_bytes = PIPE_STAGES * pipe_stage_bytes<R1, R2, GLU, CE>(), ce_bytes = CE ? PIPE_BM * (C::BN + 1) * 4 : 0;
  return main_bytes > ce_bytes ? main_bytes : ce_bytes;
}

template <class R1, class R2, bool GLU, int ACT, bool BIAS, bool RES, bool CE>
__global__ void __launch_bounds__(TM_THREADS, QZO_PIPE_MIN_BLOCKS) mm_pipe(const uint16_t* __restrict__ xh, int64_t M, PipeW w1, PipeW w2, const float* __restrict__ bias,
                                                      const float* __restrict__ res, float* __restrict__ y, CeArgs ce) {
  using C = TileCfg<R1, R2, GLU, CE, PIPE_BM>;
  constexpr int64_t N = R1::ROWS, K = R1::COLS;
  constexpr int BM = PIPE_BM, BN = C::BN, MI = C::MI, NI = C::NI;
  constexpr int STAGE = pipe_stage_bytes<R1, R2, GLU, CE>();
  constexpr int A_BYTES = BM * TSK * 2, B_BYTES = BN * TSK * 2, S_BYTES = BN * 2 * 4;
  extern __shared__ __align__(16) unsigned char smem[];
  auto sA = [&](int st) { return reinterpret_cast<uint16_t (*)[TSK]>(smem + st * STAGE); };
  auto sB = [&](int st, int which) { return reinterpret_cast<uint16_t (*)[TSK]>(smem + st * STAGE + A_BYTES + which * B_BYTES); };
  auto sS = [&](int st, int which) {  // which: 0 S1, 1 M1, 2 S2, 3 M2
    return reinterpret_cast<float (*)[2]>(smem + st * STAGE + A_BYTES + B_BYTES * (GLU ? 2 : 1) + which * S_BYTES);
  };

  const int64_t m0 = (int64_t)blockIdx.x * BM, n0 = (int64_t)blockIdx.y * BN;
  float acc1[MI][NI][4] = {}, acc2[GLU ? MI : 1][NI][4] = {};
  constexpr int64_t KT = (K + TBK - 1) / TBK;
  auto load = [&](int st, int64_t kt) {
    const int64_t k0 = kt * TBK;
    copy_rows16<BM, K>(xh, M, m0, k0, sA(st));
    copy_rows16<BN, K>(w1.v, N, n0, k0, sB(st, 0));
    copy_steps<BN, N, K>(w1.s, n0, k0, sS(st, 0));
    if constexpr (C::MIN1) copy_steps<BN, N, K>(w1.m, n0, k0, sS(st, 1));
    if constexpr (GLU) {
      copy_rows16<BN, K>(w2.v, N, n0, k0, sB(st, 1));
      copy_steps<BN, N, K>(w2.s, n0, k0, sS(st, 2));
      if constexpr (C::MIN2) copy_steps<BN, N, K>(w2.m, n0, k0, sS(st, 3));
    }
  };
#pragma unroll
  for (int st = 0; st < PIPE_STAGES - 1; st++) {
    if (st < KT) load(st, st);
    cp_async_commit();
  }
  for (int64_t kt = 0; kt < KT; kt++) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PIPE_STAGES - 2));
    __syncthreads();  // step kt has landed for every thread; stage (kt - 1) % STAGES is free again
    const int64_t kn = kt + PIPE_STAGES - 1;
    if (kn < KT) load((int)(kn % PIPE_STAGES), kn);
    cp_async_commit();
    const int st = (int)(kt % PIPE_STAGES);
    tile_mma<C, GLU>(sA(st), sB(st, 0), sB(st, 1), sS(st, 0), sS(st, 1), sS(st, 2), sS(st, 3), acc1, acc2);
  }
  cp_async_wait_all();
  __syncthreads();
  tile_store<C, N, GLU, ACT, BIAS, RES, CE>(acc1, acc2, smem, M, m0, n0, bias, res, y, ce);
}

}  // namespace qzo
