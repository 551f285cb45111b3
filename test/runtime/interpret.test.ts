/**
 * The reference interpreter against independent references: values worked out by hand, naive
 * formulas written out here, weights perturbed here with zAt directly, finite differences, and a real
 * model (stories260K) against llama2.c's known greedy output.
 */
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkFile, checkSource } from "../../src/compiler/check.js";
import type { FormatIR, ModuleIR } from "../../src/compiler/ir/ir.js";
import { SourceFile } from "../../src/compiler/source.js";
import {
  dequantize,
  runGraph,
  trainableTensors,
  type ParamValue,
  type Perturbation,
  type Tensor,
  type WeightSource,
} from "../../src/runtime/interpret/interpreter.js";
import { lossGradient } from "../../src/runtime/interpret/gradient.js";
import * as K from "../../src/runtime/interpret/ops.js";
import { applyUpdate, projectedGradient } from "../../src/runtime/interpret/update.js";
import { decodeToF32, f16ToF32, readGguf, readLlama2cCheckpoint } from "../../src/runtime/model-files/index.js";
import type { UnpackedTensor } from "../../src/runtime/quant/types.js";
import { zAt } from "../../src/runtime/rng/direction.js";
import { loadTokenizer } from "../../src/runtime/tokenizer/index.js";
import { QzoError } from "../../src/util/errors.js";
import { rng } from "../support/random-model.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../..");
const MODELS = path.resolve(repoRoot, "../shared/models");

// ------------------------------------------------------------------ helpers

const F = (shape: number[], data: number[]): Tensor => ({ shape, data: Float32Array.from(data) });
const I = (shape: number[], data: number[]): Tensor => ({ shape, data: Int32Array.from(data) });
const arr = (t: Tensor): number[] => Array.from(t.data);


function randn(r: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return out;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!));
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  if (!(worst <= tol)) throw new Error(`max error ${worst} at ${at}: got ${got[at]}, want ${want[at]}`);
}

function compile(text: string): ModuleIR {
  // A virtual file in models/ so that `import "formats/gguf.qzo"` resolves; it is never written.
  const r = checkSource(new SourceFile(path.join(repoRoot, "models/interpret-test-virtual.qzo"), text));
  expect(r.diagnostics).toEqual([]);
  return r.modules[0]!;
}

function format(m: ModuleIR, name: string): FormatIR {
  const f = m.formats.find((x) => x.name === name);
  if (!f) throw new Error(`no format ${name}`);
  return f;
}

/** A weight source over a plain map "name" or "name[l]" -> value. */
function mapSource(map: Map<string, ParamValue>): WeightSource {
  return {
    get(param, layer) {
      const k = layer === undefined ? param : `${param}[${layer}]`;
      const v = map.get(k);
      if (!v) throw new Error(`no weight ${k}`);
      return v;
    },
  };
}

function randomQuant(f: FormatIR, rows: number, cols: number, r: () => number, withMins: boolean): UnpackedTensor {
  const values = new Float32Array(rows * cols);
  for (let i = 0; i < values.length; i++) values[i] = Math.floor(r() * 16) - 8;
  const ns = f.scale.per === "tensor" ? 1 : f.scale.per === "row" ? rows : f.block.axis === "in" ? rows * (cols / f.block.size) : (rows / f.block.size) * cols;
  const scales = new Float32Array(ns);
  // Mixed signs, as llama.cpp's Q4_0 scales are.
  for (let i = 0; i < ns; i++) scales[i] = (r() < 0.4 ? -1 : 1) * (0.01 + 0.03 * r());
  const t: UnpackedTensor = { format: f, rows, cols, values, scales };
  if (withMins) t.mins = randn(r, ns, 0.02);
  return t;
}

// ------------------------------------------------------------------ ops, by hand

