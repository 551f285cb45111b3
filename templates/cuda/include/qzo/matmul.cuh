#pragma once
// matmul, the host-side dispatch of one matmul (plain or GLU): small.cuh for M <= SMALL_M, the tiles
// (launch_tiles.cuh) otherwise.
#include "readers.cuh"
#include "tiles.cuh"
#include "launch_tiles.cuh"
#include "small.cuh"

namespace qzo {

// Host-side dispatch of one matmul (plain, GLU): the small path for M <= SMALL_M, tiles otherwise.
// Returns 1 when a device buffer could not be allocated (last_error says so).
template <class R1, class R2, bool GLU, int ACT, bool BIAS, bool RES>
static int matmul(cudaStream_t st, const float* x, int64_t M, WArg w1, WArg w2, const float* bias, const float* res, float* y) {
  if (M <= 0) return 0;
  if (M <= SMALL_M) {
    if constexpr (R1::NMAJOR) {
      mm_small_cols<R1, R2, GLU, ACT, BIAS, RES><<<(unsigned)((R1::ROWS + 31) / 32), 256, 0, st>>>(x, M, w1, w2, bias, res, y);
    } else {
      const unsigned blocks = (unsigned)((R1::ROWS + 4 * NR - 1) / (4 * NR));
      mm_small<R1, R2, GLU, ACT, BIAS, RES><<<blocks, 128, 0, st>>>(x, M, w1, w2, bias, res, y);
    }
  } else {
    return launch_tiles<R1, R2, GLU, ACT, BIAS, RES, false>(st, x, M, w1, w2, bias, res, y, CeArgs{});
  }
  return 0;
}

}  // namespace qzo
