/**
 * llama.cpp as an independent reference for qzo's own inference, for tests only.
 *
 * It drives the real llama.cpp through node-llama-cpp (a devDependency), using only the prebuilt
 * linux-x64 CPU binary that npm installs from the registry: it never downloads or compiles llama.cpp
 * (`build: "never"`, `skipDownload: true`), never uses a GPU (`gpu: false`), and runs on one thread
 * by default (see LLAMA_CPP_THREADS).
 *
 * Each GGUF file is loaded once and cached with one context and one sequence; calls on the same model
 * are serialised, and every call starts from an empty KV cache. Call `disposeLlamaCpp()` in `afterAll`
 * (it also runs by itself before the process exits).
 *
 * Conventions, as in llama.cpp:
 * - tokenization adds llama.cpp's SentencePiece space prefix ("Once" becomes "▁Once"), parses special
 *   token text such as "<s>", and adds BOS when the model's `tokenizer.ggml.add_bos_token` (default
 *   true for SPM/Llama vocabularies) says so, exactly like `llama_tokenize(..., add_special=true,
 *   parse_special=true)` in `llama-simple`;
 * - generation is greedy (llama.cpp's greedy sampler: temperature 0, no penalties) and stops early
 *   at an end-of-generation token;
 * - log-probabilities are a log-softmax, in float64, of llama.cpp's raw float32 logits over the whole
 *   vocabulary. llama.cpp keeps its KV cache in F16 by default, so its logits differ from a pure F32
 *   implementation by rounding noise (about 1e-3 relative).
 *
 * Usage in a test:
 *   const status = await llamaCppStatus();
 *   if (!status.available) console.warn(`skipping llama.cpp reference tests: ${status.reason}`);
 *   describe.skipIf(!status.available)("...", () => { ... });
 */
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type {
  ControlledEvaluateInputItem,
  Llama,
  LlamaContext,
  LlamaContextSequence,
  LlamaModel,
  Token,
} from "node-llama-cpp";

/** `<repo root>/../shared/models`: the shared test models (see PROVENANCE.md there). */
export const sharedModelsDir = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../shared/models",
);

/**
 * Threads for llama.cpp (env QZO_LLAMA_CPP_THREADS, default 1). On a 2-core machine two ggml threads
 * compete with Node's own thread and make token-by-token generation up to 100x slower.
 */
export const LLAMA_CPP_THREADS = Math.max(1, Number.parseInt(process.env["QZO_LLAMA_CPP_THREADS"] ?? "1", 10) || 1);

/** Smallest context created (llama.cpp rounds context sizes up to a multiple of 256 anyway). */
const MIN_CONTEXT = 256;

export type LlamaCppStatus =
  | {
      available: true;
      /** node-llama-cpp's version. */
      bindingVersion: string;
      /** The llama.cpp release the binary was built from. */
      llamaCppRelease: string;
      /** "prebuilt" (from @node-llama-cpp/linux-x64) or "localBuild". */
      buildType: string;
    }
  | { available: false; reason: string };

type NodeLlamaCpp = typeof import("node-llama-cpp");

let statusPromise: Promise<{ status: LlamaCppStatus; llama?: Llama; lib?: NodeLlamaCpp }> | undefined;

