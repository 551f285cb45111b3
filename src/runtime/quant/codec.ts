/**
 * The generic codec: packs and unpacks a quantized matrix of any declared
 * format, driven only by its FormatIR (no per-format code).
 *
 * Both layout kinds reduce to one primitive. A record layout gives each
 * field's start bit in the record read as a little-endian bit stream; records
 * follow each other in row-major block order (the order of the scale tensor,
 * ./types.ts). A tensors layout gives, per field, a storage tensor of
 * little-endian words, the element's index into it and an optional bit
 * within the word; since the words are little-endian, bit k of word w is bit
 * `w*wordBits + k` of the tensor's bytes read as a little-endian bit stream.
 * So every field of every element is "width bits at bit position P of buffer
 * X", read or written by readBits/writeBits.
 *
 * Codes are the raw stored integers (two's complement for iN, plain for uN;
 * 32-bit unsigned codes travel as their int32 bit pattern). Scales and mins
 * are converted between storage (f16, bf16, f32) and float32 on bit patterns
 * only, so every stored pattern, NaN payloads included, round-trips exactly;
 * float32 -> f16/bf16 rounds to nearest even.
 */
import { DTYPE_BITS, type CodebookIR, type FloatDType, type FormatIR, type RecordLayoutIR, type TensorFieldIR, type TensorsLayoutIR } from "../../compiler/ir/ir.js";
import { QzoError } from "../../util/errors.js";
import { compileIntExpr, evalIntExpr, type IntFn } from "../../compiler/ir/int-expr.js";
import { additiveCodebook, scaleCount } from "../../compiler/ir/queries.js";
import { type PackedTensor, type UnpackedTensor, scaleIndex } from "./types.js";
import { fromF32Bits, roundToDType, toF32Bits } from "../../util/float-bits.js";

/** A quantized matrix as its raw stored fields (what pack consumes and unpackRaw produces). */
export interface RawQuant {
  /**
   * Raw stored codes, row-major [rows, cols, M]: M codes per element for a format with M additive
   * codebooks (the elements of a codebook vector repeat their group's codes), else one.
   */
  codes: Int32Array;
  /** Additive codebooks: their values as stored in the checkpoint, [M, entries, V], as float32. */
  codebooks?: Float32Array;
  /** One per scale (scale-tensor order, see ./types.ts), as float32. */
  scales: Float32Array;
  /** Raw stored zero-points (before `adjust`), one per scale; required when the format has a zero. */
  zeros?: Int32Array;
  /** One per scale; required when the format has a min. */
  mins?: Float32Array;
}

type Field = "scale" | "zero" | "min" | "code";


