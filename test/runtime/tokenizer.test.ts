import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { QzoError } from "../../src/util/errors.js";
import {
  ggufTokenizer,
  hfTokenizerFromJson,
  loadTokenizer,
  parseLlama2cVocab,
  parseSentencePieceModel,
  StreamDecoder,
  type GgufVocab,
  type Tokenizer,
} from "../../src/runtime/tokenizer/index.js";

const M = "/work/shared/models";
const NO = { bos: false, eos: false };
const BOS = { bos: true, eos: false };

/** Throwaway GGUF metadata reader (test only): returns the key/value pairs. */
function ggufMetadata(path: string): Map<string, unknown> {
  const b = readFileSync(path);
  let o = 0;
  const u32 = () => ((o += 4), b.readUInt32LE(o - 4));
  const u64 = () => ((o += 8), Number(b.readBigUInt64LE(o - 8)));
  const str = () => {
    const n = u64();
    o += n;
    return b.toString("utf8", o - n, o);
  };
  const value = (t: number): unknown => {
    switch (t) {
      case 0: return b.readUInt8(o++);
      case 1: return b.readInt8(o++);
      case 2: return ((o += 2), b.readUInt16LE(o - 2));
      case 3: return ((o += 2), b.readInt16LE(o - 2));
      case 4: return u32();
      case 5: return ((o += 4), b.readInt32LE(o - 4));
      case 6: return ((o += 4), b.readFloatLE(o - 4));
      case 7: return b.readUInt8(o++) !== 0;
      case 8: return str();
      case 9: {
        const at = u32();
        const n = u64();
        return Array.from({ length: n }, () => value(at));
      }
      case 10: return u64();
      case 11: return ((o += 8), Number(b.readBigInt64LE(o - 8)));
      case 12: return ((o += 8), b.readDoubleLE(o - 8));
      default: throw new Error(`gguf type ${t}`);
    }
  };
  expect(b.toString("latin1", 0, 4)).toBe("GGUF");
  o = 8;
  u64(); // tensor count
  const nkv = u64();
  const kv = new Map<string, unknown>();
  for (let i = 0; i < nkv; i++) {
    const k = str();
    kv.set(k, value(u32()));
  }
  return kv;
}

function ggufVocab(path: string): GgufVocab {
  const kv = ggufMetadata(path);
  return {
    model: kv.get("tokenizer.ggml.model") as string,
    tokens: kv.get("tokenizer.ggml.tokens") as string[],
    scores: kv.get("tokenizer.ggml.scores") as number[],
    tokenTypes: kv.get("tokenizer.ggml.token_type") as number[],
    bosId: kv.get("tokenizer.ggml.bos_token_id") as number,
    eosId: kv.get("tokenizer.ggml.eos_token_id") as number,
    unkId: kv.get("tokenizer.ggml.unknown_token_id") as number,
    source: path,
  };
}

interface RefCase {
  text: string;
  ids: number[];
  decoded: string;
}
const ref = JSON.parse(readFileSync(new URL("../fixtures/tokenizer/spm-reference.json", import.meta.url), "utf8")) as {
  models: Record<string, { bos: number; eos: number; unk: number; vocab_size: number; cases: RefCase[] }>;
};

/** Text SentencePiece's remove_extra_whitespaces leaves unchanged (no leading/trailing/double spaces). */
const spmNeutral = (s: string) => s === s.replace(/ +/g, " ").trim();

const tok512 = {
  bin: loadTokenizer(`${M}/stories260K/tok512.bin`),
  model: loadTokenizer(`${M}/stories260K/tok512.model`),
  json: loadTokenizer(`${M}/hf/stories260K`),
  gguf: ggufTokenizer(ggufVocab(`${M}/gguf/stories260K-f32.gguf`)),
};
const tok105 = {
  bin: loadTokenizer(`${M}/babyllama-tok105/tok105.bin`),
  model: loadTokenizer(`${M}/babyllama-tok105/tok105.model`),
  gguf: ggufTokenizer(ggufVocab(`${M}/gguf/babyllama-tok105-q4_0.gguf`)),
};

const GREEDY = [
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.",
  `Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do.`,
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. One day, she went to t",
  ", there was a little girl named Lily. She loved to play outside in the sun. One day, she went to the park with her mom",
];

const VARIED = [
  "", "a", " ", "  ", "   x", "x   ", "a  b   c    d", "\t\ttabs\t", "new\nlines\n\n", "0123456789", "3.14159 and 2,718",
  "héllo wörld ñ", "日本語", "emoji 😀🎉👍🏽", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "mixed: Lily said \"hi!\" — then left…", "ÿ\u0001\u007f", "x".repeat(300),
];

