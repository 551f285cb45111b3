/**
 * Export of a fine-tuned model in the format it was loaded from: a copy of the original file (GGUF,
 * llama2.c) or directory (Hugging Face), byte-identical except the trained fields.
 *
 * For each trainable tensor (manifest order, src/runtime/interpret/interpreter.ts):
 * - field "scale" / "min" of a quantized parameter: the stored packed tensor (bound.stored) is unpacked
 *   to its raw fields, the scales (or mins) are replaced by the values, and it is packed again (which
 *   rounds them to the format's dtype, round to nearest even). Codes and zero-points are unchanged, so
 *   the packed bytes differ from the original only in the trained fields. Record layouts (GGUF Q4_0,
 *   Q8_0...) are written over the tensor's bytes (or its layer slice); tensors layouts (GPTQ) write the
 *   storage tensors holding the trained field (`scales`, or the min's tensor).
 * - field "weight" of a float parameter: the values, written in the tensor's dtype (F32, F16, BF16,
 *   rounded to nearest even).
 * Load transforms are undone first: rows loaded through `| unpermute_rope(h)` (Hugging Face q/k) are put
 * back in the file's row order, and a `| transpose` is transposed back.
 *
 * Values must be finite and representable in the storage dtype (a value that rounds to infinity is an
 * error), unless the value is the stored value itself. Two trainable tensors stored in the same bytes
 * (a tied embedding and output) must produce the same bytes.
 *
 * Writing: the output is built under a temporary name beside the output path (parent directories are
 * created) and renamed into place at the end, so an interrupted or failed export leaves no partial
 * output and does not touch an existing one. A Hugging Face directory replaces an existing directory at
 * the output path by a rename-aside/rename-in/remove sequence.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { ModuleIR, ParamIR, SourceNameIR } from "../../compiler/ir/ir.js";
import { QzoError } from "../../util/errors.js";
import { removeStaleTemps } from "../../util/fs-atomic.js";
import { trainableTensors, type TrainableTensor } from "../interpret/interpreter.js";
import { loadScalesCheckpoint } from "../train/checkpoint.js";
import type { BoundModel, StoredWeight } from "../load/bind.js";
import type { TensorInfo } from "../model-files/index.js";
import { f32BitsToBf16Bits, f32BitsToF16Bits } from "../../util/float-bits.js";
import { pack, unpack, unpackRaw } from "../quant/codec.js";
import { evalIntExpr } from "../../compiler/ir/int-expr.js";
import { scaleCount } from "../../compiler/ir/queries.js";

export interface ExportResult {
  /** The output path (file or directory). */
  path: string;
  /** Number of trainable tensors written. */
  tensors: number;
  /** Bytes written over the copy. */
  bytesPatched: number;
}

/** One write over the copy: bytes at an absolute offset of a source file. */
interface Patch {
  file: string;
  offset: number;
  bytes: Uint8Array;
  what: string;
}

function label(t: Pick<TrainableTensor, "param" | "layer" | "field">): string {
  return `${t.param}${t.layer === undefined ? "" : `[${t.layer}]`}.${t.field}`;
}

function configEnv(m: ModuleIR): Record<string, number> {
  const env: Record<string, number> = {};
  for (const c of m.config) if (c.value.type === "int") env[c.name] = c.value.value;
  return env;
}

function tensorName(src: SourceNameIR, layer: number | undefined): string {
  return src.tensor.replace(/\{[^}]*\}/g, String(layer ?? ""));
}

