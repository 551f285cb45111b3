/**
 * The generated CPU kernels against the reference interpreter, for every
 * shipped spec and format (and a fixture-only format): random weights,
 * quantized by the round-to-nearest quantizer, the same inputs, the same
 * seeds. Forward logits and losses agree to 1e-5 relative (f32 math), with
 * and without the perturbation, and the QZO update gives the same scales.
 * The distill loss (a teacher's top-K buckets) agrees too, fused into the
 * LM head and unfused.
 */
import { describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import type { ModuleIR } from "../../src/compiler/ir/ir.js";
import { createKernelBackend } from "../../src/runtime/backends/kernel-backend.js";
import { UnsupportedError } from "../../src/util/errors.js";
import { runGraph, type ParamValue, type Perturbation } from "../../src/runtime/interpret/interpreter.js";
import { applyUpdate } from "../../src/runtime/interpret/update.js";
import { unpack } from "../../src/runtime/quant/codec.js";
import type { Batch } from "../../src/runtime/backends/backend.js";
import { SMALL, SPEC_CASES } from "../support/spec-cases.js";
import { distillBatch, lmBatch as randomBatch, randomModel as randomStored, rng } from "../support/random-model.js";

const root = new URL("../../", import.meta.url).pathname;

/** A random model (test/support/random-model.ts) with the interpreter's view of its weights. */
function randomModel(m: ModuleIR, seed: number) {
  const { stored: get } = randomStored(m, seed);
  const weights = {
    get(param: string, layer: number | undefined): ParamValue {
      const s = get(param, layer);
      return s.kind === "float" ? { kind: "float", shape: s.shape, data: s.data } : { kind: "quant", tensor: unpack(s.packed) };
    },
  };
  return { module: m, stored: get, weights };
}

const lmBatch = (seed: number, B: number, T: number, vocab: number): Batch => randomBatch(seed, B, T, vocab, 0.2);

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-6);

const cases: [string, string, Record<string, string | number>, boolean?][] = [
  ["llama q4_0, unfused baseline kernels", "models/llama.qzo", { ...SMALL, weight: "q4_0" }, true],
  ...SPEC_CASES.map((c): [string, string, Record<string, string | number>] => [c.name, c.spec, c.overrides]),
];

/** The checked spec, a random model (seed) of it, its CPU backend for `loss`, and its vocabulary size. */
function setup(spec: string, overrides: Record<string, string | number>, seed: number, loss: string, unfused?: boolean) {
  const r = checkFile(`${root}${spec}`, overrides);
  expect(r.diagnostics.map((d) => d.message)).toEqual([]);
  const m = r.modules[0]!;
  const model = randomModel(m, seed);
  const cpu = createKernelBackend(model, "cpu", { loss, threads: 2, pipeline: unfused ? "unfused" : "fused" });
  return { m, model, cpu, vocab: m.config.find((c) => c.name === "vocab")!.value.value as number };
}

describe("generated CPU kernels agree with the reference interpreter", () => {
  it.each(cases)("%s", (_name, spec, overrides, unfused) => {
    const { m, model, cpu, vocab } = setup(spec, overrides, 7, "lm", unfused);
    try {
      const batch = lmBatch(3, 2, 16, vocab);
      const logitsCpu = cpu.forward(batch["tokens"]!.data as Int32Array, 2, 16);
      const logitsRef = runGraph(m, "forward", { tokens: batch["tokens"]! }, model.weights).data;
      let worst = 0;
      for (let i = 0; i < logitsRef.length; i++) worst = Math.max(worst, Math.abs(logitsCpu[i]! - logitsRef[i]!) / (Math.abs(logitsRef[i]!) + 1e-2));
      expect(worst).toBeLessThan(1e-5);

      expect(rel(cpu.loss(batch), runGraph(m, "lm", batch, model.weights).data[0]!)).toBeLessThan(1e-5);
      for (const [sign, epsMode, dist] of [[1, "relative", "gaussian"], [-1, "absolute", "rademacher"]] as const) {
        const p: Perturbation = { seedLo: 0x1234, seedHi: 0x9abc, sign, eps: epsMode === "relative" ? 1e-2 : 1e-3, epsMode, dist };
        const ref = runGraph(m, "lm", batch, model.weights, p).data[0]!;
        expect(rel(cpu.loss(batch, p), ref), `${sign} ${epsMode} ${dist}`).toBeLessThan(1e-5);
      }

      const before = cpu.values().map((v) => Float32Array.from(v));
      cpu.update({ seedLo: 5, seedHi: 6, d: -0.7, lr: 1e-2, epsMode: "relative", dist: "gaussian", floor: 1e-7 });
      before.forEach((v, t) => {
        applyUpdate(v, t, 5, 6, -0.7, 1e-2, "gaussian", "relative", cpu.trainables[t]!.field === "scale" ? 1e-7 : 0);
        const got = cpu.values()[t]!;
        for (let i = 0; i < v.length; i++) if (rel(got[i]!, v[i]!) > 1e-6) throw new Error(`tensor ${t} element ${i}: ${got[i]} != ${v[i]}`);
      });
      expect(cpu.trainables.length).toBeGreaterThan(0);
    } finally {
      cpu.close();
    }
  }, 120_000);
});

