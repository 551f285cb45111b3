/**
 * Text generation with the reference interpreter: the forward graph runs on
 * the whole sequence at each step and the last position's logits choose the
 * next token (greedy at temperature 0, else sampled with a Philox uniform
 * from the seed), as llama2.c's run loop does: the prompt is forced, the
 * sequence has at most `steps` positions after BOS, and BOS ends it.
 */
import type { ModuleIR } from "../../compiler/ir/ir.js";
import { runGraph, type WeightSource } from "../interpret/interpreter.js";
import { philox4x32Block } from "../rng/philox.js";
import { StreamDecoder, type Tokenizer } from "../tokenizer/index.js";

export interface GenerateOptions {
  prompt: string;
  steps: number;
  temperature: number;
  seed: number;
  /** Called with each piece of text as it is produced. */
  onText?: (text: string) => void;
}

export function generate(m: ModuleIR, weights: WeightSource, tok: Tokenizer, opts: GenerateOptions): { tokens: number[]; text: string } {
  const prompt = tok.encode(opts.prompt, { bos: true, eos: false });
  const seqLen = m.config.find((c) => c.name === "seq_len")?.value.value;
  const steps = Math.min(opts.steps, typeof seqLen === "number" ? seqLen : opts.steps);
  const ids = [prompt[0]!];
  const stream = new StreamDecoder(tok, ids[0]!);
  let text = "";
  const emit = (s: string) => {
    text += s;
    opts.onText?.(s);
  };
  for (let pos = 0; pos < steps; pos++) {
    let next: number;
    if (pos + 1 < prompt.length) {
      next = prompt[pos + 1]!;
    } else {
      const logits = runGraph(m, "forward", { tokens: { shape: [1, ids.length], data: Int32Array.from(ids) } }, weights);
      const V = logits.shape[2]!;
      const row = logits.data.subarray((ids.length - 1) * V, ids.length * V) as Float32Array;
      next = opts.temperature === 0 ? argmax(row) : sample(row, opts.temperature, opts.seed, pos);
    }
    if (next === tok.bos) break;
    emit(stream.push(next));
    ids.push(next);
  }
  emit(stream.flush());
  return { tokens: ids, text };
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** Samples from softmax(row / temperature) with the uniform of Philox(seed, step). */
function sample(row: Float32Array, temperature: number, seed: number, step: number): number {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  const p = new Float64Array(row.length);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += p[i] = Math.exp((row[i]! - max) / temperature);
  const words = philox4x32Block([step >>> 0, 0, 0, 0x5a5a0002], [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0]);
  const u = (words[0]! / 2 ** 32) * sum;
  let acc = 0;
  for (let i = 0; i < p.length; i++) {
    acc += p[i]!;
    if (u < acc) return i;
  }
  return p.length - 1;
}
