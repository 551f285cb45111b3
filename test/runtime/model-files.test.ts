import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QzoError } from "../../src/util/errors.js";
import {
  bf16ToF32,
  decodeToF32,
  f16ToF32,
  inferGptqZeroPointOffset,
  readGguf,
  readGptqConfig,
  readHfModel,
  readLlama2cCheckpoint,
  readLlama2cTokenizer,
  readSafetensors,
  readTensorBytes,
  type TensorInfo,
} from "../../src/runtime/model-files/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../..");
const MODELS = path.resolve(repoRoot, "../shared/models");
const GGUF_F32 = path.join(MODELS, "gguf/stories260K-f32.gguf");
const GGUF_Q8 = path.join(MODELS, "gguf/stories260K-q8_0.gguf");
const GGUF_Q4 = path.join(MODELS, "gguf/stories260K-q4_0.gguf");
const L2C = path.join(MODELS, "stories260K/stories260K.bin");
const TOK = path.join(MODELS, "stories260K/tok512.bin");
const HF = path.join(MODELS, "hf/stories260K");

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qzo-model-files-"));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The one-line message of the QzoError thrown by fn (fails if it throws anything else or nothing). */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(QzoError);
    const msg = (e as QzoError).message;
    expect(msg).not.toContain("\n");
    return msg;
  }
  throw new Error("expected a QzoError, got none");
}

function writeTmp(name: string, data: Uint8Array): string {
  const p = path.join(tmp, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data);
  return p;
}

function get(m: Map<string, TensorInfo>, name: string): TensorInfo {
  const t = m.get(name);
  if (!t) throw new Error(`missing tensor ${name}`);
  return t;
}

/** Rows of a [rows, cols] matrix reordered as Hugging Face's RoPE permutation does: HF row
 *  h*hd + k*(hd/2) + j holds the original (interleaved) row h*hd + 2j + k. */
function hfPermute(w: Float32Array, nHeads: number, rows: number, cols: number): Float32Array {
  const hd = rows / nHeads;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHeads; h++)
    for (let k = 0; k < 2; k++)
      for (let j = 0; j < hd / 2; j++) {
        const dst = h * hd + k * (hd / 2) + j;
        const src = h * hd + 2 * j + k;
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
  return out;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

// ---------------------------------------------------------------------------------------------
// A small GGUF writer for synthetic files.
type KV = [key: string, type: number, value: unknown];
interface TW {
  name: string;
  ne: number[];
  type: number;
  data: Uint8Array;
}
function ggufBytes(opts: { version?: number; kv?: KV[]; tensors?: TW[]; alignment?: number }): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    parts.push(b);
  };
  const u64 = (v: number | bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    parts.push(b);
  };
  const str = (s: string) => {
    const b = Buffer.from(s, "utf8");
    u64(b.length);
    parts.push(b);
  };
  const val = (type: number, v: unknown): void => {
    const b = Buffer.alloc(8);
    switch (type) {
      case 0: b.writeUInt8(v as number); parts.push(b.subarray(0, 1)); return;
      case 1: b.writeInt8(v as number); parts.push(b.subarray(0, 1)); return;
      case 2: b.writeUInt16LE(v as number); parts.push(b.subarray(0, 2)); return;
      case 3: b.writeInt16LE(v as number); parts.push(b.subarray(0, 2)); return;
      case 4: b.writeUInt32LE(v as number); parts.push(b.subarray(0, 4)); return;
      case 5: b.writeInt32LE(v as number); parts.push(b.subarray(0, 4)); return;
      case 6: b.writeFloatLE(v as number); parts.push(b.subarray(0, 4)); return;
      case 7: b.writeUInt8(v ? 1 : 0); parts.push(b.subarray(0, 1)); return;
      case 8: str(v as string); return;
      case 9: {
        const [et, items] = v as [number, unknown[]];
        u32(et);
        u64(items.length);
        for (const it of items) val(et, it);
        return;
      }
      case 10: b.writeBigUInt64LE(v as bigint); parts.push(b); return;
      case 11: b.writeBigInt64LE(v as bigint); parts.push(b); return;
      case 12: b.writeDoubleLE(v as number); parts.push(b); return;
    }
    throw new Error("bad type");
  };
  const align = opts.alignment ?? 32;
  const tensors = opts.tensors ?? [];
  parts.push(Buffer.from("GGUF"));
  u32(opts.version ?? 3);
  u64(tensors.length);
  u64((opts.kv ?? []).length);
  for (const [k, t, v] of opts.kv ?? []) {
    str(k);
    u32(t);
    val(t, v);
  }
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    str(t.name);
    u32(t.ne.length);
    for (const d of t.ne) u64(d);
    u32(t.type);
    u64(off);
    offsets.push(off);
    off = Math.ceil((off + t.data.length) / align) * align;
  }
  let head = Buffer.concat(parts);
  head = Buffer.concat([head, Buffer.alloc(Math.ceil(head.length / align) * align - head.length)]);
  const data = Buffer.alloc(off);
  tensors.forEach((t, i) => data.set(t.data, offsets[i]));
  return Buffer.concat([head, data]);
}

function safetensorsBytes(entries: Record<string, { dtype: string; shape: number[]; data: Uint8Array }>, meta?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (meta) header["__metadata__"] = meta;
  let off = 0;
  const blobs: Uint8Array[] = [];
  for (const [k, e] of Object.entries(entries)) {
    header[k] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + e.data.length] };
    off += e.data.length;
    blobs.push(e.data);
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  json = Buffer.concat([json, Buffer.from(" ".repeat((8 - (json.length % 8)) % 8))]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...blobs]);
}

// ---------------------------------------------------------------------------------------------

