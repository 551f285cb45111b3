/**
 * `mpirun -np 2 qzo train` with Open MPI (installed by .ci/run; skipped here when mpirun is missing
 * unless QZO_REQUIRE_MPI=1): stories260K Q4_0 trained on two ranks has, at every step, the losses one
 * process computes for the whole batch at the same scales (within the float32 rounding of each
 * shard's loss) and rank 0's scales are exactly its logged updates; rank 1's scales are compared with
 * rank 0's after every step; a rank holding another model is named; Ctrl-C stops both ranks after
 * the same step; a killed rank ends the run on the other with one line and a valid checkpoint, and
 * resuming it ends where an uninterrupted run ends.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { describe, expect, it } from "vitest";
import { createKernelBackend } from "../../src/runtime/backends/kernel-backend.js";
import { batchOrder, loadDataset } from "../../src/runtime/data/dataset.js";
import { bindModel } from "../../src/runtime/load/bind.js";
import { modelTokenizer } from "../../src/runtime/load/tokenizer.js";
import { loadScalesCheckpoint } from "../../src/runtime/train/checkpoint.js";
import { datasetData, parseLog, parseSeedHex, type LogHeader, type StepRecord } from "../../src/runtime/train/trainer.js";

const root = new URL("../../", import.meta.url).pathname;
const Q4 = join(root, "models/weights/stories260K/stories260K-q4_0.gguf");
const F32 = join(root, "models/weights/stories260K/stories260K-f32.gguf");
const DATA = join(root, "data/stories260K-self/train.txt");
const CLI = join(root, "dist/src/cli/qzo.js");
const tmp = () => mkdtempSync(join(tmpdir(), "qzo-mpirun-"));
const U = 2 ** -24;

const haveMpirun = (() => {
  const path = (process.env["PATH"] ?? "").split(":").some((d) => d && existsSync(join(d, "mpirun")));
  if (!path && process.env["QZO_REQUIRE_MPI"] === "1") throw new Error("QZO_REQUIRE_MPI=1 but mpirun is not on PATH (apt-get install openmpi-bin)");
  return path;
})();

/** Open MPI refuses root without this flag; a 1-core machine has one slot. */
const MPIRUN = ["-q", "--oversubscribe", ...(process.getuid?.() === 0 ? ["--allow-run-as-root"] : [])];
const mpirun = (args: string[], env: Record<string, string> = {}): ResultPromise => execa("mpirun", [...MPIRUN, ...args], { reject: false, cwd: root, env });
const ranks = (n: number, ...args: string[]) => mpirun(["-np", String(n), "node", CLI, ...args]);
const evalFile = () => {
  const f = join(tmp(), "eval.txt");
  writeFileSync(f, "Once upon a time, there was a little dog named Max. Max liked to run in the park with his friend Sue.\n\nTom had a big red ball. He liked to play with it in the garden every day.\n");
  return f;
};
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const qzoLines = (stderr: string) => stderr.split(/[\r\n]/).filter((l) => l.startsWith("qzo"));