function bitsView(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

// ------------------------------------------------------------------ bit streams

/** Reads `width` (1..32) bits at bit `pos` of a little-endian bit stream; unsigned result. */
function readBits(buf: Uint8Array, pos: number, width: number): number {
  let byte = Math.floor(pos / 8);
  let off = pos - byte * 8;
  if (off === 0) {
    if (width === 8) return buf[byte]!;
    if (width === 16) return buf[byte]! | (buf[byte + 1]! << 8);
    if (width === 32) return (buf[byte]! | (buf[byte + 1]! << 8) | (buf[byte + 2]! << 16) | (buf[byte + 3]! << 24)) >>> 0;
  }
  if (off + width <= 8) return (buf[byte]! >>> off) & ((1 << width) - 1);
  let v = 0;
  let got = 0;
  while (got < width) {
    const take = Math.min(8 - off, width - got);
    v += ((buf[byte]! >>> off) & ((1 << take) - 1)) * 2 ** got;
    got += take;
    off = 0;
    byte++;
  }
  return v;
}

/** Writes the low `width` bits of the unsigned value v at bit `pos`. */
function writeBits(buf: Uint8Array, pos: number, width: number, v: number): void {
  let byte = Math.floor(pos / 8);
  let off = pos - byte * 8;
  let put = 0;
  while (put < width) {
    const take = Math.min(8 - off, width - put);
    const mask = ((1 << take) - 1) << off;
    const part = Math.floor(v / 2 ** put) & ((1 << take) - 1);
    buf[byte] = (buf[byte]! & ~mask) | (part << off);
    put += take;
    off = 0;
    byte++;
  }
}

function toSigned(u: number, bits: number): number {
  return u >= 2 ** (bits - 1) ? u - 2 ** bits : u;
}

// ------------------------------------------------------------------ placement of fields

interface Placement {
  /** Storage tensor name ("blocks" for records). */
  tensor: string;
  width: number;
  /** Bit position of code (r, c), for the code field. */
  codeBit?: (r: number, c: number, m?: number) => number;
  /** Bit position of per-scale field value s. */
  scaleBit?: (s: number) => number;
}

interface Plan {
  format: FormatIR;
  rows: number;
  cols: number;
  nScales: number;
  sizes: Record<string, number>;
  fields: Partial<Record<Field, Placement>>;
}

function fieldWidth(f: FormatIR, field: Field): number {
  switch (field) {
    case "code": return f.code.bits;
    case "scale": return DTYPE_BITS[f.scale.dtype];
    case "zero": return f.zero!.bits;
    case "min": return DTYPE_BITS[f.min!.dtype];
  }
}

function checkDims(f: FormatIR, rows: number, cols: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0) {
    throw new QzoError(`format '${f.name}': bad matrix shape [${rows}, ${cols}]`);
  }
  if (f.block.size > 0 && f.block.axis !== "flat") {
    const n = f.block.axis === "in" ? cols : rows;
    if (n % f.block.size !== 0) {
      const dim = f.block.axis === "in" ? `${cols} input columns` : `${rows} output rows`;
      throw new QzoError(`format '${f.name}': a [${rows}, ${cols}] matrix has ${dim}, not a multiple of the block size ${f.block.size}`);
    }
  }
}

/** A representative element (r, c) of scale s. */
function scaleElement(f: FormatIR, cols: number, s: number): [number, number] {
  if (f.scale.per === "tensor") return [0, 0];
  if (f.scale.per === "row") return [s, 0];
  const B = f.block.size;
  if (f.block.axis === "flat") return [Math.floor((s * B) / cols), (s * B) % cols];
  if (f.block.axis === "in") {
    const nb = cols / B;
    return [Math.floor(s / nb), (s % nb) * B];
  }
  return [Math.floor(s / cols) * B, s % cols];
}

function blockOf(f: FormatIR, cols: number, r: number, c: number): number {
  if (f.block.size === 0) return 0;
  return Math.floor((f.block.axis === "in" ? c : f.block.axis === "out" ? r : r * cols + c) / f.block.size);
}

function planRecord(f: FormatIR, lay: RecordLayoutIR, rows: number, cols: number): Plan {
  const B = f.block.size;
  const nScales = scaleCount(f, rows, cols);
  const recBits = lay.bytes * 8;
  const fields: Partial<Record<Field, Placement>> = {};
  for (const fl of lay.fields) {
    const width = fieldWidth(f, fl.field);
    if (fl.field === "code") {
      const fn = compileIntExpr(fl.bitExpr, fl.index ? [fl.index] : []);
      const within = new Float64Array(B);
      for (let i = 0; i < B; i++) within[i] = fn([i]);
      const nb = cols / B;
      fields.code = {
        tensor: "blocks",
        width,
        codeBit:
          f.block.axis === "in"
            ? (r, c) => (r * nb + Math.floor(c / B)) * recBits + within[c % B]!
            : (r, c) => (Math.floor(r / B) * cols + c) * recBits + within[r % B]!,
      };
    } else {
      const at = compileIntExpr(fl.bitExpr, [])([]);
      fields[fl.field] = { tensor: "blocks", width, scaleBit: (s) => s * recBits + at };
    }
  }
  return { format: f, rows, cols, nScales, sizes: { blocks: nScales * lay.bytes }, fields };
}