describe("half-precision conversions", () => {
  it("f16ToF32 is exact for all 65536 bit patterns", () => {
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const m = h & 0x3ff;
      const want = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
      const got = f16ToF32(h);
      if (Number.isNaN(want)) expect(Number.isNaN(got)).toBe(true);
      else if (!Object.is(got, want)) expect([h, got]).toEqual([h, want]);
    }
  });

  it("bf16ToF32 is the top half of a float32", () => {
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let b = 0; b < 65536; b += 7) {
      u[0] = b << 16;
      const got = bf16ToF32(b);
      if (Number.isNaN(f[0]!)) expect(Number.isNaN(got)).toBe(true);
      else expect(Object.is(got, f[0])).toBe(true);
    }
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(bf16ToF32(0xc000)).toBe(-2);
  });

  it("decodeToF32 keeps F16/BF16 bit patterns exactly (NaN payloads, -0, subnormals)", () => {
    const f16 = new Uint16Array([0x0000, 0x8000, 0x0001, 0x03ff, 0x3c00, 0x7bff, 0x7c00, 0xfc00, 0x7e01, 0xfd55]);
    const bf16 = new Uint16Array([0x0000, 0x8000, 0x0001, 0x3f80, 0x7f80, 0x7fc1, 0xff81]);
    const p = writeTmp(
      "halves.safetensors",
      safetensorsBytes({
        h: { dtype: "F16", shape: [2, 5], data: new Uint8Array(f16.buffer) },
        b: { dtype: "BF16", shape: [7], data: new Uint8Array(bf16.buffer) },
      }),
    );
    const st = readSafetensors(p);
    const h = new Uint32Array(decodeToF32(get(st.tensors, "h")).buffer);
    expect(Array.from(h, (x) => x.toString(16))).toEqual([
      "0", "80000000", "33800000", "387fc000", "3f800000", "477fe000", "7f800000", "ff800000", "7fc02000", "ffaaa000",
    ]);
    const b = new Uint32Array(decodeToF32(get(st.tensors, "b")).buffer);
    expect(Array.from(b)).toEqual(Array.from(bf16, (x) => (x << 16) >>> 0));
  });
});

