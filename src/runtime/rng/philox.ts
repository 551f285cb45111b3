/**
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3", SC11).
 *
 * A counter-based generator: the output block is a pure function of a 128-bit counter and a 64-bit key,
 * so any thread (or CPU loop iteration) can compute the numbers for its own index with no shared state.
 *
 * One round maps (c0, c1, c2, c3) with key (k0, k1) to
 *   (hi(M1*c2) ^ c1 ^ k0,  lo(M1*c2),  hi(M0*c0) ^ c3 ^ k1,  lo(M0*c0))
 * where M0 = 0xD2511F53, M1 = 0xCD9E8D57 and hi/lo are the two halves of the exact 64-bit product.
 * Ten rounds; between consecutive rounds the key is bumped by the Weyl constants
 * (k0 += 0x9E3779B9, k1 += 0xBB67AE85, mod 2^32). This matches Random123's philox4x32 with R = 10,
 * cuRAND's Philox4_32_10 and the other common implementations.
 *
 * All arithmetic is on unsigned 32-bit values held in JS numbers. The 32x32->64 product is computed by
 * splitting both operands into 16-bit halves so that every partial product is exact in float64
 * (no BigInt, no Math.imul).
 */

export const PHILOX_M0 = 0xd2511f53;
export const PHILOX_M1 = 0xcd9e8d57;
export const PHILOX_W0 = 0x9e3779b9;
export const PHILOX_W1 = 0xbb67ae85;
export const PHILOX_ROUNDS = 10;

/**
 * Exact 64-bit product of two u32 values, written into out[0] (low word) and out[1] (high word),
 * both as u32 numbers.
 */
export function mulhilo32(a: number, b: number, out: Uint32Array | number[]): void {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const ll = al * bl; // < 2^32, exact
  const lh = al * bh;
  const hl = ah * bl;
  const hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff); // < 3 * 2^16
  out[0] = (((mid & 0xffff) << 16) | (ll & 0xffff)) >>> 0;
  out[1] = (hh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0; // < 2^32 exactly
}

/** High 32 bits of the exact product of two u32 values. */
export function mulhi32(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const ll = al * bl;
  const lh = al * bh;
  const hl = ah * bl;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (ah * bh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

/** Low 32 bits of the product of two u32 values. */
export function mullo32(a: number, b: number): number {
  const al = a & 0xffff;
  const lo = (al * (b & 0xffff)) >>> 0;
  // (a*b) mod 2^32 = al*bl + ((ah*bl + al*bh) mod 2^16) * 2^16
  const cross = ((a >>> 16) * (b & 0xffff) + al * (b >>> 16)) & 0xffff;
  return (lo + cross * 0x10000) >>> 0;
}

/**
 * Philox4x32-10 of counter (c0..c3) and key (k0, k1); writes the four u32 outputs to out[0..3]
 * (out may be a Uint32Array of length >= 4 or a plain array). All inputs are taken mod 2^32.
 */
export function philox4x32(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array | number[],
): void {
  c0 >>>= 0;
  c1 >>>= 0;
  c2 >>>= 0;
  c3 >>>= 0;
  k0 >>>= 0;
  k1 >>>= 0;
  for (let r = 0; r < PHILOX_ROUNDS; r++) {
    if (r > 0) {
      k0 = (k0 + PHILOX_W0) >>> 0;
      k1 = (k1 + PHILOX_W1) >>> 0;
    }
    // Products M0*c0 and M1*c2, inlined (16-bit halves).
    const a0l = c0 & 0xffff;
    const a0h = c0 >>> 16;
    const ll0 = a0l * 0x1f53; // M0 low half
    const lh0 = a0l * 0xd251; // M0 high half
    const hl0 = a0h * 0x1f53;
    const mid0 = (ll0 >>> 16) + (lh0 & 0xffff) + (hl0 & 0xffff);
    const lo0 = (((mid0 & 0xffff) << 16) | (ll0 & 0xffff)) >>> 0;
    const hi0 = (a0h * 0xd251 + (lh0 >>> 16) + (hl0 >>> 16) + (mid0 >>> 16)) >>> 0;

    const a2l = c2 & 0xffff;
    const a2h = c2 >>> 16;
    const ll1 = a2l * 0x8d57; // M1 low half
    const lh1 = a2l * 0xcd9e; // M1 high half
    const hl1 = a2h * 0x8d57;
    const mid1 = (ll1 >>> 16) + (lh1 & 0xffff) + (hl1 & 0xffff);
    const lo1 = (((mid1 & 0xffff) << 16) | (ll1 & 0xffff)) >>> 0;
    const hi1 = (a2h * 0xcd9e + (lh1 >>> 16) + (hl1 >>> 16) + (mid1 >>> 16)) >>> 0;

    const n0 = (hi1 ^ c1 ^ k0) >>> 0;
    const n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/** Convenience form: returns a fresh Uint32Array(4). counter and key are arrays of u32. */
export function philox4x32Block(
  counter: readonly [number, number, number, number],
  key: readonly [number, number],
): Uint32Array {
  const out = new Uint32Array(4);
  philox4x32(counter[0], counter[1], counter[2], counter[3], key[0], key[1], out);
  return out;
}
