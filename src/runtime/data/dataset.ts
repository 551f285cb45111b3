/**
 * Training and evaluation data for the QZO trainer: loading, batching and the seeded example order.
 *
 * File kinds (decided by content):
 * - JSON lines: a file named `*.jsonl`, or any file whose first non-blank line is a JSON object with a
 *   "text" or "prompt" key. Each non-blank line is one JSON object, all of one kind:
 *     {"text": string}                                        language modelling
 *     {"prompt": string, "candidates": string[], "label": int} classification (MeZO protocol)
 *   Other keys are ignored.
 * - Anything else is plain text: documents are separated by blank lines; a file with no blank line
 *   holds one document per line.
 *
 * Language modelling: each document is tokenized with BOS (no EOS) and cut into consecutive windows of
 * at most seqLen tokens; a window after the first starts with the continuation (no new BOS). Windows of
 * fewer than 2 tokens are dropped (they predict nothing).
 *
 * Classification: each candidate k gives one sequence, the tokens of the text `prompt + candidates[k]`
 * (plain concatenation: put the separating space in the prompt or the candidate, as the task's
 * template does) with BOS. The candidate's ("answer") tokens are those after the longest common prefix
 * of that sequence and the prompt's own tokens, so a token merged across the boundary counts as an
 * answer token. A sequence longer than seqLen keeps BOS and loses tokens from the start of the prompt;
 * a candidate that leaves no room for at least one prompt token after BOS is an error.
 *
 * - Distillation data (a safetensors file written by `qzo distill`; see distill.ts): token windows with
 *   a teacher's top-K next-token distribution at each position.
 *
 * Batches (makeBatch) feed the spec's losses:
 *   lm(tokens: i32[B, T], mask: f32[B, T])                       mask = 1 at t >= 1 on real tokens
 *   distill(tokens, mask, teacher_ids: i32[B, T, K], teacher_probs: f32[B, T, K])  the lm batch plus the
 *                                                                teacher's buckets (id 0, probability 0 as padding)
 *   classify(tokens: i32[E*C, T], mask: f32[E*C, T], label: i32[E])  row e*C + k is candidate k of
 *                                                                example e; mask = 1 on answer tokens
 * T is the longest sequence of the batch; shorter rows are padded with token 0 and mask 0.
 *
 * Order (batchOrder): the examples of epoch e are a Fisher-Yates shuffle driven by Philox
 * (src/runtime/rng/philox.ts) keyed by the run seed; the epochs' permutations are concatenated into one
 * stream and step s takes positions [s*B, (s+1)*B) of it. So the batches of a step depend only on
 * (n, B, seed, step), and a resumed run sees the same batches.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { QzoError } from "../../util/errors.js";
import { philox4x32 } from "../rng/philox.js";
import type { Tokenizer } from "../tokenizer/index.js";
import type { Batch } from "../backends/backend.js";
import { looksLikeSafetensors, readDistillData, type DistillDataset } from "./distill.js";

/** Language-modelling data: token windows (each 2..seqLen tokens; a document's first starts with BOS). */
export interface LmDataset {
  kind: "lm";
  file: string;
  windows: Int32Array[];
}

/** One classification example: one sequence per candidate. */
export interface ClassifyExample {
  /** prompt + candidate k, with BOS, at most seqLen tokens. */
  sequences: Int32Array[];
  /** For each sequence, the index of its first answer (candidate) token; >= 1. */
  answerStart: number[];
  /** The gold candidate, 0 <= label < sequences.length. */
  label: number;
  /** 1-based line of the example in its file. */
  line: number;
}

export interface ClassifyDataset {
  kind: "classify";
  file: string;
  examples: ClassifyExample[];
}

export type Dataset = LmDataset | ClassifyDataset | DistillDataset;

/** Number of examples (windows or classification examples). */
export function datasetSize(ds: Dataset): number {
  return ds.kind === "classify" ? ds.examples.length : ds.windows.length;
}

interface Line {
  text: string;
  /** 1-based. */
  line: number;
}

