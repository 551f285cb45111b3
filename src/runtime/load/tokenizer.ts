/**
 * The tokenizer of a bound model: an explicit file, the vocabulary embedded in
 * a GGUF file, or the tokenizer.json of a Hugging Face directory. A llama2.c
 * checkpoint carries none, so it needs --tokenizer.
 */
import { ggufTokenizer, loadTokenizer, type Tokenizer } from "../tokenizer/index.js";
import { QzoError } from "../../util/errors.js";
import type { Checkpoint } from "./checkpoint.js";

/**
 * The model's tokenizer; with `modelVocab` (the model's vocabulary size), checked against it: a
 * tokenizer with more tokens than the model makes ids the model cannot embed, and a llama2.c
 * tokenizer.bin or a GGUF vocabulary must have exactly the model's (as llama2.c and llama.cpp
 * require); a Hugging Face tokenizer may have fewer (padded embedding tables).
 */
export function modelTokenizer(ckpt: Checkpoint, explicit?: string, modelVocab?: number): Tokenizer {
  const tok = findTokenizer(ckpt, explicit);
  if (modelVocab !== undefined) {
    const exact = explicit ? explicit.endsWith(".bin") : ckpt.family !== "hf";
    const source = explicit ?? ckpt.path;
    if (tok.vocabSize > modelVocab || (exact && tok.vocabSize !== modelVocab)) {
      throw new QzoError(`${source}: the tokenizer has ${tok.vocabSize} tokens, but the model's vocabulary is ${modelVocab}: expected ${exact ? "the same size" : `at most ${modelVocab}`} (is it the model's own tokenizer?)`);
    }
  }
  return tok;
}

function findTokenizer(ckpt: Checkpoint, explicit?: string): Tokenizer {
  if (explicit) return loadTokenizer(explicit);
  if (ckpt.family === "hf") return loadTokenizer(ckpt.path);
  if (ckpt.family === "gguf") {
    const tokens = ckpt.meta("tokenizer.ggml.tokens");
    if (!Array.isArray(tokens)) throw new QzoError(`${ckpt.path}: no tokenizer.ggml.tokens in the metadata; pass --tokenizer FILE`);
    const num = (k: string) => {
      const v = ckpt.meta(k);
      return typeof v === "number" ? v : undefined;
    };
    const bool = ckpt.meta("tokenizer.ggml.add_space_prefix");
    return ggufTokenizer({
      model: String(ckpt.meta("tokenizer.ggml.model") ?? ""),
      tokens: tokens as string[],
      scores: (ckpt.meta("tokenizer.ggml.scores") as number[] | undefined) ?? [],
      tokenTypes: (ckpt.meta("tokenizer.ggml.token_type") as number[] | undefined) ?? [],
      source: ckpt.path,
      ...(num("tokenizer.ggml.bos_token_id") !== undefined ? { bosId: num("tokenizer.ggml.bos_token_id")! } : {}),
      ...(num("tokenizer.ggml.eos_token_id") !== undefined ? { eosId: num("tokenizer.ggml.eos_token_id")! } : {}),
      ...(num("tokenizer.ggml.unknown_token_id") !== undefined ? { unkId: num("tokenizer.ggml.unknown_token_id")! } : {}),
      ...(typeof bool === "boolean" ? { addSpacePrefix: bool } : {}),
    });
  }
  throw new QzoError(`${ckpt.path}: a llama2.c checkpoint has no vocabulary; pass --tokenizer tokenizer.bin`);
}
