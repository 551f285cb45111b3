/**
 * The same short QZO run on the generated CPU kernels and on the reference
 * interpreter: same data, same seed, same hyperparameters. The loss
 * trajectories (L+ and L- of every step) and the trained scales agree.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createKernelBackend } from "../../src/runtime/backends/kernel-backend.js";
import { bindModel } from "../../src/runtime/load/bind.js";
import { modelTokenizer } from "../../src/runtime/load/tokenizer.js";
import { loadDataset } from "../../src/runtime/data/dataset.js";
import { createInterpreterBackend } from "../../src/runtime/backends/interp-backend.js";
import { datasetData, parseLog, train, type TrainHyper } from "../../src/runtime/train/trainer.js";
import type { Backend } from "../../src/runtime/backends/backend.js";

const root = new URL("../../", import.meta.url).pathname;
const MODEL = join(root, "models", "weights", "stories260K", "stories260K-q4_0.gguf");
const DATA = join(root, "test", "fixtures", "data", "stories.txt");

describe("a QZO run on the CPU kernels and on the interpreter", () => {
  it("gives the same loss trajectory and the same scales", async () => {
    const bound = bindModel(MODEL);
    const ds = loadDataset(DATA, modelTokenizer(bound.checkpoint), 32);
    const hp: TrainHyper = { ...bound.module.train, steps: 4, batch: 4, evalEvery: 0, seed: 42n };
    const run = async (backend: Backend) => {
      const runDir = mkdtempSync(join(tmpdir(), "qzo-traj-"));
      await train({ backend, train: datasetData(ds), hp, runDir, model: { path: MODEL, sha256: "x", spec: bound.spec }, progress: false });
      const steps = parseLog(readFileSync(join(runDir, "log.jsonl"), "utf8")).filter((r) => "loss_plus" in r) as { loss_plus: number; loss_minus: number; d: number }[];
      return { steps, values: backend.values().map((v) => Float32Array.from(v)) };
    };
    const cpu = createKernelBackend(bound, "cpu", { loss: "lm", threads: 2 });
    const a = await run(cpu);
    cpu.close();
    const b = await run(createInterpreterBackend(bindModel(MODEL), { loss: "lm" }));
    expect(a.steps).toHaveLength(4);
    a.steps.forEach((s, i) => {
      const r = b.steps[i]!;
      expect(Math.abs(s.loss_plus - r.loss_plus) / r.loss_plus).toBeLessThan(1e-5);
      expect(Math.abs(s.loss_minus - r.loss_minus) / r.loss_minus).toBeLessThan(1e-5);
    });
    a.values.forEach((v, t) => {
      for (let i = 0; i < v.length; i++) expect(Math.abs(v[i]! - b.values[t]![i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(b.values[t]![i]!) + 1e-9);
    });
  }, 120_000);
});