describe("GGUF: stories260K", () => {
  const layerNames = [
    "attn_q", "attn_k", "attn_v", "attn_output", "attn_norm", "ffn_gate", "ffn_down", "ffn_up", "ffn_norm",
  ];

  it("lists the F32/Q8_0/Q4_0 files with the known facts", () => {
    for (const [file, kind] of [[GGUF_F32, "f32"], [GGUF_Q8, "q8_0"], [GGUF_Q4, "q4_0"]] as const) {
      const g = readGguf(file);
      expect(g.version).toBe(3);
      expect(g.alignment).toBe(32);
      expect(g.dataOffset % 32).toBe(0);
      const md = g.metadata;
      expect(md["general.architecture"]).toBe("llama");
      expect(md["llama.embedding_length"]).toBe(64);
      expect(md["llama.feed_forward_length"]).toBe(172);
      expect(md["llama.block_count"]).toBe(5);
      expect(md["llama.attention.head_count"]).toBe(8);
      expect(md["llama.attention.head_count_kv"]).toBe(4);
      expect(md["llama.rope.dimension_count"]).toBe(8);
      expect(g.metadataTypes["llama.block_count"]).toBe("UINT32");
      expect(g.metadataTypes["tokenizer.ggml.tokens"]).toBe("ARRAY[STRING]");
      expect(g.metadataTypes["tokenizer.ggml.scores"]).toBe("ARRAY[FLOAT32]");
      const tokens = md["tokenizer.ggml.tokens"] as string[];
      expect(tokens.length).toBe(512);
      expect(tokens.slice(0, 4)).toEqual(["<unk>", "<s>", "</s>", "<0x00>"]);
      expect((md["tokenizer.ggml.scores"] as number[]).length).toBe(512);
      expect(md["llama.attention.layer_norm_rms_epsilon"]).toBe(Math.fround(1e-5));

      expect(g.tensors.size).toBe(3 + 5 * 9);
      const names = new Set(["token_embd.weight", "output.weight", "output_norm.weight"]);
      for (let l = 0; l < 5; l++) for (const n of layerNames) names.add(`blk.${l}.${n}.weight`);
      expect(new Set(g.tensors.keys())).toEqual(names);

      const t = (n: string) => get(g.tensors, n);
      expect(t("token_embd.weight").shape).toEqual([512, 64]);
      expect(t("output.weight").shape).toEqual([512, 64]);
      expect(t("output_norm.weight").shape).toEqual([64]);
      expect(t("blk.0.attn_q.weight").shape).toEqual([64, 64]);
      expect(t("blk.0.attn_k.weight").shape).toEqual([32, 64]);
      expect(t("blk.0.attn_v.weight").shape).toEqual([32, 64]);
      expect(t("blk.0.attn_output.weight").shape).toEqual([64, 64]);
      expect(t("blk.4.ffn_gate.weight").shape).toEqual([172, 64]);
      expect(t("blk.4.ffn_up.weight").shape).toEqual([172, 64]);
      expect(t("blk.4.ffn_down.weight").shape).toEqual([64, 172]);
      expect(t("blk.2.attn_norm.weight").shape).toEqual([64]);

      for (const info of g.tensors.values()) {
        expect(info.file).toBe(file);
        expect(info.byteOffset).toBeGreaterThanOrEqual(g.dataOffset);
        expect(info.byteOffset + info.byteLength).toBeLessThanOrEqual(g.fileSize);
        if (info.shape.length === 1) expect(info.dtype).toBe("F32"); // norms stay F32
      }
      const matrices = [...g.tensors.values()].filter((i) => i.shape.length === 2);
      for (const m of matrices) {
        if (kind === "f32") expect(m.dtype).toBe("F32");
        else if (m.name.endsWith("ffn_down.weight")) expect(m.dtype).toBe("F16"); // rows of 172
        else if (kind === "q8_0") expect(m.dtype).toBe("Q8_0");
        else if (m.name === "output.weight") expect(m.dtype).toBe("Q8_0");
        else expect(m.dtype).toBe("Q4_0"); // including token_embd.weight
      }
      if (kind !== "f32") expect(md["general.quantization_version"]).toBe(2);
      const q = t("blk.0.attn_q.weight");
      expect(q.byteLength).toBe(kind === "f32" ? 64 * 64 * 4 : kind === "q8_0" ? 128 * 34 : 128 * 18);
    }
  });

  it("the F32 GGUF equals the llama2.c checkpoint exactly (no q/k permutation)", () => {
    const g = readGguf(GGUF_F32);
    const c = readLlama2cCheckpoint(L2C);
    const l2 = (n: string) => decodeToF32(get(c.tensors, n));
    const gg = (n: string) => decodeToF32(get(g.tensors, n));
    const emb = l2("token_embedding_table");
    expect(sameBits(gg("token_embd.weight"), emb)).toBe(true);
    expect(sameBits(gg("output.weight"), emb)).toBe(true); // shared classifier, written out by the converter
    expect(sameBits(gg("output_norm.weight"), l2("rms_final_weight"))).toBe(true);
    const map: Array<[string, string, number]> = [
      ["attn_q", "wq", 64 * 64],
      ["attn_k", "wk", 32 * 64],
      ["attn_v", "wv", 32 * 64],
      ["attn_output", "wo", 64 * 64],
      ["attn_norm", "rms_att_weight", 64],
      ["ffn_gate", "w1", 172 * 64],
      ["ffn_down", "w2", 64 * 172],
      ["ffn_up", "w3", 172 * 64],
      ["ffn_norm", "rms_ffn_weight", 64],
    ];
    for (const [gn, cn, per] of map) {
      const all = l2(cn);
      expect(all.length).toBe(5 * per);
      for (let l = 0; l < 5; l++) {
        expect(sameBits(gg(`blk.${l}.${gn}.weight`), all.subarray(l * per, (l + 1) * per))).toBe(true);
      }
    }
    // The headline check of the brief, spelled out.
    expect(sameBits(gg("blk.0.attn_q.weight"), l2("wq").subarray(0, 4096))).toBe(true);
  });

  it("the HF safetensors equal the F32 GGUF after HF's rotate-half permutation of q/k rows", () => {
    const g = readGguf(GGUF_F32);
    const h = readHfModel(HF);
    expect(h.config["hidden_size"]).toBe(64);
    expect(h.config["tie_word_embeddings"]).toBe(true);
    expect(h.gptq).toBeUndefined();
    expect(h.tensors.size).toBe(2 + 5 * 9); // tied: no lm_head.weight
    expect(h.tensors.has("lm_head.weight")).toBe(false);
    const gg = (n: string) => decodeToF32(get(g.tensors, n));
    const hf = (n: string) => decodeToF32(get(h.tensors, n));
    expect(sameBits(hf("model.embed_tokens.weight"), gg("token_embd.weight"))).toBe(true);
    expect(sameBits(hf("model.norm.weight"), gg("output_norm.weight"))).toBe(true);
    const map: Array<[string, string]> = [
      ["self_attn.v_proj", "attn_v"],
      ["self_attn.o_proj", "attn_output"],
      ["input_layernorm", "attn_norm"],
      ["post_attention_layernorm", "ffn_norm"],
      ["mlp.gate_proj", "ffn_gate"],
      ["mlp.down_proj", "ffn_down"],
      ["mlp.up_proj", "ffn_up"],
    ];
    for (let l = 0; l < 5; l++) {
      for (const [hn, gn] of map) {
        const a = get(h.tensors, `model.layers.${l}.${hn}.weight`);
        const b = get(g.tensors, `blk.${l}.${gn}.weight`);
        expect(a.shape).toEqual(b.shape);
        expect(sameBits(decodeToF32(a), decodeToF32(b))).toBe(true);
      }
      const q = gg(`blk.${l}.attn_q.weight`);
      const k = gg(`blk.${l}.attn_k.weight`);
      const hq = hf(`model.layers.${l}.self_attn.q_proj.weight`);
      const hk = hf(`model.layers.${l}.self_attn.k_proj.weight`);
      expect(sameBits(hq, q)).toBe(false); // not stored in the same order...
      expect(sameBits(hq, hfPermute(q, 8, 64, 64))).toBe(true); // ...but permuted per head
      expect(sameBits(hk, hfPermute(k, 4, 32, 64))).toBe(true); // k with n_kv_heads
    }
  });

  it("Q8_0 decodes within half a step (+ the f16 rounding of d) of F32; Q4_0 within one step", () => {
    const f = readGguf(GGUF_F32);
    for (const [file, dtype, bound] of [[GGUF_Q8, "Q8_0", 0.5 + 127 * 2 ** -11], [GGUF_Q4, "Q4_0", 1 + 8 * 2 ** -11]] as const) {
      const g = readGguf(file);
      let checked = 0;
      let worst = 0;
      for (const info of g.tensors.values()) {
        if (info.dtype !== dtype) continue;
        const ref = decodeToF32(get(f.tensors, info.name));
        const dec = decodeToF32(info);
        const raw = readTensorBytes(info);
        const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
        const bs = dtype === "Q8_0" ? 34 : 18;
        expect(dec.length).toBe(ref.length);
        for (let b = 0; b < dec.length / 32; b++) {
          const d = Math.abs(f16ToF32(dv.getUint16(b * bs, true)));
          for (let j = 0; j < 32; j++) {
            const err = Math.abs(dec[b * 32 + j]! - ref[b * 32 + j]!);
            if (err > bound * d + 1e-12) expect({ tensor: info.name, b, j, err, d }).toBeNull();
            if (d > 0) worst = Math.max(worst, err / d);
          }
        }
        checked++;
      }
      expect(checked).toBeGreaterThan(0);
      expect(worst).toBeGreaterThan(0.3); // sanity: the bound is not vacuous
    }
  });

  it("Q8_0 / Q4_0 decode equals a hand decode of the raw blocks (ggml layouts)", () => {
    const g8 = readGguf(GGUF_Q8);
    const t8 = get(g8.tensors, "blk.1.attn_q.weight");
    const raw8 = readTensorBytes(t8);
    const dec8 = decodeToF32(t8);
    const b8 = Buffer.from(raw8.buffer, raw8.byteOffset, raw8.byteLength);
    for (const blk of [0, 5, 127]) {
      const d = f16ToF32(b8.readUInt16LE(blk * 34));
      for (let j = 0; j < 32; j++) expect(dec8[blk * 32 + j]).toBe(Math.fround(d * b8.readInt8(blk * 34 + 2 + j)));
    }
    const g4 = readGguf(GGUF_Q4);
    const t4 = get(g4.tensors, "blk.1.attn_q.weight");
    const raw4 = Buffer.from(readTensorBytes(t4));
    const dec4 = decodeToF32(t4);
    let negative = 0;
    for (let blk = 0; blk < 128; blk++) {
      const d = f16ToF32(raw4.readUInt16LE(blk * 18));
      if (d < 0) negative++;
      for (let j = 0; j < 16; j++) {
        const q = raw4[blk * 18 + 2 + j]!;
        expect(dec4[blk * 32 + j]).toBe(Math.fround(d * ((q & 15) - 8)));
        expect(dec4[blk * 32 + 16 + j]).toBe(Math.fround(d * ((q >> 4) - 8)));
      }
    }
    expect(negative).toBeGreaterThan(0); // llama.cpp's Q4_0 scales carry a sign (QZO-NOTES section 7)
  });

  it("decodes a synthetic Q4_1 tensor and accepts GGUF v2, all value types, nested arrays, custom alignment", () => {
    // Q4_1 block: d = 0.5, m = -1, q_j = j % 16 (low nibble for j<16, high nibble for j+16 = (15 - j)).
    const blk = Buffer.alloc(20);
    blk.writeUInt16LE(0x3800, 0); // 0.5
    blk.writeUInt16LE(0xbc00, 2); // -1
    for (let j = 0; j < 16; j++) blk[4 + j] = (j & 15) | ((15 - j) << 4);
    const f32 = Buffer.alloc(12);
    [1.5, -2, 3.25].forEach((v, i) => f32.writeFloatLE(v, 4 * i));
    const kv: KV[] = [
      ["general.alignment", 4, 64],
      ["u8", 0, 255],
      ["i8", 1, -128],
      ["u16", 2, 65535],
      ["i16", 3, -32768],
      ["u32", 4, 4294967295],
      ["i32", 5, -2147483648],
      ["f32", 6, 0.5],
      ["bool", 7, true],
      ["str", 8, "héllo ✓"],
      ["u64", 10, 18446744073709551615n],
      ["i64", 11, -9223372036854775808n],
      ["f64", 12, Math.PI],
      ["arr", 9, [5, [1, -2, 3]]],
      ["nested", 9, [9, [[8, ["a", "bc"]], [8, []], [4, [7]]]]],
      ["empty", 9, [9, []]],
    ];
    const p = writeTmp(
      "v2.gguf",
      ggufBytes({
        version: 2,
        alignment: 64,
        kv,
        tensors: [
          { name: "w", ne: [32, 1], type: 3, data: blk },
          { name: "v", ne: [3], type: 0, data: f32 },
        ],
      }),
    );
    const g = readGguf(p);
    expect(g.version).toBe(2);
    expect(g.alignment).toBe(64);
    expect(g.dataOffset % 64).toBe(0);
    expect(g.metadata["u8"]).toBe(255);
    expect(g.metadata["i8"]).toBe(-128);
    expect(g.metadata["u16"]).toBe(65535);
    expect(g.metadata["i16"]).toBe(-32768);
    expect(g.metadata["u32"]).toBe(4294967295);
    expect(g.metadata["i32"]).toBe(-2147483648);
    expect(g.metadata["f32"]).toBe(0.5);
    expect(g.metadata["bool"]).toBe(true);
    expect(g.metadata["str"]).toBe("héllo ✓");
    expect(g.metadata["u64"]).toBe(18446744073709551615n);
    expect(g.metadata["i64"]).toBe(-9223372036854775808n);
    expect(g.metadata["f64"]).toBe(Math.PI);
    expect(g.metadata["arr"]).toEqual([1, -2, 3]);
    expect(g.metadataTypes["arr"]).toBe("ARRAY[INT32]");
    expect(g.metadata["nested"]).toEqual([["a", "bc"], [], [7]]);
    expect(g.metadataTypes["nested"]).toBe("ARRAY[ARRAY[UINT32]]");
    expect(g.metadata["empty"]).toEqual([]);
    const w = get(g.tensors, "w");
    expect(w.shape).toEqual([1, 32]);
    expect(w.byteOffset).toBe(g.dataOffset);
    expect(get(g.tensors, "v").byteOffset).toBe(g.dataOffset + 64);
    const dec = Array.from(decodeToF32(w));
    const want = [];
    for (let j = 0; j < 16; j++) want.push(0.5 * j - 1);
    for (let j = 0; j < 16; j++) want.push(0.5 * (15 - j) - 1);
    expect(dec).toEqual(want);
    expect(Array.from(decodeToF32(get(g.tensors, "v")))).toEqual([1.5, -2, 3.25]);
    expect(Array.from(g.readTensorBytes("v"))).toEqual(Array.from(f32));
  });

  it("lists a 4 GiB (sparse) file without loading it and reads a tensor at its end", () => {
    const big = 2 ** 30; // F32 elements: 4 GiB of data
    const small = Buffer.alloc(16);
    small.writeFloatLE(7, 12);
    const withTwo = ggufBytes({
      tensors: [
        { name: "big", ne: [1024, 1024 * 1024], type: 0, data: new Uint8Array(0) },
        { name: "tail", ne: [4], type: 0, data: new Uint8Array(0) },
      ],
    });
    // Patch the tail's relative offset to 4 GiB (the writer assumed empty data); the file is sparse.
    const p = path.join(tmp, "big.gguf");
    const fd = fs.openSync(p, "w");
    try {
      const hdr = Buffer.from(withTwo);
      const tailName = hdr.indexOf(Buffer.from("tail"));
      // name(4) + n_dims u32 + ne u64 + type u32 -> offset u64
      hdr.writeBigUInt64LE(BigInt(big * 4), tailName + 4 + 4 + 8 + 4);
      fs.writeSync(fd, hdr, 0, hdr.length, 0);
      fs.writeSync(fd, small, 0, 16, hdr.length + big * 4);
    } finally {
      fs.closeSync(fd);
    }
    const g = readGguf(p);
    expect(g.fileSize).toBe(g.dataOffset + big * 4 + 16);
    expect(get(g.tensors, "big").byteLength).toBe(big * 4);
    expect(get(g.tensors, "big").shape).toEqual([1024 * 1024, 1024]);
    expect(Array.from(decodeToF32(get(g.tensors, "tail")))).toEqual([0, 0, 0, 7]);
    fs.rmSync(p);
  });
});