describe("ops on hand-computed inputs", () => {
  it("embedding picks rows and rejects out-of-range ids", () => {
    const table = F([3, 2], [1, 2, 3, 4, 5, 6]);
    const y = K.embedding(table, I([1, 2], [2, 0]));
    expect(y.shape).toEqual([1, 2, 2]);
    expect(arr(y)).toEqual([5, 6, 1, 2]);
    expect(() => K.embedding(table, I([1, 1], [3]))).toThrow(QzoError);
    expect(() => K.embedding(table, I([1, 1], [3]))).toThrow(/token id 3 .* 3 rows/);
    expect(() => K.embedding(table, I([1, 1], [-1]))).toThrow(/token id -1/);
  });

  it("linear is x w^T + bias", () => {
    const x = F([2, 2], [1, 2, 3, 4]);
    const w = F([3, 2], [1, 0, 0, 1, 1, 1]);
    expect(arr(K.linear(x, w, F([3], [0.5, 0, -1])))).toEqual([1.5, 2, 2, 3.5, 4, 6]);
    const y = K.linear(F([1, 1, 2], [1, 2]), w);
    expect(y.shape).toEqual([1, 1, 3]);
    expect(arr(y)).toEqual([1, 2, 3]);
  });

  it("linear accumulates in float64", () => {
    // 1e8 + 1 - 1e8 is 0 in float32 accumulation, 1 in float64.
    const y = K.linear(F([1, 3], [1e8, 1, -1e8]), F([1, 3], [1, 1, 1]));
    expect(arr(y)).toEqual([1]);
  });

  it("rmsnorm and layernorm", () => {
    const y = K.rmsnorm(F([1, 2], [3, 4]), F([2], [1, 2]), 0);
    expectClose(arr(y), [3 / Math.sqrt(12.5), 8 / Math.sqrt(12.5)], 1e-7);
    const y2 = K.rmsnorm(F([2], [0, 0]), F([2], [1, 1]), 1e-5);
    expect(arr(y2)).toEqual([0, 0]);
    const z = K.layernorm(F([1, 4], [1, 2, 3, 4]), F([4], [1, 1, 1, 2]), F([4], [0, 0, 0, 1]), 0);
    const s = Math.sqrt(1.25);
    expectClose(arr(z), [-1.5 / s, -0.5 / s, 0.5 / s, (2 * 1.5) / s + 1], 1e-7);
  });

  it("rope rotates pair j by t * theta^(-2j/hd)", () => {
    // heads 1, hd 4, T 2: at t = 0 nothing moves; at t = 1 pair 0 turns by 1 rad, pair 1 by 10000^(-1/2) = 0.01.
    const x = F([1, 2, 4], [1, 2, 3, 4, 1, 2, 3, 4]);
    const il = arr(K.rope(x, 1, 10000, "interleaved"));
    const rot = (a: number, b: number, g: number) => [a * Math.cos(g) - b * Math.sin(g), a * Math.sin(g) + b * Math.cos(g)];
    const [a0, b0] = rot(1, 2, 1);
    const [a1, b1] = rot(3, 4, 0.01);
    expectClose(il, [1, 2, 3, 4, a0!, b0!, a1!, b1!], 1e-7);
    const rh = arr(K.rope(x, 1, 10000, "rotate_half"));
    const [c0, d0] = rot(1, 3, 1);
    const [c1, d1] = rot(2, 4, 0.01);
    expectClose(rh, [1, 2, 3, 4, c0!, c1!, d0!, d1!], 1e-7);
  });

  it("rotate_half on Hugging Face-permuted rows equals interleaved on the original rows", () => {
    const r = rng(7);
    const heads = 3;
    const hd = 8;
    const D = 5;
    const W = heads * hd;
    const w = randn(r, W * D);
    // HF row h*hd + k*(hd/2) + j holds interleaved row h*hd + 2j + k.
    const hf = new Float32Array(W * D);
    const perm = new Int32Array(W); // hf row -> original row
    for (let h = 0; h < heads; h++) {
      for (let k = 0; k < 2; k++) {
        for (let j = 0; j < hd / 2; j++) perm[h * hd + k * (hd / 2) + j] = h * hd + 2 * j + k;
      }
    }
    for (let row = 0; row < W; row++) hf.set(w.subarray(perm[row]! * D, perm[row]! * D + D), row * D);
    const x = { shape: [2, 6, D], data: randn(r, 2 * 6 * D) };
    const a = K.rope(K.linear(x, { shape: [W, D], data: w }), heads, 10000, "interleaved");
    const b = K.rope(K.linear(x, { shape: [W, D], data: hf }), heads, 10000, "rotate_half");
    const back = new Float32Array(a.data.length);
    for (let p = 0; p < 12; p++) for (let row = 0; row < W; row++) back[p * W + perm[row]!] = b.data[p * W + row]!;
    expectClose(back, a.data, 1e-6);
  });

  it("attention: hand case, causal mask", () => {
    // heads 1, hd 1, T 2: q = 1, k = [0, ln 2], v = [3, 6].
    const q = F([1, 2, 1], [1, 1]);
    const k = F([1, 2, 1], [0, Math.log(2)]);
    const v = F([1, 2, 1], [3, 6]);
    expectClose(arr(K.attention(q, k, v, 1, 1, true)), [3, 5], 1e-7); // t=1: 3/3 + 6*2/3
    expectClose(arr(K.attention(q, k, v, 1, 1, false)), [5, 5], 1e-7);
  });

  it("attention: grouped-query head mapping", () => {
    // 4 query heads, 2 kv heads: heads 0,1 read kv head 0 and heads 2,3 kv head 1. v is constant per kv head.
    const r = rng(3);
    const T = 3;
    const hd = 2;
    const q = { shape: [1, T, 4 * hd], data: randn(r, T * 4 * hd) };
    const k = { shape: [1, T, 2 * hd], data: randn(r, T * 2 * hd) };
    const vd = new Float32Array(T * 2 * hd);
    for (let t = 0; t < T; t++) for (let c = 0; c < 2 * hd; c++) vd[t * 2 * hd + c] = c < hd ? 10 : 20;
    const out = arr(K.attention(q, k, { shape: [1, T, 2 * hd], data: vd }, 4, 2, true));
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < 4; h++) for (let d = 0; d < hd; d++) expect(out[t * 8 + h * hd + d]).toBeCloseTo(h < 2 ? 10 : 20, 5);
    }
  });

  it("attention matches a naive score-matrix reference (GQA, causal and not)", () => {
    const r = rng(11);
    const B = 2;
    const T = 5;
    const H = 6;
    const KH = 2;
    const hd = 4;
    const q = { shape: [B, T, H * hd], data: randn(r, B * T * H * hd) };
    const k = { shape: [B, T, KH * hd], data: randn(r, B * T * KH * hd) };
    const v = { shape: [B, T, KH * hd], data: randn(r, B * T * KH * hd) };
    for (const causal of [true, false]) {
      const want = new Float64Array(B * T * H * hd);
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor((h * KH) / H); // same as floor(h / (H / KH))
          // Full score matrix with -inf where masked.
          const S: number[][] = [];
          for (let t = 0; t < T; t++) {
            S.push([]);
            for (let j = 0; j < T; j++) {
              let s = 0;
              for (let d = 0; d < hd; d++) s += q.data[(b * T + t) * H * hd + h * hd + d]! * k.data[(b * T + j) * KH * hd + kvh * hd + d]!;
              S[t]!.push(causal && j > t ? -Infinity : s / Math.sqrt(hd));
            }
          }
          for (let t = 0; t < T; t++) {
            const e = S[t]!.map((s) => Math.exp(s));
            const z = e.reduce((a, c) => a + c, 0);
            for (let d = 0; d < hd; d++) {
              let o = 0;
              for (let j = 0; j < T; j++) o += (e[j]! / z) * v.data[(b * T + j) * KH * hd + kvh * hd + d]!;
              want[(b * T + t) * H * hd + h * hd + d] = o;
            }
          }
        }
      }
      expectClose(K.attention(q, k, v, H, KH, causal).data, want, 1e-6);
    }
    // Causal: changing the last position's k and v changes no earlier output.
    const a = K.attention(q, k, v, H, KH, true).data;
    const k2 = { shape: k.shape, data: Float32Array.from(k.data) };
    const v2 = { shape: v.shape, data: Float32Array.from(v.data) };
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < KH * hd; c++) {
        k2.data[(b * T + T - 1) * KH * hd + c] = 100;
        v2.data[(b * T + T - 1) * KH * hd + c] = -100;
      }
    }
    const a2 = K.attention(q, k2, v2, H, KH, true).data;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < H * hd; c++) {
          const i = (b * T + t) * H * hd + c;
          if (t < T - 1) expect(a2[i]).toBe(a[i]);
        }
      }
    }
  });

  it("activations, softmax, elementwise, positions", () => {
    const x = F([4], [-2, -0.5, 0, 3]);
    expectClose(arr(K.silu(x)), [-2 / (1 + Math.exp(2)), -0.5 / (1 + Math.exp(0.5)), 0, 3 / (1 + Math.exp(-3))], 1e-7);
    expect(arr(K.relu(x))).toEqual([0, 0, 0, 3]);
    // erf reference values (Abramowitz & Stegun table 7.1 / high-precision values).
    const erfs: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
      [4, 0.9999999845827421],
      [-1.5, -0.9661051464753108],
    ];
    for (const [a, e] of erfs) expect(Math.abs(K.erf(a) - e)).toBeLessThan(1e-13);
    expectClose(arr(K.gelu(F([2], [Math.SQRT2, -Math.SQRT2]))), [Math.SQRT2 * 0.5 * (1 + 0.8427007929497149), -Math.SQRT2 * 0.5 * (1 - 0.8427007929497149)], 1e-7);
    expectClose(arr(K.softmax(F([2, 2], [0, Math.log(3), 1000, 1000]))), [0.25, 0.75, 0.5, 0.5], 1e-7);
    expect(arr(K.binary("add", F([2], [1, 2]), F([], [10])))).toEqual([11, 12]);
    expect(arr(K.binary("sub", F([], [10]), F([2], [1, 2])))).toEqual([9, 8]);
    expect(arr(K.binary("mul", F([2], [1, 2]), F([2], [3, 4])))).toEqual([3, 8]);
    expect(arr(K.binary("div", F([2], [1, 2]), F([], [4])))).toEqual([0.25, 0.5]);
    expect(arr(K.neg(F([2], [1, -2])))).toEqual([-1, 2]);
    const p = K.positions(I([2, 3], [5, 5, 5, 5, 5, 5]), 2);
    expect(p.data).toBeInstanceOf(Int32Array);
    expect(arr(p)).toEqual([2, 3, 4, 2, 3, 4]);
  });

  it("next_token_ce by hand", () => {
    // B 1, T 3, V 2. Position 0 predicts token[1] = 1 with p = 3/4; position 1 predicts token[2] = 0 with p = 1/2.
    const logits = F([1, 3, 2], [0, Math.log(3), 5, 5, 123, -7]);
    const tokens = I([1, 3], [1, 1, 0]);
    const l = (mask: number[]) => K.nextTokenCe(logits, tokens, F([1, 3], mask)).data[0]!;
    expect(l([0, 1, 1])).toBeCloseTo((-Math.log(0.75) - Math.log(0.5)) / 2, 6);
    expect(l([1, 1, 1])).toBeCloseTo((-Math.log(0.75) - Math.log(0.5)) / 2, 6); // mask[0] is ignored
    expect(l([0, 1, 0])).toBeCloseTo(-Math.log(0.75), 6);
    expect(l([0, 0, 1])).toBeCloseTo(-Math.log(0.5), 6);
    expect(() => l([1, 0, 0])).toThrow(QzoError);
    expect(() => K.nextTokenCe(logits, I([1, 3], [0, 2, 0]), F([1, 3], [0, 1, 1]))).toThrow(/token id 2/);
  });

  it("candidate_ce by hand", () => {
    // E 1, C 2, T 3, V 2. Sequence 0 scores mean(log 1/2, log 1/4); sequence 1 scores log 3/4 (only t = 1 masked).
    const logits = F([2, 3, 2], [0, 0, 0, Math.log(3), 9, 9, 0, Math.log(3), 9, 9, 9, 9]);
    const tokens = I([2, 3], [7, 0, 0, 7, 1, 0]);
    const mask = F([2, 3], [0, 1, 1, 0, 1, 0]);
    const s0 = (Math.log(0.5) + Math.log(0.25)) / 2;
    const s1 = Math.log(0.75);
    const want = (y: number) => -((y === 0 ? s0 : s1) - Math.log(Math.exp(s0) + Math.exp(s1)));
    expect(K.candidateCe(logits, tokens, mask, I([1], [1]), 2).data[0]).toBeCloseTo(want(1), 6);
    expect(K.candidateCe(logits, tokens, mask, I([1], [0]), 2).data[0]).toBeCloseTo(want(0), 6);
    expect(() => K.candidateCe(logits, tokens, mask, I([1], [2]), 2)).toThrow(QzoError);
    expect(() => K.candidateCe(logits, tokens, F([2, 3], [1, 0, 0, 0, 1, 0]), I([1], [0]), 2)).toThrow(/sequence 0/);
  });

  it("mse", () => {
    expect(K.mse(F([2, 2], [1, 2, 3, 4]), F([2, 2], [1, 0, 3, 0])).data[0]).toBe(5);
  });
});

