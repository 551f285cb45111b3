#pragma once
// Host side of the tiled matmul: pipe_operand, launch_tiles (mm_tile below PRE_M rows, mm_pipe from
// PRE_M on) and the LM head + CE entry (ce_tiles, matmul_ce_tiles).
#include "common.cuh"
#include "readers.cuh"
#include "dequant.cuh"
#include "tiles.cuh"
#include "pipe.cuh"
#include "memory.cuh"

namespace qzo {

// The mm_pipe operands of one weight, prepared on stream st into code-value buffers (slot base,
// base + 1); nullptr .v when a buffer could not be allocated.
template <class R>
static PipeW pipe_operand(cudaStream_t st, WArg w, int base) {
  constexpr int64_t KS = (R::COLS + 15) / 16, STEPS = R::ROWS * KS;
  PipeW p{nullptr, nullptr, nullptr};
  float* sm = (float*)code_values(base + 1, (size_t)STEPS * (R::HAS_MIN ? 4 : 2));
  if (!sm) return p;
  if constexpr (R::DIRECT16) {
    p.v = (const uint16_t*)w.codes;
  } else {
    uint16_t* v = code_values(base, (size_t)R::ROWS * (size_t)R::COLS);
    if (!v) return p;
    const int64_t threads = R::ROWS * ((R::COLS + 7) / 8);
    codes16_kernel<R><<<(unsigned)((threads + 255) / 256), 256, 0, st>>>(w, v);
    p.v = v;
  }
  steps16_kernel<R><<<(unsigned)((STEPS + 255) / 256), 256, 0, st>>>(w, sm, sm + STEPS);
  p.s = sm;
  p.m = sm + STEPS;
  return p;
}

// M of at least PRE_M rows: mm_pipe (codes decoded once per call); fewer: 64-row mm_tile tiles that
// decode in the tile (each code decoded M / 64 times, at most 4). Returns 1 when a buffer could not
// be allocated (last_error says so).
constexpr int64_t PRE_M = 256;
template <class R1, class R2, bool GLU, int ACT, bool BIAS, bool RES, bool CE>
static int launch_tiles(cudaStream_t st, const float* x, int64_t M, WArg w1, WArg w2, const float* bias, const float* res, float* y, CeArgs ce) {
  constexpr int BN = TileCfg<R1, R2, GLU, CE, 64>::BN;
  const unsigned nt = (unsigned)((R1::ROWS + BN - 1) / BN);
  if (M < PRE_M) {
    mm_tile<R1, R2, GLU, ACT, BIAS, RES, CE, 64><<<dim3((unsigned)((M + 63) / 64), nt), TM_THREADS, 0, st>>>(x, M, w1, w2, bias, res, y, ce);
    return 0;
  }
  constexpr int64_t K = R1::COLS;
  uint16_t* xh = code_values(0, (size_t)M * (size_t)K);
  if (!xh) return 1;
  half_kernel<<<(unsigned)((M * K / 2 + 256) / 256), 256, 0, st>>>(M * K, x, xh);
  const PipeW p1 = pipe_operand<R1>(st, w1, 1);
  const PipeW p2 = GLU ? pipe_operand<R2>(st, w2, 3) : p1;
  if (!p1.v || !p2.v) return 1;
  constexpr int smem = pipe_smem_bytes<R1, R2, GLU, CE>();
  static bool attr = false;  // once per instance: opt in to more than 48 KB of dynamic shared memory
  if (!attr) {
    if (cudaFuncSetAttribute(mm_pipe<R1, R2, GLU, ACT, BIAS, RES, CE>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess) {
      last_error = "cannot give the matmul kernel " + std::to_string(smem) + " bytes of shared memory";
      return 1;
    }
    attr = true;
  }
  mm_pipe<R1, R2, GLU, ACT, BIAS, RES, CE><<<dim3((unsigned)((M + PIPE_BM - 1) / PIPE_BM), nt), TM_THREADS, smem, st>>>(xh, M, p1, p2, bias, res, y, ce);
  return 0;
}

// The LM head + CE partials: NT = ce_tiles<R>() column tiles of CE_BN logits per row.
template <class R>
constexpr int64_t ce_tiles() { return (R::ROWS + CE_BN - 1) / CE_BN; }
template <class R>
static int matmul_ce_tiles(cudaStream_t st, const float* x, int64_t rows, WArg w, CeArgs ce) {
  return launch_tiles<R, R, false, 0, false, false, true>(st, x, rows, w, w, nullptr, nullptr, nullptr, ce);
}

}  // namespace qzo
