/**
 * The library API in process (test/cli/package.test.ts runs it as an installed package): its
 * errors, and a Model whose evaluation with a checkpoint leaves the model's own scales in place.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compileSpec, loadModel, QzoError, train } from "../../src/index.js";
import { createKernelBackend } from "../../src/runtime/backends/kernel-backend.js";
import { UnsupportedError } from "../../src/util/errors.js";

const root = new URL("../../", import.meta.url).pathname;
const Q4 = join(root, "models/weights/stories260K/stories260K-q4_0.gguf");
const STORY = "Once upon a time, there was a little girl named Lily. She loved to play in the park with her dog.";

describe("the library API", () => {
  it("compileSpec: a file without a model, and a graph the target has no kernel for, are one-line errors", () => {
    expect(() => compileSpec(join(root, "models/formats/gguf.qzo"))).toThrow(QzoError);
    expect(() => compileSpec(join(root, "models/formats/gguf.qzo"))).toThrow(/gguf\.qzo: declares no model$/);
    const spec = join(mkdtempSync(join(tmpdir(), "qzo-api-")), "sm.qzo");
    writeFileSync(spec, "model sm {\n  config {\n    n: int = 8\n  }\n\n  graph forward(x: f32[B, n]) -> f32[B, n] {\n    return softmax(x)\n  }\n}\n");
    expect(() => compileSpec(spec, { target: "cuda" })).toThrow(UnsupportedError);
    expect(() => compileSpec(spec, { target: "cuda" })).toThrow(`${spec}: the CUDA code generator has no kernel for softmax (%1 = softmax (${spec}:7:12))`);
  });

  it("Model.evaluate with a checkpoint scores the trained scales and then restores the model's own", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qzo-api-"));
    const data = join(dir, "stories.txt");
    writeFileSync(data, Array.from({ length: 24 }, (_, i) => `${STORY} Day ${i}.`).join("\n\n"));
    const run = await train({ model: Q4, data, out: join(dir, "run"), steps: 20, batch: 4, seqLen: 32, device: "cpu" });
    expect(run.exitCode).toBe(0);
    const model = loadModel(Q4, { device: "cpu" });
    const before = model.perplexity(STORY).nll;
    const own = model.evaluate(data, { seqLen: 32 });
    const tuned = model.evaluate(data, { seqLen: 32, checkpoint: join(dir, "run", "scales.safetensors") });
    expect(tuned.loss).not.toBe(own.loss);
    expect(model.perplexity(STORY).nll).toBe(before);
    expect(model.evaluate(data, { seqLen: 32 }).loss).toBe(own.loss);
  }, 120_000);

  it("device memory statistics are a CUDA backend feature", () => {
    const be = createKernelBackend(loadModel(Q4).bound, "cpu", { loss: "lm", threads: 1 });
    try {
      expect(() => be.memory()).toThrow(/^device memory statistics are a CUDA backend feature$/);
    } finally {
      be.close();
    }
  });
});
