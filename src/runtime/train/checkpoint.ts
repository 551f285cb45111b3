/**
 * Scales checkpoints: the trained fp32 master values of a QZO run, without the model.
 *
 * A safetensors file with one F32 tensor of shape [n] per trainable tensor, in manifest order, named
 * `${param}.${layer}.${field}` (`${param}.${field}` for a parameter outside a layer loop), and the string
 * metadata
 *   format "qzo-scales", version "1", step (decimal), runSeed (decimal u64), model (path),
 *   modelSha256 (hex; see modelSha256), spec (path), config (JSON), trainables (JSON manifest
 *   [{param, layer?, field, t}]), bestEvalLoss (decimal, when known), plus any extra string entries.
 * `step` is the number of completed steps: a resumed run continues with step `step`.
 */
import { closeSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { QzoError } from "../../util/errors.js";
import type { TrainableTensor } from "../interpret/interpreter.js";
import { openForRead, readSafetensors } from "../model-files/index.js";
import { writeSafetensors } from "../model-files/safetensors-write.js";

export const SCALES_FORMAT = "qzo-scales";
export const SCALES_VERSION = "1";

/** The checkpoint tensor name of a trainable tensor. */
export function scalesTensorName(t: Pick<TrainableTensor, "param" | "layer" | "field">): string {
  return `${t.param}${t.layer === undefined ? "" : `.${t.layer}`}.${t.field}`;
}

export interface ScalesCheckpointMeta {
  /** The model file or directory the values were trained on. */
  model: string;
  /** modelSha256(model). */
  modelSha256: string;
  /** The spec file. */
  spec: string;
  /** The run's settings (stored as JSON). */
  config?: unknown;
  /** The best evaluation loss so far, if any. */
  bestEvalLoss?: number;
  /** More string metadata (keys must not clash with the standard ones). */
  extra?: Record<string, string>;
}

export interface ScalesCheckpoint {
  step: number;
  runSeed: bigint;
  values: Float32Array[];
  trainables: TrainableTensor[];
  meta: ScalesCheckpointMeta;
}

const STANDARD_KEYS = ["format", "version", "step", "runSeed", "model", "modelSha256", "spec", "config", "trainables", "bestEvalLoss"];

/**
 * SHA-256 (hex) of a model: the file's bytes, or for a directory the concatenation of its
 * `*.safetensors` files in name order. Read once, in 4 MiB chunks.
 */
export function modelSha256(path: string): string {
  let files: string[];
  try {
    files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => f.endsWith(".safetensors"))
          .sort()
          .map((f) => join(path, f))
      : [path];
  } catch {
    throw new QzoError(`${path}: file not found (expected the model file or directory)`);
  }
  if (files.length === 0) throw new QzoError(`${path}: no .safetensors file in the directory: expected a Hugging Face model`);
  const h = createHash("sha256");
  const buf = Buffer.allocUnsafe(1 << 22);
  for (const f of files) {
    const { fd } = openForRead(f);
    try {
      for (let pos = 0; ; ) {
        const n = readSync(fd, buf, 0, buf.length, pos);
        if (n === 0) break;
        h.update(buf.subarray(0, n));
        pos += n;
      }
    } finally {
      closeSync(fd);
    }
  }
  return h.digest("hex");
}

function checkManifest(where: string, trainables: readonly TrainableTensor[], values: readonly Float32Array[]): void {
  if (values.length !== trainables.length) {
    throw new QzoError(`${where}: ${values.length} value arrays for ${trainables.length} trainable tensors: expected one per tensor`);
  }
  trainables.forEach((t, i) => {
    if (t.t !== i) throw new QzoError(`${where}: trainable ${scalesTensorName(t)} has number ${t.t} at position ${i}: expected the manifest order`);
    if (!(values[i] instanceof Float32Array)) throw new QzoError(`${where}: the values of ${scalesTensorName(t)} are not a Float32Array`);
  });
}

/** Writes a scales checkpoint atomically (temp file + rename). */
export function saveScalesCheckpoint(path: string, ck: ScalesCheckpoint): void {
  checkManifest(path, ck.trainables, ck.values);
  if (!Number.isSafeInteger(ck.step) || ck.step < 0) throw new QzoError(`${path}: step ${ck.step}: expected a non-negative integer`);
  if (ck.runSeed < 0n || ck.runSeed >= 1n << 64n) throw new QzoError(`${path}: run seed ${ck.runSeed}: expected a u64`);
  const m = ck.meta;
  const metadata: Record<string, string> = {
    format: SCALES_FORMAT,
    version: SCALES_VERSION,
    step: String(ck.step),
    runSeed: ck.runSeed.toString(10),
    model: m.model,
    modelSha256: m.modelSha256,
    spec: m.spec,
    config: JSON.stringify(m.config ?? {}),
    trainables: JSON.stringify(ck.trainables.map(manifestEntry)),
  };
  if (m.bestEvalLoss !== undefined) metadata["bestEvalLoss"] = String(m.bestEvalLoss);
  for (const [k, v] of Object.entries(m.extra ?? {})) {
    if (STANDARD_KEYS.includes(k)) throw new QzoError(`${path}: extra metadata key "${k}" clashes with a standard key`);
    metadata[k] = v;
  }
  const tensors = ck.trainables.map((t, i) => {
    const v = ck.values[i]!;
    return { name: scalesTensorName(t), dtype: "F32" as const, shape: [v.length], data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) };
  });
  writeSafetensors(path, tensors, metadata);
}