function loadLlama(): Promise<{ status: LlamaCppStatus; llama?: Llama; lib?: NodeLlamaCpp }> {
  statusPromise ??= (async () => {
    // Read by node-llama-cpp when its module is first evaluated: never fetch llama.cpp sources.
    process.env["NODE_LLAMA_CPP_SKIP_DOWNLOAD"] ??= "true";
    let lib: NodeLlamaCpp;
    try {
      lib = await import("node-llama-cpp");
    } catch (err) {
      return { status: { available: false, reason: `cannot import node-llama-cpp: ${message(err)}` } };
    }
    try {
      const llama = await lib.getLlama({
        gpu: false,
        build: "never",
        skipDownload: true,
        usePrebuiltBinaries: true,
        progressLogs: false,
        maxThreads: LLAMA_CPP_THREADS,
        logLevel: lib.LlamaLogLevel.error,
      });
      process.once("beforeExit", () => void disposeLlamaCpp());
      const status: LlamaCppStatus = {
        available: true,
        bindingVersion: await lib.getModuleVersion(),
        llamaCppRelease: llama.llamaCppRelease.release,
        buildType: llama.buildType,
      };
      return { status, llama, lib };
    } catch (err) {
      return {
        status: {
          available: false,
          reason:
            `node-llama-cpp found no usable prebuilt CPU binary for ${process.platform}-${process.arch} ` +
            `(package.json installs only @node-llama-cpp/linux-x64, and llama.cpp is never built here): ${message(err)}`,
        },
      };
    }
  })();
  return statusPromise;
}

function message(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return text.split("\n")[0] ?? "";
}

/** Whether llama.cpp can be used here, and if not, why (for a skip message). */
export async function llamaCppStatus(): Promise<LlamaCppStatus> {
  return (await loadLlama()).status;
}

/** True when the llama.cpp binding loads (CPU only); `llamaCppStatus()` gives the reason when false. */
export async function llamaCppAvailable(): Promise<boolean> {
  return (await llamaCppStatus()).available;
}

async function requireLlama(): Promise<{ llama: Llama; lib: NodeLlamaCpp }> {
  const { status, llama, lib } = await loadLlama();
  if (!status.available || llama === undefined || lib === undefined) {
    throw new Error(`llama.cpp is not available: ${status.available ? "disposed" : status.reason}`);
  }
  return { llama, lib };
}

interface ModelEntry {
  model: LlamaModel;
  context?: LlamaContext;
  sequence?: LlamaContextSequence;
  /** Tail of the queue that serialises the use of this model's sequence. */
  tail: Promise<unknown>;
}

const models = new Map<string, Promise<ModelEntry>>();

function modelEntry(ggufPath: string): Promise<ModelEntry> {
  const key = path.resolve(ggufPath);
  let entry = models.get(key);
  if (entry === undefined) {
    entry = (async () => {
      const { llama, lib } = await requireLlama();
      await refuseVocabularyThatAborts(lib, key);
      const model = await llama.loadModel({ modelPath: key, gpuLayers: 0 });
      return { model, tail: Promise.resolve() };
    })();
    models.set(key, entry);
    entry.catch(() => models.delete(key));
  }
  return entry;
}

/**
 * This llama.cpp build (node-llama-cpp 3.22.1) throws std::out_of_range from llama_vocab::byte_to_token
 * while loading a SentencePiece ("llama") vocabulary that lacks the 256 byte-fallback tokens
 * "<0x00>".."<0xFF>" (e.g. shared/models/gguf/babyllama-tok105-*.gguf), on a worker thread where
 * nothing catches it: the whole process aborts. Refuse such files with an ordinary error instead.
 */
