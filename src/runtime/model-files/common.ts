/**
 * Shared pieces of the model-file readers: the TensorInfo record, dtype sizes, a buffered forward
 * cursor over a file (for headers), lazy tensor reads, and decoding of the simple dtypes to float32.
 *
 * Nothing here knows about qzo's spec language: the readers describe files as found in the wild.
 */

import * as fs from "node:fs";
import { fileError, QzoError } from "../../util/errors.js";

/** Where a tensor lives and how it is stored. */
export interface TensorInfo {
  name: string;
  /** Storage type: "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "I32", "I8", "U8", ... */
  dtype: string;
  /** Logical shape, row-major, outermost first: a 2-D weight is [rows, cols] = [out, in]. */
  shape: number[];
  /** Absolute byte offset of the tensor's data in `file`. */
  byteOffset: number;
  /** Size of the data in bytes. */
  byteLength: number;
  /** Path of the file holding the data. */
  file: string;
  /** Byte offset in `file` where the tensor's dtype is declared (for error messages), if known. */
  dtypeOffset?: number;
  /** GGUF only: the raw ggml type id. */
  ggmlType?: number;
  /**
   * True when the dtype is unknown to qzo so the size could not be computed from the shape; byteLength
   * is then the distance to the next tensor's data (or the end of the file), an upper bound.
   */
  sizeUnknown?: boolean;
}

/** Elements per block and bytes per block of a storage type. */
export interface DTypeLayout {
  blockSize: number;
  typeSize: number;
}

/** Storage layouts of every dtype qzo can size (GGUF/ggml and safetensors names). */
export const DTYPE_LAYOUT: Readonly<Record<string, DTypeLayout>> = Object.freeze({
  F64: { blockSize: 1, typeSize: 8 },
  F32: { blockSize: 1, typeSize: 4 },
  F16: { blockSize: 1, typeSize: 2 },
  BF16: { blockSize: 1, typeSize: 2 },
  F8_E5M2: { blockSize: 1, typeSize: 1 },
  F8_E4M3: { blockSize: 1, typeSize: 1 },
  I64: { blockSize: 1, typeSize: 8 },
  U64: { blockSize: 1, typeSize: 8 },
  I32: { blockSize: 1, typeSize: 4 },
  U32: { blockSize: 1, typeSize: 4 },
  I16: { blockSize: 1, typeSize: 2 },
  U16: { blockSize: 1, typeSize: 2 },
  I8: { blockSize: 1, typeSize: 1 },
  U8: { blockSize: 1, typeSize: 1 },
  BOOL: { blockSize: 1, typeSize: 1 },
  Q4_0: { blockSize: 32, typeSize: 18 },
  Q4_1: { blockSize: 32, typeSize: 20 },
  Q5_0: { blockSize: 32, typeSize: 22 },
  Q5_1: { blockSize: 32, typeSize: 24 },
  Q8_0: { blockSize: 32, typeSize: 34 },
  Q8_1: { blockSize: 32, typeSize: 36 },
  Q2_K: { blockSize: 256, typeSize: 84 },
  Q3_K: { blockSize: 256, typeSize: 110 },
  Q4_K: { blockSize: 256, typeSize: 144 },
  Q5_K: { blockSize: 256, typeSize: 176 },
  Q6_K: { blockSize: 256, typeSize: 210 },
  Q8_K: { blockSize: 256, typeSize: 292 },
  IQ2_XXS: { blockSize: 256, typeSize: 66 },
  IQ2_XS: { blockSize: 256, typeSize: 74 },
  IQ3_XXS: { blockSize: 256, typeSize: 98 },
  IQ1_S: { blockSize: 256, typeSize: 50 },
  IQ4_NL: { blockSize: 32, typeSize: 18 },
  IQ3_S: { blockSize: 256, typeSize: 110 },
  IQ2_S: { blockSize: 256, typeSize: 82 },
  IQ4_XS: { blockSize: 256, typeSize: 136 },
  IQ1_M: { blockSize: 256, typeSize: 56 },
  TQ1_0: { blockSize: 256, typeSize: 54 },
  TQ2_0: { blockSize: 256, typeSize: 66 },
  MXFP4: { blockSize: 32, typeSize: 17 },
});

