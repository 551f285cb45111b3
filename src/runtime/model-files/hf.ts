/**
 * Hugging Face model directories: config.json plus either model.safetensors or
 * model.safetensors.index.json ({ metadata, weight_map: { tensor: shard file } }) with its shards
 * (diffusers: diffusion_pytorch_model.safetensors and its index).
 * Tensors keep their HF names and shapes (nn.Linear weights are [out, in]).
 *
 * Also reads GPTQ quantization settings (quantize_config.json, or config.json's quantization_config).
 * At this level GPTQ tensors are plain I32/F16 tensors: qweight I32 [in/(32/bits), out],
 * qzeros I32 [in/group, out/(32/bits)], scales F16 [in/group, out], g_idx I32 [in].
 */

import * as fs from "node:fs";
import * as path from "node:path";
import { fileError } from "../../util/errors.js";
import { describeFsError, readTensorBytes, type TensorInfo } from "./common.js";
import { readSafetensors } from "./safetensors.js";

export interface HfModel {
  format: "hf";
  dir: string;
  /** Parsed config.json. */
  config: Record<string, unknown>;
  /** Absolute paths of the safetensors files, in first-use order. */
  shards: string[];
  /** "__metadata__" of each shard, by path. */
  shardMetadata: Map<string, Record<string, string>>;
  /** Every tensor across the shards; info.file says which shard holds it. */
  tensors: Map<string, TensorInfo>;
  /** GPTQ settings when the directory holds a GPTQ checkpoint. */
  gptq?: GptqConfig;
  readTensorBytes(name: string): Uint8Array;
}

