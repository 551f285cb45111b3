/**
 * Distillation data: token windows with a teacher's top-K next-token distribution at every position,
 * for the spec's `distill` loss (distill_ce). `qzo distill` makes it from a teacher model and language-
 * modelling data (the same windows `qzo train` would cut from that file); `qzo train` and `qzo eval`
 * read it like any other data file.
 *
 * File: safetensors with string metadata
 *   format "qzo-distill", version "1", top_k, seq_len, vocab (decimals), windows (decimal), teacher (path),
 *   teacher_sha256 (hex), source (the text file), tokenizer_sha256 (tokenizerSha256 of the teacher's tokenizer)
 * and tensors (N windows, T = seq_len, K = top_k)
 *   tokens        I32 [N, T]     the window's tokens, then 0
 *   lengths       I32 [N]        tokens per window, 2 <= length <= T
 *   teacher_ids   I32 [N, T, K]  at position t, the K most probable next tokens (most probable first;
 *                                equal probabilities by lower id), 0 past the window's end
 *   teacher_probs F32 [N, T, K]  their probabilities under the teacher's softmax (float64, rounded once)
 *
 * Batches (makeBatch in dataset.ts) are the lm batch (tokens, mask) plus teacher_ids and teacher_probs
 * [B, T, K], padded with id 0 and probability 0.
 */
import { createHash } from "node:crypto";
import { closeSync, readSync } from "node:fs";
import { QzoError } from "../../util/errors.js";
import { openForRead, readSafetensors } from "../model-files/index.js";
import { writeSafetensors } from "../model-files/safetensors-write.js";
import type { Tokenizer } from "../tokenizer/index.js";

export const DISTILL_FORMAT = "qzo-distill";
export const DISTILL_VERSION = "1";

export interface DistillDataset {
  kind: "distill";
  file: string;
  seqLen: number;
  /** Teacher buckets per position. */
  K: number;
  windows: Int32Array[];
  /** Per window, [length, K] ids and probabilities. */
  ids: Int32Array[];
  probs: Float32Array[];
  metadata: Record<string, string>;
}

/** A fingerprint of a tokenizer: its vocabulary size, BOS/EOS and every piece's bytes. */
export function tokenizerSha256(tok: Tokenizer): string {
  const h = createHash("sha256");
  h.update(`${tok.vocabSize} ${tok.bos} ${tok.eos}\n`);
  const prev = tok.bos === 0 ? 1 : 0;
  const len = Buffer.alloc(4);
  for (let id = 0; id < tok.vocabSize; id++) {
    const b = tok.decodePieceBytes(prev, id);
    len.writeUInt32LE(b.length, 0);
    h.update(len);
    h.update(b);
  }
  return h.digest("hex");
}

/**
 * The K largest entries of softmax(logits[o .. o + V)) into ids/probs[at .. at + K): most probable first,
 * equal logits by lower id; probabilities exp(l - max) / sum exp(l - max) in float64, rounded once.
 */
export function topK(logits: Float32Array, o: number, V: number, K: number, ids: Int32Array, probs: Float32Array, at: number): void {
  if (K > V) throw new QzoError(`top-K of ${K} from a vocabulary of ${V}: expected K <= ${V}`, 2);
  const k = K;
  const bestId = new Int32Array(k);
  const bestL = new Float64Array(k).fill(-Infinity);
  let n = 0;
  let mx = -Infinity;
  let se = 0;
  for (let v = 0; v < V; v++) {
    const l = logits[o + v]!;
    if (l > mx) {
      se = se * Math.exp(mx - l) + 1;
      mx = l;
    } else {
      se += Math.exp(l - mx);
    }
    if (n === k && !(l > bestL[k - 1]!)) continue;
    let i = n < k ? n++ : k - 1;
    while (i > 0 && l > bestL[i - 1]!) {
      bestL[i] = bestL[i - 1]!;
      bestId[i] = bestId[i - 1]!;
      i--;
    }
    bestL[i] = l;
    bestId[i] = v;
  }
  for (let j = 0; j < k; j++) {
    ids[at + j] = bestId[j]!;
    probs[at + j] = Math.exp(bestL[j]! - mx) / se;
  }
}

/**
 * The teacher's top-K at every position of every window: `forward(tokens, B, T)` gives logits [B, T, V]
 * of a batch of windows padded with 0 (causal, so padding never changes a real position).
 */
