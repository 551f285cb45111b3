import { readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { fileError, QzoError } from "../../util/errors.js";
import { hfTokenizerFromJson } from "./hf-json.js";
import { llama2cTokenizer, parseLlama2cVocab } from "./llama2c-vocab.js";
import { parseSentencePieceModel, sentencePieceTokenizer } from "./sentencepiece-model.js";
import type { Tokenizer } from "./types.js";

export type { EncodeOptions, Tokenizer } from "./types.js";
export { PieceType } from "./types.js";
export { StreamDecoder } from "./base.js";
export { SpmTokenizer, type SpmFlavor, type SpmOptions, type SpmVocab } from "./spm.js";
export { llama2cTokenizer, parseLlama2cVocab, type Llama2cVocab } from "./llama2c-vocab.js";
export { parseSentencePieceModel, sentencePieceTokenizer, type SentencePieceModel } from "./sentencepiece-model.js";
export { ggufTokenizer, type GgufVocab } from "./gguf-vocab.js";
export { HfBpeTokenizer, hfTokenizerFromJson } from "./hf-json.js";

/**
 * Loads a tokenizer by file type: `*.bin` llama2.c tokenizer.bin, `*.model` SentencePiece
 * model, `*.json` Hugging Face tokenizer.json, or a directory holding tokenizer.json.
 */
export function loadTokenizer(path: string): Tokenizer {
  let file = path;
  let st;
  try {
    st = statSync(file);
  } catch {
    throw new QzoError(`${path}: no such file or directory (expected a tokenizer: .bin, .model, tokenizer.json or a directory with one)`);
  }
  if (st.isDirectory()) {
    file = join(path, "tokenizer.json");
    try {
      statSync(file);
    } catch {
      throw new QzoError(`${path}: expected a directory containing tokenizer.json, found none`);
    }
  }
  const bytes = new Uint8Array(readFileSync(file));
  const name = basename(file).toLowerCase();
  if (name.endsWith(".json")) return hfTokenizerFromJson(new TextDecoder("utf-8").decode(bytes), file);
  if (name.endsWith(".model")) return sentencePieceTokenizer(parseSentencePieceModel(bytes, file), file);
  if (name.endsWith(".bin")) return llama2cTokenizer(parseLlama2cVocab(bytes, file));
  throw fileError(file, undefined, "unknown tokenizer file type: expected a .bin (llama2.c), .model (SentencePiece) or tokenizer.json file");
}