// ------------------------------------------------------------------ graphs

describe("graph evaluation", () => {
  const small = compile(`model t {
  config { D: int = 4 }
  param w: f32[D]
  param b: f32[D]
  graph f(x: f32[B, T, D]) -> f32[B, T, D] {
    return layernorm(x, w, b, eps = 1e-5) * 2.0 - -gelu(x) / softmax(relu(x))
  }
  loss m(x: f32[B, D], y: f32[B, D]) {
    return mse(x, y)
  }
}`);
  const ws = mapSource(
    new Map<string, ParamValue>([
      ["w", { kind: "float", shape: [4], data: Float32Array.from([1, 2, 3, 4]) }],
      ["b", { kind: "float", shape: [4], data: Float32Array.from([0, 0.5, -1, 2]) }],
    ]),
  );

  it("evaluates consts, unary minus and mixed elementwise ops like a naive formula", () => {
    const r = rng(5);
    const x = { shape: [2, 3, 4], data: randn(r, 24) };
    const y = runGraph(small, "f", { x }, ws);
    expect(y.shape).toEqual([2, 3, 4]);
    const w = [1, 2, 3, 4];
    const b = [0, 0.5, -1, 2];
    const want: number[] = [];
    for (let row = 0; row < 6; row++) {
      const v = Array.from(x.data.subarray(row * 4, row * 4 + 4));
      const mean = v.reduce((a, c) => a + c, 0) / 4;
      const vr = v.reduce((a, c) => a + (c - mean) ** 2, 0) / 4;
      const rl = v.map((c) => Math.max(c, 0));
      const z = rl.reduce((a, c) => a + Math.exp(c), 0);
      v.forEach((c, i) => {
        const ln = ((c - mean) / Math.sqrt(vr + 1e-5)) * w[i]! + b[i]!;
        const ge = 0.5 * c * (1 + K.erf(c / Math.SQRT2));
        want.push(ln * 2 + ge / (Math.exp(rl[i]!) / z));
      });
    }
    expectClose(y.data, want, 2e-6);
    expect(runGraph(small, "m", { x: F([1, 4], [1, 2, 3, 4]), y: F([1, 4], [0, 2, 3, 6]) }, ws).data[0]).toBe(1.25);
  });

  it("checks inputs", () => {
    expect(() => runGraph(small, "f", {}, ws)).toThrow(/missing input 'x'/);
    expect(() => runGraph(small, "f", { x: F([1, 1, 5], [1, 2, 3, 4, 5]) }, ws)).toThrow(QzoError);
    expect(() => runGraph(small, "f", { x: F([1, 4], [1, 2, 3, 4]) }, ws)).toThrow(/expected 3 dimensions/);
    expect(() => runGraph(small, "f", { x: I([1, 1, 4], [1, 2, 3, 4]) }, ws)).toThrow(/Float32Array/);
    expect(() => runGraph(small, "m", { x: F([1, 4], [1, 2, 3, 4]), y: F([2, 4], [1, 2, 3, 4, 1, 2, 3, 4]) }, ws)).toThrow(/dimension 0 is 2, but B = 1/);
    expect(() => runGraph(small, "f", { x: F([1, 1, 4], [1, 2, 3, 4]), z: F([], [1]) }, ws)).toThrow(/unknown input 'z'/);
    expect(() => runGraph(small, "nope", {}, ws)).toThrow(/no graph 'nope'/);
  });
});