/** The longest line, and the longest document (blank-line separated lines), a data file may hold. */
export const MAX_LINE_BYTES = 1 << 20;
export const MAX_DOCUMENT_BYTES = 1 << 20;

/**
 * The lines of a text file, read in chunks: a line longer than MAX_LINE_BYTES is refused as soon as
 * it is seen, before it is decoded or kept, so a huge line costs neither memory nor time.
 */
function readLines(file: string): Line[] {
  let fd: number;
  try {
    fd = openSync(file, "r");
    if (fstatSync(fd).isDirectory()) throw Object.assign(new Error("directory"), { code: "EISDIR" });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "file not found" : code === "EISDIR" ? "is a directory, expected a data file" : `cannot read: ${code ?? String(e)}`;
    throw new QzoError(`${file}: ${why}`);
  }
  const lines: Line[] = [];
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const chunk = Buffer.alloc(1 << 20);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let offset = 0;
  const push = (bytes: Buffer) => {
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      throw new QzoError(`${file}:${lines.length + 1}: not valid UTF-8: expected a UTF-8 text or JSON lines file`);
    }
    if (lines.length === 0 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    lines.push({ text: text.endsWith("\r") ? text.slice(0, -1) : text, line: lines.length + 1 });
  };
  try {
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, offset);
      if (n === 0) break;
      offset += n;
      let start = 0;
      for (let nl = chunk.indexOf(10, 0); nl >= 0 && nl < n; nl = chunk.indexOf(10, start)) {
        if (pendingBytes + nl - start > MAX_LINE_BYTES) break;
        push(Buffer.concat([...pending, chunk.subarray(start, nl)]));
        pending = [];
        pendingBytes = 0;
        start = nl + 1;
      }
      pending.push(Buffer.from(chunk.subarray(start, n)));
      pendingBytes += n - start;
      if (pendingBytes > MAX_LINE_BYTES) {
        throw new QzoError(`${file}:${lines.length + 1}: a line longer than ${MAX_LINE_BYTES} bytes: expected text lines of at most 1 MiB (one document per line or blank-line separated paragraphs)`);
      }
    }
  } finally {
    closeSync(fd);
  }
  push(Buffer.concat(pending));
  return lines;
}

function isBlank(s: string): boolean {
  return s.trim() === "";
}

function looksLikeJsonLines(lines: Line[]): boolean {
  const first = lines.find((l) => !isBlank(l.text));
  if (!first || !first.text.trimStart().startsWith("{")) return false;
  try {
    const v: unknown = JSON.parse(first.text);
    return typeof v === "object" && v !== null && !Array.isArray(v) && ("text" in v || "prompt" in v);
  } catch {
    return false;
  }
}

function checkSeqLen(file: string, seqLen: number): void {
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new QzoError(`${file}: sequence length ${seqLen}: expected an integer of at least 2`, 2);
}

/** Reads a dataset file (see the module comment for the formats); `context` bounds the windows of distillation data. */
export function loadDataset(file: string, tok: Tokenizer, seqLen: number, context?: number): Dataset {
  checkSeqLen(file, seqLen);
  if (looksLikeSafetensors(file)) return readDistillData(file, tok, context);
  const lines = readLines(file);
  if (lines.every((l) => isBlank(l.text))) {
    throw new QzoError(`${file}: empty file: expected text documents or JSON lines ({"text": ...} or {"prompt", "candidates", "label"})`);
  }
  if (file.toLowerCase().endsWith(".jsonl") || looksLikeJsonLines(lines)) return loadJsonLines(file, lines, tok, seqLen);
  return lmDataset(file, plainDocuments(file, lines), tok, seqLen);
}

