/**
 * `qzo train`, `qzo export` and `qzo eval` end to end (built CLI in dist/), on stories260K Q4_0 with
 * tiny batches and sequence lengths.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { trainableTensors } from "../../src/runtime/interpret/interpreter.js";
import { bindModel } from "../../src/runtime/load/bind.js";
import { loadScalesCheckpoint } from "../../src/runtime/train/checkpoint.js";

const root = new URL("../../", import.meta.url).pathname;
const Q4 = join(root, "models/weights/stories260K/stories260K-q4_0.gguf");
const CLI = `${root}dist/src/cli/qzo.js`;
const qzo = (...args: string[]) => execa("node", [CLI, ...args], { reject: false, cwd: root });
const tmp = () => mkdtempSync(join(tmpdir(), "qzo-cli-train-"));

const STORIES = [
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.",
  "Tom and Sue went to the shop to buy some milk. They saw a cat on the way. The cat was very happy and wanted to play with them.",
  "One day, a little boy named Tim went to the park with his mom. He saw a big dog. Tim wanted to play with the dog, but it was too big.",
  "Lily and her mom went to the beach. They played in the sand and swam in the water. Lily was very happy and said thank you to her mom.",
  "Once upon a time, there was a big bear who lived in the forest. He liked to eat honey. One day, he found a tree with a lot of honey.",
  "Sam had a red car. He liked to drive his car around the house. His sister wanted to play too, so Sam shared his car with her.",
];

function dataFile(): string {
  const f = join(tmp(), "stories.txt");
  writeFileSync(f, STORIES.join("\n\n") + "\n");
  return f;
}

const SMALL = ["--batch", "2", "--seq-len", "24", "--relative-eps", "--eps", "1e-2", "--lr", "1e-3"];

function stepLines(runDir: string): number {
  if (!existsSync(join(runDir, "log.jsonl"))) return 0;
  return readFileSync(join(runDir, "log.jsonl"), "utf8")
    .split("\n")
    .filter((l) => l.includes('"seed"')).length;
}

describe("qzo train", () => {
  it("trains, leaving model.gguf, scales/best checkpoints, log.jsonl and run.json; export and eval use them", async () => {
    const data = dataFile();
    const run = join(tmp(), "run");
    const r = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--steps", "4", "--eval-every", "2", ...SMALL);
    expect(r.stderr).toContain("qzo train: 4 steps");
    expect(r.exitCode).toBe(0);
    for (const f of ["model.gguf", "scales.safetensors", "best.safetensors", "log.jsonl", "run.json"]) expect(existsSync(join(run, f)), f).toBe(true);
    const runJson = JSON.parse(readFileSync(join(run, "run.json"), "utf8"));
    expect(runJson).toMatchObject({ status: "done", seqLen: 24, loss: "lm", exportedFrom: "best.safetensors" });
    // The spec's train block, with the flags over it.
    expect(runJson.hyper).toMatchObject({ steps: 4, batch: 2, lr: 1e-3, eps: 1e-2, epsMode: "relative", clip: 100, z: "gaussian", evalEvery: 2, seed: "0" });
    expect(runJson.command.slice(0, 2)).toEqual(["qzo", "train"]);
    const lines = readFileSync(join(run, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.filter((l) => "seed" in l).map((l) => l.step)).toEqual([0, 1, 2, 3]);
    expect(lines.filter((l) => "eval_loss" in l).map((l) => l.step)).toEqual([0, 2, 4]);
    for (const l of lines.filter((x) => "seed" in x)) {
      expect(Object.keys(l).sort()).toEqual(["d", "d_raw", "loss_minus", "loss_plus", "lr", "seconds", "seed", "step"]);
      expect(l.seed).toMatch(/^0x[0-9a-f]{16}$/);
    }
    // export from the final checkpoint: a loadable GGUF carrying those scales (rounded to f16).
    const out = join(tmp(), "final.gguf");
    const e = await qzo("export", "--model", Q4, "--checkpoint", join(run, "scales.safetensors"), "--out", out);
    expect(e.exitCode, e.stderr).toBe(0);
    const b = bindModel(out);
    const tt = trainableTensors(b.module);
    const c = loadScalesCheckpoint(join(run, "scales.safetensors"), { trainables: tt });
    const w = b.weights.get(tt[0]!.param, tt[0]!.layer);
    expect(w.kind).toBe("quant");
    if (w.kind === "quant") expect(Math.max(...w.tensor.scales.map((s, i) => Math.abs(s - c.values[0]![i]!) / Math.abs(c.values[0]![i]!)))).toBeLessThan(1e-3);
    // eval on LM data: one JSON line.
    const ev = await qzo("eval", "--model", join(run, "model.gguf"), "--data", data, "--seq-len", "24", "--json");
    expect(ev.exitCode, ev.stderr).toBe(0);
    const j = JSON.parse(ev.stdout);
    expect(j).toMatchObject({ kind: "lm" });
    expect(j.loss).toBeGreaterThan(0);
    expect(j.ppl).toBeCloseTo(Math.exp(j.loss), 10);
  }, 60_000);

  it("eval reports accuracy on classification data (argmax of the candidates' mean log-probs)", async () => {
    const f = join(tmp(), "cls.jsonl");
    const ex = [
      { prompt: "Once upon a time, there was a little girl named", candidates: [" Lily.", " xylophone zebra quartz."], label: 0 },
      { prompt: "She loved to play outside in the", candidates: [" quantum vortex.", " park."], label: 1 },
      { prompt: "One day, she saw a big, red", candidates: [" ball.", " algebra."], label: 0 },
    ];
    writeFileSync(f, ex.map((e) => JSON.stringify(e)).join("\n") + "\n");
    const r = await qzo("eval", "--model", Q4, "--data", f, "--json");
    expect(r.exitCode, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ kind: "classify", examples: 3, correct: 3, accuracy: 1 });
    const plain = await qzo("eval", "--model", Q4, "--data", f);
    expect(plain.stdout).toMatch(/^examples 3 {2}accuracy 1\.0000 \(3\/3\) {2}loss \d/);
  }, 60_000);

  it("Ctrl-C (SIGINT) finishes the step, saves scales.safetensors and exits 130; --resume completes the run", async () => {
    const data = dataFile();
    const run = join(tmp(), "run");
    const child = execa("node", [CLI, "train", "--model", Q4, "--data", data, "--out", run, "--steps", "5000", "--eval-every", "1000", ...SMALL], { reject: false, cwd: root });
    const t0 = Date.now();
    while (stepLines(run) < 3 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 50));
    child.kill("SIGINT");
    const r = await child;
    expect(r.exitCode, r.stderr).toBe(130);
    expect(r.stderr).toContain("continue with --resume");
    const n = stepLines(run);
    expect(n).toBeGreaterThanOrEqual(3);
    const tt = trainableTensors(bindModel(Q4).module);
    expect(loadScalesCheckpoint(join(run, "scales.safetensors"), { trainables: tt }).step).toBe(n);
    expect(JSON.parse(readFileSync(join(run, "run.json"), "utf8")).status).toBe("interrupted");
    expect(existsSync(join(run, "model.gguf"))).toBe(false);
    // Resume with the run's own settings (run.json), to a nearer end.
    const r2 = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--resume", "--steps", String(n + 2));
    expect(r2.exitCode, r2.stderr).toBe(0);
    expect(stepLines(run)).toBe(n + 2);
    expect(existsSync(join(run, "model.gguf"))).toBe(true);
    expect(JSON.parse(readFileSync(join(run, "run.json"), "utf8")).hyper).toMatchObject({ batch: 2, epsMode: "relative", steps: n + 2 });
  }, 90_000);

  it("refuses to overwrite a run directory that holds a checkpoint (no --resume), and --resume with none", async () => {
    const data = dataFile();
    const run = join(tmp(), "run");
    mkdirSync(run);
    writeFileSync(join(run, "scales.safetensors"), "precious");
    const r = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--steps", "1", ...SMALL);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/already holds a run .*--resume/);
    expect(readFileSync(join(run, "scales.safetensors"), "utf8")).toBe("precious");
    expect(existsSync(join(run, "log.jsonl"))).toBe(false);
    const empty = join(tmp(), "new");
    const r2 = await qzo("train", "--model", Q4, "--data", data, "--out", empty, "--resume");
    expect(r2.exitCode).toBe(2);
    expect(r2.stderr).toContain("no scales.safetensors to resume from");
  });

  it("usage and input errors: missing --data exits 2; bad JSON data is one line, exit 1; bad flag values exit 2", async () => {
    const run = join(tmp(), "run");
    const r = await qzo("train", "--model", Q4, "--out", run);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("--data");
    const bad = join(tmp(), "bad.jsonl");
    writeFileSync(bad, '{"text": "Once upon a time"}\n{"text": oops}\n');
    const r2 = await qzo("train", "--model", Q4, "--data", bad, "--out", run, "--steps", "1");
    expect(r2.exitCode).toBe(1);
    expect(r2.stderr.trim().split("\n")).toHaveLength(1);
    expect(r2.stderr).toMatch(/^qzo: .*bad\.jsonl:2: bad JSON/);
    expect(existsSync(join(run, "scales.safetensors"))).toBe(false);
    for (const args of [["--z", "uniform"], ["--schedule", "step"], ["--seed", "-1"], ["--steps", "1.5"], ["--relative-eps", "--absolute-eps"], ["--momentum", "1"], ["--tensor-period", "0"], ["--step-size", "adam"]]) {
      const r3 = await qzo("train", "--model", Q4, "--data", bad, "--out", run, ...args);
      expect(r3.exitCode, args.join(" ")).toBe(2);
      expect(r3.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
    expect(statSync(Q4).isFile()).toBe(true);
  }, 60_000);

  it("distill writes the F32 teacher's top-K over the data; train and eval use it with only --model --data --out", async () => {
    const data = dataFile();
    const dir = tmp();
    const kd = join(dir, "train.distill.safetensors");
    const F32 = join(root, "models/weights/stories260K/stories260K-f32.gguf");
    const d = await qzo("distill", "--model", F32, "--data", data, "--out", kd, "--top-k", "4", "--seq-len", "24");
    expect(d.exitCode, d.stderr).toBe(0);
    expect(d.stderr).toMatch(/^qzo distill: \d+ windows, \d+ positions of llama in [\d.]+ s; the top 4 hold \d+\.\d% of the teacher's probability on average; wrote /);
    const run = join(dir, "run");
    const r = await qzo("train", "--model", Q4, "--data", kd, "--out", run, "--steps", "2", "--batch", "2");
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain("loss distill");
    // The spec's `train distill` settings, under the flags.
    expect(JSON.parse(readFileSync(join(run, "run.json"), "utf8"))).toMatchObject({ status: "done", seqLen: 24, loss: "distill", hyper: { lr: 5e-3, steps: 2, batch: 2, evalEvery: 1500 } });
    expect(existsSync(join(run, "model.gguf"))).toBe(true);
    const ev = await qzo("eval", "--model", join(run, "model.gguf"), "--data", kd, "--json");
    expect(ev.exitCode, ev.stderr).toBe(0);
    const j = JSON.parse(ev.stdout);
    expect(j).toMatchObject({ kind: "distill" });
    // The teacher's own distillation loss is the (truncated) entropy of its top 4 buckets plus the rest: below the student's.
    const teacher = JSON.parse((await qzo("eval", "--model", F32, "--data", kd, "--json")).stdout);
    expect(teacher.loss).toBeLessThan(j.loss);
    // Usage and input errors: one line each.
    const big = await qzo("distill", "--model", F32, "--data", data, "--out", join(dir, "x.safetensors"), "--top-k", "513");
    expect([big.exitCode, big.stderr.trim().split("\n").length]).toEqual([2, 1]);
    expect(big.stderr).toContain("--top-k 513 exceeds the vocabulary of 512 tokens");
    const seq = await qzo("train", "--model", Q4, "--data", kd, "--out", join(dir, "run2"), "--seq-len", "32");
    expect([seq.exitCode, seq.stderr.trim()]).toEqual([2, `qzo: --seq-len 32: ${kd} holds windows of 24 tokens (made by qzo distill)`]);
    const cls = join(dir, "cls.jsonl");
    writeFileSync(cls, JSON.stringify({ prompt: "Once upon a", candidates: [" time", " dog"], label: 0 }) + "\n");
    const c = await qzo("distill", "--model", F32, "--data", cls, "--out", join(dir, "y.safetensors"));
    expect([c.exitCode, c.stderr.trim()]).toEqual([1, `qzo: ${cls}: classify data: expected language-modelling text to distill`]);
  }, 60_000);
});
