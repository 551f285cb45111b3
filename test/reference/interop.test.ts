/**
 * Our runtime against llama.cpp (through node-llama-cpp) on the same GGUF
 * files: the same token ids, the same greedy continuations, and the same
 * per-token probabilities up to llama.cpp's own approximations. ggml's CPU
 * path keeps the KV cache in f16 and, for Q8_0/Q4_0 weights, rounds the
 * activations to 8-bit blocks before each quantized dot product; that bounds
 * how close the two can be (measured: F32 1.5e-4, Q8_0 9e-4, Q4_0 6.6e-3
 * relative difference in mean NLL on the text below).
 */
import { afterAll, describe, expect, it } from "vitest";
import { generate } from "../../src/runtime/infer/generate.js";
import { lmLoss, perplexity } from "../../src/runtime/infer/perplexity.js";
import { bindModel } from "../../src/runtime/load/bind.js";
import { modelTokenizer } from "../../src/runtime/load/tokenizer.js";
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

  it.each([
    ["f32", 5e-4],
    ["q8_0", 2e-3],
    ["q4_0", 1e-2],
  ] as const)("give the same mean NLL on a text (%s, relative tolerance %s)", async (kind, tol) => {
    const b = bindModel(gguf(kind));
    const tok = modelTokenizer(b.checkpoint);
    const ours = perplexity(b.module, lmLoss(b.module, b.weights), tok, TEXT, "text");
    const lp = await tokenLogProbs(gguf(kind), tok.encode(TEXT, { bos: true, eos: false }));
    const theirs = -lp.reduce((a, x) => a + x, 0) / lp.length;
    expect(lp).toHaveLength(ours.tokens - 1);
    expect(Math.abs(ours.nll - theirs) / theirs).toBeLessThan(tol);
  }, 60_000);
});
