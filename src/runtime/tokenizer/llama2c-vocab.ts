import { fileError } from "../../util/errors.js";
import { SpmTokenizer } from "./spm.js";

/** A llama2.c tokenizer.bin: pieces (plain spaces, BOS/EOS as "\n<s>\n"/"\n</s>\n") and scores. */
export interface Llama2cVocab {
  maxTokenLength: number;
  pieces: string[];
  scores: Float32Array;
}

/**
 * Parses llama2.c's tokenizer.bin: int32 max_token_length, then per token f32 score,
 * int32 byte length and the piece's bytes (little-endian, no padding). The number of
 * tokens is not stored (llama2.c takes it from the checkpoint), so `vocabSize` may be
 * given; without it the file is read to its end.
 */
export function parseLlama2cVocab(bytes: Uint8Array, file: string, vocabSize?: number): Llama2cVocab {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder("utf-8", { fatal: true });
  const need = (off: number, n: number, what: string): void => {
    if (off + n > bytes.length) throw fileError(file, off, `expected ${what} (${n} bytes), found end of file`);
  };
  need(0, 4, "int32 max_token_length");
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength <= 0) throw fileError(file, 0, `expected a positive max_token_length, found ${maxTokenLength}`);
  const pieces: string[] = [];
  const scores: number[] = [];
  let off = 4;
  while (vocabSize === undefined ? off < bytes.length : pieces.length < vocabSize) {
    const i = pieces.length;
    need(off, 4, `f32 score of token ${i}`);
    const score = view.getFloat32(off, true);
    if (Number.isNaN(score)) throw fileError(file, off, `expected a number as the score of token ${i}, found NaN`);
    off += 4;
    need(off, 4, `int32 length of token ${i}`);
    const len = view.getInt32(off, true);
    if (len < 0 || len > maxTokenLength) {
      throw fileError(file, off, `expected the length of token ${i} in [0, ${maxTokenLength}], found ${len}`);
    }
    off += 4;
    need(off, len, `the bytes of token ${i}`);
    let piece: string;
    try {
      piece = dec.decode(bytes.subarray(off, off + len));
    } catch {
      throw fileError(file, off, `expected token ${i} to be valid UTF-8`);
    }
    pieces.push(piece);
    scores.push(score);
    off += len;
  }
  if (vocabSize !== undefined && off !== bytes.length) {
    throw fileError(file, off, `expected end of file after ${vocabSize} tokens, found ${bytes.length - off} more bytes`);
  }
  if (pieces.length < 3) throw fileError(file, off, `expected at least 3 tokens (<unk>, <s>, </s>), found ${pieces.length}`);
  return { maxTokenLength, pieces, scores: Float32Array.from(scores) };
}

/** llama2.c's tokenizer: UNK 0, BOS 1, EOS 2 (run.c hard-codes 1 and 2). */
export function llama2cTokenizer(vocab: Llama2cVocab): SpmTokenizer {
  return new SpmTokenizer({ pieces: vocab.pieces, scores: vocab.scores }, { flavor: "llama2c", unk: 0, bos: 1, eos: 2 });
}
