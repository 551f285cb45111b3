/**
 * AQLM 2x8 end to end through the command line, on stories260K (the Hugging Face copy of the
 * shared test models): `qzo quantize` writes the layout of AQLM's Hugging Face checkpoints; its
 * perplexity equals a dequantize-then-forward written here from that layout alone (an F32 model
 * built from the stored codes, codebooks and scales, run through the float path); the CPU kernels
 * agree with the interpreter; `qzo train` lowers the held-out loss and exports the same layout with
 * only the scales changed; inconsistent checkpoints fail in one line.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { beforeAll, describe, expect, it } from "vitest";
import { readSafetensors } from "../../src/runtime/model-files/safetensors.js";
import { type SafetensorsTensor, writeSafetensors } from "../../src/runtime/model-files/safetensors-write.js";
import { readTensorBytes } from "../../src/runtime/model-files/common.js";

const root = new URL("../../", import.meta.url).pathname;
const HF = join(root, "models/weights/stories260K/hf");
const TRAIN = join(root, "data/stories260K-self/train.txt");
const BABY_F32 = join(root, "..", "shared", "models", "gguf", "babyllama-tok105-f32.gguf");
const BABY_TOK = join(root, "..", "shared", "models", "babyllama-tok105", "tok105.model");
const qzo = (...args: string[]) => execa("node", [`${root}dist/src/cli/qzo.js`, ...args], { reject: false, cwd: root });
const tmp = () => mkdtempSync(join(tmpdir(), "qzo-aqlm-"));

/** IEEE half to float, written here from the format's definition. */
function half(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? Number.NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** The F32 weights an AQLM 2x8 directory stands for: W[r, 8g + j] = scale[r] * (book0[q0, j] + book1[q1, j]). */
function dequantizedCopy(dir: string): string {
  const st = readSafetensors(join(dir, "model.safetensors"));
  const out: SafetensorsTensor[] = [];
  for (const [name, info] of st.tensors) {
    if (name.endsWith(".codebooks") || name.endsWith(".scales")) continue;
    const bytes = readTensorBytes(info);
    if (!name.endsWith(".codes")) {
      out.push({ name, dtype: info.dtype as SafetensorsTensor["dtype"], shape: info.shape, data: bytes });
      continue;
    }
    const base = name.slice(0, -".codes".length);
    const [rows, groups, M] = info.shape as [number, number, number];
    const books = new Uint16Array(readTensorBytes(st.tensors.get(`${base}.codebooks`)!).slice().buffer);
    const scales = new Uint16Array(readTensorBytes(st.tensors.get(`${base}.scales`)!).slice().buffer);
    const w = new Float32Array(rows * groups * 8);
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < groups; g++) {
        for (let j = 0; j < 8; j++) {
          let v = 0;
          for (let m = 0; m < M; m++) v = Math.fround(v + half(books[(m * 256 + bytes[(r * groups + g) * M + m]!) * 8 + j]!));
          w[r * groups * 8 + g * 8 + j] = Math.fround(half(scales[r]!) * v);
        }
      }
    }
    out.push({ name: `${base}.weight`, dtype: "F32", shape: [rows, groups * 8], data: new Uint8Array(w.buffer) });
  }
  const f32 = tmp();
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) if (existsSync(join(dir, f))) cpSync(join(dir, f), join(f32, f));
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  delete config.quantization_config;
  writeFileSync(join(f32, "config.json"), JSON.stringify(config));
  writeSafetensors(join(f32, "model.safetensors"), out);
  return f32;
}

let aqlm: string;
let text: string;

beforeAll(async () => {
  aqlm = join(tmp(), "aqlm");
  const r = await qzo("quantize", "--model", HF, "--out", aqlm, "--seed", "1");
  expect(r.exitCode, r.stderr).toBe(0);
  text = join(tmp(), "story.txt");
  writeFileSync(text, readFileSync(join(root, "data/stories260K-self/eval.txt"), "utf8").slice(0, 700));
}, 120_000);

const nll = async (model: string, device: string, tokenizer?: string) => {
  const r = await qzo("perplexity", "--model", model, "--text", text, "--device", device, "--json", ...(tokenizer ? ["--tokenizer", tokenizer] : []));
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout).nll as number;
};