/** Documents of a plain text file: blank-line separated, or one per line when there is no blank line. */
function plainDocuments(file: string, lines: Line[]): Line[] {
  // Trailing blank lines (a final newline) do not count as separators.
  let end = lines.length;
  while (end > 0 && isBlank(lines[end - 1]!.text)) end--;
  let start = 0;
  while (start < end && isBlank(lines[start]!.text)) start++;
  const body = lines.slice(start, end);
  const hasBlank = body.some((l) => isBlank(l.text));
  if (!hasBlank) return body;
  const docs: Line[] = [];
  let cur: Line[] = [];
  const flush = () => {
    if (cur.length) docs.push({ text: cur.map((l) => l.text).join("\n"), line: cur[0]!.line });
    cur = [];
  };
  let bytes = 0;
  for (const l of body) {
    if (isBlank(l.text)) {
      flush();
      bytes = 0;
      continue;
    }
    cur.push(l);
    bytes += Buffer.byteLength(l.text) + 1;
    if (bytes > MAX_DOCUMENT_BYTES) {
      throw new QzoError(`${file}:${cur[0]!.line}: a document (lines ${cur[0]!.line} to ${l.line}) longer than ${MAX_DOCUMENT_BYTES} bytes: expected documents of at most 1 MiB; separate them with blank lines`);
    }
  }
  flush();
  return docs;
}

function lmDataset(file: string, docs: Line[], tok: Tokenizer, seqLen: number): LmDataset {
  const windows: Int32Array[] = [];
  for (const d of docs) {
    const ids = encode(file, d.line, tok, d.text, true);
    for (let s = 0; s < ids.length; s += seqLen) {
      const w = ids.slice(s, s + seqLen);
      if (w.length >= 2) windows.push(Int32Array.from(w));
    }
  }
  if (windows.length === 0) {
    throw new QzoError(`${file}: no document gives a window of at least 2 tokens (BOS and one more): expected some non-empty text`);
  }
  return { kind: "lm", file, windows };
}

function encode(file: string, line: number, tok: Tokenizer, text: string, bos: boolean): number[] {
  const ids = tok.encode(text, { bos, eos: false });
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= tok.vocabSize) {
      throw new QzoError(`${file}:${line}: the tokenizer produced id ${id}, outside its vocabulary of ${tok.vocabSize}`);
    }
  }
  return ids;
}

type Kind = "lm" | "classify";