/** Reads and parses a JSON file; errors are one line with the file and byte offset. */
export function readJsonFile(file: string): unknown {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw fileError(file, undefined, describeFsError(e, "read"));
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(buf);
  } catch {
    throw fileError(file, 0, "not valid UTF-8: expected a UTF-8 JSON file");
  }
  try {
    return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (e) {
    const m = /position (\d+)/.exec(String((e as Error).message));
    const at = m ? Buffer.byteLength(text.slice(0, Number(m[1])), "utf8") : 0;
    throw fileError(file, at, "not valid JSON: expected a JSON document");
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function exists(p: string): boolean {
  try {
    fs.statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Reads a Hugging Face model directory (metadata and tensor listing; data is read lazily). */
export function readHfModel(dir: string): HfModel {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    throw fileError(dir, undefined, describeFsError(e, "open"));
  }
  if (!st.isDirectory()) throw fileError(dir, undefined, "not a directory: expected a Hugging Face model directory");
  const configPath = path.join(dir, "config.json");
  if (!exists(configPath)) throw fileError(configPath, undefined, "file not found (every Hugging Face model directory has one)");
  const config = readJsonFile(configPath);
  if (!isObject(config)) throw fileError(configPath, 0, "expected a JSON object");

  // transformers names its weights model.safetensors, diffusers diffusion_pytorch_model.safetensors.
  const stem = ["model", "diffusion_pytorch_model"].find((s) => exists(path.join(dir, `${s}.safetensors`)) || exists(path.join(dir, `${s}.safetensors.index.json`))) ?? "model";
  const single = path.join(dir, `${stem}.safetensors`);
  const indexPath = path.join(dir, `${stem}.safetensors.index.json`);
  const tensors = new Map<string, TensorInfo>();
  const shardMetadata = new Map<string, Record<string, string>>();
  const shards: string[] = [];

  if (exists(single)) {
    const st1 = readSafetensors(single);
    shards.push(single);
    shardMetadata.set(single, st1.metadata);
    for (const [k, v] of st1.tensors) tensors.set(k, v);
  } else if (exists(indexPath)) {
    const index = readJsonFile(indexPath);
    if (!isObject(index) || !isObject(index["weight_map"])) {
      throw fileError(indexPath, 0, 'expected a JSON object with a "weight_map" object');
    }
    const byShard = new Map<string, string[]>();
    for (const [tensor, shard] of Object.entries(index["weight_map"])) {
      if (typeof shard !== "string" || shard === "" || path.isAbsolute(shard) || shard.split(/[\\/]/).includes("..")) {
        throw fileError(indexPath, 0, `bad weight_map entry for tensor "${tensor}": expected a shard file name inside the directory`);
      }
      const list = byShard.get(shard) ?? [];
      list.push(tensor);
      byShard.set(shard, list);
    }
    for (const [shard, names] of byShard) {
      const shardPath = path.join(dir, shard);
      if (!exists(shardPath)) {
        throw fileError(
          shardPath,
          undefined,
          `file not found: shard listed in ${indexPath} weight_map (for ${names.length} tensor${names.length === 1 ? "" : "s"}, e.g. "${names[0]}")`,
        );
      }
      const sf = readSafetensors(shardPath);
      shards.push(shardPath);
      shardMetadata.set(shardPath, sf.metadata);
      for (const name of names) {
        const info = sf.tensors.get(name);
        if (!info) {
          throw fileError(shardPath, 8, `no tensor "${name}" in this shard: expected it here per ${indexPath} weight_map`);
        }
        tensors.set(name, info);
      }
    }
  } else {
    const hint = exists(path.join(dir, "pytorch_model.bin")) || exists(path.join(dir, "pytorch_model.bin.index.json"))
      ? " (PyTorch .bin checkpoints are not supported; convert them to safetensors)"
      : "";
    throw fileError(single, undefined, `file not found: expected model.safetensors, diffusion_pytorch_model.safetensors or their .index.json in ${dir}${hint}`);
  }

  const gptq = readGptqConfig(dir, config);
  checkAqlm(path.join(dir, "config.json"), config, tensors);
  const model: HfModel = {
    format: "hf",
    dir,
    config,
    shards,
    shardMetadata,
    tensors,
    readTensorBytes(name: string): Uint8Array {
      const info = tensors.get(name);
      if (!info) throw fileError(dir, undefined, `no tensor named "${name}"`);
      return readTensorBytes(info);
    },
  };
  if (gptq) model.gptq = gptq;
  return model;
}

// ---------------------------------------------------------------------------------------------
// AQLM settings.

/**
 * An AQLM checkpoint (quantization_config.quant_method "aqlm"): its settings must be positive
 * integers with out_group_size 1 (what qzo's formats read), and every quantized linear's tensors
 * must agree with them: X.codes [out, in / in_group_size, num_codebooks], X.codebooks
 * [num_codebooks, 2^nbits_per_codebook, 1, in_group_size], X.scales [out, 1, 1, 1].
 */
function checkAqlm(cfgPath: string, config: Record<string, unknown>, tensors: Map<string, TensorInfo>): void {
  const qc = config["quantization_config"];
  if (!isObject(qc) || qc["quant_method"] !== "aqlm") return;
  const int = (field: string): number => {
    const v = qc[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65536) throw fileError(cfgPath, 0, `bad AQLM setting ${field} = ${JSON.stringify(v)}: expected a positive integer`);
    return v;
  };
  const M = int("num_codebooks");
  const bits = int("nbits_per_codebook");
  const V = int("in_group_size");
  const out = int("out_group_size");
  if (bits > 16) throw fileError(cfgPath, 0, `bad AQLM setting nbits_per_codebook = ${bits}: expected at most 16`);
  if (out !== 1) throw fileError(cfgPath, 0, `AQLM with out_group_size ${out} is not supported (qzo reads out_group_size 1)`);
  const shape = (t: TensorInfo) => `[${t.shape.join(", ")}]`;
  for (const [name, t] of tensors) {
    if (!name.endsWith(".codes")) continue;
    const base = name.slice(0, -".codes".length);
    const books = tensors.get(`${base}.codebooks`);
    const scales = tensors.get(`${base}.scales`);
    if (!books || !scales) throw fileError(t.file, undefined, `'${name}' has no ${books ? "scales" : "codebooks"} beside it (an AQLM linear stores codes, codebooks and scales)`);
    const [rows, groups, m] = t.shape;
    if (t.shape.length !== 3 || m !== M) throw fileError(t.file, t.byteOffset, `'${name}' is ${shape(t)}: expected [out, in / ${V}, ${M}] for num_codebooks ${M} in ${cfgPath}`);
    const wantBooks = [M, 2 ** bits, 1, V];
    if (books.shape.length !== 4 || books.shape.some((d, i) => d !== wantBooks[i])) {
      throw fileError(books.file, books.byteOffset, `'${base}.codebooks' is ${shape(books)}: expected [${wantBooks.join(", ")}] for ${M} codebooks of ${bits} bits and groups of ${V} in ${cfgPath}`);
    }
    if (scales.shape.length !== 4 || scales.shape[0] !== rows || scales.shape.slice(1).some((d) => d !== 1)) {
      throw fileError(scales.file, scales.byteOffset, `'${base}.scales' is ${shape(scales)}: expected [${rows}, 1, 1, 1] (one scale per output row of '${name}')`);
    }
    if (!(groups! > 0)) throw fileError(t.file, t.byteOffset, `'${name}' has no groups`);
  }
}

// ---------------------------------------------------------------------------------------------
// GPTQ settings.

export interface GptqConfig {
  /** The file the settings came from (quantize_config.json or config.json). */
  source: string;
  quantMethod: "gptq";
  bits: number;
  /** Input rows per scale/zero group; -1 means one group over the whole input dimension. */
  groupSize: number;
  /** Act-order: g_idx maps input rows to groups non-monotonically. */
  descAct: boolean;
  /** Symmetric quantization (zero = 2^(bits-1) for every group). */
  sym: boolean;
  /**
   * Checkpoint format as written ("gptq" when absent: AutoGPTQ's original, a.k.a. v1), e.g.
   * "gptq", "gptq_v2", "marlin".
   */
  checkpointFormat: string;
  /**
   * What to add to the stored qzeros nibble to get the zero point z in w = scale * (q - z):
   * 1 for "gptq" (v1 stores z - 1), 0 for "gptq_v2" (stores z); undefined for other formats.
   */
  zeroPointOffset: 0 | 1 | undefined;
  /** The raw settings object. */
  raw: Record<string, unknown>;
}

/**
 * GPTQ settings of a model directory: quantize_config.json if present, else config.json's
 * quantization_config when its quant_method is "gptq". Returns undefined when neither exists.
 * `config` may pass an already-parsed config.json.
 */
export function readGptqConfig(dir: string, config?: Record<string, unknown>): GptqConfig | undefined {
  const qcPath = path.join(dir, "quantize_config.json");
  let raw: Record<string, unknown> | undefined;
  let source = qcPath;
  if (exists(qcPath)) {
    const v = readJsonFile(qcPath);
    if (!isObject(v)) throw fileError(qcPath, 0, "expected a JSON object");
    raw = v;
  } else {
    const cfgPath = path.join(dir, "config.json");
    let cfg = config;
    if (!cfg) {
      if (!exists(cfgPath)) return undefined;
      const v = readJsonFile(cfgPath);
      if (!isObject(v)) throw fileError(cfgPath, 0, "expected a JSON object");
      cfg = v;
    }
    const qc = cfg["quantization_config"];
    if (qc === undefined || qc === null) return undefined;
    if (!isObject(qc)) throw fileError(cfgPath, 0, "bad quantization_config: expected a JSON object");
    if (qc["quant_method"] !== "gptq") return undefined;
    raw = qc;
    source = cfgPath;
  }
  const bad = (field: string, expected: string): never => {
    throw fileError(source, 0, `bad GPTQ setting ${field} = ${JSON.stringify(raw![field])}: expected ${expected}`);
  };
  const qm = raw["quant_method"];
  if (qm !== undefined && qm !== "gptq") bad("quant_method", '"gptq"');
  const bits = raw["bits"];
  if (bits !== 2 && bits !== 3 && bits !== 4 && bits !== 8) bad("bits", "2, 3, 4 or 8");
  const gs = raw["group_size"] ?? -1;
  if (typeof gs !== "number" || !Number.isInteger(gs) || (gs !== -1 && gs <= 0)) bad("group_size", "a positive integer or -1");
  const descAct = raw["desc_act"] ?? false;
  if (typeof descAct !== "boolean") bad("desc_act", "true or false");
  const sym = raw["sym"] ?? true;
  if (typeof sym !== "boolean") bad("sym", "true or false");
  let fmt = raw["checkpoint_format"] ?? raw["format"];
  if (fmt === undefined) fmt = raw["is_marlin_format"] === true ? "marlin" : "gptq";
  if (typeof fmt !== "string") bad("checkpoint_format", "a string");
  const checkpointFormat = (fmt as string).toLowerCase();
  const zeroPointOffset = checkpointFormat === "gptq" ? 1 : checkpointFormat === "gptq_v2" ? 0 : undefined;
  return {
    source,
    quantMethod: "gptq",
    bits: bits as number,
    groupSize: gs as number,
    descAct: descAct as boolean,
    sym: sym as boolean,
    checkpointFormat,
    zeroPointOffset,
    raw,
  };
}

/**
 * Infers the zero-point convention of a symmetric GPTQ checkpoint from its packed qzeros (int32 words,
 * 32/bits fields per word, lowest bits first): every stored zero is 2^(bits-1) - 1 in v1 ("gptq") and
 * 2^(bits-1) in "gptq_v2". Returns the zeroPointOffset (1 or 0), or undefined when the stored zeros are
 * not uniform (asymmetric quantization: the convention cannot be inferred). Useful because some
 * checkpoints declare "gptq" but store v2 zeros. Supports bits 2, 4, 8.
 */
export function inferGptqZeroPointOffset(qzeros: Int32Array | Uint32Array, bits: 2 | 4 | 8): 0 | 1 | undefined {
  const per = 32 / bits;
  const mask = (1 << bits) - 1;
  let first = -1;
  for (let k = 0; k < qzeros.length; k++) {
    const w = qzeros[k]! >>> 0;
    for (let f = 0; f < per; f++) {
      const z = (w >>> (f * bits)) & mask;
      if (first < 0) first = z;
      else if (z !== first) return undefined;
    }
  }
  const half = 1 << (bits - 1);
  return first === half - 1 ? 1 : first === half ? 0 : undefined;
}