/** The dtypes decodeToF32 understands. */
export const DECODABLE_DTYPES: readonly string[] = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"];

/** Number of elements of a shape (1 for a scalar []). */
export function numElements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** "[2, 3]" */
export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** Opens a file for reading; a missing/unreadable file is a one-line QzoError. Returns fd and size. */
export function openForRead(file: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (e) {
    throw fileError(file, undefined, describeFsError(e, "open"));
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw fileError(file, undefined, "is a directory, expected a file");
    return { fd, size: st.size };
  } catch (e) {
    fs.closeSync(fd);
    if (e instanceof QzoError) throw e;
    throw fileError(file, undefined, describeFsError(e, "stat"));
  }
}

export function describeFsError(e: unknown, op: string): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") return "file not found";
  if (code === "EACCES" || code === "EPERM") return `cannot ${op}: permission denied`;
  if (code === "EISDIR") return "is a directory, expected a file";
  return `cannot ${op}: ${code ?? String((e as Error | undefined)?.message ?? e).split("\n")[0]}`;
}

/** readSync until `length` bytes are read or EOF; returns the number of bytes read. */
export function readFully(fd: number, into: Uint8Array, position: number, length = into.length): number {
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, into, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/**
 * A forward-only reader over a file that keeps a window of it in memory (for parsing headers without
 * loading the whole file). Every read names what it expected so a truncated file gives a precise error.
 */
export class FileCursor {
  readonly file: string;
  readonly size: number;
  private readonly fd: number;
  private buf: Buffer;
  private bufStart = 0;
  private bufEnd = 0;
  /** Absolute position of the next byte to read. */
  pos = 0;

  constructor(file: string, fd: number, size: number, chunk = 1 << 20) {
    this.file = file;
    this.fd = fd;
    this.size = size;
    this.buf = Buffer.allocUnsafe(chunk);
  }

  /** Bytes left between pos and the end of the file. */
  remaining(): number {
    return this.size - this.pos;
  }

  /** Throws a truncation error unless n bytes remain. */
  require(n: number, what: string): void {
    if (n > this.size - this.pos) {
      throw fileError(
        this.file,
        this.pos,
        `truncated ${what}: expected ${n} byte${n === 1 ? "" : "s"}, but the file ends at byte ${this.size}`,
      );
    }
  }

  /** Makes bytes [pos, pos + n) available in the window; returns their index in this.buf. */
  private window(n: number, what: string): number {
    this.require(n, what);
    if (this.pos >= this.bufStart && this.pos + n <= this.bufEnd) return this.pos - this.bufStart;
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
    const want = Math.min(this.buf.length, this.size - this.pos);
    const got = readFully(this.fd, this.buf, this.pos, want);
    if (got < n) {
      throw fileError(this.file, this.pos + got, `truncated ${what}: the file ends early (read error)`);
    }
    this.bufStart = this.pos;
    this.bufEnd = this.pos + got;
    return 0;
  }

  u8(what: string): number {
    const i = this.window(1, what);
    this.pos += 1;
    return this.buf[i]!;
  }
  i8(what: string): number {
    const i = this.window(1, what);
    this.pos += 1;
    return this.buf.readInt8(i);
  }
  u16(what: string): number {
    const i = this.window(2, what);
    this.pos += 2;
    return this.buf.readUInt16LE(i);
  }
  i16(what: string): number {
    const i = this.window(2, what);
    this.pos += 2;
    return this.buf.readInt16LE(i);
  }
  u32(what: string): number {
    const i = this.window(4, what);
    this.pos += 4;
    return this.buf.readUInt32LE(i);
  }
  i32(what: string): number {
    const i = this.window(4, what);
    this.pos += 4;
    return this.buf.readInt32LE(i);
  }
  u64(what: string): bigint {
    const i = this.window(8, what);
    this.pos += 8;
    return this.buf.readBigUInt64LE(i);
  }
  i64(what: string): bigint {
    const i = this.window(8, what);
    this.pos += 8;
    return this.buf.readBigInt64LE(i);
  }
  f32(what: string): number {
    const i = this.window(4, what);
    this.pos += 4;
    return this.buf.readFloatLE(i);
  }
  f64(what: string): number {
    const i = this.window(8, what);
    this.pos += 8;
    return this.buf.readDoubleLE(i);
  }
  /** A copy of the next n bytes. */
  bytes(n: number, what: string): Uint8Array {
    const i = this.window(n, what);
    this.pos += n;
    return Uint8Array.prototype.slice.call(this.buf, i, i + n);
  }
}

/** Converts a u64 read from a file to a number, or fails when it cannot be a valid size/offset. */
export function u64ToNumber(file: string, offset: number, v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw fileError(file, offset, `${what} ${v} is too large: expected at most 2^53-1`);
  }
  return Number(v);
}

