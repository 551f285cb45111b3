/**
 * Text generation: the forward graph runs on the whole sequence at each step
 * and the last position's logits choose the next token (greedy at temperature
 * 0, else sampled with a Philox uniform drawn from the seed, the sequence
 * number and the step), as llama2.c's run loop does: the prompt is forced, a
 * sequence has at most `steps` positions after BOS, and BOS ends it. Several
 * sequences run in one batch; each keeps its own ending.
 */
import type { ModuleIR } from "../../compiler/ir/ir.js";
import { contextLength } from "../../compiler/ir/queries.js";
import { runGraph, type WeightSource } from "../interpret/interpreter.js";
import { philox4x32Block } from "../rng/philox.js";
import { StreamDecoder, type Tokenizer } from "../tokenizer/index.js";

/** Logits [B, T, vocab] of a batch of token rows [B, T]. */
export type Forward = (tokens: Int32Array, batch: number, seq: number) => Float32Array;

export function interpreterForward(m: ModuleIR, weights: WeightSource): Forward {
  return (tokens, batch, seq) => runGraph(m, "forward", { tokens: { shape: [batch, seq], data: tokens } }, weights).data as Float32Array;
}

export interface GenerateOptions {
  prompt: string;
  steps: number;
  temperature: number;
  seed: number;
  /** Independent samples, generated as one batch (default 1). */
  count?: number;
  /** Called with each piece of text of sample 0 as it is produced (streaming). */
  onText?: (text: string) => void;
}

export interface Generated {
  /** Sample 0's tokens (BOS first) and text. */
  tokens: number[];
  text: string;
  /** Every sample's text. */
  texts: string[];
}

export function generate(m: ModuleIR, weights: WeightSource | Forward, tok: Tokenizer, opts: GenerateOptions): Generated {
  const forward = typeof weights === "function" ? weights : interpreterForward(m, weights);
  const prompt = tok.encode(opts.prompt, { bos: true, eos: false });
  const seqLen = contextLength(m);
  const steps = Math.min(opts.steps, seqLen ?? opts.steps);
  const count = opts.count ?? 1;
  const seqs = Array.from({ length: count }, () => [prompt[0]!]);
  const done = new Array<boolean>(count).fill(false);
  const streams = seqs.map((s) => new StreamDecoder(tok, s[0]!));
  const texts = new Array<string>(count).fill("");
  const emit = (k: number, s: string) => {
    texts[k] += s;
    if (k === 0) opts.onText?.(s);
  };
  for (let pos = 0; pos < steps && done.includes(false); pos++) {
    let logits: Float32Array | undefined;
    let V = 0;
    const T = pos + 1;
    if (pos + 1 >= prompt.length) {
      const rows = new Int32Array(count * T);
      seqs.forEach((s, k) => rows.set(s.slice(0, T), k * T));
      logits = forward(rows, count, T);
      V = logits.length / (count * T);
    }
    for (let k = 0; k < count; k++) {
      if (done[k]) continue;
      let next: number;
      if (!logits) {
        next = prompt[pos + 1]!;
      } else {
        const row = logits.subarray((k * T + T - 1) * V, (k * T + T) * V);
        next = opts.temperature === 0 ? argmax(row) : sample(row, opts.temperature, opts.seed, k, pos);
      }
      if (next === tok.bos) {
        done[k] = true;
        continue;
      }
      emit(k, streams[k]!.push(next));
      seqs[k]!.push(next);
    }
  }
  streams.forEach((s, k) => emit(k, s.flush()));
  return { tokens: seqs[0]!, text: texts[0]!, texts };
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** Samples from softmax(row / temperature) with the uniform of Philox(seed; step, sample). */
function sample(row: Float32Array, temperature: number, seed: number, k: number, step: number): number {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  const p = new Float64Array(row.length);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += p[i] = Math.exp((row[i]! - max) / temperature);
  const words = philox4x32Block([step >>> 0, k >>> 0, 0, 0x5a5a0002], [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0]);
  const u = (words[0]! / 2 ** 32) * sum;
  let acc = 0;
  for (let i = 0; i < p.length; i++) {
    acc += p[i]!;
    if (u < acc) return i;
  }
  return p.length - 1;
}