// ------------------------------------------------------------------ tiny quantized models

const TINY = `import "formats/gguf.qzo"
model t {
  config { D: int = 32  N: int = 3 }
  param g: f32[D]
  for l in 0..2 {
    param w[l]: q4_1[D, D]
  }
  param v: q4_0[N, D]
  graph f(x: f32[B, D]) -> f32[B, N] {
    for l in 0..2 {
      x = rmsnorm(linear(x, w[l]), g)
    }
    return linear(x, v)
  }
  loss m(x: f32[B, D], y: f32[B, N]) {
    return mse(f(x), y)
  }
  train {
    trainable = scales(linear) + mins(linear) + weights("g")
  }
}`;

describe("dequantization", () => {
  const m = compile(TINY);
  it("follows the scale-index contract for every scale layout", () => {
    const q40 = format(m, "q4_0");
    const r = rng(9);
    const layouts: FormatIR[] = [
      q40,
      { ...q40, block: { size: 2, axis: "out" } },
      { ...q40, scale: { ...q40.scale, per: "row" } },
      { ...q40, scale: { ...q40.scale, per: "tensor" } },
    ];
    for (const f of layouts) {
      const q = randomQuant(f, 4, 64, r, true);
      const w = dequantize(q);
      for (let row = 0; row < 4; row++) {
        for (let c = 0; c < 64; c++) {
          const s =
            f.scale.per === "tensor" ? 0 : f.scale.per === "row" ? row : f.block.axis === "in" ? row * 2 + (c >> 5) : (row >> 1) * 64 + c;
          expect(w[row * 64 + c]).toBe(Math.fround(q.scales[s]! * q.values[row * 64 + c]! + q.mins![s]!));
        }
      }
    }
  });
});