const TENSOR_VARS = ["r", "c", "b", "in", "out", "m"] as const;

function planTensors(f: FormatIR, lay: TensorsLayoutIR, rows: number, cols: number): Plan {
  const nScales = scaleCount(f, rows, cols);
  const dims = { in: cols, out: rows };
  const sizes: Record<string, number> = {};
  const fields: Partial<Record<Field, Placement>> = {};
  for (const fl of lay.fields) {
    const shape = fl.shape.map((e) => evalIntExpr(e, dims));
    const wordBits = DTYPE_BITS[fl.dtype];
    const bytes = (shape.reduce((a, d) => a * d, 1) * wordBits) / 8;
    if (sizes[fl.tensor] !== undefined && sizes[fl.tensor] !== bytes) {
      throw new QzoError(`format '${f.name}': storage tensor '${fl.tensor}' is declared with two different sizes`);
    }
    sizes[fl.tensor] = bytes;
    const bitPos = locate(f, fl, shape, wordBits, rows, cols);
    const width = fieldWidth(f, fl.field);
    if (fl.field === "code") fields.code = { tensor: fl.tensor, width, codeBit: bitPos };
    else {
      fields[fl.field] = {
        tensor: fl.tensor,
        width,
        scaleBit: (s) => {
          const [r, c] = scaleElement(f, cols, s);
          return bitPos(r, c);
        },
      };
    }
  }
  return { format: f, rows, cols, nScales, sizes, fields };
}

/** Bit position of field fl of element (r, c) in its storage tensor. */
function locate(f: FormatIR, fl: TensorFieldIR, shape: number[], wordBits: number, rows: number, cols: number): (r: number, c: number, m?: number) => number {
  const at = fl.at.map((e) => compileIntExpr(e, TENSOR_VARS));
  const bit: IntFn = fl.bit !== undefined ? compileIntExpr(fl.bit, TENSOR_VARS) : () => 0;
  const env = [0, 0, 0, cols, rows, 0];
  return (r, c, m = 0) => {
    env[0] = r;
    env[1] = c;
    env[2] = blockOf(f, cols, r, c);
    env[5] = m;
    let flat = 0;
    for (let k = 0; k < at.length; k++) {
      const v = at[k]!(env);
      if (!(v >= 0 && v < shape[k]!)) {
        throw new QzoError(
          `format '${f.name}': ${fl.field} of element (r=${r}, c=${c}) of a [${rows}, ${cols}] matrix lands at index ${v} of dimension ${k} of '${fl.tensor}', which has size ${shape[k]}`,
        );
      }
      flat = flat * shape[k]! + v;
    }
    return flat * wordBits + bit(env);
  };
}

function makePlan(f: FormatIR, rows: number, cols: number): Plan {
  checkDims(f, rows, cols);
  if (f.code.lookup !== undefined && !f.codebooks.some((b) => b.name === f.code.lookup)) throw new QzoError(`format '${f.name}': unknown codebook '${f.code.lookup}'`);
  const cb = additiveCodebook(f);
  if (!cb) return f.layout.kind === "record" ? planRecord(f, f.layout, rows, cols) : planTensors(f, f.layout, rows, cols);
  if (f.layout.kind !== "tensors" || cb.tensor === undefined) throw new QzoError(`format '${f.name}': additive codebook '${cb.name}' needs a tensors layout and a checkpoint tensor ('in "NAME"')`);
  const plan = planTensors(f, f.layout, rows, cols);
  const bytes = (cb.shape.reduce((a, d) => a * d, 1) * DTYPE_BITS[cb.dtype]) / 8;
  if (plan.sizes[cb.tensor] !== undefined) throw new QzoError(`format '${f.name}': codebook tensor '${cb.tensor}' is also a field's storage`);
  plan.sizes[cb.tensor] = bytes;
  return plan;
}

