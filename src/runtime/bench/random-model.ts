/**
 * Seeded random inputs for the benchmarks (and the tests): a small generator, models of any spec
 * and config with random weights (quantized ones through RTN), and language-model batches.
 */
import type { FormatIR, ModuleIR } from "../../compiler/ir/ir.js";
import { additiveCodebook, configInts, evalConcrete, formatOf, paramLayers } from "../../compiler/ir/queries.js";
import type { StoredModel } from "../backends/kernel-args.js";
import type { StoredWeight } from "../load/bind.js";
import { quantizeRTN } from "../quant/quantize.js";
import { pack } from "../quant/codec.js";
import type { PackedTensor } from "../quant/types.js";
import { roundToDType } from "../../util/float-bits.js";
import type { Batch } from "../backends/backend.js";
import { rng } from "../../util/seeded-random.js";

export { rng };

/**
 * A model with random weights: norms near 1; other weights uniform in [-0.1, 0.1), or with
 * `fanIn` uniform with standard deviation 1/sqrt(fan-in) for matrices (activations stay finite
 * through many layers); quantized parameters are RTN-quantized into their format.
 */
export function randomModel(m: ModuleIR, seed: number, opts: { fanIn?: boolean } = {}): StoredModel {
  const r = rng(seed);
  const ints = configInts(m);
  const stored = new Map<string, StoredWeight>();
  for (const p of m.params) {
    const shape = p.type.shape.map((d) => evalConcrete(d, ints));
    const n = shape.reduce((a, b) => a * b, 1);
    const amp = shape.length === 2 ? Math.sqrt(3 / shape[1]!) : 0.1;
    for (const layer of paramLayers(p, ints)) {
      const norm = shape.length === 1 && /norm|ln|_w$/.test(p.name);
      const w = Float32Array.from({ length: n }, () => (norm ? 1 + 0.1 * (r() - 0.5) : opts.fanIn ? amp * (2 * r() - 1) : 0.2 * (r() - 0.5)));
      const f = formatOf(m, p);
      const key = `${p.name}#${layer ?? ""}`;
      const packed = !f ? undefined : additiveCodebook(f) ? randomAdditive(f, shape[0]!, shape[1]!, r, opts.fanIn ? amp : 0.1) : quantizeRTN(f, shape[0]!, shape[1]!, w);
      stored.set(key, packed ? { kind: "quant", packed, tensor: key } : { kind: "float", shape, data: w, tensor: key });
    }
  }
  return { module: m, stored: (param, layer) => stored.get(`${param}#${layer ?? ""}`)! };
}

/**
 * Random storage of an additive-codebook format (AQLM): random codes, codebook entries uniform in
 * [-1, 1) and row scales of about amp / sqrt(M), each rounded to its dtype (RTN has no codebooks to fit).
 */
function randomAdditive(f: FormatIR, rows: number, cols: number, r: () => number, amp: number): PackedTensor {
  const cb = additiveCodebook(f)!;
  const M = cb.shape[0]!;
  const books = Float32Array.from({ length: cb.shape.reduce((a, d) => a * d, 1) }, () => roundToDType(cb.dtype, 2 * r() - 1));
  const codes = Int32Array.from({ length: rows * cols * M }, () => Math.floor(r() * 2 ** f.code.bits));
  // The codes of one group are the same for each of its columns (the raw form repeats them).
  const V = cb.shape[cb.shape.length - 1]!;
  for (let j = 0; j < rows * cols; j++) if ((j % cols) % V !== 0) for (let m = 0; m < M; m++) codes[j * M + m] = codes[(j - ((j % cols) % V)) * M + m]!;
  const scales = Float32Array.from({ length: rows }, () => roundToDType(f.scale.dtype, (amp / Math.sqrt(M)) * (0.5 + r())));
  return pack(f, rows, cols, { codes, scales, codebooks: books });
}

/** B x T random tokens; the mask is 0 at the first position of each row and, with probability `maskDrop`, elsewhere. */
export function lmBatch(seed: number, B: number, T: number, vocab: number, maskDrop = 0): Batch {
  const r = rng(seed);
  const tokens = Int32Array.from({ length: B * T }, () => Math.floor(r() * vocab));
  const mask = Float32Array.from({ length: B * T }, (_, i) => (i % T === 0 || (maskDrop > 0 && r() < maskDrop) ? 0 : 1));
  return { tokens: { shape: [B, T], data: tokens }, mask: { shape: [B, T], data: mask } };
}