function loadJsonLines(file: string, lines: Line[], tok: Tokenizer, seqLen: number): Dataset {
  let kind: Kind | undefined;
  let kindLine = 0;
  const docs: Line[] = [];
  const examples: ClassifyExample[] = [];
  for (const l of lines) {
    if (isBlank(l.text)) continue;
    const at = `${file}:${l.line}`;
    let v: unknown;
    try {
      v = JSON.parse(l.text);
    } catch (e) {
      const m = /position (\d+)/.exec(String((e as Error).message));
      const col = m ? `, column ${Number(m[1]) + 1}` : "";
      throw new QzoError(`${at}: bad JSON${col}: expected one JSON object per line`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new QzoError(`${at}: expected a JSON object ({"text": ...} or {"prompt", "candidates", "label"}), found ${Array.isArray(v) ? "an array" : v === null ? "null" : typeof v}`);
    }
    const o = v as Record<string, unknown>;
    const k: Kind | undefined = "prompt" in o || "candidates" in o || "label" in o ? "classify" : "text" in o ? "lm" : undefined;
    if (!k) throw new QzoError(`${at}: missing field: expected "text" (language modelling) or "prompt", "candidates", "label" (classification)`);
    if (kind === undefined) {
      kind = k;
      kindLine = l.line;
    } else if (kind !== k) {
      const what = (x: Kind) => (x === "lm" ? `a "text" line` : `a "prompt" (classification) line`);
      throw new QzoError(`${at}: mixed kinds: this is ${what(k)}, but line ${kindLine} is ${what(kind)}; expected one kind per file`);
    }
    if (k === "lm") {
      if (typeof o["text"] !== "string") throw new QzoError(`${at}: field "text" is ${describe(o["text"])}: expected a string`);
      docs.push({ text: o["text"], line: l.line });
    } else {
      examples.push(classifyExample(at, l.line, o, tok, seqLen));
    }
  }
  if (kind === "lm") return lmDataset(file, docs, tok, seqLen);
  return { kind: "classify", file, examples };
}

function describe(v: unknown): string {
  if (v === undefined) return "missing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return `a ${typeof v}`;
}

function classifyExample(at: string, line: number, o: Record<string, unknown>, tok: Tokenizer, seqLen: number): ClassifyExample {
  const prompt = o["prompt"];
  if (typeof prompt !== "string") throw new QzoError(`${at}: field "prompt" is ${describe(prompt)}: expected a string`);
  const cands = o["candidates"];
  if (!Array.isArray(cands)) throw new QzoError(`${at}: field "candidates" is ${describe(cands)}: expected an array of at least 2 strings`);
  if (cands.length < 2) throw new QzoError(`${at}: field "candidates" has ${cands.length} entr${cands.length === 1 ? "y" : "ies"}: expected at least 2 strings`);
  cands.forEach((c, i) => {
    if (typeof c !== "string") throw new QzoError(`${at}: candidates[${i}] is ${describe(c)}: expected a string`);
    if (c === "") throw new QzoError(`${at}: candidates[${i}] is empty: expected some text`);
  });
  const label = o["label"];
  if (typeof label !== "number" || !Number.isInteger(label)) {
    throw new QzoError(`${at}: field "label" is ${typeof label === "number" ? label : describe(label)}: expected an integer candidate index`);
  }
  if (label < 0 || label >= cands.length) {
    throw new QzoError(`${at}: label ${label} is out of range: expected 0..${cands.length - 1} (${cands.length} candidates)`);
  }
  const p = encode(at, line, tok, prompt, true);
  const sequences: Int32Array[] = [];
  const answerStart: number[] = [];
  (cands as string[]).forEach((c, k) => {
    let ids = encode(at, line, tok, prompt + c, true);
    let start = 0;
    while (start < p.length && start < ids.length && ids[start] === p[start]) start++;
    if (start === ids.length) throw new QzoError(`${at}: candidates[${k}] ("${c}") adds no token to the prompt: expected some answer text`);
    // The answer's tokens must be predicted from something: never start at BOS (index 0).
    if (start === 0) start = 1;
    if (ids.length > seqLen) {
      const answer = ids.length - start;
      const keepPrompt = seqLen - answer; // BOS plus prompt tokens kept
      if (keepPrompt < 2) {
        throw new QzoError(`${at}: candidates[${k}] has ${answer} tokens: with the prompt it needs more than the sequence length ${seqLen}`);
      }
      const drop = ids.length - seqLen;
      ids = [ids[0]!, ...ids.slice(1 + drop)];
      start -= drop;
    }
    sequences.push(Int32Array.from(ids));
    answerStart.push(start);
  });
  return { sequences, answerStart, label, line };
}

/**
 * The batch of the given examples. LM: tokens i32[B, T], mask f32[B, T]. Classification: tokens and
 * mask [E*C, T], label i32[E]; every example must have the same number of candidates C.
 */
export function makeBatch(ds: Dataset, indices: readonly number[]): Batch {
  const n = datasetSize(ds);
  if (indices.length === 0) throw new QzoError(`${ds.file}: an empty batch: expected at least one example index`);
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new QzoError(`${ds.file}: example index ${i} is out of range: expected 0..${n - 1}`);
  }
  if (ds.kind !== "classify") {
    const rows = indices.map((i) => ds.windows[i]!);
    const { tokens, mask, T } = pad(rows, rows.map(() => 1));
    const lm: Batch = { tokens: { shape: [rows.length, T], data: tokens }, mask: { shape: [rows.length, T], data: mask } };
    if (ds.kind === "lm") return lm;
    const K = ds.K;
    const ids = new Int32Array(rows.length * T * K);
    const probs = new Float32Array(rows.length * T * K);
    indices.forEach((i, b) => {
      ids.set(ds.ids[i]!, b * T * K);
      probs.set(ds.probs[i]!, b * T * K);
    });
    return { ...lm, teacher_ids: { shape: [rows.length, T, K], data: ids }, teacher_probs: { shape: [rows.length, T, K], data: probs } };
  }
  const ex = indices.map((i) => ds.examples[i]!);
  const C = ex[0]!.sequences.length;
  for (const e of ex) {
    if (e.sequences.length !== C) {
      throw new QzoError(
        `${ds.file}:${e.line}: this example has ${e.sequences.length} candidates, but the one on line ${ex[0]!.line} in the same batch has ${C}: expected the same number in a batch`,
      );
    }
  }
  const rows = ex.flatMap((e) => e.sequences);
  const starts = ex.flatMap((e) => e.answerStart);
  const { tokens, mask, T } = pad(rows, starts);
  const label = Int32Array.from(ex, (e) => e.label);
  return {
    tokens: { shape: [rows.length, T], data: tokens },
    mask: { shape: [rows.length, T], data: mask },
    label: { shape: [ex.length], data: label },
  };
}

