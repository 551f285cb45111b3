/**
 * safetensors reader: u64 little-endian header length N, N bytes of UTF-8 JSON header
 * ({ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { string: string } }),
 * then the data section; data_offsets are relative to the start of the data section (byte 8 + N).
 * Only the header is read; tensor data is read lazily.
 */

import * as fs from "node:fs";
import { fileError } from "../../util/errors.js";
import { DTYPE_LAYOUT, openForRead, readFully, readTensorBytes, shapeString, type TensorInfo } from "./common.js";

export interface SafetensorsFile {
  format: "safetensors";
  file: string;
  fileSize: number;
  /** The "__metadata__" map (empty when absent). */
  metadata: Record<string, string>;
  headerLength: number;
  /** Absolute offset of the data section (8 + header length). */
  dataOffset: number;
  tensors: Map<string, TensorInfo>;
  readTensorBytes(name: string): Uint8Array;
}

/** safetensors dtype names qzo knows the element size of. */
export const SAFETENSORS_DTYPES: readonly string[] = [
  "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
];

/** Upper bound on the JSON header size (the reference implementation uses 100 MB). */
const MAX_HEADER = 100_000_000;

/** Turns a JSON.parse error into "position N" -> absolute byte offset when available. */
function jsonErrorOffset(e: unknown, headerText: string, base: number): number {
  const m = /position (\d+)/.exec(String((e as Error).message));
  if (!m) return base;
  const charPos = Number(m[1]);
  return base + Buffer.byteLength(headerText.slice(0, charPos), "utf8");
}

/**
 * What the safetensors format requires of the data section: the tensors' data, in offset order,
 * starts at 0, each tensor where the previous one ends (no overlap, no gap), and the last one ends
 * where the file ends. A wrong header length or aliased offsets fail here instead of reading
 * misplaced bytes.
 */
function checkPacked(file: string, tensors: Map<string, TensorInfo>, dataOffset: number, dataSize: number): void {
  const spans = [...tensors.values()].sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  let end = 0;
  for (const t of spans) {
    const begin = t.byteOffset - dataOffset;
    if (begin !== end) {
      const what = begin < end ? "overlaps the tensor before it" : "leaves a gap after the tensor before it";
      throw fileError(file, t.dtypeOffset, `tensor "${t.name}" data begins at ${begin}, which ${what}: expected ${end} (tensors packed without overlap or gaps)`);
    }
    end = begin + t.byteLength;
  }
  if (end !== dataSize) {
    throw fileError(file, dataOffset + end, `the tensors' data ends at byte ${dataOffset + end}, but the file ends at byte ${dataOffset + dataSize}: expected the data section to end the file (a wrong header length?)`);
  }
}

export function readSafetensors(file: string): SafetensorsFile {
  const { fd, size } = openForRead(file);
  let headerBuf: Buffer;
  let headerLength: number;
  try {
    if (size < 8) {
      throw fileError(file, 0, `truncated header: expected an 8-byte header length, but the file is ${size} bytes long`);
    }
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(size - 8)) {
      throw fileError(file, 0, `header length ${n} exceeds the file: expected at most ${size - 8} bytes (file is ${size} bytes)`);
    }
    headerLength = Number(n);
    if (headerLength > MAX_HEADER) {
      throw fileError(file, 0, `header length ${headerLength} is too large: expected at most ${MAX_HEADER} bytes`);
    }
    if (headerLength < 2) throw fileError(file, 0, `header length ${headerLength}: expected a JSON object (at least 2 bytes)`);
    headerBuf = Buffer.alloc(headerLength);
    readFully(fd, headerBuf, 8);
  } finally {
    fs.closeSync(fd);
  }
  const dataOffset = 8 + headerLength;
  const dataSize = size - dataOffset;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBuf);
  } catch {
    throw fileError(file, 8, "header is not valid UTF-8: expected a UTF-8 JSON object");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw fileError(file, jsonErrorOffset(e, text, 8), "header is not valid JSON: expected a JSON object");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw fileError(file, 8, "header is not a JSON object: expected { name: { dtype, shape, data_offsets } }");
  }
  // Byte offset of a key inside the header, for error messages.
  const keyOffset = (key: string): number => {
    const i = headerBuf.indexOf(Buffer.from(JSON.stringify(key), "utf8"));
    return i >= 0 ? 8 + i : 8;
  };

  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    const at = keyOffset(name);
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
        throw fileError(file, at, "bad __metadata__: expected an object of strings");
      }
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== "string") throw fileError(file, at, `bad __metadata__ entry "${k}": expected a string value`);
        metadata[k] = v;
      }
      continue;
    }
    const what = `tensor "${name}"`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw fileError(file, at, `bad entry for ${what}: expected { dtype, shape, data_offsets }`);
    }
    const { dtype, shape, data_offsets: offs } = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== "string") throw fileError(file, at, `bad dtype of ${what}: expected a string`);
    const layout = DTYPE_LAYOUT[dtype];
    if (!layout || layout.blockSize !== 1 || !SAFETENSORS_DTYPES.includes(dtype)) {
      throw fileError(file, at, `unsupported dtype "${dtype}" of ${what}: expected one of ${SAFETENSORS_DTYPES.join(", ")}`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw fileError(file, at, `bad shape of ${what}: expected an array of non-negative integers`);
    }
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      offs[0] > offs[1]
    ) {
      throw fileError(file, at, `bad data_offsets of ${what}: expected [begin, end] with 0 <= begin <= end`);
    }
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    const byteLength = numel * layout.typeSize;
    if (!Number.isSafeInteger(byteLength)) throw fileError(file, at, `${what} has ${numel} elements: expected fewer than 2^53 bytes of data`);
    const [begin, end] = offs as [number, number];
    if (end - begin !== byteLength) {
      throw fileError(
        file,
        at,
        `${what} (${dtype} ${shapeString(shape as number[])}) has data_offsets [${begin}, ${end}] (${end - begin} bytes): expected ${byteLength} bytes`,
      );
    }
    if (end > dataSize) {
      throw fileError(
        file,
        dataOffset + begin,
        `truncated tensor data: ${what} expected to end at byte ${dataOffset + end}, but the file ends at byte ${size}`,
      );
    }
    tensors.set(name, {
      name,
      dtype,
      shape: (shape as number[]).slice(),
      byteOffset: dataOffset + begin,
      byteLength,
      file,
      dtypeOffset: at,
    });
  }
  checkPacked(file, tensors, dataOffset, dataSize);
  return {
    format: "safetensors",
    file,
    fileSize: size,
    metadata,
    headerLength,
    dataOffset,
    tensors,
    readTensorBytes(name: string): Uint8Array {
      const info = tensors.get(name);
      if (!info) throw fileError(file, undefined, `no tensor named "${name}"`);
      return readTensorBytes(info);
    },
  };
}