describe("SentencePiece reference ids (python3-sentencepiece 0.1.97 fixture)", () => {
  for (const [name, m] of Object.entries(ref.models)) {
    const toks: Record<string, Tokenizer> = name.startsWith("stories") ? tok512 : tok105;
    it(`${name}: .model encodes every case like SentencePiece`, () => {
      expect(toks.model!.vocabSize).toBe(m.vocab_size);
      expect([toks.model!.bos, toks.model!.eos, toks.model!.unk]).toEqual([m.bos, m.eos, m.unk]);
      for (const c of m.cases) expect(toks.model!.encode(c.text, NO), JSON.stringify(c.text)).toEqual(c.ids);
    });
    it(`${name}: .bin and GGUF match SentencePiece where its whitespace normalization changes nothing`, () => {
      const cases = m.cases.filter((c) => spmNeutral(c.text));
      expect(cases.length).toBeGreaterThan(15);
      for (const c of cases) {
        // a literal "▁" is a space to SentencePiece and llama.cpp, but just a character to llama2.c
        if (!c.text.includes("\u2581")) expect(toks.bin!.encode(c.text, NO), JSON.stringify(c.text)).toEqual(c.ids);
        expect(toks.gguf!.encode(c.text, NO), JSON.stringify(c.text)).toEqual(c.ids);
      }
    });
    if (name.startsWith("stories")) {
      it(`${name}: tokenizer.json matches SentencePiece (except literal special-token text)`, () => {
        for (const c of m.cases.filter((c) => spmNeutral(c.text) && !c.text.includes("<s>"))) {
          expect(tok512.json.encode(c.text, NO), JSON.stringify(c.text)).toEqual(c.ids);
        }
      });
      it(`${name}: decoding after BOS gives SentencePiece's decoded text`, () => {
        // SentencePiece drops every leading whitespace piece; llama2.c only the first space after BOS
        for (const c of m.cases.filter((c) => !c.text.includes("\u2581"))) expect(tok512.model.decode([1, ...c.ids])).toBe(c.decoded);
      });
    }
  }
});

describe("tok512: .bin, .model, tokenizer.json and GGUF agree", () => {
  it("agree id-for-id on varied strings (.model on SentencePiece-neutral whitespace)", () => {
    for (const s of VARIED) {
      const want = tok512.bin.encode(s, BOS);
      expect(tok512.json.encode(s, BOS), JSON.stringify(s)).toEqual(want);
      expect(tok512.gguf.encode(s, BOS), JSON.stringify(s)).toEqual(want);
      if (spmNeutral(s)) expect(tok512.model.encode(s, BOS), JSON.stringify(s)).toEqual(want);
    }
  });
  it("agree on 1000 seeded random strings (score-ranked and merge-ranked BPE give the same ids)", () => {
    let seed = 12345;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
    const alphabet = [..."abcdefghijklmnopqrstuvwxyzTLOS .,!?'\"0123456789", "é", "😀", "日", "\n", "\t", "the ", "Lily ", "ing", "  "];
    for (let i = 0; i < 1000; i++) {
      let s = "";
      for (let k = rnd(40); k > 0; k--) s += alphabet[rnd(alphabet.length)];
      const want = tok512.bin.encode(s, BOS);
      expect(tok512.json.encode(s, BOS), JSON.stringify(s)).toEqual(want);
      expect(tok512.gguf.encode(s, BOS), JSON.stringify(s)).toEqual(want);
      if (spmNeutral(s)) expect(tok512.model.encode(s, BOS), JSON.stringify(s)).toEqual(want);
      expect(tok512.bin.decode(want)).toBe(s);
    }
  });
  it("SentencePiece (.model) trims and collapses spaces; llama2.c (.bin) keeps them", () => {
    expect(tok512.model.encode("  a  b  ", NO)).toEqual(tok512.model.encode("a b", NO));
    expect(tok512.bin.encode("  a  b  ", NO)).not.toEqual(tok512.bin.encode("a b", NO));
    expect(tok512.model.encode("   ", BOS)).toEqual([1]);
    expect(tok512.bin.encode("   ", BOS)).toEqual([1, 410, 410, 410, 410]);
  });
  it("tokenizer.json matches added tokens in raw text, llama2.c does not", () => {
    expect(tok512.json.encode("<s>x</s>", NO)).toEqual([1, ...tok512.bin.encode("x", NO), 2]);
    expect(tok512.bin.encode("<s>", NO)).toEqual([410, 504, 419, 505]);
  });
  it("byte fallback: 😀 is ▁ then <0xF0><0x9F><0x98><0x80> = byte+3", () => {
    for (const t of Object.values(tok512)) expect(t.encode("😀", NO)).toEqual([410, 0xf0 + 3, 0x9f + 3, 0x98 + 3, 0x80 + 3]);
  });
});

