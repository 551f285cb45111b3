/**
 * `qzo generate` and `qzo perplexity` against the known outputs of the original
 * programs (../shared/models/PROVENANCE.md), across the llama2.c, GGUF and
 * Hugging Face forms of the same models.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { generate } from "../../src/runtime/infer/generate.js";
import { lmLoss, perplexity } from "../../src/runtime/infer/perplexity.js";
import { cudaAvailable } from "../../src/runtime/backends/cuda-device.js";
import { bindModel } from "../../src/runtime/load/bind.js";
import { modelTokenizer } from "../../src/runtime/load/tokenizer.js";

const root = new URL("../../", import.meta.url).pathname;
const S = join(root, "..", "shared", "models");
const qzo = (...args: string[]) => execa("node", [`${root}dist/src/cli/qzo.js`, ...args], { reject: false, cwd: root });

const STORIES = join(S, "stories260K", "stories260K.bin");
const TOK512 = join(S, "stories260K", "tok512.bin");

/** llama2.c `run stories260K.bin -z tok512.bin -t 0.0 -n 200`, as far as PROVENANCE.md records it. */
const LLAMA2C_260K =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n" +
  "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do.";

const TEXT =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. Tom and Sue went to the shop to buy some milk.";

function greedy(model: string, n: number, prompt = "", tokenizer?: string): string {
  const b = bindModel(model);
  return generate(b.module, b.weights, modelTokenizer(b.checkpoint, tokenizer), { prompt, steps: n, temperature: 0, seed: 0 }).text;
}

describe("qzo generate", () => {
  it("prints llama2.c's greedy text for stories260K.bin -n 200", async () => {
    const r = await qzo("generate", "--model", STORIES, "--tokenizer", TOK512, "--prompt", "", "-n", "200", "--temperature", "0");
    expect(r.exitCode).toBe(0);
    expect(r.stdout.startsWith(LLAMA2C_260K)).toBe(true);
  }, 120_000);

  it("prints llama2.c's greedy text for babyllama model5000.bin -n 120, exactly", async () => {
    const r = await qzo("generate", "--model", join(S, "babyllama-tok105", "model5000.bin"), "--tokenizer", join(S, "babyllama-tok105", "tok105.bin"), "-n", "120", "--temperature", "0");
    expect(r.stdout).toBe("Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. One day, she went to t");
  }, 120_000);

  it("gives the same text from the F32 and Q8_0 GGUFs and the Hugging Face directory", () => {
    const want = greedy(STORIES, 60, "", TOK512);
    expect(want.startsWith("Once upon a time, there was a little girl named Lily.")).toBe(true);
    for (const m of [join(S, "gguf", "stories260K-f32.gguf"), join(S, "gguf", "stories260K-q8_0.gguf"), join(S, "hf", "stories260K")]) {
      expect(greedy(m, 60), m).toBe(want);
    }
  }, 120_000);

  it("gives llama.cpp's continuation on the Q4_0 GGUF (llama-simple -n 40 \"Once upon a time\")", () => {
    const text = greedy(join(S, "gguf", "stories260K-q4_0.gguf"), 44, "Once upon a time");
    expect(text).toBe("Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. One day, she went to the park with her mom");
  }, 60_000);

  it("samples reproducibly from a seed at temperature 1", () => {
    const b = bindModel(STORIES);
    const tok = modelTokenizer(b.checkpoint, TOK512);
    const run = (seed: number) => generate(b.module, b.weights, tok, { prompt: "", steps: 30, temperature: 1, seed }).text;
    expect(run(7)).toBe(run(7));
    expect(run(7)).not.toBe(run(8));
  }, 60_000);
});

describe("qzo perplexity", () => {
  it("agrees within 1e-4 across the llama2.c, GGUF F32 and Hugging Face forms of stories260K", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qzo-ppl-"));
    const f = join(dir, "text.txt");
    writeFileSync(f, TEXT);
    const nll: number[] = [];
    for (const m of [STORIES, join(S, "gguf", "stories260K-f32.gguf"), join(S, "hf", "stories260K")]) {
      const r = await qzo("perplexity", "--model", m, "--tokenizer", TOK512, "--text", f, "--json");
      expect(r.exitCode, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout) as { tokens: number; nll: number; ppl: number };
      expect(j.tokens).toBe(tokenCount());
      expect(j.ppl).toBeCloseTo(Math.exp(j.nll), 10);
      nll.push(j.nll);
    }
    for (const x of nll) expect(Math.abs(x - nll[0]!) / nll[0]!).toBeLessThan(1e-4);
  }, 60_000);

  it("refuses a text longer than the context", () => {
    const b = bindModel(STORIES);
    const tok = modelTokenizer(b.checkpoint, TOK512);
    expect(() => perplexity(b.module, lmLoss(b.module, b.weights), tok, TEXT.repeat(20), "long.txt")).toThrow(/^long\.txt: \d+ tokens \(with BOS\) exceed the model's context of 512; shorten the text$/);
  });
});