describe("perturbation and the trainable manifest", () => {
  const m = compile(TINY);
  const r = rng(21);
  const q41 = format(m, "q4_1");
  const q40 = format(m, "q4_0");
  const base = new Map<string, ParamValue>([
    ["g", { kind: "float", shape: [32], data: Float32Array.from(randn(r, 32, 0.2), (v) => 1 + v) }],
    ["w[0]", { kind: "quant", tensor: randomQuant(q41, 32, 32, r, true) }],
    ["w[1]", { kind: "quant", tensor: randomQuant(q41, 32, 32, r, true) }],
    ["v", { kind: "quant", tensor: randomQuant(q40, 3, 32, r, false) }],
  ]);
  const x = { shape: [4, 32], data: randn(r, 128) };
  const y = { shape: [4, 3], data: randn(r, 12, 0.5) };
  const seedLo = 0x9e3779b9;
  const seedHi = 0x7f4a7c15;

  it("orders the manifest by trainable entry, then layer", () => {
    expect(trainableTensors(m)).toEqual([
      { param: "w", layer: 0, field: "scale", t: 0 },
      { param: "w", layer: 1, field: "scale", t: 1 },
      { param: "v", field: "scale", t: 2 },
      { param: "w", layer: 0, field: "min", t: 3 },
      { param: "w", layer: 1, field: "min", t: 4 },
      { param: "g", field: "weight", t: 5 },
    ]);
    // hidden 64 is a multiple of q4_0's block, so w2 is quantized too (params in declaration order).
    const llama = checkFile(path.join(repoRoot, "models/llama.qzo"), { dim: 32, hidden: 64, n_layers: 3, n_heads: 4, n_kv_heads: 2, vocab: 16 });
    expect(llama.diagnostics).toEqual([]);
    const man = trainableTensors(llama.modules[0]!);
    const want: string[] = [];
    for (const p of ["wq", "wk", "wv", "wo", "w1", "w2", "w3"]) for (let l = 0; l < 3; l++) want.push(`${p}[${l}].scale`);
    want.push("output.scale");
    expect(man.map((e) => `${e.param}${e.layer === undefined ? "" : `[${e.layer}]`}.${e.field}`)).toEqual(want);
    expect(man.map((e) => e.t)).toEqual(want.map((_, i) => i));
  });

  /** The weights moved by h * z (or h * |x| * z), built here straight from zAt. */
  function moved(h: number, mode: "absolute" | "relative", dist: "gaussian" | "rademacher"): WeightSource {
    const mv = (a: Float32Array, t: number) =>
      Float32Array.from(a, (s, i) => s + (mode === "relative" ? h * Math.abs(s) : h) * zAt(seedLo, seedHi, t, i, dist));
    const out = new Map<string, ParamValue>();
    const qt = (k: string) => (base.get(k) as { kind: "quant"; tensor: UnpackedTensor }).tensor;
    for (const l of [0, 1]) {
      const q = qt(`w[${l}]`);
      out.set(`w[${l}]`, { kind: "quant", tensor: { ...q, scales: mv(q.scales, l), mins: mv(q.mins!, 3 + l) } });
    }
    out.set("v", { kind: "quant", tensor: { ...qt("v"), scales: mv(qt("v").scales, 2) } });
    const g = base.get("g") as { kind: "float"; shape: number[]; data: Float32Array };
    out.set("g", { kind: "float", shape: [32], data: mv(g.data, 5) });
    return mapSource(out);
  }

  const loss = (ws: WeightSource, p?: Perturbation) => runGraph(m, "m", { x, y }, ws, p).data[0]!;

  it("uses s + sign*eps*z exactly as built from zAt, and never touches the given weights", () => {
    const snap = () =>
      [...base.values()].map((v) => (v.kind === "float" ? [Array.from(v.data)] : [Array.from(v.tensor.scales), Array.from(v.tensor.mins ?? []), Array.from(v.tensor.values)]));
    const snapshot = snap();
    for (const mode of ["absolute", "relative"] as const) {
      for (const dist of ["gaussian", "rademacher"] as const) {
        for (const sign of [1, -1] as const) {
          const p: Perturbation = { seedLo, seedHi, sign, eps: 1e-2, epsMode: mode, dist };
          expect(loss(mapSource(base), p)).toBe(loss(moved(sign * 1e-2, mode, dist)));
        }
      }
    }
    expect(snap()).toEqual(snapshot);
  });

  it("approaches the unperturbed loss as eps -> 0, for both signs", () => {
    const l0 = loss(mapSource(base));
    for (const sign of [1, -1] as const) {
      const at = (eps: number) => loss(mapSource(base), { seedLo, seedHi, sign, eps, epsMode: "absolute", dist: "gaussian" });
      expect(at(0)).toBe(l0);
      const e3 = Math.abs(at(1e-3) - l0);
      const e6 = Math.abs(at(1e-6) - l0);
      expect(e3).toBeGreaterThan(0);
      expect(e6).toBeLessThan(e3 / 100);
    }
  });

  it("(L+ - L-) / 2eps approximates the directional derivative", () => {
    for (const mode of ["absolute", "relative"] as const) {
      const eps = mode === "absolute" ? 1e-3 : 1e-2;
      const lp = loss(mapSource(base), { seedLo, seedHi, sign: 1, eps, epsMode: mode, dist: "gaussian" });
      const lm = loss(mapSource(base), { seedLo, seedHi, sign: -1, eps, epsMode: mode, dist: "gaussian" });
      const { raw } = projectedGradient(lp, lm, eps, 1e9);
      // Finite differences along the same direction at two step sizes, weights moved here.
      const fd = (h: number) => (loss(moved(h, mode, "gaussian")) - loss(moved(-h, mode, "gaussian"))) / (2 * h);
      const d1 = fd(eps * 3);
      const d2 = fd(eps / 2);
      expect(Math.abs(d1 - d2)).toBeLessThan(0.02 * Math.abs(d1));
      expect(Math.abs(raw - d2)).toBeLessThan(0.02 * Math.abs(d2));
      expect(Math.abs(raw)).toBeGreaterThan(1e-3);
    }
  });

  it("reverse-mode gradients of scales, mins and a float weight match finite differences", () => {
    const { loss: l0, grads } = lossGradient(m, "m", { x, y }, mapSource(base));
    expect(l0).toBe(loss(mapSource(base)));
    // Each trainable tensor alone, moved along the manifest's z: grad . z against a central difference.
    for (const t of [0, 1, 2, 3, 4, 5]) {
      const zOf = (tt: number, n: number) => Float32Array.from({ length: n }, (_, i) => (tt === t ? zAt(seedLo, seedHi, tt, i, "gaussian") : 0));
      const h = 1e-3;
      const shift = (sign: number): WeightSource => {
        const mv = (a: Float32Array, tt: number) => Float32Array.from(a, (v, i) => v + sign * h * zOf(tt, a.length)[i]!);
        const out = new Map<string, ParamValue>();
        for (const l of [0, 1]) {
          const q = (base.get(`w[${l}]`) as { kind: "quant"; tensor: UnpackedTensor }).tensor;
          out.set(`w[${l}]`, { kind: "quant", tensor: { ...q, scales: mv(q.scales, l), mins: mv(q.mins!, 3 + l) } });
        }
        const v = (base.get("v") as { kind: "quant"; tensor: UnpackedTensor }).tensor;
        out.set("v", { kind: "quant", tensor: { ...v, scales: mv(v.scales, 2) } });
        out.set("g", { kind: "float", shape: [32], data: mv((base.get("g") as { data: Float32Array }).data, 5) });
        return mapSource(out);
      };
      const fd = (loss(shift(1)) - loss(shift(-1))) / (2 * h);
      const gz = grads[t]!.reduce((acc, g, i) => acc + g * zOf(t, grads[t]!.length)[i]!, 0);
      // Central-difference truncation (h^2) plus the loss's float32 rounding (2^-24 relative) over 2h.
      expect(Math.abs(gz - fd)).toBeLessThan(2e-3 * Math.abs(fd) + (4 * 2 ** -24 * l0) / h);
      expect(Math.abs(fd)).toBeGreaterThan(1e-2);
    }
  });

  it("an op reverse mode does not cover is one line naming it and where the spec uses it", () => {
    const gelu = compile(TINY.replace("return mse(f(x), y)", "return mse(gelu(f(x)), y)"));
    expect(() => lossGradient(gelu, "m", { x, y }, mapSource(base))).toThrow(
      new QzoError(`no gradient for op 'gelu' (${path.join(repoRoot, "models/interpret-test-virtual.qzo")}:16:16): reverse mode covers the language-model ops`),
    );
  });
});

