/**
 * Reverse-mode gradients over the reference interpreter (src/runtime/interpret/gradient.ts) on
 * stories260K Q4_0 (bundled): rope, grouped-query attention, SwiGLU, rmsnorm and both language-model
 * losses, against central differences of the interpreter's own loss along random directions, as
 * QZO moves the scales (relative: s + h |s| z).
 */
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { createInterpreterBackend } from "../../src/runtime/backends/interp-backend.js";
import { loadDataset, makeBatch } from "../../src/runtime/data/dataset.js";
import { lossGradient } from "../../src/runtime/interpret/gradient.js";
import { bindModel } from "../../src/runtime/load/bind.js";
import { modelTokenizer } from "../../src/runtime/load/tokenizer.js";
import { rng } from "../support/random-model.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const Q4 = path.join(root, "models/weights/stories260K/stories260K-q4_0.gguf");

describe("reverse-mode gradients on stories260K Q4_0", () => {
  const bound = bindModel(Q4);
  const ds = loadDataset(path.join(root, "data/stories260K-self/eval.txt"), modelTokenizer(bound.checkpoint), 32);
  const lm = makeBatch(ds, [0, 1]);
  // A teacher's top-4 with half of its mass left to the tail, so that the tail bucket's term weighs.
  const r = rng(5);
  const [B, T, K, V] = [2, 32, 4, 512];
  const ids = new Int32Array(B * T * K);
  const probs = new Float32Array(B * T * K);
  for (let i = 0; i < B * T; i++) {
    const w = Array.from({ length: K }, () => 0.1 + r());
    const sum = w.reduce((a, x) => a + x, 0);
    for (let k = 0; k < K; k++) {
      ids[i * K + k] = (Math.floor(r() * (V / K)) * K + k) % V;
      probs[i * K + k] = (0.5 * w[k]!) / sum;
    }
  }
  const distill = { tokens: lm["tokens"]!, mask: lm["mask"]!, teacher_ids: { shape: [B, T, K], data: ids }, teacher_probs: { shape: [B, T, K], data: probs } };

  for (const [loss, batch] of [["lm", lm], ["distill", distill]] as const) {
    it(`${loss}: grad . z matches central differences, over all scales and per weight kind`, () => {
      const be = createInterpreterBackend(bound, { loss });
      const { loss: l0, grads } = lossGradient(bound.module, loss, batch, be.weights);
      expect(l0).toBe(be.loss(batch));
      const base = be.values().map((v) => Float32Array.from(v));
      const z0 = rng(11);
      for (const kind of ["*", "output", "wq", "wk", "wv", "wo", "w1", "w3"]) {
        const z = base.map((b, t) => Float32Array.from(b, () => (kind === "*" || be.trainables[t]!.param === kind ? Math.sqrt(-2 * Math.log(1 - z0())) * Math.cos(2 * Math.PI * z0()) : 0)));
        let gz = 0;
        for (let t = 0; t < base.length; t++) for (let i = 0; i < base[t]!.length; i++) gz += grads[t]![i]! * z[t]![i]! * Math.abs(base[t]![i]!);
        const h = 2e-3;
        const at = (sign: number): number => {
          be.setValues(base.map((b, t) => Float32Array.from(b, (s, i) => s + sign * h * Math.abs(s) * z[t]![i]!)));
          return be.loss(batch);
        };
        const fd = (at(1) - at(-1)) / (2 * h);
        // Truncation (h^2 times the third derivative; 1e-3 relative measured at h = 2e-3, 25x that at
        // h = 1e-2) plus the float32 rounding of the two losses over 2h.
        expect(Math.abs(gz - fd), kind).toBeLessThan(3e-3 * Math.abs(fd) + (4 * 2 ** -24 * l0) / h);
      }
      be.setValues(base);
    });
  }
});
