/**
 * The AQLM quantizer, checked against references computed here: the dequantization formula evaluated
 * by hand, an f16-exactness test written independently of src/util/float-bits.ts, the error recomputed
 * from the returned codes, and two baselines (greedy k-means without refinement, per-row 2-bit RTN).
 */
import { describe, expect, it } from "vitest";
import { type AqlmOptions, type AqlmResult, dequantizeAqlm, quantizeAqlm } from "../../src/runtime/quant/aqlm-quantize.js";
import { QzoError } from "../../src/util/errors.js";

const f = Math.fround;

/** xorshift32, uniform in (0, 1]; deliberately not the quantizer's own generator. */
function uniform(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 1) / 4294967296;
  };
}

/** Seeded standard normal float32 values by Box-Muller. */
function gaussian(seed: number, n: number): Float32Array {
  const u = uniform(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/** Whether x is exactly an IEEE binary16 value: at most 11 significant bits, exponent >= -24, |x| <= 65504. */
function isF16(x: number): boolean {
  if (x === 0) return true;
  const a = Math.abs(x);
  if (!Number.isFinite(a) || a > 65504) return false;
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  // Normal f16 values have a 10-bit fraction after the leading 1; subnormals are multiples of 2^-24.
  return Number.isInteger(a * 2 ** (10 - Math.max(e, -14)));
}

function sqError(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

function sqNorm(a: Float32Array): number {
  let s = 0;
  for (const x of a) s += x * x;
  return s;
}

/** Per-row asymmetric min-max uniform quantization with 2^bits levels (no clipping search). */
function rtnError(w: Float32Array, rows: number, cols: number, bits: number): number {
  const top = 2 ** bits - 1;
  let err = 0;
  for (let r = 0; r < rows; r++) {
    const row = w.subarray(r * cols, (r + 1) * cols);
    let lo = Infinity;
    let hi = -Infinity;
    for (const x of row) {
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
    const d = (hi - lo) / top;
    for (const x of row) {
      const q = d > 0 ? Math.min(top, Math.max(0, Math.round((x - lo) / d))) : 0;
      err += (x - (lo + q * d)) ** 2;
    }
  }
  return err / sqNorm(w);
}

function expectQzoError(fn: () => unknown, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(QzoError);
  expect((caught as Error).message).toMatch(pattern);
}

describe("dequantizeAqlm", () => {
  it("follows W[r, g*V + j] = scales[r] * sum_m codebooks[m, codes[r, g, m], j]", () => {
    const rows = 2;
    const cols = 16;
    const o = { codebooks: 2, bits: 2, groupSize: 8 };
    // Entry e of codebook m: value (m*4 + e) / 8 - j / 16 at position j, all f16-exact.
    const codebooks = new Float32Array(2 * 4 * 8);
    for (let m = 0; m < 2; m++) for (let e = 0; e < 4; e++) for (let j = 0; j < 8; j++) codebooks[(m * 4 + e) * 8 + j] = (m * 4 + e) / 8 - j / 16;
    const codes = Uint8Array.from([3, 0, 1, 2, 0, 3, 2, 1]); // [r][g][m]
    const scales = Float32Array.from([0.5, -1.25]);
    const out = dequantizeAqlm({ codes, codebooks, scales }, rows, cols, o);
    expect(out.length).toBe(32);
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < 2; g++) {
        for (let j = 0; j < 8; j++) {
          const c0 = codes[(r * 2 + g) * 2]!;
          const c1 = codes[(r * 2 + g) * 2 + 1]!;
          const want = f(f(codebooks[c0 * 8 + j]! + codebooks[(4 + c1) * 8 + j]!) * scales[r]!);
          expect(out[r * cols + g * 8 + j]).toBe(want);
        }
      }
    }
    // By hand: row 0, group 0 uses entry 3 of codebook 0 and entry 0 of codebook 1:
    // j = 0: (3/8 + 4/8) * 0.5 = 0.4375; j = 7: (3/8 - 7/16 + 4/8 - 7/16) * 0.5 = 0.
    expect(out[0]).toBe(0.4375);
    expect(out[7]).toBe(0);
    // Row 1, group 1 uses entries 2 and 1: j = 2: (2/8 - 2/16 + 5/8 - 2/16) * -1.25 = -0.78125.
    expect(out[16 + 8 + 2]).toBe(-0.78125);
  });

  it("accumulates the codebook sum in float32, in order m = 0..M-1", () => {
    // 1 + 2^-24 rounds to 1 in float32 (a tie, to even), so ((1 + 2^-24) + 2^-24) = 1, whereas the
    // sum in float64 or in the other order is 1 + 2^-23.
    const o = { codebooks: 3, bits: 1, groupSize: 1 };
    const codebooks = Float32Array.from([1, 0, 2 ** -24, 0, 2 ** -24, 0]);
    const out = dequantizeAqlm({ codes: Uint8Array.from([0, 0, 0]), codebooks, scales: Float32Array.from([1]) }, 1, 1, o);
    expect(out[0]).toBe(1);
    // The scale multiplies the rounded sum and the product is rounded to float32 too.
    const scaled = dequantizeAqlm({ codes: Uint8Array.from([0, 1, 1]), codebooks: Float32Array.from([1 + 2 ** -10, 0, 0, 0, 0, 0]), scales: Float32Array.from([1 + 2 ** -20]) }, 1, 1, o);
    expect(scaled[0]).toBe(f((1 + 2 ** -10) * (1 + 2 ** -20)));
  });
});

describe("quantizeAqlm", () => {
  const configs: Array<{ rows: number; cols: number; o: AqlmOptions }> = [
    { rows: 64, cols: 64, o: { codebooks: 2, bits: 8, groupSize: 8, seed: 1 } },
    { rows: 48, cols: 32, o: { codebooks: 3, bits: 4, groupSize: 4, seed: 7, rounds: 2 } },
    { rows: 40, cols: 24, o: { codebooks: 1, bits: 5, groupSize: 2, seed: 3, kmeansIters: 3 } },
  ];

  for (const { rows, cols, o } of configs) {
    it(`returns a consistent, f16-exact quantization (${rows}x${cols}, M ${o.codebooks}, ${o.bits} bits, V ${o.groupSize})`, () => {
      const w = gaussian(rows * 1000 + cols, rows * cols);
      const q = quantizeAqlm(w, rows, cols, o);
      const k = 2 ** o.bits;
      expect(q.codes.length).toBe((rows * cols * o.codebooks) / o.groupSize);
      expect(q.codebooks.length).toBe(o.codebooks * k * o.groupSize);
      expect(q.scales.length).toBe(rows);
      for (const c of q.codes) expect(c).toBeLessThan(k);
      for (const x of q.codebooks) expect(isF16(x)).toBe(true);
      for (const s of q.scales) {
        expect(isF16(s)).toBe(true);
        expect(s).toBeGreaterThan(0);
      }
      const recomputed = sqError(w, dequantizeAqlm(q, rows, cols, o)) / sqNorm(w);
      expect(Math.abs(q.relativeError - recomputed)).toBeLessThanOrEqual(1e-9 * recomputed);
      expect(q.relativeError).toBeGreaterThan(0);
      expect(q.relativeError).toBeLessThan(1);
    });
  }

  it("is deterministic from the seed", () => {
    const rows = 64;
    const cols = 32;
    const w = gaussian(11, rows * cols);
    const o = { codebooks: 2, bits: 6, groupSize: 8, seed: 5 };
    const a = quantizeAqlm(w, rows, cols, o);
    const b = quantizeAqlm(w, rows, cols, o);
    expect(b.codes).toEqual(a.codes);
    expect(b.codebooks).toEqual(a.codebooks);
    expect(b.scales).toEqual(a.scales);
    expect(b.relativeError).toBe(a.relativeError);
    const c = quantizeAqlm(w, rows, cols, { ...o, seed: 6 });
    expect(c.codebooks).not.toEqual(a.codebooks);
  });

  it("beats greedy k-means without refinement and 2-bit RTN on a Gaussian 256x128 matrix", () => {
    const rows = 256;
    const cols = 128;
    const w = gaussian(2024, rows * cols);
    const o = { codebooks: 2, bits: 8, groupSize: 8, seed: 1 };
    const refined = quantizeAqlm(w, rows, cols, o).relativeError;
    const greedy = quantizeAqlm(w, rows, cols, { ...o, rounds: 0 }).relativeError;
    const rtn = rtnError(w, rows, cols, 2);
    // Measured: refined 0.0648, greedy 0.0705, RTN 0.253. The refinement rounds are block coordinate
    // descent from the greedy result on the same objective, so they can only lower the error; 3%
    // leaves room for other seeds while still requiring a real gain (measured 8%).
    expect(refined).toBeLessThan(0.97 * greedy);
    // 2x8 with V = 8 is 2 bits per weight, like 2-bit RTN. Min-max RTN with 4 levels over ~+-2.6
    // sigma has a step of ~1.7 sigma, hence an error near step^2 / 12 ~ 0.25; the rate-distortion
    // bound of a Gaussian at 2 bits is 2^-4 = 0.0625, which a 2x8 vector quantizer nearly reaches (its
    // codebooks are fit to this very matrix). At least 3x lower holds with a wide margin (measured 3.9x).
    expect(refined).toBeLessThan(rtn / 3);
    expect(greedy).toBeLessThan(rtn / 2);
  });

  it("reconstructs an exactly representable matrix", () => {
    const rows = 64;
    const cols = 64;
    const o = { codebooks: 1, bits: 2, groupSize: 8, seed: 9 };
    const u = uniform(77);
    // Four f16 entries (multiples of 1/16 in [-2, 2)) and f16 scales (11 significant bits).
    const cb = new Float32Array(4 * 8);
    for (let i = 0; i < cb.length; i++) cb[i] = Math.floor(u() * 64 - 32) / 16;
    const scales = new Float32Array(rows);
    for (let r = 0; r < rows; r++) scales[r] = (1024 + Math.floor(u() * 1024)) * 2 ** (-14 - Math.floor(u() * 4));
    // Every row uses each of the 4 entries twice (a shuffled 0,1,2,3,0,1,2,3), so every entry is used
    // 128 times and every row has the same RMS up to its scale: the rows normalised by their
    // f16-rounded RMS then differ from the true entries only by a common per-row factor, which the
    // least-squares scale step takes out.
    const codes = new Uint8Array(rows * 8);
    for (let r = 0; r < rows; r++) {
      const perm = [0, 1, 2, 3, 0, 1, 2, 3];
      for (let i = perm.length - 1; i > 0; i--) {
        const j = Math.floor(u() * (i + 1)) % (i + 1);
        [perm[i], perm[j]] = [perm[j]!, perm[i]!];
      }
      for (let g = 0; g < 8; g++) codes[r * 8 + g] = perm[g]!;
    }
    const w = dequantizeAqlm({ codes, codebooks: cb, scales }, rows, cols, o);
    const q = quantizeAqlm(w, rows, cols, o);
    expect(q.relativeError).toBeLessThan(1e-6);
    expect(sqError(w, dequantizeAqlm(q, rows, cols, o)) / sqNorm(w)).toBeLessThan(1e-6);
  });

  it("handles fewer groups than codebook entries, and zero rows", () => {
    const one = Float32Array.from([0.5, -1, 2, 0.25, 3, -0.125, 1.5, 0.75]);
    const q1 = quantizeAqlm(one, 1, 8, { codebooks: 2, bits: 8, groupSize: 8, seed: 1 });
    expect(q1.relativeError).toBeLessThan(1e-6);

    const zero = quantizeAqlm(new Float32Array(4 * 16), 4, 16, { codebooks: 2, bits: 3, groupSize: 4, seed: 1 });
    expect(zero.relativeError).toBe(0);
    for (const s of zero.scales) expect(s).toBeGreaterThan(0);

    const w = gaussian(5, 16 * 32);
    w.fill(0, 3 * 32, 4 * 32);
    const q = quantizeAqlm(w, 16, 32, { codebooks: 2, bits: 4, groupSize: 4, seed: 2 });
    expect(q.scales[3]!).toBeGreaterThan(0);
    expect(isF16(q.scales[3]!)).toBe(true);
    const back = dequantizeAqlm(q, 16, 32, { codebooks: 2, bits: 4, groupSize: 4 });
    // The zero row decodes to (nearly) zero: its scale is the smallest f16 rather than anything that
    // would let codebook values through.
    for (let c = 0; c < 32; c++) expect(Math.abs(back[3 * 32 + c]!)).toBeLessThan(1e-5);
  });

  it("refuses bad input with a QzoError naming the problem", () => {
    const o = { codebooks: 2, bits: 4, groupSize: 8, seed: 1 };
    const w = gaussian(1, 4 * 16);
    expectQzoError(() => quantizeAqlm(w.subarray(0, 4 * 12), 4, 12, o), /cols 12 is not a multiple of the group size 8/);
    expectQzoError(() => quantizeAqlm(new Float32Array(0), 0, 16, o), /rows must be an integer >= 1, got 0/);
    expectQzoError(() => quantizeAqlm(new Float32Array(0), 4, 0, o), /cols must be an integer >= 1, got 0/);
    expectQzoError(() => quantizeAqlm(w, 4, 8, o), /weight array has 64 values, expected rows \* cols = 4 \* 8 = 32/);
    expectQzoError(() => quantizeAqlm(w, 4, 16, { ...o, bits: 0 }), /bits .* must be an integer in 1\.\.8, got 0/);
    expectQzoError(() => quantizeAqlm(w, 4, 16, { ...o, bits: 9 }), /bits .* must be an integer in 1\.\.8, got 9/);
    expectQzoError(() => quantizeAqlm(w, 4, 16, { ...o, bits: 2.5 }), /bits .* must be an integer in 1\.\.8, got 2\.5/);
    expectQzoError(() => quantizeAqlm(w, 4, 16, { ...o, codebooks: 0 }), /codebooks \(M\) must be an integer >= 1, got 0/);
    expectQzoError(() => quantizeAqlm(w, 4, 16, { ...o, groupSize: 0 }), /groupSize \(V\) must be an integer >= 1, got 0/);
    expectQzoError(() => quantizeAqlm(w, 4, 16, { ...o, rounds: -1 }), /rounds must be an integer >= 0, got -1/);
    expectQzoError(() => quantizeAqlm(w, 4, 16, { ...o, seed: 0.5 }), /seed must be an integer/);
    const bad = Float32Array.from(w);
    bad[37] = NaN;
    expectQzoError(() => quantizeAqlm(bad, 4, 16, o), /weight 37 \(row 2, column 5\) is NaN/);
    bad[37] = 0;
    bad[3] = -Infinity;
    expectQzoError(() => quantizeAqlm(bad, 4, 16, o), /weight 3 \(row 0, column 3\) is -Infinity/);

    const q: Pick<AqlmResult, "codes" | "codebooks" | "scales"> = quantizeAqlm(w, 4, 16, o);
    expectQzoError(() => dequantizeAqlm(q, 4, 16, { ...o, bits: 3 }), /codebooks has 256 values, expected M \* 2\^bits \* V = 128/);
    expectQzoError(() => dequantizeAqlm({ ...q, scales: new Float32Array(3) }, 4, 16, o), /scales has 3 values, expected one per row \(4\)/);
    expectQzoError(() => dequantizeAqlm({ ...q, codes: new Uint8Array(3) }, 4, 16, o), /codes has 3 entries, expected/);
    const outOfRange = Uint8Array.from(q.codes);
    outOfRange[5] = 16;
    expectQzoError(() => dequantizeAqlm({ ...q, codes: outOfRange }, 4, 16, o), /code 5 is 16, out of range for 4-bit codebooks of 16 entries/);
  });
});