// ------------------------------------------------------------------ tiny llama: graph plumbing

describe("llama.qzo on a tiny random quantized model", () => {
  const res = checkFile(path.join(repoRoot, "models/llama.qzo"), { dim: 32, hidden: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, vocab: 16, seq_len: 64 });
  const m = res.modules[0]!;
  const r = rng(33);
  const q40 = format(m, "q4_0");
  const map = new Map<string, ParamValue>();
  map.set("tok_embeddings", { kind: "float", shape: [16, 32], data: randn(r, 16 * 32) });
  map.set("norm", { kind: "float", shape: [32], data: Float32Array.from(randn(r, 32, 0.1), (v) => 1 + v) });
  map.set("output", { kind: "quant", tensor: randomQuant(q40, 16, 32, r, false) });
  for (let l = 0; l < 2; l++) {
    for (const n of ["attn_norm", "ffn_norm"]) map.set(`${n}[${l}]`, { kind: "float", shape: [32], data: Float32Array.from(randn(r, 32, 0.1), (v) => 1 + v) });
    for (const [n, rows, cols] of [["wq", 32, 32], ["wk", 16, 32], ["wv", 16, 32], ["wo", 32, 32], ["w1", 64, 32], ["w2", 32, 64], ["w3", 64, 32]] as const) {
      map.set(`${n}[${l}]`, { kind: "quant", tensor: randomQuant(q40, rows, cols, r, false) });
    }
  }
  const ws = mapSource(map);

  it("lm equals next_token_ce of forward; causal: a later token changes no earlier logits", () => {
    expect(res.diagnostics).toEqual([]);
    const tokens = I([2, 5], [1, 3, 5, 7, 9, 1, 2, 4, 8, 15]);
    const logits = runGraph(m, "forward", { tokens }, ws);
    expect(logits.shape).toEqual([2, 5, 16]);
    const mask = F([2, 5], [0, 1, 1, 0, 1, 0, 1, 1, 1, 1]);
    expect(runGraph(m, "lm", { tokens, mask }, ws).data[0]).toBe(K.nextTokenCe(logits, tokens, mask).data[0]);
    // Batch rows are independent, and a changed last token leaves positions 0..3 as they were.
    const one = runGraph(m, "forward", { tokens: I([1, 5], [1, 2, 4, 8, 15]) }, ws);
    expect(Array.from(one.data)).toEqual(Array.from(logits.data.subarray(80)));
    const other = runGraph(m, "forward", { tokens: I([1, 5], [1, 2, 4, 8, 0]) }, ws);
    expect(Array.from(other.data.subarray(0, 64))).toEqual(Array.from(one.data.subarray(0, 64)));
    expect(() => runGraph(m, "forward", { tokens: I([1, 2], [1, 16]) }, ws)).toThrow(/token id 16 .* 16 rows/);
  });

  it("classify binds E and n_cand from the inputs and equals candidate_ce of forward", () => {
    const tokens = I([6, 4], Array.from({ length: 24 }, (_, i) => (i * 7) % 16));
    const mask = F([6, 4], Array.from({ length: 24 }, (_, i) => (i % 4 >= 2 ? 1 : 0)));
    const label = I([2], [2, 0]);
    const got = runGraph(m, "classify", { tokens, mask, label }, ws).data[0]!;
    const logits = runGraph(m, "forward", { tokens }, ws);
    // Naive: scores per sequence, then softmax cross-entropy over each example's 3 candidates.
    const lp = (n: number, t: number) => {
      const row = Array.from(logits.data.subarray((n * 4 + t - 1) * 16, (n * 4 + t) * 16));
      const mx = Math.max(...row);
      return row[tokens.data[n * 4 + t]!]! - mx - Math.log(row.reduce((a, c) => a + Math.exp(c - mx), 0));
    };
    const score = [0, 1, 2, 3, 4, 5].map((n) => (lp(n, 2) + lp(n, 3)) / 2);
    let want = 0;
    for (let e = 0; e < 2; e++) {
      const s = score.slice(e * 3, e * 3 + 3);
      want += -(s[label.data[e]!]! - Math.log(s.reduce((a, c) => a + Math.exp(c), 0)));
    }
    expect(got).toBeCloseTo(want / 2, 5);
    expect(() => runGraph(m, "classify", { tokens, mask, label: I([4], [0, 0, 0, 0]) }, ws)).toThrow(/not E\*n_cand/);
    expect(() => runGraph(m, "lm", { tokens, mask: F([6, 5], new Array(30).fill(1)) }, ws)).toThrow(/dimension 1 is 5, but T = 4/);
  });

  it("reports a weight of the wrong shape", () => {
    const bad = mapSource(new Map([...map, ["wq[1]", { kind: "quant", tensor: randomQuant(q40, 16, 32, r, false) }]]));
    expect(() => runGraph(m, "forward", { tokens: I([1, 2], [1, 2]) }, bad)).toThrow(/wq\[1\].*expected \[32, 32\]/);
  });
});