export function teacherTargets(
  windows: readonly Int32Array[],
  forward: (tokens: Int32Array, batch: number, seq: number) => Float32Array,
  V: number,
  K: number,
  opts: { batch?: number; onProgress?: (done: number) => void } = {},
): { ids: Int32Array[]; probs: Float32Array[] } {
  const B = opts.batch ?? 16;
  const ids: Int32Array[] = [];
  const probs: Float32Array[] = [];
  for (let start = 0; start < windows.length; start += B) {
    const rows = windows.slice(start, start + B);
    const T = rows.reduce((m, r) => Math.max(m, r.length), 0);
    const tokens = new Int32Array(rows.length * T);
    rows.forEach((r, b) => tokens.set(r, b * T));
    const logits = forward(tokens, rows.length, T);
    rows.forEach((r, b) => {
      const wi = new Int32Array(r.length * K);
      const wp = new Float32Array(r.length * K);
      for (let t = 0; t < r.length; t++) topK(logits, (b * T + t) * V, V, K, wi, wp, t * K);
      ids.push(wi);
      probs.push(wp);
    });
    opts.onProgress?.(Math.min(start + B, windows.length));
  }
  return { ids, probs };
}

export interface DistillMeta {
  teacher: string;
  teacherSha256: string;
  source: string;
  tokenizerSha256: string;
  vocab: number;
}

