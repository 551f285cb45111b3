/**
 * AQLM's 2x8 format (models/formats/aqlm.qzo) in the codec, on storage built here the way AQLM's
 * Hugging Face checkpoints lay it out: codes i8 [out, in/8, 2], codebooks f16 [2, 256, 1, 8], scales
 * f16 [out, 1, 1, 1], and W[r, 8g + j] = scale[r] * (book[0, q0, j] + book[1, q1, j]).
 */
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import { dequantize, pack, unpack, unpackRaw } from "../../src/runtime/quant/codec.js";
import { f16BitsToF32Bits } from "../../src/util/float-bits.js";
import { rng } from "../support/random-model.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const aqlm = checkFile(`${ROOT}models/formats/aqlm.qzo`).formats.find((f) => f.name === "aqlm_2x8")!;
const f16 = (bits: number) => new Float32Array(new Uint32Array([f16BitsToF32Bits(bits)]).buffer)[0]!;

/** Random storage of a [rows, cols] matrix: finite f16 codebook entries in (-2, 2) and scales in (0, 0.5). */
function storage(rows: number, cols: number, seed: number) {
  const r = rng(seed);
  const codes = new Uint8Array(rows * (cols / 8) * 2).map(() => Math.floor(r() * 256));
  const half = (lo: number, hi: number) => {
    for (;;) {
      const bits = Math.floor(r() * 65536);
      const v = f16(bits);
      if (v > lo && v < hi) return bits;
    }
  };
  const books = new Uint16Array(2 * 256 * 8).map(() => half(-2, 2));
  const scales = new Uint16Array(rows).map(() => half(0, 0.5));
  return { codes, books, scales, storage: { codes, codebooks: new Uint8Array(books.buffer), scales: new Uint8Array(scales.buffer) } };
}

describe("aqlm_2x8 in the codec", () => {
  it("dequantizes as scale x the sum of one codebook vector per codebook, added in order in float32", () => {
    const rows = 6;
    const cols = 32;
    const s = storage(rows, cols, 3);
    const w = dequantize(unpack({ format: aqlm, rows, cols, storage: s.storage }));
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const g = Math.floor(c / 8);
        const q0 = s.codes[(r * (cols / 8) + g) * 2]!;
        const q1 = s.codes[(r * (cols / 8) + g) * 2 + 1]!;
        const sum = Math.fround(f16(s.books[q0 * 8 + (c % 8)]!) + f16(s.books[(256 + q1) * 8 + (c % 8)]!));
        expect(w[r * cols + c]).toBe(Math.fround(f16(s.scales[r]!) * sum));
      }
    }
  });

  it("packs back to the same bytes, codebooks included", () => {
    const s = storage(4, 16, 5);
    const raw = unpackRaw({ format: aqlm, rows: 4, cols: 16, storage: s.storage });
    expect(raw.codes).toHaveLength(4 * 16 * 2);
    const again = pack(aqlm, 4, 16, raw);
    for (const k of ["codes", "codebooks", "scales"] as const) expect(Buffer.from(again.storage[k]!).equals(Buffer.from(s.storage[k]))).toBe(true);
  });

  it("a missing or short codebook tensor is one QzoError naming it", () => {
    const s = storage(2, 8, 7);
    expect(() => unpack({ format: aqlm, rows: 2, cols: 8, storage: { codes: s.codes, scales: s.storage.scales } })).toThrow(/storage tensor 'codebooks' is missing \(expected 8192 bytes/);
    expect(() => unpack({ format: aqlm, rows: 2, cols: 8, storage: { ...s.storage, codebooks: s.storage.codebooks.subarray(2) } })).toThrow(/'codebooks' has 8190 bytes, expected 8192/);
  });
});
