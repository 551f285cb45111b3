import { fileError, QzoError } from "../../util/errors.js";
import { BaseTokenizer, bytePieceValue } from "./base.js";
import { makeSymbols, mergeAll, type Merge, type Sym } from "./bpe.js";
import type { EncodeOptions } from "./types.js";

/**
 * Hugging Face tokenizers' behaviour for a tokenizer.json with a BPE model, written from
 * the file format: added tokens are matched in the raw text first (so the literal text
 * "<s>" becomes the BOS id, as in `tokenizers`); each remaining segment goes through the
 * normalizer (Sequence / Prepend / Replace with a plain string / NFC / NFD / NFKC / NFKD /
 * Lowercase); no pre-tokenizer (the segment is one word); characters missing from the
 * vocabulary become <0xXX> pieces (byte_fallback) or <unk> (runs fused with fuse_unk);
 * then merges are applied lowest rank first, leftmost on ties. Other components raise
 * a QzoError naming what is unsupported. Decoding follows the common llama2.c rules.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

type Normalize = (s: string) => string;

interface AddedToken {
  id: number;
  content: string;
}

const utf8 = new TextEncoder();

function isObj(v: Json | undefined): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export class HfBpeTokenizer extends BaseTokenizer {
  private readonly vocab: Map<string, number>;
  private readonly merges: Map<string, { rank: number; id: number }>;
  private readonly added: AddedToken[];
  private readonly addedRe: RegExp | null;
  private readonly normalize: Normalize;
  private readonly byteFallback: boolean;
  private readonly fuseUnk: boolean;

  constructor(json: Json, file: string) {
    const err = (msg: string): QzoError => fileError(file, undefined, msg);
    const fail = (msg: string): never => {
      throw err(msg);
    };
    if (!isObj(json)) throw err("expected a JSON object");
    const root = json as Obj;
    const model = root["model"];
    if (!isObj(model)) throw err('expected a "model" object');
    if (model["type"] !== "BPE") throw err(`unsupported model type ${JSON.stringify(model["type"])}, expected "BPE"`);
    for (const k of ["continuing_subword_prefix", "end_of_word_suffix"]) {
      const v = model[k];
      if (v !== undefined && v !== null && v !== "") throw err(`unsupported BPE option ${k} = ${JSON.stringify(v)}`);
    }
    if (model["dropout"] !== undefined && model["dropout"] !== null && model["dropout"] !== 0) throw err("unsupported BPE dropout");
    if (model["ignore_merges"] === true) throw err("unsupported BPE option ignore_merges = true");
    const vocabJson = model["vocab"];
    if (!isObj(vocabJson)) throw err('expected "model.vocab" to be an object');
    const vocab = new Map<string, number>();
    const pieces: string[] = [];
    const place = (piece: string, id: Json | undefined, what: string): void => {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0) throw err(`expected ${what} ${JSON.stringify(piece)} to have a non-negative integer id`);
      const n = id as number;
      if (pieces[n] !== undefined && pieces[n] !== piece) throw err(`id ${n} is both ${JSON.stringify(pieces[n])} and ${JSON.stringify(piece)}`);
      pieces[n] = piece;
    };
    for (const [piece, id] of Object.entries(vocabJson)) {
      place(piece, id, "vocab entry");
      vocab.set(piece, id as number);
    }
    const added: AddedToken[] = [];
    const specials = new Set<number>();
    const addedJson = root["added_tokens"] ?? [];
    if (!Array.isArray(addedJson)) throw err('expected "added_tokens" to be an array');
    for (const t of addedJson as Json[]) {
      if (!isObj(t) || typeof t["content"] !== "string") throw err("expected each added token to have a string content");
      const content = t["content"];
      for (const k of ["lstrip", "rstrip", "single_word", "normalized"]) {
        if (t[k] === true) throw err(`unsupported added token option ${k} = true on ${JSON.stringify(content)}`);
      }
      place(content, t["id"], "added token");
      added.push({ id: t["id"] as number, content });
      if (t["special"] === true) specials.add(t["id"] as number);
    }
    for (let i = 0; i < pieces.length; i++) if (pieces[i] === undefined) throw err(`expected a token with id ${i}, found none`);
    for (const a of added) if (!vocab.has(a.content)) vocab.set(a.content, a.id);

    const idOf = (content: string): number | undefined => added.find((a) => a.content === content)?.id ?? vocab.get(content);
    let bos: number | undefined;
    const pp = root["post_processor"];
    if (isObj(pp) && pp["type"] === "TemplateProcessing" && Array.isArray(pp["single"])) {
      const first = pp["single"][0];
      if (isObj(first) && isObj(first["SpecialToken"]) && typeof first["SpecialToken"]["id"] === "string") {
        bos = idOf(first["SpecialToken"]["id"]);
      }
    }
    bos ??= idOf("<s>");
    const eos = idOf("</s>");
    const unkToken = model["unk_token"];
    const unk = typeof unkToken === "string" ? vocab.get(unkToken) : undefined;
    if (bos === undefined) throw err("expected a BOS token (<s> or the post-processor's first special token)");
    if (eos === undefined) throw err("expected an EOS token </s>");
    if (unk === undefined) throw err(`expected model.unk_token to name a token, found ${JSON.stringify(unkToken)}`);

    const byteFallback = model["byte_fallback"] === true;
    const byteValue = new Int16Array(pieces.length).fill(-1);
    if (byteFallback) for (let id = 0; id < pieces.length; id++) if (!specials.has(id)) byteValue[id] = bytePieceValue(pieces[id]!);
    const silent = new Set<number>(specials);
    silent.delete(unk);
    silent.add(bos).add(eos);
    super({ pieces, bos, eos, unk, silent, byteValue, spaceSymbol: "\u2581" });

    this.vocab = vocab;
    this.byteFallback = byteFallback;
    this.fuseUnk = model["fuse_unk"] === true;
    this.merges = new Map();
    const mergesJson = model["merges"] ?? [];
    if (!Array.isArray(mergesJson)) throw err('expected "model.merges" to be an array');
    (mergesJson as Json[]).forEach((m, rank) => {
      let pair: [string, string] | undefined;
      if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") pair = [m[0], m[1]];
      else if (typeof m === "string") {
        const sp = m.indexOf(" ");
        if (sp > 0 && m.indexOf(" ", sp + 1) < 0) pair = [m.slice(0, sp), m.slice(sp + 1)];
      }
      if (pair === undefined) throw err(`expected merge ${rank} to be a pair of tokens, found ${JSON.stringify(m)}`);
      const a = vocab.get(pair[0]);
      const b = vocab.get(pair[1]);
      const c = vocab.get(pair[0] + pair[1]);
      if (a === undefined || b === undefined || c === undefined) {
        throw err(`merge ${rank} ${JSON.stringify(pair)}: expected both parts and their concatenation in the vocabulary`);
      }
      const key = `${a} ${b}`;
      if (!this.merges.has(key)) this.merges.set(key, { rank, id: c });
    });
    this.added = added;
    this.addedRe =
      added.length === 0
        ? null
        : new RegExp(
            [...added]
              .sort((x, y) => y.content.length - x.content.length)
              .map((a) => a.content.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
              .join("|"),
            "gu",
          );
    this.normalize = buildNormalizer(root["normalizer"] ?? null, fail);
    const pre = root["pre_tokenizer"];
    if (pre !== undefined && pre !== null) throw err(`unsupported pre_tokenizer ${JSON.stringify((pre as Obj)["type"] ?? pre)}`);
  }

  encode(text: string, opts: EncodeOptions): number[] {
    const out: number[] = [];
    let last = 0;
    if (this.addedRe !== null) {
      this.addedRe.lastIndex = 0;
      for (const m of text.matchAll(this.addedRe)) {
        this.encodeSegment(text.slice(last, m.index), out);
        out.push(this.added.find((a) => a.content === m[0])!.id);
        last = m.index + m[0].length;
      }
    }
    this.encodeSegment(text.slice(last), out);
    return this.wrap(out, opts);
  }

  private encodeSegment(segment: string, out: number[]): void {
    if (segment.length === 0) return;
    const word = this.normalize(segment);
    const items: { text: string; id: number }[] = [];
    for (const ch of word) {
      const id = this.vocab.get(ch);
      if (id !== undefined) {
        items.push({ text: ch, id });
        continue;
      }
      if (this.byteFallback) {
        const ids = Array.from(utf8.encode(ch), (b) => this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`));
        if (ids.every((x) => x !== undefined)) {
          for (const x of ids) items.push({ text: this.pieces[x!]!, id: x! });
          continue;
        }
      }
      const prev = items[items.length - 1];
      if (this.fuseUnk && prev !== undefined && prev.id === this.unk) prev.text += ch;
      else items.push({ text: ch, id: this.unk });
    }
    const rule = (a: Sym, b: Sym): Merge | undefined => {
      const m = this.merges.get(`${a.id} ${b.id}`);
      return m === undefined ? undefined : { id: m.id, text: a.text + b.text, priority: -m.rank };
    };
    for (const s of mergeAll(makeSymbols(items), rule)) out.push(s.id);
  }
}

function buildNormalizer(spec: Json, fail: (msg: string) => never): Normalize {
  if (spec === null) return (s) => s;
  if (!isObj(spec)) return fail("expected the normalizer to be an object or null");
  switch (spec["type"]) {
    case "Sequence": {
      const list = spec["normalizers"];
      if (!Array.isArray(list)) return fail("expected Sequence normalizer to have a normalizers array");
      const fns = list.map((n) => buildNormalizer(n, fail));
      return (s) => fns.reduce((acc, f) => f(acc), s);
    }
    case "Prepend": {
      const p = spec["prepend"];
      if (typeof p !== "string") return fail("expected Prepend normalizer to have a string prepend");
      return (s) => (s.length > 0 ? p + s : s);
    }
    case "Replace": {
      const pattern = spec["pattern"];
      const content = spec["content"];
      if (!isObj(pattern) || typeof pattern["String"] !== "string" || typeof content !== "string") {
        return fail("unsupported Replace normalizer: expected a String pattern and a string content");
      }
      const from = pattern["String"];
      if (from === "") return fail("unsupported Replace normalizer with an empty pattern");
      return (s) => s.split(from).join(content);
    }
    case "NFC":
    case "NFD":
    case "NFKC":
    case "NFKD": {
      const form = spec["type"];
      return (s) => s.normalize(form);
    }
    case "Lowercase":
      return (s) => s.toLowerCase();
    default:
      return fail(`unsupported normalizer ${JSON.stringify(spec["type"])}`);
  }
}

/** Parses tokenizer.json text. */
export function hfTokenizerFromJson(text: string, file: string): HfBpeTokenizer {
  let json: Json;
  try {
    json = JSON.parse(text) as Json;
  } catch (e) {
    const m = /position (\d+)/.exec(String(e));
    throw fileError(file, m ? Number(m[1]) : undefined, `expected valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  return new HfBpeTokenizer(json, file);
}

