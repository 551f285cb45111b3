/**
 * Writes an AQLM checkpoint in the layout of the AQLM project's Hugging Face models, from a float
 * model: a Hugging Face directory, or any file the spec binds (GGUF, llama2.c), whose tensors are
 * then written under the spec's Hugging Face names (rows of q and k permuted back to Hugging Face's
 * RoPE convention) with a config.json of the spec's Hugging Face config keys. Every linear weight of the decoder layers whose input size is a
 * multiple of the group size becomes `X.codes` (int8 [out, in / V, M], a code's unsigned bit
 * pattern), `X.codebooks` (f16 [M, 2^bits, 1, V]) and `X.scales` (f16 [out, 1, 1, 1]); every other
 * tensor (embeddings, norms, the output matrix, linears whose size does not split into groups) is
 * copied as stored and named in config.json's `quantization_config.linear_weights_not_to_quantize`,
 * as AQLM's own checkpoints do. Tokenizer and generation files are copied unchanged.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { configInts, paramLayers } from "../../compiler/ir/queries.js";
import { QzoError } from "../../util/errors.js";
import { f32BitsToF16Bits } from "../../util/float-bits.js";
import { writeFileAtomic } from "../../util/fs-atomic.js";
import { bindModel, permuteRowBytes } from "../load/bind.js";
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
  /** A model file's spec (default: from its architecture). */
  spec?: string;
  /** Called with one line per tensor. */
  log?: (line: string) => void;
}

export interface AqlmQuantizeReport {
  quantized: { name: string; rows: number; cols: number; relativeError: number }[];
  kept: string[];
  /** ||W - What||^2 / ||W||^2 over all quantized weights together. */
  relativeError: number;
}

/** A float model's tensors under their Hugging Face names, its config.json and the files to copy beside them. */
interface FloatSource {
  config: Record<string, unknown>;
  tensors: { name: string; shape: number[]; dtype: SafetensorsWriteDType; bytes: () => Uint8Array; floats: () => Float32Array }[];
  files: { name: string; path: string }[];
}

function hfSource(dir: string): FloatSource {
  const model = readHfModel(dir);
  if (model.config["quantization_config"] !== undefined) throw new QzoError(`${join(dir, "config.json")}: the model is already quantized (quantization_config); start from a float model`);
  return {
    config: model.config,
    tensors: [...model.tensors.values()].map((info) => ({
      name: info.name,
      shape: [...info.shape],
      dtype: info.dtype as SafetensorsWriteDType,
      bytes: () => model.readTensorBytes(info.name),
      floats: () => {
        if (info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16") throw new QzoError(`${info.file}: '${info.name}' is ${info.dtype}: expected a float weight`);
        return decodeToF32(info);
      },
    })),
    files: readdirSync(dir)
      .filter((f) => /^(tokenizer.*|special_tokens_map\.json|generation_config\.json)$/.test(f))
      .map((f) => ({ name: f, path: join(dir, f) })),
  };
}

/** A model file the spec binds, as Hugging Face tensors: each parameter under its spec's first `hf` name. */
function boundSource(path: string, spec: string | undefined): FloatSource {
  const bound = bindModel(path, spec ? { spec } : {});
  const m = bound.module;
  const ints = configInts(m);
  const env = Object.fromEntries(ints);
  const config: Record<string, unknown> = { model_type: m.name, tie_word_embeddings: false, torch_dtype: "float32" };
  for (const c of m.config) {
    const key = (c.sources["hf"] ?? []).find((s) => s.transforms.length === 0)?.tensor;
    if (key !== undefined && (typeof c.value.value === "number" || typeof c.value.value === "string")) config[key] = c.value.value;
  }
  const tensors: FloatSource["tensors"] = [];
  for (const p of m.params) {
    const src = (p.sources["hf"] ?? [])[0];
    if (!src) throw new QzoError(`${bound.spec}: parameter '${p.name}' has no Hugging Face name to write it under`);
    for (const layer of paramLayers(p, ints)) {
      const v = bound.weights.get(p.name, layer);
      if (v.kind !== "float") throw new QzoError(`${path}: '${p.name}' is stored as ${v.tensor.format.name}: quantize a float model`);
      let shape = [...v.shape];
      let data = v.data;
      // The file's layout from the spec's: each transform of the Hugging Face source undone, last first.
      for (const t of [...src.transforms].reverse()) {
        if (t.name === "transpose") {
          const [r, c] = shape as [number, number];
          const out = new Float32Array(data.length);
          for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = data[i * c + j]!;
          data = out;
          shape = [c, r];
        } else if (t.name === "unpermute_rope" || t.name === "permute_rope") {
          const inverse = { name: t.name === "unpermute_rope" ? "permute_rope" : "unpermute_rope", args: t.args };
          data = new Float32Array(permuteRowBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), shape[0]!, inverse, env, p.name, path).buffer);
        }
      }
      const floats = data;
      tensors.push({ name: src.tensor.replace(/\{[^}]*\}/g, String(layer ?? "")), shape, dtype: "F32", bytes: () => new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength), floats: () => floats });
    }
  }
  return { config, tensors, files: [] };
}