/**
 * Reads a tensor's raw bytes from its file (one open + positioned reads; nothing else is loaded).
 */
export function readTensorBytes(info: TensorInfo): Uint8Array {
  if (info.sizeUnknown) {
    throw fileError(
      info.file,
      info.dtypeOffset ?? info.byteOffset,
      `cannot read tensor "${info.name}": its type ${info.dtype} is unknown, so its size is unknown`,
    );
  }
  const { fd, size } = openForRead(info.file);
  try {
    const end = info.byteOffset + info.byteLength;
    if (end > size) {
      throw fileError(
        info.file,
        info.byteOffset,
        `truncated data of tensor "${info.name}": expected ${info.byteLength} bytes ending at byte ${end}, but the file is ${size} bytes long`,
      );
    }
    const out = new Uint8Array(info.byteLength);
    const got = readFully(fd, out, info.byteOffset);
    if (got < info.byteLength) {
      throw fileError(
        info.file,
        info.byteOffset + got,
        `truncated data of tensor "${info.name}": expected ${info.byteLength} bytes, got ${got}`,
      );
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// Half-precision conversions (bit-exact, including subnormals, infinities and NaN payloads).

let f16Table: Uint32Array | undefined;

/** float32 bit pattern of an IEEE binary16 bit pattern. */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    let e = 113; // 127 - 15 + 1
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    mant &= 0x3ff;
    return (sign | (e << 23) | (mant << 13)) >>> 0;
  }
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

function f16TableGet(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

const cvtU32 = new Uint32Array(1);
const cvtF32 = new Float32Array(cvtU32.buffer);

/** Value of an IEEE binary16 bit pattern (0..0xFFFF). */
export function f16ToF32(h: number): number {
  cvtU32[0] = f16TableGet()[h & 0xffff]!;
  return cvtF32[0]!;
}

/** Value of a bfloat16 bit pattern (0..0xFFFF): the top half of a float32. */
export function bf16ToF32(b: number): number {
  cvtU32[0] = (b & 0xffff) << 16;
  return cvtF32[0]!;
}

// ---------------------------------------------------------------------------------------------
// Decoding.

/** Decodes raw tensor bytes of a decodable dtype to float32 (row-major flat order). */
export function decodeBytesToF32(info: TensorInfo, bytes: Uint8Array): Float32Array {
  const n = numElements(info.shape);
  const out = new Float32Array(n);
  const outBits = new Uint32Array(out.buffer);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const layout = DTYPE_LAYOUT[info.dtype];
  if (layout && n % layout.blockSize !== 0) {
    throw fileError(
      info.file,
      info.dtypeOffset ?? info.byteOffset,
      `tensor "${info.name}" of type ${info.dtype} has ${n} elements: expected a multiple of the block size ${layout.blockSize}`,
    );
  }
  const need = expectedByteLength(info.dtype, n);
  if (need !== undefined && bytes.byteLength < need) {
    throw fileError(
      info.file,
      info.byteOffset,
      `tensor "${info.name}" has ${bytes.byteLength} bytes of data: expected ${need} for ${info.dtype} ${shapeString(info.shape)}`,
    );
  }
  switch (info.dtype) {
    case "F32":
      for (let j = 0; j < n; j++) outBits[j] = dv.getUint32(4 * j, true);
      return out;
    case "F16": {
      const t = f16TableGet();
      for (let j = 0; j < n; j++) outBits[j] = t[dv.getUint16(2 * j, true)]!;
      return out;
    }
    case "BF16":
      for (let j = 0; j < n; j++) outBits[j] = dv.getUint16(2 * j, true) << 16;
      return out;
    case "Q8_0": {
      const t = f16TableGet();
      const nb = n / 32;
      for (let b = 0; b < nb; b++) {
        const base = b * 34;
        cvtU32[0] = t[dv.getUint16(base, true)]!;
        const d = cvtF32[0]!;
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * dv.getInt8(base + 2 + j);
      }
      return out;
    }
    case "Q4_0": {
      const t = f16TableGet();
      const nb = n / 32;
      for (let b = 0; b < nb; b++) {
        const base = b * 18;
        cvtU32[0] = t[dv.getUint16(base, true)]!;
        const d = cvtF32[0]!;
        for (let j = 0; j < 16; j++) {
          const q = bytes[base + 2 + j]!;
          out[b * 32 + j] = d * ((q & 0x0f) - 8);
          out[b * 32 + j + 16] = d * ((q >>> 4) - 8);
        }
      }
      return out;
    }
    case "Q4_1": {
      const t = f16TableGet();
      const nb = n / 32;
      for (let b = 0; b < nb; b++) {
        const base = b * 20;
        cvtU32[0] = t[dv.getUint16(base, true)]!;
        const d = cvtF32[0]!;
        cvtU32[0] = t[dv.getUint16(base + 2, true)]!;
        const m = cvtF32[0]!;
        for (let j = 0; j < 16; j++) {
          const q = bytes[base + 4 + j]!;
          out[b * 32 + j] = d * (q & 0x0f) + m;
          out[b * 32 + j + 16] = d * (q >>> 4) + m;
        }
      }
      return out;
    }
    default:
      throw unsupportedDecode(info);
  }
}

function unsupportedDecode(info: TensorInfo): QzoError {
  return fileError(
    info.file,
    info.dtypeOffset ?? info.byteOffset,
    `cannot decode tensor "${info.name}" of type ${info.dtype}: expected one of ${DECODABLE_DTYPES.join(", ")}`,
  );
}

/**
 * Reads and decodes a tensor to float32 (row-major, shape info.shape). Supports F32, F16, BF16 and
 * ggml's Q8_0 (w = d*q), Q4_0 (w = d*(q-8)) and Q4_1 (w = d*q + m); any other type is a QzoError naming
 * the tensor and its type. Products are computed in float64 and rounded once to float32 on store
 * (this equals ggml's float32 product d*q exactly, since |q| < 2^8 and d has 11 significant bits).
 */
export function decodeToF32(info: TensorInfo): Float32Array {
  if (!DECODABLE_DTYPES.includes(info.dtype)) throw unsupportedDecode(info);
  return decodeBytesToF32(info, readTensorBytes(info));
}

/** Bytes needed by n elements of dtype, or undefined for an unknown dtype / n not a multiple of the block. */
export function expectedByteLength(dtype: string, n: number): number | undefined {
  const l = DTYPE_LAYOUT[dtype];
  if (!l || n % l.blockSize !== 0) return undefined;
  return (n / l.blockSize) * l.typeSize;
}
