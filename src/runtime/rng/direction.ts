/**
 * THE random-direction contract. Every backend (this TypeScript reference, the CPU C++ kernels, the
 * CUDA kernels) must produce the same z for the same (seed, tensor, index). Keep it this simple.
 *
 * Generator: Philox4x32-10 (see philox.ts), written philox(counter = [c0, c1, c2, c3], key = [k0, k1])
 * -> (x0, x1, x2, x3), all u32.
 *
 * 1. Per-step seed. A run has a u64 runSeed; step s (0 <= s < 2^53) uses
 *        (x0, x1, _, _) = philox([s mod 2^32, floor(s / 2^32), 0, 0], [runSeed mod 2^32, floor(runSeed / 2^32)])
 *        seed = x1 * 2^32 + x0            (seedLo = x0, seedHi = x1)
 *
 * 2. Direction element. For trainable tensor number t (0-based, in manifest order, 0 <= t < 2^32) and flat
 *    row-major element index i (0 <= i < 2^53) of that tensor:
 *        (x0, x1, x2, x3) = philox([i mod 2^32, floor(i / 2^32), t, 0x5A5A0001], [seedLo, seedHi])
 *    - gaussian:   u1 = (x0 + 1) * 2^-32         in (0, 1]   (exact in float64)
 *                  u2 = x1 * 2^-32               in [0, 1)   (exact in float64)
 *                  z  = float32( sqrt(-2 * ln(u1)) * cos(TWO_PI * u2) )
 *                  evaluated in IEEE float64, left to right as written, with TWO_PI the float64 constant
 *                  6.283185307179586 (= 2 * Math.PI); the product is rounded to float32 once, at the end
 *                  (round to nearest even). x2 and x3 are unused.
 *                  u1 = 1 gives z = +0 (or -0); |z| <= sqrt(2 * 32 * ln 2) ~ 6.66, never inf or NaN.
 *                  In C/C++/CUDA compute x0 + 1 in double ((double)x0 + 1.0), NOT in uint32 (it would wrap
 *                  to 0 for x0 = 0xFFFFFFFF and give ln 0), and use the double log/cos/sqrt.
 *    - rademacher: z = x0 < 2^31 ? +1 : -1       (the top bit of x0 is the sign)
 *
 * Exactness: the Philox words and the rademacher values are bit-exact everywhere. The gaussian value
 * depends on libm's log/cos/sqrt; with correctly rounded or <= 1-ulp float64 libms the final float32
 * agrees except in the rare case where the float64 value lies within an ulp of a float32 rounding
 * boundary, so cross-backend tests compare gaussian z within 1 float32 ulp (they agree exactly in the
 * vast majority of elements). Backends must not use fast-math approximations (__logf, __cosf, sincospif
 * in float32, etc.).
 *
 * The constant 0x5A5A0001 in c3 separates direction streams from the step-seed stream (c3 = 0) and leaves
 * room for other streams (0x5A5A0002, ...) later.
 */

import { philox4x32 } from "./philox.js";

export type ZDistribution = "gaussian" | "rademacher";

/** Counter word c3 used by the direction stream. */
export const DIRECTION_STREAM = 0x5a5a0001;
/** float64 2*pi, as used by the gaussian mapping. */
export const TWO_PI = 6.283185307179586;
const TWO_POW_M32 = 2.3283064365386963e-10; // 2^-32
const TWO_POW_32 = 4294967296;
const MAX_INDEX = 2 ** 53;

const scratch = new Uint32Array(4);

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError(`${name} must be an integer in [0, 2^32), got ${v}`);
  }
}

function checkIndex(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= MAX_INDEX) {
    throw new RangeError(`${name} must be an integer in [0, 2^53), got ${v}`);
  }
}

/** The per-step seed as a (lo, hi) pair of u32. */
export function stepSeedPair(runSeed: bigint, step: number): { lo: number; hi: number } {
  if (runSeed < 0n || runSeed >= 1n << 64n) {
    throw new RangeError(`runSeed must be a u64, got ${runSeed}`);
  }
  checkIndex("step", step);
  const k0 = Number(runSeed & 0xffffffffn);
  const k1 = Number(runSeed >> 32n);
  philox4x32(step >>> 0, Math.floor(step / TWO_POW_32), 0, 0, k0, k1, scratch);
  return { lo: scratch[0]!, hi: scratch[1]! };
}

