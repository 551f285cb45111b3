import { QzoError } from "../../util/errors.js";
import { SpmTokenizer } from "./spm.js";
import { PieceType } from "./types.js";

/** The GGUF metadata a "llama" (SentencePiece BPE) vocabulary needs, as a GGUF reader returns it. */
export interface GgufVocab {
  /** tokenizer.ggml.model */
  model: string;
  /** tokenizer.ggml.tokens */
  tokens: readonly string[];
  /** tokenizer.ggml.scores */
  scores: ArrayLike<number>;
  /** tokenizer.ggml.token_type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte) */
  tokenTypes: ArrayLike<number>;
  /** tokenizer.ggml.bos_token_id (llama.cpp default 1) */
  bosId?: number;
  /** tokenizer.ggml.eos_token_id (llama.cpp default 2) */
  eosId?: number;
  /** tokenizer.ggml.unknown_token_id (llama.cpp default 0) */
  unkId?: number;
  /** tokenizer.ggml.add_space_prefix (llama.cpp default true) */
  addSpacePrefix?: boolean;
  /** Where the arrays came from, for messages. */
  source?: string;
}

/** A tokenizer with llama.cpp's ids for a GGUF "llama" vocabulary (see SpmFlavor "llama.cpp"). */
export function ggufTokenizer(v: GgufVocab): SpmTokenizer {
  const where = v.source ?? "GGUF";
  const fail = (msg: string): never => {
    throw new QzoError(`${where}: ${msg}`);
  };
  if (v.model !== "llama") fail(`tokenizer.ggml.model is "${v.model}", expected "llama" (SentencePiece BPE)`);
  const n = v.tokens.length;
  if (v.scores.length !== n) fail(`expected ${n} tokenizer.ggml.scores (one per token), found ${v.scores.length}`);
  if (v.tokenTypes.length !== n) fail(`expected ${n} tokenizer.ggml.token_type entries, found ${v.tokenTypes.length}`);
  for (let i = 0; i < n; i++) {
    const t = v.tokenTypes[i]!;
    if (t < 1 || t > 6) fail(`token ${i} has token_type ${t}, expected 1..6`);
    if (t === PieceType.UserDefined) fail(`token ${i} (${JSON.stringify(v.tokens[i])}) is USER_DEFINED, which is not supported`);
  }
  return new SpmTokenizer(
    { pieces: v.tokens, scores: v.scores, types: v.tokenTypes },
    { flavor: "llama.cpp", bos: v.bosId ?? 1, eos: v.eosId ?? 2, unk: v.unkId ?? 0, addDummyPrefix: v.addSpacePrefix ?? true },
  );
}
