/**
 * A seeded fuzz suite over everything qzo reads from a user: the four model-file readers (GGUF,
 * safetensors / Hugging Face directories, llama2.c checkpoints and tokenizers), the data readers
 * (text, JSON lines, distillation files) and the spec front end. Real files are damaged by seeded
 * mutations (truncation, random bytes, extreme values in header fields or JSON keys, edits of a spec)
 * and loaded in process: each case either loads, or fails with a one-line user error (QzoError) or
 * a compiler diagnostic, within seconds and without a heap that grows by more than 200 MB; an
 * exception of any other kind is a bug. Then the command line, under a 200 MB heap: the inputs that
 * once crashed qzo, ran it out of memory or gave a silently wrong result each end in one line,
 * exit 1 or 2.
 */
import { copyFileSync, cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import { CompileError } from "../../src/compiler/diagnostics.js";
import { paramLayers, configInts } from "../../src/compiler/ir/queries.js";
import { loadDataset } from "../../src/runtime/data/dataset.js";
import { teacherTargets, tokenizerSha256, writeDistillData } from "../../src/runtime/data/distill.js";
import { interpreterForward } from "../../src/runtime/infer/generate.js";
import { bindModel } from "../../src/runtime/load/bind.js";
import { modelTokenizer } from "../../src/runtime/load/tokenizer.js";
import { loadTokenizer } from "../../src/runtime/tokenizer/index.js";
import { QzoError } from "../../src/util/errors.js";
import { rng } from "../support/random-model.js";

const root = new URL("../../", import.meta.url).pathname;
const SHARED = join(root, "..", "shared", "models");
const GGUF = join(root, "models/weights/stories260K/stories260K-q4_0.gguf");
const HF = join(SHARED, "hf", "stories260K");
const BIN = join(SHARED, "stories260K", "stories260K.bin");
const TOK = join(SHARED, "stories260K", "tok512.bin");
const SPEC = join(root, "models/llama.qzo");
const dir = mkdtempSync(join(tmpdir(), "qzo-fuzz-"));

type Outcome = "loaded" | "refused";

/** Loads a model completely: binding, every weight, the tokenizer. */
function loadModel(path: string, tokenizer?: string): void {
  const b = bindModel(path);
  const ints = configInts(b.module);
  for (const p of b.module.params) for (const layer of paramLayers(p, ints)) b.stored(p.name, layer);
  modelTokenizer(b.checkpoint, tokenizer, ints.get("vocab"));
}

/** Runs one case: a clean load or a one-line user error, quickly, with a bounded heap. */
function attempt(what: string, f: () => void): Outcome {
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = Date.now();
  let outcome: Outcome = "loaded";
  try {
    f();
  } catch (e) {
    if (e instanceof QzoError) {
      expect(e.message, what).not.toContain("\n");
      outcome = "refused";
    } else if (e instanceof CompileError) {
      outcome = "refused";
    } else {
      throw new Error(`${what}: not a user error: ${(e as Error).stack ?? String(e)}`);
    }
  }
  expect(Date.now() - t0, `${what}: seconds`).toBeLessThan(5000);
  expect(process.memoryUsage().heapUsed - heap0, `${what}: heap growth`).toBeLessThan(200 * 2 ** 20);
  return outcome;
}

/** Seeded damage to the bytes of a file. */
function mutate(bytes: Buffer, r: () => number, headerBytes: number): Buffer {
  const b = Buffer.from(bytes);
  const kind = Math.floor(r() * 4);
  const at = (limit: number) => Math.floor(r() * Math.min(limit, b.length));
  if (kind === 0) return b.subarray(0, at(b.length));
  if (kind === 1) {
    for (let k = 0; k < 1 + Math.floor(r() * 8); k++) b[at(headerBytes)] = Math.floor(r() * 256);
    return b;
  }
  const extremes = [0n, 1n, 0xffn, 0xffffffffn, 0x80000000n, 1n << 32n, 1n << 62n, (1n << 64n) - 1n];
  const off = at(Math.max(8, headerBytes - 8)) & ~3;
  if (off + 8 <= b.length) b.writeBigUInt64LE(extremes[Math.floor(r() * extremes.length)]!, off);
  if (kind === 3) return Buffer.concat([b.subarray(0, at(b.length)), Buffer.from(Array.from({ length: 1 + Math.floor(r() * 64) }, () => Math.floor(r() * 256))), b.subarray(at(b.length))]);
  return b;
}

/** Seeded damage to a JSON object: one key set to an extreme or wrong-typed value. */
function mutateJson(obj: Record<string, unknown>, r: () => number): Record<string, unknown> {
  const keys = Object.keys(obj);
  const values = [-1, 0, 1, 2 ** 31, 2 ** 32 - 1, 1e9, 1e300, -1e-5, 0.5, "x", null, [], {}, true, "../../x"];
  return { ...obj, [keys[Math.floor(r() * keys.length)]!]: values[Math.floor(r() * values.length)] };
}

describe("seeded fuzzing of every reader: a load or a one-line error, quickly, in bounded memory", () => {
  const count = (o: Outcome[]) => {
    const c = { loaded: o.filter((x) => x === "loaded").length, refused: o.filter((x) => x === "refused").length };
    console.log(`${c.loaded} loaded, ${c.refused} refused in one line`);
    return c;
  };

  it("GGUF (80 damaged copies of stories260K Q4_0)", () => {
    const src = readFileSync(GGUF);
    const r = rng(101);
    const out = Array.from({ length: 80 }, (_, i) => {
      const f = join(dir, `g${i}.gguf`);
      writeFileSync(f, mutate(src, r, 12000));
      return attempt(f, () => loadModel(f));
    });
    expect(count(out).refused).toBeGreaterThan(40);
  }, 120_000);

  it("Hugging Face directories (60 damaged model.safetensors, 40 damaged config.json)", () => {
    const st = readFileSync(join(HF, "model.safetensors"));
    const config = JSON.parse(readFileSync(join(HF, "config.json"), "utf8")) as Record<string, unknown>;
    const r = rng(202);
    const out: Outcome[] = [];
    for (let i = 0; i < 100; i++) {
      const d = join(dir, `hf${i}`);
      cpSync(HF, d, { recursive: true });
      if (i < 60) writeFileSync(join(d, "model.safetensors"), mutate(st, r, st.readUInt32LE(0) + 8));
      else writeFileSync(join(d, "config.json"), JSON.stringify(mutateJson(config, r)));
      out.push(attempt(d, () => loadModel(d)));
    }
    expect(count(out).refused).toBeGreaterThan(40);
  }, 120_000);

  it("llama2.c checkpoints and tokenizers (40 damaged stories260K.bin, 40 damaged tok512.bin)", () => {
    const bin = readFileSync(BIN);
    const tok = readFileSync(TOK);
    const r = rng(303);
    const out: Outcome[] = [];
    for (let i = 0; i < 40; i++) {
      const f = join(dir, `m${i}.bin`);
      writeFileSync(f, mutate(bin, r, 28));
      out.push(attempt(f, () => loadModel(f, TOK)));
      const t = join(dir, `t${i}.bin`);
      writeFileSync(t, mutate(tok, r, 4096));
      out.push(attempt(t, () => loadTokenizer(t)));
    }
    expect(count(out).refused).toBeGreaterThan(20);
  }, 120_000);

  it("data files (30 texts, 30 JSON lines, 20 distillation files)", () => {
    const b = bindModel(GGUF);
    const tok = modelTokenizer(b.checkpoint);
    const r = rng(404);
    const text = Buffer.from(Array.from({ length: 20 }, (_, i) => `Once upon a time, story ${i} began.`).join("\n\n") + "\n");
    const jsonl = Buffer.from(
      [
        JSON.stringify({ text: "Once upon a time." }),
        JSON.stringify({ prompt: "The cat sat on the", candidates: [" mat", " moon"], label: 0 }),
        JSON.stringify({ text: "The end." }),
      ].join("\n") + "\n",
    );
    writeFileSync(join(dir, "d-clean.txt"), text);
    const out: Outcome[] = [];
    for (let i = 0; i < 30; i++) {
      const f = join(dir, `d${i}.txt`);
      writeFileSync(f, mutate(text, r, text.length));
      out.push(attempt(f, () => loadDataset(f, tok, 32, 512)));
      const j = join(dir, `d${i}.jsonl`);
      writeFileSync(j, mutate(jsonl, r, jsonl.length));
      out.push(attempt(j, () => loadDataset(j, tok, 32, 512)));
    }
    // A real distillation file (the model as its own teacher, top 4), then 20 damaged copies.
    const lm = loadDataset(join(dir, "d-clean.txt"), tok, 32, 512);
    if (lm.kind !== "lm") throw new Error("expected language-modelling data");
    const forward = interpreterForward(b.module, b.weights);
    const { ids, probs } = teacherTargets(lm.windows, forward, tok.vocabSize, 4);
    const teacher = join(dir, "teacher.safetensors");
    writeDistillData(teacher, { windows: lm.windows, ids, probs, K: 4, seqLen: 32 }, { teacher: GGUF, teacherSha256: "0".repeat(64), source: "d-clean.txt", tokenizerSha256: tokenizerSha256(tok), vocab: tok.vocabSize });
    const good = readFileSync(teacher);
    expect(attempt(teacher, () => loadDataset(teacher, tok, 32, 512))).toBe("loaded");
    for (let i = 0; i < 20; i++) {
      const f = join(dir, `t${i}.safetensors`);
      writeFileSync(f, mutate(good, r, good.readUInt32LE(0) + 8));
      out.push(attempt(f, () => loadDataset(f, tok, 32, 512)));
    }
    expect(count(out).refused).toBeGreaterThan(5);
  }, 120_000);

  it("specs (80 edits of models/llama.qzo): diagnostics, never an internal error", () => {
    const src = readFileSync(SPEC, "utf8");
    const r = rng(505);
    const edits = ["", "(", ")", "{", "}", "1e999", "-64", "0", "/ 0", "% 3", "..", "\"", "#", "for", "param", "x[", "2147483648", "+ + +"];
    const out = Array.from({ length: 80 }, (_, i) => {
      const at = Math.floor(r() * src.length);
      const len = Math.floor(r() * 12);
      const text = src.slice(0, at) + edits[Math.floor(r() * edits.length)] + src.slice(at + len);
      const f = join(dir, `s${i}.qzo`);
      cpSync(join(root, "models", "formats"), join(dir, "formats"), { recursive: true });
      writeFileSync(f, text);
      return attempt(f, () => {
        const res = checkFile(f, {});
        if (res.diagnostics.length) throw new CompileError(res.diagnostics);
      });
    });
    expect(count(out).refused).toBeGreaterThan(40);
  }, 120_000);
});

describe("inputs that once crashed, exhausted memory or were silently wrong: one line, exit 1 or 2, under a 200 MB heap", () => {
  const cli = (bin: "qzo" | "qzoc", ...args: string[]) =>
    execa("node", ["--max-old-space-size=200", `${root}dist/src/cli/${bin}.js`, ...args], { reject: false, cwd: dir, timeout: 30_000 });
  const expectOneLine = (r: { exitCode?: number; stderr: string }, code: number, re: RegExp) => {
    expect(r.exitCode, r.stderr).toBe(code);
    const lines = r.stderr.trim().split("\n");
    expect(lines.some((l) => /^\s+at /.test(l)), r.stderr).toBe(false);
    expect(lines[lines.length - 1], r.stderr).toMatch(re);
  };
  /** A copy of the Q4_0 GGUF with one u32/u64 metadata value replaced (found by its key). */
  const ggufWith = (key: string, value: bigint, name: string) => {
    const b = readFileSync(GGUF);
    const at = b.indexOf(Buffer.from(key)) + key.length;
    const type = b.readUInt32LE(at);
    if (type === 4 || type === 5) b.writeUInt32LE(Number(value & 0xffffffffn), at + 4);
    else b.writeBigUInt64LE(value, at + 4);
    const f = join(dir, name);
    writeFileSync(f, b);
    return f;
  };
  const text = join(dir, "t.txt");
  writeFileSync(text, "Once upon a time, there was a little girl named Lily.\n");

  it("a GGUF block count of 2^32-1, and of one layer fewer than the file holds", async () => {
    expectOneLine(await cli("qzo", "perplexity", "--model", ggufWith("llama.block_count", 0xffffffffn, "bc.gguf"), "--text", text), 1, /does not fit .*llama\.qzo.*n_layers = 4294967295.*parameter arrays have 0 to 4096 layers/);
    expectOneLine(await cli("qzo", "perplexity", "--model", ggufWith("llama.block_count", 4n, "bc4.gguf"), "--text", text), 1, /tensor 'blk\.4\.[a-z_.]+' and \d+ more are not read by .*llama\.qzo/);
  }, 60_000);

  it("a config.json with num_hidden_layers 1e9, and a tokenizer.bin of 7 tokens for a 512-token model", async () => {
    const d = join(dir, "hf-big");
    cpSync(HF, d, { recursive: true });
    const config = JSON.parse(readFileSync(join(d, "config.json"), "utf8"));
    writeFileSync(join(d, "config.json"), JSON.stringify({ ...config, num_hidden_layers: 1e9 }));
    expectOneLine(await cli("qzo", "perplexity", "--model", d, "--text", text), 1, /n_layers = 1000000000/);
    const tok7 = join(dir, "tok7.bin");
    const t = readFileSync(TOK);
    // A tokenizer.bin: u32 max length, then (f32 score, u32 length, bytes) per token; keep 7 tokens.
    let off = 4;
    for (let k = 0; k < 7; k++) off += 8 + t.readUInt32LE(off + 4);
    writeFileSync(tok7, t.subarray(0, off));
    expectOneLine(await cli("qzo", "generate", "--model", BIN, "--tokenizer", tok7, "-n", "4"), 1, /the tokenizer has 7 tokens, but the model's vocabulary is 512/);
  }, 60_000);

  it("aliased GGUF tensor data, and a safetensors header length of N-1", async () => {
    const b = readFileSync(GGUF);
    const name = Buffer.from("blk.0.attn_k.weight");
    const at = b.indexOf(name) + name.length + 4 + 2 * 8 + 4; // the data offset after dims and type
    b.writeBigUInt64LE(0n, at);
    writeFileSync(join(dir, "alias.gguf"), b);
    expectOneLine(await cli("qzo", "perplexity", "--model", join(dir, "alias.gguf"), "--text", text), 1, /tensor "blk\.0\.attn_k\.weight" data offset 0: expected \d+/);
    const d = join(dir, "hf-n1");
    cpSync(HF, d, { recursive: true });
    const st = readFileSync(join(d, "model.safetensors"));
    st.writeBigUInt64LE(st.readBigUInt64LE(0) - 1n, 0);
    writeFileSync(join(d, "model.safetensors"), st);
    expectOneLine(await cli("qzo", "perplexity", "--model", d, "--text", text), 1, /model\.safetensors: at byte \d+: /);
  }, 60_000);

  it("a 20 MB line of text, a 100,000-term expression, a 2^40-byte record, --batch 1e8", async () => {
    const long = join(dir, "long.txt");
    writeFileSync(long, "a ".repeat(10_000_000));
    expectOneLine(await cli("qzo", "eval", "--model", GGUF, "--data", long), 1, /long\.txt:1: a line longer than 1048576 bytes/);
    const big = join(dir, "big.qzo");
    writeFileSync(big, `model m {\n  config {\n    a: int = ${Array(100_000).fill("1").join(" + ")}\n  }\n}\n`);
    const e = await cli("qzoc", "check", big);
    expect(e.exitCode).toBe(1);
    expect(e.stderr).toMatch(/^.*big\.qzo:3:\d+: error: an expression nested more than 256 levels deep$/m);
    const rec = join(dir, "rec.qzo");
    writeFileSync(rec, "format f {\n  code u4\n  block 32 along in\n  scale f16\n  layout record 1099511627776 {\n    scale at 0\n    code[i] at 2 + i / 2\n  }\n}\n");
    const r2 = await cli("qzoc", "check", rec);
    expect(r2.exitCode).toBe(1);
    expect(r2.stderr).toMatch(/rec\.qzo:5:17: error: a record size is 1 to 65536 bytes, found 1099511627776/);
    expectOneLine(await cli("qzo", "train", "--model", GGUF, "--data", text, "--out", join(dir, "r"), "--batch", "1e8"), 2, /--batch.*expected an integer from 1 to 65536, found '1e8'/);
  }, 60_000);

  it("negative norm eps, rope theta 0, a context length of 0", async () => {
    expectOneLine(await cli("qzo", "perplexity", "--model", ggufWith("llama.context_length", 0n, "ctx0.gguf"), "--text", text), 1, /context length \(seq_len\) is 0: expected at least 2 tokens|exceed the model's context of 0/);
    const b = readFileSync(GGUF);
    const key = Buffer.from("llama.rope.freq_base");
    const i = b.indexOf(key);
    if (i >= 0) {
      b.writeFloatLE(0, i + key.length + 4);
      writeFileSync(join(dir, "theta0.gguf"), b);
      expectOneLine(await cli("qzo", "perplexity", "--model", join(dir, "theta0.gguf"), "--text", text), 1, /attribute 'theta' of 'rope' is 0; it must be greater than 0/);
    }
    const eps = readFileSync(GGUF);
    const ek = Buffer.from("llama.attention.layer_norm_rms_epsilon");
    const j = eps.indexOf(ek);
    expect(j).toBeGreaterThan(0);
    eps.writeFloatLE(-1e-5, j + ek.length + 4);
    writeFileSync(join(dir, "eps.gguf"), eps);
    expectOneLine(await cli("qzo", "perplexity", "--model", join(dir, "eps.gguf"), "--text", text), 1, /attribute 'eps' of 'rmsnorm' is -0\.0000099\d*; it must be at least 0/);
    copyFileSync(GGUF, join(dir, "ok.gguf"));
  }, 60_000);
});
