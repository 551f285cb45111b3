/** Options for {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Prepend the BOS id. */
  bos: boolean;
  /** Append the EOS id. */
  eos: boolean;
}

/**
 * A tokenizer whose ids equal those of the program the vocabulary came from
 * (llama2.c run.c, SentencePiece, llama.cpp, Hugging Face tokenizers).
 *
 * Decoding follows llama2.c's rules for every source: a piece's text (SentencePiece's
 * "▁" shown as a space), one leading space dropped from the piece right after BOS,
 * `<0xXX>` byte pieces as raw bytes, BOS/EOS (and other control pieces) as nothing,
 * and the bytes read as UTF-8 (invalid sequences become U+FFFD).
 */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bos: number;
  readonly eos: number;
  readonly unk: number;
  encode(text: string, opts: EncodeOptions): number[];
  decode(ids: readonly number[]): string;
  /**
   * One piece as text, given the token before it (llama2.c's `decode(t, prev, id)`).
   * A lone byte piece that is part of a multi-byte character decodes to U+FFFD here;
   * use {@link Tokenizer.decodePieceBytes} or a `StreamDecoder` to stream exact text.
   */
  decodePiece(prev: number, id: number): string;
  /** The raw bytes llama2.c would print for `id` after `prev`. */
  decodePieceBytes(prev: number, id: number): Uint8Array;
  /** The vocabulary's text for an id, as stored (for diagnostics). */
  pieceText(id: number): string;
}

/** SentencePiece / GGUF piece types (same numbering in both formats). */
export const enum PieceType {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}