/** The initial (as loaded) values of each trainable tensor: scales, mins or float weights. */
export function initialTrainableValues(bound: BoundModel, trainables: readonly TrainableTensor[]): Float32Array[] {
  return trainables.map((t) => {
    const s = bound.stored(t.param, t.layer);
    if (t.field === "weight") {
      if (s.kind !== "float") throw new QzoError(`${bound.checkpoint.path}: ${label(t)}: '${s.tensor}' is quantized, not a float weight`);
      return s.data.slice();
    }
    if (s.kind !== "quant") throw new QzoError(`${bound.checkpoint.path}: ${label(t)}: '${s.tensor}' is a float tensor, it has no ${t.field}s`);
    const u = unpack(s.packed);
    if (t.field === "scale") return u.scales;
    if (!u.mins) throw new QzoError(`${bound.checkpoint.path}: ${label(t)}: format '${s.packed.format.name}' has no mins`);
    return u.mins;
  });
}

/** Where a parameter's stored weight lives in the checkpoint: its source entry and slice. */
interface Located {
  src: SourceNameIR;
  info: TensorInfo;
  /** Absolute offset and length of the parameter's bytes (the layer slice for an indexed source). */
  offset: number;
  length: number;
  /** Tensors layouts: the checkpoint tensor name prefix of the storage tensors. */
  prefix?: string;
}

function locate(bound: BoundModel, p: ParamIR, layer: number | undefined, s: StoredWeight, env: Record<string, number>): Located {
  const ckpt = bound.checkpoint;
  const sources = p.sources[ckpt.family] ?? [];
  // A tensors layout: s.tensor is prefix + the layout's first storage tensor (bitsandbytes names its
  // codes after the parameter itself: X.weight, X.weight.absmax).
  if (s.kind === "quant" && s.packed.format.layout.kind === "tensors") {
    const first = s.packed.format.layout.fields[0]!.tensor;
    const prefix = s.tensor.slice(0, s.tensor.length - first.length);
    const src = sources.find((x) => tensorName(x, layer).replace(/[^.]*$/, "") === prefix);
    const info = ckpt.tensors.get(s.tensor);
    if (src && info) return { src, info, offset: info.byteOffset, length: info.byteLength, prefix };
  }
  const direct = sources.find((src) => tensorName(src, layer) === s.tensor);
  if (direct) {
    const info = ckpt.tensors.get(s.tensor)!;
    if (direct.index === undefined) return { src: direct, info, offset: info.byteOffset, length: info.byteLength };
    const idx = evalIntExpr(direct.index, { ...env, [p.array?.var ?? "l"]: layer ?? 0 });
    const per = info.byteLength / info.shape[0]!;
    return { src: direct, info, offset: info.byteOffset + idx * per, length: per };
  }
  throw new QzoError(`${ckpt.path}: cannot find where '${s.tensor}' (parameter '${p.name}') is stored`);
}

/**
 * Row permutation of the RoPE load transforms: unpermute_rope moves file row `half` to graph row `pair`
 * (see bind.ts); returns graphRow -> fileRow for the transform as applied on load.
 */
function ropeFileRowOf(rows: number, heads: number, name: string, what: string): Int32Array {
  const hd = rows / heads;
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new QzoError(`${what}: ${rows} rows do not split into ${heads} heads of an even size`);
  const fileRowOf = new Int32Array(rows);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < hd / 2; j++) {
      for (let k = 0; k < 2; k++) {
        const half = h * hd + k * (hd / 2) + j;
        const pair = h * hd + 2 * j + k;
        if (name === "unpermute_rope") fileRowOf[pair] = half;
        else fileRowOf[half] = pair;
      }
    }
  }
  return fileRowOf;
}

/** Undoes a row permutation applied on load: graph-order rows back to file order. */
function unpermuteRows(bytes: Uint8Array, rows: number, t: { name: string; args: string[] }, env: Record<string, number>, what: string): Uint8Array {
  if (t.name !== "unpermute_rope" && t.name !== "permute_rope") return bytes;
  const heads = evalIntExpr(t.args[0]!, env);
  const fileRowOf = ropeFileRowOf(rows, heads, t.name, what);
  const rowBytes = bytes.length / rows;
  const out = new Uint8Array(bytes.length);
  for (let g = 0; g < rows; g++) out.set(bytes.subarray(g * rowBytes, (g + 1) * rowBytes), fileRowOf[g]! * rowBytes);
  return out;
}

