/**
 * llama.cpp forward throughput for the benchmarks, through node-llama-cpp (an
 * optional package: a development dependency of qzo, absent from an installed
 * qzo unless the user adds it): the prebuilt linux-x64 CPU binary only (never
 * downloaded or built here, no GPU). The model is loaded once with one context whose batch
 * holds the whole sequence, warmed up, and then only the evaluation of the
 * sequence in one batch is timed (the KV cache is cleared, untimed, before
 * each evaluation).
 */
import { basename } from "node:path";
import { performance } from "node:perf_hooks";
import type { ControlledEvaluateInputItem, Token } from "node-llama-cpp";

export interface LlamaCppTiming {
  available: true;
  release: string;
  bindingVersion: string;
  threads: number;
  /** Per evaluation of the whole sequence, logits requested at every position (what our forward computes). */
  allLogitsMs: number[];
  /** Per evaluation of the whole sequence with no logits returned (llama.cpp then skips most of the LM head). */
  noLogitsMs: number[];
}

export type LlamaCppResult = LlamaCppTiming | { available: false; reason: string };

function message(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return text.split("\n")[0] ?? "";
}

/** Times llama.cpp evaluating `tokens` in one batch, `reps` times after `warmup` untimed runs. */
export async function timeLlamaCppForward(gguf: string, tokens: readonly number[], threads: number, warmup: number, reps: number): Promise<LlamaCppResult> {
  process.env["NODE_LLAMA_CPP_SKIP_DOWNLOAD"] ??= "true";
  let lib: typeof import("node-llama-cpp");
  try {
    lib = await import("node-llama-cpp");
  } catch (err) {
    return { available: false, reason: `node-llama-cpp is not installed (npm install node-llama-cpp to compare with llama.cpp): ${message(err)}` };
  }
  // This llama.cpp build aborts the whole process (uncaught std::out_of_range in byte_to_token) on a
  // SentencePiece vocabulary without the 256 byte-fallback tokens: refuse such a file instead.
  try {
    const info = await lib.readGgufFileInfo(gguf, { readTensorInfo: false });
    const tok = info.metadata.tokenizer?.ggml;
    if (tok?.model === "llama") {
      const pieces = new Set<string>(tok.tokens);
      for (let b = 0; b < 256; b++) {
        const piece = `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
        if (!pieces.has(piece)) {
          return { available: false, reason: `llama.cpp (node-llama-cpp ${await lib.getModuleVersion()}) would abort loading ${basename(gguf)}: its SentencePiece vocabulary has no byte-fallback token ${piece}` };
        }
      }
    }
  } catch (err) {
    return { available: false, reason: `cannot read ${basename(gguf)}'s metadata: ${message(err)}` };
  }
  let llama: Awaited<ReturnType<typeof lib.getLlama>>;
  try {
    llama = await lib.getLlama({ gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, progressLogs: false, maxThreads: threads, logLevel: lib.LlamaLogLevel.error });
  } catch (err) {
    return { available: false, reason: `no usable prebuilt llama.cpp CPU binary: ${message(err)}` };
  }
  try {
    const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
    const size = Math.max(256, Math.ceil(tokens.length / 256) * 256);
    const context = await model.createContext({ contextSize: size, batchSize: size, sequences: 1, threads });
    const sequence = context.getSequence();
    const all: ControlledEvaluateInputItem[] = tokens.map((t) => [t as Token, { generateNext: { logits: true } }]);
    const evalAll = async () => {
      await sequence.clearHistory();
      const t0 = performance.now();
      const res = await sequence.controlledEvaluate(all);
      const ms = performance.now() - t0;
      if (res.length !== tokens.length || res[tokens.length - 1]?.next.logits === undefined) throw new Error("llama.cpp returned no logits");
      return ms;
    };
    const evalNone = async () => {
      await sequence.clearHistory();
      const t0 = performance.now();
      await sequence.evaluateWithoutGeneratingNewTokens(tokens as Token[]);
      return performance.now() - t0;
    };
    for (let i = 0; i < warmup; i++) {
      await evalAll();
      await evalNone();
    }
    const allLogitsMs: number[] = [];
    const noLogitsMs: number[] = [];
    for (let i = 0; i < reps; i++) {
      allLogitsMs.push(await evalAll());
      noLogitsMs.push(await evalNone());
    }
    await context.dispose();
    await model.dispose();
    return { available: true, release: llama.llamaCppRelease.release, bindingVersion: await lib.getModuleVersion(), threads, allLogitsMs, noLogitsMs };
  } catch (err) {
    return { available: false, reason: `llama.cpp failed on ${basename(gguf)}: ${message(err)}` };
  } finally {
    await llama.dispose();
  }
}
