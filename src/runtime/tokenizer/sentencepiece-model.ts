import { fileError, type QzoError } from "../../util/errors.js";
import { SpmTokenizer } from "./spm.js";
import { PieceType } from "./types.js";

/** The parts of a SentencePiece ModelProto (sentencepiece_model.proto) that BPE encoding needs. */
export interface SentencePieceModel {
  pieces: string[];
  scores: Float32Array;
  types: Uint8Array;
  /** TrainerSpec.model_type: 1 UNIGRAM (the default), 2 BPE, 3 WORD, 4 CHAR. */
  modelType: number;
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  normalizerName: string;
  hasCharsmap: boolean;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
  treatWhitespaceAsSuffix: boolean;
}

/** A minimal protobuf wire-format reader over one message's bytes. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    readonly file: string,
    readonly base: number,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }
  err(msg: string, at = this.pos): QzoError {
    return fileError(this.file, this.base + at, msg);
  }
  varint(): bigint {
    let r = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) throw this.err("expected a varint, found end of message");
      const c = this.buf[this.pos++]!;
      r |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return r;
    }
    throw this.err("expected a varint of at most 10 bytes");
  }
  /** Reads a tag; returns [field, wireType]. */
  tag(): [number, number] {
    const at = this.pos;
    const k = Number(this.varint());
    if (k >> 3 === 0) throw this.err("expected a field tag, found field number 0", at);
    return [k >>> 3, k & 7];
  }
  bytes(): [number, number] {
    const len = Number(this.varint());
    const start = this.pos;
    if (start + len > this.end) throw this.err(`expected ${len} bytes of a length-delimited field, found end of message`);
    this.pos += len;
    return [start, start + len];
  }
  f32(): number {
    if (this.pos + 4 > this.end) throw this.err("expected a 32-bit float, found end of message");
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }
  skip(wire: number): void {
    switch (wire) {
      case 0: this.varint(); return;
      case 1: this.pos += 8; break;
      case 2: this.bytes(); return;
      case 5: this.pos += 4; break;
      default: throw this.err(`expected a protobuf wire type 0, 1, 2 or 5, found ${wire}`);
    }
    if (this.pos > this.end) throw this.err("expected a fixed-size field, found end of message");
  }
  sub(range: [number, number]): Reader {
    return new Reader(this.buf, this.file, this.base, range[0], range[1]);
  }
  string(range: [number, number]): string {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(this.buf.subarray(range[0], range[1]));
    } catch {
      throw this.err("expected a UTF-8 string", range[0]);
    }
  }
  int32(v: bigint): number {
    return Number(BigInt.asIntN(32, v));
  }
}

function expectWire(r: Reader, field: number, wire: number, want: number, name: string): void {
  if (wire !== want) throw r.err(`expected wire type ${want} for ${name} (field ${field}), found ${wire}`);
}

