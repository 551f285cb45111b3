/**
 * Proves the llama.cpp reference harness (./llama-cpp.ts) against the outputs recorded in
 * shared/models/PROVENANCE.md, before other tests use it as the reference for qzo's inference.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  argmax,
  disposeLlamaCpp,
  greedyContinuation,
  llamaCppStatus,
  nextTokenLogProbs,
  tokenize,
  tokenLogProbs,
} from "./llama-cpp.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../..");
const MODELS = path.resolve(repoRoot, "../shared/models");
const GGUF = {
  f32: path.join(MODELS, "gguf/stories260K-f32.gguf"),
  q8_0: path.join(MODELS, "gguf/stories260K-q8_0.gguf"),
  q4_0: path.join(MODELS, "gguf/stories260K-q4_0.gguf"),
};
const BABY_F32 = path.join(MODELS, "gguf/babyllama-tok105-f32.gguf");

const PROMPT = "Once upon a time";
/** llama.cpp `llama-simple -n 40 "Once upon a time"` on stories260K-q4_0.gguf (PROVENANCE.md). */
const Q4_0_CONTINUATION =
  ", there was a little girl named Lily. She loved to play outside in the sun. One day, she went to the park with her mom";
/** llama2.c `run stories260K.bin -z tok512.bin -t 0.0` (PROVENANCE.md), which llama.cpp reproduces on F32 and Q8_0. */
const LLAMA2C_TEXT =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. " +
  "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n" +
  `Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do.`;

const status = await llamaCppStatus();
/** The prebuilt binary in package.json is linux-x64 only; there (this machine, CI) it must load. */
const mustBeAvailable = process.platform === "linux" && process.arch === "x64";
if (!status.available && !mustBeAvailable) {
  console.warn(`skipping llama.cpp reference tests: ${status.reason}`);
}

afterAll(async () => {
  await disposeLlamaCpp();
});

describe("llama.cpp binding", () => {
  it.runIf(mustBeAvailable)("loads the prebuilt CPU binary (linux-x64)", () => {
    expect(status.available ? "available" : status.reason).toBe("available");
    if (status.available) {
      expect(status.buildType).toBe("prebuilt");
      expect(status.bindingVersion).toBe("3.22.1");
    }
  });

  it("installs no GPU or foreign-platform prebuilt (package.json overrides them with an empty package)", () => {
    const scopeDir = path.join(repoRoot, "node_modules/@node-llama-cpp");
    for (const name of fs.readdirSync(scopeDir)) {
      const pkg = JSON.parse(fs.readFileSync(path.join(scopeDir, name, "package.json"), "utf8")) as { name: string };
      if (name === "linux-x64") expect(pkg.name).toBe("@node-llama-cpp/linux-x64");
      else expect(pkg.name, name).toBe("@favware/skip-dependency");
    }
  });
});

describe.skipIf(!status.available)("llama.cpp reference on stories260K", () => {
  it("tokenizes like llama.cpp: SentencePiece space prefix, BOS only when asked, <s> parsed as special", async () => {
    const withBos = await tokenize(GGUF.f32, PROMPT, { bos: true });
    const without = await tokenize(GGUF.f32, PROMPT, { bos: false });
    expect(withBos).toEqual([1, ...without]);
    // Four pieces: "▁Once" "▁upon" "▁a" "▁time" (the first one gets llama.cpp's space prefix).
    expect(without).toEqual([403, 407, 261, 378]);
    expect(await tokenize(GGUF.f32, PROMPT)).toEqual(withBos); // default: the model's add_bos (true)
    expect(await tokenize(GGUF.q4_0, PROMPT)).toEqual(withBos);
    expect(await tokenize(GGUF.f32, `<s>${PROMPT}`, { bos: false })).toEqual(withBos);
    expect((await tokenize(GGUF.f32, "<s>", { bos: false, special: false })).includes(1)).toBe(false);
  });

  it('matches `llama-simple -n 40 "Once upon a time"` on Q4_0', async () => {
    const out = await greedyContinuation(GGUF.q4_0, PROMPT, 40);
    expect(out.promptTokens).toEqual([1, 403, 407, 261, 378]);
    expect(out.tokens).toHaveLength(40);
    expect(out.text).toBe(Q4_0_CONTINUATION);
  });

  it.each(["f32", "q8_0"] as const)("continues exactly as llama2.c does on %s", async (kind) => {
    const out40 = await greedyContinuation(GGUF[kind], PROMPT, 40);
    expect(out40.tokens).toHaveLength(40);
    expect(out40.text).toBe(", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.");
    const out = await greedyContinuation(GGUF[kind], PROMPT, 100);
    expect(out.tokens.slice(0, 40)).toEqual(out40.tokens);
    expect(LLAMA2C_TEXT.startsWith(PROMPT + out.text)).toBe(true);
    expect((PROMPT + out.text).length).toBeGreaterThan(LLAMA2C_TEXT.length - 20);
  });

  it.each(["f32", "q8_0", "q4_0"] as const)(
    "gives every greedy token the highest log-probability over the vocabulary (%s)",
    async (kind) => {
      const { promptTokens, tokens } = await greedyContinuation(GGUF[kind], PROMPT, 40);
      const sequence = [...promptTokens, ...tokens];
      const dists = await nextTokenLogProbs(GGUF[kind], sequence);
      const lps = await tokenLogProbs(GGUF[kind], sequence);
      expect(dists).toHaveLength(sequence.length);
      expect(lps).toHaveLength(sequence.length - 1);
      for (let i = 0; i < dists.length; i++) {
        const d = dists[i]!;
        expect(d).toHaveLength(512);
        let total = 0;
        for (const lp of d) total += Math.exp(lp);
        expect(total).toBeCloseTo(1, 9);
        if (i < lps.length) expect(lps[i]).toBe(d[sequence[i + 1]!]);
      }
      for (let i = promptTokens.length - 1; i < sequence.length - 1; i++) {
        const d = dists[i]!;
        expect(argmax(d), `position ${i}`).toBe(sequence[i + 1]);
        expect(lps[i]).toBe(Math.max(...d));
      }
    },
  );

  it("scores the F32 greedy continuation with a finite, low mean NLL", async () => {
    const { promptTokens, tokens } = await greedyContinuation(GGUF.f32, PROMPT, 40);
    const lps = await tokenLogProbs(GGUF.f32, [...promptTokens, ...tokens]);
    const continuation = lps.slice(promptTokens.length - 1);
    expect(continuation).toHaveLength(40);
    const meanNll = -continuation.reduce((a, b) => a + b, 0) / continuation.length;
    expect(Number.isFinite(meanNll)).toBe(true);
    // Measured 0.350 nats (perplexity 1.42).
    expect(meanNll).toBeGreaterThan(0.2);
    expect(meanNll).toBeLessThan(0.5);
    // The same tokens in reverse order are text the model does not expect.
    const reversed = await tokenLogProbs(GGUF.f32, [...promptTokens, ...[...tokens].reverse()]);
    const reversedNll = -reversed.slice(promptTokens.length - 1).reduce((a, b) => a + b, 0) / tokens.length;
    console.log(`stories260K-f32 mean NLL: greedy continuation ${meanNll.toFixed(4)}, reversed ${reversedNll.toFixed(4)}`);
    expect(reversedNll).toBeGreaterThan(meanNll + 2);
  });

  it("refuses a vocabulary that would abort llama.cpp instead of crashing the process", async () => {
    await expect(tokenize(BABY_F32, PROMPT)).rejects.toThrow(/byte-fallback token <0x00>/);
  });
});
