/**
 * IEEE float conversions on bit patterns (float32, binary16, bfloat16), round to nearest even, NaN
 * kept a NaN: what every stage that stores or prints a float of a narrower dtype rounds with.
 */
/** The float storage types (the IR's FloatDType). */
export type FloatBits = "f32" | "f16" | "bf16";

/** float32 bit pattern (uint32) -> IEEE binary16 bit pattern, round to nearest even; NaN stays NaN. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant === 0 ? 0 : (mant >>> 13) || 0x200);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1) === 1)) q++;
    return sign | q;
  }
  let q = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (q & 1) === 1)) q++;
  return sign | q;
}

/** IEEE binary16 bit pattern -> float32 bit pattern (exact, NaN payloads kept). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  let e = 113;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

/** float32 bit pattern -> bfloat16 bit pattern, round to nearest even; NaN stays NaN. */
export function f32BitsToBf16Bits(x: number): number {
  x >>>= 0;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
    const top = x >>> 16;
    return (top & 0x7f) === 0 ? top | 0x40 : top;
  }
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Storage bits of a float dtype -> float32 bits. */
export function toF32Bits(dtype: FloatBits, bits: number): number {
  if (dtype === "f32") return bits >>> 0;
  if (dtype === "f16") return f16BitsToF32Bits(bits);
  return (bits << 16) >>> 0;
}

/** float32 bits -> storage bits of a float dtype (rounding to nearest even). */
export function fromF32Bits(dtype: FloatBits, bits: number): number {
  if (dtype === "f32") return bits >>> 0;
  if (dtype === "f16") return f32BitsToF16Bits(bits);
  return f32BitsToBf16Bits(bits);
}

const cvtU32 = new Uint32Array(1);
const cvtF32 = new Float32Array(cvtU32.buffer);

/** Rounds a number to a float dtype and returns it as a number (f32 -> fround, f16/bf16 RNE). */
export function roundToDType(dtype: FloatBits, x: number): number {
  cvtF32[0] = x;
  cvtU32[0] = toF32Bits(dtype, fromF32Bits(dtype, cvtU32[0]!));
  return cvtF32[0]!;
}

