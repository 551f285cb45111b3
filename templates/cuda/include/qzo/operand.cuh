#pragma once
// The 16-bit tensor-core operands: fp16, or bf16 under QZO_BF16 (the QZO_MMA instruction, pack2).
#include "common.cuh"

namespace qzo {

#ifdef QZO_BF16
#define QZO_MMA "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"
__device__ static __forceinline__ uint32_t pack2(float a, float b) { __nv_bfloat162 h = __floats2bfloat162_rn(a, b); return *reinterpret_cast<uint32_t*>(&h); }
#else
#define QZO_MMA "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"
__device__ static __forceinline__ uint32_t pack2(float a, float b) { __half2 h = __floats2half2_rn(a, b); return *reinterpret_cast<uint32_t*>(&h); }
#endif

}  // namespace qzo