describe("GGUF: bad files give one-line errors with file and byte offset", () => {
  const f32 = () => Buffer.from(fs.readFileSync(GGUF_F32));

  it("missing file", () => {
    const p = path.join(tmp, "nope.gguf");
    expect(errorOf(() => readGguf(p))).toBe(`${p}: file not found`);
    expect(errorOf(() => readLlama2cCheckpoint(p))).toBe(`${p}: file not found`);
    expect(errorOf(() => readSafetensors(p))).toBe(`${p}: file not found`);
    expect(errorOf(() => readGguf(tmp))).toBe(`${tmp}: is a directory, expected a file`);
  });

  it("wrong magic and unsupported versions", () => {
    const b = f32();
    b.write("GGUX", 0, "latin1");
    const p = writeTmp("magic.gguf", b);
    expect(errorOf(() => readGguf(p))).toBe(`${p}: at byte 0: bad magic "GGUX": expected "GGUF" (not a GGUF file)`);
    const b2 = f32();
    b2.writeUInt32LE(4, 4);
    const p2 = writeTmp("v4.gguf", b2);
    expect(errorOf(() => readGguf(p2))).toBe(`${p2}: at byte 4: unsupported GGUF version 4: expected 2 or 3`);
    b2.writeUInt32LE(1, 4);
    fs.writeFileSync(p2, b2);
    expect(errorOf(() => readGguf(p2))).toBe(`${p2}: at byte 4: unsupported GGUF version 1: expected 2 or 3 (GGUF v1 is obsolete)`);
    b2.writeUInt32BE(3, 4);
    fs.writeFileSync(p2, b2);
    expect(errorOf(() => readGguf(p2))).toBe(
      `${p2}: at byte 4: unsupported GGUF version 50331648: expected 2 or 3 (big-endian GGUF is not supported)`,
    );
    const p3 = writeTmp("short.gguf", Buffer.from("GG"));
    expect(errorOf(() => readGguf(p3))).toBe(
      `${p3}: at byte 0: truncated header (GGUF magic): expected 4 bytes, but the file ends at byte 2`,
    );
  });

  it("truncated header and metadata", () => {
    const b = f32();
    const p = writeTmp("t10.gguf", b.subarray(0, 10));
    expect(errorOf(() => readGguf(p))).toBe(
      `${p}: at byte 8: truncated header (tensor count): expected 8 bytes, but the file ends at byte 10`,
    );
    // The first key is "tokenizer.ggml.tokens" (21 bytes) at byte 24: its array count ends at byte 69.
    const p2 = writeTmp("t100.gguf", b.subarray(0, 100));
    expect(errorOf(() => readGguf(p2))).toBe(
      `${p2}: at byte 69: truncated metadata value "tokenizer.ggml.tokens": 512 elements need at least 4096 bytes, but the file ends at byte 100`,
    );
    const p3 = writeTmp("t30.gguf", b.subarray(0, 30));
    expect(errorOf(() => readGguf(p3))).toBe(
      `${p3}: at byte 24: truncated length of metadata key #0: expected 8 bytes, but the file ends at byte 30`,
    );
    const p35 = writeTmp("t35.gguf", b.subarray(0, 35));
    expect(errorOf(() => readGguf(p35))).toBe(
      `${p35}: at byte 32: truncated metadata key #0 (21 bytes): expected 21 bytes, but the file ends at byte 35`,
    );
    const p4 = writeTmp("t5000.gguf", b.subarray(0, 5000));
    expect(errorOf(() => readGguf(p4))).toBe(
      `${p4}: at byte 4996: truncated length of metadata value "tokenizer.ggml.tokens"[370]: expected 8 bytes, but the file ends at byte 5000`,
    );
  });

  it("truncated tensor data is caught when listing, naming the tensor", () => {
    const b = f32();
    const g = readGguf(GGUF_F32);
    const last = [...g.tensors.values()].reduce((a, c) => (c.byteOffset > a.byteOffset ? c : a));
    const p = writeTmp("tdata.gguf", b.subarray(0, b.length - 100));
    expect(errorOf(() => readGguf(p))).toBe(
      `${p}: at byte ${last.byteOffset}: truncated tensor data: tensor "${last.name}" (F32 ${JSON.stringify(last.shape).replace(/,/g, ", ")}, ${last.byteLength} bytes) expected to end at byte ${last.byteOffset + last.byteLength}, but the file ends at byte ${b.length - 100}`,
    );
    // Cutting inside the tensor infos.
    const p2 = writeTmp("tinfo.gguf", b.subarray(0, g.dataOffset - 200));
    expect(errorOf(() => readGguf(p2))).toMatch(/: at byte \d+: truncated .*tensor "blk\.\d\.[a-z_]+\.weight"/);
  });

  it("a patched tensor type: listing works, decoding names the tensor and its type", () => {
    const g = readGguf(GGUF_F32);
    // The last tensor of the data section: a smaller type leaves no gap before another tensor.
    const last = [...g.tensors.values()].reduce((a, t) => (t.byteOffset > a.byteOffset ? t : a));
    expect(last.dtype).toBe("F32");
    const b = f32();
    b.writeUInt32LE(6, last.dtypeOffset!); // Q5_0: same element count, smaller data
    const p5 = writeTmp("q5-last.gguf", b);
    const q5 = get(readGguf(p5).tensors, last.name);
    expect(q5.dtype).toBe("Q5_0");
    expect(q5.byteLength).toBe((last.shape.reduce((x, y) => x * y, 1) / 32) * 22);
    expect(readTensorBytes(q5).length).toBe(q5.byteLength);
    expect(errorOf(() => decodeToF32(q5))).toBe(
      `${p5}: at byte ${last.dtypeOffset}: cannot decode tensor "${last.name}" of type Q5_0: expected one of F32, F16, BF16, Q8_0, Q4_0, Q4_1`,
    );

    // A smaller type in the middle leaves a gap before the next tensor, which ggml refuses too.
    const q = get(g.tensors, "blk.0.attn_q.weight");
    const at = q.dtypeOffset!;
    const c = f32();
    c.writeUInt32LE(6, at);
    const p = writeTmp("q5.gguf", c);
    expect(errorOf(() => readGguf(p))).toMatch(new RegExp(`^${p}: at byte \\d+: tensor "blk\\.0\\.attn_k\\.weight" data offset \\d+: expected \\d+ \\(tensor data packed in order, each padded to 32 bytes\\)$`));

    c.writeUInt32LE(99, at); // an id ggml does not define
    fs.writeFileSync(p, c);
    const g3 = readGguf(p);
    const q3 = get(g3.tensors, "blk.0.attn_q.weight");
    expect(q3.dtype).toBe("GGML_TYPE_99");
    expect(q3.sizeUnknown).toBe(true);
    expect(q3.byteLength).toBe(64 * 64 * 4); // up to the next tensor's data
    expect(errorOf(() => readTensorBytes(q3))).toBe(
      `${p}: at byte ${at}: cannot read tensor "blk.0.attn_q.weight": its type GGML_TYPE_99 is unknown, so its size is unknown`,
    );
    expect(errorOf(() => decodeToF32(q3))).toBe(
      `${p}: at byte ${at}: cannot decode tensor "blk.0.attn_q.weight" of type GGML_TYPE_99: expected one of F32, F16, BF16, Q8_0, Q4_0, Q4_1`,
    );

    b.writeUInt32LE(12, at); // Q4_K: 256-element blocks cannot hold rows of 64
    fs.writeFileSync(p, b);
    expect(errorOf(() => readGguf(p))).toBe(
      `${p}: at byte ${at}: tensor "blk.0.attn_q.weight" of type Q4_K has rows of 64 elements: expected a multiple of the block size 256`,
    );
  });

  it("bad metadata value type, bad bool, bad UTF-8, bad alignment, duplicate key", () => {
    const p = path.join(tmp, "bad.gguf");
    const good = ggufBytes({ kv: [["a", 4, 1]] });
    // key "a": length at 24, byte at 32, type at 33.
    const b = Buffer.from(good);
    b.writeUInt32LE(13, 33);
    fs.writeFileSync(p, b);
    expect(errorOf(() => readGguf(p))).toBe(`${p}: at byte 33: bad value type 13 of metadata value "a": expected a GGUF value type 0..12`);
    fs.writeFileSync(p, ggufBytes({ kv: [["b", 7, true]] }));
    const b2 = fs.readFileSync(p);
    b2[37] = 2;
    fs.writeFileSync(p, b2);
    expect(errorOf(() => readGguf(p))).toBe(`${p}: at byte 37: bad metadata value "b": expected a BOOL (0 or 1), got 2`);
    const b3 = ggufBytes({ kv: [["s", 8, "ab"]] });
    b3[45] = 0xff;
    fs.writeFileSync(p, b3);
    expect(errorOf(() => readGguf(p))).toBe(`${p}: at byte 45: metadata value "s" is not valid UTF-8: expected a UTF-8 string`);
    fs.writeFileSync(p, ggufBytes({ kv: [["general.alignment", 4, 48]] }));
    expect(errorOf(() => readGguf(p))).toBe(`${p}: at byte 53: bad general.alignment 48: expected a power of two`);
    fs.writeFileSync(p, ggufBytes({ kv: [["k", 4, 1], ["k", 4, 2]] }));
    expect(errorOf(() => readGguf(p))).toBe(`${p}: at byte 41: duplicate metadata key "k": expected unique keys`);
  });
});