describe("AQLM 2x8", () => {
  it("qzo quantize writes AQLM's Hugging Face layout: codes, codebooks and scales per linear, the rest as stored", async () => {
    const config = JSON.parse(readFileSync(join(aqlm, "config.json"), "utf8"));
    expect(config.quantization_config).toMatchObject({ quant_method: "aqlm", nbits_per_codebook: 8, num_codebooks: 2, in_group_size: 8, out_group_size: 1 });
    // down_proj has 172 inputs, not a multiple of 8: kept in F32, and said so.
    expect(config.quantization_config.linear_weights_not_to_quantize).toContain("model.layers.0.mlp.down_proj.weight");
    const t = readSafetensors(join(aqlm, "model.safetensors")).tensors;
    expect(t.get("model.layers.0.self_attn.q_proj.codes")).toMatchObject({ dtype: "I8", shape: [64, 8, 2] });
    expect(t.get("model.layers.0.self_attn.q_proj.codebooks")).toMatchObject({ dtype: "F16", shape: [2, 256, 1, 8] });
    expect(t.get("model.layers.0.self_attn.q_proj.scales")).toMatchObject({ dtype: "F16", shape: [64, 1, 1, 1] });
    expect(t.get("model.layers.0.mlp.gate_proj.codes")).toMatchObject({ dtype: "I8", shape: [172, 8, 2] });
    expect(t.get("model.layers.0.mlp.down_proj.weight")).toMatchObject({ dtype: "F32", shape: [64, 172] });
    expect(t.has("model.layers.0.self_attn.q_proj.weight")).toBe(false);
  });

  it("perplexity equals an independent dequantize-then-forward's (1e-4 relative); the CPU kernels agree with the interpreter", async () => {
    const ref = await nll(dequantizedCopy(aqlm), "cpu");
    const interp = await nll(aqlm, "interp");
    const cpu = await nll(aqlm, "cpu");
    expect(Math.abs(interp - ref) / ref).toBeLessThan(1e-4);
    expect(Math.abs(cpu - ref) / ref).toBeLessThan(1e-4);
    expect(Math.abs(cpu - interp) / interp).toBeLessThan(1e-6);
    // The quantization moved the model: the check compares something.
    expect(Math.abs(ref - (await nll(HF, "cpu"))) / ref).toBeGreaterThan(1e-3);
  }, 120_000);

  it("babyllama from its F32 GGUF (tensors written under the spec's Hugging Face names): perplexity equals the dequantize-then-forward's, CPU kernels the interpreter's", async () => {
    const baby = join(tmp(), "baby");
    const q = await qzo("quantize", "--model", BABY_F32, "--out", baby, "--rounds", "0");
    expect(q.exitCode, q.stderr).toBe(0);
    const short = join(tmp(), "short.txt");
    writeFileSync(short, readFileSync(text, "utf8").slice(0, 110));
    const score = async (model: string, device: string, tok?: string) => {
      const r = await qzo("perplexity", "--model", model, "--text", short, "--device", device, "--json", ...(tok ? ["--tokenizer", tok] : []));
      expect(r.exitCode, r.stderr).toBe(0);
      return JSON.parse(r.stdout).nll as number;
    };
    const ref = await score(dequantizedCopy(baby), "cpu", BABY_TOK);
    const cpu = await score(baby, "cpu", BABY_TOK);
    const interp = await score(baby, "interp", BABY_TOK);
    expect(Math.abs(cpu - ref) / ref).toBeLessThan(1e-4);
    expect(Math.abs(interp - ref) / ref).toBeLessThan(1e-4);
    // The F32 GGUF read through its own names scores differently (2 bits lose something) but sanely.
    const f32 = await score(BABY_F32, "cpu");
    expect(ref).toBeGreaterThan(f32);
    expect(ref).toBeLessThan(4 * f32);
  }, 120_000);

  it("qzo train lowers the held-out loss and exports the same layout with only the scales changed", async () => {
    const run = join(tmp(), "run");
    const r = await qzo("train", "--model", aqlm, "--data", TRAIN, "--out", run, "--steps", "60", "--batch", "8", "--seq-len", "64", "--eval-every", "30", "--lr", "2e-3");
    expect(r.exitCode, r.stderr).toBe(0);
    const evals = readFileSync(join(run, "log.jsonl"), "utf8").split("\n").filter((l) => l.includes("eval_loss")).map((l) => JSON.parse(l).eval_loss as number);
    expect(Math.min(...evals.slice(1))).toBeLessThan(evals[0]!);
    const before = readSafetensors(join(aqlm, "model.safetensors")).tensors;
    const after = readSafetensors(join(run, "model", "model.safetensors")).tensors;
    let scalesChanged = 0;
    for (const [name, info] of before) {
      const a = Buffer.from(readTensorBytes(info));
      const b = Buffer.from(readTensorBytes(after.get(name)!));
      if (name.endsWith(".scales")) scalesChanged += a.equals(b) ? 0 : 1;
      else expect(a.equals(b), name).toBe(true);
    }
    expect(scalesChanged).toBeGreaterThan(0);
    const e = await qzo("eval", "--model", join(run, "model"), "--data", TRAIN, "--json");
    expect(e.exitCode, e.stderr).toBe(0);
  }, 120_000);

  it("an AQLM checkpoint inconsistent with its config is one line naming the file and the tensor", async () => {
    const bad = (edit: (c: Record<string, unknown>) => void) => {
      const dir = join(tmp(), "bad");
      cpSync(aqlm, dir, { recursive: true });
      const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      edit(config.quantization_config);
      writeFileSync(join(dir, "config.json"), JSON.stringify(config));
      return dir;
    };
    const one = async (dir: string) => {
      const r = await qzo("perplexity", "--model", dir, "--text", text);
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      return r.stderr.trim();
    };
    expect(await one(bad((c) => (c["num_codebooks"] = 1)))).toMatch(/model\.safetensors: at byte \d+: '.*\.codes' is \[\d+, \d+, 2\]: expected \[out, in \/ 8, 1\] for num_codebooks 1 in .*config\.json$/);
    expect(await one(bad((c) => (c["nbits_per_codebook"] = 4)))).toMatch(/'.*\.codebooks' is \[2, 256, 1, 8\]: expected \[2, 16, 1, 8\]/);
    expect(await one(bad((c) => (c["out_group_size"] = 2)))).toMatch(/config\.json: at byte 0: AQLM with out_group_size 2 is not supported/);
    expect(await one(bad((c) => (c["in_group_size"] = "8")))).toMatch(/bad AQLM setting in_group_size = "8": expected a positive integer/);
    const q4 = await qzo("quantize", "--model", join(root, "models/weights/stories260K/stories260K-q4_0.gguf"), "--out", join(tmp(), "q"));
    expect(q4.exitCode).toBe(1);
    expect(q4.stderr.trim()).toMatch(/^qzo: .*stories260K-q4_0\.gguf: '\w+' is stored as q\d_\d: quantize a float model$/);
    const taken = await qzo("quantize", "--model", HF, "--out", aqlm);
    expect(taken.exitCode).toBe(2);
    expect(taken.stderr.trim()).toBe(`qzo: ${aqlm}: exists and is not an empty directory; choose a new one`);
  }, 60_000);
});
