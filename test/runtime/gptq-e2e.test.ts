/**
 * The safetensors writer, and a GPTQ checkpoint end to end: stories260K (Hugging Face, F32) with its
 * attention projections quantized by RTN into gptq_int4_g32 (GPTQ's layout, groups of 32), written as
 * a Hugging Face GPTQ directory (qweight/qzeros/scales beside each weight name), bound with a spec
 * that also declares gptq_int4 (groups of 128), then compared with the F32 model.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import type { FormatIR } from "../../src/compiler/ir/ir.js";
import { generate } from "../../src/runtime/infer/generate.js";
import { lmLoss, perplexity } from "../../src/runtime/infer/perplexity.js";
import { bindModel } from "../../src/runtime/load/bind.js";
import { modelTokenizer } from "../../src/runtime/load/tokenizer.js";
import { decodeBytesToF32, readHfModel, readSafetensors } from "../../src/runtime/model-files/index.js";
import { type SafetensorsTensor, writeSafetensors } from "../../src/runtime/model-files/safetensors-write.js";
import { dequantize, unpack } from "../../src/runtime/quant/codec.js";
import { f32BitsToF16Bits } from "../../src/util/float-bits.js";
import { evalIntExpr } from "../../src/compiler/ir/int-expr.js";
import { quantizeRTN } from "../../src/runtime/quant/quantize.js";
import type { PackedTensor } from "../../src/runtime/quant/types.js";
import { QzoError } from "../../src/util/errors.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MODELS = join(ROOT, "..", "shared", "models");
const HF = join(MODELS, "hf", "stories260K");
const SPECS = join(ROOT, "test", "fixtures", "specs");
const SPEC = join(SPECS, "llama-gptq32.qzo");

const bytesOf = (a: Float32Array | Int32Array | Uint16Array | Int16Array | BigInt64Array | Int8Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const tmp = (tag: string) => mkdtempSync(join(tmpdir(), `qzo-${tag}-`));

// ------------------------------------------------------------------ the writer

describe("writeSafetensors", () => {
  const tensors: SafetensorsTensor[] = [
    { name: "b.f16", dtype: "F16", shape: [3], data: bytesOf(Uint16Array.from([0x3c00, 0xc000, 0x7bff])) },
    { name: "a.f32", dtype: "F32", shape: [2, 3], data: bytesOf(Float32Array.from([1, -2, 3.5, 0, 1e-8, -0])) },
    { name: "c.bf16", dtype: "BF16", shape: [1], data: bytesOf(Uint16Array.from([0x3f80])) },
    { name: "d.i32", dtype: "I32", shape: [2, 1], data: bytesOf(Int32Array.from([-1, 0x7fffffff])) },
    { name: "e.i8", dtype: "I8", shape: [5], data: bytesOf(Int8Array.from([-128, -1, 0, 1, 127])) },
    { name: "f.u8", dtype: "U8", shape: [2, 2], data: Uint8Array.from([0, 1, 254, 255]) },
    { name: "g.i16", dtype: "I16", shape: [1, 1, 2], data: bytesOf(Int16Array.from([-32768, 32767])) },
    { name: "h.i64", dtype: "I64", shape: [2], data: bytesOf(BigInt64Array.from([-(2n ** 63n), 42n])) },
    { name: "s.scalar", dtype: "F32", shape: [], data: bytesOf(Float32Array.from([7])) },
    { name: "z.empty", dtype: "F32", shape: [0, 4], data: new Uint8Array(0) },
  ];
  const meta = { format: "pt", "qzo.note": "ünïcödé ✓" };

  it("writes what the reader reads back, tensor for tensor", () => {
    const file = join(tmp("st"), "m.safetensors");
    writeSafetensors(file, tensors, meta);
    const st = readSafetensors(file);
    expect({ ...st.metadata }).toEqual(meta);
    expect([...st.tensors.keys()].sort()).toEqual(tensors.map((t) => t.name).sort());
    for (const t of tensors) {
      const info = st.tensors.get(t.name)!;
      expect(info.dtype).toBe(t.dtype);
      expect(info.shape).toEqual(t.shape);
      expect(Buffer.from(st.readTensorBytes(t.name)).equals(Buffer.from(t.data))).toBe(true);
    }
    expect(decodeBytesToF32(st.tensors.get("a.f32")!, st.readTensorBytes("a.f32"))).toEqual(Float32Array.from([1, -2, 3.5, 0, 1e-8, -0]));
  });

  it("follows the published layout: u64 LE header length, space-padded JSON, contiguous data", () => {
    const file = join(tmp("st"), "m.safetensors");
    writeSafetensors(file, tensors, meta);
    const buf = readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = buf.subarray(8, 8 + n).toString("utf8");
    expect(text[0]).toBe("{");
    expect(/^[^]*\} *$/.test(text)).toBe(true); // only spaces after the JSON
    const header = JSON.parse(text) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    expect(header["__metadata__"]).toEqual(meta);
    const size: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I8: 1, U8: 1, I16: 2, I64: 8 };
    const spans = Object.entries(header)
      .filter(([k]) => k !== "__metadata__")
      .map(([, e]) => e)
      .sort((a, b) => a.data_offsets[0] - b.data_offsets[0]);
    let at = 0;
    for (const e of spans) {
      expect(e.data_offsets[0]).toBe(at); // no gap, no overlap
      expect(e.data_offsets[1] - e.data_offsets[0]).toBe(e.shape.reduce((a, d) => a * d, 1) * size[e.dtype]!);
      expect(e.data_offsets[0] % size[e.dtype]!).toBe(0); // aligned to its element (widest first)
      at = e.data_offsets[1];
    }
    expect(buf.length).toBe(8 + n + at); // the data section ends the file
  });

  it("writes an empty file (no tensors, no metadata) and replaces an existing file atomically", () => {
    const dir = tmp("st");
    const file = join(dir, "m.safetensors");
    writeSafetensors(file, []);
    const buf = readFileSync(file);
    expect(buf.length).toBe(16);
    expect(buf.subarray(8).toString("utf8")).toBe("{}      ");
    expect(readSafetensors(file).tensors.size).toBe(0);
    writeSafetensors(file, tensors.slice(0, 2));
    expect([...readSafetensors(file).tensors.keys()].sort()).toEqual(["a.f32", "b.f16"]);
    expect(readdirSync(dir)).toEqual(["m.safetensors"]); // no temporary file left behind
  });

  it("refuses bad tensors with one line naming the file and tensor, and leaves no file", () => {
    const dir = tmp("st");
    const file = join(dir, "bad.safetensors");
    const f32 = (name: string, shape: number[], n: number): SafetensorsTensor => ({ name, dtype: "F32", shape, data: new Uint8Array(n) });
    const cases: [SafetensorsTensor[], RegExp][] = [
      [[f32("w", [2, 3], 20)], /^.*bad\.safetensors: tensor "w" \(F32 \[2, 3\]\) has 20 bytes of data: expected 24$/],
      [[f32("w", [1], 4), f32("w", [1], 4)], /tensor "w" is given twice: expected unique names$/],
      [[f32("", [1], 4)], /a tensor has an empty name/],
      [[f32("__metadata__", [1], 4)], /the name is reserved for the metadata map/],
      [[f32("w", [-1], 4)], /tensor "w": bad shape \[-1\]: expected an array of non-negative integers$/],
      [[{ name: "w", dtype: "F64" as "F32", shape: [1], data: new Uint8Array(8) }], /tensor "w": unsupported dtype "F64": expected one of F32, /],
    ];
    for (const [ts, re] of cases) {
      expect(() => writeSafetensors(file, ts)).toThrow(QzoError);
      expect(() => writeSafetensors(file, ts)).toThrow(re);
    }
    expect(() => writeSafetensors(file, [], { n: 1 as unknown as string })).toThrow(/metadata "n" is number: expected a string value$/);
    expect(existsSync(dir) && readdirSync(dir)).toEqual([]);
  });
});

// ------------------------------------------------------------------ GPTQ end to end

/** Rotate-half (HF) row -> interleaved (llama2.c, GGUF, the graph) row, within heads of hd rows. */
function unpermutedRow(r: number, hd: number): number {
  const h = Math.floor(r / hd);
  const k = Math.floor((r % hd) / (hd / 2));
  const j = r % (hd / 2);
  return h * hd + 2 * j + k;
}

