#pragma once
// Whole weights to 16-bit operands: RdOp16 and dequant_kernel (the unfused baseline), codes16_kernel
// (the code values of mm_pipe's W operand).
#include "readers.cuh"
#include "operand.cuh"

namespace qzo {

// The unfused baseline (benchmarks only): a whole weight dequantized to the 16-bit operand type
// first (dequant_kernel), then multiplied as a plain matrix through RdOp16.
__device__ static __forceinline__ float op16_to_float(uint16_t b) {
#ifdef QZO_BF16
  return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(&b));
#else
  return __half2float(*reinterpret_cast<const __half*>(&b));
#endif
}
template <int64_t ROWS_, int64_t COLS_>
struct RdOp16 {
  static constexpr int64_t ROWS = ROWS_, COLS = COLS_;
  static constexpr bool SPLIT = false, HAS_MIN = false, NMAJOR = false, DIRECT16 = true;
  static constexpr int KB = 16;
  __device__ static __forceinline__ int64_t sidx(int64_t, int64_t) { return 0; }
  __device__ static __forceinline__ float value(const WArg& w, int64_t n, int64_t c) { return op16_to_float(__ldg((const unsigned short*)w.codes + n * COLS + c)); }
  __device__ static __forceinline__ float full(const WArg& w, int64_t n, int64_t c) { return op16_to_float(__ldg((const unsigned short*)w.codes + n * COLS + c)); }
};
template <class R>
__global__ void dequant_kernel(WArg w, uint16_t* out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= R::ROWS * R::COLS) return;
  const float v = R::full(w, i / R::COLS, i % R::COLS);
  const uint32_t p = pack2(v, 0.0f);
  out[i] = (uint16_t)(p & 0xFFFFu);
}

// The code values v (SPLIT readers; s*v (+ min) otherwise) of a whole weight as exact 16-bit
// operands, row-major [ROWS, COLS]: the W operand of the tiled matmul for large M (mm_pipe),
// so that each code is decoded once per call instead of once per M tile. Scales are not applied.
template <class R>
__global__ void codes16_kernel(WArg w, uint16_t* __restrict__ out) {
  constexpr int64_t K = R::COLS, PER_ROW = (K + 7) / 8;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= R::ROWS * PER_ROW) return;
  const int64_t n = i / PER_ROW, c0 = (i % PER_ROW) * 8;
  uint32_t p[4];
#pragma unroll
  for (int e = 0; e < 8; e += 2) {
    float v[2] = {0.0f, 0.0f};
#pragma unroll
    for (int q = 0; q < 2; q++)
      if (c0 + e + q < K) v[q] = R::SPLIT ? R::value(w, n, c0 + e + q) : R::full(w, n, c0 + e + q);
    p[e / 2] = pack2(v[0], v[1]);
  }
  if (K % 8 == 0) {
    *reinterpret_cast<uint4*>(out + n * K + c0) = make_uint4(p[0], p[1], p[2], p[3]);
  } else {
    for (int e = 0; e < 8 && c0 + e < K; e++) out[n * K + c0 + e] = (uint16_t)(p[e / 2] >> (16 * (e & 1)));
  }
}

}  // namespace qzo
