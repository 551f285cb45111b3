/**
 * The generic codec, the index-expression evaluator and RTN quantization, checked against
 * independent references only: llama.cpp's own quantized GGUF files, the model-file readers'
 * decoder (written separately), the published GPTQ and bitsandbytes NF4 packings built by hand,
 * and values computed by hand.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import type { FormatIR } from "../../src/compiler/ir/ir.js";
import { decodeToF32, readGguf } from "../../src/runtime/model-files/index.js";
import { type RawQuant, dequantize, pack, storageBytes, unpack, unpackRaw, withScales } from "../../src/runtime/quant/codec.js";
import { f16BitsToF32Bits, f32BitsToBf16Bits, f32BitsToF16Bits } from "../../src/util/float-bits.js";
import { compileIntExpr, evalIntExpr } from "../../src/compiler/ir/int-expr.js";
import { quantizeRTN, quantizeRTNRaw, rtnRule } from "../../src/runtime/quant/quantize.js";
import { scaleCount } from "../../src/compiler/ir/queries.js";
import type { PackedTensor } from "../../src/runtime/quant/types.js";
import { QzoError } from "../../src/util/errors.js";
import { rng } from "../support/random-model.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MODELS = fileURLToPath(new URL("../../../shared/models/", import.meta.url));
const GGUF = `${MODELS}gguf/`;

function loadFormats(path: string): Map<string, FormatIR> {
  const r = checkFile(path);
  expect(r.diagnostics).toEqual([]);
  return new Map(r.formats.map((f) => [f.name, f]));
}

const formats = new Map<string, FormatIR>([
  ...loadFormats(`${ROOT}models/formats/gguf.qzo`),
  ...loadFormats(`${ROOT}models/formats/gptq.qzo`),
  ...loadFormats(`${ROOT}models/formats/nf4.qzo`),
  ...loadFormats(`${ROOT}test/fixtures/formats/q5_sym.qzo`),
  ...loadFormats(`${ROOT}test/fixtures/formats/layouts.qzo`),
]);
const fmt = (name: string): FormatIR => {
  const f = formats.get(name);
  if (!f) throw new Error(`no format ${name}`);
  return f;
};


function randomBytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

function f32(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0]!;
}

function bitsOf(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}

/** Number of positions where two equally long arrays differ (cheaper than toEqual on big arrays). */
function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let n = 0;
  for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) n++;
  return n;
}

function f16le(bits: number): [number, number] {
  return [bits & 0xff, bits >>> 8];
}

// ------------------------------------------------------------------ index expressions

describe("index expressions", () => {
  it("evaluates with C precedence and floor division/remainder", () => {
    const e = compileIntExpr("8*(i%16) + 4*(i/16) + 16", ["i"]);
    expect([0, 1, 15, 16, 17, 31].map((i) => e([i]))).toEqual([16, 24, 136, 20, 28, 140]);
    expect(evalIntExpr("2 + 3*4 - 10/3 % 2", {})).toBe(2 + 12 - (3 % 2));
    expect(evalIntExpr("-4*(c%2) + 4", { c: 3 })).toBe(0);
    expect(evalIntExpr("-4*(c%2) + 4", { c: 2 })).toBe(4);
    expect(evalIntExpr("--3 - -2", {})).toBe(5);
    expect(evalIntExpr("in*out/2", { in: 64, out: 3 })).toBe(96);
    expect(evalIntExpr("x/(2*y)", { x: 17, y: 4 })).toBe(2);
    expect(evalIntExpr("(in/64)*r + b", { in: 256, r: 3, b: 2 })).toBe(14);
    expect(evalIntExpr("-7/2", {})).toBe(-4); // floor
    expect(evalIntExpr("(0 - 7)%3", {})).toBe(2); // floor remainder
  });

  it("reads the checker's floor-division atoms with C's precedence", () => {
    // nf4.qzo writes `at [(r * in + c) / 2]`; the checker prints it as "((in*r + c)/2)".
    expect(fmt("nf4").layout.kind === "tensors" && fmt("nf4").layout.fields[0]!.at[0]).toBe("((in*r + c)/2)");
    expect(evalIntExpr("((in*r + c)/2)", { in: 128, r: 1, c: 5 })).toBe(66);
    expect(evalIntExpr("(in*r + c/2)", { in: 128, r: 1, c: 5 })).toBe(130);
    expect(evalIntExpr("3*(in*r + c%4)", { in: 10, r: 1, c: 7 })).toBe(3 * (10 + 3));
  });

  it("names the expression on an unknown variable or bad syntax", () => {
    expect(() => compileIntExpr("4*(k%8)", ["r", "c"])).toThrow(QzoError);
    expect(() => compileIntExpr("4*(k%8)", ["r", "c"])).toThrow(/'4\*\(k%8\)'.*unknown variable 'k'/);
    expect(() => compileIntExpr("(c/8", ["c"])).toThrow(/'\(c\/8'/);
    expect(() => compileIntExpr("c $ 2", ["c"])).toThrow(/unexpected '\$'/);
  });
});