/** Writes a distillation data file (temp file, then rename). */
export function writeDistillData(
  path: string,
  d: { windows: readonly Int32Array[]; ids: readonly Int32Array[]; probs: readonly Float32Array[]; K: number; seqLen: number },
  meta: DistillMeta,
): void {
  const N = d.windows.length;
  const T = d.seqLen;
  const K = d.K;
  const tokens = new Int32Array(N * T);
  const lengths = new Int32Array(N);
  const ids = new Int32Array(N * T * K);
  const probs = new Float32Array(N * T * K);
  d.windows.forEach((w, i) => {
    if (w.length > T) throw new Error(`internal: window ${i} has ${w.length} tokens, more than ${T}`);
    tokens.set(w, i * T);
    lengths[i] = w.length;
    ids.set(d.ids[i]!, i * T * K);
    probs.set(d.probs[i]!, i * T * K);
  });
  const bytes = (a: Int32Array | Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  writeSafetensors(
    path,
    [
      { name: "tokens", dtype: "I32", shape: [N, T], data: bytes(tokens) },
      { name: "lengths", dtype: "I32", shape: [N], data: bytes(lengths) },
      { name: "teacher_ids", dtype: "I32", shape: [N, T, K], data: bytes(ids) },
      { name: "teacher_probs", dtype: "F32", shape: [N, T, K], data: bytes(probs) },
    ],
    {
      format: DISTILL_FORMAT,
      version: DISTILL_VERSION,
      top_k: String(K),
      seq_len: String(T),
      vocab: String(meta.vocab),
      windows: String(N),
      teacher: meta.teacher,
      teacher_sha256: meta.teacherSha256,
      source: meta.source,
      tokenizer_sha256: meta.tokenizerSha256,
    },
  );
}

/** True when the file starts like a safetensors file (8-byte header length, then a JSON object). */
export function looksLikeSafetensors(file: string): boolean {
  let fd: number | undefined;
  try {
    const o = openForRead(file);
    fd = o.fd;
    if (o.size < 10) return false;
    const b = Buffer.alloc(9);
    readSync(fd, b, 0, 9, 0);
    const n = b.readBigUInt64LE(0);
    return n > 0n && n <= BigInt(o.size - 8) && b[8] === 0x7b;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Reads and checks a distillation data file. With a tokenizer, the file must have been made with the
 * same one (tokenizer_sha256); seqLen is the model's context, which the windows must fit.
 */
export function readDistillData(file: string, tok: Tokenizer, maxSeqLen?: number): DistillDataset {
  const st = readSafetensors(file);
  const md = st.metadata;
  if (md["format"] !== DISTILL_FORMAT) {
    throw new QzoError(`${file}: metadata format is ${md["format"] === undefined ? "missing" : `"${md["format"]}"`}: expected "${DISTILL_FORMAT}" (qzo distill's data)`);
  }
  if (md["version"] !== DISTILL_VERSION) throw new QzoError(`${file}: distillation data version "${md["version"] ?? ""}": expected "${DISTILL_VERSION}"`);
  if (md["tokenizer_sha256"] !== tokenizerSha256(tok)) {
    throw new QzoError(`${file}: made with another tokenizer (teacher ${md["teacher"] ?? "unknown"}): expected the model's own (${tok.vocabSize} tokens)`);
  }
  const tensor = (name: string, dtype: string, rank: number) => {
    const t = st.tensors.get(name);
    if (!t) throw new QzoError(`${file}: tensor "${name}" is missing: expected ${dtype} of rank ${rank}`);
    if (t.dtype !== dtype || t.shape.length !== rank) {
      throw new QzoError(`${file}: tensor "${name}" is ${t.dtype}[${t.shape.join(", ")}]: expected ${dtype} of rank ${rank}`);
    }
    return { shape: t.shape, bytes: st.readTensorBytes(name) };
  };
  const tk = tensor("tokens", "I32", 2);
  const [N, T] = tk.shape as [number, number];
  const ln = tensor("lengths", "I32", 1);
  const ti = tensor("teacher_ids", "I32", 3);
  const tp = tensor("teacher_probs", "F32", 3);
  const K = ti.shape[2]!;
  const shape = (t: { shape: number[] }) => `[${t.shape.join(", ")}]`;
  if (ln.shape[0] !== N) throw new QzoError(`${file}: lengths is ${shape(ln)}: expected [${N}] (one per window of tokens ${shape(tk)})`);
  if (ti.shape[0] !== N || ti.shape[1] !== T || K < 1) throw new QzoError(`${file}: teacher_ids is ${shape(ti)}: expected [${N}, ${T}, K >= 1]`);
  if (tp.shape.some((d, i) => d !== ti.shape[i])) throw new QzoError(`${file}: teacher_probs is ${shape(tp)}: expected ${shape(ti)} like teacher_ids`);
  if (N < 1) throw new QzoError(`${file}: no windows: expected at least one`);
  if (maxSeqLen !== undefined && T > maxSeqLen) throw new QzoError(`${file}: windows of ${T} tokens exceed the model's context of ${maxSeqLen}`);
  const i32 = (b: Uint8Array) => new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  const tokens = i32(tk.bytes);
  const lengths = i32(ln.bytes);
  const ids = i32(ti.bytes);
  const probs = new Float32Array(tp.bytes.buffer.slice(tp.bytes.byteOffset, tp.bytes.byteOffset + tp.bytes.byteLength));
  const V = tok.vocabSize;
  const out: DistillDataset = { kind: "distill", file, seqLen: T, K, windows: [], ids: [], probs: [], metadata: md };
  for (let n = 0; n < N; n++) {
    const L = lengths[n]!;
    if (!(L >= 2 && L <= T)) throw new QzoError(`${file}: lengths[${n}] is ${L}: expected 2..${T}`);
    const w = tokens.subarray(n * T, n * T + L);
    for (let t = 0; t < L; t++) {
      if (w[t]! < 0 || w[t]! >= V) throw new QzoError(`${file}: tokens[${n}, ${t}] is ${w[t]}: expected a token id in 0..${V - 1}`);
      let P = 0;
      const seen = new Set<number>();
      for (let k = 0; k < K; k++) {
        const i = (n * T + t) * K + k;
        const id = ids[i]!;
        const p = probs[i]!;
        if (id < 0 || id >= V) throw new QzoError(`${file}: teacher_ids[${n}, ${t}, ${k}] is ${id}: expected a token id in 0..${V - 1}`);
        if (!(p >= 0 && p <= 1)) throw new QzoError(`${file}: teacher_probs[${n}, ${t}, ${k}] is ${p}: expected a probability in [0, 1]`);
        if (seen.has(id)) throw new QzoError(`${file}: teacher_ids[${n}, ${t}] lists token ${id} twice: expected distinct ids`);
        seen.add(id);
        P += p;
      }
      if (P > 1 + 1e-4) throw new QzoError(`${file}: teacher_probs[${n}, ${t}] sums to ${P.toFixed(6)}: expected at most 1`);
    }
    out.windows.push(Int32Array.from(w));
    out.ids.push(ids.slice(n * T * K, (n * T + L) * K));
    out.probs.push(probs.slice(n * T * K, (n * T + L) * K));
  }
  return out;
}
