/**
 * Writes an AQLM checkpoint in the layout of the AQLM project's Hugging Face models, from a float
 * Hugging Face model directory: every linear weight of the decoder layers whose input size is a
 * multiple of the group size becomes `X.codes` (int8 [out, in / V, M], a code's unsigned bit
 * pattern), `X.codebooks` (f16 [M, 2^bits, 1, V]) and `X.scales` (f16 [out, 1, 1, 1]); every other
 * tensor (embeddings, norms, the output matrix, linears whose size does not split into groups) is
 * copied as stored and named in config.json's `quantization_config.linear_weights_not_to_quantize`,
 * as AQLM's own checkpoints do. Tokenizer and generation files are copied unchanged.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { QzoError } from "../../util/errors.js";
import { f32BitsToF16Bits } from "../../util/float-bits.js";
import { writeFileAtomic } from "../../util/fs-atomic.js";
import { decodeToF32, readHfModel } from "../model-files/index.js";
import { writeSafetensors, type SafetensorsTensor, type SafetensorsWriteDType } from "../model-files/safetensors-write.js";
import { quantizeAqlm } from "./aqlm-quantize.js";

export interface AqlmScheme {
  codebooks: number;
  bits: number;
  groupSize: number;
}

/** The scheme of models/formats/aqlm.qzo's aqlm_2x8. */
export const AQLM_2X8: AqlmScheme = { codebooks: 2, bits: 8, groupSize: 8 };

export interface AqlmQuantizeOptions {
  scheme?: AqlmScheme;
  seed?: number;
  /** Alternating refinement rounds of the quantizer. */
  rounds?: number;
  /** Called with one line per tensor. */
  log?: (line: string) => void;
}

export interface AqlmQuantizeReport {
  quantized: { name: string; rows: number; cols: number; relativeError: number }[];
  kept: string[];
  /** ||W - What||^2 / ||W||^2 over all quantized weights together. */
  relativeError: number;
}

/** A decoder-layer linear weight (`model.layers.N.*.weight`, two dimensions). */
const isLayerLinear = (name: string, shape: readonly number[]) => /^model\.layers\.\d+\..*\.weight$/.test(name) && shape.length === 2 && !/norm/.test(name);

function f16Bytes(values: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32BitsToF16Bits(bits[i]!);
  return new Uint8Array(out.buffer);
}

export function quantizeHfToAqlm(src: string, out: string, o: AqlmQuantizeOptions = {}): AqlmQuantizeReport {
  const scheme = o.scheme ?? AQLM_2X8;
  const model = readHfModel(src);
  if (model.config["quantization_config"] !== undefined) throw new QzoError(`${join(src, "config.json")}: the model is already quantized (quantization_config); start from a float model`);
  if (existsSync(out) && readdirSync(out).length > 0) throw new QzoError(`${out}: exists and is not empty; choose a new directory`, 2);
  const tensors: SafetensorsTensor[] = [];
  const report: AqlmQuantizeReport = { quantized: [], kept: [], relativeError: 0 };
  let errSum = 0;
  let normSum = 0;
  let seed = o.seed ?? 0;
  for (const [name, info] of [...model.tensors].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const bytes = model.readTensorBytes(name);
    const [rows, cols] = info.shape as [number, number];
    if (!isLayerLinear(name, info.shape) || cols % scheme.groupSize !== 0) {
      tensors.push({ name, dtype: info.dtype as SafetensorsWriteDType, shape: [...info.shape], data: bytes });
      if (info.shape.length === 2) report.kept.push(name);
      continue;
    }
    if (info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16") throw new QzoError(`${info.file}: '${name}' is ${info.dtype}: expected a float weight`);
    const w = decodeToF32(info);
    const q = quantizeAqlm(w, rows, cols, { codebooks: scheme.codebooks, bits: scheme.bits, groupSize: scheme.groupSize, seed: seed++, ...(o.rounds !== undefined ? { rounds: o.rounds } : {}) });
    let norm = 0;
    for (const x of w) norm += x * x;
    errSum += q.relativeError * norm;
    normSum += norm;
    const base = name.replace(/\.weight$/, "");
    const K = 2 ** scheme.bits;
    tensors.push(
      { name: `${base}.codes`, dtype: "I8", shape: [rows, cols / scheme.groupSize, scheme.codebooks], data: q.codes },
      { name: `${base}.codebooks`, dtype: "F16", shape: [scheme.codebooks, K, 1, scheme.groupSize], data: f16Bytes(q.codebooks) },
      { name: `${base}.scales`, dtype: "F16", shape: [rows, 1, 1, 1], data: f16Bytes(q.scales) },
    );
    report.quantized.push({ name, rows, cols, relativeError: q.relativeError });
    o.log?.(`${name} [${rows}, ${cols}]: relative error ${q.relativeError.toExponential(3)}`);
  }
  if (report.quantized.length === 0) throw new QzoError(`${src}: no decoder-layer linear weight whose input size is a multiple of ${scheme.groupSize}: nothing to quantize`);
  report.relativeError = errSum / normSum;
  mkdirSync(out, { recursive: true });
  writeSafetensors(join(out, "model.safetensors"), tensors, { format: "pt" });
  const config = {
    ...model.config,
    quantization_config: {
      quant_method: "aqlm",
      nbits_per_codebook: scheme.bits,
      num_codebooks: scheme.codebooks,
      in_group_size: scheme.groupSize,
      out_group_size: 1,
      linear_weights_not_to_quantize: report.kept,
    },
  };
  writeFileAtomic(join(out, "config.json"), JSON.stringify(config, null, 2) + "\n");
  for (const f of readdirSync(src)) {
    if (/^(tokenizer.*|special_tokens_map\.json|generation_config\.json)$/.test(f)) writeFileAtomic(join(out, f), readFileSync(join(src, f)));
  }
  return report;
}