/** A decoder-layer linear weight (`model.layers.N.*.weight`, two dimensions). */
const isLayerLinear = (name: string, shape: readonly number[]) => /^model\.layers\.\d+\..*\.weight$/.test(name) && shape.length === 2 && !/norm/.test(name);

function f16Bytes(values: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32BitsToF16Bits(bits[i]!);
  return new Uint8Array(out.buffer);
}

/** Quantizes `src` (a Hugging Face directory or a model file) into an AQLM checkpoint directory `out`. */
export function quantizeToAqlm(src: string, out: string, o: AqlmQuantizeOptions = {}): AqlmQuantizeReport {
  const scheme = o.scheme ?? AQLM_2X8;
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) throw new QzoError(`${out}: exists and is not an empty directory; choose a new one`, 2);
  const isHf = existsSync(src) && statSync(src).isDirectory();
  const source = isHf ? hfSource(src) : boundSource(src, o.spec);
  const tensors: SafetensorsTensor[] = [];
  const report: AqlmQuantizeReport = { quantized: [], kept: [], relativeError: 0 };
  let errSum = 0;
  let normSum = 0;
  let seed = o.seed ?? 0;
  for (const t of [...source.tensors].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const [rows, cols] = t.shape as [number, number];
    if (!isLayerLinear(t.name, t.shape) || cols % scheme.groupSize !== 0) {
      tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: t.bytes() });
      if (t.shape.length === 2) report.kept.push(t.name);
      continue;
    }
    const w = t.floats();
    const q = quantizeAqlm(w, rows, cols, { codebooks: scheme.codebooks, bits: scheme.bits, groupSize: scheme.groupSize, seed: seed++, ...(o.rounds !== undefined ? { rounds: o.rounds } : {}) });
    let norm = 0;
    for (const x of w) norm += x * x;
    errSum += q.relativeError * norm;
    normSum += norm;
    const base = t.name.replace(/\.weight$/, "");
    tensors.push(
      { name: `${base}.codes`, dtype: "I8", shape: [rows, cols / scheme.groupSize, scheme.codebooks], data: q.codes },
      { name: `${base}.codebooks`, dtype: "F16", shape: [scheme.codebooks, 2 ** scheme.bits, 1, scheme.groupSize], data: f16Bytes(q.codebooks) },
      { name: `${base}.scales`, dtype: "F16", shape: [rows, 1, 1, 1], data: f16Bytes(q.scales) },
    );
    report.quantized.push({ name: t.name, rows, cols, relativeError: q.relativeError });
    o.log?.(`${t.name} [${rows}, ${cols}]: relative error ${q.relativeError.toExponential(3)}`);
  }
  if (report.quantized.length === 0) throw new QzoError(`${src}: no decoder-layer linear weight whose input size is a multiple of ${scheme.groupSize}: nothing to quantize`);
  report.relativeError = errSum / normSum;
  mkdirSync(out, { recursive: true });
  writeSafetensors(join(out, "model.safetensors"), tensors, { format: "pt" });
  const config = {
    ...source.config,
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
  for (const f of source.files) writeFileAtomic(join(out, f.name), readFileSync(f.path));
  return report;
}
