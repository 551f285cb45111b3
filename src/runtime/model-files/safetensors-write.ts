/**
 * safetensors writer, the inverse of ./safetensors.ts. The file is:
 *
 *   u64 little-endian N | N bytes of UTF-8 JSON header | data section
 *
 * The header maps each tensor name to { dtype, shape, data_offsets: [begin, end] } (byte offsets
 * relative to the start of the data section) plus an optional "__metadata__" map of strings. The
 * header is padded with spaces (0x20, which the format allows) so that N is a multiple of 8 and the
 * data section starts 8-byte aligned. Tensors are laid out contiguously, with no gaps and no overlap,
 * the widest element types first (then by name), as the reference implementation does, so every
 * tensor starts at a multiple of its element size. The data is little-endian and row-major (C order);
 * callers pass each tensor's bytes already in that form.
 *
 * The file appears atomically: it is written beside the target under a temporary name and renamed
 * over it, so a reader sees the old file or the whole new one.
 */
import { QzoError } from "../../util/errors.js";
import { writeStreamAtomic } from "../../util/fs-atomic.js";

export type SafetensorsWriteDType = "F32" | "F16" | "BF16" | "I32" | "I8" | "U8" | "I16" | "I64";

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsWriteDType;
  shape: number[];
  /** Little-endian, row-major; exactly product(shape) * element size bytes. */
  data: Uint8Array;
}

const ELEMENT_BYTES: Record<SafetensorsWriteDType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I8: 1, U8: 1, I16: 2, I64: 8 };

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** The header bytes (JSON padded with spaces to a multiple of 8) and the tensors in data order. */
export function safetensorsHeader(
  path: string,
  tensors: readonly SafetensorsTensor[],
  metadata?: Record<string, string>,
): { header: Uint8Array; order: SafetensorsTensor[]; dataBytes: number } {
  const seen = new Set<string>();
  for (const t of tensors) {
    const what = `${path}: tensor "${t.name}"`;
    if (typeof t.name !== "string" || t.name === "") throw new QzoError(`${path}: a tensor has an empty name: expected a non-empty string`);
    if (t.name === "__metadata__") throw new QzoError(`${what}: the name is reserved for the metadata map: expected another name`);
    if (seen.has(t.name)) throw new QzoError(`${what} is given twice: expected unique names`);
    seen.add(t.name);
    const size = ELEMENT_BYTES[t.dtype];
    if (size === undefined) throw new QzoError(`${what}: unsupported dtype "${String(t.dtype)}": expected one of ${Object.keys(ELEMENT_BYTES).join(", ")}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new QzoError(`${what}: bad shape ${JSON.stringify(t.shape)}: expected an array of non-negative integers`);
    }
    const need = t.shape.reduce((a, d) => a * d, 1) * size;
    if (!(t.data instanceof Uint8Array) || t.data.byteLength !== need) {
      throw new QzoError(`${what} (${t.dtype} [${t.shape.join(", ")}]) has ${t.data?.byteLength ?? "no"} bytes of data: expected ${need}`);
    }
  }
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== "string") throw new QzoError(`${path}: metadata "${k}" is ${typeof v}: expected a string value`);
    meta[k] = v;
  }

  const order = [...tensors].sort((a, b) => ELEMENT_BYTES[b.dtype] - ELEMENT_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const json: Record<string, Entry | Record<string, string>> = {};
  if (metadata !== undefined) json["__metadata__"] = meta;
  let at = 0;
  for (const t of order) {
    json[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [at, at + t.data.byteLength] };
    at += t.data.byteLength;
  }
  const text = Buffer.from(JSON.stringify(json), "utf8");
  const padded = Math.ceil(text.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(text, 8);
  return { header, order, dataBytes: at };
}

/**
 * Writes a safetensors file (see the top of this file). Tensor data is streamed from the given
 * buffers, so the file may be larger than any one buffer.
 */
export function writeSafetensors(path: string, tensors: readonly SafetensorsTensor[], metadata?: Record<string, string>): void {
  const { header, order } = safetensorsHeader(path, tensors, metadata);
  writeStreamAtomic(path, "safetensors file", (put) => {
    put(header);
    for (const t of order) put(t.data);
  });
}
