#pragma once
// Reading the codes of a packed weight: bit fields of a little-endian bit stream.
#include "common.h"

namespace qzo {

// `width` bits (<= 32) starting at bit `bit` of a little-endian bit stream.
static inline uint32_t read_bits(const uint8_t* base, int64_t bit, int width) {
  const uint8_t* p = base + (bit >> 3);
  const int shift = (int)(bit & 7);
  const int nbytes = (shift + width + 7) >> 3;
  uint64_t w = 0;
  for (int k = 0; k < nbytes; k++) w |= (uint64_t)p[k] << (8 * k);
  return (uint32_t)((w >> shift) & ((width == 32) ? 0xFFFFFFFFull : ((1ull << width) - 1)));
}

static inline int32_t sign_extend(uint32_t v, int width) {
  const uint32_t m = 1u << (width - 1);
  return (int32_t)((v ^ m) - m);
}

}  // namespace qzo
