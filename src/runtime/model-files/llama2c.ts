/**
 * llama2.c files: the legacy (version 0) checkpoint written by llama2.c's export (".bin"), and the
 * tokenizer.bin written by its tokenizer export.
 *
 * Checkpoint: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len; a negative vocab_size means the classifier is stored separately), then float32 arrays in this
 * order (layer-stacked, as llama2.c's run.c maps them):
 *   token_embedding_table [vocab, dim], rms_att_weight [L, dim], wq [L, dim, dim],
 *   wk [L, kv_dim, dim], wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn_weight [L, dim],
 *   w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final_weight [dim],
 *   freq_cis_real [seq_len, head_size/2], freq_cis_imag [seq_len, head_size/2] (skipped),
 *   wcls [vocab, dim] (only when unshared).
 * with kv_dim = dim * n_kv_heads / n_heads and head_size = dim / n_heads. Weight matrices are
 * [out, in] row-major (y = W x). q/k rows are in llama2.c's interleaved RoPE order (pairs 2j, 2j+1
 * of each head rotate together), the original Meta layout.
 *
 * Tokenizer: int32 max_token_length, then per token: float32 score, int32 length, length raw bytes.
 */

import * as fs from "node:fs";
import { fileError } from "../../util/errors.js";
import { FileCursor, openForRead, readTensorBytes, type TensorInfo } from "./common.js";

export interface Llama2cConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** |vocab_size| from the header. */
  vocabSize: number;
  seqLen: number;
  /** True when vocab_size was positive: the classifier is the token embedding table. */
  sharedClassifier: boolean;
  headSize: number;
  kvDim: number;
}

export interface Llama2cCheckpoint {
  format: "llama2c";
  file: string;
  fileSize: number;
  metadata: Llama2cConfig;
  /** token_embedding_table, rms_att_weight, wq, wk, wv, wo, rms_ffn_weight, w1, w2, w3, rms_final_weight[, wcls]. */
  tensors: Map<string, TensorInfo>;
  readTensorBytes(name: string): Uint8Array;
}

const HEADER_BYTES = 28;
const HEADER_FIELDS = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"] as const;