// ------------------------------------------------------------------ float conversions

describe("f16 / bf16 conversions", () => {
  it("f32 -> f16 -> f32 is the identity on every f16 pattern (NaN payloads included)", () => {
    let bad = 0;
    for (let h = 0; h < 65536; h++) if (f32BitsToF16Bits(f16BitsToF32Bits(h)) !== h) bad++;
    expect(bad).toBe(0);
  });

  it("rounds to nearest even", () => {
    const h = (x: number) => f32BitsToF16Bits(bitsOf(x));
    expect(h(1)).toBe(0x3c00);
    expect(h(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(h(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(h(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
    expect(h(65504)).toBe(0x7bff);
    expect(h(65519)).toBe(0x7bff);
    expect(h(65520)).toBe(0x7c00); // tie at the top rounds to infinity
    expect(h(2 ** -24)).toBe(0x0001);
    expect(h(2 ** -25)).toBe(0x0000); // tie -> even (zero)
    expect(h(3 * 2 ** -25)).toBe(0x0002); // tie -> even (up)
    expect(h(2 ** -25 * 1.5)).toBe(0x0001);
    expect(h(-0)).toBe(0x8000);
    expect(h(-2)).toBe(0xc000);
    expect(h(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up into the normals
    expect(h(Infinity)).toBe(0x7c00);
    expect(h(NaN) & 0x7c00).toBe(0x7c00);
    expect(h(NaN) & 0x3ff).not.toBe(0);
  });

  it("bf16 rounds to nearest even", () => {
    expect(f32BitsToBf16Bits(0x3f808000)).toBe(0x3f80); // tie -> even
    expect(f32BitsToBf16Bits(0x3f818000)).toBe(0x3f82); // tie -> even (up)
    expect(f32BitsToBf16Bits(0x3f808001)).toBe(0x3f81);
    expect(f32BitsToBf16Bits(0x7f7fffff)).toBe(0x7f80);
    expect(f32BitsToBf16Bits(0x7f800001)).not.toBe(0x7f80); // NaN stays NaN
  });
});

// ------------------------------------------------------------------ llama.cpp's GGUF files

const MODELS_PRESENT = existsSync(`${GGUF}stories260K-f32.gguf`);

describe.skipIf(!MODELS_PRESENT)("llama.cpp Q8_0/Q4_0 files", () => {
  const files = ["stories260K-q8_0", "stories260K-q4_0", "babyllama-tok105-q8_0", "babyllama-tok105-q4_0"];
  const matrix = (shape: number[]): [number, number] => [shape[0]!, shape[1]!];

  it("quantizeRTN of the F32 weights reproduces llama-quantize's bytes, every block", () => {
    const tally: Record<string, { tensors: number; blocks: number; differing: number }> = {};
    for (const file of files) {
      const model = file.replace(/-q[48]_0$/, "");
      const src = readGguf(`${GGUF}${model}-f32.gguf`);
      const g = readGguf(`${GGUF}${file}.gguf`);
      for (const [name, info] of g.tensors) {
        if (info.dtype !== "Q8_0" && info.dtype !== "Q4_0") continue;
        const f = fmt(info.dtype.toLowerCase());
        const [rows, cols] = matrix(info.shape);
        const ref = g.readTensorBytes(name);
        const mine = quantizeRTN(f, rows, cols, decodeToF32(src.tensors.get(name)!)).storage.blocks!;
        expect(mine.length).toBe(ref.length);
        const bytes = f.layout.kind === "record" ? f.layout.bytes : 0;
        const t = (tally[info.dtype] ??= { tensors: 0, blocks: 0, differing: 0 });
        t.tensors++;
        for (let b = 0; b < ref.length / bytes; b++) {
          t.blocks++;
          for (let k = 0; k < bytes; k++) {
            if (mine[b * bytes + k] !== ref[b * bytes + k]) {
              t.differing++;
              break;
            }
          }
        }
      }
    }
    // Every Q8_0 and Q4_0 tensor of the four files (ffn_down of stories260K stays F16 and is not counted).
    expect(tally).toEqual({
      Q8_0: { tensors: 71, blocks: 38492, differing: 0 },
      Q4_0: { tensors: 67, blocks: 35604, differing: 0 },
    });
  });

  it("unpack + dequantize equals the readers' decodeToF32 bit for bit, and pack(unpackRaw) restores the bytes", () => {
    let tensors = 0;
    for (const file of files) {
      const g = readGguf(`${GGUF}${file}.gguf`);
      for (const [name, info] of g.tensors) {
        if (info.dtype !== "Q8_0" && info.dtype !== "Q4_0") continue;
        const f = fmt(info.dtype.toLowerCase());
        const [rows, cols] = matrix(info.shape);
        const bytes = g.readTensorBytes(name);
        const p: PackedTensor = { format: f, rows, cols, storage: { blocks: bytes } };
        const mine = dequantize(unpack(p));
        const ref = decodeToF32(info);
        expect(differing(new Uint32Array(mine.buffer), new Uint32Array(ref.buffer))).toBe(0);
        expect(differing(pack(f, rows, cols, unpackRaw(p)).storage.blocks!, bytes)).toBe(0);
        tensors++;
      }
    }
    expect(tensors).toBeGreaterThan(100);
  });

  it("keeps llama.cpp's negative Q4_0 scales (3214 of the 7408 scales of stories260K-q4_0.gguf)", () => {
    const g = readGguf(`${GGUF}stories260K-q4_0.gguf`);
    let neg = 0;
    let all = 0;
    for (const [name, info] of g.tensors) {
      if (info.dtype !== "Q8_0" && info.dtype !== "Q4_0") continue;
      const [rows, cols] = matrix(info.shape);
      const u = unpack({ format: fmt(info.dtype.toLowerCase()), rows, cols, storage: { blocks: g.readTensorBytes(name) } });
      for (const s of u.scales) {
        all++;
        if (s < 0) neg++;
      }
    }
    expect([neg, all]).toEqual([3214, 7408]);
  });
});

// ------------------------------------------------------------------ llama.cpp rules on hand-made blocks

describe("RTN rules of the GGUF formats (llama.cpp's reference quantizers)", () => {
  it("picks the rule by the format's properties", () => {
    expect(["q8_0", "q4_0", "q4_1", "gptq_int4", "nf4", "q5_sym", "i8_row", "u8_out", "u3_zero"].map((n) => rtnRule(fmt(n)))).toEqual([
      "symmetric", "signed-max", "min", "zero", "lookup", "symmetric", "symmetric", "min", "zero",
    ]);
  });

  it("Q8_0: d = amax/127, q = roundf(x/d), ties away from zero", () => {
    const x = new Float32Array(32);
    x[0] = -127;
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = 0.5;
    x[4] = 126.49;
    const raw = quantizeRTNRaw(fmt("q8_0"), 1, 32, x);
    expect(raw.scales[0]).toBe(1);
    expect(Array.from(raw.codes.slice(0, 6))).toEqual([-127, 3, -3, 1, 126, 0]);
    const bytes = quantizeRTN(fmt("q8_0"), 1, 32, x).storage.blocks!;
    expect(Array.from(bytes.slice(0, 6))).toEqual([0x00, 0x3c, 0x81, 3, 0xfd, 1]);
  });

  it("Q4_0: d = (signed value of largest magnitude) / -8, q = min(15, trunc(x/d + 8.5))", () => {
    const x = Float32Array.from({ length: 32 }, (_, j) => (j < 16 ? j - 8 : 0));
    x[16] = 4; // |-8| at j=0 is the largest: max = -8, d = 1
    const raw = quantizeRTNRaw(fmt("q4_0"), 1, 32, x);
    expect(raw.scales[0]).toBe(1);
    expect(Array.from(raw.codes.slice(0, 17))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 12]);
    // The largest magnitude positive: d < 0, and +max lands on code 0 (value -8).
    const y = Float32Array.from({ length: 32 }, (_, j) => (j === 3 ? 16 : j === 4 ? -14 : 0));
    const r2 = quantizeRTNRaw(fmt("q4_0"), 1, 32, y);
    expect(r2.scales[0]).toBe(-2);
    expect([r2.codes[3], r2.codes[4], r2.codes[0]]).toEqual([0, 15, 8]); // -14/-2 + 8.5 = 15.5 -> 15
    // A tie in magnitude: the first one wins.
    const z = new Float32Array(32);
    z[5] = 3;
    z[6] = -3;
    expect(quantizeRTNRaw(fmt("q4_0"), 1, 32, z).scales[0]).toBe(-0.375);
    // All zero: d = 0, id = 0, every code 8.
    const zero = quantizeRTNRaw(fmt("q4_0"), 1, 32, new Float32Array(32));
    expect([zero.scales[0], ...new Set(zero.codes)]).toEqual([-0, 8]); // 0 / -8 is -0, as in C
    expect(Array.from(quantizeRTN(fmt("q4_0"), 1, 32, new Float32Array(32)).storage.blocks!.slice(0, 3))).toEqual([0x00, 0x80, 0x88]);
  });

  it("Q4_1: d = (max - min)/15, m = min, q = min(15, trunc((x - min)/d + 0.5))", () => {
    const x = Float32Array.from({ length: 32 }, (_, j) => j + 100);
    const raw = quantizeRTNRaw(fmt("q4_1"), 1, 32, x);
    expect(raw.scales[0]).toBe(Math.fround(31 / 15));
    expect(raw.mins![0]).toBe(100);
    // round(15 j / 31), no ties for j < 31
    expect(Array.from(raw.codes)).toEqual([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15]);
    const bytes = quantizeRTN(fmt("q4_1"), 1, 32, x).storage.blocks!;
    // d = 31/15 -> f16 0x4022 (2.06640625), m = 100 -> f16 0x5640; byte 4 + j = q[j] | q[j+16] << 4
    expect(Array.from(bytes.slice(0, 6))).toEqual([0x22, 0x40, 0x40, 0x56, 0x80, 0x80]);
  });
});

// ------------------------------------------------------------------ round trips in every format

describe("pack / unpack round trips", () => {
  const names = ["q8_0", "q4_0", "q4_1", "gptq_int4", "nf4", "q5_sym", "i8_row", "u8_out", "u3_zero"];
  const rows = 16;
  const cols = 256;

  it.each(names)("%s: random storage bytes survive unpackRaw -> pack exactly", (name) => {
    const f = fmt(name);
    const sizes = storageBytes(f, rows, cols);
    // The bits the layout covers: pack every field with all its bits set (bits no field covers,
    // e.g. the top byte of u3_zero's 24-bit code words, are padding that pack writes as zero).
    const n = scaleCount(f, rows, cols);
    const ones: RawQuant = {
      codes: new Int32Array(rows * cols).fill(f.code.signed ? -1 : 2 ** f.code.bits - 1),
      scales: new Float32Array(new Uint32Array(n).fill(0xffffffff).buffer),
      ...(f.zero ? { zeros: new Int32Array(n).fill(f.zero.signed ? -1 : 2 ** f.zero.bits - 1) } : {}),
      ...(f.min ? { mins: new Float32Array(new Uint32Array(n).fill(0xffffffff).buffer) } : {}),
    };
    const cover = pack(f, rows, cols, ones).storage;
    const storage = Object.fromEntries(
      Object.entries(sizes).map(([t, size], k) => [t, randomBytes(size, 1000 + k).map((v, j) => v & cover[t]![j]!)]),
    );
    const padding = Object.values(cover).reduce((a, buf) => a + buf.filter((v) => v !== 0xff).length, 0);
    expect(padding).toBe(name === "u3_zero" ? rows * (cols / 8) : 0);
    const p: PackedTensor = { format: f, rows, cols, storage };
    const again = pack(f, rows, cols, unpackRaw(p));
    expect(Object.keys(again.storage).sort()).toEqual(Object.keys(storage).sort());
    for (const t of Object.keys(storage)) expect(again.storage[t]).toEqual(storage[t]);
  });

  it.each(names)("%s: random raw fields -> pack -> unpackRaw gives them back", (name) => {
    const f = fmt(name);
    const r = rng(7);
    const n = scaleCount(f, rows, cols);
    const span = (signed: boolean, bits: number) => (signed ? [-(2 ** (bits - 1)), 2 ** bits] : [0, 2 ** bits]) as [number, number];
    const [clo, cn] = span(f.code.signed, f.code.bits);
    const raw: RawQuant = {
      codes: Int32Array.from({ length: rows * cols }, () => clo + Math.floor(r() * cn)),
      // values exactly representable in f16 and bf16, so storage rounding keeps them
      scales: Float32Array.from({ length: n }, () => (Math.floor(r() * 256) - 128) / 64),
    };
    if (f.zero) {
      const [zlo, zn] = span(f.zero.signed, f.zero.bits);
      raw.zeros = Int32Array.from({ length: n }, () => zlo + Math.floor(r() * zn));
    }
    if (f.min) raw.mins = Float32Array.from({ length: n }, () => (Math.floor(r() * 256) - 128) / 32);
    const p = pack(f, rows, cols, raw);
    expect(unpackRaw(p)).toEqual(raw);
    const u = unpack(p);
    expect(u.values.length).toBe(rows * cols);
    expect(u.scales).toEqual(raw.scales);
  });

  it.each(names)("%s: quantizeRTN of random weights dequantizes within half a step", (name) => {
    const f = fmt(name);
    const r = rng(11);
    const w = Float32Array.from({ length: rows * cols }, () => (r() - 0.5) * 4);
    const u = unpack(quantizeRTN(f, rows, cols, w));
    const back = dequantize(u);
    const raw = quantizeRTNRaw(f, rows, cols, w);
    let worst = 0;
    for (let j = 0; j < w.length; j++) worst = Math.max(worst, Math.abs(back[j]! - w[j]!));
    const maxScale = Math.max(...Array.from(raw.scales, Math.abs));
    const maxMin = raw.mins ? Math.max(...Array.from(raw.mins, Math.abs)) : 0;
    const rel = (d: string) => (d === "f32" ? 2 ** -24 : d === "f16" ? 2 ** -11 : 2 ** -8); // storage rounding
    // uniform grids: half a step (+ f16 rounding of the scale); NF4's widest gap is 0.3 of absmax
    // (signed-max, Q4_0: values of the other sign than the block's largest clip at 7|d|, an error up to |d|)
    const rule = rtnRule(f);
    const step = rule === "lookup" ? 0.16 : rule === "signed-max" ? 1 : 0.5;
    const bound = step * maxScale * 1.01 + rel(f.scale.dtype) * maxScale * 2 ** f.code.bits + (f.min ? rel(f.min.dtype) * maxMin : 0);
    expect(worst).toBeLessThanOrEqual(bound);
  });
});

// ------------------------------------------------------------------ hand-built storage

describe("hand-built blocks", () => {
  it("q5_sym (fixture-only format): 5-bit two's-complement codes packed after an f32 scale", () => {
    const f = fmt("q5_sym");
    expect(f.layout.kind === "record" && f.layout.bytes).toBe(44);
    expect(storageBytes(f, 2, 64)).toEqual({ blocks: 88 });
    const blocks = new Uint8Array(88);
    const dv = new DataView(blocks.buffer);
    dv.setFloat32(0, 0.5, true);
    // codes -16, 15, -1, 1 at bits 32..51: 10000 | 01111 | 11111 | 00001 (LSB first)
    blocks[4] = 0xf0; // bits 0-4: 16; bits 5-7: low 3 bits of 15
    blocks[5] = 0xfd; // bits 8-9: high 2 bits of 15; bits 10-14: 31; bit 15: low bit of 1
    blocks[43] = 7 << 3; // code 63 = 7 at bits 315..319 of the record
    dv.setFloat32(44, -0.25, true);
    blocks[44 + 4] = 0b00011; // code 0 of row 1 = 3
    blocks[44 + 24] = 0b01100000; // code 33 = 3 at record bits 32 + 5*33 = 197..201: its low two bits are bits 5, 6 of byte 24
    const w = dequantize(unpack({ format: f, rows: 2, cols: 64, storage: { blocks } }));
    const codes = new Array<number>(128).fill(0);
    [codes[0], codes[1], codes[2], codes[3], codes[63], codes[64], codes[64 + 33]] = [-16, 15, -1, 1, 7, 3, 3];
    expect(Array.from(unpackRaw({ format: f, rows: 2, cols: 64, storage: { blocks } }).codes)).toEqual(codes);
    expect([w[0], w[1], w[2], w[3], w[63], w[64], w[64 + 33]]).toEqual([-8, 7.5, -0.5, 0.5, 3.5, -0.75, -0.75]);
    expect(Array.from(w)).toEqual(codes.map((q, j) => (j < 64 ? 0.5 : -0.25) * q));
    expect(pack(f, 2, 64, unpackRaw({ format: f, rows: 2, cols: 64, storage: { blocks } })).storage.blocks).toEqual(blocks);
  });

  it("gptq_int4: qweight/qzeros/scales packed as published (v1 qzeros store zero - 1)", () => {
    const f = fmt("gptq_int4");
    const IN = 256;
    const OUT = 16;
    const r = rng(3);
    const q = Array.from({ length: OUT }, () => Array.from({ length: IN }, () => Math.floor(r() * 16)));
    const zero = Array.from({ length: IN / 128 }, () => Array.from({ length: OUT }, () => 1 + Math.floor(r() * 15)));
    // f16 scales built from fields: (1 + m/1024) * 2^(e-15)
    const scaleBits = Array.from({ length: IN / 128 }, () => Array.from({ length: OUT }, () => (Math.floor(r() * 2) << 15) | ((10 + Math.floor(r() * 8)) << 10) | Math.floor(r() * 1024)));
    const scaleVal = (h: number) => (h & 0x8000 ? -1 : 1) * (1 + (h & 0x3ff) / 1024) * 2 ** (((h >>> 10) & 31) - 15);
    const qweight = new DataView(new ArrayBuffer((IN / 8) * OUT * 4));
    for (let k = 0; k < IN; k++) {
      for (let n = 0; n < OUT; n++) {
        const at = ((k >> 3) * OUT + n) * 4;
        qweight.setUint32(at, (qweight.getUint32(at, true) | (q[n]![k]! << (4 * (k % 8)))) >>> 0, true);
      }
    }
    const qzeros = new DataView(new ArrayBuffer((IN / 128) * (OUT / 8) * 4));
    for (let g = 0; g < IN / 128; g++) {
      for (let n = 0; n < OUT; n++) {
        const at = (g * (OUT / 8) + (n >> 3)) * 4;
        qzeros.setUint32(at, (qzeros.getUint32(at, true) | ((zero[g]![n]! - 1) << (4 * (n % 8)))) >>> 0, true);
      }
    }
    const scales = new DataView(new ArrayBuffer((IN / 128) * OUT * 2));
    for (let g = 0; g < IN / 128; g++) for (let n = 0; n < OUT; n++) scales.setUint16((g * OUT + n) * 2, scaleBits[g]![n]!, true);
    const storage = {
      qweight: new Uint8Array(qweight.buffer),
      qzeros: new Uint8Array(qzeros.buffer),
      scales: new Uint8Array(scales.buffer),
    };
    expect(storageBytes(f, OUT, IN)).toEqual({ qweight: 2048, qzeros: 16, scales: 64 });
    const w = dequantize(unpack({ format: f, rows: OUT, cols: IN, storage }));
    for (let n = 0; n < OUT; n++) {
      for (let k = 0; k < IN; k++) {
        const g = k >> 7;
        expect(w[n * IN + k]).toBe(Math.fround(scaleVal(scaleBits[g]![n]!) * (q[n]![k]! - zero[g]![n]!)));
      }
    }
    const again = pack(f, OUT, IN, unpackRaw({ format: f, rows: OUT, cols: IN, storage })).storage;
    expect(again).toEqual(storage);
  });

  it("nf4: first element in the high nibble, f32 absmax per 64 weights", () => {
    const NF4 = [
      -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
      -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
      0.44070982933044434, 0.5626170176696777, 0.7229568362236023, 1.0,
    ];
    const f = fmt("nf4");
    const codes = Array.from({ length: 128 }, (_, j) => (j * 7 + 3) % 16);
    const weight = new Uint8Array(64);
    for (let j = 0; j < 64; j++) weight[j] = (codes[2 * j]! << 4) | codes[2 * j + 1]!;
    const absmax = new Uint8Array(new Float32Array([2.5, 0.125]).buffer);
    const storage = { weight, "weight.absmax": absmax };
    const w = dequantize(unpack({ format: f, rows: 2, cols: 64, storage }));
    for (let j = 0; j < 128; j++) expect(w[j]).toBe(Math.fround((j < 64 ? 2.5 : 0.125) * Math.fround(NF4[codes[j]!]!)));
    expect(weight[0]).toBe(0x3a); // elements 0 and 1: codes 3 and 10
    expect(w[0]).toBe(Math.fround(2.5 * Math.fround(-0.39491748809814453)));
    expect(pack(f, 2, 64, unpackRaw({ format: f, rows: 2, cols: 64, storage })).storage).toEqual(storage);
    // bitsandbytes blocks run along the flattened tensor: [4, 32] is two blocks of two rows each, and
    // [3, 20] (60 weights) one short block (its absmax count is ceil(60 / 64) = 1).
    const across = dequantize(unpack({ format: f, rows: 4, cols: 32, storage }));
    for (let j = 0; j < 128; j++) expect(across[j]).toBe(w[j]);
    const short = unpack({ format: f, rows: 3, cols: 20, storage: { weight: weight.subarray(0, 30), "weight.absmax": absmax.subarray(0, 4) } });
    expect(dequantize(short)).toEqual(w.subarray(0, 60));
  });

  it("i8_row / u8_out / u3_zero (fixture formats): per-row bf16 scales, blocks along out with a min, packed signed zero-points", () => {
    // i8_row: w[r, c] = bf16 scale[r] * q
    const i8 = fmt("i8_row");
    const q = new Uint8Array([0xff, 0x02, 0x80, 0x7f, 0x00, 0x01]); // [-1, 2, -128, 127 | 0, 1] as [2, 3]
    const s = new Uint8Array([0xc0, 0x3f, 0x00, 0xc1]); // bf16 1.5, -8
    expect(Array.from(dequantize(unpack({ format: i8, rows: 2, cols: 3, storage: { q, s } })))).toEqual([-1.5, 3, -192, -8 * 127, -0, -8]);
    // u8_out: a record is 16 rows of one column; records in scale order [out / 16, in]
    const u8 = fmt("u8_out");
    expect(storageBytes(u8, 32, 2)).toEqual({ blocks: 80 });
    const blocks = new Uint8Array(80);
    const rec = (k: number, scale: number, minBits: [number, number], codes: number[]) => {
      blocks.set([...f16le(scale), ...minBits, ...codes], 20 * k);
    };
    const col = (c: number, b: number) => Array.from({ length: 16 }, (_, i) => 2 * (16 * b + i) + c); // code of (r, c) = 2r + c
    rec(0, 0x3800, [0x80, 0x3f], col(0, 0)); // b 0, c 0: 0.5, 1
    rec(1, 0x4000, [0x00, 0x00], col(1, 0)); // b 0, c 1: 2, 0
    rec(2, 0x3c00, [0x20, 0x41], col(0, 1)); // b 1, c 0: 1, 10
    rec(3, 0xbc00, [0x80, 0xbf], col(1, 1)); // b 1, c 1: -1, -1
    const w = dequantize(unpack({ format: u8, rows: 32, cols: 2, storage: { blocks } }));
    expect([w[0], w[1], w[2 * 15 + 1], w[2 * 16], w[2 * 31 + 1]]).toEqual([0.5 * 0 + 1, 2 * 1 + 0, 2 * 31, 1 * 32 + 10, -1 * 63 - 1]);
    expect(Array.from(unpackRaw({ format: u8, rows: 32, cols: 2, storage: { blocks } }).codes)).toEqual(Array.from({ length: 64 }, (_, j) => j));
    // u3_zero: w = s * ((q - 4) - (zero + 2)); zero i4 nibble b%4 of i16 word [r, b/4]
    const u3 = fmt("u3_zero");
    expect(storageBytes(u3, 1, 128)).toEqual({ q: 64, z: 2, s: 16 });
    const code = new DataView(new ArrayBuffer(64));
    code.setUint32(0, 7 | (5 << 3), true); // c = 0: 7, c = 1: 5
    code.setUint32(4 * 4, 3, true); // c = 32 (block 1): 3
    const z = new Uint8Array([0x0f | (0x2 << 4), 0x8 << 4]); // block 0: -1, block 1: 2, block 2: 0, block 3: -8
    const sf = new Uint8Array(new Float32Array([1, 0.5, 2, 4]).buffer);
    const w3 = dequantize(unpack({ format: u3, rows: 1, cols: 128, storage: { q: new Uint8Array(code.buffer), z, s: sf } }));
    expect([w3[0], w3[1], w3[2], w3[32], w3[33], w3[64], w3[96]]).toEqual([
      7 - 4 - 1, 5 - 4 - 1, 0 - 4 - 1, 0.5 * (3 - 4 - 4), 0.5 * (0 - 4 - 4), 2 * (0 - 4 - 2), 4 * (0 - 4 + 6),
    ]);
  });
});

// ------------------------------------------------------------------ helpers and errors

describe("helpers and errors", () => {
  it("withScales replaces the scales; dequantize uses them", () => {
    const f = fmt("q8_0");
    const raw: RawQuant = { codes: Int32Array.from({ length: 64 }, (_, j) => j - 32), scales: new Float32Array([1, 2]) };
    const u = unpack(pack(f, 1, 64, raw));
    const w = dequantize(withScales(u, new Float32Array([0.5, -1])));
    expect([w[0], w[31], w[32], w[63]]).toEqual([-16, -0.5, -0, -31]);
    expect(() => withScales(u, new Float32Array(3))).toThrow(/3 scales given, expected 2/);
  });

  it("storage of the wrong size names the tensor, expected and actual bytes", () => {
    const f = fmt("gptq_int4");
    const sizes = storageBytes(f, 8, 128);
    const storage = Object.fromEntries(Object.entries(sizes).map(([t, n]) => [t, new Uint8Array(n)]));
    storage.qzeros = new Uint8Array(3);
    expect(() => unpack({ format: f, rows: 8, cols: 128, storage })).toThrow(QzoError);
    expect(() => unpack({ format: f, rows: 8, cols: 128, storage })).toThrow(/'qzeros' has 3 bytes, expected 4 bytes/);
    expect(() => unpack({ format: fmt("q4_0"), rows: 2, cols: 32, storage: { blocks: new Uint8Array(35) } })).toThrow(/'blocks' has 35 bytes, expected 36 bytes/);
    expect(() => unpack({ format: fmt("q4_0"), rows: 2, cols: 32, storage: {} })).toThrow(/'blocks' is missing/);
  });

  it("rejects shapes that do not split into blocks, and codes that do not fit", () => {
    expect(() => storageBytes(fmt("q4_0"), 4, 172)).toThrow(/172 input columns, not a multiple of the block size 32/);
    expect(() => pack(fmt("q4_0"), 1, 32, { codes: new Int32Array(32).fill(16), scales: new Float32Array(1) })).toThrow(/code at \(0, 0\) 16 does not fit u4/);
    expect(() => pack(fmt("gptq_int4"), 8, 128, { codes: new Int32Array(1024), scales: new Float32Array(8) })).toThrow(/zeros has no entries/);
  });

  it("an additive codebook without a checkpoint tensor, and RTN into additive codebooks, are clear QzoErrors", () => {
    const nf4 = fmt("nf4");
    const aqlm: FormatIR = {
      ...nf4,
      name: "aqlm_like",
      code: { signed: false, bits: 4, offset: 0, lookup: "cb" },
      codebooks: [{ name: "cb", dtype: "f16", shape: [1, 16, 8], additive: true }],
    };
    expect(() => unpack({ format: aqlm, rows: 2, cols: 64, storage: {} })).toThrow(/additive codebook 'cb' needs a tensors layout and a checkpoint tensor/);
    expect(() => quantizeRTN(aqlm, 2, 64, new Float32Array(128))).toThrow(QzoError);
  });

  it("f16 scales keep their exact bit patterns through unpack (NaN and subnormal included)", () => {
    const f = fmt("q8_0");
    const blocks = new Uint8Array(34 * 3);
    blocks.set(f16le(0x7e01), 0); // NaN with payload
    blocks.set(f16le(0x0001), 34); // smallest subnormal
    blocks.set(f16le(0xfbff), 68); // -65504
    const u = unpack({ format: f, rows: 1, cols: 96, storage: { blocks } });
    expect(Array.from(new Uint32Array(u.scales.buffer))).toEqual([f16BitsToF32Bits(0x7e01), bitsOf(2 ** -24), bitsOf(-65504)]);
    expect(f32(f16BitsToF32Bits(0x0001))).toBe(2 ** -24);
  });
});