describe("corrupted files never raise anything but a one-line QzoError", () => {
  function rng(seed: number): () => number {
    let x = seed >>> 0 || 1;
    return () => {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      return x;
    };
  }
  function survive(fn: () => unknown): void {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof QzoError)) throw e;
      expect((e as QzoError).message).not.toContain("\n");
    }
  }
  it("random byte patches and truncations of GGUF, safetensors, llama2.c and tokenizer files", () => {
    const r = rng(2024);
    const cases: Array<[string, (p: string) => unknown, number]> = [
      [GGUF_Q4, (p) => { const g = readGguf(p); for (const t of g.tensors.values()) if (!t.sizeUnknown) decodeToF32(t); }, 14240],
      [path.join(HF, "model.safetensors"), (p) => { const st = readSafetensors(p); for (const t of st.tensors.values()) decodeToF32(t); }, 6000],
      [L2C, (p) => readLlama2cCheckpoint(p), 28],
      [TOK, (p) => readLlama2cTokenizer(p, 512), 6227],
    ];
    for (const [src, read, headerLen] of cases) {
      const orig = fs.readFileSync(src);
      const p = path.join(tmp, "fuzz-" + path.basename(src));
      for (let k = 0; k < 150; k++) {
        const b = Buffer.from(orig);
        const nPatches = 1 + (r() % 3);
        for (let j = 0; j < nPatches; j++) b[r() % headerLen] = r() & 0xff;
        fs.writeFileSync(p, b);
        survive(() => read(p));
      }
      for (let k = 0; k < 40; k++) {
        fs.writeFileSync(p, orig.subarray(0, r() % orig.length));
        survive(() => read(p));
      }
    }
  });
});