// ------------------------------------------------------------------ update

describe("QZO update", () => {
  it("projectedGradient: d = (L+ - L-) / 2eps, clamped to [-C, C]", () => {
    expect(projectedGradient(1.5, 1.3, 0.1, 100).raw).toBeCloseTo(1, 12);
    expect(projectedGradient(1.5, 1.3, 0.1, 100).clipped).toBeCloseTo(1, 12);
    expect(projectedGradient(3, 1, 1e-3, 100)).toEqual({ raw: 1000, clipped: 100 });
    expect(projectedGradient(1, 3, 1e-3, 100)).toEqual({ raw: -1000, clipped: -100 });
  });

  it("applies s - lr*d*z (absolute) and s - lr*d*|s|*z (relative) with the manifest's z", () => {
    const r = rng(4);
    const n = 5000; // crosses the internal chunk size
    const s0 = randn(r, n, 0.05);
    for (const mode of ["absolute", "relative"] as const) {
      for (const dist of ["gaussian", "rademacher"] as const) {
        const s = Float32Array.from(s0);
        applyUpdate(s, 7, 123, 456, 0.75, 1e-3, dist, mode, 1e-7);
        for (let i = 0; i < n; i += 1) {
          const z = zAt(123, 456, 7, i, dist);
          let want = Math.fround(s0[i]! - (mode === "relative" ? 1e-3 * 0.75 * Math.abs(s0[i]!) * z : 1e-3 * 0.75 * z));
          const flipped = s0[i]! < 0 ? want > 0 : s0[i]! > 0 && want < 0;
          if (Math.abs(want) < 1e-7 || flipped) want = Math.fround(s0[i]! < 0 ? -1e-7 : 1e-7);
          if (s[i] !== want) throw new Error(`${mode} ${dist} element ${i}: ${s[i]} != ${want}`);
        }
      }
    }
  });

  it("the floor keeps a scale's sign: negative stays negative, zero becomes +floor", () => {
    const n = 64;
    const z = Array.from({ length: n }, (_, i) => zAt(1, 2, 0, i, "rademacher"));
    // s_new = s - 1 * (-2.5e-7) * z = s + 2.5e-7 z.
    const s = Float32Array.from(z, (zi) => (zi > 0 ? -2e-7 : 2e-7)); // every step heads toward 0 and just past it
    applyUpdate(s, 0, 1, 2, -2.5e-7, 1, "rademacher", "absolute", 1e-7);
    for (let i = 0; i < n; i++) expect(s[i]).toBe(Math.fround(z[i]! > 0 ? -1e-7 : 1e-7));
    const far = Float32Array.from(z, (zi) => (zi > 0 ? -2e-7 : 2e-7));
    applyUpdate(far, 0, 1, 2, 2.5e-7, 1, "rademacher", "absolute", 1e-7); // steps away from 0: no floor
    for (let i = 0; i < n; i++) expect(far[i]).toBe(Math.fround(z[i]! > 0 ? Math.fround(-2e-7) - 2.5e-7 : Math.fround(2e-7) + 2.5e-7));
    const zero = Float32Array.from([0, -0, -5e-8, 5e-8]);
    applyUpdate(zero, 0, 1, 2, 0, 1, "gaussian", "relative", 1e-7);
    expect(Array.from(zero)).toEqual([1e-7, 1e-7, -1e-7, 1e-7].map(Math.fround));
    const unfloored = Float32Array.from([0, -5e-8]);
    applyUpdate(unfloored, 0, 1, 2, 0, 1, "gaussian", "absolute", 0);
    expect(Array.from(unfloored)).toEqual([0, Math.fround(-5e-8)]);
  });

  it("a step larger than |s| does not flip the sign: it stops at the floor", () => {
    const z = Array.from({ length: 16 }, (_, i) => zAt(3, 4, 0, i, "rademacher"));
    // s_new = s + 1e-2 z, pushed across zero: -1e-3 -> about +9e-3 without the floor.
    const s = Float32Array.from(z, (zi) => (zi > 0 ? -1e-3 : 1e-3));
    applyUpdate(s, 0, 3, 4, -1e-2, 1, "rademacher", "absolute", 1e-7);
    for (let i = 0; i < 16; i++) expect(s[i]).toBe(Math.fround(z[i]! > 0 ? -1e-7 : 1e-7));
  });
});

// ------------------------------------------------------------------ a real model

