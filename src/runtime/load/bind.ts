/**
 * Binds a spec to a checkpoint: picks the spec from the file's architecture,
 * fills the config from the metadata keys the spec names, sets each `format`
 * config entry from the storage of the tensors it types, re-checks the spec
 * with those values, and serves each parameter's weights on demand, read from
 * the checkpoint names the spec declares for the file's family (with layer
 * slices and load transforms). Nothing here knows a file format's tensor
 * names: they all come from the spec.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../util/package-root.js";
import { checkFile } from "../../compiler/check.js";
import { CompileError, diagnosticHeadline } from "../../compiler/diagnostics.js";
import type { FormatIR, ModuleIR, ParamIR, SourceNameIR } from "../../compiler/ir/ir.js";
import type { ConfigOverrides } from "../../compiler/sema/check.js";
import { QzoError } from "../../util/errors.js";
import type { ParamValue, WeightSource } from "../interpret/interpreter.js";
import { type TensorInfo, decodeBytesToF32, numElements } from "../model-files/index.js";
import { pack, unpack, unpackRaw } from "../quant/codec.js";
import { evalIntExpr } from "../../compiler/ir/int-expr.js";
import { additiveCodebook, paramLayers, scaleCount } from "../../compiler/ir/queries.js";
import type { PackedTensor } from "../quant/types.js";
import { type Checkpoint, openCheckpoint } from "./checkpoint.js";

/** The architectures with a shipped spec: the names of models/*.qzo. */
function shippedArchitectures(): string[] {
  return readdirSync(join(packageRoot(), "models"))
    .filter((f) => /^[a-z0-9_]+\.qzo$/.test(f))
    .map((f) => f.replace(/\.qzo$/, ""))
    .sort();
}

/**
 * The shipped spec for an architecture name (models/<arch>.qzo). The name comes from the model
 * file, so it only ever selects one of the shipped specs: it is compared with their names, never
 * used to build a path.
 */
export function specForArchitecture(arch: string, file: string): string {
  const known = shippedArchitectures();
  const name = known.find((k) => k === arch);
  if (name === undefined) {
    const shown = arch ? JSON.stringify(arch.length > 64 ? `${arch.slice(0, 64)}...` : arch) : "(none named)";
    throw new QzoError(`${file}: no shipped spec for architecture ${shown} (specs: ${known.join(", ")}); pass --spec FILE`);
  }
  return join(packageRoot(), "models", `${name}.qzo`);
}

/** Tensor dtypes that hold the records of a record-layout format as plain bytes. */
const RAW_BYTES = ["U8", "I8"];

/** A weight as stored: float values, or a quantized tensor in its packed form. */
export type StoredWeight =
  | { kind: "float"; shape: number[]; data: Float32Array; tensor: string }
  | { kind: "quant"; packed: PackedTensor; tensor: string };

export interface BoundModel {
  module: ModuleIR;
  spec: string;
  checkpoint: Checkpoint;
  /** The config values that came from the file (and from `set`). */
  overrides: ConfigOverrides;
  stored(param: string, layer: number | undefined): StoredWeight;
  weights: WeightSource;
}