function transposeF32(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

function asBytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Rounds float32 values to a float dtype's little-endian bytes. */
function encodeFloats(values: Float32Array, dtype: string, what: string, original: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const origBits = new Uint32Array(original.buffer, original.byteOffset, original.length);
  const n = values.length;
  const out = new Uint8Array(n * (dtype === "F32" ? 4 : 2));
  const dv = new DataView(out.buffer);
  for (let i = 0; i < n; i++) {
    let b = bits[i]!;
    if (b !== origBits[i] && !Number.isFinite(values[i]!)) throw new QzoError(`${what}: value ${i} is ${values[i]}: expected a finite number`);
    if (dtype === "F32") dv.setUint32(4 * i, b, true);
    else {
      b = dtype === "F16" ? f32BitsToF16Bits(b) : f32BitsToBf16Bits(b);
      if (bits[i] !== origBits[i] && (b & 0x7fff) >= (dtype === "F16" ? 0x7c00 : 0x7f80)) {
        throw new QzoError(`${what}: value ${i} (${values[i]}) does not fit ${dtype}`);
      }
      dv.setUint16(2 * i, b, true);
    }
  }
  return out;
}

/** Checks trained scales/mins against the format dtype: finite, and finite after rounding. */
function checkQuantValues(values: Float32Array, original: Float32Array, dtype: string, what: string): void {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const origBits = new Uint32Array(original.buffer, original.byteOffset, original.length);
  for (let i = 0; i < values.length; i++) {
    if (bits[i] === origBits[i]) continue;
    const v = values[i]!;
    if (!Number.isFinite(v)) throw new QzoError(`${what}: value ${i} is ${v}: expected a finite number`);
    const b = bits[i]!;
    const overflow = dtype === "f16" ? (f32BitsToF16Bits(b) & 0x7fff) >= 0x7c00 : dtype === "bf16" ? (f32BitsToBf16Bits(b) & 0x7fff) >= 0x7f80 : false;
    if (overflow) throw new QzoError(`${what}: value ${i} (${v}) does not fit ${dtype}`);
  }
}

/**
 * The writes for the trainable tensors of one parameter layer (its float weight; or its scales, its
 * mins or both, packed together since they may share bytes, as in a Q4_1 record).
 */
function patchesFor(bound: BoundModel, group: readonly { t: TrainableTensor; values: Float32Array }[], env: Record<string, number>): Patch[] {
  const m = bound.module;
  const file = bound.checkpoint.path;
  const { t, values } = group[0]!;
  const what = `${file}: ${group.map((g) => label(g.t)).join(" and ")}`;
  const p = m.params.find((q) => q.name === t.param);
  if (!p) throw new QzoError(`${what}: the spec has no parameter '${t.param}'`);
  const s = bound.stored(t.param, t.layer);
  const loc = locate(bound, p, t.layer, s, env);
  if (t.field === "weight") {
    if (s.kind !== "float") throw new QzoError(`${what}: trainable as a float weight, but '${s.tensor}' is stored as ${s.packed.format.name}`);
    if (values.length !== s.data.length) throw new QzoError(`${what}: ${values.length} values given, expected ${s.data.length}`);
    // Undo the load transforms in reverse order. Shapes along the way, as bind.ts applies them.
    const shapes: number[][] = [];
    let cur = loc.src.index !== undefined ? loc.info.shape.slice(1) : [...loc.info.shape];
    for (const tr of loc.src.transforms) {
      shapes.push(cur);
      if (tr.name === "transpose") cur = [cur[1]!, cur[0]!];
    }
    let data = values;
    let orig = s.data;
    for (let k = loc.src.transforms.length - 1; k >= 0; k--) {
      const tr = loc.src.transforms[k]!;
      if (tr.name === "transpose") {
        const before = shapes[k]!; // [a, b] in the file; the values are [b, a]
        data = transposeF32(data, before[1]!, before[0]!);
        orig = transposeF32(orig, before[1]!, before[0]!);
      } else {
        const rows = s.shape[0]!;
        data = new Float32Array(unpermuteRows(asBytes(data), rows, tr, env, what).buffer);
        orig = new Float32Array(unpermuteRows(asBytes(orig), rows, tr, env, what).buffer);
      }
    }
    const dt = loc.info.dtype;
    if (dt !== "F32" && dt !== "F16" && dt !== "BF16") throw new QzoError(`${what}: '${s.tensor}' is ${dt}: expected F32, F16 or BF16 for a float weight`);
    const bytes = encodeFloats(data, dt, what, orig);
    if (bytes.length !== loc.length) throw new QzoError(`${what}: ${bytes.length} bytes encoded for '${s.tensor}', which has ${loc.length}`);
    return [{ file: loc.info.file, offset: loc.offset, bytes, what: `'${s.tensor}'${loc.src.index !== undefined ? `[${t.layer}]` : ""}` }];
  }
  if (s.kind !== "quant") throw new QzoError(`${what}: its ${t.field}s are trainable, but '${s.tensor}' is a float (${bound.checkpoint.tensors.get(s.tensor)?.dtype}) tensor`);
  const f = s.packed.format;
  const raw = unpackRaw(s.packed);
  const n = scaleCount(f, s.packed.rows, s.packed.cols);
  for (const g of group) {
    const w = `${file}: ${label(g.t)}`;
    if (g.values.length !== n) throw new QzoError(`${w}: ${g.values.length} values given, expected ${n}`);
    if (g.t.field === "scale") {
      checkQuantValues(g.values, raw.scales, f.scale.dtype, w);
      raw.scales = g.values;
    } else if (g.t.field === "min") {
      if (!f.min || !raw.mins) throw new QzoError(`${w}: format '${f.name}' has no mins`);
      checkQuantValues(g.values, raw.mins, f.min.dtype, w);
      raw.mins = g.values;
    } else {
      throw new QzoError(`${w}: a float weight and the ${f.name} fields of the same parameter cannot both be trained`);
    }
  }
  if (f.layout.kind === "record") {
    const packed = pack(f, s.packed.rows, s.packed.cols, raw);
    let blocks = packed.storage["blocks"]!;
    for (let k = loc.src.transforms.length - 1; k >= 0; k--) blocks = unpermuteRows(blocks, s.packed.rows, loc.src.transforms[k]!, env, what);
    if (blocks.length !== loc.length) throw new QzoError(`${what}: ${blocks.length} bytes packed for '${s.tensor}', which has ${loc.length}`);
    return [{ file: loc.info.file, offset: loc.offset, bytes: blocks, what: `'${s.tensor}'${loc.src.index !== undefined ? `[${t.layer}]` : ""}` }];
  }
  // Tensors layout: a row is no run of bytes (GPTQ keeps rows as columns of qweight), so bind.ts
  // reorders the rows of the raw fields; undo that on the raw fields, pack, and write the storage
  // tensors that hold the trained field.
  const per = f.scale.per;
  for (let k = loc.src.transforms.length - 1; k >= 0; k--) {
    const tr = loc.src.transforms[k]!;
    const rowsOf = (a: Int32Array | Float32Array) => unpermuteRows(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), s.packed.rows, tr, env, what).buffer;
    raw.codes = new Int32Array(rowsOf(raw.codes));
    if (per === "tensor") continue;
    if (per === "block" && f.block.axis !== "in" && (tr.name === "unpermute_rope" || tr.name === "permute_rope")) {
      throw new QzoError(`${what}: format '${f.name}' shares scales across rows (blocks along out), so its rows cannot be reordered`);
    }
    raw.scales = new Float32Array(rowsOf(raw.scales));
    if (raw.zeros) raw.zeros = new Int32Array(rowsOf(raw.zeros));
    if (raw.mins) raw.mins = new Float32Array(rowsOf(raw.mins));
  }
  const packedT = pack(f, s.packed.rows, s.packed.cols, raw);
  const fields = new Set<string>(group.map((g) => g.t.field));
  const holders = new Set(f.layout.fields.filter((fl) => fields.has(fl.field)).map((fl) => fl.tensor));
  return [...holders].map((name) => {
    const info = bound.checkpoint.tensors.get(loc.prefix + name);
    if (!info) throw new QzoError(`${what}: no tensor '${loc.prefix}${name}'`);
    const bytes = packedT.storage[name]!;
    if (bytes.length !== info.byteLength) throw new QzoError(`${what}: ${bytes.length} bytes packed for '${info.name}', which has ${info.byteLength}`);
    return { file: info.file, offset: info.byteOffset, bytes, what: `'${info.name}'` };
  });
}