/** Codes per element: the number of additive codebooks, else 1. */
function codesPerElement(f: FormatIR): number {
  return additiveCodebook(f)?.shape[0] ?? 1;
}

// ------------------------------------------------------------------ public API

/** Expected byte size of each storage tensor of a [rows, cols] matrix (records: { blocks: ... }). */
export function storageBytes(format: FormatIR, rows: number, cols: number): Record<string, number> {
  return { ...makePlan(format, rows, cols).sizes };
}

function checkStorage(plan: Plan, storage: Record<string, Uint8Array>): void {
  const f = plan.format;
  for (const [name, need] of Object.entries(plan.sizes)) {
    const buf = storage[name];
    if (!buf) {
      throw new QzoError(`format '${f.name}': storage tensor '${name}' is missing (expected ${need} bytes for a [${plan.rows}, ${plan.cols}] matrix)`);
    }
    if (buf.byteLength !== need) {
      throw new QzoError(
        `format '${f.name}': storage tensor '${name}' has ${buf.byteLength} bytes, expected ${need} bytes for a [${plan.rows}, ${plan.cols}] matrix`,
      );
    }
  }
}

/** The raw stored fields of a packed matrix. */
export function unpackRaw(p: PackedTensor): RawQuant {
  const plan = makePlan(p.format, p.rows, p.cols);
  checkStorage(plan, p.storage);
  const f = p.format;
  const { rows, cols } = plan;
  const code = plan.fields.code!;
  const cbuf = p.storage[code.tensor]!;
  const M = codesPerElement(f);
  const codes = new Int32Array(rows * cols * M);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      for (let m = 0; m < M; m++) {
        const u = readBits(cbuf, code.codeBit!(r, c, m), code.width);
        codes[(r * cols + c) * M + m] = f.code.signed ? toSigned(u, code.width) : u | 0;
      }
    }
  }
  return { codes, ...fieldsOf(plan, p) };
}

/**
 * The stored fields of a packed matrix other than its codes (scales, zero-points, mins, additive
 * codebooks): what a kernel backend passes beside the code bytes, without decoding every code.
 */
export function unpackFields(p: PackedTensor): Omit<RawQuant, "codes"> {
  const plan = makePlan(p.format, p.rows, p.cols);
  checkStorage(plan, p.storage);
  return fieldsOf(plan, p);
}

function fieldsOf(plan: Plan, p: PackedTensor): Omit<RawQuant, "codes"> {
  const f = p.format;
  const { nScales } = plan;
  const floats = (pl: Placement, dtype: FloatDType): Float32Array => {
    const out = new Float32Array(nScales);
    const bits = bitsView(out);
    const buf = p.storage[pl.tensor]!;
    for (let s = 0; s < nScales; s++) bits[s] = toF32Bits(dtype, readBits(buf, pl.scaleBit!(s), pl.width));
    return out;
  };
  const raw: Omit<RawQuant, "codes"> = { scales: floats(plan.fields.scale!, f.scale.dtype) };
  const cb = additiveCodebook(f);
  if (cb) {
    const buf = p.storage[cb.tensor!]!;
    const width = DTYPE_BITS[cb.dtype];
    const books = new Float32Array(buf.byteLength / (width / 8));
    const bits = bitsView(books);
    for (let i = 0; i < books.length; i++) bits[i] = toF32Bits(cb.dtype, readBits(buf, i * width, width));
    raw.codebooks = books;
  }
  if (f.zero) {
    const pl = plan.fields.zero!;
    const buf = p.storage[pl.tensor]!;
    const zeros = new Int32Array(nScales);
    for (let s = 0; s < nScales; s++) {
      const u = readBits(buf, pl.scaleBit!(s), pl.width);
      zeros[s] = f.zero.signed ? toSigned(u, pl.width) : u | 0;
    }
    raw.zeros = zeros;
  }
  if (f.min) raw.mins = floats(plan.fields.min!, f.min.dtype);
  return raw;
}

