/**
 * The GGUF writer against llama.cpp: files llama.cpp wrote, read and written again, come out
 * byte for byte the same; a file with every value kind the writer has is read back the same by
 * our reader and by node-llama-cpp's independent GGUF parser; bad tensor data is refused
 * without leaving a file.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readGguf, type GgufFile } from "../../src/runtime/model-files/gguf.js";
import { writeGguf, type GgufWriteTensor, type GgufWriteValue } from "../../src/runtime/model-files/gguf-write.js";
import { QzoError } from "../../src/util/errors.js";

const root = new URL("../../", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "qzo-gguf-write-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KIND: Record<string, "u32" | "i32" | "f32" | "u64" | "bool" | "string"> = { UINT32: "u32", INT32: "i32", FLOAT32: "f32", UINT64: "u64", BOOL: "bool", STRING: "string" };

/** The writer's view of a file's metadata, from the reader's values and type names. */
function metadataOf(g: GgufFile): [string, GgufWriteValue][] {
  return Object.entries(g.metadata).map(([key, value]) => {
    const type = g.metadataTypes[key]!;
    const array = /^ARRAY\[(\w+)\]$/.exec(type);
    if (array) return [key, { type: "array", of: KIND[array[1]!], value } as GgufWriteValue];
    return [key, { type: KIND[type], value: typeof value === "bigint" ? Number(value) : value } as GgufWriteValue];
  });
}

const llamaCppFiles = [
  join(root, "models/weights/stories260K/stories260K-q4_0.gguf"),
  join(root, "../shared/models/gguf/babyllama-tok105-q8_0.gguf"),
  join(root, "../shared/models/gguf/babyllama-tok105-f32.gguf"),
].filter((f) => existsSync(f));

describe("the GGUF writer", () => {
  it.each(llamaCppFiles)("rewrites %s (written by llama.cpp) byte for byte", (file) => {
    const g = readGguf(file);
    const tensors = [...g.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape], data: g.readTensorBytes(t.name) }));
    const out = join(dir, "rewritten.gguf");
    writeGguf(out, metadataOf(g), tensors);
    expect(Buffer.compare(readFileSync(out), readFileSync(file))).toBe(0);
  });

  it("writes every value kind and F32, F16 and Q8_0 tensors that our reader and node-llama-cpp's parser read back", async () => {
    const metadata: [string, GgufWriteValue][] = [
      ["general.architecture", { type: "string", value: "llama" }],
      ["test.u32", { type: "u32", value: 4_000_000_000 }],
      ["test.i32", { type: "i32", value: -7 }],
      ["test.f32", { type: "f32", value: 0.25 }],
      ["test.u64", { type: "u64", value: 2 ** 40 + 3 }],
      ["test.bool", { type: "bool", value: true }],
      ["test.strings", { type: "array", of: "string", value: ["a", "", "ünï"] }],
      ["test.floats", { type: "array", of: "f32", value: [1.5, -2] }],
      ["test.ints", { type: "array", of: "i32", value: [-1, 2, 3] }],
    ];
    const q8 = new Uint8Array(2 * 34).map((_, i) => (i * 37) & 0xff);
    const tensors: GgufWriteTensor[] = [
      { name: "a", dtype: "F32", shape: [3], data: new Uint8Array(new Float32Array([1, 2, 3]).buffer) },
      { name: "b", dtype: "F16", shape: [2, 5], data: new Uint8Array(20).fill(0x3c) },
      { name: "c", dtype: "Q8_0", shape: [2, 32], data: q8 },
    ];
    const out = join(dir, "kinds.gguf");
    writeGguf(out, metadata, tensors);

    const g = readGguf(out);
    expect(g.metadata["test.u32"]).toBe(4_000_000_000);
    expect(g.metadata["test.i32"]).toBe(-7);
    expect(g.metadata["test.f32"]).toBe(0.25);
    expect(Number(g.metadata["test.u64"])).toBe(2 ** 40 + 3);
    expect(g.metadata["test.bool"]).toBe(true);
    expect(g.metadata["test.strings"]).toEqual(["a", "", "ünï"]);
    expect(g.metadata["test.floats"]).toEqual([1.5, -2]);
    expect(g.metadata["test.ints"]).toEqual([-1, 2, 3]);
    for (const t of tensors) {
      expect(g.tensors.get(t.name)!.shape).toEqual(t.shape);
      expect(g.tensors.get(t.name)!.dtype).toBe(t.dtype);
      expect(Buffer.compare(Buffer.from(g.readTensorBytes(t.name)), Buffer.from(t.data))).toBe(0);
    }

    const { readGgufFileInfo } = await import("node-llama-cpp");
    const info = await readGgufFileInfo(out, { readTensorInfo: true, ignoreKeys: [] });
    const raw = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(raw["test"]!["u32"]).toBe(4_000_000_000);
    expect(raw["test"]!["i32"]).toBe(-7);
    expect(raw["test"]!["bool"]).toBe(true);
    expect(raw["test"]!["strings"]).toEqual(["a", "", "ünï"]);
    expect(info.tensorInfo!.map((t) => [t.name, t.dimensions.map(Number), t.ggmlType])).toEqual([
      ["a", [3], 0],
      ["b", [5, 2], 1],
      ["c", [32, 2], 8],
    ]);
  });

  it("refuses tensor data of the wrong length and leaves no file behind", () => {
    const out = join(dir, "bad", "bad.gguf");
    expect(() => writeGguf(out, [], [{ name: "w", dtype: "Q4_0", shape: [2, 32], data: new Uint8Array(35) }])).toThrow(QzoError);
    expect(() => writeGguf(out, [], [{ name: "w", dtype: "Q4_0", shape: [2, 32], data: new Uint8Array(35) }])).toThrow(/tensor "w" \(Q4_0 \[2, 32\]\) has 35 bytes: expected 36/);
    expect(existsSync(join(dir, "bad")) ? readdirSync(join(dir, "bad")) : []).toEqual([]);
  });

  it("an unknown tensor type, or a place it cannot write, is one QzoError naming the file", () => {
    const out = join(dir, "unknown.gguf");
    expect(() => writeGguf(out, [], [{ name: "w", dtype: "Q9_9", shape: [32], data: new Uint8Array(32) }])).toThrow(/unknown\.gguf: tensor "w": unknown ggml type Q9_9$/);
    const file = join(dir, "a-file");
    writeFileSync(file, "");
    expect(() => writeGguf(join(file, "x.gguf"), [], [])).toThrow(QzoError);
    expect(() => writeGguf(join(file, "x.gguf"), [], [])).toThrow(/^.*a-file\/x\.gguf: cannot write the GGUF file: /);
  });
});