describe("stories260K end to end", () => {
  it("greedy decoding reproduces llama2.c's output", () => {
    const started = performance.now();
    const ckpt = readLlama2cCheckpoint(path.join(MODELS, "stories260K/stories260K.bin"));
    const md = ckpt.metadata;
    const res = checkFile(path.join(repoRoot, "models/llama.qzo"), {
      dim: md.dim,
      hidden: md.hiddenDim,
      n_layers: md.nLayers,
      n_heads: md.nHeads,
      n_kv_heads: md.nKvHeads,
      vocab: md.vocabSize,
      seq_len: md.seqLen,
      weight: "f32",
      ffn_down: "f32",
      head: "f32",
      embed: "f32",
    });
    expect(res.diagnostics).toEqual([]);
    const m = res.modules[0]!;
    expect(trainableTensors(m)).toEqual([]); // nothing is quantized in this configuration
    const data = new Map<string, Float32Array>();
    for (const [name, info] of ckpt.tensors) data.set(name, decodeToF32(info));
    // llama.qzo's params -> llama2.c's layer-stacked tensors.
    const names: Record<string, string> = {
      tok_embeddings: "token_embedding_table",
      attn_norm: "rms_att_weight",
      wq: "wq",
      wk: "wk",
      wv: "wv",
      wo: "wo",
      ffn_norm: "rms_ffn_weight",
      w1: "w1",
      w2: "w2",
      w3: "w3",
      norm: "rms_final_weight",
      output: md.sharedClassifier ? "token_embedding_table" : "wcls",
    };
    const ws: WeightSource = {
      get(param, layer) {
        const tn = names[param];
        if (!tn) throw new Error(`unmapped param ${param}`);
        const info = ckpt.tensors.get(tn)!;
        const all = data.get(tn)!;
        if (layer === undefined) return { kind: "float", shape: info.shape, data: all };
        const shape = info.shape.slice(1);
        const n = shape.reduce((a, b) => a * b, 1);
        return { kind: "float", shape, data: all.subarray(layer * n, (layer + 1) * n) };
      },
    };
    const ids = [1];
    for (let step = 0; step < 60; step++) {
      const logits = runGraph(m, "forward", { tokens: I([1, ids.length], ids) }, ws);
      const V = md.vocabSize;
      const last = logits.data.subarray((ids.length - 1) * V, ids.length * V);
      let best = 0;
      for (let v = 1; v < V; v++) if (last[v]! > last[best]!) best = v;
      ids.push(best);
    }
    const tok = loadTokenizer(path.join(MODELS, "stories260K/tok512.bin"));
    const text = tok.decode(ids);
    const expected =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.";
    const seconds = (performance.now() - started) / 1000;
    console.log(`stories260K: 60 greedy tokens (61 forward passes) in ${seconds.toFixed(2)} s: ${JSON.stringify(text)}`);
    expect(text.length).toBeGreaterThan(100);
    expect(expected.startsWith(text) || text.startsWith(expected)).toBe(true);
    // A language-model loss on the decoded text is small (the model generated it).
    const lm = runGraph(m, "lm", { tokens: I([1, ids.length], ids), mask: F([1, ids.length], ids.map(() => 1)) }, ws).data[0]!;
    expect(lm).toBeGreaterThan(0);
    expect(lm).toBeLessThan(1.5);
  });

  it("the Q4_0 GGUF (scales and codes unpacked here) decodes like llama.cpp", () => {
    const started = performance.now();
    const gg = readGguf(path.join(MODELS, "gguf/stories260K-q4_0.gguf"));
    const res = checkFile(path.join(repoRoot, "models/llama.qzo"), { dim: 64, hidden: 172, n_layers: 5, n_heads: 8, n_kv_heads: 4, vocab: 512, seq_len: 512 });
    expect(res.diagnostics).toEqual([]);
    const m = res.modules[0]!;
    // Q4_0 block: f16 d, 16 bytes; element j = (low nibble of byte j) - 8, element j+16 = (high nibble) - 8.
    // Q8_0 block: f16 d, 32 int8.
    const unpack = (name: string): ParamValue => {
      const info = gg.tensors.get(name)!;
      const [rows, cols] = info.shape as [number, number];
      if (info.dtype !== "Q4_0" && info.dtype !== "Q8_0") return { kind: "float", shape: info.shape, data: decodeToF32(info) };
      const q4 = info.dtype === "Q4_0";
      const bytes = gg.readTensorBytes(name);
      const nb = (rows * cols) / 32;
      const rec = q4 ? 18 : 34;
      const scales = new Float32Array(nb);
      const values = new Float32Array(rows * cols);
      for (let b = 0; b < nb; b++) {
        const o = b * rec;
        scales[b] = f16ToF32(bytes[o]! | (bytes[o + 1]! << 8));
        for (let j = 0; j < (q4 ? 16 : 32); j++) {
          const byte = bytes[o + 2 + j]!;
          if (q4) {
            values[b * 32 + j] = (byte & 15) - 8;
            values[b * 32 + j + 16] = (byte >> 4) - 8;
          } else {
            values[b * 32 + j] = byte >= 128 ? byte - 256 : byte;
          }
        }
      }
      return { kind: "quant", tensor: { format: format(m, q4 ? "q4_0" : "q8_0"), rows, cols, values, scales } };
    };
    const gname: Record<string, string> = {
      tok_embeddings: "token_embd.weight",
      attn_norm: "attn_norm",
      wq: "attn_q",
      wk: "attn_k",
      wv: "attn_v",
      wo: "attn_output",
      ffn_norm: "ffn_norm",
      w1: "ffn_gate",
      w2: "ffn_down",
      w3: "ffn_up",
      norm: "output_norm.weight",
      output: gg.tensors.has("output.weight") ? "output.weight" : "token_embd.weight",
    };
    const cache = new Map<string, ParamValue>();
    const ws: WeightSource = {
      get(param, layer) {
        const n = layer === undefined ? gname[param]! : `blk.${layer}.${gname[param]!}.weight`;
        if (!cache.has(n)) cache.set(n, unpack(n));
        return cache.get(n)!;
      },
    };
    const negative = [...gg.tensors.values()].filter((t) => t.dtype === "Q4_0").reduce((a, t) => a + (unpack(t.name) as { tensor: UnpackedTensor }).tensor.scales.filter((x) => x < 0).length, 0);
    expect(negative).toBeGreaterThan(1000); // llama.cpp's Q4_0 scales are often negative
    const tok = loadTokenizer(path.join(MODELS, "stories260K/tok512.bin"));
    const prompt = tok.encode("Once upon a time", { bos: true, eos: false });
    const ids = [...prompt];
    for (let step = 0; step < 40; step++) {
      const logits = runGraph(m, "forward", { tokens: I([1, ids.length], ids) }, ws);
      const last = logits.data.subarray((ids.length - 1) * 512, ids.length * 512);
      let best = 0;
      for (let v = 1; v < 512; v++) if (last[v]! > last[best]!) best = v;
      ids.push(best);
    }
    const full = tok.decode(ids);
    expect(full.startsWith("Once upon a time")).toBe(true);
    const text = full.slice("Once upon a time".length);
    console.log(`stories260K-q4_0.gguf: 40 greedy tokens in ${((performance.now() - started) / 1000).toFixed(2)} s: ${JSON.stringify(text)}`);
    const expected = ", there was a little girl named Lily. She loved to play outside in the sun. One day, she went to the park with her mom";
    expect(text.length).toBeGreaterThan(60);
    expect(expected.startsWith(text) || text.startsWith(expected)).toBe(true);
  });
});
