/**
 * Format readers as data (src/compiler/codegen/readers.ts), held to the reference codec: for every
 * declared format (shipped and fixture-only) and several shapes, evaluating a reader's expressions
 * element by element over the packed storage, with the same float arithmetic the generated C++
 * performs, gives exactly the codec's dequantized weights. The kernels print these expressions as
 * they are, so a wrong code position, bit offset, scale index or value formula would show here.
 */
import { describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import { readerOf, type ReaderIR } from "../../src/compiler/codegen/readers.js";
import { evalIntExpr } from "../../src/compiler/ir/int-expr.js";
import type { FormatIR } from "../../src/compiler/ir/ir.js";
import { dequantize, pack, unpack, unpackRaw } from "../../src/runtime/quant/codec.js";
import { quantizeRTN } from "../../src/runtime/quant/quantize.js";
import type { PackedTensor } from "../../src/runtime/quant/types.js";
import { roundToDType } from "../../src/util/float-bits.js";
import { rng } from "../support/random-model.js";

const root = new URL("../../", import.meta.url).pathname;
const FILES = ["models/formats/gguf.qzo", "models/formats/gptq.qzo", "models/formats/nf4.qzo", "test/fixtures/formats/q5_sym.qzo", "test/fixtures/formats/layouts.qzo"];
const formats: FormatIR[] = FILES.flatMap((f) => {
  const r = checkFile(`${root}${f}`);
  expect(r.diagnostics).toEqual([]);
  return r.formats;
});

/** `width` bits at bit `bit` of a little-endian bit stream (qzo::read_bits). */
function readBits(base: Uint8Array, byte: number, bit: number, width: number): number {
  let v = 0n;
  const start = byte * 8 + bit;
  for (let k = 0; k < width; k++) {
    const p = start + k;
    v |= BigInt((base[p >> 3]! >> (p & 7)) & 1) << BigInt(k);
  }
  return Number(v);
}

/** Row n of the weight as the generated reader computes it (float32 products, as in C). */
function readRow(r: ReaderIR, f: FormatIR, p: PackedTensor, n: number): Float32Array {
  const raw = unpackRaw(p);
  const codes = f.layout.kind === "record" ? p.storage["blocks"]! : p.storage[f.layout.fields.find((x) => x.field === "code")!.tensor]!;
  const out = new Float32Array(r.cols);
  for (let c = 0; c < r.cols; c++) {
    const env = { n, c };
    const si = evalIntExpr(r.scaleIndex, env);
    const q = readBits(codes, evalIntExpr(r.codeByte, env), evalIntExpr(r.codeBit, env), r.bits);
    let v: number;
    if (r.value.kind === "table") v = Math.fround(r.value.values[q]!);
    else if (r.value.kind === "additive") throw new Error("additive readers are checked on their own");
    else v = (r.value.signed && q >= 2 ** (r.bits - 1) ? q - 2 ** r.bits : q) - r.value.offset;
    if (r.zero) v = Math.fround(v - (raw.zeros![si]! + f.zero!.adjust));
    const s = raw.scales[si]!;
    out[c] = r.min ? Math.fround(s * v + raw.mins![si]!) : Math.fround(s * v);
  }
  return out;
}

/** Shapes [rows, cols] that the format's blocks divide. */
function shapes(f: FormatIR): [number, number][] {
  const b = Math.max(1, f.block.size);
  // Rows a multiple of 8 (zero-points packed along the rows), columns of whole blocks and words.
  const along = (k: number): [number, number] => (f.block.axis === "in" ? [8 * (k + 1), 128 * (k + 1)] : [b * (k + 1), 8 * (k + 1)]);
  return [along(0), along(1), along(2)];
}

describe("format readers as data agree with the codec", () => {
  it.each(formats.filter((f) => !f.codebooks.some((c) => c.additive)).map((f) => [f.name, f] as const))("%s", (_name, f) => {
    for (const [rows, cols] of shapes(f)) {
      const r = rng(rows * 1000 + cols);
      const w = Float32Array.from({ length: rows * cols }, () => (r() - 0.5) * 2);
      const packed = quantizeRTN(f, rows, cols, w);
      const want = dequantize(unpack(packed));
      const reader = readerOf(f, rows, cols);
      expect(reader.name).toBe(`rd_${f.name}_${rows}x${cols}`);
      for (let n = 0; n < rows; n++) {
        expect(Array.from(readRow(reader, f, packed, n)), `${f.name} [${rows}, ${cols}] row ${n}`).toEqual(Array.from(want.subarray(n * cols, (n + 1) * cols)));
      }
    }
  });

  it("aqlm_2x8: the additive reader (M codes per element, the weight's own codebooks) agrees with the codec", () => {
    const aqlm = checkFile(`${root}models/formats/aqlm.qzo`).formats.find((f) => f.name === "aqlm_2x8")!;
    const [rows, cols] = [8, 64];
    const r = rng(9);
    const books = Float32Array.from({ length: 2 * 256 * 8 }, () => Math.fround((2 * r() - 1) * 0.5));
    const raw = { codes: new Int32Array(rows * cols * 2), scales: Float32Array.from({ length: rows }, () => Math.fround(0.5 + r())), codebooks: books };
    // One code per table and group of 8 columns; the raw form repeats it for each column.
    for (let j = 0; j < rows * cols; j++) for (let m = 0; m < 2; m++) raw.codes[j * 2 + m] = j % 8 === 0 ? Math.floor(r() * 256) : raw.codes[(j - (j % 8)) * 2 + m]!;
    const packed = pack(aqlm, rows, cols, { ...raw, codebooks: Float32Array.from(books, (v) => roundToDType("f16", v)) });
    const want = dequantize(unpack(packed));
    const reader = readerOf(aqlm, rows, cols);
    expect(reader.value).toEqual({ kind: "additive", books: 2, entries: 256, size: 8 });
    const stored = unpackRaw(packed).codebooks!;
    for (let n = 0; n < rows; n++) {
      for (let c = 0; c < cols; c++) {
        let v = 0;
        for (let m = 0; m < 2; m++) {
          const env = { n, c, m };
          const q = readBits(packed.storage["codes"]!, evalIntExpr(reader.codeByte, env), evalIntExpr(reader.codeBit, env), reader.bits);
          v = Math.fround(v + stored[(m * 256 + q) * 8 + (c % 8)]!);
        }
        expect(Math.fround(unpackRaw(packed).scales[evalIntExpr(reader.scaleIndex, { n, c })]! * v), `(${n}, ${c})`).toBe(want[n * cols + c]);
      }
    }
  });
});