/** Parses a SentencePiece .model file (a serialized ModelProto). */
export function parseSentencePieceModel(buf: Uint8Array, file: string): SentencePieceModel {
  const m: SentencePieceModel = {
    pieces: [], scores: new Float32Array(0), types: new Uint8Array(0), modelType: 1, byteFallback: false,
    unkId: 0, bosId: 1, eosId: 2, normalizerName: "", hasCharsmap: false, addDummyPrefix: true,
    removeExtraWhitespaces: true, escapeWhitespaces: true, treatWhitespaceAsSuffix: false,
  };
  const scores: number[] = [];
  const types: number[] = [];
  const r = new Reader(buf, file, 0, 0, buf.length);
  while (r.pos < r.end) {
    const [f, w] = r.tag();
    if (f === 1) {
      expectWire(r, f, w, 2, "ModelProto.pieces");
      const p = r.sub(r.bytes());
      let piece: string | undefined;
      let score = 0;
      let type: number = PieceType.Normal;
      while (p.pos < p.end) {
        const [pf, pw] = p.tag();
        if (pf === 1) { expectWire(p, pf, pw, 2, "SentencePiece.piece"); piece = p.string(p.bytes()); }
        else if (pf === 2) { expectWire(p, pf, pw, 5, "SentencePiece.score"); score = p.f32(); }
        else if (pf === 3) { expectWire(p, pf, pw, 0, "SentencePiece.type"); type = Number(p.varint()); }
        else p.skip(pw);
      }
      if (piece === undefined) throw r.err(`expected piece ${m.pieces.length} to have its text (field 1)`, p.end);
      if (type < 1 || type > 6) throw r.err(`expected piece ${m.pieces.length} to have a type in 1..6, found ${type}`, p.end);
      m.pieces.push(piece);
      scores.push(score);
      types.push(type);
    } else if (f === 2) {
      expectWire(r, f, w, 2, "ModelProto.trainer_spec");
      const t = r.sub(r.bytes());
      while (t.pos < t.end) {
        const [tf, tw] = t.tag();
        if (tw === 0 && [3, 24, 35, 40, 41, 42].includes(tf)) {
          const v = t.varint();
          if (tf === 3) m.modelType = Number(v);
          else if (tf === 24) m.treatWhitespaceAsSuffix = v !== 0n;
          else if (tf === 35) m.byteFallback = v !== 0n;
          else if (tf === 40) m.unkId = t.int32(v);
          else if (tf === 41) m.bosId = t.int32(v);
          else m.eosId = t.int32(v);
        } else t.skip(tw);
      }
    } else if (f === 3) {
      expectWire(r, f, w, 2, "ModelProto.normalizer_spec");
      const n = r.sub(r.bytes());
      while (n.pos < n.end) {
        const [nf, nw] = n.tag();
        if (nf === 1 && nw === 2) m.normalizerName = n.string(n.bytes());
        else if (nf === 2 && nw === 2) { const [a, b] = n.bytes(); m.hasCharsmap = b > a; }
        else if (nf === 3 && nw === 0) m.addDummyPrefix = n.varint() !== 0n;
        else if (nf === 4 && nw === 0) m.removeExtraWhitespaces = n.varint() !== 0n;
        else if (nf === 5 && nw === 0) m.escapeWhitespaces = n.varint() !== 0n;
        else n.skip(nw);
      }
    } else r.skip(w);
  }
  if (m.pieces.length === 0) throw fileError(file, buf.length, "expected a SentencePiece model with pieces, found none");
  m.scores = Float32Array.from(scores);
  m.types = Uint8Array.from(types);
  return m;
}

/** A tokenizer with the SentencePiece library's ids for a BPE model (see SpmFlavor "sentencepiece"). */
export function sentencePieceTokenizer(m: SentencePieceModel, file: string): SpmTokenizer {
  const unsupported = (what: string): never => {
    throw fileError(file, undefined, `unsupported SentencePiece model: ${what}`);
  };
  if (m.modelType !== 2) unsupported(`model_type ${m.modelType}, expected 2 (BPE)`);
  if (m.hasCharsmap) unsupported(`normalization rule "${m.normalizerName}" with a precompiled charsmap, expected "identity"`);
  if (m.treatWhitespaceAsSuffix) unsupported("treat_whitespace_as_suffix");
  if (!m.escapeWhitespaces) unsupported("escape_whitespaces = false");
  const userDefined = m.types.indexOf(PieceType.UserDefined);
  if (userDefined >= 0) unsupported(`USER_DEFINED piece ${userDefined} (${JSON.stringify(m.pieces[userDefined])})`);
  const idOk = (id: number) => id >= 0 && id < m.pieces.length;
  if (!idOk(m.unkId) || !idOk(m.bosId) || !idOk(m.eosId)) {
    unsupported(`unk/bos/eos ids ${m.unkId}/${m.bosId}/${m.eosId}, expected ids inside the ${m.pieces.length} pieces`);
  }
  return new SpmTokenizer(
    { pieces: m.pieces, scores: m.scores, types: m.types },
    {
      flavor: "sentencepiece", unk: m.unkId, bos: m.bosId, eos: m.eosId, addDummyPrefix: m.addDummyPrefix,
      removeExtraWhitespaces: m.removeExtraWhitespaces, byteFallback: m.byteFallback,
    },
  );
}