export function bindModel(path: string, opts: { spec?: string; set?: ConfigOverrides } = {}): BoundModel {
  const ckpt = openCheckpoint(path);
  const spec = opts.spec ?? specForArchitecture(ckpt.architecture, path);
  const user = opts.set ?? {};
  const first = check(spec, user);
  const meta = metadataOverrides(first, ckpt);
  // The parameter shapes at the file's sizes, for telling formats apart by their tensors' shapes
  // (every format entry f32 here, so that no storage constrains the shapes).
  const floats = Object.fromEntries(first.config.filter((c) => c.value.type === "format").map((c) => [c.name, "f32"]));
  const sized = check(spec, { ...meta, ...user, ...floats }, { path, meta });
  const overrides: ConfigOverrides = { ...meta, ...storageOverrides(sized, ckpt), ...user };
  const module = check(spec, overrides, { path, meta: overrides });
  const formats = new Map(module.formats.map((f) => [f.name, f]));
  const env = configEnv(module);
  checkAllTensorsUsed(ckpt, module, formats, env, spec);

  const storedCache = new Map<string, StoredWeight>();
  const stored = (param: string, layer: number | undefined): StoredWeight => {
    const key = `${param}#${layer ?? ""}`;
    let w = storedCache.get(key);
    if (!w) {
      const p = module.params.find((q) => q.name === param);
      if (!p) throw new QzoError(`${spec}: no parameter '${param}'`);
      w = loadWeight(ckpt, p, layer, formats, env);
      storedCache.set(key, w);
    }
    return w;
  };
  const valueCache = new Map<string, ParamValue>();
  const weights: WeightSource = {
    get(param, layer) {
      const key = `${param}#${layer ?? ""}`;
      let v = valueCache.get(key);
      if (!v) {
        const s = stored(param, layer);
        v = s.kind === "float" ? { kind: "float", shape: s.shape, data: s.data } : { kind: "quant", tensor: unpack(s.packed) };
        valueCache.set(key, v);
      }
      return v;
    },
  };
  return { module, spec, checkpoint: ckpt, overrides, stored, weights };
}

/**
 * The spec checked with config values. A spec that fails on its own gets its diagnostics; one that
 * fails only with the values a model file gave (`from`) is that file's error, in one line.
 */
function check(spec: string, overrides: ConfigOverrides, from?: { path: string; meta: ConfigOverrides }): ModuleIR {
  const r = checkFile(spec, overrides);
  if (r.diagnostics.length && from) {
    const values = Object.entries(from.meta).map(([k, v]) => `${k} = ${v}`).join(", ");
    throw new QzoError(`${from.path}: does not fit ${spec} with the values it holds (${values}): ${diagnosticHeadline(r.diagnostics[0]!)}`);
  }
  if (r.diagnostics.length) throw new CompileError(r.diagnostics);
  if (r.modules.length !== 1) throw new QzoError(`${spec}: declares ${r.modules.length} models, expected one`);
  return r.modules[0]!;
}

/** Checkpoint tensors that are not weights of any model (Hugging Face RoPE caches, GPTQ act-order indices). */
const NOT_WEIGHTS = [/(^|\.)rotary_emb\.inv_freq$/, /\.g_idx$/];

/**
 * Every tensor of the file is a weight the spec reads, as llama.cpp requires: a file with more
 * layers than its config says (or tensors the spec does not know) is refused rather than silently
 * read in part.
 */
function checkAllTensorsUsed(ckpt: Checkpoint, m: ModuleIR, formats: Map<string, FormatIR>, env: Record<string, number>, spec: string): void {
  const used = new Set<string>();
  for (const p of m.params) {
    for (const layer of paramLayers(p, new Map(Object.entries(env)))) {
      const found = findTensor(ckpt, p, layer, [...formats.values()], env);
      if (!found) continue;
      used.add(found.name);
      for (const t of Object.values(found.parts ?? {})) used.add(t.name);
      for (const t of found.companions ?? []) used.add(t);
    }
  }
  const unused = [...ckpt.tensors.keys()].filter((n) => !used.has(n) && !NOT_WEIGHTS.some((re) => re.test(n)));
  if (unused.length) {
    throw new QzoError(
      `${ckpt.path}: tensor '${unused[0]}'${unused.length > 1 ? ` and ${unused.length - 1} more` : ""} ${unused.length > 1 ? "are" : "is"} not read by ${spec}: ` +
        `expected every tensor of the file to be a weight of the model (is its layer count, or its config, what the file holds?)`,
    );
  }
}

function configEnv(m: ModuleIR): Record<string, number> {
  const env: Record<string, number> = {};
  for (const c of m.config) if (c.value.type === "int") env[c.name] = c.value.value;
  return env;
}

