#pragma once
// The weight-reader contract (WArg and the R:: members every generated reader provides) and RdF32,
// the reader of a float weight.
#include "common.cuh"

namespace qzo {

// ---------------------------------------------------------------------------------------------
// Weight operands. A reader R (generated per format and shape, see the gen namespace) says:
//   R::ROWS, R::COLS      the [out, in] shape (N, K of the matmul)
//   R::NMAJOR             codes of adjacent output rows are adjacent in memory (GPTQ qweight)
//   R::DIRECT16           `codes` already holds the 16-bit operand values, row-major [ROWS, COLS]
//   R::SPLIT, R::KB       SPLIT: the scale is constant over aligned runs of KB (a multiple of 16)
//                         input columns, so the kernels multiply exact code values v and apply
//                         the fp32 scale (and min) after each 16-wide partial dot product
//   R::value(w, n, c)     v = code value (offset, lookup table, minus zero-point)      [SPLIT]
//   R::sidx(n, c)         index of the scale of element (n, c)                          [SPLIT]
//   R::full(w, n, c)      the dequantized weight s*v (+ min)                             [always]
// The scale arrays the kernels read are already perturbed (perturb_kernel, once per scale per call).
// ---------------------------------------------------------------------------------------------
struct WArg {
  const uint8_t* codes;
  const float* scales;
  const float* mins;
  const float* zeros;
  const float* books;  // additive codebooks (fp32 [M, entries, V]) of this weight, else null
};

// A float weight (unquantized parameter, or a format's float fallback): data in `codes`.
template <int64_t ROWS_, int64_t COLS_>
struct RdF32 {
  static constexpr int64_t ROWS = ROWS_, COLS = COLS_;
  static constexpr bool SPLIT = false, HAS_MIN = false, NMAJOR = false, DIRECT16 = false;
  static constexpr int KB = 16;
  __device__ static __forceinline__ int64_t sidx(int64_t, int64_t) { return 0; }
  __device__ static __forceinline__ float value(const WArg& w, int64_t n, int64_t c) { return __ldg((const float*)w.codes + n * COLS + c); }
  __device__ static __forceinline__ float full(const WArg& w, int64_t n, int64_t c) { return __ldg((const float*)w.codes + n * COLS + c); }
};

}  // namespace qzo