function manifestEntry(t: TrainableTensor): TrainableTensor {
  return t.layer === undefined ? { param: t.param, field: t.field, t: t.t } : { param: t.param, layer: t.layer, field: t.field, t: t.t };
}

export interface ScalesExpectation {
  /** The manifest of the run that resumes (trainableTensors of its module). */
  trainables: readonly TrainableTensor[];
  /** The element count of each trainable tensor, when known: checked against the stored shapes. */
  sizes?: readonly number[];
  /** modelSha256 of the model being trained, when known: checked against the stored hash. */
  modelSha256?: string;
}

/** Reads a scales checkpoint and checks it against the run that uses it (see ScalesExpectation). */
export function loadScalesCheckpoint(path: string, expected: ScalesExpectation): ScalesCheckpoint {
  const st = readSafetensors(path);
  const md = st.metadata;
  const need = (k: string): string => {
    const v = md[k];
    if (v === undefined) throw new QzoError(`${path}: metadata "${k}" is missing: expected a qzo scales checkpoint`);
    return v;
  };
  if (md["format"] !== SCALES_FORMAT) {
    throw new QzoError(`${path}: metadata format is ${md["format"] === undefined ? "missing" : `"${md["format"]}"`}: expected "${SCALES_FORMAT}" (a qzo scales checkpoint)`);
  }
  if (md["version"] !== SCALES_VERSION) throw new QzoError(`${path}: scales checkpoint version "${md["version"] ?? ""}": expected "${SCALES_VERSION}"`);
  const stepText = need("step");
  if (!/^\d+$/.test(stepText) || !Number.isSafeInteger(Number(stepText))) throw new QzoError(`${path}: metadata step "${stepText}": expected a non-negative integer`);
  const seedText = need("runSeed");
  if (!/^\d+$/.test(seedText) || BigInt(seedText) >= 1n << 64n) throw new QzoError(`${path}: metadata runSeed "${seedText}": expected a decimal u64`);
  const model = need("model");
  const sha = need("modelSha256");
  const spec = need("spec");
  if (expected.modelSha256 !== undefined && expected.modelSha256 !== sha) {
    throw new QzoError(`${path}: wrong model: the checkpoint was trained on ${model} (sha256 ${sha.slice(0, 16)}...), this model's sha256 is ${expected.modelSha256.slice(0, 16)}...`);
  }
  let config: unknown;
  let stored: TrainableTensor[];
  try {
    config = JSON.parse(need("config"));
  } catch {
    throw new QzoError(`${path}: metadata "config" is not valid JSON`);
  }
  try {
    stored = JSON.parse(need("trainables")) as TrainableTensor[];
    if (!Array.isArray(stored)) throw new Error();
  } catch {
    throw new QzoError(`${path}: metadata "trainables" is not a JSON array: expected the trainable manifest`);
  }
  const want = expected.trainables.map((t) => scalesTensorName(t));
  const have = stored.map((t) => scalesTensorName(t));
  const diff = want.findIndex((n, i) => have[i] !== n);
  if (want.length !== have.length || diff >= 0) {
    const i = diff >= 0 ? diff : Math.min(want.length, have.length);
    throw new QzoError(
      `${path}: wrong spec or trainable selection: the checkpoint (spec ${spec}) holds ${have.length} trainable tensors, this run has ${want.length}; ` +
        `tensor ${i} is ${have[i] ?? "(none)"} in the checkpoint, ${want[i] ?? "(none)"} here`,
    );
  }
  const values = expected.trainables.map((t, i) => {
    const name = want[i]!;
    const info = st.tensors.get(name);
    if (!info) throw new QzoError(`${path}: tensor "${name}" is missing: expected one F32 tensor per trainable`);
    if (info.dtype !== "F32" || info.shape.length !== 1) {
      throw new QzoError(`${path}: tensor "${name}" is ${info.dtype} [${info.shape.join(", ")}]: expected F32 [n]`);
    }
    const n = info.shape[0]!;
    const size = expected.sizes?.[i];
    if (size !== undefined && size !== n) {
      throw new QzoError(`${path}: tensor "${name}" has ${n} values, this model's ${scalesTensorName(t)} has ${size}: wrong model or spec`);
    }
    const bytes = st.readTensorBytes(name);
    const out = new Float32Array(n);
    new Uint8Array(out.buffer).set(bytes);
    const bad = out.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new QzoError(`${path}: tensor "${name}" value ${bad} is ${out[bad]}: expected finite scales (the run that wrote it diverged)`);
    return out;
  });
  if (st.tensors.size !== want.length) {
    const extra = [...st.tensors.keys()].find((k) => !want.includes(k));
    throw new QzoError(`${path}: tensor "${extra}" is not in the trainable manifest: expected exactly one tensor per trainable`);
  }
  const meta: ScalesCheckpointMeta = { model, modelSha256: sha, spec, config };
  if (md["bestEvalLoss"] !== undefined) meta.bestEvalLoss = Number(md["bestEvalLoss"]);
  const extra: Record<string, string> = {};
  for (const [k, v] of Object.entries(md)) if (!STANDARD_KEYS.includes(k)) extra[k] = v;
  if (Object.keys(extra).length) meta.extra = extra;
  return { step: Number(stepText), runSeed: BigInt(seedText), values, trainables: expected.trainables.map(manifestEntry), meta };
}