/** The dequantization values of each code: offset, lookup table (rounded to its dtype). */
function lookupTable(f: FormatIR): Float32Array | undefined {
  if (f.code.lookup === undefined) return undefined;
  const cb = f.codebooks.find((b) => b.name === f.code.lookup)!;
  return Float32Array.from(cb.values!, (v) => roundToDType(cb.dtype, v));
}

/** Effective value of raw code q before the zero-point: table[q] or q - offset. */
export function codeValue(f: FormatIR, q: number, table = lookupTable(f)): number {
  if (table) {
    const idx = f.code.bits === 32 ? q >>> 0 : q < 0 ? q + 2 ** f.code.bits : q;
    return table[idx]!;
  }
  return (f.code.bits === 32 && !f.code.signed ? q >>> 0 : q) - f.code.offset;
}

/**
 * Turns raw stored fields into the unpacked form: values = (table[q] or q - offset) - (zero + adjust),
 * computed in float32. Lookup tables are indexed by the code's unsigned bit pattern.
 */
export function rawToUnpacked(format: FormatIR, rows: number, cols: number, raw: RawQuant): UnpackedTensor {
  checkRaw(format, rows, cols, raw);
  const f = format;
  const cb = additiveCodebook(f);
  if (cb) return { format: f, rows, cols, values: additiveValues(cb, rows, cols, raw), scales: raw.scales.slice() };
  const table = lookupTable(f);
  const values = new Float32Array(rows * cols);
  const zeros = raw.zeros;
  const adjust = f.zero?.adjust ?? 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const j = r * cols + c;
      let v = codeValue(f, raw.codes[j]!, table);
      if (zeros) v = Math.fround(v - (zeros[scaleIndex(f, cols, r, c)]! + adjust));
      values[j] = v;
    }
  }
  return {
    format: f,
    rows,
    cols,
    values,
    scales: raw.scales.slice(),
    ...(f.min ? { mins: raw.mins!.slice() } : {}),
  };
}

/**
 * The values of an additive-codebook matrix: value(r, c) = sum over m = 0..M-1, in order, of
 * book[m, q_m(r, c), c % V], each addition rounded to float32 (the kernels add in the same order).
 */
function additiveValues(cb: CodebookIR, rows: number, cols: number, raw: RawQuant): Float32Array {
  const [M, K, V] = [cb.shape[0]!, cb.shape[1]!, cb.shape[cb.shape.length - 1]!];
  const books = raw.codebooks!;
  const values = new Float32Array(rows * cols);
  for (let j = 0; j < rows * cols; j++) {
    const c = j % cols;
    let v = 0;
    for (let m = 0; m < M; m++) {
      const q = raw.codes[j * M + m]!;
      const idx = q < 0 ? q + K : q;
      if (!(idx >= 0 && idx < K)) throw new QzoError(`codebook '${cb.name}': code ${q} of element (${Math.floor(j / cols)}, ${c}) is outside its ${K} entries`);
      v = Math.fround(v + books[(m * K + idx) * V + (c % V)]!);
    }
    values[j] = v;
  }
  return values;
}

/** Unpacks a packed matrix (see UnpackedTensor). */
export function unpack(p: PackedTensor): UnpackedTensor {
  return rawToUnpacked(p.format, p.rows, p.cols, unpackRaw(p));
}

function checkRaw(f: FormatIR, rows: number, cols: number, raw: RawQuant): void {
  const n = scaleCount(f, rows, cols);
  const want = (what: string, got: number | undefined, need: number) => {
    if (got !== need) throw new QzoError(`format '${f.name}': ${what} has ${got ?? "no"} entries, expected ${need} for a [${rows}, ${cols}] matrix`);
  };
  want("codes", raw.codes.length, rows * cols * codesPerElement(f));
  want("scales", raw.scales.length, n);
  const cb = additiveCodebook(f);
  if (cb) want("codebooks", raw.codebooks?.length, cb.shape.reduce((a, d) => a * d, 1));
  if (f.zero) want("zeros", raw.zeros?.length, n);
  if (f.min) want("mins", raw.mins?.length, n);
}