function permuteRows(w: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) out.set(w.subarray(r * cols, (r + 1) * cols), unpermutedRow(r, rows / heads) * cols);
  return out;
}

function toF16(w: Float32Array): Uint8Array {
  const u = new Uint32Array(w.buffer, w.byteOffset, w.length);
  return bytesOf(Uint16Array.from(u, (x) => f32BitsToF16Bits(x)));
}

/** The checkpoint tensors of a packed tensors-layout matrix, named beside `prefix`. */
function gptqTensors(prefix: string, p: PackedTensor): SafetensorsTensor[] {
  if (p.format.layout.kind !== "tensors") throw new Error("not a tensors layout");
  return p.format.layout.fields.map((f) => ({
    name: prefix + f.tensor,
    dtype: f.dtype.toUpperCase() as SafetensorsTensor["dtype"],
    shape: f.shape.map((e) => evalIntExpr(e, { in: p.cols, out: p.rows })),
    data: p.storage[f.tensor]!,
  }));
}

const TEXT =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. " +
  "One day, she saw a big red ball in the grass. She ran to get it and showed it to her mom. Her mom smiled and said, \"Let's play together.\"";

const PRESENT = existsSync(join(HF, "model.safetensors"));

describe.skipIf(!PRESENT)("a GPTQ (group 32) stories260K, written and bound", () => {
  const fmt: FormatIR = checkFile(join(SPECS, "gptq_int4_g32.qzo")).formats.find((f) => f.name === "gptq_int4_g32")!;
  const hf = readHfModel(HF);
  const cfg = hf.config as { num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number };
  const L = cfg.num_hidden_layers;
  const f32 = (name: string) => decodeBytesToF32(hf.tensors.get(name)!, hf.readTensorBytes(name));
  const PROJ = ["q_proj", "k_proj", "v_proj", "o_proj"] as const;
  const heads: Record<string, number> = { q_proj: cfg.num_attention_heads, k_proj: cfg.num_key_value_heads };

  /** Per layer and projection: the RTN-dequantized weight in HF row order. */
  const rtn = new Map<string, { rows: number; cols: number; w: Float32Array }>();

  function writeCheckpoint(dir: string, override?: (t: SafetensorsTensor[]) => SafetensorsTensor[]): void {
    const out: SafetensorsTensor[] = [];
    for (const [name, info] of hf.tensors) {
      const m = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.weight$/.exec(name);
      if (m && (PROJ as readonly string[]).includes(m[3]!)) {
        const [rows, cols] = info.shape as [number, number];
        const packed = quantizeRTN(fmt, rows, cols, f32(name));
        rtn.set(name, { rows, cols, w: dequantize(unpack(packed)) });
        out.push(...gptqTensors(name.replace(/weight$/, ""), packed));
      } else if (m && m[3] === "down_proj") {
        out.push({ name, dtype: "F16", shape: info.shape, data: toF16(f32(name)) }); // hidden 172 is no multiple of 32
      } else {
        out.push({ name, dtype: "F32", shape: info.shape, data: hf.readTensorBytes(name) });
      }
    }
    const config = {
      ...hf.config,
      torch_dtype: "float16",
      quantization_config: { quant_method: "gptq", bits: 4, group_size: 32, desc_act: false, sym: false, checkpoint_format: "gptq" },
    };
    writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
    copyFileSync(join(HF, "tokenizer.json"), join(dir, "tokenizer.json"));
    writeSafetensors(join(dir, "model.safetensors"), override ? override(out) : out, { format: "pt" });
  }

  const dir = tmp("gptq");
  writeCheckpoint(dir);

  it("is a Hugging Face GPTQ directory: settings, and qweight/qzeros/scales where the weights were", () => {
    const g = readHfModel(dir);
    expect(g.gptq).toMatchObject({ bits: 4, groupSize: 32, descAct: false, sym: false, checkpointFormat: "gptq", zeroPointOffset: 1 });
    const t = (n: string) => g.tensors.get(n)!;
    expect(g.tensors.has("model.layers.0.self_attn.q_proj.weight")).toBe(false);
    expect([t("model.layers.0.self_attn.q_proj.qweight").dtype, t("model.layers.0.self_attn.q_proj.qweight").shape]).toEqual(["I32", [8, 64]]);
    expect([t("model.layers.0.self_attn.k_proj.qzeros").dtype, t("model.layers.0.self_attn.k_proj.qzeros").shape]).toEqual(["I32", [2, 4]]);
    expect([t("model.layers.0.self_attn.k_proj.scales").dtype, t("model.layers.0.self_attn.k_proj.scales").shape]).toEqual(["F16", [2, 32]]);
    expect(t("model.layers.0.mlp.down_proj.weight").dtype).toBe("F16");
    expect(t("model.layers.0.mlp.gate_proj.weight").dtype).toBe("F32");
  });

  it("binds q/k/v/o as gptq_int4_g32 (not gptq_int4), and the dequantized weights are the RTN ones, rows put in graph order", () => {
    const b = bindModel(dir, { spec: SPEC });
    expect(b.overrides).toMatchObject({ weight: "gptq_int4_g32", ffn_up: "f32", head: "f32", dim: 64, n_kv_heads: 4 });
    expect(b.overrides["ffn_down"]).toBeUndefined(); // F16 down_proj is w2's `or f16` fallback: ffn_down stays `weight`
    const param = (n: string) => b.module.params.find((p) => p.name === n)!;
    for (const n of ["wq", "wk", "wv", "wo"]) expect(param(n).resolved).toBe("gptq_int4_g32");
    expect(param("w2").resolved).toBe("f16");
    expect(param("w1").resolved).toBe("f32");
    const names: Record<string, string> = { wq: "self_attn.q_proj", wk: "self_attn.k_proj", wv: "self_attn.v_proj", wo: "self_attn.o_proj" };
    let checked = 0;
    for (let l = 0; l < L; l++) {
      for (const [p, hfName] of Object.entries(names)) {
        const s = b.stored(p, l);
        if (s.kind !== "quant") throw new Error(`${p}[${l}] is not quantized`);
        expect(s.packed.format.name).toBe("gptq_int4_g32");
        expect(s.tensor).toBe(`model.layers.${l}.${hfName}.qweight`);
        const ref = rtn.get(`model.layers.${l}.${hfName}.weight`)!;
        const h = heads[hfName.split(".")[1]!];
        const want = h ? permuteRows(ref.w, ref.rows, ref.cols, h) : ref.w;
        const got = dequantize(unpack(s.packed));
        expect(Buffer.from(bytesOf(got)).equals(Buffer.from(bytesOf(want))), `${p}[${l}]`).toBe(true);
        if (h) expect(Buffer.from(bytesOf(got)).equals(Buffer.from(bytesOf(ref.w)))).toBe(false); // the reordering did something
        const v = b.weights.get(p, l);
        expect(v.kind).toBe("quant");
        checked++;
      }
      const w2 = b.stored("w2", l);
      expect(w2.kind === "float" && w2.shape).toEqual([64, 172]);
    }
    expect(checked).toBe(4 * L);
  });

  it("scores and continues text like the F32 model", () => {
    const ref = bindModel(HF);
    const q = bindModel(dir, { spec: SPEC });
    const tok = modelTokenizer(q.checkpoint);
    const pRef = perplexity(ref.module, lmLoss(ref.module, ref.weights), modelTokenizer(ref.checkpoint), TEXT, "text");
    const pQ = perplexity(q.module, lmLoss(q.module, q.weights), tok, TEXT, "text");
    const n = 40;
    const opts = { prompt: "Once upon a time", steps: n, temperature: 0, seed: 0 };
    const gRef = generate(ref.module, ref.weights, modelTokenizer(ref.checkpoint), opts);
    const gQ = generate(q.module, q.weights, tok, opts);
    let agree = 0;
    while (agree < gRef.tokens.length && gRef.tokens[agree] === gQ.tokens[agree]) agree++;
    const prompt = tok.encode(opts.prompt, { bos: true, eos: false }).length;
    console.log(
      `GPTQ g32 stories260K: ppl ${pQ.ppl.toFixed(4)} vs F32 ${pRef.ppl.toFixed(4)} (${(((pQ.ppl - pRef.ppl) / pRef.ppl) * 100).toFixed(2)}%, ${pQ.tokens} tokens); ` +
        `greedy: ${agree - prompt} of ${gRef.tokens.length - prompt} generated tokens agree\n  F32:  ${JSON.stringify(gRef.text)}\n  GPTQ: ${JSON.stringify(gQ.text)}`,
    );
    expect(pQ.tokens).toBe(pRef.tokens);
    expect(Math.abs(pQ.ppl - pRef.ppl) / pRef.ppl).toBeLessThan(0.05);
    expect(gQ.text.startsWith("Once upon a time")).toBe(true);
    expect(agree - prompt).toBeGreaterThanOrEqual(10);
  }, 120_000);

  it("names the tensors and the shapes every format expects when none matches", () => {
    const bad = tmp("gptq-bad");
    const q = "model.layers.0.self_attn.q_proj.";
    writeCheckpoint(bad, (ts) =>
      ts.map((t) =>
        t.name === `${q}qzeros` ? { ...t, shape: [4, 8], data: new Uint8Array(128) } : t.name === `${q}scales` ? { ...t, shape: [4, 64], data: new Uint8Array(512) } : t,
      ),
    );
    const run = () => bindModel(bad, { spec: SPEC });
    expect(run).toThrow(QzoError);
    expect(run).toThrow(
      `${bad}: ${q}qweight i32[8, 64], ${q}qzeros i32[4, 8], ${q}scales f16[4, 64] match no format of parameter 'wq' [64, 64]: ` +
        `expected gptq_int4 qweight i32[8, 64], qzeros i32[0, 8], scales f16[0, 64]; or gptq_int4_g32 qweight i32[8, 64], qzeros i32[2, 8], scales f16[2, 64]`,
    );
  });

  it("cannot put stories260K's gate/up projections (172 outputs) in GPTQ's qzeros, 8 outputs a word", () => {
    expect(() => quantizeRTN(fmt, 172, 64, f32("model.layers.0.mlp.gate_proj.weight"))).toThrow(/qzeros/);
    expect(statSync(join(dir, "model.safetensors")).size).toBeGreaterThan(0);
  });
});
