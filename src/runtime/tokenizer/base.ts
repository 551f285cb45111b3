import { QzoError } from "../../util/errors.js";
import type { EncodeOptions, Tokenizer } from "./types.js";

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** `<0xXX>` (two upper- or lower-case hex digits) → the byte, else -1. */
export function bytePieceValue(piece: string): number {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  return m === null ? -1 : parseInt(m[1]!, 16);
}

export interface DecodeTable {
  /** Piece texts, one per id. */
  pieces: readonly string[];
  bos: number;
  eos: number;
  unk: number;
  /** Ids that decode to nothing (BOS, EOS, other control pieces). */
  silent: ReadonlySet<number>;
  /** Per id: the byte of a byte-fallback piece, or -1. */
  byteValue: ArrayLike<number>;
  /** The character that stands for a space in the pieces ("▁" or " "). */
  spaceSymbol: string;
}

/** Shared decoding (llama2.c's rules) and id bookkeeping for every tokenizer. */
export abstract class BaseTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bos: number;
  readonly eos: number;
  readonly unk: number;
  protected readonly pieces: readonly string[];
  private readonly bytesOf: Uint8Array[];
  private readonly isByte: Uint8Array;

  protected constructor(t: DecodeTable) {
    this.pieces = t.pieces;
    this.vocabSize = t.pieces.length;
    this.bos = t.bos;
    this.eos = t.eos;
    this.unk = t.unk;
    this.bytesOf = new Array<Uint8Array>(t.pieces.length);
    this.isByte = new Uint8Array(t.pieces.length);
    for (let id = 0; id < t.pieces.length; id++) {
      const b = t.byteValue[id]!;
      if (t.silent.has(id)) {
        this.bytesOf[id] = EMPTY;
      } else if (b >= 0) {
        this.bytesOf[id] = Uint8Array.of(b);
        this.isByte[id] = 1;
      } else {
        const text = t.spaceSymbol === " " ? t.pieces[id]! : t.pieces[id]!.split(t.spaceSymbol).join(" ");
        this.bytesOf[id] = utf8.encode(text);
      }
    }
  }

  abstract encode(text: string, opts: EncodeOptions): number[];

  protected wrap(ids: number[], opts: EncodeOptions): number[] {
    if (opts.bos) ids.unshift(this.bos);
    if (opts.eos) ids.push(this.eos);
    return ids;
  }

  pieceText(id: number): string {
    this.checkId(id);
    return this.pieces[id]!;
  }

  decodePieceBytes(prev: number, id: number): Uint8Array {
    this.checkId(id);
    const b = this.bytesOf[id]!;
    // llama2.c: "following BOS token, sentencepiece decoder strips any leading whitespace"
    if (prev === this.bos && this.isByte[id] === 0 && b.length > 0 && b[0] === 0x20) return b.subarray(1);
    return b;
  }

  decodePiece(prev: number, id: number): string {
    return new TextDecoder("utf-8").decode(this.decodePieceBytes(prev, id));
  }

  decode(ids: readonly number[]): string {
    const parts: Uint8Array[] = [];
    let total = 0;
    let prev = -1;
    for (const id of ids) {
      const b = this.decodePieceBytes(prev, id);
      parts.push(b);
      total += b.length;
      prev = id;
    }
    const all = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return new TextDecoder("utf-8").decode(all);
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new QzoError(`token id ${id} is out of range: expected an integer in [0, ${this.vocabSize})`);
    }
  }
}

/**
 * Streams a token sequence as text: bytes of multi-byte characters split over several
 * byte pieces are held back until the character is complete (what a terminal does
 * with llama2.c's raw output).
 */
export class StreamDecoder {
  private readonly dec = new TextDecoder("utf-8");
  private prev = -1;
  constructor(private readonly tok: Tokenizer, prev = -1) {
    this.prev = prev;
  }
  /** Text completed by token `id`. */
  push(id: number): string {
    const s = this.dec.decode(this.tok.decodePieceBytes(this.prev, id), { stream: true });
    this.prev = id;
    return s;
  }
  /** Whatever is left (an unfinished character becomes U+FFFD). */
  flush(): string {
    return this.dec.decode();
  }
}