/** Config values from the metadata keys each entry names for this family. */
function metadataOverrides(m: ModuleIR, ckpt: Checkpoint): ConfigOverrides {
  const out: ConfigOverrides = {};
  for (const c of m.config) {
    for (const src of c.sources[ckpt.family] ?? []) {
      let v = ckpt.meta(src.tensor);
      if (v === undefined || v === null) continue;
      if (src.transforms.some((t) => t.name === "length")) v = Array.isArray(v) ? v.length : undefined;
      if (typeof v === "number" && Number.isFinite(v)) {
        out[c.name] = c.value.type === "int" ? Math.abs(v) : v;
        break;
      }
    }
  }
  return out;
}

/** The storage (dtype or format name) a checkpoint tensor has, for a spec with these formats. */
function storageOf(ckpt: Checkpoint, p: ParamIR, formats: FormatIR[], env: Record<string, number>): { storage: string; tensor: string } | undefined {
  const found = findTensor(ckpt, p, p.array ? Number(evalIntExpr(p.array.from, env)) : undefined, formats, env);
  if (!found) return undefined;
  if (found.format) return { storage: found.format.name, tensor: found.name };
  const dt = found.info.dtype;
  // Raw bytes (a record format in safetensors) do not say which format: the spec or --set does.
  if (RAW_BYTES.includes(dt)) return undefined;
  if (dt === "F32" || dt === "F16" || dt === "BF16") return { storage: dt.toLowerCase(), tensor: found.name };
  const f = formats.find((x) => x.name === dt.toLowerCase());
  if (!f) {
    throw new QzoError(`${ckpt.path}: tensor '${found.name}' is ${dt}, a type the spec declares no format for (formats: ${formats.map((x) => x.name).join(", ")})`);
  }
  return { storage: f.name, tensor: found.name };
}

/** Each `format` config entry set from the tensors it types; a fallback dtype does not set it. */
function storageOverrides(m: ModuleIR, ckpt: Checkpoint): ConfigOverrides {
  const out: ConfigOverrides = {};
  const from: Record<string, string> = {};
  const env = configEnv(m);
  for (const p of m.params) {
    if (!p.storageEntry) continue;
    const s = storageOf(ckpt, p, m.formats, env);
    if (!s) continue;
    const entry = p.storageEntry;
    if (p.fallback === s.storage && out[entry] === undefined) continue;
    if (out[entry] !== undefined && out[entry] !== s.storage) {
      if (p.fallback === s.storage) continue;
      throw new QzoError(`${ckpt.path}: tensors typed by config entry '${entry}' have different storage: '${from[entry]}' is ${out[entry]}, '${s.tensor}' is ${s.storage}`);
    }
    out[entry] = s.storage;
    from[entry] = s.tensor;
  }
  return out;
}

interface Found {
  name: string;
  info: TensorInfo;
  source: SourceNameIR;
  /** For a format stored as separate tensors: the format and its tensors by layout name. */
  format?: FormatIR;
  parts?: Record<string, TensorInfo>;
  /** Tensors beside the weight that restate its format (bitsandbytes' quant_map and quant_state), checked. */
  companions?: string[];
}

/**
 * bitsandbytes keeps, beside each 4-bit weight X.weight, its lookup table (X.weight.quant_map) and
 * its settings as JSON bytes (X.weight.quant_state.bitsandbytes__nf4: quant_type, blocksize, dtype,
 * shape). Where the file has them, they must say what the format declares: the same table, block
 * size and [out, in].
 */
function bnbCompanions(ckpt: Checkpoint, code: string, f: FormatIR, dims: { out: number; in: number }): string[] {
  const mapName = `${code}.quant_map`;
  const states = [...ckpt.tensors.keys()].filter((n) => n.startsWith(`${code}.quant_state.bitsandbytes__`));
  if (!ckpt.tensors.has(mapName) && !states.length) return [];
  const bad = (what: string) => new QzoError(`${ckpt.path}: ${what}, but format '${f.name}' is read here`);
  for (const st of states) {
    let q: unknown;
    try {
      q = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(ckpt.read(st)));
    } catch {
      throw bad(`'${st}' is not UTF-8 JSON`);
    }
    const o = (q ?? {}) as Record<string, unknown>;
    if (o["quant_type"] !== f.name) throw bad(`'${st}' says quant_type ${JSON.stringify(o["quant_type"])}`);
    if (o["blocksize"] !== f.block.size) throw bad(`'${st}' says blocksize ${JSON.stringify(o["blocksize"])}, not ${f.block.size}`);
    if (!Array.isArray(o["shape"]) || o["shape"][0] !== dims.out || o["shape"][1] !== dims.in) throw bad(`'${st}' says shape ${JSON.stringify(o["shape"])}, not [${dims.out}, ${dims.in}]`);
  }
  const table = f.codebooks.find((c) => c.name === f.code.lookup)?.values;
  const info = ckpt.tensors.get(mapName);
  if (info) {
    const got = decodeBytesToF32(info, ckpt.read(mapName));
    if (!table || got.length !== table.length || got.some((v, i) => v !== Math.fround(table[i]!))) throw bad(`'${mapName}' is not the lookup table of ${f.name}`);
  }
  return [...states, ...(info ? [mapName] : [])];
}

