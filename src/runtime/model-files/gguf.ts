/**
 * GGUF reader (llama.cpp's model format), versions 2 and 3, little-endian.
 *
 * Layout: "GGUF" magic, u32 version, u64 tensor_count, u64 metadata_kv_count, then the metadata
 * key/values (key: u64 length + UTF-8 bytes; u32 value type; value), then tensor_count tensor infos
 * (name string, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset relative to the
 * data section), then padding to `general.alignment` (default 32), then the data section.
 *
 * Only the header is read when listing (through a buffered cursor); tensor data is read lazily.
 */

import * as fs from "node:fs";
import { fileError } from "../../util/errors.js";
import {
  DTYPE_LAYOUT,
  FileCursor,
  openForRead,
  readTensorBytes,
  shapeString,
  u64ToNumber,
  type TensorInfo,
} from "./common.js";

/** A GGUF metadata value: integers up to 32 bits, floats -> number; 64-bit integers -> bigint. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** GGUF metadata value type ids. */
export const GGUF_VALUE_TYPE = Object.freeze({
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
});

const VALUE_TYPE_NAME: Record<number, string> = {
  0: "UINT8",
  1: "INT8",
  2: "UINT16",
  3: "INT16",
  4: "UINT32",
  5: "INT32",
  6: "FLOAT32",
  7: "BOOL",
  8: "STRING",
  9: "ARRAY",
  10: "UINT64",
  11: "INT64",
  12: "FLOAT64",
};

/** ggml tensor type ids and names (ids that were removed from ggml are absent). */
export const GGML_TYPE_NAME: Readonly<Record<number, string>> = Object.freeze({
  0: "F32",
  1: "F16",
  2: "Q4_0",
  3: "Q4_1",
  6: "Q5_0",
  7: "Q5_1",
  8: "Q8_0",
  9: "Q8_1",
  10: "Q2_K",
  11: "Q3_K",
  12: "Q4_K",
  13: "Q5_K",
  14: "Q6_K",
  15: "Q8_K",
  16: "IQ2_XXS",
  17: "IQ2_XS",
  18: "IQ3_XXS",
  19: "IQ1_S",
  20: "IQ4_NL",
  21: "IQ3_S",
  22: "IQ2_S",
  23: "IQ4_XS",
  24: "I8",
  25: "I16",
  26: "I32",
  27: "I64",
  28: "F64",
  29: "IQ1_M",
  30: "BF16",
  34: "TQ1_0",
  35: "TQ2_0",
  39: "MXFP4",
});

export interface GgufFile {
  format: "gguf";
  file: string;
  version: number;
  fileSize: number;
  /** Metadata key -> value, in file order (null prototype). */
  metadata: Record<string, GgufValue>;
  /** Metadata key -> type ("UINT32", "STRING", "ARRAY[STRING]", "ARRAY[ARRAY[INT32]]", ...). */
  metadataTypes: Record<string, string>;
  alignment: number;
  /** Absolute offset of the data section. */
  dataOffset: number;
  /** Tensors in file order. */
  tensors: Map<string, TensorInfo>;
  /** Raw bytes of one tensor, read lazily from the file. */
  readTensorBytes(name: string): Uint8Array;
}

const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
const MAX_DIMS = 4;

