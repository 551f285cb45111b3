import { QzoError } from "../../util/errors.js";
import { BaseTokenizer, bytePieceValue } from "./base.js";
import { makeSymbols, mergeAll, type Merge, type Sym } from "./bpe.js";
import { PieceType, type EncodeOptions } from "./types.js";

/**
 * Whose rules to follow, for ids equal to that program's:
 * - "llama2c": llama2.c run.c's encode() on a tokenizer.bin (pieces hold plain spaces;
 *   a " " dummy prefix for non-empty text; characters missing from the vocabulary become
 *   byte pieces before merging; every piece can be merged into).
 * - "sentencepiece": the SentencePiece library on a BPE .model (spaces escaped to "▁";
 *   NormalizerSpec's add_dummy_prefix and remove_extra_whitespaces; only NORMAL,
 *   USER_DEFINED and UNUSED pieces are merged into; byte fallback after merging; runs of
 *   unknown characters without byte fallback give one <unk>).
 * - "llama.cpp": llama.cpp's SPM tokenizer on a GGUF "llama" vocabulary (spaces escaped
 *   to "▁", a space prefix for non-empty text, any token can be merged into, byte
 *   fallback after merging).
 */
export type SpmFlavor = "llama2c" | "sentencepiece" | "llama.cpp";

export interface SpmVocab {
  pieces: readonly string[];
  scores: ArrayLike<number>;
  /** Piece types (SentencePiece/GGUF numbering); absent for llama2.c vocabularies. */
  types?: ArrayLike<number>;
}

export interface SpmOptions {
  flavor: SpmFlavor;
  bos: number;
  eos: number;
  unk: number;
  /** Prepend a space to non-empty text (default true). */
  addDummyPrefix?: boolean;
  /** SentencePiece's trimming and collapsing of " " runs (default: true for "sentencepiece", else false). */
  removeExtraWhitespaces?: boolean;
  /** Use <0xXX> pieces for characters the vocabulary lacks (default: whenever such pieces exist). */
  byteFallback?: boolean;
}

const SPM_SPACE = "\u2581";
/** llama2.c starts its search with best_score = -1e10 and needs a strictly better score. */
const LLAMA2C_MIN_SCORE = -1e10;
const utf8 = new TextEncoder();

/** SentencePiece-style BPE: merges chosen by the score of the merged piece. */
export class SpmTokenizer extends BaseTokenizer {
  readonly flavor: SpmFlavor;
  private readonly scores: Float64Array;
  private readonly lookup = new Map<string, number>();
  private readonly byteIds: Int32Array;
  private readonly hasByteFallback: boolean;
  private readonly space: string;
  private readonly addDummyPrefix: boolean;
  private readonly removeExtraWhitespaces: boolean;

  constructor(vocab: SpmVocab, opts: SpmOptions) {
    const n = vocab.pieces.length;
    if (vocab.scores.length !== n) throw new QzoError(`tokenizer: ${n} pieces but ${vocab.scores.length} scores`);
    if (vocab.types !== undefined && vocab.types.length !== n) {
      throw new QzoError(`tokenizer: ${n} pieces but ${vocab.types.length} token types`);
    }
    for (const [name, id] of [["BOS", opts.bos], ["EOS", opts.eos], ["UNK", opts.unk]] as const) {
      if (!Number.isInteger(id) || id < 0 || id >= n) {
        throw new QzoError(`tokenizer: ${name} id ${id} is outside the vocabulary of ${n} pieces`);
      }
    }
    const types = vocab.types;
    const byteValue = new Int16Array(n).fill(-1);
    const silent = new Set<number>([opts.bos, opts.eos]);
    for (let id = 0; id < n; id++) {
      const t = types?.[id];
      if (t === PieceType.Control) silent.add(id);
      if (types === undefined || t === PieceType.Byte) byteValue[id] = bytePieceValue(vocab.pieces[id]!);
      if (t === PieceType.Byte && byteValue[id] < 0) {
        throw new QzoError(`tokenizer: piece ${id} is typed BYTE but is ${JSON.stringify(vocab.pieces[id])}, expected <0xXX>`);
      }
    }
    const space = opts.flavor === "llama2c" ? " " : SPM_SPACE;
    super({ pieces: vocab.pieces, bos: opts.bos, eos: opts.eos, unk: opts.unk, silent, byteValue, spaceSymbol: space });
    this.flavor = opts.flavor;
    this.space = space;
    this.scores = Float64Array.from(vocab.scores as ArrayLike<number>);
    this.addDummyPrefix = opts.addDummyPrefix ?? true;
    this.removeExtraWhitespaces = opts.removeExtraWhitespaces ?? opts.flavor === "sentencepiece";
    for (let id = 0; id < n; id++) {
      const t = types?.[id];
      if (opts.flavor === "sentencepiece" && types !== undefined) {
        if (t !== PieceType.Normal && t !== PieceType.UserDefined && t !== PieceType.Unused) continue;
      }
      const p = vocab.pieces[id]!;
      if (!this.lookup.has(p)) this.lookup.set(p, id); // first id wins for duplicate pieces
    }
    this.byteIds = new Int32Array(256).fill(-1);
    for (let id = n - 1; id >= 0; id--) if (byteValue[id]! >= 0) this.byteIds[byteValue[id]!] = id;
    this.hasByteFallback = (opts.byteFallback ?? true) && this.byteIds.every((v) => v >= 0);
  }

  encode(text: string, opts: EncodeOptions): number[] {
    return this.wrap(this.encodeText(text), opts);
  }

  private prepare(text: string): string {
    let t = text;
    if (this.removeExtraWhitespaces) t = t.replace(/ +/g, " ").replace(/^ /, "").replace(/ $/, "");
    if (t.length > 0 && this.addDummyPrefix) t = " " + t;
    return this.space === " " ? t : t.replace(/ /g, this.space);
  }

  private encodeText(text: string): number[] {
    const prepared = this.prepare(text);
    const early = this.flavor === "llama2c";
    const items: { text: string; id: number }[] = [];
    for (const ch of prepared) {
      const id = this.lookup.get(ch);
      if (id !== undefined) items.push({ text: ch, id });
      else if (early && this.hasByteFallback) {
        for (const b of utf8.encode(ch)) items.push({ text: this.pieces[this.byteIds[b]!]!, id: this.byteIds[b]! });
      } else items.push({ text: ch, id: -1 });
    }
    const minScore = early ? LLAMA2C_MIN_SCORE : -Infinity;
    const rule = (a: Sym, b: Sym): Merge | undefined => {
      const text = a.text + b.text;
      const id = this.lookup.get(text);
      if (id === undefined) return undefined;
      const priority = this.scores[id]!;
      return priority > minScore ? { id, text, priority } : undefined;
    };
    const out: number[] = [];
    let lastUnk = false;
    for (const s of mergeAll(makeSymbols(items), rule)) {
      if (s.id >= 0) {
        out.push(s.id);
        lastUnk = false;
      } else if (this.hasByteFallback) {
        for (const b of utf8.encode(s.text)) out.push(this.byteIds[b]!);
        lastUnk = false;
      } else {
        // SentencePiece fuses a run of unknown characters into one <unk>; llama2.c and
        // llama.cpp have no sensible answer without byte pieces (out-of-range ids, a crash).
        if (!lastUnk) out.push(this.unk);
        lastUnk = true;
      }
    }
    return out;
  }
}
