/**
 * GGUF writer (version 3, little-endian), the layout gguf.ts reads and llama.cpp writes: "GGUF",
 * u32 version, u64 tensor count, u64 metadata count, the metadata (key string, u32 value type,
 * value), the tensor infos (name, u32 n_dims, u64 ne[] innermost first, u32 ggml type, u64 offset in
 * the data section), padding to `general.alignment` (32), then every tensor's data, each padded to the
 * alignment, in the order of the infos. Written to a temporary file and renamed into place.
 */
import { QzoError } from "../../util/errors.js";
import { writeStreamAtomic } from "../../util/fs-atomic.js";
import { DTYPE_LAYOUT } from "./common.js";
import { GGML_TYPE_NAME, GGUF_VALUE_TYPE } from "./gguf.js";

/** A metadata value with its GGUF type (arrays: the element type and plain values). */
export type GgufWriteValue =
  | { type: "u32" | "i32" | "f32" | "u64"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; of: "string"; value: string[] }
  | { type: "array"; of: "f32" | "i32" | "u32"; value: number[] };

export interface GgufWriteTensor {
  name: string;
  /** The ggml type name (F32, F16, Q8_0, Q4_0, ...). */
  dtype: string;
  /** Outermost first (as the reader reports it). */
  shape: number[];
  data: Uint8Array;
}

const ALIGN = 32;
const SCALAR: Record<string, number> = { u32: GGUF_VALUE_TYPE.UINT32, i32: GGUF_VALUE_TYPE.INT32, f32: GGUF_VALUE_TYPE.FLOAT32, u64: GGUF_VALUE_TYPE.UINT64 };

class Out {
  private parts: Buffer[] = [];
  size = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.size += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.push(b);
  }
  u64(v: number | bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.push(b);
  }
  scalar(type: string, v: number): void {
    const b = Buffer.alloc(type === "u64" ? 8 : 4);
    if (type === "u32") b.writeUInt32LE(v);
    else if (type === "i32") b.writeInt32LE(v);
    else if (type === "f32") b.writeFloatLE(v);
    else b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  value(v: GgufWriteValue): void {
    if (v.type === "string") return this.str(v.value);
    if (v.type === "bool") return this.push(Buffer.of(v.value ? 1 : 0));
    if (v.type === "array") {
      this.u32(v.of === "string" ? GGUF_VALUE_TYPE.STRING : SCALAR[v.of]!);
      this.u64(v.value.length);
      for (const x of v.value) {
        if (v.of === "string") this.str(x as string);
        else this.scalar(v.of, x as number);
      }
      return;
    }
    this.scalar(v.type, v.value);
  }
  concat(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function typeId(v: GgufWriteValue): number {
  if (v.type === "string") return GGUF_VALUE_TYPE.STRING;
  if (v.type === "bool") return GGUF_VALUE_TYPE.BOOL;
  if (v.type === "array") return GGUF_VALUE_TYPE.ARRAY;
  return SCALAR[v.type]!;
}

/** Writes a GGUF file with the given metadata (in order) and tensors (in order). */
export function writeGguf(path: string, metadata: [string, GgufWriteValue][], tensors: readonly GgufWriteTensor[]): void {
  const ids = new Map(Object.entries(GGML_TYPE_NAME).map(([id, name]) => [name, Number(id)]));
  const head = new Out();
  head.push(Buffer.from("GGUF", "latin1"));
  head.u32(3);
  head.u64(tensors.length);
  head.u64(metadata.length);
  for (const [key, v] of metadata) {
    head.str(key);
    head.u32(typeId(v));
    head.value(v);
  }
  let offset = 0;
  for (const t of tensors) {
    const id = ids.get(t.dtype);
    const layout = DTYPE_LAYOUT[t.dtype];
    if (id === undefined || !layout) throw new QzoError(`${path}: tensor "${t.name}": unknown ggml type ${t.dtype}`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    const bytes = (n / layout.blockSize) * layout.typeSize;
    if (t.data.length !== bytes) throw new QzoError(`${path}: tensor "${t.name}" (${t.dtype} [${t.shape.join(", ")}]) has ${t.data.length} bytes: expected ${bytes}`);
    head.str(t.name);
    head.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) head.u64(d);
    head.u32(id);
    head.u64(offset);
    offset += Math.ceil(bytes / ALIGN) * ALIGN;
  }
  const header = head.concat();
  const pad = (n: number) => Buffer.alloc((ALIGN - (n % ALIGN)) % ALIGN);
  writeStreamAtomic(path, "GGUF file", (put) => {
    put(header);
    put(pad(header.length));
    for (const t of tensors) {
      put(t.data);
      put(pad(t.data.length));
    }
  });
}