function describeMagic(b: Uint8Array): string {
  return JSON.stringify(Array.from(b, (c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`)).join(""));
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function readString(cur: FileCursor, what: string): string {
  const at = cur.pos;
  const len = u64ToNumber(cur.file, at, cur.u64(`length of ${what}`), `length of ${what}`);
  cur.require(len, `${what} (${len} bytes)`);
  const bytes = cur.bytes(len, what);
  try {
    return utf8.decode(bytes);
  } catch {
    throw fileError(cur.file, at + 8, `${what} is not valid UTF-8: expected a UTF-8 string`);
  }
}

function readValue(cur: FileCursor, type: number, what: string, typeAt: number, depth: number): [GgufValue, string] {
  switch (type) {
    case 0:
      return [cur.u8(what), "UINT8"];
    case 1:
      return [cur.i8(what), "INT8"];
    case 2:
      return [cur.u16(what), "UINT16"];
    case 3:
      return [cur.i16(what), "INT16"];
    case 4:
      return [cur.u32(what), "UINT32"];
    case 5:
      return [cur.i32(what), "INT32"];
    case 6:
      return [cur.f32(what), "FLOAT32"];
    case 7: {
      const at = cur.pos;
      const b = cur.u8(what);
      if (b > 1) throw fileError(cur.file, at, `bad ${what}: expected a BOOL (0 or 1), got ${b}`);
      return [b === 1, "BOOL"];
    }
    case 8:
      return [readString(cur, what), "STRING"];
    case 9: {
      if (depth > 16) throw fileError(cur.file, typeAt, `${what}: arrays nested too deeply (expected at most 16 levels)`);
      const etAt = cur.pos;
      const et = cur.u32(`element type of ${what}`);
      if (VALUE_TYPE_NAME[et] === undefined) {
        throw fileError(cur.file, etAt, `bad element type ${et} of ${what}: expected a GGUF value type 0..12`);
      }
      const cAt = cur.pos;
      const count = u64ToNumber(cur.file, cAt, cur.u64(`length of ${what}`), `length of ${what}`);
      // Every element takes at least one byte; a count beyond the file is truncation, not a huge alloc.
      const minSize = et === 8 || et === 10 || et === 11 || et === 12 ? 8 : et === 9 ? 12 : et <= 1 || et === 7 ? 1 : et <= 3 ? 2 : 4;
      if (count > cur.remaining() / minSize) {
        throw fileError(
          cur.file,
          cur.pos,
          `truncated ${what}: ${count} elements need at least ${count * minSize} bytes, but the file ends at byte ${cur.size}`,
        );
      }
      const arr: GgufValue[] = new Array(count);
      let elemType = VALUE_TYPE_NAME[et]!;
      for (let k = 0; k < count; k++) {
        const [v, t] = readValue(cur, et, `${what}[${k}]`, etAt, depth + 1);
        arr[k] = v;
        elemType = t;
      }
      if (et === 9 && count === 0) elemType = "ARRAY";
      return [arr, `ARRAY[${elemType}]`];
    }
    case 10:
      return [cur.u64(what), "UINT64"];
    case 11:
      return [cur.i64(what), "INT64"];
    case 12:
      return [cur.f64(what), "FLOAT64"];
    default:
      throw fileError(cur.file, typeAt, `bad value type ${type} of ${what}: expected a GGUF value type 0..12`);
  }
}

/** A tensor info as read, before the data section is placed. */
interface RawTensor {
  info: TensorInfo;
  relOffset: number;
  offsetAt: number;
}

/** The metadata key/value pairs after the header. */
function readMetadata(cur: FileCursor, kvCount: number) {
  const metadata: Record<string, GgufValue> = Object.create(null) as Record<string, GgufValue>;
  const metadataTypes: Record<string, string> = Object.create(null) as Record<string, string>;
  const valueOffsets = new Map<string, number>();
  for (let k = 0; k < kvCount; k++) {
    const keyAt = cur.pos;
    const key = readString(cur, `metadata key #${k}`);
    if (key in metadata) throw fileError(cur.file, keyAt, `duplicate metadata key "${key}": expected unique keys`);
    const typeAt = cur.pos;
    const type = cur.u32(`type of metadata value "${key}"`);
    valueOffsets.set(key, cur.pos);
    const [value, typeName] = readValue(cur, type, `metadata value "${key}"`, typeAt, 0);
    metadata[key] = value;
    metadataTypes[key] = typeName;
  }
  let alignment = 32;
  if ("general.alignment" in metadata) {
    const a = metadata["general.alignment"];
    const n = typeof a === "bigint" ? Number(a) : a;
    if (typeof n !== "number" || !Number.isInteger(n) || n <= 0 || (n & (n - 1)) !== 0 || n > 1 << 30) {
      throw fileError(cur.file, valueOffsets.get("general.alignment")!, `bad general.alignment ${String(a)}: expected a power of two`);
    }
    alignment = n;
  }
  return { metadata, metadataTypes, alignment };
}

/** One tensor info: name, dimensions, type and data offset (relative to the data section). */
function readTensorInfo(cur: FileCursor, k: number, tensors: Map<string, TensorInfo>, alignment: number): RawTensor {
  const file = cur.file;
  const nameAt = cur.pos;
  const name = readString(cur, `name of tensor info #${k}`);
  if (tensors.has(name)) throw fileError(file, nameAt, `duplicate tensor name "${name}": expected unique names`);
  const ndAt = cur.pos;
  const nDims = cur.u32(`dimension count of tensor "${name}"`);
  if (nDims < 1 || nDims > MAX_DIMS) throw fileError(file, ndAt, `tensor "${name}" has ${nDims} dimensions: expected 1 to ${MAX_DIMS}`);
  const ne: number[] = [];
  let numel = 1;
  for (let d = 0; d < nDims; d++) {
    const at = cur.pos;
    const v = cur.u64(`dimension ${d} of tensor "${name}"`);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fileError(file, at, `tensor "${name}" dimension ${d} is ${v}: expected at most 2^53-1`);
    ne.push(Number(v));
    numel *= Number(v);
  }
  if (numel > Number.MAX_SAFE_INTEGER) throw fileError(file, ndAt, `tensor "${name}" has ${numel} elements: expected at most 2^53-1`);
  const typeAt = cur.pos;
  const type = cur.u32(`type of tensor "${name}"`);
  const offsetAt = cur.pos;
  const relOffset = u64ToNumber(file, offsetAt, cur.u64(`data offset of tensor "${name}"`), `data offset of tensor "${name}"`);
  const dtype = GGML_TYPE_NAME[type] ?? `GGML_TYPE_${type}`;
  const layout = DTYPE_LAYOUT[dtype];
  let byteLength = 0;
  if (layout) {
    if (ne[0]! % layout.blockSize !== 0) {
      throw fileError(file, typeAt, `tensor "${name}" of type ${dtype} has rows of ${ne[0]} elements: expected a multiple of the block size ${layout.blockSize}`);
    }
    byteLength = (numel / layout.blockSize) * layout.typeSize;
  }
  if (relOffset % alignment !== 0) throw fileError(file, offsetAt, `tensor "${name}" data offset ${relOffset} is not a multiple of the alignment ${alignment}`);
  const info: TensorInfo = { name, dtype, shape: ne.slice().reverse(), byteOffset: 0, byteLength, file, dtypeOffset: typeAt, ggmlType: type };
  if (!layout) info.sizeUnknown = true;
  return { info, relOffset, offsetAt };
}

/**
 * Places the tensors in the data section as ggml does: each tensor's data starts where the
 * previous one's ends, padded to the alignment, in the order of the tensor infos (so no two
 * overlap and nothing lies between them); a tensor of an unknown type runs to the next one.
 */
function placeTensors(file: string, raws: RawTensor[], dataOffset: number, alignment: number, size: number): void {
  let expected = 0;
  raws.forEach((r, k) => {
    if (r.info.sizeUnknown) {
      const next = raws[k + 1]?.relOffset;
      if (r.relOffset < expected) throw fileError(file, r.offsetAt, `tensor "${r.info.name}" data offset ${r.relOffset} overlaps the tensor before it: expected at least ${expected}`);
      r.info.byteLength = Math.max(0, (next !== undefined ? dataOffset + next : size) - (dataOffset + r.relOffset));
    } else if (r.relOffset !== expected) {
      throw fileError(file, r.offsetAt, `tensor "${r.info.name}" data offset ${r.relOffset}: expected ${expected} (tensor data packed in order, each padded to ${alignment} bytes)`);
    }
    r.info.byteOffset = dataOffset + r.relOffset;
    const end = r.info.byteOffset + r.info.byteLength;
    if (end > size) {
      throw fileError(
        file,
        r.info.byteOffset,
        `truncated tensor data: tensor "${r.info.name}" (${r.info.dtype} ${shapeString(r.info.shape)}, ${r.info.byteLength} bytes) expected to end at byte ${end}, but the file ends at byte ${size}`,
      );
    }
    expected = r.relOffset + Math.ceil(r.info.byteLength / alignment) * alignment;
  });
}

/** Reads a GGUF file's header: metadata and tensor infos. Tensor data is not read. */
export function readGguf(file: string): GgufFile {
  const { fd, size } = openForRead(file);
  try {
    const cur = new FileCursor(file, fd, size);
    cur.require(4, "header (GGUF magic)");
    const magicBytes = cur.bytes(4, "magic");
    const magic = magicBytes[0]! | (magicBytes[1]! << 8) | (magicBytes[2]! << 16) | (magicBytes[3]! << 24);
    if (magic >>> 0 !== GGUF_MAGIC) throw fileError(file, 0, `bad magic ${describeMagic(magicBytes)}: expected "GGUF" (not a GGUF file)`);
    const version = cur.u32("header (version)");
    if (version !== 2 && version !== 3) {
      const hint = version === 1 ? " (GGUF v1 is obsolete)" : (version & 0xffff) === 0 ? " (big-endian GGUF is not supported)" : "";
      throw fileError(file, 4, `unsupported GGUF version ${version}: expected 2 or 3${hint}`);
    }
    const tcAt = cur.pos;
    const tensorCount = u64ToNumber(file, tcAt, cur.u64("header (tensor count)"), "tensor count");
    const kvAt = cur.pos;
    const kvCount = u64ToNumber(file, kvAt, cur.u64("header (metadata count)"), "metadata count");
    const { metadata, metadataTypes, alignment } = readMetadata(cur, kvCount);
    // A tensor info takes at least 8 (name length) + 4 + 8 + 4 + 8 bytes.
    if (tensorCount > cur.remaining() / 32) {
      throw fileError(file, cur.pos, `truncated tensor infos: ${tensorCount} tensors need at least ${tensorCount * 32} bytes, but the file ends at byte ${size}`);
    }
    const tensors = new Map<string, TensorInfo>();
    const raws: RawTensor[] = [];
    for (let k = 0; k < tensorCount; k++) {
      const r = readTensorInfo(cur, k, tensors, alignment);
      tensors.set(r.info.name, r.info);
      raws.push(r);
    }
    const headerEnd = cur.pos;
    const dataOffset = Math.ceil(headerEnd / alignment) * alignment;
    if (tensorCount > 0 && dataOffset > size) {
      throw fileError(file, headerEnd, `truncated file: expected the data section at byte ${dataOffset}, but the file ends at byte ${size}`);
    }
    placeTensors(file, raws, dataOffset, alignment, size);
    return {
      format: "gguf",
      file,
      version,
      fileSize: size,
      metadata,
      metadataTypes,
      alignment,
      dataOffset,
      tensors,
      readTensorBytes(name: string): Uint8Array {
        const info = tensors.get(name);
        if (!info) throw fileError(file, undefined, `no tensor named "${name}"`);
        return readTensorBytes(info);
      },
    };
  } finally {
    fs.closeSync(fd);
  }
}
