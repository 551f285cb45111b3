/**
 * Our runtime against llama.cpp (through node-llama-cpp) on the same GGUF
 * files: the same token ids, the same greedy continuations, and the same
 * mean NLL up to llama.cpp's own roundings. Those (8-bit blocks for the
 * inputs of quantized products, an f16 KV cache and f16 accumulation in
 * attention) are an error model (ggml-rounding.ts): the tolerance of each
 * comparison is the spread of that model over seeded draws, computed in the
 * test, never a number fitted on one machine.
 */
import { afterAll, describe, expect, it } from "vitest";
import { generate } from "../../src/runtime/infer/generate.js";
import { lmLoss, perplexity } from "../../src/runtime/infer/perplexity.js";
import { runGraph, type RoundingModel, type WeightSource } from "../../src/runtime/interpret/interpreter.js";
import { bindModel, type BoundModel } from "../../src/runtime/load/bind.js";
import { modelTokenizer } from "../../src/runtime/load/tokenizer.js";
import { ggmlRounding } from "./ggml-rounding.js";
import { disposeLlamaCpp, greedyContinuation, llamaCppStatus, sharedModelsDir, tokenLogProbs, tokenize } from "./llama-cpp.js";

const status = await llamaCppStatus();
const gguf = (kind: string) => `${sharedModelsDir}/gguf/stories260K-${kind}.gguf`;
const TEXT =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. Tom and Sue went to the shop to buy some milk.";

afterAll(disposeLlamaCpp);

describe.skipIf(!status.available)("qzo and llama.cpp on the same GGUF files", () => {
  it("tokenize every prompt to the same ids", async () => {
    const b = bindModel(gguf("q4_0"));
    const tok = modelTokenizer(b.checkpoint);
    for (const s of ["Once upon a time", "", " leading space", "Lily's mom said, \"Hi!\"\nThe end.", "naïve café 😀", "a  b   c", "12345 + 678"]) {
      expect(tok.encode(s, { bos: true, eos: false }), JSON.stringify(s)).toEqual(await tokenize(gguf("q4_0"), s, { bos: true, special: false }));
    }
  });

  it.each(["f32", "q8_0", "q4_0"])("continue \"Once upon a time\" greedily with the same 40 tokens (%s)", async (kind) => {
    const theirs = await greedyContinuation(gguf(kind), "Once upon a time", 40);
    const b = bindModel(gguf(kind));
    const ours = generate(b.module, b.weights, modelTokenizer(b.checkpoint), { prompt: "Once upon a time", steps: 44, temperature: 0, seed: 0 });
    expect(ours.tokens.slice(theirs.promptTokens.length)).toEqual(theirs.tokens);
  }, 60_000);

  /** Draws of the error model, and how many standard deviations of it the tolerance allows. */
  const DRAWS = 16;
  const SIGMAS = 4;

  /** Mean next-token NLL of the forward graph's logits over the text, log-softmax in float64. */
  const meanNll = (b: BoundModel, ids: number[], weights: WeightSource = b.weights, rounding?: RoundingModel) => {
    const T = ids.length;
    const logits = runGraph(b.module, "forward", { tokens: { shape: [1, T], data: Int32Array.from(ids) } }, weights, undefined, rounding).data as Float32Array;
    const V = logits.length / T;
    let nll = 0;
    for (let t = 0; t + 1 < T; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      const max = row.reduce((a, x) => Math.max(a, x), -Infinity);
      const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
      nll += lse - row[ids[t + 1]!]!;
    }
    return nll / (T - 1);
  };

  /** The error model's bound on |llama.cpp - exact|: |mean| + SIGMAS standard deviations of its draws. */
  const bound = (b: BoundModel, ids: number[], exact: number) => {
    const dev = Array.from({ length: DRAWS }, (_, seed) => meanNll(b, ids, b.weights, ggmlRounding(seed + 1)) - exact);
    const mean = dev.reduce((a, x) => a + x, 0) / DRAWS;
    const sd = Math.sqrt(dev.reduce((a, x) => a + (x - mean) ** 2, 0) / (DRAWS - 1));
    return { mean, sd, tol: Math.abs(mean) + SIGMAS * sd };
  };

  const llamaNll = async (kind: string, ids: number[]) => {
    const lp = await tokenLogProbs(gguf(kind), ids);
    expect(lp).toHaveLength(ids.length - 1);
    return -lp.reduce((a, x) => a + x, 0) / lp.length;
  };

  it.each(["f32", "q8_0", "q4_0"])("give the same mean NLL on a text within the error model of llama.cpp's roundings (%s)", async (kind) => {
    const b = bindModel(gguf(kind));
    const tok = modelTokenizer(b.checkpoint);
    const ids = tok.encode(TEXT, { bos: true, eos: false });
    const ours = perplexity(b.module, lmLoss(b.module, b.weights), tok, TEXT, "text");
    const exact = meanNll(b, ids);
    expect(Math.abs(ours.nll - exact)).toBeLessThan(1e-6);
    const theirs = await llamaNll(kind, ids);
    const m = bound(b, ids, exact);
    console.log(`${kind}: ours ${exact.toFixed(6)}, llama.cpp ${theirs.toFixed(6)}, difference ${(theirs - exact).toExponential(2)}; error model mean ${m.mean.toExponential(2)}, sd ${m.sd.toExponential(2)}, bound ${m.tol.toExponential(2)}`);
    expect(Math.abs(theirs - exact)).toBeLessThan(m.tol);
  }, 120_000);

  it.each([
    ["every scale 5% too large", (s: number) => s * 1.05, () => true],
    ["the scales of one tensor (wo[2]) doubled", (s: number) => s * 2, (p: string, l: number | undefined) => p === "wo" && l === 2],
  ] as const)("catch a Q4_0 model with a deliberately wrong scale with that bound: %s", async (_what, wrongScale, which) => {
    const b = bindModel(gguf("q4_0"));
    const ids = modelTokenizer(b.checkpoint).encode(TEXT, { bos: true, eos: false });
    const wrong: WeightSource = {
      get(param, layer) {
        const v = b.weights.get(param, layer);
        if (v.kind !== "quant" || !which(param, layer)) return v;
        return { kind: "quant", tensor: { ...v.tensor, scales: v.tensor.scales.map(wrongScale) } };
      },
    };
    const exact = meanNll(b, ids);
    const exactWrong = meanNll(b, ids, wrong);
    const theirs = await llamaNll("q4_0", ids);
    const m = bound(b, ids, exact);
    console.log(`${_what}: ours ${exactWrong.toFixed(6)} (right: ${exact.toFixed(6)}), llama.cpp ${theirs.toFixed(6)}, bound ${m.tol.toExponential(2)}`);
    expect(Math.abs(theirs - exact)).toBeLessThan(m.tol);
    expect(Math.abs(theirs - exactWrong)).toBeGreaterThan(m.tol);
  }, 120_000);
});