function tokenCount(): number {
  const b = bindModel(STORIES);
  return modelTokenizer(b.checkpoint, TOK512).encode(TEXT, { bos: true, eos: false }).length;
}

describe("a float model", () => {
  it("is scored by the interpreter too; training it is one line saying there is nothing to train, before any run file is written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qzo-f32-"));
    const f = join(dir, "text.txt");
    writeFileSync(f, TEXT);
    const F32 = join(root, "models/weights/stories260K/stories260K-f32.gguf");
    const interp = await qzo("perplexity", "--model", F32, "--text", f, "--device", "interp", "--json");
    const cpu = await qzo("perplexity", "--model", F32, "--text", f, "--device", "cpu", "--json");
    expect(interp.exitCode, interp.stderr).toBe(0);
    expect(JSON.parse(interp.stdout).nll).toBeCloseTo(JSON.parse(cpu.stdout).nll, 5);
    const run = join(dir, "run");
    const t = await qzo("train", "--model", F32, "--data", f, "--out", run, "--device", "interp", "--steps", "2");
    expect(t.exitCode).toBe(1);
    expect(t.stderr.trim().split("\n").at(-1)).toBe(`qzo: ${F32}: nothing to train: no parameter matches the spec's trainable list (is the model quantized?)`);
    expect(existsSync(join(run, "run.json"))).toBe(false);
  });
});

describe("bad model files and flags: one line, no stack trace", () => {
  const dir = mkdtempSync(join(tmpdir(), "qzo-bad-"));
  const oneLine = (r: { stderr: string }) => {
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  };

  it("a llama2.c checkpoint without --tokenizer", async () => {
    const r = await qzo("generate", "--model", STORIES, "-n", "2");
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe(`qzo: ${STORIES}: a llama2.c checkpoint has no vocabulary; pass --tokenizer tokenizer.bin`);
  });

  it("a truncated GGUF", async () => {
    const f = join(dir, "cut.gguf");
    writeFileSync(f, readFileSync(join(S, "gguf", "stories260K-q4_0.gguf")).subarray(0, 200_000));
    const r = await qzo("generate", "--model", f, "-n", "2");
    expect(r.exitCode).toBe(1);
    oneLine(r);
    expect(r.stderr).toMatch(new RegExp(`^qzo: ${f}: at byte \\d+: `));
  });

  it("a file with the wrong magic", async () => {
    const f = join(dir, "junk.gguf");
    writeFileSync(f, Buffer.from("this is not a model file at all, just some text to read"));
    const r = await qzo("perplexity", "--model", f, "--text", f);
    expect(r.exitCode).toBe(1);
    oneLine(r);
    expect(r.stderr).toContain(f);
  });

  it("a tensor type the spec declares no format for", async () => {
    const f = join(dir, "q5.gguf");
    copyFileSync(join(S, "gguf", "stories260K-q4_0.gguf"), f);
    const bytes = readFileSync(f);
    // Patch the type of the first Q4_0 tensor (ggml type 2) to IQ4_NL (type 20, the same 18-byte blocks of 32) in its tensor info.
    const name = Buffer.from("blk.0.attn_q.weight");
    const at = bytes.indexOf(name) + name.length + 4 + 2 * 8;
    expect(bytes.readUInt32LE(at)).toBe(2);
    bytes.writeUInt32LE(20, at);
    writeFileSync(f, bytes);
    const r = await qzo("generate", "--model", f, "-n", "2");
    expect(r.exitCode).toBe(1);
    oneLine(r);
    expect(r.stderr.trim()).toBe(`qzo: ${f}: tensor 'blk.0.attn_q.weight' is IQ4_NL, a type the spec declares no format for (formats: q8_0, q4_0, q4_1, gptq_int4, nf4, aqlm_2x8)`);
  });

  it("a bad flag value exits 2", async () => {
    const r = await qzo("generate", "--model", STORIES, "-n", "many");
    expect(r.exitCode).toBe(2);
    oneLine(r);
    const q = await qzo("quantize", "--model", STORIES, "--out", join(mkdtempSync(join(tmpdir(), "qzo-q-")), "out"), "--set", "outer=nf4");
    expect(q.exitCode).toBe(2);
    expect(q.stderr.trim()).toBe("qzo: --set: aqlm_2x8 quantizes every decoder-layer linear; --set chooses the nf4 weights");
  });

  it.skipIf(cudaAvailable().ok)("--device cuda without a GPU says what was found and what to do", async () => {
    const r = await qzo("generate", "--model", join(S, "gguf", "stories260K-q4_0.gguf"), "-n", "2", "--device", "cuda");
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe(`qzo: cannot use the CUDA backend: ${cudaAvailable().reason}; use --device cpu`);
  });

  it("a missing model path", async () => {
    const r = await qzo("generate", "--model", join(dir, "nope.bin"));
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe(`qzo: ${join(dir, "nope.bin")}: no such file or directory`);
  });
});