describe("llama2.c files", () => {
  it("reads stories260K.bin with the header facts and llama2.c's tensor layout", () => {
    const c = readLlama2cCheckpoint(L2C);
    expect(c.metadata).toEqual({
      dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512,
      sharedClassifier: true, headSize: 8, kvDim: 32,
    });
    expect([...c.tensors.keys()]).toEqual([
      "token_embedding_table", "rms_att_weight", "wq", "wk", "wv", "wo", "rms_ffn_weight", "w1", "w2", "w3", "rms_final_weight",
    ]);
    const s = (n: string) => get(c.tensors, n).shape;
    expect(s("token_embedding_table")).toEqual([512, 64]);
    expect(s("rms_att_weight")).toEqual([5, 64]);
    expect(s("wq")).toEqual([5, 64, 64]);
    expect(s("wk")).toEqual([5, 32, 64]);
    expect(s("wv")).toEqual([5, 32, 64]);
    expect(s("wo")).toEqual([5, 64, 64]);
    expect(s("w1")).toEqual([5, 172, 64]);
    expect(s("w2")).toEqual([5, 64, 172]);
    expect(s("w3")).toEqual([5, 172, 64]);
    expect(s("rms_final_weight")).toEqual([64]);
    expect(get(c.tensors, "token_embedding_table").byteOffset).toBe(28);
    // rms_final_weight is followed by the two freq_cis tables, [512, 4] each, then the end of the file.
    const fin = get(c.tensors, "rms_final_weight");
    expect(fin.byteOffset + fin.byteLength + 2 * 512 * 4 * 4).toBe(c.fileSize);
    const bb = readLlama2cCheckpoint(path.join(MODELS, "babyllama-tok105/model5000.bin"));
    expect(bb.metadata).toMatchObject({ dim: 128, hiddenDim: 352, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 105, seqLen: 256 });
  });

  it("checks the file size exactly against the header, and the header fields", () => {
    const b = fs.readFileSync(L2C);
    const cfg = "dim=64, hidden_dim=172, n_layers=5, n_heads=8, n_kv_heads=4, vocab_size=512, seq_len=512";
    const p = writeTmp("short.bin", b.subarray(0, b.length - 4));
    expect(errorOf(() => readLlama2cCheckpoint(p))).toBe(
      `${p}: at byte ${b.length - 4}: file size ${b.length - 4} bytes does not match the header (${cfg}): expected exactly ${b.length} bytes`,
    );
    const p2 = writeTmp("long.bin", Buffer.concat([b, Buffer.alloc(3)]));
    expect(errorOf(() => readLlama2cCheckpoint(p2))).toBe(
      `${p2}: at byte ${b.length}: file size ${b.length + 3} bytes does not match the header (${cfg}): expected exactly ${b.length} bytes`,
    );
    // Unshared classifier: a negative vocab_size needs wcls too.
    const neg = Buffer.from(b);
    neg.writeInt32LE(-512, 20);
    const p3 = writeTmp("neg.bin", neg);
    expect(errorOf(() => readLlama2cCheckpoint(p3))).toBe(
      `${p3}: at byte ${b.length}: file size ${b.length} bytes does not match the header (${cfg.replace("vocab_size=512", "vocab_size=-512")}): expected exactly ${b.length + 512 * 64 * 4} bytes`,
    );
    const p4 = writeTmp("neg2.bin", Buffer.concat([neg, Buffer.alloc(512 * 64 * 4)]));
    const c4 = readLlama2cCheckpoint(p4);
    expect(c4.metadata.sharedClassifier).toBe(false);
    expect(get(c4.tensors, "wcls").byteOffset).toBe(b.length);
    expect(get(c4.tensors, "wcls").shape).toEqual([512, 64]);
    const p5 = writeTmp("hdr.bin", b.subarray(0, 20));
    expect(errorOf(() => readLlama2cCheckpoint(p5))).toBe(
      `${p5}: at byte 20: truncated header (7 int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len) at field vocab_size: expected 4 bytes, but the file ends at byte 20`,
    );
    const bad = Buffer.from(b);
    bad.writeInt32LE(3, 16); // n_kv_heads = 3 does not divide 8
    const p6 = writeTmp("kv.bin", bad);
    expect(errorOf(() => readLlama2cCheckpoint(p6))).toBe(`${p6}: at byte 16: bad header field n_kv_heads = 3: expected a divisor of n_heads 8`);
    const v1 = Buffer.alloc(256);
    v1.writeUInt32LE(0x616b3432, 0);
    v1.writeInt32LE(1, 4);
    const p7 = writeTmp("v1.bin", v1);
    expect(errorOf(() => readLlama2cCheckpoint(p7))).toBe(
      `${p7}: at byte 0: llama2.c export version 1 (magic "ak42") is not supported: expected the legacy version-0 checkpoint (7 int32 header)`,
    );
  });

  it("reads tokenizer.bin raw, with truncation errors", () => {
    const t = readLlama2cTokenizer(TOK, 512);
    expect(t.maxTokenLength).toBe(7);
    expect(t.pieces.length).toBe(512);
    expect(t.scores.length).toBe(512);
    expect(Buffer.from(t.pieces[0]!).toString("latin1")).toBe("<unk>");
    expect(Buffer.from(t.pieces[1]!).toString("latin1")).toBe("\n<s>\n");
    expect(Buffer.from(t.pieces[3]!).toString("latin1")).toBe("<0x00>");
    expect(t.pieces.every((p) => p.length <= 7)).toBe(true);
    expect(readLlama2cTokenizer(TOK).pieces.length).toBe(512); // to the end of the file
    const tb = readLlama2cTokenizer(path.join(MODELS, "babyllama-tok105/tok105.bin"), 105);
    expect(tb.pieces.length).toBe(105);

    const b = fs.readFileSync(TOK);
    const p = writeTmp("tok-short.bin", b.subarray(0, b.length - 2));
    const m = errorOf(() => readLlama2cTokenizer(p, 512));
    expect(m).toMatch(new RegExp(`: at byte \\d+: truncated bytes of token 511 \\(\\d+ bytes\\): expected \\d+ bytes, but the file ends at byte ${b.length - 2}$`));
    const p2 = writeTmp("tok-3.bin", b.subarray(0, 3));
    expect(errorOf(() => readLlama2cTokenizer(p2))).toBe(
      `${p2}: at byte 0: truncated header (int32 max_token_length): expected 4 bytes, but the file ends at byte 3`,
    );
    expect(errorOf(() => readLlama2cTokenizer(TOK, 511))).toMatch(/: at byte \d+: unexpected data after 511 tokens: expected the end of the file \(\d+ bytes left\)$/);
    expect(errorOf(() => readLlama2cTokenizer(TOK, 513))).toBe(
      `${TOK}: at byte ${b.length}: truncated score (float32) of token 512: expected 4 bytes, but the file ends at byte ${b.length}`,
    );
  });
});