function tensorName(src: SourceNameIR, layer: number | undefined): string {
  return src.tensor.replace(/\{[^}]*\}/g, String(layer ?? ""));
}

function findTensor(ckpt: Checkpoint, p: ParamIR, layer: number | undefined, formats: FormatIR[], env: Record<string, number>): Found | undefined {
  for (const src of p.sources[ckpt.family] ?? []) {
    const name = tensorName(src, layer);
    const info = ckpt.tensors.get(name);
    // A float tensor, or raw bytes that no format stored as tensors claims (a record format).
    const plain: Found | undefined = info && { name, info, source: src };
    if (plain && !RAW_BYTES.includes(info!.dtype)) return plain;
    // A format stored as separate tensors beside the weight's name (GPTQ: x.qweight, x.qzeros, x.scales;
    // bitsandbytes: x.weight, x.weight.absmax): the one whose declared tensors, at this parameter's
    // [out, in], have the dtypes and shapes in the file (size-1 dimensions aside).
    if (p.type.shape.length !== 2) {
      if (plain) return plain;
      continue;
    }
    const prefix = name.replace(/[^.]*$/, "");
    const [out, inn] = p.type.shape;
    const dims = () => ({ out: evalIntExpr(out!, env), in: evalIntExpr(inn!, env) });
    const expected: string[] = [];
    const seen = new Map<string, TensorInfo>();
    for (const f of formats) {
      if (f.layout.kind !== "tensors") continue;
      const fields = f.layout.fields;
      const parts: Record<string, TensorInfo> = {};
      for (const fld of fields) {
        const t = ckpt.tensors.get(prefix + fld.tensor);
        if (t) {
          parts[fld.tensor] = t;
          seen.set(t.name, t);
        }
      }
      if (!fields.every((fld) => parts[fld.tensor])) continue;
      const squeeze = (sh: readonly number[]) => sh.filter((d) => d !== 1);
      const want = fields.map((fld) => ({ tensor: fld.tensor, dtype: fld.dtype as string, shape: fld.shape.map((e) => evalIntExpr(e, dims())), squeezed: true }));
      // Additive codebooks (AQLM) are a tensor of their own beside the codes; its size-1 dimensions
      // (AQLM's out_group_size of 1: [M, K, 1, V]) do not count.
      const cb = additiveCodebook(f);
      if (cb?.tensor !== undefined) {
        const t = ckpt.tensors.get(prefix + cb.tensor);
        if (t) parts[cb.tensor] = t;
        want.push({ tensor: cb.tensor, dtype: cb.dtype, shape: cb.shape, squeezed: true });
      }
      const fits = want.every((w) => {
        const t = parts[w.tensor];
        return t !== undefined && t.dtype.toLowerCase() === w.dtype && (w.squeezed ? sameShape(squeeze(t.shape), squeeze(w.shape)) : sameShape(t.shape, w.shape));
      });
      if (fits) {
        const code = prefix + fields.find((x) => x.field === "code")!.tensor;
        return { name: prefix + fields[0]!.tensor, info: parts[fields[0]!.tensor]!, source: src, format: f, parts, companions: bnbCompanions(ckpt, code, f, dims()) };
      }
      expected.push(`${f.name} ${want.map((w) => `${w.tensor} ${w.dtype}[${w.shape.join(", ")}]`).join(", ")}`);
    }
    if (plain) return plain;
    if (expected.length) {
      const have = [...seen.values()].map((t) => `${t.name} ${t.dtype.toLowerCase()}[${t.shape.join(", ")}]`);
      throw new QzoError(
        `${ckpt.path}: ${have.join(", ")} match no format of parameter '${p.name}' [${dims().out}, ${dims().in}]: expected ${expected.join("; or ")}`,
      );
    }
  }
  return undefined;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function loadWeight(ckpt: Checkpoint, p: ParamIR, layer: number | undefined, formats: Map<string, FormatIR>, env: Record<string, number>): StoredWeight {
  const found = findTensor(ckpt, p, layer, [...formats.values()], env);
  if (!found) {
    const tried = (p.sources[ckpt.family] ?? []).map((s) => `"${tensorName(s, layer)}"`).join(", ");
    const what = layer === undefined ? `parameter '${p.name}'` : `parameter '${p.name}' layer ${layer}`;
    throw new QzoError(`${ckpt.path}: no tensor for ${what} (tried ${tried || `nothing: the spec names no '${ckpt.family}' source`})`);
  }
  const shape = p.type.shape.map((d) => evalIntExpr(d, env));
  const fmt = formats.get(p.resolved);
  const label = `'${found.name}'${found.source.index !== undefined ? `[${layer}]` : ""}`;
  if (found.format) {
    if (fmt?.name !== found.format.name) throw new QzoError(`${ckpt.path}: ${label} is stored as ${found.format.name}, but parameter '${p.name}' is ${p.resolved}`);
    const storage: Record<string, Uint8Array> = {};
    for (const [k, info] of Object.entries(found.parts!)) storage[k] = ckpt.read(info.name);
    const packed = permutePackedRows({ format: fmt, rows: shape[0]!, cols: shape[1]!, storage }, found.source.transforms, env, label, ckpt.path);
    return { kind: "quant", packed, tensor: found.name };
  }
  let info = found.info;
  let bytes = ckpt.read(found.name);
  let tshape = [...info.shape];
  if (found.source.index !== undefined) {
    const idx = evalIntExpr(found.source.index, { ...env, [p.array?.var ?? "l"]: layer ?? 0 });
    const n = tshape[0]!;
    if (idx < 0 || idx >= n) throw new QzoError(`${ckpt.path}: ${label}: index ${idx} is outside the ${n} slices of '${found.name}'`);
    const per = bytes.length / n;
    bytes = bytes.subarray(idx * per, (idx + 1) * per);
    tshape = tshape.slice(1);
    info = { ...info, shape: tshape, byteLength: per };
  }
  const dt = info.dtype;
  if (fmt?.layout.kind === "record" && RAW_BYTES.includes(dt)) {
    // A record format stored as raw bytes (safetensors has no dtype for it): the records, in order.
    const rows = shape[0]!;
    const cols = shape[1]!;
    const want = scaleCount(fmt, rows, cols) * fmt.layout.bytes;
    if (bytes.length !== want) throw new QzoError(`${ckpt.path}: ${label} holds ${bytes.length} bytes, but ${fmt.name} [${rows}, ${cols}] records take ${want}`);
    let blocks = bytes;
    for (const t of found.source.transforms) blocks = permuteRowBytes(blocks, rows, t, env, label, ckpt.path);
    return { kind: "quant", packed: { format: fmt, rows, cols, storage: { blocks } }, tensor: found.name };
  }
  for (const t of found.source.transforms) {
    if (t.name === "transpose") tshape = [tshape[1]!, tshape[0]!];
    if (t.name === "flatten") tshape = [tshape[0]!, numElements(tshape.slice(1))];
  }
  if (tshape.length !== shape.length || tshape.some((d, i) => d !== shape[i])) {
    throw new QzoError(`${ckpt.path}: ${label} has shape [${tshape.join(", ")}], but parameter '${p.name}' is [${shape.join(", ")}] (${p.type.shape.join(", ")})`);
  }
  if (fmt) {
    if (dt.toLowerCase() !== fmt.name) throw new QzoError(`${ckpt.path}: ${label} is ${dt}, but parameter '${p.name}' is ${fmt.name}`);
    const rows = shape[0]!;
    const cols = shape[1]!;
    let blocks = bytes;
    for (const t of found.source.transforms) blocks = permuteRowBytes(blocks, rows, t, env, label, ckpt.path);
    return { kind: "quant", packed: { format: fmt, rows, cols, storage: { blocks } }, tensor: found.name };
  }
  if (dt !== "F32" && dt !== "F16" && dt !== "BF16") {
    throw new QzoError(`${ckpt.path}: ${label} is ${dt}, but parameter '${p.name}' is ${p.resolved}`);
  }
  let data = decodeBytesToF32(info, bytes);
  for (const t of found.source.transforms) {
    if (t.name === "transpose") data = transpose(data, tshape[1]!, tshape[0]!);
    else data = new Float32Array(permuteRowBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), shape[0]!, t, env, label, ckpt.path).buffer);
  }
  if (data.length !== numElements(shape)) throw new QzoError(`${ckpt.path}: ${label} has ${data.length} values, expected ${numElements(shape)}`);
  return { kind: "float", shape, data, tensor: found.name };
}