/** Reads a llama2.c checkpoint header and lays out its tensors (data is read lazily). */
export function readLlama2cCheckpoint(file: string): Llama2cCheckpoint {
  const { fd, size } = openForRead(file);
  let h: number[];
  try {
    const cur = new FileCursor(file, fd, size, 64);
    if (size >= 4) {
      const magic = cur.u32("header");
      if (magic === 0x616b3432) {
        // "ak42": llama2.c's newer export formats (version >= 1), which have a 256-byte header.
        const version = size >= 8 ? cur.i32("header") : -1;
        throw fileError(file, 0, `llama2.c export version ${version} (magic "ak42") is not supported: expected the legacy version-0 checkpoint (7 int32 header)`);
      }
      cur.pos = 0;
    }
    h = HEADER_FIELDS.map((f) => cur.i32(`header (7 int32: ${HEADER_FIELDS.join(", ")}) at field ${f}`));
  } finally {
    fs.closeSync(fd);
  }
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabRaw, seqLen] = h as [number, number, number, number, number, number, number];
  const bad = (i: number, msg: string) => fileError(file, 4 * i, `bad header field ${HEADER_FIELDS[i]} = ${h[i]}: ${msg}`);
  for (const i of [0, 1, 2, 3, 4, 6]) if (h[i]! <= 0) throw bad(i, "expected a positive integer");
  if (vocabRaw === 0 || vocabRaw === -2147483648) throw bad(5, "expected a nonzero vocabulary size");
  if (dim % nHeads !== 0) throw bad(3, `expected a divisor of dim ${dim}`);
  if (nKvHeads > nHeads || nHeads % nKvHeads !== 0) throw bad(4, `expected a divisor of n_heads ${nHeads}`);
  const headSize = dim / nHeads;
  if (headSize % 2 !== 0) throw bad(3, `expected an even head size (dim / n_heads = ${headSize})`);
  const kvDim = (dim * nKvHeads) / nHeads;
  const vocabSize = Math.abs(vocabRaw);
  const shared = vocabRaw > 0;
  const L = nLayers;

  const layout: Array<[string, number[] | null]> = [
    ["token_embedding_table", [vocabSize, dim]],
    ["rms_att_weight", [L, dim]],
    ["wq", [L, dim, dim]],
    ["wk", [L, kvDim, dim]],
    ["wv", [L, kvDim, dim]],
    ["wo", [L, dim, dim]],
    ["rms_ffn_weight", [L, dim]],
    ["w1", [L, hiddenDim, dim]],
    ["w2", [L, dim, hiddenDim]],
    ["w3", [L, hiddenDim, dim]],
    ["rms_final_weight", [dim]],
    ["freq_cis_real", [seqLen, headSize / 2]],
    ["freq_cis_imag", [seqLen, headSize / 2]],
  ];
  if (!shared) layout.push(["wcls", [vocabSize, dim]]);

  const tensors = new Map<string, TensorInfo>();
  let off = HEADER_BYTES;
  for (const [name, shape] of layout) {
    const n = shape!.reduce((a, b) => a * b, 1);
    if (!name.startsWith("freq_cis_")) {
      tensors.set(name, { name, dtype: "F32", shape: shape!, byteOffset: off, byteLength: 4 * n, file });
    }
    off += 4 * n;
  }
  const cfgText = `dim=${dim}, hidden_dim=${hiddenDim}, n_layers=${nLayers}, n_heads=${nHeads}, n_kv_heads=${nKvHeads}, vocab_size=${vocabRaw}, seq_len=${seqLen}`;
  if (size !== off) {
    throw fileError(
      file,
      Math.min(size, off),
      `file size ${size} bytes does not match the header (${cfgText}): expected exactly ${off} bytes`,
    );
  }
  return {
    format: "llama2c",
    file,
    fileSize: size,
    metadata: { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen, sharedClassifier: shared, headSize, kvDim },
    tensors,
    readTensorBytes(name: string): Uint8Array {
      const info = tensors.get(name);
      if (!info) throw fileError(file, undefined, `no tensor named "${name}"`);
      return readTensorBytes(info);
    },
  };
}

export interface Llama2cTokenizerFile {
  file: string;
  maxTokenLength: number;
  /** Raw bytes of each piece (not necessarily valid UTF-8). */
  pieces: Uint8Array[];
  scores: Float32Array;
}

/**
 * Parses a llama2.c tokenizer.bin. The file does not store the vocabulary size: with `vocabSize` given,
 * exactly that many entries must be present and nothing may follow them; without it, entries are read
 * to the end of the file.
 */
export function readLlama2cTokenizer(file: string, vocabSize?: number): Llama2cTokenizerFile {
  const { fd, size } = openForRead(file);
  try {
    const cur = new FileCursor(file, fd, size);
    const maxTokenLength = cur.i32("header (int32 max_token_length)");
    if (maxTokenLength <= 0) throw fileError(file, 0, `bad max_token_length ${maxTokenLength}: expected a positive integer`);
    const pieces: Uint8Array[] = [];
    const scores: number[] = [];
    for (let k = 0; vocabSize === undefined ? cur.remaining() > 0 : k < vocabSize; k++) {
      const score = cur.f32(`score (float32) of token ${k}`);
      const lenAt = cur.pos;
      const len = cur.i32(`length (int32) of token ${k}`);
      if (len < 0 || len > maxTokenLength) {
        throw fileError(file, lenAt, `bad length ${len} of token ${k}: expected 0..${maxTokenLength} (max_token_length)`);
      }
      pieces.push(cur.bytes(len, `bytes of token ${k} (${len} bytes)`));
      scores.push(score);
    }
    if (cur.remaining() > 0) {
      throw fileError(file, cur.pos, `unexpected data after ${vocabSize} tokens: expected the end of the file (${size - cur.pos} bytes left)`);
    }
    return { file, maxTokenLength, pieces, scores: Float32Array.from(scores) };
  } finally {
    fs.closeSync(fd);
  }
}
