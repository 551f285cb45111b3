/**
 * Perplexity of a text as one sequence: tokens with BOS, the mean negative
 * log-likelihood in nats over every position after BOS, computed by the
 * model's `lm` loss with a mask of ones (next-token cross-entropy).
 */
import type { ModuleIR } from "../../compiler/ir/ir.js";
import { QzoError } from "../../util/errors.js";
import { runGraph, type WeightSource } from "../interpret/interpreter.js";
import type { Batch } from "../backends/backend.js";
import type { Tokenizer } from "../tokenizer/index.js";

export interface PerplexityResult {
  tokens: number;
  nll: number;
  ppl: number;
}

/** `loss` runs the model's `lm` loss on a batch (a backend's, or the interpreter's). */
export function perplexity(m: ModuleIR, loss: (b: Batch) => number, tok: Tokenizer, text: string, file: string): PerplexityResult {
  const ids = tok.encode(text, { bos: true, eos: false });
  const seqLen = m.config.find((c) => c.name === "seq_len")?.value.value;
  if (typeof seqLen === "number" && ids.length > seqLen) {
    throw new QzoError(`${file}: ${ids.length} tokens (with BOS) exceed the model's context of ${seqLen}; shorten the text`);
  }
  if (ids.length < 2) throw new QzoError(`${file}: the text has no token to predict`);
  if (!m.graphs.some((g) => g.name === "lm")) throw new QzoError(`${m.source}: the spec has no 'lm' loss to compute perplexity with`);
  const T = ids.length;
  const mask = new Float32Array(T).fill(1);
  const nll = loss({ tokens: { shape: [1, T], data: Int32Array.from(ids) }, mask: { shape: [1, T], data: mask } });
  return { tokens: T, nll, ppl: Math.exp(nll) };
}

/** The `lm` loss of the reference interpreter, as `perplexity` takes it. */
export function lmLoss(m: ModuleIR, weights: WeightSource): (b: Batch) => number {
  return (b) => runGraph(m, "lm", b, weights).data[0]!;
}