describe("safetensors and Hugging Face directories", () => {
  it("reads the stories260K HF directory", () => {
    const h = readHfModel(HF);
    expect(h.shards).toEqual([path.join(HF, "model.safetensors")]);
    const st = readSafetensors(path.join(HF, "model.safetensors"));
    expect(st.metadata).toEqual({ format: "pt" });
    expect(st.dataOffset).toBe(8 + st.headerLength);
    for (const t of st.tensors.values()) {
      expect(t.dtype).toBe("F32");
      expect(t.byteOffset).toBeGreaterThanOrEqual(st.dataOffset);
    }
    expect(get(h.tensors, "model.layers.0.self_attn.k_proj.weight").shape).toEqual([32, 64]);
    expect(get(h.tensors, "model.layers.3.mlp.down_proj.weight").shape).toEqual([64, 172]);
  });

  it("validates the header length, offsets and dtypes", () => {
    const data = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
    const good = safetensorsBytes({ x: { dtype: "F32", shape: [2, 2], data }, y: { dtype: "I8", shape: [3], data: new Uint8Array([1, 255, 3]) } }, { k: "v" });
    const p = writeTmp("g.safetensors", good);
    const st = readSafetensors(p);
    expect(st.metadata).toEqual({ k: "v" });
    expect(get(st.tensors, "x").shape).toEqual([2, 2]);
    expect(Array.from(decodeToF32(get(st.tensors, "x")))).toEqual([1, 2, 3, 4]);
    expect(Array.from(st.readTensorBytes("y"))).toEqual([1, 255, 3]);
    expect(errorOf(() => decodeToF32(get(st.tensors, "y")))).toMatch(/: at byte \d+: cannot decode tensor "y" of type I8: expected one of F32, F16, BF16, Q8_0, Q4_0, Q4_1$/);

    const p1 = writeTmp("t.safetensors", good.subarray(0, good.length - 1));
    const hl = good.readUInt32LE(0);
    expect(errorOf(() => readSafetensors(p1))).toBe(
      `${p1}: at byte ${8 + hl + 16}: truncated tensor data: tensor "y" expected to end at byte ${8 + hl + 19}, but the file ends at byte ${good.length - 1}`,
    );
    const p2 = writeTmp("h.safetensors", good.subarray(0, 40));
    expect(errorOf(() => readSafetensors(p2))).toBe(`${p2}: at byte 0: header length ${hl} exceeds the file: expected at most 32 bytes (file is 40 bytes)`);
    const p3 = writeTmp("s.safetensors", good.subarray(0, 5));
    expect(errorOf(() => readSafetensors(p3))).toBe(`${p3}: at byte 0: truncated header: expected an 8-byte header length, but the file is 5 bytes long`);
    const bad = Buffer.from(good);
    bad.write("F33", bad.indexOf("F32"), "latin1");
    const p4 = writeTmp("d.safetensors", bad);
    expect(errorOf(() => readSafetensors(p4))).toBe(
      `${p4}: at byte ${good.indexOf('"x"')}: unsupported dtype "F33" of tensor "x": expected one of BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64`,
    );
    const bad2 = Buffer.from(good);
    bad2.write("[2,3]", bad2.indexOf("[2,2]"), "latin1");
    const p5 = writeTmp("o.safetensors", bad2);
    expect(errorOf(() => readSafetensors(p5))).toBe(
      `${p5}: at byte ${good.indexOf('"x"')}: tensor "x" (F32 [2, 3]) has data_offsets [0, 16] (16 bytes): expected 24 bytes`,
    );
    const bad3 = Buffer.from(good);
    bad3[8] = 0x5b; // '[' instead of '{'
    const p6 = writeTmp("j.safetensors", bad3);
    expect(errorOf(() => readSafetensors(p6))).toMatch(/: at byte \d+: header is not valid JSON: expected a JSON object$/);
  });

  it("reads sharded directories and names a missing shard or file", () => {
    const dir = path.join(tmp, "sharded");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "llama" }));
    const one = new Uint8Array(new Float32Array([1]).buffer);
    fs.writeFileSync(path.join(dir, "model-00001-of-00002.safetensors"), safetensorsBytes({ a: { dtype: "F32", shape: [1], data: one } }));
    fs.writeFileSync(
      path.join(dir, "model-00002-of-00002.safetensors"),
      safetensorsBytes({ b: { dtype: "F16", shape: [2], data: new Uint8Array([0, 0x3c, 0, 0xc0]) }, c: { dtype: "I32", shape: [1], data: new Uint8Array(4) } }),
    );
    const index = { metadata: { total_size: 12 }, weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors", c: "model-00002-of-00002.safetensors" } };
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify(index));
    const h = readHfModel(dir);
    expect([...h.tensors.keys()].sort()).toEqual(["a", "b", "c"]);
    expect(path.basename(get(h.tensors, "b").file)).toBe("model-00002-of-00002.safetensors");
    expect(Array.from(decodeToF32(get(h.tensors, "b")))).toEqual([1, -2]);
    expect(h.shards.length).toBe(2);

    fs.rmSync(path.join(dir, "model-00002-of-00002.safetensors"));
    const shard2 = path.join(dir, "model-00002-of-00002.safetensors");
    expect(errorOf(() => readHfModel(dir))).toBe(
      `${shard2}: file not found: shard listed in ${path.join(dir, "model.safetensors.index.json")} weight_map (for 2 tensors, e.g. "b")`,
    );
    fs.writeFileSync(shard2, safetensorsBytes({ b: { dtype: "F16", shape: [2], data: new Uint8Array(4) } }));
    expect(errorOf(() => readHfModel(dir))).toBe(
      `${shard2}: at byte 8: no tensor "c" in this shard: expected it here per ${path.join(dir, "model.safetensors.index.json")} weight_map`,
    );
    fs.rmSync(path.join(dir, "model.safetensors.index.json"));
    expect(errorOf(() => readHfModel(dir))).toBe(
      `${path.join(dir, "model.safetensors")}: file not found: expected model.safetensors, diffusion_pytorch_model.safetensors or their .index.json in ${dir}`,
    );
    fs.rmSync(path.join(dir, "config.json"));
    expect(errorOf(() => readHfModel(dir))).toBe(`${path.join(dir, "config.json")}: file not found (every Hugging Face model directory has one)`);
    expect(errorOf(() => readHfModel(path.join(tmp, "absent")))).toBe(`${path.join(tmp, "absent")}: file not found`);
    fs.writeFileSync(path.join(dir, "config.json"), '{"a": 1,, }');
    expect(errorOf(() => readHfModel(dir))).toMatch(/config\.json: at byte \d+: not valid JSON: expected a JSON document$/);
  });

  it("reads GPTQ settings and their zero-point convention", () => {
    const dir = path.join(tmp, "gptq");
    fs.mkdirSync(dir, { recursive: true });
    const cfg = path.join(dir, "config.json");
    fs.writeFileSync(cfg, JSON.stringify({ model_type: "llama" }));
    expect(readGptqConfig(dir)).toBeUndefined();
    fs.writeFileSync(cfg, JSON.stringify({ quantization_config: { quant_method: "awq", bits: 4 } }));
    expect(readGptqConfig(dir)).toBeUndefined();
    fs.writeFileSync(cfg, JSON.stringify({ quantization_config: { quant_method: "gptq", bits: 4, group_size: 128, desc_act: true, sym: true } }));
    expect(readGptqConfig(dir)).toMatchObject({ source: cfg, bits: 4, groupSize: 128, descAct: true, sym: true, checkpointFormat: "gptq", zeroPointOffset: 1 });
    const qc = path.join(dir, "quantize_config.json");
    fs.writeFileSync(qc, JSON.stringify({ bits: 4, group_size: -1, desc_act: false, sym: false, quant_method: "gptq", checkpoint_format: "gptq_v2" }));
    expect(readGptqConfig(dir)).toMatchObject({ source: qc, groupSize: -1, sym: false, checkpointFormat: "gptq_v2", zeroPointOffset: 0 });
    fs.writeFileSync(qc, JSON.stringify({ bits: 4, group_size: 128, format: "gptq_v2" }));
    expect(readGptqConfig(dir)).toMatchObject({ checkpointFormat: "gptq_v2", zeroPointOffset: 0, descAct: false, sym: true });
    fs.writeFileSync(qc, JSON.stringify({ bits: 4, group_size: 128, is_marlin_format: true }));
    expect(readGptqConfig(dir)).toMatchObject({ checkpointFormat: "marlin", zeroPointOffset: undefined });
    fs.writeFileSync(qc, JSON.stringify({ bits: 5, group_size: 128 }));
    expect(errorOf(() => readGptqConfig(dir))).toBe(`${qc}: at byte 0: bad GPTQ setting bits = 5: expected 2, 3, 4 or 8`);
    fs.writeFileSync(qc, JSON.stringify({ bits: 4, group_size: 0 }));
    expect(errorOf(() => readGptqConfig(dir))).toBe(`${qc}: at byte 0: bad GPTQ setting group_size = 0: expected a positive integer or -1`);

    expect(inferGptqZeroPointOffset(new Int32Array([0x77777777, 0x77777777]), 4)).toBe(1);
    expect(inferGptqZeroPointOffset(new Uint32Array([0x88888888]), 4)).toBe(0);
    expect(inferGptqZeroPointOffset(new Int32Array([0x78777777]), 4)).toBeUndefined();
    expect(inferGptqZeroPointOffset(new Int32Array([0x7f7f7f7f]), 8)).toBe(1);
  });
});