describe("block-coordinate directions (tensor period 3): generated CPU kernels agree with the reference interpreter", () => {
  it("perturbed losses at two seeds (two offsets) and the update, which leaves the tensors outside the direction", () => {
    const { m, model, cpu, vocab } = setup("models/llama.qzo", { ...SMALL, weight: "q4_0" }, 13, "lm");
    try {
      const batch = lmBatch(4, 2, 16, vocab);
      for (const seedLo of [0x1234, 0x1235]) {
        const p: Perturbation = { seedLo, seedHi: 0x9abc, sign: 1, eps: 1e-2, epsMode: "relative", dist: "gaussian", period: 3 };
        const ref = runGraph(m, "lm", batch, model.weights, p).data[0]!;
        expect(rel(cpu.loss(batch, p), ref)).toBeLessThan(1e-5);
        // Not the loss of every tensor perturbed.
        expect(rel(ref, runGraph(m, "lm", batch, model.weights, { ...p, period: 1 }).data[0]!)).toBeGreaterThan(1e-7);
      }
      const before = cpu.values().map((v) => Float32Array.from(v));
      cpu.update({ seedLo: 7, seedHi: 6, d: -0.7, lr: 1e-2, epsMode: "relative", dist: "gaussian", floor: 1e-7, period: 3 });
      before.forEach((v, t) => {
        const was = Float32Array.from(v);
        applyUpdate(v, t, 7, 6, -0.7, 1e-2, "gaussian", "relative", cpu.trainables[t]!.field === "scale" ? 1e-7 : 0, 3);
        const got = cpu.values()[t]!;
        for (let i = 0; i < v.length; i++) if (rel(got[i]!, v[i]!) > 1e-6) throw new Error(`tensor ${t} element ${i}: ${got[i]} != ${v[i]}`);
        expect(got.every((x, i) => x === was[i]), `tensor ${t}`).toBe((t + (7 % 3)) % 3 !== 0);
      });
    } finally {
      cpu.close();
    }
  }, 120_000);
});

describe("the distill loss: generated CPU kernels agree with the reference interpreter", () => {
  const distillCases = cases.filter(([name]) => name === "llama q4_0" || name === "llama q4_0, unfused baseline kernels" || name.startsWith("opt"));
  it.each(distillCases)("%s", (_name, spec, overrides, unfused) => {
    const { m, model, cpu, vocab } = setup(spec, overrides, 11, "distill", unfused);
    try {
      const batch = distillBatch(5, 2, 16, vocab, 8, 0.9, 0.2);
      expect(rel(cpu.loss(batch), runGraph(m, "distill", batch, model.weights).data[0]!)).toBeLessThan(1e-5);
      const p: Perturbation = { seedLo: 0x77, seedHi: 0x88, sign: 1, eps: 1e-2, epsMode: "relative", dist: "gaussian" };
      expect(rel(cpu.loss(batch, p), runGraph(m, "distill", batch, model.weights, p).data[0]!)).toBeLessThan(1e-5);
      // The teacher covers every token: no tail bucket.
      const full = distillBatch(6, 2, 16, vocab, vocab, 1);
      expect(rel(cpu.loss(full), runGraph(m, "distill", full, model.weights).data[0]!)).toBeLessThan(1e-5);
      const bad = distillBatch(7, 2, 16, vocab, 4);
      (bad["teacher_ids"]!.data as Int32Array)[5 * 4 + 1] = vocab;
      expect(() => cpu.loss(bad)).toThrow(/a teacher id is outside the vocabulary/);
    } finally {
      cpu.close();
    }
  }, 120_000);
});

describe("the mse loss of models/bench/matmul.qzo: generated CPU kernels agree with the reference interpreter", () => {
  it.each([["fused", false], ["unfused", true]] as const)("%s", (_name, unfused) => {
    const r0 = checkFile(`${root}models/bench/matmul.qzo`, { k: 96, n: 40 });
    expect(r0.diagnostics.map((d) => d.message)).toEqual([]);
    const m = r0.modules[0]!;
    const model = randomModel(m, 13);
    const cpu = createKernelBackend(model, "cpu", { loss: "l2", threads: 2, pipeline: unfused ? "unfused" : "fused" });
    try {
      const r = rng(3);
      const floats = (n: number) => Float32Array.from({ length: n }, () => 2 * r() - 1);
      const batch: Batch = { x: { shape: [1, 5, 96], data: floats(5 * 96) }, y: { shape: [1, 5, 40], data: floats(5 * 40) } };
      expect(rel(cpu.loss(batch), runGraph(m, "l2", batch, model.weights).data[0]!)).toBeLessThan(1e-5);
      const p: Perturbation = { seedLo: 0x31, seedHi: 0x41, sign: -1, eps: 1e-2, epsMode: "relative", dist: "gaussian" };
      expect(rel(cpu.loss(batch, p), runGraph(m, "l2", batch, model.weights, p).data[0]!)).toBeLessThan(1e-5);
    } finally {
      cpu.close();
    }
  }, 60_000);
});

describe("a spec that trains float weights (gpt2_tiny: its LayerNorm weights)", () => {
  it("the CPU kernels evaluate it like the interpreter, but refuse to train it (they could not perturb those weights)", () => {
    const { m, model, cpu, vocab } = setup("test/fixtures/specs/gpt2_tiny.qzo", {}, 17, "lm");
    try {
      const batch = lmBatch(4, 2, 16, vocab);
      expect(rel(cpu.loss(batch), runGraph(m, "lm", batch, model.weights).data[0]!)).toBeLessThan(1e-5);
    } finally {
      cpu.close();
    }
    const refuse = () => createKernelBackend(model, "cpu", { loss: "lm", threads: 2, train: true });
    expect(refuse).toThrow(UnsupportedError);
    expect(refuse).toThrow(/gpt2_tiny\.qzo: the CPU kernels perturb scales and mins, not the trainable float weights of 'ln1_w'$/);
  }, 60_000);
});