/** The per-step seed as a u64 bigint: (x1 << 32) | x0. */
export function stepSeed(runSeed: bigint, step: number): bigint {
  const { lo, hi } = stepSeedPair(runSeed, step);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** Splits a u64 seed into its (lo, hi) u32 words. */
export function splitSeed(seed: bigint): { lo: number; hi: number } {
  if (seed < 0n || seed >= 1n << 64n) throw new RangeError(`seed must be a u64, got ${seed}`);
  return { lo: Number(seed & 0xffffffffn), hi: Number(seed >> 32n) };
}

/**
 * 3. Tensor period (block-coordinate directions). With period P >= 1, the direction of a step seed
 *    moves only the trainable tensors t with (t + seedLo mod P) mod P = 0, one in every P from an
 *    offset the seed picks; the others have z = 0 (they are not perturbed, and the update leaves
 *    them). P = 1: every tensor. Exact integer arithmetic on every backend.
 */
export function tensorInDirection(seedLo: number, t: number, period: number): boolean {
  return period <= 1 || (t + (seedLo % period)) % period === 0;
}

/** Gaussian z from the first two Philox words (x0, x1), per the contract. */
export function gaussianFromWords(x0: number, x1: number): number {
  const u1 = (x0 + 1) * TWO_POW_M32;
  const u2 = x1 * TWO_POW_M32;
  return Math.fround(Math.sqrt(-2 * Math.log(u1)) * Math.cos(TWO_PI * u2));
}

/** Rademacher z from the first Philox word. */
export function rademacherFromWord(x0: number): number {
  return x0 < 0x80000000 ? 1 : -1;
}

/** z for tensor t, flat element index i, under the step seed (seedLo, seedHi). */
export function zAt(seedLo: number, seedHi: number, t: number, i: number, dist: ZDistribution): number {
  checkU32("seedLo", seedLo);
  checkU32("seedHi", seedHi);
  checkU32("t", t);
  checkIndex("i", i);
  if (dist !== "gaussian" && dist !== "rademacher") throw new RangeError(`unknown distribution ${String(dist)}`);
  philox4x32(i >>> 0, Math.floor(i / TWO_POW_32), t, DIRECTION_STREAM, seedLo, seedHi, scratch);
  return dist === "gaussian" ? gaussianFromWords(scratch[0]!, scratch[1]!) : rademacherFromWord(scratch[0]!);
}

/**
 * Fills out[j] = zAt(seedLo, seedHi, t, startIndex + j, dist) for j in [0, out.length).
 */
export function fillZ(
  out: Float32Array,
  seedLo: number,
  seedHi: number,
  t: number,
  startIndex: number,
  dist: ZDistribution,
): void {
  checkU32("seedLo", seedLo);
  checkU32("seedHi", seedHi);
  checkU32("t", t);
  checkIndex("startIndex", startIndex);
  const n = out.length;
  if (n > 0 && n - 1 > MAX_INDEX - 1 - startIndex) {
    throw new RangeError(`startIndex + out.length - 1 must be below 2^53 (startIndex ${startIndex}, length ${n})`);
  }
  const w = new Uint32Array(4);
  let lo = startIndex >>> 0;
  let hi = Math.floor(startIndex / TWO_POW_32);
  const gaussian = dist === "gaussian";
  if (!gaussian && dist !== "rademacher") throw new RangeError(`unknown distribution ${String(dist)}`);
  for (let j = 0; j < n; j++) {
    philox4x32(lo, hi, t, DIRECTION_STREAM, seedLo, seedHi, w);
    if (gaussian) {
      const u1 = (w[0]! + 1) * TWO_POW_M32;
      const u2 = w[1]! * TWO_POW_M32;
      out[j] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(TWO_PI * u2); // Float32Array store rounds once
    } else {
      out[j] = w[0]! < 0x80000000 ? 1 : -1;
    }
    lo = (lo + 1) >>> 0;
    if (lo === 0) hi++;
  }
}