/**
 * Reorders whole rows for the RoPE conventions. Hugging Face keeps, within each head of hd rows,
 * row k*(hd/2) + j where llama2.c and GGUF keep row 2j + k (k = 0, 1).
 */
export function permuteRowBytes(bytes: Uint8Array, rows: number, t: { name: string; args: string[] }, env: Record<string, number>, label: string, file: string): Uint8Array {
  if (t.name !== "unpermute_rope" && t.name !== "permute_rope") {
    if (t.name === "transpose") throw new QzoError(`${file}: ${label}: a quantized tensor cannot be transposed on load`);
    return bytes;
  }
  const heads = evalIntExpr(t.args[0]!, env);
  const hd = rows / heads;
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new QzoError(`${file}: ${label}: ${rows} rows do not split into ${heads} heads of an even size`);
  const rowBytes = bytes.length / rows;
  const out = new Uint8Array(bytes.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < hd / 2; j++) {
      for (let k = 0; k < 2; k++) {
        const half = h * hd + k * (hd / 2) + j;
        const pair = h * hd + 2 * j + k;
        const [from, to] = t.name === "unpermute_rope" ? [half, pair] : [pair, half];
        out.set(bytes.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
      }
    }
  }
  return out;
}

/**
 * permuteRowBytes for a format stored as tensors, where a row (an `out` index) is not a run of bytes
 * (GPTQ keeps rows as columns of qweight and packs 8 of them per qzeros word): unpack the raw
 * fields, reorder the rows of the codes and of the per-row or per-block-along-`in` scales, zeros
 * and mins, and pack again.
 */
function permutePackedRows(p: PackedTensor, transforms: { name: string; args: string[] }[], env: Record<string, number>, label: string, file: string): PackedTensor {
  if (!transforms.some((t) => t.name === "unpermute_rope" || t.name === "permute_rope" || t.name === "transpose")) return p;
  const f = p.format;
  if (f.scale.per === "block" && f.block.axis !== "in") {
    throw new QzoError(`${file}: ${label}: format '${f.name}' shares scales across rows (blocks along ${f.block.axis}), so its rows cannot be reordered on load`);
  }
  const raw = unpackRaw(p);
  const rows = (a: Int32Array | Float32Array, t: { name: string; args: string[] }) =>
    permuteRowBytes(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), p.rows, t, env, label, file).buffer;
  for (const t of transforms) {
    raw.codes = new Int32Array(rows(raw.codes, t));
    if (f.scale.per === "tensor") continue;
    raw.scales = new Float32Array(rows(raw.scales, t));
    if (raw.zeros) raw.zeros = new Int32Array(rows(raw.zeros, t));
    if (raw.mins) raw.mins = new Float32Array(rows(raw.mins, t));
  }
  return pack(f, p.rows, p.cols, raw);
}

function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}