async function refuseVocabularyThatAborts(lib: NodeLlamaCpp, ggufPath: string): Promise<void> {
  const info = await lib.readGgufFileInfo(ggufPath, { readTensorInfo: false });
  const tokenizer = info.metadata.tokenizer?.ggml;
  if (tokenizer?.model !== "llama") return;
  const pieces = new Set<string>(tokenizer.tokens);
  for (let b = 0; b < 256; b++) {
    const piece = `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
    if (!pieces.has(piece)) {
      throw new Error(
        `llama.cpp would abort the process loading ${path.basename(ggufPath)}: its SentencePiece vocabulary ` +
          `has no byte-fallback token ${piece} (std::out_of_range in llama_vocab::byte_to_token)`,
      );
    }
  }
}

/** Runs fn on the model's sequence, alone, with a cleared KV cache holding at least `tokens` tokens. */
async function withSequence<T>(
  ggufPath: string,
  tokens: number,
  fn: (model: LlamaModel, sequence: LlamaContextSequence) => Promise<T>,
): Promise<T> {
  const entry = await modelEntry(ggufPath);
  const run = entry.tail.then(async () => {
    const needed = Math.max(MIN_CONTEXT, Math.ceil(tokens / 256) * 256);
    if (entry.context === undefined || entry.context.contextSize < tokens) {
      await entry.context?.dispose();
      entry.sequence = undefined;
      entry.context = undefined;
      // One batch holds the whole context, so a sequence is evaluated in a single llama_decode.
      entry.context = await entry.model.createContext({
        contextSize: needed,
        batchSize: needed,
        sequences: 1,
        threads: LLAMA_CPP_THREADS,
      });
      entry.sequence = entry.context.getSequence();
    }
    const sequence = entry.sequence!;
    await sequence.clearHistory();
    return fn(entry.model, sequence);
  });
  entry.tail = run.catch(() => undefined);
  return run;
}

export interface TokenizeOptions {
  /** Prepend BOS. Default: the model's add_bos flag (true for Llama/SPM), as llama.cpp's add_special does. */
  bos?: boolean;
  /** Append EOS. Default: the model's add_eos flag (false for Llama/SPM). */
  eos?: boolean;
  /** Parse special-token text such as "<s>" into special tokens (llama-simple does). Default true. */
  special?: boolean;
}

function tokenizeWith(model: LlamaModel, text: string, opts: TokenizeOptions): number[] {
  const ids: number[] = [...model.tokenize(text, opts.special ?? true)];
  if (opts.bos ?? model.tokens.shouldPrependBosToken) {
    const bos = model.tokens.bos;
    if (bos === null) throw new Error("the model has no BOS token");
    ids.unshift(bos);
  }
  if (opts.eos ?? model.tokens.shouldAppendEosToken) {
    const eos = model.tokens.eos;
    if (eos === null) throw new Error("the model has no EOS token");
    ids.push(eos);
  }
  return ids;
}

/** llama.cpp's tokenization of text (with the SentencePiece space prefix; BOS per `opts.bos`). */
export async function tokenize(ggufPath: string, text: string, opts: TokenizeOptions = {}): Promise<number[]> {
  const { model } = await modelEntry(ggufPath);
  return tokenizeWith(model, text, opts);
}

/**
 * llama.cpp's text for `tokens`, as printed after `previous` (so a leading "▁" becomes a space, as in
 * llama-simple's output; special tokens are rendered as their text).
 */
export async function detokenize(ggufPath: string, tokens: readonly number[], previous: readonly number[] = []): Promise<string> {
  const { model } = await modelEntry(ggufPath);
  return model.detokenize(tokens as Token[], true, previous as Token[]);
}

export interface GreedyContinuation {
  /** The generated text only (not the prompt), as llama-simple prints it after the prompt. */
  text: string;
  /** The generated token ids (at most nTokens; fewer if an end-of-generation token came first). */
  tokens: number[];
  /** The prompt's tokens as evaluated, BOS included. */
  promptTokens: number[];
}

/**
 * Greedy generation of nTokens tokens after prompt, like `llama-simple -n nTokens "prompt"`: the prompt
 * is tokenized with BOS and the space prefix, evaluated in one batch, and each next token is llama.cpp's
 * greedy (argmax) choice; generation stops before an end-of-generation token.
 */
export async function greedyContinuation(ggufPath: string, prompt: string, nTokens: number): Promise<GreedyContinuation> {
  const { model } = await modelEntry(ggufPath);
  const promptTokens = tokenizeWith(model, prompt, {});
  return withSequence(ggufPath, promptTokens.length + nTokens, async (m, sequence) => {
    const tokens: number[] = [];
    if (nTokens > 0) {
      for await (const token of sequence.evaluate(promptTokens as Token[], { temperature: 0 })) {
        tokens.push(token);
        if (tokens.length >= nTokens) break;
      }
    }
    const text = m.detokenize(tokens as Token[], true, promptTokens as Token[]);
    return { text, tokens, promptTokens };
  });
}

/**
 * Evaluates tokens in one batch, asking llama.cpp for the logits after each position in `positions`,
 * and hands each position's full log-softmax distribution (indexed by token id) to `use`.
 */
async function evaluateDistributions(
  ggufPath: string,
  tokens: readonly number[],
  positions: (i: number) => boolean,
  use: (i: number, logProbs: Float64Array) => void,
): Promise<void> {
  if (tokens.length === 0) return;
  await withSequence(ggufPath, tokens.length, async (model, sequence) => {
    const input: ControlledEvaluateInputItem[] = tokens.map((t, i) =>
      positions(i) ? [t as Token, { generateNext: { logits: true } }] : (t as Token),
    );
    const results = await sequence.controlledEvaluate(input);
    for (let i = 0; i < tokens.length; i++) {
      if (!positions(i)) continue;
      const logits = results[i]?.next.logits;
      if (logits === undefined) throw new Error(`llama.cpp returned no logits for position ${i}`);
      use(i, logSoftmax(logits, model));
    }
  });
}

function logSoftmax(logits: ReadonlyMap<Token, number>, model: LlamaModel): Float64Array {
  let vocab = 0;
  for (const t of logits.keys()) vocab = Math.max(vocab, t + 1);
  if (logits.size !== vocab) {
    throw new Error(`llama.cpp returned ${logits.size} logits for a vocabulary of at least ${vocab} (${model.filename})`);
  }
  const out = new Float64Array(vocab);
  let max = -Infinity;
  for (const [t, v] of logits) {
    out[t] = v;
    if (v > max) max = v;
  }
  let sum = 0;
  for (let t = 0; t < vocab; t++) sum += Math.exp(out[t]! - max);
  const lse = max + Math.log(sum);
  for (let t = 0; t < vocab; t++) out[t] = out[t]! - lse;
  return out;
}

/**
 * For tokens t0 t1 ... t(n-1) (t0 normally BOS), the natural-log probability llama.cpp assigns to each
 * of t1 ... t(n-1) given the tokens before it: n-1 numbers, from a full softmax over the vocabulary of
 * the logits at each position, all positions evaluated in one batch. Mean NLL = -mean(result);
 * perplexity = exp(mean NLL).
 */
export async function tokenLogProbs(ggufPath: string, tokens: readonly number[]): Promise<number[]> {
  const out = new Array<number>(Math.max(0, tokens.length - 1));
  await evaluateDistributions(
    ggufPath,
    tokens,
    (i) => i < tokens.length - 1,
    (i, lp) => {
      const next = tokens[i + 1]!;
      if (next >= lp.length) throw new Error(`token ${next} is outside the vocabulary of ${lp.length}`);
      out[i] = lp[next]!;
    },
  );
  return out;
}

/**
 * The full next-token distributions: for each i in 0..n-1, the log-softmax over the vocabulary
 * (Float64Array indexed by token id) after tokens[0..i], all evaluated in one batch. Entry i scores
 * tokens[i+1]; the last entry is the distribution of the token that would follow the sequence.
 */
export async function nextTokenLogProbs(ggufPath: string, tokens: readonly number[]): Promise<Float64Array[]> {
  const out: Float64Array[] = [];
  await evaluateDistributions(ggufPath, tokens, () => true, (i, lp) => {
    out[i] = lp;
  });
  return out;
}

/** Index of the largest entry (the first one on ties, as llama.cpp's greedy sampler). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Frees every cached model and the llama.cpp binding; later calls load them again. */
export async function disposeLlamaCpp(): Promise<void> {
  const entries = [...models.values()];
  models.clear();
  for (const p of entries) {
    const entry = await p.catch(() => undefined);
    if (entry === undefined) continue;
    await entry.tail;
    await entry.context?.dispose();
    await entry.model.dispose();
  }
  const loaded = statusPromise;
  statusPromise = undefined;
  const llama = (await loaded)?.llama;
  if (llama !== undefined && !llama.disposed) await llama.dispose();
}