describe.runIf(haveMpirun)("mpirun -np 2 qzo train", () => {
  it("every step's losses are the whole batch's at the same scales, rank 0's scales are its logged updates, the ranks' scales agree after every step", async () => {
    const run = join(tmp(), "run");
    const ev = evalFile();
    const r = await ranks(2, "train", "--model", Q4, "--data", DATA, "--eval", ev, "--out", run, "--steps", "10", "--batch", "6", "--seq-len", "48", "--eval-every", "5", "--check-every", "1");
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(qzoLines(String(r.stderr))).toEqual([
      "qzo: training on the generated CPU kernels, 2 ranks (Open MPI v" + /Open MPI v([^,]*)/.exec(String(r.stderr))![1] + ", 2 ranks)",
      expect.stringMatching(/^qzo train: stories260K-q4_0.gguf, 6384 trainable values/),
      expect.stringMatching(/^qzo train: 10 steps, best eval [0-9.]+ at step (5|10); wrote .*model.gguf/),
    ]);
    const runJson = JSON.parse(readFileSync(join(run, "run.json"), "utf8"));
    expect(runJson.parallel).toMatchObject({ ranks: 2 });
    // Per step: four doubles (L+, L-, weight, stop); the scale check (four) after each step; evaluations.
    expect(runJson.result.bytesPerStep).toBe(32 + 32 + (3 * 16) / 10);

    const bound = bindModel(Q4);
    const backend = createKernelBackend(bound, "cpu", { loss: "lm", train: true });
    const ds = loadDataset(DATA, modelTokenizer(bound.checkpoint), 48);
    const data = datasetData(ds);
    const recs = parseLog(readFileSync(join(run, "log.jsonl"), "utf8"));
    const h = recs[0] as LogHeader;
    const steps = recs.filter((x): x is StepRecord => "seed" in x);
    expect(steps).toHaveLength(10);
    for (const s of steps) {
      const { lo, hi } = parseSeedHex(s.seed as string);
      const batch = data.batch(batchOrder(data.size, h.batch, BigInt(h.run_seed), s.step));
      const pert = { seedLo: lo, seedHi: hi, eps: h.eps, epsMode: h.eps_mode, dist: h.z };
      const lp = backend.loss(batch, { ...pert, sign: 1 });
      const lm = backend.loss(batch, { ...pert, sign: -1 });
      expect(Math.abs((s.loss_plus as number) - lp), `step ${s.step}`).toBeLessThanOrEqual(2 * U * lp);
      expect(Math.abs((s.loss_minus as number) - lm), `step ${s.step}`).toBeLessThanOrEqual(2 * U * lm);
      backend.update({ seedLo: lo, seedHi: hi, d: s.d as number, lr: s.lr, epsMode: h.eps_mode, dist: h.z, floor: h.scale_floor });
    }
    const saved = loadScalesCheckpoint(join(run, "scales.safetensors"), { trainables: backend.trainables });
    expect(saved.step).toBe(10);
    backend.values().forEach((v, t) => expect(bits(v).equals(bits(saved.values[t]!)), backend.trainables[t]!.name).toBe(true));
  }, 120_000);

  it("a rank holding another model file, or given other flags, is named in one line by rank 0", async () => {
    const common = ["train", "--data", DATA, "--steps", "3", "--batch", "4"];
    const out = join(tmp(), "run");
    const r = await mpirun(["-np", "1", "node", CLI, ...common, "--model", Q4, "--out", out, ":", "-np", "1", "node", CLI, ...common, "--model", F32, "--out", out]);
    expect(r.exitCode).not.toBe(0);
    expect(qzoLines(String(r.stderr))).toEqual([expect.stringMatching(/^qzo \(rank 0 of 2\): rank 1 of 2 differs from rank 0 in its model file \(sha256\): [0-9a-f]{64} instead of [0-9a-f]{64}$/)]);
    const f = await mpirun(["-np", "1", "node", CLI, ...common, "--model", Q4, "--out", out, ":", "-np", "1", "node", CLI, ...common, "--model", Q4, "--out", out, "--lr", "0.01"]);
    expect(qzoLines(String(f.stderr))).toEqual(['qzo (rank 0 of 2): rank 1 of 2 differs from rank 0 in its training flags: {"batch":"4","lr":"0.01","steps":"3"} instead of {"batch":"4","steps":"3"}']);
    expect(readdirSync(out)).toEqual([]);
  }, 60_000);

  it("killing rank 1 ends the run on rank 0 with one line and a checkpoint of its last step; resuming ends where an uninterrupted run ends", async () => {
    const args = (out: string) => ["train", "--model", Q4, "--data", DATA, "--out", out, "--steps", "100", "--batch", "8", "--seq-len", "64", "--eval-every", "50"];
    const whole = join(tmp(), "whole");
    const w = await ranks(2, ...args(whole));
    expect(w.exitCode, String(w.stderr)).toBe(0);

    const run = join(tmp(), "run");
    const job = ranks(2, ...args(run));
    const log = join(run, "log.jsonl");
    const logged = () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter((l) => l.includes('"seed"')).length : 0);
    while (logged() < 35) await new Promise((res) => setTimeout(res, 50));
    // Rank 1 of this job: its environment says so, its command line names this run directory.
    const rank1 = readdirSync("/proc").filter((p) => /^\d+$/.test(p)).find((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(run) && readFileSync(`/proc/${p}/environ`, "utf8").split("\0").includes("OMPI_COMM_WORLD_RANK=1");
      } catch {
        return false;
      }
    });
    expect(rank1).toBeDefined();
    process.kill(Number(rank1), "SIGKILL");
    const r = await job;
    expect(r.exitCode).not.toBe(0);
    const lines = qzoLines(String(r.stderr)).filter((l) => l.startsWith("qzo (rank"));
    expect(lines).toEqual([expect.stringMatching(/^qzo \(rank 0 of 2\): asked to stop while waiting for the other ranks .*another rank has ended; .*scales\.safetensors holds step (\d+); continue with --resume$/)]);
    const held = Number(/holds step (\d+)/.exec(lines[0]!)![1]);
    expect(held).toBe(logged());
    expect(JSON.parse(readFileSync(join(run, "run.json"), "utf8")).status).toBe("interrupted");
    const bound = bindModel(Q4);
    const trainables = createKernelBackend(bound, "cpu", { loss: "lm", train: true }).trainables;
    expect(loadScalesCheckpoint(join(run, "scales.safetensors"), { trainables }).step).toBe(held);

    const again = await ranks(2, ...args(run), "--resume");
    expect(again.exitCode, String(again.stderr)).toBe(0);
    const a = loadScalesCheckpoint(join(run, "scales.safetensors"), { trainables });
    const b = loadScalesCheckpoint(join(whole, "scales.safetensors"), { trainables });
    expect(a.step).toBe(100);
    a.values.forEach((v, t) => expect(bits(v).equals(bits(b.values[t]!)), trainables[t]!.name).toBe(true));
  }, 120_000);

  it("Ctrl-C to mpirun stops both ranks after the same step, with one line and a checkpoint of that step", async () => {
    const run = join(tmp(), "run");
    const job = ranks(2, "train", "--model", Q4, "--data", DATA, "--out", run, "--steps", "400", "--batch", "8", "--seq-len", "64", "--eval-every", "100");
    const log = join(run, "log.jsonl");
    const logged = () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter((l) => l.includes('"seed"')).length : 0);
    while (logged() < 30) await new Promise((res) => setTimeout(res, 50));
    job.kill("SIGINT");
    const r = await job;
    const lines = qzoLines(String(r.stderr)).filter((l) => !l.startsWith("qzo: training") && !l.startsWith("qzo train: stories260K"));
    expect(lines).toEqual([`qzo train: stopped after step ${logged()}; ${run}/scales.safetensors saved; continue with --resume`]);
    const trainables = createKernelBackend(bindModel(Q4), "cpu", { loss: "lm", train: true }).trainables;
    expect(loadScalesCheckpoint(join(run, "scales.safetensors"), { trainables }).step).toBe(logged());
    expect(JSON.parse(readFileSync(join(run, "run.json"), "utf8")).status).toBe("interrupted");
  }, 60_000);

  it("without Open MPI's library, every rank says what to install in one line", async () => {
    const r = await mpirun(["-np", "2", "-x", "QZO_MPI_LIB=/nonexistent/libmpi.so.40", "node", CLI, "train", "--model", Q4, "--data", DATA, "--out", join(tmp(), "run")]);
    expect(r.exitCode).not.toBe(0);
    const lines = qzoLines(String(r.stderr)).sort();
    expect(lines).toHaveLength(2);
    lines.forEach((l, i) => expect(l).toMatch(new RegExp(`^qzo \\(rank ${i} of 2\\): started by mpirun \\(2 ranks\\) but no MPI library could be loaded \\(.*\\); install Open MPI`)));
  }, 60_000);
});

describe("a launcher other than Open MPI's", () => {
  it("is refused in one line (PMI_RANK/PMI_SIZE without Open MPI's variables)", async () => {
    const r = await execa("node", [CLI, "train", "--model", Q4, "--data", DATA, "--out", join(tmp(), "run")], { reject: false, env: { PMI_RANK: "0", PMI_SIZE: "2" } });
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr).trim()).toBe("qzo (rank 0 of 2): started by a launcher that sets PMI_RANK/PMI_SIZE (MPICH, Intel MPI or Slurm PMI); qzo's MPI binding supports Open MPI: start it with Open MPI's mpirun");
  });
});
