/**
 * Seeded random inputs shared by the tests: the runtime's random models and batches (the
 * benchmarks use them too), and distillation batches.
 */
import type { Batch } from "../../src/runtime/backends/backend.js";
import { lmBatch, rng } from "../../src/runtime/bench/random-model.js";

export { lmBatch, randomModel, rng } from "../../src/runtime/bench/random-model.js";

/**
 * An lm batch plus a random teacher for the distill loss: at every position K distinct ids, with
 * probabilities from a random distribution over them that together hold `mass` of the total.
 */
export function distillBatch(seed: number, B: number, T: number, vocab: number, K: number, mass = 0.9, maskDrop = 0): Batch {
  const base = lmBatch(seed, B, T, vocab, maskDrop);
  const r = rng(seed ^ 0x5eed);
  const ids = new Int32Array(B * T * K);
  const probs = new Float32Array(B * T * K);
  for (let p = 0; p < B * T; p++) {
    const picked = new Set<number>();
    while (picked.size < K) picked.add(Math.floor(r() * vocab));
    const w = Array.from({ length: K }, () => r() ** 3);
    const sum = w.reduce((a, b) => a + b, 0);
    [...picked].forEach((id, k) => {
      ids[p * K + k] = id;
      probs[p * K + k] = (mass * w[k]!) / sum;
    });
  }
  return { ...base, teacher_ids: { shape: [B, T, K], data: ids }, teacher_probs: { shape: [B, T, K], data: probs } };
}