/** Pads rows to the longest with 0; mask 1 from maskFrom[r] (>= 1) to the row's end. */
function pad(rows: Int32Array[], maskFrom: number[]): { tokens: Int32Array; mask: Float32Array; T: number } {
  const T = rows.reduce((m, r) => Math.max(m, r.length), 0);
  const tokens = new Int32Array(rows.length * T);
  const mask = new Float32Array(rows.length * T);
  rows.forEach((r, b) => {
    tokens.set(r, b * T);
    for (let t = Math.max(1, maskFrom[b]!); t < r.length; t++) mask[b * T + t] = 1;
  });
  return { tokens, mask, T };
}

/** Philox counter word c3 of the data-order stream (the direction stream uses 0x5A5A0001). */
export const DATA_ORDER_STREAM = 0x5a5a0da7;

const TWO_POW_32 = 4294967296;
const permCache = new Map<string, Uint32Array>();

function seedWords(seed: bigint | number): [number, number] {
  const s = typeof seed === "bigint" ? seed : Number.isSafeInteger(seed) && seed >= 0 ? BigInt(seed) : -1n;
  if (s < 0n || s >= 1n << 64n) throw new QzoError(`batch order: seed ${seed}: expected an integer in [0, 2^64)`, 2);
  return [Number(s & 0xffffffffn), Number(s >> 32n)];
}

/**
 * The permutation of epoch e: Fisher-Yates from the last position down; the swap partner of position
 * i is floor(u * (i + 1)) with u = (x0 + x1 * 2^32 (top 21 bits)) / 2^53 from
 * philox([i, e mod 2^32, floor(e / 2^32), DATA_ORDER_STREAM], [seedLo, seedHi]).
 */
export function epochPermutation(n: number, seed: bigint | number, epoch: number): Uint32Array {
  const [k0, k1] = seedWords(seed);
  const key = `${n}/${k0}/${k1}/${epoch}`;
  const hit = permCache.get(key);
  if (hit) return hit;
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const out = new Uint32Array(4);
  for (let i = n - 1; i > 0; i--) {
    philox4x32(i, epoch >>> 0, Math.floor(epoch / TWO_POW_32), DATA_ORDER_STREAM, k0, k1, out);
    const u = ((out[1]! >>> 11) * TWO_POW_32 + out[0]!) / 2 ** 53;
    const j = Math.floor(u * (i + 1));
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  if (permCache.size >= 4) permCache.delete(permCache.keys().next().value!);
  permCache.set(key, perm);
  return perm;
}

/**
 * The example indices of training step `step` (0-based): positions [step*batchSize, (step+1)*batchSize)
 * of the concatenated per-epoch permutations. A batch that crosses an epoch boundary takes the end of one
 * permutation and the start of the next.
 */
export function batchOrder(n: number, batchSize: number, seed: bigint | number, step: number): number[] {
  if (!Number.isSafeInteger(n) || n < 1) throw new QzoError(`batch order: ${n} examples: expected at least 1`, 2);
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new QzoError(`batch order: batch size ${batchSize}: expected a positive integer`, 2);
  if (!Number.isSafeInteger(step) || step < 0) throw new QzoError(`batch order: step ${step}: expected a non-negative integer`, 2);
  const out: number[] = [];
  const start = step * batchSize;
  if (!Number.isSafeInteger(start + batchSize)) throw new QzoError(`batch order: step ${step} is too large`, 2);
  for (let p = start; p < start + batchSize; p++) {
    const epoch = Math.floor(p / n);
    out.push(epochPermutation(n, seed, epoch)[p - epoch * n]!);
  }
  return out;
}