function fsMessage(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === "EISDIR") return "is a directory";
  if (err.code === "ENOTDIR" || err.code === "EEXIST") return "a file is in the way (expected a directory)";
  if (err.code === "EACCES" || err.code === "EPERM") return "permission denied";
  if (err.code === "ENOSPC") return "no space left on the device";
  return err.code ?? String(err.message ?? e).split("\n")[0]!;
}

function writeAllAt(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/**
 * Writes the fine-tuned model to outPath in the input's format (see the module comment). values[i] are
 * the trained values of trainables[i].
 */
export function exportModel(bound: BoundModel, trainables: readonly TrainableTensor[], values: readonly Float32Array[], outPath: string): ExportResult {
  const ckpt = bound.checkpoint;
  if (values.length !== trainables.length) {
    throw new QzoError(`${outPath}: ${values.length} value arrays for ${trainables.length} trainable tensors: expected one per tensor`);
  }
  const env = configEnv(bound.module);
  const out = path.resolve(outPath);
  const src = path.resolve(ckpt.path);
  const isDir = ckpt.family === "hf";
  if (isDir && (out + path.sep).startsWith(src + path.sep) && out !== src) {
    throw new QzoError(`${outPath}: the output directory is inside the input model directory ${ckpt.path}: expected a path outside it`);
  }
  const parent = path.dirname(out);
  try {
    fs.mkdirSync(parent, { recursive: true });
  } catch (e) {
    throw new QzoError(`${outPath}: cannot create the output directory ${parent}: ${fsMessage(e)}`);
  }
  if (isDir && fs.existsSync(out) && !fs.statSync(out).isDirectory()) {
    throw new QzoError(`${outPath}: exists and is not a directory: expected a directory path for a Hugging Face model`);
  }
  removeStaleTemps(parent, path.basename(out));
  const tmp = path.join(parent, `.${path.basename(out)}.tmp-${process.pid}-${Date.now()}`);
  const fds = new Map<string, number>();
  const written = new Map<string, { end: number; sha: string; what: string }>();
  let bytesPatched = 0;
  try {
    // 1. The copy.
    try {
      // dereference: a Hugging Face cache directory links its files to shared blobs, which the
      // patches below must never reach.
      if (isDir) fs.cpSync(src, tmp, { recursive: true, errorOnExist: true, force: false, dereference: true });
      else fs.copyFileSync(src, tmp);
      // The copy is ours to patch (and the user's to change), whatever the input's mode.
      makeWritable(tmp);
    } catch (e) {
      throw new QzoError(`${outPath}: cannot copy ${ckpt.path} to ${tmp}: ${fsMessage(e)}`);
    }
    const target = (file: string): string => (isDir ? path.join(tmp, path.relative(src, path.resolve(file))) : tmp);
    // 2. The patches, one trainable tensor at a time.
    // The trainable tensors of each parameter layer together (scales and mins may share bytes).
    const groups = new Map<string, { t: TrainableTensor; values: Float32Array }[]>();
    trainables.forEach((t, i) => {
      const v = values[i];
      if (!(v instanceof Float32Array)) throw new QzoError(`${outPath}: the values of ${label(t)} are not a Float32Array`);
      const key = `${t.param}#${t.layer ?? ""}`;
      groups.set(key, [...(groups.get(key) ?? []), { t, values: v }]);
    });
    for (const group of groups.values()) {
      const t = group[0]!.t;
      for (const p of patchesFor(bound, group, env)) {
        const key = `${p.file}@${p.offset}`;
        const sha = createHash("sha256").update(p.bytes).digest("hex");
        const prev = written.get(key);
        if (prev) {
          if (prev.end !== p.offset + p.bytes.length || prev.sha !== sha) {
            throw new QzoError(`${outPath}: ${label(t)} and ${prev.what} are stored in the same bytes of ${p.what} with different trained values: train only one of them`);
          }
          continue;
        }
        for (const [k, w] of written) {
          const [f, off] = [k.slice(0, k.lastIndexOf("@")), Number(k.slice(k.lastIndexOf("@") + 1))];
          if (f === p.file && off < p.offset + p.bytes.length && p.offset < w.end) {
            throw new QzoError(`${outPath}: ${label(t)} overlaps the bytes written for ${w.what} in ${p.what}`);
          }
        }
        written.set(key, { end: p.offset + p.bytes.length, sha, what: label(t) });
        const dest = target(p.file);
        let fd = fds.get(dest);
        if (fd === undefined) {
          fd = fs.openSync(dest, "r+");
          fds.set(dest, fd);
        }
        writeAllAt(fd, p.bytes, p.offset);
        bytesPatched += p.bytes.length;
      }
    }
    for (const fd of fds.values()) fs.fsyncSync(fd);
    for (const [k, fd] of fds) {
      fs.closeSync(fd);
      fds.delete(k);
    }
    // 3. Into place.
    commit(tmp, out, isDir, outPath);
  } catch (e) {
    for (const fd of fds.values()) fs.closeSync(fd);
    fs.rmSync(tmp, { recursive: true, force: true });
    if (e instanceof QzoError) throw e;
    throw new QzoError(`${outPath}: cannot write the exported model: ${fsMessage(e)}`);
  }
  return { path: out, tensors: trainables.length, bytesPatched };
}

function commit(tmp: string, out: string, isDir: boolean, shown: string): void {
  if (!isDir) {
    try {
      fs.renameSync(tmp, out);
    } catch (e) {
      throw new QzoError(`${shown}: cannot write the exported model: ${fsMessage(e)}${(e as NodeJS.ErrnoException).code === "EISDIR" ? ", expected a file path" : ""}`);
    }
    return;
  }
  if (!fs.existsSync(out)) {
    fs.renameSync(tmp, out);
    return;
  }
  const aside = path.join(path.dirname(out), `.${path.basename(out)}.old-${process.pid}-${Date.now()}`);
  fs.renameSync(out, aside);
  try {
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.renameSync(aside, out);
    throw e;
  }
  fs.rmSync(aside, { recursive: true, force: true });
}

/** u+w on a file, or on a directory and everything in it. */
function makeWritable(p: string): void {
  const st = fs.statSync(p);
  fs.chmodSync(p, st.mode | 0o200);
  if (st.isDirectory()) for (const e of fs.readdirSync(p)) makeWritable(path.join(p, e));
}

/**
 * Writes the model with a scales checkpoint's trained values (checked against the model file by
 * `modelSha`), in the input's format; the result says which step the values are from.
 */
export function exportCheckpoint(bound: BoundModel, checkpoint: string, out: string, modelSha: () => string): ExportResult & { step: number } {
  if (!fs.existsSync(checkpoint)) throw new QzoError(`${checkpoint}: no such file`);
  const trainables = trainableTensors(bound.module);
  const c = loadScalesCheckpoint(checkpoint, { trainables, modelSha256: modelSha() });
  return { ...exportModel(bound, trainables, c.values, out), step: c.step };
}