function checkInt(f: FormatIR, what: string, v: number, signed: boolean, bits: number): number {
  if (bits === 32) return v >>> 0;
  const lo = signed ? -(2 ** (bits - 1)) : 0;
  const hi = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  if (!(v >= lo && v <= hi)) {
    throw new QzoError(`format '${f.name}': ${what} ${v} does not fit ${signed ? "i" : "u"}${bits} (${lo}..${hi})`);
  }
  return v < 0 ? v + 2 ** bits : v;
}

/** Packs raw stored fields into the format's storage; the exact inverse of unpackRaw. */
export function pack(format: FormatIR, rows: number, cols: number, raw: RawQuant): PackedTensor {
  const plan = makePlan(format, rows, cols);
  checkRaw(format, rows, cols, raw);
  const f = format;
  const storage: Record<string, Uint8Array> = {};
  for (const [name, n] of Object.entries(plan.sizes)) storage[name] = new Uint8Array(n);
  const code = plan.fields.code!;
  const cbuf = storage[code.tensor]!;
  const M = codesPerElement(f);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      for (let m = 0; m < M; m++) {
        const q = raw.codes[(r * cols + c) * M + m]!;
        writeBits(cbuf, code.codeBit!(r, c, m), code.width, checkInt(f, `code at (${r}, ${c})`, q, f.code.signed, code.width));
      }
    }
  }
  const cb = additiveCodebook(f);
  if (cb) {
    const width = DTYPE_BITS[cb.dtype];
    const bits = bitsView(raw.codebooks!);
    const buf = storage[cb.tensor!]!;
    for (let i = 0; i < bits.length; i++) writeBits(buf, i * width, width, fromF32Bits(cb.dtype, bits[i]!));
  }
  const floats = (pl: Placement, dtype: FloatDType, src: Float32Array) => {
    const bits = bitsView(src);
    const buf = storage[pl.tensor]!;
    for (let s = 0; s < plan.nScales; s++) writeBits(buf, pl.scaleBit!(s), pl.width, fromF32Bits(dtype, bits[s]!));
  };
  floats(plan.fields.scale!, f.scale.dtype, raw.scales);
  if (f.zero) {
    const pl = plan.fields.zero!;
    const buf = storage[pl.tensor]!;
    for (let s = 0; s < plan.nScales; s++) {
      writeBits(buf, pl.scaleBit!(s), pl.width, checkInt(f, `zero-point ${s}`, raw.zeros![s]!, f.zero.signed, pl.width));
    }
  }
  if (f.min) floats(plan.fields.min!, f.min.dtype, raw.mins!);
  return { format, rows, cols, storage };
}

/**
 * Dequantizes to a row-major [rows, cols] float32 matrix: w = scale * value (+ min), each operation
 * rounded to float32 as ggml does (a product, then a sum; no fused multiply-add).
 */
export function dequantize(u: UnpackedTensor): Float32Array {
  const { format: f, rows, cols, values, scales, mins } = u;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const j = r * cols + c;
      const s = scaleIndex(f, cols, r, c);
      const w = scales[s]! * values[j]!;
      out[j] = mins ? Math.fround(w) + mins[s]! : w;
    }
  }
  return out;
}

/** The same unpacked matrix with other scales (e.g. a perturbed or trained scale tensor). */
export function withScales(u: UnpackedTensor, scales: Float32Array): UnpackedTensor {
  const n = scaleCount(u.format, u.rows, u.cols);
  if (scales.length !== n) {
    throw new QzoError(`format '${u.format.name}': ${scales.length} scales given, expected ${n} for a [${u.rows}, ${u.cols}] matrix`);
  }
  return { ...u, scales };
}