describe("llama2.c facts", () => {
  it('encoding "" gives [] or [1] with BOS, [1, 2] with BOS and EOS', () => {
    for (const t of [...Object.values(tok512), ...Object.values(tok105)]) {
      expect(t.encode("", NO)).toEqual([]);
      expect(t.encode("", BOS)).toEqual([1]);
      expect(t.encode("", { bos: true, eos: true })).toEqual([1, 2]);
    }
  });
  it("the greedy outputs round-trip exactly through encode (BOS) and decode", () => {
    for (const t of [...Object.values(tok512), ...Object.values(tok105)]) {
      for (const s of GREEDY) {
        const ids = t.encode(s, BOS);
        expect(ids[0]).toBe(1);
        expect(t.decode(ids)).toBe(s);
        expect(t.decode(t.encode(s, { bos: true, eos: true }))).toBe(s);
      }
    }
  });
  it("varied strings round-trip through llama2.c-style tokenizers (.bin, GGUF, tokenizer.json)", () => {
    for (const t of [tok512.bin, tok512.gguf, tok512.json]) for (const s of VARIED) expect(t.decode(t.encode(s, BOS))).toBe(s);
  });
  it('"Once upon a time" streams as llama2.c prints it: leading space stripped after BOS', () => {
    for (const t of Object.values(tok512)) {
      const ids = t.encode("Once upon a time", BOS);
      expect(ids).toEqual([1, 403, 407, 261, 378]);
      const parts = ids.slice(1).map((id, i) => t.decodePiece(ids[i]!, id));
      expect(parts).toEqual(["Once", " upon", " a", " time"]);
      expect(t.decodePiece(-1, 403)).toBe(" Once");
    }
    expect(tok512.bin.pieceText(1)).toBe("\n<s>\n");
    expect(tok512.bin.decodePiece(0, 1)).toBe("");
  });
  it("streams byte pieces into whole characters", () => {
    const ids = tok512.bin.encode("a😀b", BOS);
    const sd = new StreamDecoder(tok512.bin);
    const out = ids.map((id) => sd.push(id)).join("") + sd.flush();
    expect(out).toBe("a😀b");
    expect(tok512.bin.decodePieceBytes(0, 0xf0 + 3)).toEqual(Uint8Array.of(0xf0));
  });
  it("tok105 (no byte pieces): unknown characters become one <unk> per run, like SentencePiece", () => {
    expect(tok105.bin.encode("a😀😀b", NO)).toEqual([3, 5, 0, 23]);
    expect(tok105.gguf.encode("a😀😀b", NO)).toEqual([3, 5, 0, 23]);
  });
});

describe("bad input", () => {
  const dir = mkdtempSync(join(tmpdir(), "qzo-tok-"));
  const write = (name: string, data: Uint8Array | string) => {
    const p = join(dir, name);
    writeFileSync(p, data);
    return p;
  };
  it("truncated tokenizer.bin names the file and byte offset", () => {
    const full = readFileSync(`${M}/stories260K/tok512.bin`);
    const p = write("cut.bin", full.subarray(0, 33));
    expect(() => loadTokenizer(p)).toThrow(QzoError);
    expect(() => loadTokenizer(p)).toThrow(/cut\.bin: at byte 30: expected f32 score of token 2 \(4 bytes\), found end of file/);
    expect(() => parseLlama2cVocab(full, "t.bin", 600)).toThrow(/t\.bin: at byte 6227: expected f32 score of token 512/);
    expect(parseLlama2cVocab(full, "t.bin", 512).pieces.length).toBe(512);
  });
  it("bad .model, bad tokenizer.json, unknown file type", () => {
    expect(() => parseSentencePieceModel(Uint8Array.of(0x0a, 0x05, 0x0a), "x.model")).toThrow(/x\.model: at byte \d+: expected/);
    expect(() => loadTokenizer(write("x.model", Uint8Array.of(0x0a, 0x05, 0x0a)))).toThrow(QzoError);
    expect(() => hfTokenizerFromJson("{nope", "t.json")).toThrow(/t\.json: at byte 1: expected valid JSON/);
    expect(() => hfTokenizerFromJson('{"model":{"type":"Unigram"}}', "t.json")).toThrow(/unsupported model type "Unigram"/);
    expect(() => loadTokenizer(write("vocab.txt", "a"))).toThrow(/unknown tokenizer file type/);
    expect(() => loadTokenizer(join(dir, "missing.bin"))).toThrow(QzoError);
    expect(() => loadTokenizer(dir)).toThrow(/expected a directory containing tokenizer\.json/);
  });
  it("GGUF vocab of another model type or out-of-range ids", () => {
    const v = ggufVocab(`${M}/gguf/stories260K-q8_0.gguf`);
    expect(() => ggufTokenizer({ ...v, model: "gpt2" })).toThrow(/expected "llama"/);
    expect(() => ggufTokenizer({ ...v, bosId: 9999 })).toThrow(QzoError);
    expect(() => tok512.bin.decode([512])).toThrow(/out of range/);
  });
});
